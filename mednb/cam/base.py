"""The shared base of every class-activation-map method (pytorch-grad-cam style, 2D and 3D).

A :class:`CAM` hooks one named layer of a classifier (``"features.block3"``, ``"features.layer4"``,
or any name from ``model.named_modules()``), runs a batched forward pass, takes the gradient of the
target class score y^c with respect to that layer's activations A (N, K, *spatial), lets the
subclass combine them into a map (N, *spatial), applies ReLU, upsamples to the input size
(bilinear in 2D, trilinear in 3D) and min-max normalizes each map to [0, 1].

Subclasses implement one method, :meth:`CAM.combine` ``(A, G) -> map before ReLU``.
Inputs are uint8 images (converted and normalized exactly like :mod:`mednb.engine` does) or float
tensors that are already model-ready; 2D vs 3D is decided by the tensor rank (4 vs 5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MIN_SIDE = 7  # default layer: the coarsest stage with at least this many cells per side (see default_layer)


def stages(model: nn.Module) -> list[str]:
    """Names of the model's stages (children of ``model.features``), e.g. ``features.layer3``."""
    feats = getattr(model, "features", None)
    if feats is None:
        return [n for n, _ in model.named_children()]
    return [f"features.{n}" for n, _ in feats.named_children()]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name``; an unknown name raises a ValueError listing the stages."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        raise ValueError(f"unknown layer {name!r}; valid stages: {', '.join(stages(model))} "
                         f"(or any name from model.named_modules())")
    return modules[name]


def model_ready(x: torch.Tensor) -> torch.Tensor:
    """uint8 images → float normalized like the engine; float tensors pass unchanged."""
    if x.dtype == torch.uint8:
        from ..engine import normalize
        return normalize(x)
    return x.float()


def _check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim not in (4, 5):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected a batch (N,C,H,W) or (N,C,D,H,W), got {shape}")


