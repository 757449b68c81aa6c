"""Paired verdicts between strategies, and how much validation size moves the low-label numbers.

Strategies of one :func:`~mednb.active.loop.compare` share the cold-start set of each seed and one step budget,
so they are compared per seed (:func:`mednb.claims.paired`, a 95 % Student-t interval over seeds).

:func:`val_labels_effect` reruns the first rounds with validation on the whole split (``val_labels="full"``)
and on a subset matched to the labels (``"matched"``: 0.25 × the labels, at least 5 per class). Lüth et al.
(NeurIPS 2023, "Navigating the Pitfalls of Active Learning Evaluation") show that a validation set larger than
the labelled training set — common in active-learning papers — is unrealistic and can change conclusions.
"""
from __future__ import annotations

from .. import claims, engine
from ..data import Splits
from ..metrics import fmt
from .loop import compare


def _at(frame, strategy: str, n_labels: int, metric: str) -> dict:
    sub = frame[(frame["strategy"] == strategy) & (frame["n_labels"] == int(n_labels))]
    return {int(r.seed): float(getattr(r, metric)) for r in sub.itertuples()}


def paired_at(frame, a: str, b: str = "random", n_labels: int | None = None,
              metric: str = "test_auc") -> claims.Paired:
    """``a − b`` in ``metric`` at ``n_labels`` (None: the largest count both have), paired over seeds."""
    for s in (a, b):
        if s not in set(frame["strategy"]):
            raise ValueError(f"strategy {s!r} is not in the frame; valid: {', '.join(map(str, frame['strategy'].unique()))}")
    if n_labels is None:
        n_labels = int(min(frame[frame["strategy"] == s]["n_labels"].max() for s in (a, b)))
    return claims.paired(_at(frame, a, n_labels, metric), _at(frame, b, n_labels, metric))


def best_strategy(frame, n_labels: int, baseline: str = "random", metric: str = "test_auc") -> str:
    """The strategy other than ``baseline`` with the highest mean ``metric`` at ``n_labels`` (first one on ties)."""
    sub = frame[(frame["n_labels"] == int(n_labels)) & (frame["strategy"] != baseline)]
    if not len(sub):
        raise ValueError(f"no strategy other than {baseline!r} has a round at {n_labels} labels")
    means = sub.groupby("strategy", sort=False)[metric].mean()
    return str(means.idxmax())


def val_labels_effect(splits: Splits, strategies, budget, seeds, recipe: engine.Recipe, *, frame=None,
                      progress: bool = False, metric: str = "test_auc", **learner_kw):
    """The first rounds (``budget``) of ``strategies`` (two: the first is compared against the second) with
    ``val_labels`` "full" and "matched", same seeds and step budget.

    frame: a :func:`compare` frame already run with ``recipe`` (its rows for these strategies and counts are
    reused for ``recipe.val_labels``; only the other setting is trained). Returns ``(runs, table)``: the tidy
    runs (with ``val_labels`` and ``n_val``) and one row per label count and setting — mean ± sd of each
    strategy, the paired Δ first − second (95 % interval), its verdict — plus per count a row ``matched − full``
    with each strategy's paired move between the settings.
    """
    import pandas as pd
    strategies = list(strategies)
    if len(strategies) != 2:
        raise ValueError(f"val_labels_effect compares two strategies (a strategy and its baseline), got {strategies}")
    budget = [int(b) for b in budget]
    parts = []
    for v in engine.VAL_LABELS:
        if frame is not None and v == recipe.val_labels:
            f = frame[frame["strategy"].isin(strategies) & frame["n_labels"].isin(budget)
                      & frame["seed"].isin(list(seeds))].copy()
            if len(f) == len(strategies) * len(budget) * len(seeds):
                parts.append(f.assign(val_labels=v))
                continue
        f, _ = compare(splits, strategies, budget, seeds, recipe.replace(val_labels=v), progress=progress,
                       **learner_kw)
        parts.append(f.assign(val_labels=v))
    runs = pd.concat(parts, ignore_index=True)
    a, b = strategies
    rows = []
    for n in budget:
        by_v = {v: runs[runs["val_labels"] == v] for v in engine.VAL_LABELS}
        for v, f in by_v.items():
            p = claims.paired(_at(f, a, n, metric), _at(f, b, n, metric))
            at_n = f[f["n_labels"] == n]
            rows.append({"n_labels": n, "val_labels": v, "n_val": int(at_n["n_val"].mean()),
                         a: fmt(list(_at(f, a, n, metric).values())), b: fmt(list(_at(f, b, n, metric).values())),
                         f"Δ {a} − {b}": str(p).split(" → ")[0], "verdict": p.verdict})
        moves = {s: claims.paired(_at(by_v["matched"], s, n, metric), _at(by_v["full"], s, n, metric))
                 for s in strategies}
        rows.append({"n_labels": n, "val_labels": "matched − full", "n_val": None,
                     **{s: f"{m.delta:+.3f}" + ("" if m.n < 2 else f" [{m.lo:+.3f}, {m.hi:+.3f}]")
                        for s, m in moves.items()}, f"Δ {a} − {b}": "", "verdict": ""})
    return runs, pd.DataFrame(rows)
