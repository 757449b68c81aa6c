"""Building the 2D models that receive transferred weights, and loading a ``features`` body into them."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .. import models

#: the models transfer builds in 2D (and inflates for 3D)
MODELS = ("cnn", "resnet18", "resnet50")


class Resize(nn.Module):
    """Upsample (N,C,H,W) / (N,C,D,H,W) inputs to ``size`` px (bilinear / trilinear)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def forward(self, x):
        mode = "bilinear" if x.ndim == 4 else "trilinear"
        return nn.functional.interpolate(x, size=(self.size,) * (x.ndim - 2), mode=mode, align_corners=False)

    def extra_repr(self):
        return f"size={self.size}"


def create2d(model: str, in_channels: int, num_classes: int, size: int = 28, *, stem: str = "imagenet",
             input_size: int | None = None, **model_kw) -> nn.Module:
    """A 2D mednb classifier for ``size`` px data; ResNets get ``stem``; ``input_size`` > size
    prepends a ``resize`` stage to ``features`` (the model then works at ``input_size``)."""
    name = str(model).lower()
    if name not in MODELS:
        raise ValueError(f"transfer builds 2D models and inflates them for 3D; valid models: {', '.join(MODELS)} "
                         f"(got {model!r})")
    work = int(input_size or size)
    kw = dict(model_kw)
    if name.startswith("resnet"):
        kw["stem"] = stem
    net = models.create(name, in_channels, num_classes, dims=2, size=work, **kw)
    if work > size:
        feats = nn.Sequential()
        feats.add_module("resize", Resize(work))
        for n, m in net.features.named_children():
            feats.add_module(n, m)
        net.features = feats
    return net


def _adapt_first_conv(w: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Source conv weight (O, C_src, k…) → (O, in_channels, k…): sum for RGB→grey, repeat/C for grey→C."""
    c = w.shape[1]
    if c == in_channels:
        return w
    if in_channels == 1:
        return w.sum(1, keepdim=True)
    if c == 1:
        return w.repeat(1, in_channels, *([1] * (w.ndim - 2))) / in_channels
    raise ValueError(f"cannot adapt a {c}-channel first convolution to {in_channels} channels")


def body_state(state: dict) -> dict:
    """The ``features.*`` entries of a state dict, with any prefix before ``features.`` removed
    (SSL checkpoints store ``model.features.…``)."""
    out = {}
    for k, v in state.items():
        i = k.find("features.")
        if i >= 0 and (i == 0 or k[i - 1] == "."):
            out.setdefault(k[i:], v)
    return out


def load_body(model: nn.Module, state, adapt_channels: bool = True) -> list[str]:
    """Copy ``features.*`` weights into ``model`` (the head is left as it is).

    state: a state dict, an ``nn.Module`` or a checkpoint path of ``engine.save_checkpoint``.
    Every ``features`` tensor of ``model`` must be present with the same shape (the first conv
    may differ in input channels when ``adapt_channels``). Returns the loaded keys.
    """
    if isinstance(state, (str, Path)):
        state = torch.load(state, map_location="cpu", weights_only=True)["state_dict"]
    if isinstance(state, nn.Module):
        state = state.state_dict()
    src = body_state(state)
    own = {k: v for k, v in model.state_dict().items() if k.startswith("features.")}
    if not src:
        raise ValueError("the source has no 'features.*' weights")
    first = next((k for k, v in own.items() if v.ndim >= 4), None)
    new, bad = {}, []
    for k, v in own.items():
        s = src.get(k)
        if s is None and k.endswith("num_batches_tracked"):
            continue  # older torchvision files do not store it
        if s is not None and s.shape != v.shape and k == first and adapt_channels:
            s = _adapt_first_conv(s, v.shape[1])
        if s is None or s.shape != v.shape:
            bad.append(f"{k} {tuple(v.shape)} vs {None if s is None else tuple(s.shape)}")
        else:
            new[k] = s
    if bad:
        raise ValueError(f"source weights do not fit the model ({len(bad)} tensors), e.g. {'; '.join(bad[:3])}")
    model.load_state_dict(new, strict=False)
    return list(new)

