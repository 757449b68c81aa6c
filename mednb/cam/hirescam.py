"""HiResCAM (Draelos & Carin, 2020, arXiv:2011.08891).

map = ReLU(sum_k dy^c/dA^k ⊙ A^k): the gradient multiplies the activations position by
position instead of being averaged first, so the map shows exactly the positions whose
activations raise the score (for a global-average-pooled head it equals CAM, Zhou et al. 2016).
"""
from __future__ import annotations

import torch

from .base import CAM


class HiResCAM(CAM):
    name = "hirescam"

    def combine(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        return (G * A).sum(1)
