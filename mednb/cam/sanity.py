"""Sanity checks for saliency maps (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

* Cascading model-parameter randomization (:func:`cascading_randomization`): re-initialize the
  weights from the head down, one stage at a time, and compare each method's maps with those of
  the trained model. A map that explains the *model* must change as its weights are destroyed.
* Label randomization (:func:`permute_labels` + :func:`compare_models`): train the same network on
  permuted labels; its maps should differ from those of the model trained on true labels.

Similarity per image: Spearman rank correlation and SSIM (Wang et al. 2004, Gaussian window) of
the two maps; Adebayo et al. also use the absolute rank correlation, reported as ``abs_spearman``.
Contrast methods that are known to fail: :class:`GuidedBackprop` (Springenberg et al. 2015; in
Adebayo et al. it barely changes under randomization) and :class:`EdgeDetector` (an image edge
map that ignores the model entirely — it cannot change).
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import stats

from .base import _check_input, get_layer, model_ready, normalize_maps, stages, targets_for


# ----------------------------------------------------------------------------- similarity
def _gauss(win: int, sigma: float, dtype) -> torch.Tensor:
    t = torch.arange(win, dtype=dtype) - (win - 1) / 2
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def ssim(a, b, data_range: float = 1.0, win: int = 11, sigma: float = 1.5) -> np.ndarray:
    """SSIM per map of (N, *spatial) [0,1] maps, 2D or 3D (Gaussian window, valid region)."""
    a = torch.as_tensor(a).double()
    b = torch.as_tensor(b).double()
    dims = a.ndim - 1
    win = min(win, *a.shape[1:])
    win -= 1 - win % 2  # odd
    k = _gauss(win, sigma, a.dtype)
    conv = F.conv2d if dims == 2 else F.conv3d

    def filt(x):
        y = x[:, None]
        for axis in range(dims):
            shape = [1, 1] + [1] * dims
            shape[2 + axis] = win
            y = conv(y, k.view(shape))
        return y

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = filt(a), filt(b)
    saa = filt(a * a) - mu_a ** 2
    sbb = filt(b * b) - mu_b ** 2
    sab = filt(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return s.flatten(1).mean(1).numpy()


def spearman(a, b) -> np.ndarray:
    """Spearman rank correlation per map pair (NaN where a map is constant)."""
    a = torch.as_tensor(a).flatten(1).double().numpy()
    b = torch.as_tensor(b).flatten(1).double().numpy()
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        if np.ptp(a[i]) > 0 and np.ptp(b[i]) > 0:
            out[i] = stats.spearmanr(a[i], b[i]).statistic
    return out


def similarity(a, b) -> dict:
    """Mean over maps of ``spearman``, ``abs_spearman`` and ``ssim`` (NaN pairs ignored; a constant
    map counts as rank correlation 0 — it carries no ranking)."""
    r = spearman(a, b)
    r = np.where(np.isnan(r), 0.0, r)
    return {"spearman": float(r.mean()), "abs_spearman": float(np.abs(r).mean()),
            "ssim": float(np.nanmean(ssim(a, b)))}


# ----------------------------------------------------------------------------- contrast methods
class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = x.clamp_min(0)
        ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x > 0).to(grad.dtype) * (grad > 0).to(grad.dtype)


class _GuidedReLUModule(nn.Module):
    def forward(self, x):
        return _GuidedReLU.apply(x)


class GuidedBackprop:
    """Guided backpropagation (Springenberg et al., ICLR-W 2015): input gradient where every ReLU
    passes back only positive gradients at positive inputs. Map = max over channels of |grad|,
    min-max normalized. Same call interface as a CAM; works on a guided copy of the model."""

    name = "guided_backprop"
    layer = "input"

    def __init__(self, model: nn.Module, layer: str | None = None, **_):
        self.model = model

    def _guided(self) -> nn.Module:
        m = copy.deepcopy(self.model)

        def swap(parent):
            for name, child in parent.named_children():
                if isinstance(child, nn.ReLU):
                    setattr(parent, name, _GuidedReLUModule())
                else:
                    swap(child)
        swap(m)
        return m.eval()

    def __call__(self, x: torch.Tensor, target=None, batch_size: int = 64) -> torch.Tensor:
        _check_input(x)
        m = self._guided()
        device = next(m.parameters()).device
        out = []
        for i in range(0, len(x), batch_size):
            xb = model_ready(x[i:i + batch_size].to(device)).requires_grad_(True)
            with torch.enable_grad():
                logits = m(xb)
                tb = target if target is None or isinstance(target, int) else \
                    torch.as_tensor(target).reshape(-1)[i:i + batch_size]
                t = targets_for(tb, logits.detach())
                (g,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), xb)
            out.append(normalize_maps(g.abs().amax(1)).cpu())
        return torch.cat(out)


class EdgeDetector:
    """Gradient magnitude of the image itself (central differences, 2D/3D): a "saliency map"
    that never looks at the model, so it passes every visual check and fails every sanity check."""

    name = "edge"
    layer = "input"

    def __init__(self, model: nn.Module | None = None, layer: str | None = None, **_):
        self.model = model

    def __call__(self, x: torch.Tensor, target=None, batch_size: int = 64) -> torch.Tensor:
        _check_input(x)
        xf = model_ready(x).cpu().mean(1)  # (N, *spatial)
        grads = torch.gradient(xf, dim=tuple(range(1, xf.ndim)))
        return normalize_maps(torch.sqrt(sum(g * g for g in grads)))


CONTRASTS = {"guided_backprop": GuidedBackprop, "edge": EdgeDetector}


# ----------------------------------------------------------------------------- randomization
def reinitialize(module: nn.Module, seed: int = 0) -> None:
    """Re-draw every parameter of ``module`` from its initializer (in place, seeded).

    Modules with ``reset_parameters`` (conv, linear, batch norm — running statistics included)
    use it; any other direct parameters get Kaiming-uniform weights and zero biases.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
            elif any(True for _ in sub.parameters(recurse=False)):
                for name, p in sub.named_parameters(recurse=False):
                    with torch.no_grad():
                        if p.ndim >= 2:
                            nn.init.kaiming_uniform_(p, a=5 ** 0.5)
                        else:
                            p.zero_()
            if hasattr(sub, "reset_running_stats"):
                sub.reset_running_stats()


