"""Segmentation networks: U-Net and UNet++ (2D and 3D), registered in :mod:`mednb.seg.models`.

* U-Net (Ronneberger et al., MICCAI 2015): a contracting path (two 3×3 convolutions + max-pool
  per level) and an expanding path (2×2 up-convolution, concatenation with the encoder feature
  map of the same level — the *skip connection* — then two 3×3 convolutions).
* UNet++ (Zhou et al., DLMIA 2018; IEEE TMI 2019, "UNet++: Redesigning skip connections to
  exploit multiscale features in image segmentation"): the plain skip is replaced by a grid of
  nested, dense convolution nodes. Node ``X^{i,j}`` (level ``i`` = resolution 2^-i, column ``j``)
  is a conv block applied to the concatenation of every node to its left on the same level
  ``X^{i,0..j-1}`` and the up-sampled ``X^{i+1,j-1}``. ``X^{i,0}`` is the encoder.
  Deep supervision puts a 1×1 head on every ``X^{0,j}``, j = 1..L; the "accurate" mode averages
  the heads' probabilities, the "fast" mode takes one head. Because ``X^{i,j}`` only depends on
  nodes with ``i'+j' <= i+j``, running only the nodes with ``i+j <= k`` gives the level-k pruned
  network UNet++ L^k, whose output is exactly head ``X^{0,k}`` of the full network.

Shapes: input (N, C, H, W) or (N, C, D, H, W) of any size (padded to a multiple of 2^depth and
cropped back). ``forward`` returns logits (N, K, ...) — except a deeply supervised UNet++ in
training mode, which returns the list of its head logits ``[X^{0,1}, …, X^{0,k}]`` (the loss,
:class:`mednb.seg.metrics.DiceCELoss`, averages over them). In eval mode "accurate" returns
``log(mean softmax)`` over the heads (a valid logit tensor: its softmax is the averaged probability).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

MODES = ("accurate", "fast")


def _ops(dims: int):
    if dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ConvTranspose2d
    if dims == 3:
        return nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.ConvTranspose3d
    raise ValueError(f"dims must be 2 or 3, got {dims!r}")


class ConvBlock(nn.Sequential):
    """(3×3 conv → BN → ReLU) × 2; 2D or 3D."""

    def __init__(self, cin: int, cout: int, dims: int):
        Conv, BN, _, _ = _ops(dims)
        super().__init__(Conv(cin, cout, 3, padding=1, bias=False), BN(cout), nn.ReLU(inplace=True),
                         Conv(cout, cout, 3, padding=1, bias=False), BN(cout), nn.ReLU(inplace=True))


def widths(width: int, depth: int) -> list[int]:
    """Channels per level: ``width · 2^i`` for i = 0..depth (the paper: 32, 64, 128, 256, 512)."""
    return [int(width) * 2 ** i for i in range(depth + 1)]


def _pad_to(x: torch.Tensor, multiple: int):
    """Zero-pad the spatial dims of ``x`` at the end to a multiple; returns (x, original sizes)."""
    sizes = x.shape[2:]
    pad = []
    for s in reversed(sizes):
        pad += [0, (-s) % multiple]
    if any(pad):
        x = F.pad(x, pad)
    return x, sizes


def _crop(x: torch.Tensor, sizes) -> torch.Tensor:
    return x[(slice(None), slice(None)) + tuple(slice(0, s) for s in sizes)]


class Encoder(nn.Module):
    """The contracting path ``X^{0,0} … X^{L,0}`` shared by U-Net and UNet++."""

    def __init__(self, in_channels: int, chans: list[int], dims: int):
        super().__init__()
        _, _, Pool, _ = _ops(dims)
        self.pool = Pool(2)
        self.blocks = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.blocks.append(ConvBlock(cin, c, dims))
            cin = c

    def forward(self, x, levels: int | None = None):
        """Feature maps of levels 0..levels (default all)."""
        n = len(self.blocks) if levels is None else levels + 1
        out = []
        for i in range(n):
            x = self.blocks[i](x if i == 0 else self.pool(x))
            out.append(x)
        return out


class UNet(nn.Module):
    """U-Net with ``depth`` down-samplings and ``width`` channels at full resolution (2D/3D)."""

    def __init__(self, in_channels: int, num_classes: int, dims: int = 2, width: int = 32, depth: int = 4):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        _, _, _, Up = _ops(dims)
        Conv = _ops(dims)[0]
        self.dims, self.depth, self.width = dims, depth, width
        c = widths(width, depth)
        self.encoder = Encoder(in_channels, c, dims)
        self.up = nn.ModuleList(Up(c[i + 1], c[i], 2, stride=2) for i in range(depth))
        self.decoder = nn.ModuleList(ConvBlock(2 * c[i], c[i], dims) for i in range(depth))
        self.head = Conv(c[0], num_classes, 1)

    def forward(self, x):
        x, sizes = _pad_to(x, 2 ** self.depth)
        feats = self.encoder(x)
        y = feats[-1]
        for i in reversed(range(self.depth)):
            y = self.decoder[i](torch.cat([feats[i], self.up[i](y)], 1))
        return _crop(self.head(y), sizes)


class UNetPlusPlus(nn.Module):
    """UNet++ L^depth with nested dense skips; optional deep supervision and pruning (see module doc).

    deep_supervision: a 1×1 head on every ``X^{0,j}`` (j = 1..depth), trained jointly.
    mode: ``"accurate"`` (average the heads' probabilities) or ``"fast"`` (one head, ``X^{0,prune_level}``).
    prune_level: None (= depth) or 1..depth — run only the nodes with i + j <= prune_level.
    Pruning below ``depth`` needs ``deep_supervision=True`` (only then are the shallow heads trained).
    """

    def __init__(self, in_channels: int, num_classes: int, dims: int = 2, width: int = 32, depth: int = 4,
                 deep_supervision: bool = False, mode: str = "accurate", prune_level: int | None = None):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        Conv, _, _, Up = _ops(dims)
        self.dims, self.depth, self.width = dims, depth, width
        self.deep_supervision = bool(deep_supervision)
        c = widths(width, depth)
        self.encoder = Encoder(in_channels, c, dims)
        # node X^{i,j}, j >= 1, i + j <= depth: conv(cat(X^{i,0..j-1}, up(X^{i+1,j-1})))
        self.nodes = nn.ModuleDict()
        self.ups = nn.ModuleDict()
        for j in range(1, depth + 1):
            for i in range(0, depth - j + 1):
                self.ups[f"{i}_{j}"] = Up(c[i + 1], c[i], 2, stride=2)
                self.nodes[f"{i}_{j}"] = ConvBlock((j + 1) * c[i], c[i], dims)
        js = range(1, depth + 1) if self.deep_supervision else [depth]
        self.heads = nn.ModuleDict({str(j): Conv(c[0], num_classes, 1) for j in js})
        self.mode = mode
        self.prune_level = prune_level
        self._check(mode, prune_level)

    def _check(self, mode, level):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        if level is not None:
            if not 1 <= int(level) <= self.depth:
                raise ValueError(f"prune_level must be in 1..{self.depth}, got {level!r}")
            if int(level) < self.depth and str(int(level)) not in self.heads:
                raise ValueError(f"prune_level {level} needs deep_supervision=True (no trained head on X^0,{level})")

    def head_logits(self, x, level: int | None = None) -> list[torch.Tensor]:
        """Logits of every existing head ``X^{0,j}``, j <= level, computing only nodes with i+j <= level."""
        level = self.depth if level is None else int(level)
        x, sizes = _pad_to(x, 2 ** self.depth)
        enc = self.encoder(x, levels=level)
        grid = {(i, 0): f for i, f in enumerate(enc)}
        for s in range(1, level + 1):  # anti-diagonals: every node with i + j = s
            for j in range(1, s + 1):
                i = s - j
                key = f"{i}_{j}"
                inputs = [grid[(i, jj)] for jj in range(j)] + [self.ups[key](grid[(i + 1, j - 1)])]
                grid[(i, j)] = self.nodes[key](torch.cat(inputs, 1))
        return [_crop(self.heads[str(j)](grid[(0, j)]), sizes)
                for j in range(1, level + 1) if str(j) in self.heads]

    def forward(self, x, prune_level: int | None = None, mode: str | None = None):
        level = prune_level if prune_level is not None else self.prune_level
        mode = mode or self.mode
        self._check(mode, level)
        level = self.depth if level is None else int(level)
        if self.training and self.deep_supervision:
            return self.head_logits(x, level)
        if mode == "fast" or not self.deep_supervision:
            # only the last head of the (pruned) grid; computes nodes with i + j <= level only
            return self.head_logits(x, level)[-1]
        outs = self.head_logits(x, level)
        if len(outs) == 1:
            return outs[0]
        probs = torch.stack([o.float().softmax(1) for o in outs]).mean(0)
        return probs.clamp_min(1e-12).log()


def pruned(model: UNetPlusPlus, level: int) -> UNetPlusPlus:
    """A standalone copy of UNet++ L^level: only the nodes with i + j <= level and head X^{0,level}.

    Its output equals ``model.head_logits(x)[level-1]`` of the full model (same weights); it has
    fewer parameters (the pruning table counts them).
    """
    model._check("fast", level)
    level = int(level)
    m = copy.deepcopy(model)
    m.encoder.blocks = m.encoder.blocks[:level + 1]
    keep = {f"{i}_{j}" for j in range(1, level + 1) for i in range(0, level - j + 1)}
    m.nodes = nn.ModuleDict({k: v for k, v in m.nodes.items() if k in keep})
    m.ups = nn.ModuleDict({k: v for k, v in m.ups.items() if k in keep})
    m.heads = nn.ModuleDict({str(level): m.heads[str(level)]})
    m.deep_supervision = False
    m.prune_level = level
    m.mode = "fast"
    return m
