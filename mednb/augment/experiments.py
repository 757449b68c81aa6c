"""The training experiments of notebook 02 and the tables read from them.

:func:`label_fraction_grid` (policy × label fraction × seed), :func:`compare_offline_online`
and :func:`imbalance_experiment` train through :func:`mednb.engine.train` with an
:class:`mednb.engine.Recipe`; :func:`verdict`, :func:`describe_verdict` and :func:`summary`
turn their DataFrames into the winning policy per setting and ``mean ± sd`` tables.
"""
from __future__ import annotations

import itertools
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import engine
from .. import metrics as M
from ..data import label_subset
from ..runtime import check_name
from .policies import get
from .trainsets import imbalanced_indices, nbytes, offline_splits

#: imbalance strategies -> engine.train keywords (an ``augment`` policy name is resolved with :func:`get`)
IMBALANCE_STRATEGIES = {
    "nothing": dict(),
    "weighted loss": dict(class_weight="balanced"),
    "oversample": dict(sampler="balanced"),
    "oversample + augment": dict(sampler="balanced", augment="basic"),
}


def _runs(runs: list, desc: str, progress: bool):
    return tqdm(runs, total=len(runs), desc=desc, disable=not progress, leave=True)


def label_fraction_grid(splits, policies, fractions, seeds, *, recipe: engine.Recipe | None = None,
                        model: str = "cnn", strength: float = 1.0, progress: bool = True, **fit_kw):
    """Test metrics for every (policy, label fraction, seed): a tidy DataFrame, one row per run
    (with ``train_images_per_s``: training speed including the online augmentation).

    recipe: the training recipe (None → ``engine.Recipe()``); fit_kw go to
    :func:`mednb.engine.train` (device, model_kw, …).
    """
    import pandas as pd
    runs = list(itertools.product(policies, fractions, seeds))
    rows = []
    for pol, frac, seed in _runs(runs, f"{splits.name}: policy × fraction × seed", progress):
        aug = get(pol, strength, dims=splits.dims)
        res = engine.train(splits, model, recipe, seed=seed, augment=aug, label_fraction=frac, progress=False,
                           **fit_kw)
        rows.append(dict(dataset=splits.name, policy=pol, label_fraction=frac, seed=seed, n_train=res.n_train,
                         test_auc=res.test["auc"], test_acc=res.test["acc"],
                         test_balanced_acc=res.test["balanced_acc"], seconds=res.seconds,
                         train_images_per_s=res.images_per_s))
    return pd.DataFrame(rows)


def compare_offline_online(splits, policy: str = "basic", copies: int = 4, seeds=(0,), *,
                           recipe: engine.Recipe | None = None, label_fraction: float = 1.0, model: str = "cnn",
                           strength: float = 1.0, progress: bool = True, **fit_kw):
    """Offline (train set enlarged ×(copies+1) beforehand) vs online (per mini-batch) vs none.

    Same number of images seen per run: online and none train ``recipe.epochs`` epochs over N
    images, offline ``max(1, round(recipe.epochs / (copies + 1)))`` epochs over (copies + 1)·N.
    Returns one row per (mode, seed): train-set bytes, preparation and training seconds, test AUC/ACC.
    """
    import pandas as pd
    recipe = engine.Recipe() if recipe is None else recipe
    aug = get(policy, strength, dims=splits.dims)
    rows = []
    runs = [(m, s) for s in seeds for m in ("none", "online", "offline")]
    for mode, seed in _runs(runs, f"{splits.name}: offline vs online", progress):
        t0 = time.perf_counter()
        if mode == "offline":
            sp, rec, a, frac = offline_splits(splits, aug, copies, label_fraction, seed), \
                recipe.replace(epochs=max(1, round(recipe.epochs / (copies + 1)))), None, 1.0
        else:
            sp, rec, a, frac = splits, recipe, (aug if mode == "online" else None), label_fraction
        prep = time.perf_counter() - t0
        train_bytes = nbytes(sp.train) if mode == "offline" else nbytes(
            splits.train.subset(label_subset(splits.train.y, label_fraction, seed, splits.task)))
        res = engine.train(sp, model, rec, seed=seed, augment=a, label_fraction=frac, progress=False, **fit_kw)
        rows.append(dict(dataset=splits.name, mode=mode, policy=policy if mode != "none" else "none", seed=seed,
                         n_train=res.n_train, epochs=rec.epochs, images_seen=res.n_train * len(res.history),
                         train_bytes=train_bytes, prep_s=prep, train_s=res.seconds,
                         test_auc=res.test["auc"], test_acc=res.test["acc"]))
    return pd.DataFrame(rows)


