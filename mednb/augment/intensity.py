"""The intensity part of a policy (image only; masks are never touched).

Gamma, contrast around the mean and brightness come from kornia (``adjust_gamma``,
``adjust_contrast_with_mean_subtraction``, ``adjust_brightness``), each with one value per sample.
Gaussian noise is drawn on the batch's device from a generator seeded from the drawn parameters.
"""
from __future__ import annotations

import torch


def adjust(x: torch.Tensor, p: dict) -> torch.Tensor:
    """Per-sample gamma, contrast and brightness of float [0,1] ``x`` from ``p``."""
    from kornia.enhance import adjust_brightness, adjust_contrast_with_mean_subtraction, adjust_gamma
    dev = x.device
    x = adjust_gamma(x.clamp(0, 1), p["gamma"].to(dev, x.dtype))
    x = adjust_contrast_with_mean_subtraction(x, p["contrast"].to(dev, x.dtype))
    return adjust_brightness(x, p["brightness"].to(dev, x.dtype))


def add_noise(x: torch.Tensor, p: dict) -> torch.Tensor:
    """``x`` plus Gaussian noise of per-sample sd ``p["noise_sd"]``, clamped to [0, 1]."""
    n, dev = x.shape[0], x.device
    g = torch.Generator(device=dev).manual_seed(int(p["noise_seed"]))
    eps = torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype)
    return (x + eps * p["noise_sd"].to(dev, x.dtype).view(n, *([1] * (x.ndim - 1)))).clamp(0, 1)
