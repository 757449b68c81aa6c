"""Models Genesis (Zhou et al., "Models Genesis: Generic Autodidactic Models for 3D Medical Image
Analysis", MICCAI 2019; MedIA 2021): restore the original image from a transformed one.

Transforms, in the paper's order and with its probabilities, all vectorized over the batch with
per-sample parameters, on float [0,1] batches (N,C,H,W) or (N,C,D,H,W) — 2D or 3D by shape:

1. ``flip`` (p 0.4 per spatial axis) — applied to input *and* target;
2. ``local_shuffle`` (p 0.5) — pixels permuted inside small blocks (texture destroyed, shape kept);
3. ``nonlinear`` (p 0.9) — intensity remapped through a random cubic Bézier curve (p 0.5 inverted);
4. painting (p 0.9): ``outpaint`` (p 0.8: noise outside a few kept boxes) or else ``inpaint``
   (noise inside up to five boxes).

:func:`transform` returns ``(x_transformed, target)``; every output stays in [0, 1], keeps the
shape, and is the identity when every probability is 0. :class:`Genesis` is the pretext method:
an encoder–decoder trained with MSE to predict ``target``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..engine import normalize
from .base import Decoder, Pretext, rand, randint, spatial_dims

PROBS = dict(flip=0.4, local_shuffle=0.5, nonlinear=0.9, paint=0.9, outpaint=0.8)


def _bcast(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return mask.view((-1,) + (1,) * (x.ndim - 1))


def flip(x: torch.Tensor, prob: float = 0.4, generator=None, others=()):
    """Flip each spatial axis of each sample with probability ``prob``; ``others`` flip alike."""
    outs = [x, *others]
    for ax in range(2, x.ndim):
        m = _bcast(rand(len(x), generator, x.device) < prob, x)
        outs = [torch.where(m, t.flip(ax), t) for t in outs]
    return outs[0] if not others else tuple(outs)


def bezier_luts(n: int, generator=None, device="cpu", n_t: int = 256, invert_prob: float = 0.5):
    """Per-sample monotone intensity curves: (xs, ys) each (n, n_t), xs sorted in [0, 1].

    Control points (0,0), P1, P2 ∈ [0,1]², (1,1); B(t) sampled at ``n_t`` points, sorted by x.
    With probability ``invert_prob`` the y values are sorted descending (an inverted contrast),
    as the paper's half-chance "flip" of the curve.
    """
    t = torch.linspace(0, 1, n_t, device=device)
    p = rand((n, 2, 2), generator, device)  # P1, P2: (n, point, xy)
    b1, b2, b3 = 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3  # P0 = (0,0) contributes nothing
    xs = b1 * p[:, 0, :1] + b2 * p[:, 1, :1] + b3
    ys = b1 * p[:, 0, 1:] + b2 * p[:, 1, 1:] + b3
    xs, _ = xs.sort(dim=1)
    ys, _ = ys.sort(dim=1)
    inv = rand(n, generator, device) < invert_prob
    ys = torch.where(inv[:, None], ys.flip(1), ys)
    return xs.clamp(0, 1), ys.clamp(0, 1)


def nonlinear(x: torch.Tensor, prob: float = 0.9, generator=None) -> torch.Tensor:
    """Bézier intensity transform of each sample with probability ``prob`` (batched interpolation)."""
    n = len(x)
    xs, ys = bezier_luts(n, generator, x.device)
    flat = x.reshape(n, -1).clamp(0, 1).contiguous()
    j = torch.searchsorted(xs.contiguous(), flat).clamp(1, xs.shape[1] - 1)
    x0, x1 = xs.gather(1, j - 1), xs.gather(1, j)
    y0, y1 = ys.gather(1, j - 1), ys.gather(1, j)
    w = ((flat - x0) / (x1 - x0).clamp_min(1e-8)).clamp(0, 1)
    out = (y0 + w * (y1 - y0)).reshape(x.shape)
    m = _bcast(rand(n, generator, x.device) < prob, x)
    return torch.where(m, out, x)


def local_shuffle(x: torch.Tensor, prob: float = 0.5, generator=None, block: int | None = None) -> torch.Tensor:
    """Permute pixels inside every small block (side ``block``, default random 2…max(2, S//8)) of
    each selected sample; a random grid offset per call. Pixel values are only moved, never changed."""
    dims = spatial_dims(x)
    n, c = x.shape[:2]
    size = x.shape[2:]
    if block is None:
        block = int(randint(2, max(3, min(size) // 8 + 1), (1,), generator, "cpu"))
    block = max(1, min(int(block), min(size)))
    nb = [s // block for s in size]
    off = [int(randint(0, s - k * block + 1, (1,), generator, "cpu")) for s, k in zip(size, nb)]
    sl = (slice(None), slice(None)) + tuple(slice(o, o + k * block) for o, k in zip(off, nb))
    core = x[sl]
    if dims == 2:
        v = core.reshape(n, c, nb[0], block, nb[1], block).permute(0, 1, 2, 4, 3, 5)
    else:
        v = core.reshape(n, c, nb[0], block, nb[1], block, nb[2], block).permute(0, 1, 2, 4, 6, 3, 5, 7)
    vshape = v.shape
    nblk, bp = int(torch.tensor(nb).prod()), block ** dims
    v = v.reshape(n, c, nblk, bp)
    perm = rand((n, 1, nblk, bp), generator, x.device).argsort(dim=-1).expand(n, c, nblk, bp)
    v = v.gather(-1, perm).reshape(vshape)
    inv = (0, 1, 2, 4, 3, 5) if dims == 2 else (0, 1, 2, 5, 3, 6, 4, 7)
    shuffled = x.clone()
    shuffled[sl] = v.permute(*inv).reshape(core.shape)
    m = _bcast(rand(n, generator, x.device) < prob, x)
    return torch.where(m, shuffled, x)


def _boxes(x: torch.Tensor, n_boxes: int, lo: float, hi: float, chain: float, generator) -> torch.Tensor:
    """Union of up to ``n_boxes`` random boxes per sample (sides in [lo, hi]·S); box k>0 exists with
    probability ``chain**k`` (the paper's ``while random() < 0.95`` loop). → bool (N,1,*spatial)."""
    n, dev, size = len(x), x.device, x.shape[2:]
    dims = len(size)
    mask = torch.zeros((n, 1) + tuple(size), dtype=torch.bool, device=dev)
    alive = torch.ones(n, dtype=torch.bool, device=dev)
    for k in range(n_boxes):
        if k > 0:
            alive = alive & (rand(n, generator, dev) < chain)
        box = torch.ones_like(mask)
        for d, s in enumerate(size):
            side = (lo + (hi - lo) * rand(n, generator, dev)) * s
            side = side.round().clamp(1, s - 1)
            start = (rand(n, generator, dev) * (s - side + 1)).floor()
            coord = torch.arange(s, device=dev, dtype=torch.float32)
            inside = (coord[None] >= start[:, None]) & (coord[None] < (start + side)[:, None])  # (n, s)
            shape = [n, 1] + [1] * dims
            shape[2 + d] = s
            box = box & inside.view(shape)
        mask |= box & _bcast(alive, mask)
    return mask


def inpaint(x: torch.Tensor, generator=None, n_boxes: int = 5, chain: float = 0.95) -> torch.Tensor:
    """Replace up to five boxes (sides S/6…S/3) by uniform noise."""
    m = _boxes(x, n_boxes, 1 / 6, 1 / 3, chain, generator)
    return torch.where(m, rand(x.shape, generator, x.device), x)


def outpaint(x: torch.Tensor, generator=None, n_boxes: int = 5, chain: float = 0.95) -> torch.Tensor:
    """Replace everything by noise except up to five boxes (sides 3S/7…4S/7) that keep the image."""
    m = _boxes(x, n_boxes, 3 / 7, 4 / 7, chain, generator)
    return torch.where(m, x, rand(x.shape, generator, x.device))


def paint(x: torch.Tensor, prob: float = 0.9, outpaint_prob: float = 0.8, generator=None) -> torch.Tensor:
    """With probability ``prob`` paint each sample: out-painting (``outpaint_prob``) or in-painting."""
    n = len(x)
    do = rand(n, generator, x.device) < prob
    out = rand(n, generator, x.device) < outpaint_prob
    if not bool(do.any()):
        return x
    y_in, y_out = inpaint(x, generator), outpaint(x, generator)
    painted = torch.where(_bcast(out, x), y_out, y_in)
    return torch.where(_bcast(do, x), painted, x)


def transform(x: torch.Tensor, generator=None, *, flip_prob: float = PROBS["flip"],
              local_shuffle_prob: float = PROBS["local_shuffle"], nonlinear_prob: float = PROBS["nonlinear"],
              paint_prob: float = PROBS["paint"], outpaint_prob: float = PROBS["outpaint"]):
    """The Models Genesis pipeline on a float [0,1] batch → ``(x_transformed, target)``.

    ``target`` is the (possibly flipped) original; both have ``x``'s shape and lie in [0, 1].
    """
    spatial_dims(x)
    x = x.float()
    if flip_prob > 0:
        x = flip(x, flip_prob, generator)
    target = x
    y = x
    if local_shuffle_prob > 0:
        y = local_shuffle(y, local_shuffle_prob, generator)
    if nonlinear_prob > 0:
        y = nonlinear(y, nonlinear_prob, generator)
    if paint_prob > 0:
        y = paint(y, paint_prob, outpaint_prob, generator)
    return y.clamp(0, 1), target


class GenesisTransform:
    """Callable with fixed probabilities: ``t(x, generator) -> (x_transformed, target)``."""

    def __init__(self, **probs):
        unknown = set(probs) - {f"{k}_prob" for k in PROBS}
        if unknown:
            raise ValueError(f"unknown Genesis probability {sorted(unknown)}; valid: "
                             + ", ".join(f"{k}_prob" for k in PROBS))
        self.probs = probs

    def __call__(self, x, generator=None):
        return transform(x, generator, **self.probs)


class Genesis(Pretext):
    """Restore the original from the Genesis-transformed input: MSE(decoder(features(x̃)), x)."""
    name, family, paper = "genesis", "generative", "Zhou et al., MICCAI 2019 (Models Genesis)"

    def __init__(self, model, in_channels, size, dims, **probs):
        super().__init__(model, in_channels, size, dims)
        self.tf = GenesisTransform(**probs)
        self.decoder = Decoder(self.feat_dim, self.feat_side, in_channels, size, dims)

    def restore(self, x01):
        """Decoder output in normalized units for a [0,1] batch."""
        return self.decoder(self.encode(x01))

    def loss(self, x, idx, generator=None):
        xt, target = self.tf(x, generator)
        loss = F.mse_loss(self.restore(xt), normalize(target))
        return loss, {}
