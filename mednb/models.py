"""One model registry for 2D and 3D classifiers (and, registered from other modules, segmenters).

``create(name, in_channels, num_classes, dims=2, size=28)``. Names:

* ``cnn`` — small 4-layer CNN (≈0.24M parameters in 2D, ≈0.18M in 3D); ``dims`` picks 2D/3D.
* ``resnet18``, ``resnet50`` — torchvision ResNets. ``stem="auto"`` uses the CIFAR stem (3×3
  stride-1 first conv, no max-pool) for inputs ≤ 32 px, as needed to reproduce MedMNIST v2 at
  28 px, and the torchvision stem (7×7 stride 2 + max-pool) for 64 px and up. With ``dims=3`` they
  become ``resnet*_3d``.
* ``resnet18_3d``/``resnet50_3d``, ``resnet18_2.5d``/``resnet50_2.5d``, ``resnet18_acs``/``resnet50_acs``
  — the 2D ResNet converted to volumes (MedMNIST v2's 3D rows) by :func:`to_3d`: full 3D kernels
  (I3D inflation), 2.5D kernels (1×k×k: per-slice 2D convolution), or ACS convolutions (Yang et
  al., "Reinventing 2D convolutions for 3D images", IEEE JBHI 2021: a 2D kernel applied along the
  axial, coronal and sagittal planes by a third of the output channels each).

Every classifier exposes ``features`` (the convolutional trunk, its children named stages) and
``head`` (pool + linear), so Grad-CAM and transfer code can address layers by name.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
CONV_MODES = ("3d", "2.5d", "acs")
#: ResNet stems: "auto" (CIFAR stem for inputs <= 32 px, else ImageNet), "cifar", "imagenet"
STEMS = ("auto", "cifar", "imagenet")


def register(name: str):
    """Decorator: add a builder ``fn(in_channels, num_classes, dims, size, **kw) -> nn.Module``."""
    def deco(fn):
        _REGISTRY[name.lower()] = fn
        return fn
    return deco


# modules that register more models (segmentation networks) when imported
_PLUGINS = ("mednb.seg",)


def _load_plugins() -> None:
    import importlib
    for mod in _PLUGINS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def names() -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY)


def create(name: str, in_channels: int = 1, num_classes: int = 2, dims: int = 2, size: int = 28,
           **kw) -> nn.Module:
    """Build a registered model. dims: 2 or 3. size: input side in pixels (picks stems)."""
    key = str(name).lower()
    if key not in _REGISTRY:
        _load_plugins()
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(names())}")
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    model = _REGISTRY[key](int(in_channels), int(num_classes), int(dims), int(size), **kw)
    model.mednb_name = key
    return model


def width_kw(name: str, width: int | None) -> dict:
    """``{"width": width}`` for the small-CNN family (``cnn``, ``cnn_3d``, ``cnn_2.5d``, ``cnn_acs``) when
    ``width`` is set (> 0), else ``{}``: the keyword :func:`create` takes, so a notebook's width knob can stay
    set while its model knob names a ResNet (which has no width)."""
    key = str(name).lower()
    return {"width": int(width)} if width and (key == "cnn" or key.startswith("cnn_")) else {}


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _ops(dims: int):
    if dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d
    return nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d


class Head(nn.Module):
    """Global average pool (2D or 3D by input rank) + dropout + linear."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x):
        x = x.mean(dim=tuple(range(2, x.ndim)))
        return self.fc(self.drop(x))


class Classifier(nn.Module):
    """``head(features(x))``; ``embed(x)`` gives the pooled features (N, F)."""

    def __init__(self, features: nn.Module, head: Head, dims: int):
        super().__init__()
        self.features = features
        self.head = head
        self.dims = dims

    def forward(self, x):
        return self.head(self.features(x))

    def embed(self, x):
        f = self.features(x)
        return f.mean(dim=tuple(range(2, f.ndim)))


@register("cnn")
def _cnn(in_channels, num_classes, dims, size, width: int | None = None, dropout: float = 0.0):
    Conv, BN, Pool, _ = _ops(dims)
    w = width or (32 if dims == 2 else 16)
    chans = [w, 2 * w, 4 * w, 4 * w]

    def block(cin, cout, pool):
        layers = [Conv(cin, cout, 3, padding=1, bias=False), BN(cout), nn.ReLU(inplace=True)]
        if pool:
            layers.append(Pool(2))
        return nn.Sequential(*layers)

    feats = nn.Sequential()
    cin = in_channels
    for i, (c, pool) in enumerate(zip(chans, (True, True, False, False))):
        feats.add_module(f"block{i + 1}", block(cin, c, pool))
        cin = c
    return Classifier(feats, Head(cin, num_classes, dropout), dims)


def _resnet2d(depth: int, in_channels: int, num_classes: int, size: int, stem: str = "auto",
              dropout: float = 0.0) -> Classifier:
    tv = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth](weights=None)
    if stem == "auto":
        stem = "cifar" if size <= 32 else "imagenet"
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
    if stem == "cifar":
        conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        maxpool = nn.Identity()
    else:
        conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False) if in_channels != 3 else tv.conv1
        maxpool = tv.maxpool
    feats = nn.Sequential()
    feats.add_module("stem", nn.Sequential(conv1, tv.bn1, tv.relu, maxpool))
    for i in range(1, 5):
        feats.add_module(f"layer{i}", getattr(tv, f"layer{i}"))
    model = Classifier(feats, Head(tv.fc.in_features, num_classes, dropout), 2)
    model.stem_kind = stem
    return model


