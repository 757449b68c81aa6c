"""mednb.metrics: parity with medmnist's Evaluator for every task type, and the summaries."""
import math

import numpy as np
import pytest

from mednb import metrics as M

# (medmnist flag whose INFO gives the task, n classes/labels)
TASKS = {"multi-class": ("pathmnist", 9), "binary-class": ("breastmnist", 2),
         "multi-label, binary-class": ("chestmnist", 14), "ordinal-regression": ("retinamnist", 5)}


def _random_case(task, k, n=200, seed=0):
    rng = np.random.default_rng(seed)
    if task.startswith("multi-label"):
        y = (rng.random((n, k)) < 0.3).astype(np.int64)
        score = rng.random((n, k))
    else:
        y = rng.integers(0, k, size=(n, 1))
        y[:k, 0] = np.arange(k)  # every class present
        logits = rng.normal(size=(n, k))
        score = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, score


@pytest.mark.parametrize("task", list(TASKS))
def test_parity_with_medmnist_evaluator(task, tmp_path):
    """Our AUC/ACC equal medmnist.Evaluator.evaluate on the same labels and random scores."""
    from medmnist import Evaluator
    flag, k = TASKS[task]
    y, score = _random_case(task, k)
    # the Evaluator reads the labels of <root>/<flag>.npz: give it ours
    np.savez(tmp_path / f"{flag}.npz", test_labels=y.astype(np.uint8))
    ref_auc, ref_acc = Evaluator(flag, "test", root=str(tmp_path)).evaluate(score)
    assert M.auc(y, score, task) == pytest.approx(ref_auc, abs=1e-12)
    assert M.acc(y, score, task) == pytest.approx(ref_acc, abs=1e-12)
    out = M.classification(y, score, task)
    assert set(out) == {"auc", "acc", "balanced_acc", "ece", "per_class_recall", "per_class_f1", "reliability"}
    assert len(out["per_class_recall"]) == len(out["per_class_f1"]) == k and sum(out["reliability"]["count"]) > 0
    assert set(M.scalars(out)) == {"auc", "acc", "balanced_acc", "ece"}
    assert 0.3 < out["auc"] < 0.7  # random scores: near chance
    if task.startswith("multi-label"):
        assert math.isnan(out["balanced_acc"])
    else:
        assert 0 <= out["balanced_acc"] <= 1


def test_semantics_by_hand():
    """Binary uses the last column and > 0.5; multi-class uses argmax; perfect scores give 1."""
    y = np.array([[0], [1], [1], [0]])
    s = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6]])
    assert M.acc(y, s, "binary-class") == 0.5
    assert M.auc(y, s, "binary-class") == 0.75
    y3 = np.array([[0], [1], [2]])
    assert M.acc(y3, np.eye(3), "multi-class") == 1.0
    assert M.auc(y3, np.eye(3), "ordinal-regression") == 1.0


def test_auc_nan_when_a_class_is_absent_and_unknown_task():
    y = np.zeros((5, 1), dtype=int)
    assert math.isnan(M.auc(y, np.random.default_rng(0).random((5, 2)), "binary-class"))
    with pytest.raises(ValueError, match="valid"):
        M.auc(y, np.zeros((5, 2)), "regression")


def test_mean_sd_and_fmt():
    m, s, n = M.mean_sd([0.9, 0.8, float("nan"), None, 1.0])
    assert (m, n) == (pytest.approx(0.9), 3)
    assert s == pytest.approx(0.1)
    assert M.mean_sd([0.5]) == (0.5, 0.0, 1)
    assert M.fmt([0.9, 0.8, 1.0]) == "0.900 ± 0.100 (n=3)"
    assert M.fmt([]) == "–"


def test_summarize_groups_records():
    recs = [{"metric": "test_auc", "value": v, "dataset": "d", "model": m, "seed": s}
            for m, vals in (("cnn", [0.9, 0.92]), ("resnet18", [0.8, 0.82])) for s, v in enumerate(vals)]
    recs.append({"metric": "test_acc", "value": 0.7, "dataset": "d", "model": "cnn", "seed": 0})
    df = M.summarize(recs, by="model")
    assert list(df["model"]) == ["cnn", "resnet18"]
    assert df.loc[df.model == "cnn", "test_auc"].item() == "0.910 ± 0.014 (n=2)"
    assert df.loc[df.model == "cnn", "test_acc_mean"].item() == pytest.approx(0.7)
    assert df.loc[df.model == "resnet18", "test_acc"].item() == "–"


