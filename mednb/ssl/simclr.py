"""SimCLR (Chen et al., "A simple framework for contrastive learning of visual representations",
ICML 2020): two views per image, projection MLP, NT-Xent loss — each view must pick its partner
out of the 2N−1 other views in the batch (cosine similarity / ``temperature``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import TwoViewPretext


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Normalized-temperature cross entropy for positive pairs (z1[i], z2[i]); z: (N, D)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


class SimCLR(TwoViewPretext):
    name, family, paper = "simclr", "contrastive", "Chen et al., ICML 2020"

    def __init__(self, model, in_channels, size, dims, temperature: float = 0.5, proj_dim: int = 64,
                 hidden: int = 256, views: str | None = "auto", strength: float = 1.0):
        super().__init__(model, in_channels, size, dims, proj_dim, hidden, views, strength)
        self.temperature = float(temperature)

    def pair_loss(self, z1, z2):
        return nt_xent(z1, z2, self.temperature)