def cascade_order(model: nn.Module) -> list[str]:
    """Top-down order of the cascading randomization: ``head`` then the stages, last to first."""
    top = ["head"] if hasattr(model, "head") else []
    return top + stages(model)[::-1]


def cascade(model: nn.Module, seed: int = 0):
    """Yield ``(stage_name, model)`` with the head and then each stage re-initialized cumulatively.

    Works on one deep copy, modified in place between yields (use each model before the next).
    """
    m = copy.deepcopy(model)
    for j, name in enumerate(cascade_order(m)):
        reinitialize(get_layer(m, name), seed + j)
        yield name, m


@dataclasses.dataclass
class SanityResult:
    """``rows``: one dict per (method, layer_randomized) with spearman/abs_spearman/ssim means;
    ``maps``: {method: {stage: (N, *S) maps}} including ``"trained"``."""
    rows: list
    maps: dict

    def frame(self):
        import pandas as pd
        return pd.DataFrame(self.rows)


def cascading_randomization(model: nn.Module, x: torch.Tensor, methods, layer=None, target=None,
                            seed: int = 0, keep_maps: int = 4) -> SanityResult:
    """Compare each method's maps on the trained model with those after cumulatively
    re-initializing the head and each stage (top down). ``target`` defaults to the trained model's
    predicted classes, held fixed for every randomized model. layer: one name, a {method: name}
    dict, or None (each method's default). ``keep_maps``: how many images' maps to keep for figures.
    """
    from . import create
    if target is None:
        with torch.no_grad():
            was = model.training
            model.eval()
            device = next(model.parameters()).device
            target = torch.cat([model(model_ready(x[i:i + 256].to(device))).argmax(1).cpu()
                                for i in range(0, len(x), 256)])
            model.train(was)
    layer_of = (lambda m: layer.get(m)) if isinstance(layer, dict) else (lambda m: layer)
    ref, layers_used = {}, {}
    for meth in methods:
        e = create(meth, model, layer_of(meth))
        layers_used[meth] = e.layer
        ref[meth] = e(x, target)
    rows, maps = [], {m: {"trained": ref[m][:keep_maps]} for m in methods}
    for stage, rnd in cascade(model, seed):
        for meth in methods:
            mp = create(meth, rnd, layers_used[meth] if layers_used[meth] != "input" else None)(x, target)
            maps[meth][stage] = mp[:keep_maps]
            rows.append({"method": meth, "layer": layers_used[meth], "layer_randomized": stage,
                         **similarity(ref[meth], mp)})
    return SanityResult(rows, maps)


def compare_models(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, methods, target, layer=None) -> list:
    """Per method, the similarity of maps from two models for the same ``target`` classes
    (label randomization: a = trained on true labels, b = trained on permuted labels)."""
    from . import create
    rows = []
    for meth in methods:
        la = layer.get(meth) if isinstance(layer, dict) else layer
        ea = create(meth, model_a, la)
        eb = create(meth, model_b, ea.layer if ea.layer != "input" else None)
        rows.append({"method": meth, "layer": ea.layer, **similarity(ea(x, target), eb(x, target))})
    return rows


def permute_labels(splits, seed: int = 0):
    """A copy of ``splits`` whose *training* labels (and masks) are randomly permuted (val/test kept),
    for the label-randomization test: a network trained on it can only memorize."""
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(splits.train), generator=g)
    train = dataclasses.replace(splits.train, y=splits.train.y[perm])
    return dataclasses.replace(splits, train=train, name=f"{splits.name}-permuted",
                               meta={**splits.meta, "labels_permuted_seed": int(seed)})
