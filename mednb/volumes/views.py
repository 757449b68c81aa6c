"""Maximum-intensity projections of volumes and the 2.5D / 3D / ACS conversions of one 2D design.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import models
from .profiles import CONVS


AXES = {"axial": 0, "coronal": 1, "sagittal": 2}


def mip(volume, axis: str | int = "axial") -> torch.Tensor:
    """Maximum-intensity projection. volume: (C,D,H,W) or (D,H,W); axis: axial/coronal/sagittal or 0–2.

    Returns (C,H,W)-like (or 2D) projections of the same dtype.
    """
    v = torch.as_tensor(volume)
    if isinstance(axis, str):
        if axis not in AXES:
            raise ValueError(f"unknown axis {axis!r}; valid: {', '.join(AXES)}")
        axis = AXES[axis]
    if v.ndim not in (3, 4):
        raise ValueError(f"volume must be (C,D,H,W) or (D,H,W), got shape {tuple(v.shape)}")
    return v.amax(dim=axis + (v.ndim - 3))


def plot_mip(volume, mask=None, title: str | None = None):
    """The three MIPs of a volume side by side (mask MIPs as red contours)."""
    from .. import plot
    flat = lambda p: (p[0] if p.ndim == 3 else p).float()
    return plot.side_by_side([(flat(mip(volume, name)), None if mask is None else flat(mip(mask, name)), f"MIP {name}")
                              for name in AXES], title=title)


def conv_model(conv: str, in_channels: int, num_classes: int, size: int = 28, backbone: str = "cnn",
               width: int | None = None) -> nn.Module:
    """``backbone`` (``cnn``, ``resnet18``, ``resnet50``) as a 2.5D, 3D or ACS volume classifier."""
    if conv not in CONVS:
        raise ValueError(f"unknown conv {conv!r}; valid: {', '.join(CONVS)}")
    kw = models.width_kw(backbone, width)
    return models.create(f"{backbone}_{conv}", in_channels, num_classes, dims=3, size=size, **kw)


