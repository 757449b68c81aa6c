"""Two random "views" of each image for the joint-embedding methods (SimCLR, BYOL, Barlow Twins).

:func:`view` is mednb.ssl's own minimal view function (2D/3D by shape, per-sample parameters, batched
on the device): random resized crop (area ``scale`` of the image, aspect ratio 3/4…4/3) and flips
through one ``affine_grid`` resampling, then brightness/contrast jitter and Gaussian noise, scaled by
``strength``. :func:`get_views` picks :mod:`mednb.augment`'s ``strong`` policy when that module is
installed (default ``views="auto"``), else this function.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import rand, randn, spatial_dims


def view(x: torch.Tensor, generator=None, strength: float = 1.0, scale=(0.35, 1.0)) -> torch.Tensor:
    """One random view of a float [0,1] batch (N,C,*S) → same shape, in [0, 1]."""
    dims = spatial_dims(x)
    n, dev = len(x), x.device
    area = scale[1] - (scale[1] - scale[0]) * strength * rand(n, generator, dev)
    log_r = (rand((n, dims), generator, dev) * 2 - 1) * math.log(4 / 3)
    side = area[:, None] ** (1 / dims) * torch.exp(log_r - log_r.mean(1, keepdim=True))
    side = side.clamp(max=1.0)
    shift = (rand((n, dims), generator, dev) * 2 - 1) * (1 - side)
    sign = torch.where(rand((n, dims), generator, dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, dims, dims + 1, device=dev)
    idx = torch.arange(dims, device=dev)
    theta[:, idx, idx] = side * sign
    theta[:, :, dims] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    bshape = (n,) + (1,) * (x.ndim - 1)
    contrast = 1 + 0.4 * strength * (rand(n, generator, dev) * 2 - 1)
    bright = 0.4 * strength * (rand(n, generator, dev) * 2 - 1) * 0.5
    mean = y.mean(dim=tuple(range(1, y.ndim)), keepdim=True)
    y = (y - mean) * contrast.view(bshape) + mean + bright.view(bshape)
    y = y + 0.05 * strength * randn(y.shape, generator, dev)
    return y.clamp(0, 1)


def get_views(name: str | None = "auto", strength: float = 1.0, dims: int = 2):
    """A view function ``f(x, generator) -> x_view`` and where it comes from.

    ``"auto"`` (default): :mod:`mednb.augment`'s ``strong`` policy with a SimCLR-like crop (zoom up
    to 2×, ``crop_zoom=1.0``) when that module is available, else mednb.ssl's own :func:`view`;
    ``None``/``"ssl"``: the own view; any other name: that :mod:`mednb.augment` policy.
    Returns ``(fn, source)``.
    """
    if name == "auto":
        try:
            from .. import augment
        except ImportError:
            name = "ssl"
        else:
            policy = augment.get("strong", strength, dims, crop_zoom=1.0)
            return (lambda x, generator=None: policy(x, None, generator)[0].clamp(0, 1)), "augment:strong(crop_zoom=1)"
    if name in (None, "ssl"):
        return (lambda x, generator=None: view(x, generator, strength)), "ssl.view"
    from .. import augment
    policy = augment.get(name, strength, dims)
    return (lambda x, generator=None: policy(x, None, generator)[0].clamp(0, 1)), f"augment:{name}"
