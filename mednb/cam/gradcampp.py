"""Grad-CAM++ (Chattopadhyay et al., WACV 2018, arXiv:1710.11063), closed form of their eq. 19.

With g = dy^c/dA^k (exponential score, so higher derivatives are powers of g):
a_ij = g² / (2 g² + sum_ab A_ab · g³), alpha_k^c = sum_ij a_ij · ReLU(g_ij);
map = ReLU(sum_k alpha_k^c A^k). Positive gradients only, each position weighted, so several
instances of a class (multifocal lesions) are covered better than by Grad-CAM's plain mean.
"""
from __future__ import annotations

import torch

from .base import CAM


class GradCAMPlusPlus(CAM):
    name = "gradcam++"
    uses_weights = True
    eps = 1e-6

    def weights(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        axes = tuple(range(2, G.ndim))
        g2 = G * G
        g3 = g2 * G
        total = A.sum(dim=axes, keepdim=True)
        a = g2 / (2 * g2 + total * g3 + self.eps)
        a = torch.where(G != 0, a, torch.zeros_like(a))
        return (a * G.clamp_min(0)).sum(dim=axes)
