"""Barlow Twins (Zbontar et al., "Barlow Twins: self-supervised learning via redundancy
reduction", ICML 2021): the cross-correlation matrix of the batch-standardized projections of two
views should be the identity — invariance on the diagonal, decorrelation (weight ``lambd``) off it.
"""
from __future__ import annotations

import torch

from .base import TwoViewPretext


def barlow_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3) -> torch.Tensor:
    """Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij², C = z1ᵀz2 / N after per-dimension standardization."""
    n = len(z1)
    z1 = (z1 - z1.mean(0)) / (z1.std(0) + 1e-5)
    z2 = (z2 - z2.mean(0)) / (z2.std(0) + 1e-5)
    c = z1.t() @ z2 / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + lambd * off


class BarlowTwins(TwoViewPretext):
    name, family, paper = "barlow", "information maximization", "Zbontar et al., ICML 2021"

    def __init__(self, model, in_channels, size, dims, lambd: float = 5e-3, proj_dim: int = 128, hidden: int = 256,
                 views: str | None = "auto", strength: float = 1.0):
        super().__init__(model, in_channels, size, dims, proj_dim, hidden, views, strength)
        self.lambd = float(lambd)

    def pair_loss(self, z1, z2):
        return barlow_loss(z1, z2, self.lambd)
