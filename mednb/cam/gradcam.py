"""Grad-CAM (Selvaraju et al., ICCV 2017, arXiv:1610.02391).

alpha_k^c = mean over positions of dy^c/dA^k (global-average-pooled gradients);
map = ReLU(sum_k alpha_k^c A^k), upsampled to the input.
"""
from __future__ import annotations

import torch

from .base import CAM


class GradCAM(CAM):
    name = "gradcam"
    uses_weights = True

    def weights(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        return G.mean(dim=tuple(range(2, G.ndim)))
