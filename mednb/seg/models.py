"""The segmentation models in mednb's model registry: ``unet``, ``wide_unet`` and ``unetpp``.

``wide_unet`` is a U-Net made wider until its parameter count matches UNet++ at the same width and
depth — the control of Zhou et al. 2018 (Table 1: 35-70-140-280-560 filters instead of 32-64-…),
so that a gain of UNet++ cannot be explained by parameters alone.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .. import models
from ..runtime import check_name
from .unetpp import UNet, UNetPlusPlus

SEG_MODELS = ("unet", "wide_unet", "unetpp")


def _unet_params(in_channels, num_classes, dims, width, depth) -> int:
    with torch.device("meta"):
        return models.count_parameters(UNet(in_channels, num_classes, dims, width, depth))


def _unetpp_params(in_channels, num_classes, dims, width, depth, deep_supervision=False) -> int:
    with torch.device("meta"):
        return models.count_parameters(UNetPlusPlus(in_channels, num_classes, dims, width, depth, deep_supervision))


def wide_width(width: int, depth: int, in_channels: int = 1, num_classes: int = 2, dims: int = 2) -> int:
    """The U-Net width whose parameter count is closest to UNet++ (no deep supervision) at ``width``."""
    target = _unetpp_params(in_channels, num_classes, dims, width, depth)
    best, best_err = width, math.inf
    for w in range(width, 2 * width + 2):
        err = abs(_unet_params(in_channels, num_classes, dims, w, depth) - target)
        if err < best_err:
            best, best_err = w, err
        elif _unet_params(in_channels, num_classes, dims, w, depth) > target:
            break
    return best


@models.register("unet")
def _build_unet(in_channels, num_classes, dims, size, width: int = 32, depth: int = 4):
    return UNet(in_channels, num_classes, dims, width, depth)


@models.register("wide_unet")
def _build_wide_unet(in_channels, num_classes, dims, size, width: int = 32, depth: int = 4):
    """U-Net made wider (``wide_width``) to match UNet++'s parameter count at ``width``."""
    m = UNet(in_channels, num_classes, dims, wide_width(width, depth, in_channels, num_classes, dims), depth)
    m.matched_width = width
    return m


@models.register("unetpp")
def _build_unetpp(in_channels, num_classes, dims, size, width: int = 32, depth: int = 4,
                  deep_supervision: bool = False, mode: str = "accurate", prune_level: int | None = None):
    return UNetPlusPlus(in_channels, num_classes, dims, width, depth, deep_supervision, mode, prune_level)


def create(name: str, in_channels: int = 1, num_classes: int = 2, dims: int = 2, **kw) -> nn.Module:
    """A segmentation model by name (``unet``, ``wide_unet``, ``unetpp``); errors list valid names."""
    return models.create(check_name(name, SEG_MODELS, "segmentation model"), in_channels, num_classes, dims=dims, **kw)


def param_count(name: str, in_channels: int = 1, num_classes: int = 2, dims: int = 2, **kw) -> int:
    """Parameters of a segmentation model, counted without allocating weights (meta device)."""
    with torch.device("meta"):
        return models.count_parameters(create(name, in_channels, num_classes, dims=dims, **kw))
