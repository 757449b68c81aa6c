"""Simulated scanners: the acquisition profile of each MedMNIST hospital and the function applying it.

A profile changes how an image is acquired, not what it shows (a feature shift, as between scanners and
protocols): resolution (area down-sampling by the factor, then linear up-sampling back), Gaussian blur (sigma
in pixels), contrast (scaled about each image's mean), gamma (x ** gamma on [0, 1]) and Gaussian noise (sd on
[0, 1]), applied in that order. Site 0 is the reference: the images as published.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

SHIFTS = [  # site i of a MedMNIST set is acquired with SHIFTS[i]
    dict(scanner="reference", contrast=1.0, gamma=1.0, blur=0.0, noise=0.0, resolution=1.0),
    dict(scanner="low contrast, noisy", contrast=0.6, gamma=1.0, blur=0.0, noise=0.06, resolution=1.0),
    dict(scanner="blurry", contrast=1.0, gamma=1.0, blur=1.0, noise=0.01, resolution=1.0),
    dict(scanner="dark (gamma 1.8)", contrast=0.9, gamma=1.8, blur=0.0, noise=0.02, resolution=1.0),
    dict(scanner="low resolution", contrast=1.1, gamma=0.8, blur=0.0, noise=0.02, resolution=2.0),
]
# ranges of the seeded random profiles used beyond the table (sites ≥ len(SHIFTS))
SHIFT_RANGES = dict(contrast=(0.5, 1.2), gamma=(0.6, 2.0), blur=(0.0, 1.2), noise=(0.0, 0.08))


def site_shifts(n_sites: int, seed: int = 0) -> list[dict]:
    """Acquisition profile of sites 0..n_sites-1: :data:`SHIFTS`, then seeded draws from :data:`SHIFT_RANGES`."""
    rng = np.random.default_rng([int(seed), 7])
    out = [dict(s) for s in SHIFTS[:n_sites]]
    for i in range(len(out), n_sites):
        s = {k: round(float(rng.uniform(*r)), 3) for k, r in SHIFT_RANGES.items()}
        out.append(dict(scanner=f"random profile {i}", resolution=float(rng.choice([1.0, 1.5, 2.0])), **s))
    return out


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N,C,*spatial) float images (reflect padding), 2D or 3D."""
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    dims, c = x.ndim - 2, x.shape[1]
    conv = F.conv2d if dims == 2 else F.conv3d
    for axis in range(dims):
        shape = [1] * dims
        shape[axis] = len(k)
        pad = [0, 0] * dims
        pad[2 * (dims - 1 - axis)] = pad[2 * (dims - 1 - axis) + 1] = r
        x = conv(F.pad(x, pad, mode="reflect" if x.shape[2 + axis] > r else "replicate"),
                 k.view(1, 1, *shape).repeat(c, 1, *[1] * dims), groups=c)
    return x


def apply_shift(x: torch.Tensor, shift: dict, seed: int = 0) -> torch.Tensor:
    """Image ``x`` (uint8, (N,C,H,W) or (N,C,D,H,W)) as acquired by the scanner ``shift`` (uint8 out).

    The reference profile (all parameters neutral) returns ``x`` itself, unchanged. Noise is drawn from
    a generator seeded with ``seed``.
    """
    neutral = dict(contrast=1.0, gamma=1.0, blur=0.0, noise=0.0, resolution=1.0)
    if all(float(shift.get(k, v)) == v for k, v in neutral.items()) or len(x) == 0:
        return x
    y = x.float() / 255.0
    spatial = tuple(range(2, y.ndim))
    mode = "bilinear" if y.ndim == 4 else "trilinear"
    if shift.get("resolution", 1.0) > 1.0:
        low = F.interpolate(y, scale_factor=1.0 / shift["resolution"], mode="area")
        y = F.interpolate(low, size=y.shape[2:], mode=mode, align_corners=False)
    if shift.get("blur", 0.0) > 0:
        y = _gaussian_blur(y, float(shift["blur"]))
    if shift.get("contrast", 1.0) != 1.0:
        m = y.mean(dim=spatial, keepdim=True)
        y = (y - m) * float(shift["contrast"]) + m
    if shift.get("gamma", 1.0) != 1.0:
        y = y.clamp(0, 1) ** float(shift["gamma"])
    if shift.get("noise", 0.0) > 0:
        g = torch.Generator().manual_seed(int(seed))
        y = y + float(shift["noise"]) * torch.randn(y.shape, generator=g)
    return (y.clamp(0, 1) * 255).round().to(torch.uint8)
