"""Rotation prediction (Gidaris et al., "Unsupervised representation learning by predicting image
rotations", ICLR 2018): classify which of 0°, 90°, 180°, 270° an image was rotated by.

2D rotates in the (H, W) plane; 3D volumes rotate in one plane (``plane``, default the axial
(H, W) plane). ``all_rotations=True`` (the paper) feeds all four copies of every image; False
draws one rotation per image (4× cheaper).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Pretext, randint


def rotate(x: torch.Tensor, k: torch.Tensor, plane: tuple[int, int] = (-2, -1)) -> torch.Tensor:
    """Rotate sample i by k[i]·90° in ``plane`` (two spatial axes; square in that plane)."""
    out = x.clone()
    for r in range(1, 4):
        sel = k == r
        if bool(sel.any()):
            out[sel] = torch.rot90(x[sel], r, dims=plane)
    return out


class Rotation(Pretext):
    name, family, paper = "rotation", "predictive", "Gidaris et al., ICLR 2018"

    def __init__(self, model, in_channels, size, dims, all_rotations: bool = True, plane=(-2, -1)):
        super().__init__(model, in_channels, size, dims)
        self.all_rotations, self.plane = bool(all_rotations), tuple(plane)
        self.head = nn.Linear(self.feat_dim, 4)

    def make_batch(self, x, generator=None):
        """→ (rotated images, rotation labels 0..3)."""
        n = len(x)
        if self.all_rotations:
            k = torch.arange(4, device=x.device).repeat_interleave(n)
            x = x.repeat(4, *([1] * (x.ndim - 1)))
        else:
            k = randint(0, 4, (n,), generator, x.device)
        return rotate(x, k, self.plane), k

    def predict(self, x01):
        return self.head(self.embed(x01))

    def loss(self, x, idx, generator=None):
        xr, k = self.make_batch(x, generator)
        logits = self.predict(xr)
        return F.cross_entropy(logits, k), {"pretext_acc": float((logits.argmax(1) == k).float().mean())}
