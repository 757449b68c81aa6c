"""Cached classifiers for notebook 07 and the localization table on phantoms.

:func:`trained` trains a classifier with :func:`mednb.engine.train` once and caches its weights
in ``cache_root()/checkpoints/cam/<code version>/`` (re-runs load them in a second). :func:`localization` scores
every (method, layer) pair with the pointing game and the energy inside the lesion mask.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
import torch.nn as nn

from . import metrics as CM
from ..engine.recipe import Recipe

#: the classifiers explained in notebook 07: 8 epochs, batch 64, Adam 1e-3, best validation AUC
RECIPE = Recipe(epochs=8, batch_size=64)


def checkpoint_path(splits, model: str, **cfg):
    """``checkpoint_dir("cam")/<dataset>_<size>_<model>_<hash of the configuration>.pt``."""
    from ..runtime import checkpoint_dir
    key = dict(dataset=splits.name, size=splits.size, model=model, n=[len(splits.train), len(splits.val)],
               classes=[str(c) for c in splits.labels.values()],
               meta={k: v for k, v in splits.meta.items() if isinstance(v, (int, float, str, list, tuple))}, **cfg)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return checkpoint_dir("cam") / f"{splits.name}_{splits.size}_{model}_{digest}.pt"


def trained(splits, model: str = "cnn", recipe=None, *, seed: int = 0, device="auto", cache: bool = True,
            progress: bool = True, model_kw: dict | None = None, **fit_kw):
    """A classifier trained on ``splits`` by :func:`mednb.engine.train` with ``recipe`` (default
    :data:`RECIPE`), cached by configuration.

    Returns ``(model, info)``; ``info`` holds ``test`` (auc/acc/balanced_acc/loss), ``cached``
    (True when loaded from disk), ``path`` and ``seconds`` (training time, 0 when cached).
    """
    import dataclasses
    from .. import engine, models
    from ..runtime import get_device, seed_everything
    recipe = recipe or RECIPE
    path = checkpoint_path(splits, model, seed=seed, **dataclasses.asdict(recipe), model_kw=model_kw or {}, **fit_kw)
    dev = get_device(device)
    if cache and path.exists():
        seed_everything(seed)
        net = models.create(model, splits.n_channels, splits.n_outputs, dims=splits.dims, size=splits.size,
                            **(model_kw or {}))
        ckpt = engine.load_checkpoint(net, path)
        return net.to(dev).eval(), {"test": dict(ckpt.get("test", {})), "cached": True, "path": path, "seconds": 0.0}
    res = engine.train(splits, model, recipe, seed=seed, device=dev, progress=progress, model_kw=model_kw, **fit_kw)
    net = res.model.eval()
    test = {k: float(v) for k, v in res.test.items() if isinstance(v, (int, float))}  # the scalars, as cached
    if cache:
        engine.save_checkpoint(net, path, {"test": test})
    return net, {"test": test, "cached": False, "path": path if cache else None, "seconds": res.seconds}


def lesion_subset(split, n: int | None = None, seed: int = 0):
    """Indices of up to ``n`` images that have a lesion (non-empty mask), seeded."""
    if split.masks is None:
        raise ValueError("this split has no masks; localization needs a phantom (phantom2d/phantom3d)")
    has = torch.nonzero(split.masks.flatten(1).any(1)).flatten()
    g = torch.Generator().manual_seed(int(seed))
    has = has[torch.randperm(len(has), generator=g)]
    return has[:n] if n else has


def localization(model: nn.Module, split, methods, layers, n: int | None = None, target: str = "label",
                 seed: int = 0, batch_size: int = 64, progress: bool = True) -> list[dict]:
    """Pointing game and energy-in-mask per (method, layer) on lesion images of a phantom split.

    target: ``"label"`` (the true class, which the lesion defines) or ``"pred"`` (predicted class).
    Returns rows ``{"method", "layer", "pointing_game", "energy_in_mask", "chance_energy", "n"}``.
    """
    from . import create
    from tqdm.auto import tqdm
    idx = lesion_subset(split, n, seed)
    sub = split.subset(idx)
    if target not in ("label", "pred"):
        raise ValueError(f"unknown target {target!r}; valid: label, pred")
    tgt = sub.y[:, 0] if target == "label" else None
    chance = CM.mask_fraction(sub.masks)
    rows = []
    pairs = [(m, l) for l in layers for m in methods]
    for meth, layer in tqdm(pairs, desc="localization", disable=not progress, leave=False):
        maps = create(meth, model, layer)(sub.x, tgt, batch_size)
        rows.append({"method": meth, "layer": layer, "pointing_game": CM.pointing_game(maps, sub.masks),
                     "energy_in_mask": CM.energy_in_mask(maps, sub.masks), "chance_energy": chance,
                     "n": int(len(idx))})
    return rows


def random_maps(shape, seed: int = 0, smooth: float = 2.0) -> torch.Tensor:
    """Smooth random maps in [0,1] (a baseline for the localization and faithfulness scores)."""
    from scipy import ndimage
    rng = np.random.default_rng(seed)
    a = rng.random(shape).astype(np.float32)
    a = np.stack([ndimage.gaussian_filter(m, smooth) for m in a])
    t = torch.from_numpy(a)
    from .base import normalize_maps
    return normalize_maps(t)
