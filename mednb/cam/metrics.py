"""Scoring saliency maps: localization against ground-truth masks, and faithfulness to the model.

* :func:`pointing_game` (Zhang et al., "Top-down neural attention by excitation backprop",
  ECCV 2016): a hit when the map's maximum lies inside the lesion mask (optionally within
  ``tolerance`` pixels); scored on images that have a lesion.
* :func:`energy_in_mask` (the "energy-based pointing game" of Score-CAM, Wang et al., CVPRW
  2020): the fraction of the map's total mass inside the mask. A uniform map scores the lesion's
  area fraction, :func:`mask_fraction`, which is the chance level to compare against.
* :func:`deletion_insertion` (Petsiuk et al., RISE, BMVC 2018): remove (deletion) or add
  (insertion) pixels from most to least salient and follow the target-class probability; a
  faithful map makes deletion fall fast (low AUC) and insertion rise fast (high AUC).

Maps are (N, *spatial), masks (N, *spatial) or (N, 1, *spatial); 2D and 3D alike.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

from .base import model_ready


def _maps_masks(maps, masks):
    maps = torch.as_tensor(maps).float().cpu()
    masks = torch.as_tensor(masks).cpu()
    if masks.ndim == maps.ndim + 1:
        masks = masks[:, 0]
    if masks.shape != maps.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ in shape")
    return maps, masks > 0


def _reduce(values: np.ndarray, reduce: str):
    if reduce == "none":
        return values
    if reduce == "mean":
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    raise ValueError(f"unknown reduce {reduce!r}; valid: mean, none")


def pointing_game(maps, masks, tolerance: int = 0, reduce: str = "mean"):
    """Fraction of lesion images whose map maximum is inside the mask (dilated by ``tolerance`` px).

    reduce="none" gives per-image 1.0/0.0, NaN for images without a lesion. An all-zero map is a miss.
    """
    maps, masks = _maps_masks(maps, masks)
    out = np.full(len(maps), np.nan)
    for i, (m, k) in enumerate(zip(maps, masks)):
        if not k.any():
            continue
        if tolerance > 0:
            k = torch.from_numpy(ndimage.binary_dilation(k.numpy(), iterations=int(tolerance)))
        if float(m.max()) <= 0:
            out[i] = 0.0
            continue
        out[i] = float(k.flatten()[int(m.flatten().argmax())])
    return _reduce(out, reduce)


def energy_in_mask(maps, masks, reduce: str = "mean"):
    """Fraction of map mass inside the mask, per lesion image (NaN without a lesion; 0 for a zero map)."""
    maps, masks = _maps_masks(maps, masks)
    maps = maps.clamp_min(0)
    total = maps.flatten(1).sum(1)
    inside = (maps * masks).flatten(1).sum(1)
    e = torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total)).double().numpy()
    e[~masks.flatten(1).any(1).numpy()] = np.nan
    return _reduce(e, reduce)


def mask_fraction(masks, reduce: str = "mean"):
    """Area fraction of the lesion per lesion image: the energy-in-mask score of a uniform map."""
    masks = torch.as_tensor(masks)
    flat = (masks > 0).flatten(1).double()
    f = flat.mean(1).numpy()
    f[f == 0] = np.nan
    return _reduce(f, reduce)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (N,C,*spatial) with a separable kernel (2D/3D by rank)."""
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    n, c = x.shape[:2]
    dims = x.ndim - 2
    conv = F.conv2d if dims == 2 else F.conv3d
    y = x.reshape(n * c, 1, *x.shape[2:])
    for axis in range(dims):
        shape = [1, 1] + [1] * dims
        shape[2 + axis] = len(k)
        pad = [0] * (2 * dims)
        pad[2 * (dims - 1 - axis)] = pad[2 * (dims - 1 - axis) + 1] = r
        y = conv(F.pad(y, pad, mode="replicate"), k.view(shape))
    return y.reshape(x.shape)


BASELINES = ("blur", "mean")


def baseline_image(x: torch.Tensor, kind: str = "blur", sigma: float = 3.0) -> torch.Tensor:
    """What removed pixels become: ``blur`` (Gaussian, sigma px) or ``mean`` (the image's mean)."""
    if kind == "blur":
        return _blur(x, sigma)
    if kind == "mean":
        return x.mean(dim=tuple(range(1, x.ndim)), keepdim=True).expand_as(x)
    raise ValueError(f"unknown baseline {kind!r}; valid: {', '.join(BASELINES)}")


@torch.no_grad()
def deletion_insertion(model: nn.Module, x: torch.Tensor, maps, target, steps: int = 20,
                       baseline: str = "blur", seed: int = 0, batch_size: int = 256) -> dict:
    """Deletion and insertion curves (Petsiuk et al. 2018) of the target-class probability.

    x: uint8 images or model-ready floats (N,C,*S); maps (N,*S); target: (N,) class indices.
    At step j the ``j/steps`` most salient pixels (ties broken at random with ``seed``) are set to
    the baseline (deletion) or copied from the image into the baseline (insertion).
    Returns ``{"fractions" (steps+1,), "deletion" (N, steps+1), "insertion" (N, steps+1),
    "deletion_auc" (N,), "insertion_auc" (N,)}`` (AUC by the trapezoid rule over fractions in [0,1]).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    maps = torch.as_tensor(maps).float().cpu()
    target = torch.as_tensor(target).long().reshape(-1).cpu()
    n = len(maps)
    fr = torch.linspace(0, 1, steps + 1)
    g = torch.Generator().manual_seed(int(seed))
    curves = {"deletion": torch.zeros(n, steps + 1), "insertion": torch.zeros(n, steps + 1)}
    per = max(1, batch_size // (steps + 1))  # images per forward pass
    counts = (fr * maps[0].numel()).round().long()
    try:
        for i in range(0, n, per):
            xi = model_ready(x[i:i + per]).to(device)  # (B, C, *S)
            b = len(xi)
            base = baseline_image(xi, baseline)
            flat = maps[i:i + b].flatten(1)
            order = torch.argsort(flat + 1e-6 * torch.rand(flat.shape, generator=g), dim=1, descending=True)
            rank = torch.empty_like(order)
            rank.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order).contiguous())
            sel = (rank[:, None] < counts[None, :, None]).float()  # (B, steps+1, P)
            sel = sel.view(b, steps + 1, 1, *maps.shape[1:]).to(device)
            tb = target[i:i + b].to(device)
            for kind, (a, c) in {"deletion": (base, xi), "insertion": (xi, base)}.items():
                imgs = sel * a[:, None] + (1 - sel) * c[:, None]  # selected pixels come from a
                p = torch.softmax(model(imgs.flatten(0, 1)).float(), 1).view(b, steps + 1, -1)
                curves[kind][i:i + b] = p.gather(2, tb.view(b, 1, 1).expand(b, steps + 1, 1))[..., 0].cpu()
    finally:
        model.train(was_training)
    x_axis = fr.numpy()
    out = {"fractions": x_axis, **{k: v.numpy() for k, v in curves.items()}}
    for k in ("deletion", "insertion"):
        out[f"{k}_auc"] = np.trapezoid(out[k], x_axis, axis=1) if hasattr(np, "trapezoid") \
            else np.trapz(out[k], x_axis, axis=1)
    return out