def imbalance_experiment(splits, ratio: float = 0.1, seeds=(0,), strategies=tuple(IMBALANCE_STRATEGIES), *,
                         recipe: engine.Recipe | None = None, model: str = "cnn", minority: int | None = None,
                         progress: bool = True, **fit_kw):
    """Class imbalance: train on a subset where the minority class has ``ratio`` × the majority's
    samples, with each strategy of :data:`IMBALANCE_STRATEGIES`; test AUC and balanced accuracy
    on the untouched test split. One row per (strategy, seed)."""
    import pandas as pd
    strategies = [check_name(s, IMBALANCE_STRATEGIES, "imbalance strategy") for s in strategies]
    rows = []
    runs = [(st, s) for s in seeds for st in strategies]
    for strat, seed in _runs(runs, f"{splits.name}: imbalance", progress):
        idx = imbalanced_indices(splits.train.y, ratio, seed, minority)
        kw = dict(IMBALANCE_STRATEGIES[strat])
        if "augment" in kw:
            kw["augment"] = get(kw["augment"], dims=splits.dims)
        res = engine.train(splits, model, recipe, seed=seed, train_idx=idx, progress=False, **kw, **fit_kw)
        counts = torch.bincount(splits.train.y[idx, 0], minlength=splits.n_classes).tolist()
        rows.append(dict(dataset=splits.name, strategy=strat, seed=seed, train_counts=str(counts),
                         test_auc=res.test["auc"], test_balanced_acc=res.test["balanced_acc"],
                         test_acc=res.test["acc"]))
    return pd.DataFrame(rows)


def verdict(df, metric: str = "test_auc", baseline: str = "none"):
    """Per (dataset, label fraction): the winning policy, its mean metric and the gain over
    ``baseline`` (mean over seeds), with the seed sd of both — computed from a grid DataFrame."""
    import pandas as pd
    rows = []
    for (ds, frac), g in df.groupby(["dataset", "label_fraction"]):
        stats = g.groupby("policy")[metric].agg(["mean", "std", "count"])
        best = stats["mean"].idxmax()
        base = stats.loc[baseline] if baseline in stats.index else None
        sd = lambda v: 0.0 if (v is None or not np.isfinite(v)) else float(v)
        rows.append(dict(dataset=ds, label_fraction=frac, best_policy=best, best_mean=stats.loc[best, "mean"],
                         best_sd=sd(stats.loc[best, "std"]),
                         baseline_mean=None if base is None else base["mean"],
                         gain_over_baseline=None if base is None else stats.loc[best, "mean"] - base["mean"],
                         gain_exceeds_sd=None if base is None or stats["count"].min() < 2 else bool(
                             stats.loc[best, "mean"] - base["mean"] > max(sd(stats.loc[best, "std"]), sd(base["std"]))),
                         n_seeds=int(stats["count"].min())))
    return pd.DataFrame(rows)


def summary(df, by, metrics=("test_auc",), digits: int = 3):
    """``mean ± sd (n)`` of wide result columns ``metrics`` per group ``by`` (via :func:`mednb.metrics.summarize`)."""
    by = [by] if isinstance(by, str) else list(by)
    long = df.melt(id_vars=by, value_vars=list(metrics), var_name="metric", value_name="value")
    out = M.summarize(long.to_dict("records"), by, metrics, digits)
    return out[[c for c in out.columns if not c.endswith("_mean")]]


def describe_verdict(v) -> str:
    """Plain-language lines from :func:`verdict` (one per dataset and label fraction)."""
    lines = []
    for r in v.itertuples():
        if r.best_policy == "none" or r.gain_over_baseline is None or not np.isfinite(r.gain_over_baseline):
            lines.append(f"{r.dataset}, {r.label_fraction:.0%} labels: no policy beat 'none' "
                         f"(best {r.best_policy}, AUC {r.best_mean:.3f}).")
        else:
            note = ("one seed — no sd, not conclusive" if r.n_seeds < 2 else
                    "larger than the seed sd" if r.gain_exceeds_sd else "within the seed sd — not a clear win")
            lines.append(f"{r.dataset}, {r.label_fraction:.0%} labels: {r.best_policy} wins, AUC {r.best_mean:.3f} "
                         f"vs {r.baseline_mean:.3f} without augmentation ({r.gain_over_baseline:+.3f}, {note}).")
    return "\n".join(lines)
