"""Annotation cost: mean curves over seeds, labels needed to reach a target, labels saved vs random,
and the class mix of what each strategy bought. All read a :func:`~mednb.active.loop.compare` frame."""
from __future__ import annotations

import math

import numpy as np

from ..data import Splits


def mean_curve(frame, strategy: str, metric: str = "test_auc"):
    """``(n_labels, mean, sd, n_seeds)`` arrays of one strategy's curve in a :func:`compare` frame."""
    g = frame[frame["strategy"] == strategy].groupby("n_labels")[metric].agg(["mean", "std", "count"])
    g = g.sort_index()
    return g.index.to_numpy(float), g["mean"].to_numpy(float), g["std"].fillna(0).to_numpy(float), \
        g["count"].to_numpy(int)


def labels_needed(n_labels, values, target: float) -> float:
    """Labels at which a curve first reaches ``target``: linear interpolation between the last point
    below and the first point at/above it (the first point itself if it already reaches it); NaN when
    never reached."""
    n = np.asarray(n_labels, float)
    v = np.asarray(values, float)
    order = np.argsort(n)
    n, v = n[order], v[order]
    hit = np.nonzero(v >= target)[0]
    if len(hit) == 0:
        return math.nan
    i = int(hit[0])
    if i == 0:
        return float(n[0])
    n0, n1, v0, v1 = n[i - 1], n[i], v[i - 1], v[i]
    return float(n0 + (target - v0) * (n1 - n0) / (v1 - v0))


def labels_saved_vs_random(frame, strategy: str, metric: str = "test_auc", target: float | None = None,
                           baseline: str = "random") -> dict:
    """Fraction of labels saved by ``strategy`` vs ``baseline`` to reach ``target``.

    ``saved = 1 − n_strategy(target) / n_random(target)``, where ``n_s(target)`` is
    :func:`labels_needed` on the strategy's mean-over-seeds curve and ``target`` defaults to the
    baseline's mean ``metric`` at its full (largest) budget. 0.5 means half the labels (AIFT's
    claim: ≥ 0.5); negative means more labels than random; NaN when the strategy never reaches the
    target within the budget. Returns ``{"saved", "n_strategy", "n_random", "target"}``.
    """
    nr, vr, _, _ = mean_curve(frame, baseline, metric)
    if len(nr) == 0:
        raise ValueError(f"no {baseline!r} rows in the frame")
    if target is None:
        target = float(vr[-1])
    n_r = labels_needed(nr, vr, target)
    ns, vs, _, _ = mean_curve(frame, strategy, metric)
    n_s = labels_needed(ns, vs, target) if len(ns) else math.nan
    saved = 1 - n_s / n_r if (math.isfinite(n_s) and math.isfinite(n_r) and n_r > 0) else math.nan
    return {"saved": saved, "n_strategy": n_s, "n_random": n_r, "target": float(target)}


def cost_table(frame, metric: str = "test_auc", target: float | None = None, baseline: str = "random"):
    """One row per strategy: final mean ± sd, labels needed to reach the target, fraction saved."""
    import pandas as pd
    from ..metrics import fmt
    rows = []
    last = frame["n_labels"].max()
    for s in frame["strategy"].unique():
        r = labels_saved_vs_random(frame, s, metric, target, baseline)
        fin = frame[(frame["strategy"] == s) & (frame["n_labels"] == last)][metric]
        rows.append({"strategy": s, f"{metric} @ {int(last)} labels": fmt(fin.tolist()),
                     "target": round(r["target"], 4),
                     "labels needed": "not reached" if not math.isfinite(r["n_strategy"]) else round(r["n_strategy"], 1),
                     "labels saved vs random": "not reached" if not math.isfinite(r["saved"]) else f"{r['saved']:+.0%}"})
    return pd.DataFrame(rows)


def queried_classes(frame, splits: Splits, skip_seed_set: bool = True):
    """Class histogram of the queried samples per strategy (summed over seeds and rounds) → DataFrame
    with one column per class (fractions) and the count ``n``."""
    import pandas as pd
    y = splits.train.y[:, 0].numpy()
    rows = []
    for s, g in frame.groupby("strategy", sort=False):
        idx = [i for _, r in g.iterrows() if not (skip_seed_set and r["round"] == 0) for i in r["queried"]]
        c = np.bincount(y[np.asarray(idx, dtype=np.int64)], minlength=splits.n_classes) if idx else \
            np.zeros(splits.n_classes, int)
        row = {"strategy": s, "n": int(c.sum())}
        row.update({splits.labels[i][:20]: c[i] / max(c.sum(), 1) for i in range(splits.n_classes)})
        rows.append(row)
    return pd.DataFrame(rows)