def _resnet_builder(depth: int, conv: str | None):
    def build(in_channels, num_classes, dims, size, stem: str = "auto", dropout: float = 0.0):
        model = _resnet2d(depth, in_channels, num_classes, size, stem, dropout)
        mode = conv or ("3d" if dims == 3 else None)
        return to_3d(model, mode) if mode else model
    return build


for _d in (18, 50):
    register(f"resnet{_d}")(_resnet_builder(_d, None))
    for _m in CONV_MODES:
        register(f"resnet{_d}_{_m}")(_resnet_builder(_d, _m))


def _cnn_converted(mode: str):
    """The 2D ``cnn`` converted by :func:`to_3d` (same 2D design for the 2.5D/3D/ACS comparison)."""
    def build(in_channels, num_classes, dims, size, **kw):
        return to_3d(_cnn(in_channels, num_classes, 2, size, **kw), mode)
    return build


for _m in CONV_MODES:
    register(f"cnn_{_m}")(_cnn_converted(_m))


# ----------------------------------------------------------------------------- 2D -> 3D
class ACSConv(nn.Module):
    """ACS convolution: a 2D kernel (out, in, k, k) applied to volumes (N, C, D, H, W).

    Output channels are split in three groups convolving the axial (1,k,k), coronal (k,1,k) and
    sagittal (k,k,1) planes; the weight stays 2D, so 2D (pre-)trained weights load unchanged.
    """

    def __init__(self, conv2d: nn.Conv2d):
        super().__init__()
        if conv2d.groups != 1:
            raise ValueError("ACSConv supports groups=1 only")
        self.weight = nn.Parameter(conv2d.weight.detach().clone())
        self.bias = None if conv2d.bias is None else nn.Parameter(conv2d.bias.detach().clone())
        self.stride = conv2d.stride[0]
        self.padding = conv2d.padding[0]
        self.dilation = conv2d.dilation[0]
        out = self.weight.shape[0]
        a = (out + 2) // 3
        c = (out - a + 1) // 2
        self.splits = (a, c, out - a - c)
        self.in_channels, self.out_channels = conv2d.in_channels, out

    def forward(self, x):
        outs, start = [], 0
        p, s, d = self.padding, self.stride, self.dilation
        for axis, n in enumerate(self.splits):
            if n == 0:
                continue
            w = self.weight[start:start + n].unsqueeze(2 + axis)
            pad = [p, p, p]
            pad[axis] = 0
            b = None if self.bias is None else self.bias[start:start + n]
            outs.append(F.conv3d(x, w, b, s, tuple(pad), d))
            start += n
        return torch.cat(outs, dim=1)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel={tuple(self.weight.shape[2:])}, splits={self.splits}"


def _convert_conv(conv: nn.Conv2d, mode: str) -> nn.Module:
    if mode == "acs":
        return ACSConv(conv)
    k, s, p, d = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
    w = conv.weight.detach()
    if mode == "3d":  # I3D inflation: repeat along depth and divide by k
        new = nn.Conv3d(conv.in_channels, conv.out_channels, k, s, p, d, conv.groups, conv.bias is not None)
        new.weight.data.copy_(w.unsqueeze(2).repeat(1, 1, k, 1, 1) / k)
    else:  # 2.5d: per-slice 2D convolution
        new = nn.Conv3d(conv.in_channels, conv.out_channels, (1, k, k), (1, s, s), (0, p, p), (1, d, d),
                        conv.groups, conv.bias is not None)
        new.weight.data.copy_(w.unsqueeze(2))
    if conv.bias is not None:
        new.bias.data.copy_(conv.bias.detach())
    return new


def _convert_module(m: nn.Module, mode: str) -> nn.Module | None:
    if isinstance(m, nn.Conv2d):
        return _convert_conv(m, mode)
    if isinstance(m, nn.BatchNorm2d):
        bn = nn.BatchNorm3d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        bn.load_state_dict(m.state_dict())
        return bn
    if isinstance(m, nn.MaxPool2d):
        return nn.MaxPool3d(m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        return nn.AvgPool3d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool3d(m.output_size)
    if isinstance(m, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveMaxPool3d(m.output_size)
    return None


def to_3d(model: nn.Module, mode: str = "3d") -> nn.Module:
    """Convert a 2D CNN to volumes, keeping (inflating) its weights. mode: ``3d``, ``2.5d``, ``acs``.

    Returns a converted deep copy; the input model is untouched.
    """
    mode = str(mode).lower()
    if mode not in CONV_MODES:
        raise ValueError(f"unknown conversion {mode!r}; valid: {', '.join(CONV_MODES)}")
    model = copy.deepcopy(model)

    def walk(parent):
        for name, child in parent.named_children():
            new = _convert_module(child, mode)
            if new is not None:
                setattr(parent, name, new)
            else:
                walk(child)

    walk(model)
    if hasattr(model, "dims"):
        model.dims = 3
    model.conv_mode = mode
    return model
