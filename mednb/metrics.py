"""Classification metrics with exactly the medmnist Evaluator's semantics, plus summaries.

AUC: binary → ROC-AUC of the last column; multi-class/ordinal → mean one-vs-rest AUC;
multi-label → mean per-label AUC. ACC: argmax, or score > 0.5 (binary, per label).
Both come from ``medmnist.evaluator.getAUC/getACC`` (scikit-learn underneath).

Beside macro-AUC/ACC, from the same predictions: per-class recall and F1, balanced accuracy, and the
expected calibration error with its reliability-diagram bins (Guo et al., "On calibration of modern
neural networks", ICML 2017) — macro-AUC can hide a class the model never predicts, and a model can
rank well while its probabilities are over-confident.
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


def predictions(y_true, y_score, task: str) -> tuple[np.ndarray, np.ndarray]:
    """``(truth, pred)`` as the medmnist ACC sees them: binary → last column > 0.5; multi-class and
    ordinal → argmax (both ``(N,)``); multi-label → each label > 0.5 (both ``(N, K)``)."""
    _check_task(task)
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=float)
    if task.startswith("multi-label"):
        return y_true.astype(int), (y_score > 0.5).astype(int)
    truth = y_true.reshape(len(y_true), -1)[:, 0].astype(int)
    pred = (y_score[:, -1] > 0.5).astype(int) if task == "binary-class" else y_score.argmax(1)
    return truth, pred


def _counts(y_true, y_score, task: str):
    """Per class (per label for multi-label): true positives, false positives, false negatives."""
    truth, pred = predictions(y_true, y_score, task)
    if task.startswith("multi-label"):
        t, p = truth.astype(bool), pred.astype(bool)
    else:
        k = np.asarray(y_score).shape[1]
        t, p = np.eye(k, dtype=bool)[truth], np.eye(k, dtype=bool)[pred]
    return (t & p).sum(0), (~t & p).sum(0), (t & ~p).sum(0)


def per_class_recall(y_true, y_score, task: str) -> list[float]:
    """Recall TP / (TP + FN) of each class (multi-label: of each label, threshold 0.5); NaN for a
    class with no true sample (undefined, never 0)."""
    tp, _, fn = _counts(y_true, y_score, task)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [float(v) for v in np.where(tp + fn > 0, tp / (tp + fn), math.nan)]


def per_class_f1(y_true, y_score, task: str) -> list[float]:
    """F1 = 2TP / (2TP + FP + FN) of each class (multi-label: each label); NaN when the class is
    neither present nor predicted."""
    tp, fp, fn = _counts(y_true, y_score, task)
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return [float(v) for v in np.where(den > 0, 2 * tp / den, math.nan)]


def _confidence(y_true, y_score, task: str) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, correct)`` per prediction, top-label: the probability of the predicted class.

    Binary: max(p, 1 − p) of the last column; multi-class/ordinal: the max softmax score;
    multi-label: every (sample, label) pair is its own binary prediction, pooled.
    """
    truth, pred = predictions(y_true, y_score, task)
    s = np.asarray(y_score, dtype=float)
    if task == "binary-class":
        conf = np.maximum(s[:, -1], 1 - s[:, -1])
    elif task.startswith("multi-label"):
        conf = np.maximum(s, 1 - s).ravel()
        truth, pred = truth.ravel(), pred.ravel()
    else:
        conf = s.max(1)
    return conf, (pred == truth).astype(float)


def reliability(y_true, y_score, task: str, n_bins: int = 10) -> dict[str, list]:
    """Reliability-diagram bins: ``n_bins`` equal-width confidence bins over [0, 1], bin m holding
    confidences in ((m−1)/M, m/M] (0 goes to the first). Returns ``{"edges", "count",
    "confidence_sum", "correct_sum"}`` — sums, so bins of several runs pool by adding them;
    mean confidence and accuracy of a bin are the sums divided by its count."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf, correct = _confidence(y_true, y_score, task)
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    return {"edges": [float(e) for e in np.linspace(0, 1, n_bins + 1)],
            "count": [int(c) for c in np.bincount(idx, minlength=n_bins)],
            "confidence_sum": [float(c) for c in np.bincount(idx, weights=conf, minlength=n_bins)],
            "correct_sum": [float(c) for c in np.bincount(idx, weights=correct, minlength=n_bins)]}


def ece_from_bins(bins: dict) -> float:
    """ECE = Σ_m (n_m / N) · |acc_m − conf_m| from :func:`reliability` bins (NaN when empty)."""
    n = np.asarray(bins["count"], float)
    if n.sum() == 0:
        return math.nan
    gap = np.abs(np.asarray(bins["correct_sum"], float) - np.asarray(bins["confidence_sum"], float))
    return float(gap.sum() / n.sum())  # n_m/N · |Σcorrect/n_m − Σconf/n_m| = |Σcorrect − Σconf| / N


def ece(y_true, y_score, task: str, n_bins: int = 10) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins, top-label confidence (binary and
    multi-class/ordinal: the predicted class's probability; multi-label: each label pooled)."""
    return ece_from_bins(reliability(y_true, y_score, task, n_bins))


def classification(y_true, y_score, task: str) -> dict:
    """``{"auc", "acc", "balanced_acc", "ece"}`` (floats) plus ``"per_class_recall"``,
    ``"per_class_f1"`` (lists, one per class or label) and ``"reliability"`` (:func:`reliability`
    bins, 10 equal-width) for one set of predictions."""
    bins = reliability(y_true, y_score, task)
    return {"auc": auc(y_true, y_score, task), "acc": acc(y_true, y_score, task),
            "balanced_acc": balanced_accuracy(y_true, y_score, task), "ece": ece_from_bins(bins),
            "per_class_recall": per_class_recall(y_true, y_score, task),
            "per_class_f1": per_class_f1(y_true, y_score, task), "reliability": bins}


def scalars(result: dict) -> dict[str, float]:
    """The number-valued entries of a metrics dict (drops the per-class lists and reliability bins)."""
    return {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def collapse_warning(test: dict, labels: dict | None = None) -> str | None:
    """A warning when a selected model's test predictions (argmax / 0.5 threshold) fall into a single
    class — every other class has recall 0 — else None. Uses ``per_class_recall`` of an evaluation."""
    recall = [r for r in test.get("per_class_recall", []) if not math.isnan(r)]
    hit = [i for i, r in enumerate(test.get("per_class_recall", [])) if not math.isnan(r) and r > 0]
    if len(recall) < 2 or len(hit) > 1:
        return None
    name = (labels or {}).get(hit[0], hit[0]) if hit else "no"
    return (f"it predicts (almost) only class {name!r} on the test set (test ACC {test.get('acc', float('nan')):.3f}): "
            "the kept epoch has collapsed at the 0.5 threshold; its AUC may still look fine. Raise AUC_TOLERANCE "
            "(ties broken by validation loss) or train longer")


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