@pytest.mark.parametrize("task", list(TASKS))
def test_per_class_recall_f1_agree_with_sklearn(task):
    """Per-class recall/F1 (per label for multi-label) and balanced accuracy equal scikit-learn's."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score
    _, k = TASKS[task]
    for seed in range(3):
        y, score = _random_case(task, k, n=150, seed=seed)
        truth, pred = M.predictions(y, score, task)
        labels = None if task.startswith("multi-label") else list(range(k))
        want_r = recall_score(truth, pred, labels=labels, average=None, zero_division=np.nan)
        want_f = f1_score(truth, pred, labels=labels, average=None, zero_division=np.nan)
        np.testing.assert_allclose(M.per_class_recall(y, score, task), want_r, rtol=0, atol=1e-12)
        np.testing.assert_allclose(M.per_class_f1(y, score, task), want_f, rtol=0, atol=1e-12)
        if not task.startswith("multi-label"):
            assert np.mean(M.per_class_recall(y, score, task)) == pytest.approx(
                balanced_accuracy_score(truth, pred), abs=1e-12)
            assert M.balanced_accuracy(y, score, task) == pytest.approx(balanced_accuracy_score(truth, pred))


def test_per_class_undefined_is_nan_not_zero():
    y = np.array([[0], [0], [1]])
    s = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])  # class 2 neither present nor predicted
    assert M.per_class_recall(y, s, "multi-class")[:2] == [0.5, 1.0]
    assert math.isnan(M.per_class_recall(y, s, "multi-class")[2]) and math.isnan(M.per_class_f1(y, s, "multi-class")[2])
    assert M.per_class_f1(y, s, "multi-class")[:2] == [pytest.approx(2 / 3), pytest.approx(2 / 3)]


def test_ece_hand_worked():
    """Five equal-width bins; ECE = Σ n_m/N |acc_m − conf_m|, worked out by hand."""
    # multi-class, top-label: conf .9 ✓ (bin 4), .7 ✗ and .75 ✓ (bin 3), .45 ✓ (bin 2)
    y = np.array([[0], [1], [1], [0]])
    s = np.array([[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.2, 0.75, 0.05], [0.45, 0.35, 0.2]])
    bins = M.reliability(y, s, "multi-class", n_bins=5)
    assert bins["count"] == [0, 0, 1, 2, 1]
    assert bins["correct_sum"] == [0, 0, 1, 1, 1]
    assert bins["confidence_sum"] == pytest.approx([0, 0, 0.45, 1.45, 0.9])
    # (1·|1 − .45| + 2·|.5 − .725| + 1·|1 − .9|) / 4 = (.55 + .45 + .1) / 4
    assert M.ece(y, s, "multi-class", n_bins=5) == pytest.approx(0.275)
    # binary: p(last) .3 → predicts 0, conf .7 ✓; .85 on a 0 → conf .85 ✗; .65 on a 1 → conf .65 ✓
    yb, sb = np.array([[0], [0], [1]]), np.array([[0.7, 0.3], [0.15, 0.85], [0.35, 0.65]])
    assert M.reliability(yb, sb, "binary-class", n_bins=5)["count"] == [0, 0, 0, 2, 1]
    assert M.ece(yb, sb, "binary-class", n_bins=5) == pytest.approx((2 * abs(1 - 0.675) + 0.85) / 3)
    # multi-label: every (sample, label) pair is a binary prediction: .9 ✓, .7 ✓ | .65 ✗, .85 ✗
    ym, sm = np.array([[1, 0], [0, 1]]), np.array([[0.9, 0.3], [0.65, 0.15]])
    assert M.ece(ym, sm, "multi-label, binary-class", n_bins=5) == pytest.approx((2 * 0.175 + 2 * 0.375) / 4)
    assert M.ece(y, np.eye(3)[[0, 1, 1, 0]], "multi-class") == 0.0  # confident and right: calibrated
    assert math.isnan(M.ece_from_bins({"count": [0, 0], "confidence_sum": [0, 0], "correct_sum": [0, 0]}))


def test_reliability_bins_pool_by_adding():
    y, s = _random_case("multi-class", 9, n=120, seed=1)
    a, b = M.reliability(y[:50], s[:50], "multi-class"), M.reliability(y[50:], s[50:], "multi-class")
    whole = M.reliability(y, s, "multi-class")
    pooled = {k: list(np.add(a[k], b[k])) for k in ("count", "confidence_sum", "correct_sum")}
    assert pooled["count"] == whole["count"] and sum(whole["count"]) == 120
    assert M.ece_from_bins(pooled) == pytest.approx(M.ece(y, s, "multi-class"))
    with pytest.raises(ValueError, match="n_bins"):
        M.reliability(y, s, "multi-class", n_bins=0)


def test_collapse_warning_only_for_single_class_predictions():
    from mednb import metrics as M
    y = np.array([[0], [0], [0], [1]])
    collapsed = M.classification(y, np.array([[0.4, 0.6]] * 4), "binary-class")  # everything "1"
    assert "only class 'malignant'" in M.collapse_warning(collapsed, {0: "benign", 1: "malignant"})
    fine = M.classification(y, np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]]), "binary-class")
    assert M.collapse_warning(fine) is None
