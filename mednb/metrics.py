"""Classification metrics with exactly the medmnist Evaluator's semantics, plus summaries.

AUC: binary → ROC-AUC of the last column; multi-class/ordinal → mean one-vs-rest AUC;
multi-label → mean per-label AUC. ACC: argmax, or score > 0.5 (binary, per label).
Both come from ``medmnist.evaluator.getAUC/getACC`` (scikit-learn underneath).
"""
from __future__ import annotations

import math

import numpy as np

TASKS = ("binary-class", "multi-class", "multi-label, binary-class", "ordinal-regression")


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    return task


def auc(y_true, y_score, task: str) -> float:
    """medmnist AUC; NaN when undefined (a class absent from ``y_true``)."""
    from medmnist.evaluator import getAUC
    _check_task(task)
    try:
        return float(getAUC(np.asarray(y_true), np.asarray(y_score), task))
    except ValueError:
        return math.nan


def acc(y_true, y_score, task: str) -> float:
    from medmnist.evaluator import getACC
    _check_task(task)
    return float(getACC(np.asarray(y_true), np.asarray(y_score), task))


def balanced_accuracy(y_true, y_score, task: str) -> float:
    """Mean per-class recall of the argmax prediction (not defined for multi-label: NaN)."""
    from sklearn.metrics import balanced_accuracy_score
    if task.startswith("multi-label"):
        return math.nan
    y_true = np.asarray(y_true).reshape(len(y_true), -1)[:, 0]
    y_score = np.asarray(y_score)
    pred = (y_score[:, -1] > 0.5).astype(int) if task == "binary-class" else y_score.argmax(1)
    return float(balanced_accuracy_score(y_true, pred))


def classification(y_true, y_score, task: str) -> dict[str, float]:
    """``{"auc", "acc", "balanced_acc"}`` for one set of predictions."""
    return {"auc": auc(y_true, y_score, task), "acc": acc(y_true, y_score, task),
            "balanced_acc": balanced_accuracy(y_true, y_score, task)}


def mean_sd(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and n, ignoring NaNs."""
    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, int(len(v))


def fmt(values, digits: int = 3) -> str:
    """``"0.912 ± 0.011 (n=3)"``."""
    m, s, n = mean_sd(values)
    if n == 0:
        return "–"
    return f"{m:.{digits}f} ± {s:.{digits}f} (n={n})"


def summarize(records, by, metrics=("test_auc", "test_acc"), digits: int = 3):
    """Group record dicts (``mednb.record`` output or plain dicts with a ``metric`` and ``value``)
    by tag columns and return a pandas DataFrame with ``mean ± sd (n)`` per metric."""
    import pandas as pd
    df = pd.DataFrame(list(records))
    if df.empty:
        return df
    by = [by] if isinstance(by, str) else list(by)
    df = df[df["metric"].isin(metrics)]
    rows = []
    for key, g in df.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        for m in metrics:
            vals = g.loc[g["metric"] == m, "value"].tolist()
            row[m] = fmt(vals, digits)
            row[f"{m}_mean"] = mean_sd(vals)[0]
        rows.append(row)
    return pd.DataFrame(rows)
