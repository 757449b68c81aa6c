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
    assert set(out) == {"auc", "acc", "balanced_acc"}
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
