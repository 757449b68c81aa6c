"""Shared base of the pretext methods: the :class:`Pretext` interface, a dims-generic decoder,
small MLP heads and the helpers every method uses.

A pretext method is an ``nn.Module`` that holds the classifier (``self.model``, a mednb
``Classifier``) plus its own heads. :func:`mednb.ssl.pretrain` calls, per epoch,
``start_epoch(x_all, device)`` and, per batch, ``loss(x, idx, generator) -> (loss, info)`` with
``x`` a float batch in [0, 1] (N,C,H,W) or (N,C,D,H,W) on the device and ``idx`` its row indices
in the unlabeled set, then ``after_step()`` once the optimizer stepped. Only ``self.model.features``
is transferred downstream; the heads stay in the method object.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..engine import normalize


def rand(shape, generator: torch.Generator | None, device, dtype=torch.float32) -> torch.Tensor:
    """Uniform [0,1) numbers drawn from ``generator`` (any device) and moved to ``device``."""
    gdev = generator.device if generator is not None else torch.device(device)
    return torch.rand(shape, generator=generator, device=gdev, dtype=dtype).to(device)


def randint(low: int, high: int, shape, generator: torch.Generator | None, device) -> torch.Tensor:
    gdev = generator.device if generator is not None else torch.device(device)
    return torch.randint(low, high, shape, generator=generator, device=gdev).to(device)


def randn(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    gdev = generator.device if generator is not None else torch.device(device)
    return torch.randn(shape, generator=generator, device=gdev).to(device)


def spatial_dims(x: torch.Tensor) -> int:
    if x.ndim not in (4, 5):
        raise ValueError(f"expected a batch (N,C,H,W) or (N,C,D,H,W), got shape {tuple(x.shape)}")
    return x.ndim - 2


@torch.no_grad()
def feature_shape(model: nn.Module, in_channels: int, size: int, dims: int) -> tuple[int, ...]:
    """Shape (F, h, w) or (F, d, h, w) of ``model.features`` on one input of side ``size``."""
    was = model.training
    model.eval()
    p = next(model.parameters())
    out = model.features(torch.zeros((1, in_channels) + (size,) * dims, device=p.device, dtype=p.dtype))
    model.train(was)
    return tuple(out.shape[1:])


def mlp(in_f: int, hidden: int, out_f: int, bn_last: bool = False) -> nn.Sequential:
    """Linear → BN → ReLU → Linear (the SimCLR/BYOL projection head), optional BN at the end."""
    layers = [nn.Linear(in_f, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_f)]
    if bn_last:
        layers.append(nn.BatchNorm1d(out_f, affine=False))
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """Upsample ``model.features`` output back to the input: (N,F,h,w) → (N,C,S,S), 2D or 3D.

    Stages of ×2 trilinear/bilinear upsampling + 3×3 conv + BN + ReLU halve the channels (≥ 16)
    until the side reaches ``size`` (a final interpolation fixes odd ratios, e.g. 7 → 28 is two
    stages; 4 → 28 is three stages then 32 → 28). A 1×1 conv maps to ``out_channels``; the output
    is unbounded (compare it with the *normalized* target, [-1, 1]).
    """

    def __init__(self, in_features: int, feat_side: int, out_channels: int, size: int, dims: int):
        super().__init__()
        Conv = nn.Conv2d if dims == 2 else nn.Conv3d
        BN = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.size, self.dims = int(size), int(dims)
        n_up = max(0, math.ceil(math.log2(max(size / max(feat_side, 1), 1))))
        blocks, c = [], in_features
        for _ in range(n_up):
            c_out = max(16, c // 2)
            blocks.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear" if dims == 2 else "trilinear",
                                                    align_corners=False),
                                        Conv(c, c_out, 3, padding=1, bias=False), BN(c_out), nn.ReLU(inplace=True)))
            c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.out = Conv(c, out_channels, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        y = self.blocks(f)
        if y.shape[-1] != self.size:
            y = F.interpolate(y, size=(self.size,) * self.dims, mode="bilinear" if self.dims == 2 else "trilinear",
                              align_corners=False)
        return self.out(y)


class Pretext(nn.Module):
    """Base class. Subclasses set ``name``, ``family``, ``paper`` and implement :meth:`loss`.

    model: a mednb ``Classifier`` (``features`` + ``head``); in_channels, size, dims: the input.
    """
    name = "pretext"
    family = ""
    paper = ""

    def __init__(self, model: nn.Module, in_channels: int, size: int, dims: int):
        super().__init__()
        self.model = model
        self.in_channels, self.size, self.dims = int(in_channels), int(size), int(dims)
        shape = feature_shape(model, in_channels, size, dims)
        self.feat_dim, self.feat_side = int(shape[0]), int(shape[-1])

    # -- hooks ------------------------------------------------------------------------------
    def start_epoch(self, x_all: torch.Tensor, device: torch.device, generator: torch.Generator,
                    batch_size: int = 256) -> dict:
        """Called before each epoch with the whole unlabeled set (uint8); returns values to log."""
        return {}

    def loss(self, x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None):
        """x: float [0,1] batch on the device; idx: its rows in the unlabeled set. → (loss, info dict)."""
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self) -> None:
        """Called after each optimizer step (BYOL's EMA update)."""

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    # -- helpers ----------------------------------------------------------------------------
    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        """Feature map of a [0,1] batch (normalized as in training)."""
        return self.model.features(normalize(x01))

    def embed(self, x01: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, F) of a [0,1] batch."""
        f = self.encode(x01)
        return f.mean(dim=tuple(range(2, f.ndim)))


class TwoViewPretext(Pretext):
    """Two augmented views per image → shared encoder → projection MLP (SimCLR, Barlow Twins).
    Subclasses implement :meth:`pair_loss` on the two (N, proj_dim) projections."""

    def __init__(self, model, in_channels, size, dims, proj_dim: int, hidden: int = 256,
                 views: str | None = "auto", strength: float = 1.0):
        super().__init__(model, in_channels, size, dims)
        from .views import get_views
        self.views, self.view_source = get_views(views, strength, dims)
        self.projector = mlp(self.feat_dim, hidden, proj_dim)

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x, idx, generator=None):
        v1, v2 = self.views(x, generator), self.views(x, generator)
        z = self.projector(self.embed(torch.cat([v1, v2])))
        return self.pair_loss(*z.chunk(2)), {}
