"""LayerCAM (Jiang et al., IEEE TIP 2021, doi:10.1109/TIP.2021.3089943).

map = ReLU(sum_k ReLU(dy^c/dA^k) ⊙ A^k): positive gradients weight each position, which keeps
fine detail and makes shallow, high-resolution layers usable.
"""
from __future__ import annotations

import torch

from .base import CAM


class LayerCAM(CAM):
    name = "layercam"

    def combine(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        return (G.clamp_min(0) * A).sum(1)
