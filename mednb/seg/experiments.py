"""The experiments of notebook 05: models × seeds at equal training, label efficiency, the pruning table.

Every arm of :func:`compare` and of :func:`label_efficiency` trains the same ``recipe`` — with a step budget
(``Recipe(steps=N)``, as :data:`~mednb.seg.training.RECIPE`) the same number of optimizer steps whatever its
number of labelled images. The frames carry that budget in a ``steps`` column.
"""
from __future__ import annotations

import time

import numpy as np
import torch.nn as nn

from .. import engine, models
from ..data import Split, Splits
from .data import labelled_subset
from .metrics import evaluate, inference_ms
from .training import train
from .unetpp import UNetPlusPlus, pruned

#: (label, registry name, model keywords) of the 2D/3D comparison
CONFIGS = (("U-Net", "unet", {}), ("wide U-Net", "wide_unet", {}), ("UNet++", "unetpp", {}),
           ("UNet++ DS", "unetpp", {"deep_supervision": True}))


def compare(splits: Splits, seeds=(0,), recipe: engine.Recipe | None = None, *, configs=CONFIGS, width: int = 8,
            depth: int = 3, device="auto", progress: bool = True, **fit_kw):
    """Train every (label, model, kw) config for every seed with the same ``recipe`` (see :func:`train`).

    Returns ``(runs, fitted)``: a DataFrame (label, model, deep_supervision, seed, iou, dice,
    iou_image, params, steps, seconds) and ``{(label, seed): FitResult}``.
    """
    import pandas as pd
    from tqdm.auto import tqdm
    rows, fitted = [], {}
    jobs = [(c, s) for s in seeds for c in configs]
    for (label, name, kw), seed in tqdm(jobs, desc=f"{splits.name}: models × seeds", disable=not progress):
        t0 = time.perf_counter()
        r = train(splits, name, recipe, seed=seed, model_kw=dict(width=width, depth=depth, **kw), device=device,
                  progress=False, **fit_kw)
        fitted[(label, seed)] = r
        rows.append(dict(label=label, model=name, deep_supervision=bool(kw.get("deep_supervision", False)),
                         seed=seed, iou=r.test["iou"], dice=r.test["dice"],
                         iou_image=float(np.mean(r.test["iou_image"])), params=r.params, steps=r.steps,
                         seconds=time.perf_counter() - t0))
    return pd.DataFrame(rows), fitted


def table(runs, by=("label",), metrics=("iou", "dice"), digits: int = 3):
    """``mean ± sd (n)`` of each metric per group of a runs DataFrame (plus the parameter count)."""
    import pandas as pd
    from ..metrics import fmt
    out = []
    for key, g in runs.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row.update({m: fmt(g[m].tolist(), digits) for m in metrics})
        if "params" in g:
            row["parameters"] = f"{int(g['params'].iloc[0]):,}"
        out.append(row)
    return pd.DataFrame(out)


def label_efficiency(splits: Splits, n_labelled=(1, 3, 0), seeds=(0,), recipe: engine.Recipe | None = None, *,
                     model: str = "unet", width: int = 8, depth: int = 3, pretrained: nn.Module | None = None,
                     device="auto", progress: bool = True, **fit_kw):
    """Train ``model`` with n labelled training images (0 = all), from scratch and (if given) from the
    ``pretrained`` encoder, every run with the same ``recipe``. Returns ``(frame, fitted)``: a DataFrame
    (n_labelled, n_requested, init, seed, iou, dice, steps, n_val) and ``{(n_requested, init, seed): FitResult}``
    (their validation histories show convergence, :func:`mednb.plot.convergence` with ``key="val_dice"``)."""
    import pandas as pd
    from tqdm.auto import tqdm
    inits = [("scratch", None)] + ([("pretrained", pretrained)] if pretrained is not None else [])
    jobs = [(n, i, s) for s in seeds for n in n_labelled for i in inits]
    rows, fitted = [], {}
    for n, (init, net), seed in tqdm(jobs, desc="label efficiency", disable=not progress):
        idx = labelled_subset(splits.train, n, seed)
        r = train(splits, model, recipe, seed=seed, model_kw=dict(width=width, depth=depth), init=net,
                  train_idx=idx, device=device, progress=False, **fit_kw)
        fitted[(n, init, seed)] = r
        rows.append(dict(n_labelled=len(idx) if n > 0 else len(splits.train), n_requested=n, init=init, seed=seed,
                         iou=r.test["iou"], dice=r.test["dice"], steps=r.steps, n_val=r.n_val))
    return pd.DataFrame(rows), fitted


def pruning_table(model: UNetPlusPlus, split: Split, device="auto", repeats: int = 3, batch_size: int = 8):
    """UNet++ L^1..L^depth from one deeply supervised model: test IoU/Dice, parameters, inference ms/image."""
    import pandas as pd
    rows = []
    for k in range(1, model.depth + 1):
        p = pruned(model, k)
        r = evaluate(p, split, device)
        rows.append(dict(prune_level=k, iou=r["iou"], dice=r["dice"], params=models.count_parameters(p),
                         ms_per_image=inference_ms(p, split.x, device, repeats, batch_size)))
    return pd.DataFrame(rows)


def convergence_table(fitted, n_requested: int, key: str = "val_dice", frac: float = 0.95):
    """For each init at ``n_requested`` labelled images (a :func:`label_efficiency` ``fitted`` dict): the best
    validation ``key`` and the first step at which it reached ``frac`` of that best, mean over seeds, and the
    share of the budget that step is. A run whose best check is its last one may not have converged."""
    import pandas as pd
    rows = []
    for init in dict.fromkeys(i for (n, i, _) in fitted if n == n_requested):
        runs = [r for (n, i, _), r in fitted.items() if n == n_requested and i == init]
        best = [max(h.get(key, float("nan")) for h in r.history) for r in runs]
        reach = [next(h["step"] for h in r.history if h.get(key, -1) >= frac * b) for r, b in zip(runs, best)]
        last = [r.best_epoch == len(r.history) for r in runs]
        rows.append({"init": init, f"best {key}": float(np.mean(best)), f"step reaching {frac:.0%} of it":
                     float(np.mean(reach)), "share of the budget": float(np.mean(reach)) / runs[0].steps,
                     "best check is the last": f"{sum(last)}/{len(last)}"})
    return pd.DataFrame(rows)
