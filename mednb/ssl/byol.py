"""BYOL (Grill et al., "Bootstrap your own latent", NeurIPS 2020): an online network (encoder →
projector → predictor) regresses the target network's projection of another view; the target
(encoder + projector) gets no gradients and follows the online weights by an exponential moving
average ``θ_t ← τ θ_t + (1 − τ) θ_o`` after every step (buffers are copied).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..engine import normalize
from .base import Pretext, mlp
from .views import get_views


def regression_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """2 − 2·cos(p, z), averaged (the paper's normalized MSE)."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


class BYOL(Pretext):
    name, family, paper = "byol", "distillation", "Grill et al., NeurIPS 2020"

    def __init__(self, model, in_channels, size, dims, tau: float = 0.99, proj_dim: int = 64, hidden: int = 256,
                 views: str | None = "auto", strength: float = 1.0):
        super().__init__(model, in_channels, size, dims)
        self.tau = float(tau)
        self.views, self.view_source = get_views(views, strength, dims)
        self.projector = mlp(self.feat_dim, hidden, proj_dim)
        self.predictor = mlp(proj_dim, hidden, proj_dim)
        self.target = nn.ModuleDict({"features": copy.deepcopy(model.features),
                                     "projector": copy.deepcopy(self.projector)})
        for p in self.target.parameters():
            p.requires_grad_(False)

    def _online(self, x01):
        return self.predictor(self.projector(self.embed(x01)))

    @torch.no_grad()
    def _target(self, x01):
        f = self.target["features"](normalize(x01))
        return self.target["projector"](f.mean(dim=tuple(range(2, f.ndim))))

    def loss(self, x, idx, generator=None):
        v1, v2 = self.views(x, generator), self.views(x, generator)
        p = self._online(torch.cat([v1, v2]))
        z = self._target(torch.cat([v2, v1]))
        return regression_loss(p, z), {}

    def online_pairs(self):
        """[(target module, online module)] that the EMA couples."""
        return [(self.target["features"], self.model.features), (self.target["projector"], self.projector)]

    @torch.no_grad()
    def after_step(self):
        for tgt, onl in self.online_pairs():
            for pt, po in zip(tgt.parameters(), onl.parameters()):
                pt.mul_(self.tau).add_(po.detach(), alpha=1 - self.tau)
            for bt, bo in zip(tgt.buffers(), onl.buffers()):
                bt.copy_(bo)