def stage_shapes(model: nn.Module, x: torch.Tensor | None = None, size: int = 28, in_channels: int | None = None,
                 dims: int | None = None) -> dict[str, tuple[int, ...]]:
    """Output shape (K, *spatial) of every stage for one probe input (zeros of ``size`` if ``x`` is None)."""
    device = next(model.parameters()).device
    if x is None:
        if in_channels is None:
            first = next(m for m in model.modules() if hasattr(m, "weight") and getattr(m, "weight") is not None
                         and m.weight.ndim >= 3)
            in_channels = first.weight.shape[1]
        dims = dims or getattr(model, "dims", 2)
        x = torch.zeros((1, in_channels) + (size,) * dims, device=device)
    else:
        x = model_ready(x[:1]).to(device)
    shapes, handles = {}, []
    for name in stages(model):
        mod = get_layer(model, name)
        handles.append(mod.register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return shapes


def default_layer(model: nn.Module, size: int = 28, x: torch.Tensor | None = None) -> str:
    """The shallowest stage at the coarsest resolution that still has ≥ :data:`MIN_SIDE` (7) cells per side.

    Rule: keep stages with ≥ 7 cells on every side, take the smallest resolution among them, and
    of the stages at that resolution the first. Down-sampling is then finished (the features are
    as semantic as the grid allows) while the map keeps 7×7 cells; deeper stages at the same grid
    only add receptive field, i.e. blur. At 224 px this is ResNet ``layer4`` (7×7), the usual
    choice; at 28 px it is ``features.block2`` of ``cnn`` (7×7; block3/4 are 7×7 too) and
    ``features.layer3`` of the CIFAR-stem ResNets (7×7, where ``layer4`` is 4×4). Measured on
    phantom2d lesions (notebook 07), the cnn's mean pointing game over the four methods was best at
    block2 (0.62 vs 0.41 at block4; one seed, 300 lesion images).
    """
    shapes = stage_shapes(model, x, size)
    spatial = [(n, s[1:]) for n, s in shapes.items() if len(s) >= 3]
    if not spatial:
        raise ValueError("the model has no stage with a spatial output; pass layer= explicitly")
    ok = [(n, s) for n, s in spatial if min(s) >= MIN_SIDE]
    if not ok:
        return spatial[0][0]
    coarsest = min(int(np.prod(s)) for _, s in ok)
    return next(n for n, s in ok if int(np.prod(s)) == coarsest)


def normalize_maps(cam: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-map min-max to [0, 1] (an all-constant map becomes all zeros)."""
    flat = cam.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(cam)


def upsample(cam: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """(N, *s) → (N, *size): bilinear (2D) or trilinear (3D), half-pixel centres."""
    if tuple(cam.shape[1:]) == tuple(size):
        return cam
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(cam[:, None], size=size, mode=mode, align_corners=False)[:, 0]


def targets_for(target, logits: torch.Tensor) -> torch.Tensor:
    """Class index per sample: None → predicted class; int → that class; sequence → per sample."""
    n, k = logits.shape
    if target is None:
        t = logits.argmax(1)
    elif isinstance(target, int) or (isinstance(target, torch.Tensor) and target.ndim == 0):
        t = torch.full((n,), int(target), dtype=torch.long, device=logits.device)
    else:
        t = torch.as_tensor(target, dtype=torch.long, device=logits.device).reshape(-1)
        if len(t) != n:
            raise ValueError(f"target has {len(t)} entries for a batch of {n}")
    if len(t) and (t.min() < 0 or t.max() >= k):
        raise ValueError(f"target class out of range: the model has {k} outputs (0..{k - 1})")
    return t


@dataclass
class Explanation:
    """Everything behind a batch of maps (for teaching and for the step-by-step figure).

    maps (N, *input spatial) in [0,1]; raw (N, *layer spatial) after ReLU, before upsampling;
    activations A and gradients dy^c/dA (N, K, *layer spatial); weights (N, K) where the method
    has channel weights (Grad-CAM, Grad-CAM++), else None; logits (N, classes); target (N,).
    """
    maps: torch.Tensor
    raw: torch.Tensor
    activations: torch.Tensor
    gradients: torch.Tensor
    weights: torch.Tensor | None
    logits: torch.Tensor
    target: torch.Tensor
    layer: str
    method: str


class CAM:
    """Base class: hooks ``layer`` of ``model``; ``cam(x, target=None) -> maps (N, *spatial) in [0,1]``.

    model: a classifier (any nn.Module giving (N, classes) logits). layer: a module name
    (default :func:`default_layer`). Subclasses set ``name`` and implement :meth:`combine`.
    """

    name = "base"
    uses_weights = False  # True when combine() is sum_k alpha_k A^k (the weights are reported)

    def __init__(self, model: nn.Module, layer: str | None = None, *, size: int = 28):
        self.model = model
        self.layer = layer if layer is not None else default_layer(model, size)
        self.module = get_layer(model, self.layer)

    # -- the one thing a method defines -------------------------------------------------------
    def weights(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor | None:
        """Channel weights (N, K) for weight-based methods, else None."""
        return None

    def combine(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """Map before ReLU (N, *spatial) from activations A and gradients G = dy^c/dA (N, K, *spatial)."""
        w = self.weights(A, G)
        if w is None:
            raise NotImplementedError
        return (w.view(*w.shape, *([1] * (A.ndim - 2))) * A).sum(1)

    # -- shared machinery ---------------------------------------------------------------------
    def _batch(self, x: torch.Tensor, target, keep: bool = True) -> Explanation:
        store = {}

        def hook(module, inputs, output):
            store["A"] = output

        handle = self.module.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                xin = x.detach().requires_grad_(True)  # makes A require grad even for frozen models
                logits = self.model(xin)
                if "A" not in store:
                    raise RuntimeError(f"layer {self.layer!r} was not used in the forward pass")
                A = store["A"]
                if not isinstance(A, torch.Tensor) or A.ndim not in (4, 5):
                    raise ValueError(f"layer {self.layer!r} gives {type(A).__name__} "
                                     f"{tuple(getattr(A, 'shape', ()))}; pick a convolutional stage")
                t = targets_for(target, logits.detach())
                score = logits.gather(1, t[:, None]).sum()
                (G,) = torch.autograd.grad(score, A)
        finally:
            handle.remove()
        A, G = A.detach().float(), G.detach().float()
        with torch.no_grad():
            w = self.weights(A, G)
            raw = F.relu(self.combine(A, G))
            maps = normalize_maps(upsample(raw, tuple(x.shape[2:])))
        if not keep:  # maps only: do not hold every activation of a large batch
            A = G = torch.zeros(0)
        return Explanation(maps, raw, A, G, w, logits.detach().float(), t, self.layer, self.name)

    def explain(self, x: torch.Tensor, target=None, batch_size: int = 64, keep: bool = True) -> Explanation:
        """Maps plus activations, gradients, weights and logits (all on the CPU), batched."""
        _check_input(x)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        parts = []
        try:
            for i in range(0, len(x), batch_size):
                xb = model_ready(x[i:i + batch_size].to(device))
                tb = target
                if target is not None and not isinstance(target, int) and not (
                        isinstance(target, torch.Tensor) and target.ndim == 0):
                    tb = torch.as_tensor(target).reshape(-1)[i:i + batch_size]
                parts.append(self._batch(xb, tb, keep))
        finally:
            self.model.train(was_training)
        if not parts:
            raise ValueError("empty batch")
        cat = lambda k: torch.cat([getattr(p, k).cpu() for p in parts])
        w = None if parts[0].weights is None else cat("weights")
        return Explanation(cat("maps"), cat("raw"), cat("activations"), cat("gradients"), w, cat("logits"),
                           cat("target"), self.layer, self.name)

    def __call__(self, x: torch.Tensor, target=None, batch_size: int = 64) -> torch.Tensor:
        """Maps (N, *spatial of x) in [0, 1], float32 on the CPU. target: None (predicted) | int | (N,)."""
        return self.explain(x, target, batch_size, keep=False).maps

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.name!r}, layer={self.layer!r})"
