"""Elastic displacement fields (Simard, Steinkraus & Platt, ICDAR 2003), 2D and 3D.

A uniform random displacement field is smoothed by a Gaussian of σ px and scaled by α px. The
smoothing is done in the Fourier domain (periodic border): the Simard kernel (σ = 4 px, ±3σ) is as
wide as a 28-px image, so a spatial convolution would cost ~25 taps per voxel per axis, the FFT ~log N.
kornia has an elastic transform for 2D only; this one serves 2D and 3D alike.
"""
from __future__ import annotations

import math

import torch


def gaussian_transfer(sigma: float, spatial, device=None, full: bool = False) -> torch.Tensor:
    """Fourier transfer function of a Gaussian of ``sigma`` px on a periodic grid ``spatial``
    (last axis halved as in ``rfftn`` unless ``full``)."""
    d, H = len(spatial), torch.ones((), device=device)
    for i, L in enumerate(spatial):
        f = torch.fft.rfftfreq(L, device=device) if (i == d - 1 and not full) else torch.fft.fftfreq(L, device=device)
        shape = [1] * d
        shape[i] = -1
        H = H * torch.exp(-2 * math.pi ** 2 * sigma ** 2 * f ** 2).view(shape)
    return H


def gaussian_smooth(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of (N,K,*spatial) over every spatial axis, via the FFT (periodic border)."""
    spatial = field.shape[2:]
    dims = tuple(range(2, field.ndim))
    H = gaussian_transfer(sigma, spatial, field.device).to(field.dtype)
    return torch.fft.irfftn(torch.fft.rfftn(field, dim=dims) * H, s=spatial, dim=dims)


def smooth_gain(sigma: float, spatial) -> float:
    """RMS of a Gaussian-smoothed white field relative to the unsmoothed one (Parseval)."""
    return float(gaussian_transfer(sigma, spatial, full=True).pow(2).mean().sqrt())


def displacement(n: int, spatial, sigma: float, alpha: float, seed: int, device,
                 dtype=torch.float32) -> torch.Tensor:
    """Elastic displacement (N, *spatial, d) in normalized grid units.

    ``sigma`` and ``alpha`` are in px of a 28-px image and scale with the smallest side of
    ``spatial``. In 3D, α is rescaled so that the RMS displacement equals the 2D one for the same σ
    (smoothing a 3D field shrinks it more). The field is drawn on ``device`` from a generator
    seeded with ``seed``.
    """
    d = len(spatial)
    size = min(spatial)
    sigma = sigma * size / 28
    alpha = alpha * size / 28
    if d == 3:
        alpha = alpha * smooth_gain(sigma, (size, size)) / smooth_gain(sigma, (size,) * 3)
    g = torch.Generator(device=device).manual_seed(seed)
    field = torch.rand(n, d, *spatial, generator=g, device=device, dtype=dtype) * 2 - 1
    field = gaussian_smooth(field, sigma) * alpha  # in px
    # channel k of the grid is the k-th coordinate (x, y[, z]) = spatial axes reversed
    px_to_norm = torch.tensor([2.0 / s for s in reversed(spatial)], device=device, dtype=dtype)
    return field.movedim(1, -1) * px_to_norm
