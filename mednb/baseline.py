"""Notebook 01 — baselines on MedMNIST with the paper's protocol, and paper-vs-ours tables.

The protocol of MedMNIST v2 (Yang et al., Scientific Data 2023) is :data:`mednb.engine.PAPER`
(Adam lr 1e-3, batch 128 / 3D 32, 100 epochs, LR ×0.1 at 50 % and 75 %, best validation AUC);
the profiles below scale its epochs. :func:`run_seeds` trains one (dataset, model) pair over
seeds and returns records (``test_auc``, ``test_acc`` tagged ``dataset``, ``model``, ``seed``);
:func:`compare` puts ours (mean ± sd) beside the paper's numbers from :mod:`mednb.references`.

Command line (the measurements in BENCHMARKS.md)::

    python -m mednb.baseline breastmnist cnn --epochs 50 --seeds 0 1 2 --out runs.jsonl
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from . import knobs

PROFILES = {
    "smoke": dict(DATASET="phantom2d", DATASET_3D="phantom3d", SIZE=28, MODEL="cnn", MODEL_3D="cnn",
                  EPOCHS=4, EPOCHS_3D=7, COMPARE_MODELS=["cnn"], COMPARE_EPOCHS=2, BATCH_SIZE=16, BATCH_SIZE_3D=16,
                  LR=5e-3, SEEDS=[0], N_TRAIN=400, N_TRAIN_3D=200, DEVICE="auto", AUC_TOLERANCE=0.01),
    "student": dict(DATASET="breastmnist", DATASET_3D="adrenalmnist3d", SIZE=28, MODEL="cnn", MODEL_3D="cnn",
                    EPOCHS=50, EPOCHS_3D=10, COMPARE_MODELS=["cnn", "resnet18"], COMPARE_EPOCHS=10, BATCH_SIZE=128,
                    BATCH_SIZE_3D=32, LR=1e-3, SEEDS=[0, 1, 2], N_TRAIN=0, N_TRAIN_3D=0, DEVICE="auto",
                    AUC_TOLERANCE=0.01),
    "full": dict(DATASET="breastmnist", DATASET_3D="adrenalmnist3d", SIZE=28, MODEL="resnet18",
                 MODEL_3D="resnet18_3d", EPOCHS=100, EPOCHS_3D=100, COMPARE_MODELS=["cnn", "resnet18", "resnet50"],
                 COMPARE_EPOCHS=100, BATCH_SIZE=128, BATCH_SIZE_3D=32, LR=1e-3, SEEDS=[0, 1, 2], N_TRAIN=0,
                 N_TRAIN_3D=0, DEVICE="auto", AUC_TOLERANCE=0.0),
}
"""Knobs: DATASET / DATASET_3D (a 2D and a 3D set; ``"none"`` skips that part, so that a run is one
training), SIZE, MODEL / MODEL_3D (registry names trained over SEEDS with the paper's protocol for
EPOCHS / EPOCHS_3D), COMPARE_MODELS (2D models compared on DATASET for COMPARE_EPOCHS, first seed),
BATCH_SIZE(_3D), LR, SEEDS, N_TRAIN / N_TRAIN_3D (phantom training-set sizes; 0 = the dataset's own
split, ignored for MedMNIST), DEVICE, AUC_TOLERANCE (model selection: among epochs within this of the best
validation AUC keep the lowest validation loss — ``engine.STABLE``; 0 = the paper's rule, ``engine.PAPER``,
which the full profile keeps for the comparison with the table; BENCHMARKS.md §8 measures both)."""

# knobs valid only for a dataset or a registry (checked by mednb.params before anything runs)
CHECKS = {"DATASET": knobs.dataset(2, skip=True), "DATASET_3D": knobs.dataset(3, skip=True),
          "SIZE": knobs.size("DATASET", "DATASET_3D"), "MODEL": knobs.model(2), "MODEL_3D": knobs.model(3),
          "COMPARE_MODELS": knobs.model(2)}

# registry model -> the paper row it corresponds to (for the comparison table)
PAPER_ROW = {"resnet18": "ResNet-18 ({size})", "resnet50": "ResNet-50 ({size})",
             "resnet18_3d": "ResNet-18+3D", "resnet18_2.5d": "ResNet-18+2.5D", "resnet18_acs": "ResNet-18+ACS",
             "resnet50_3d": "ResNet-50+3D", "resnet50_2.5d": "ResNet-50+2.5D", "resnet50_acs": "ResNet-50+ACS"}


def load(name: str, size: int = 28, n_train: int = 0, seed: int = 0):
    """:func:`mednb.data.load`; phantoms get ``(n_train, n_train/4, n_train/2)`` images when ``n_train``;
    ``None`` for ``"none"`` (that part of the notebook is skipped)."""
    from . import data
    if name == "none":
        return None
    if name in data.PHANTOMS and n_train:
        return data.load(name, size, counts=(n_train, max(n_train // 4, 8), max(n_train // 2, 8)), seed=seed)
    return data.load(name, size)


def test_scores(result, splits, device="auto") -> dict:
    """Test-set metrics of a fitted model with ``y_true`` / ``y_score`` for confusion and ROC plots."""
    from . import engine
    return engine.evaluate(result.model, splits.test, splits.task, device, return_scores=True)


def model_table(records, results: dict) -> "pd.DataFrame":
    """Per model: parameters, training seconds, images/s and ours test AUC/ACC (mean ± sd)."""
    import pandas as pd
    from . import metrics as M
    from .models import count_parameters
    rows = []
    for name, res in results.items():
        rs = [r for r in records if r["model"] == name]
        rows.append({"model": name, "parameters": f"{count_parameters(res.model) / 1e6:.2f}M",
                     "train s": round(res.seconds, 1), "images/s": round(res.images_per_s),
                     "best epoch": res.best_epoch,
                     "test AUC": M.fmt([r["value"] for r in rs if r["metric"] == "test_auc"]),
                     "test ACC": M.fmt([r["value"] for r in rs if r["metric"] == "test_acc"])})
    return pd.DataFrame(rows)


def records_of(result, dataset: str, model: str, seed: int, **tags) -> list[dict]:
    """Plain record dicts (``metric``, ``value``, tags) for a :class:`~mednb.engine.FitResult`."""
    base = dict(dataset=dataset, model=model, seed=int(seed), **tags)
    out = [{"metric": "test_auc", "value": float(result.test["auc"]), **base},
           {"metric": "test_acc", "value": float(result.test["acc"]), **base},
           {"metric": "val_auc", "value": float(result.best.get("val_auc", math.nan)), **base},
           {"metric": "best_epoch", "value": int(result.best_epoch), **base},
           {"metric": "train_seconds", "value": float(result.seconds), **base}]
    return out


def detail_records(test: dict, dataset: str, size: int, model: str, seed: int, labels: dict | None = None,
                   **tags) -> list[dict]:
    """Per-class and calibration records of one test evaluation (a ``result.test`` dict).

    ``test_balanced_acc`` and ``test_ece``; ``test_recall`` / ``test_f1`` per ``class`` (index, plus
    ``label`` when ``labels`` maps it to a name); ``test_reliability`` per non-empty confidence bin (value:
    accuracy in the bin; tags ``bin``, ``n_bins``, ``confidence`` = mean confidence, ``count``). All
    tagged ``dataset``, ``size``, ``model``, ``seed``.
    """
    base = dict(dataset=dataset, size=int(size), model=model, seed=int(seed), **tags)
    out = [{"metric": "test_balanced_acc", "value": float(test["balanced_acc"]), **base},
           {"metric": "test_ece", "value": float(test["ece"]), **base}]
    for metric, key in (("test_recall", "per_class_recall"), ("test_f1", "per_class_f1")):
        for c, v in enumerate(test[key]):
            name = {"label": labels[c]} if labels and c in labels else {}
            out.append({"metric": metric, "value": float(v), **base, "class": c, **name})
    bins = test["reliability"]
    for b, n in enumerate(bins["count"]):
        if n:
            out.append({"metric": "test_reliability", "value": bins["correct_sum"][b] / n, **base, "bin": b,
                        "n_bins": len(bins["count"]), "confidence": bins["confidence_sum"][b] / n, "count": int(n)})
    return out


def record_details(result, splits, model: str, seed: int, **tags) -> list[dict]:
    """:func:`mednb.record` every :func:`detail_records` entry of ``result.test`` (a FitResult trained on
    ``splits``), so a run's metrics.jsonl carries per-class recall/F1, balanced accuracy and calibration."""
    from .recording import record as _record
    recs = detail_records(result.test, splits.name, splits.size, model, seed, splits.labels, **tags)
    return [_record(r["metric"], r["value"], **{k: v for k, v in r.items() if k not in ("metric", "value")})
            for r in recs]


def run_seeds(splits, model: str, seeds, recipe, *, progress: bool = True, record: bool = False,
              keep: bool = False, **fit_kw):
    """Train ``model`` once per seed with :func:`mednb.engine.train` and ``recipe`` (an
    :class:`mednb.engine.Recipe`); return ``(records, results)``. ``fit_kw``: non-recipe fit keywords.

    ``results`` holds the FitResults when ``keep`` (else an empty list, to free memory).
    ``record=True`` also calls :func:`mednb.record` for ``test_auc`` / ``test_acc``.
    """
    from . import engine
    from . import metrics as M
    from .recording import record as _record
    recs, results = [], []
    for seed in seeds:
        res = engine.train(splits, model, recipe, seed=int(seed), progress=progress,
                           desc=f"{model} {splits.name} seed {seed}", **fit_kw)
        rs = records_of(res, splits.name, model, seed)
        warning = M.collapse_warning(res.test, splits.labels)
        if warning:
            print(f"WARNING {model} on {splits.name}, seed {seed}: {warning}")
        recs += rs
        if record:
            for r in rs[:2]:
                _record(r["metric"], r["value"], dataset=r["dataset"], model=r["model"], seed=r["seed"])
        if keep:
            results.append(res)
    return recs, results


def compare(records, size: int = 28, metrics=("test_auc", "test_acc")):
    """DataFrame: one row per (dataset, model) run, ours as mean ± sd (n) beside the paper's
    AUC/ACC for the matching ResNet row (and the best paper ResNet on that dataset)."""
    import pandas as pd
    from . import metrics as M
    from . import references as R
    df = pd.DataFrame([r for r in records if r["metric"] in metrics])
    rows = []
    if df.empty:
        return pd.DataFrame(rows)
    for (ds, model), g in df.groupby(["dataset", "model"], sort=False):
        row = {"dataset": ds, "model": model}
        for m in metrics:
            row[f"ours {m.split('_')[1].upper()}"] = M.fmt(g.loc[g.metric == m, "value"].tolist())
        paper_row = PAPER_ROW.get(model, "").format(size=size)
        ref = R.lookup(ds, paper_row) if paper_row and R.has(ds) else None
        row["paper row"] = paper_row or "–"
        row["paper AUC"] = f"{ref['auc']:.3f}" if ref else "–"
        row["paper ACC"] = f"{ref['acc']:.3f}" if ref else "–"
        best = R.best(ds, size=size) if R.has(ds) else None
        row["best paper ResNet (AUC/ACC)"] = f"{best['method']}: {best['auc']:.3f}/{best['acc']:.3f}" if best else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    """Train over seeds and append records (JSON lines) to ``--out``; print the summary."""
    p = argparse.ArgumentParser(prog="python -m mednb.baseline", description=main.__doc__)
    p.add_argument("dataset")
    p.add_argument("model")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="append JSON-line records here")
    a = p.parse_args(argv)
    from . import data
    from .engine import PAPER
    from .runtime import env_info
    splits = data.load(a.dataset, a.size)
    recipe = PAPER.replace(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr)
    env = env_info(a.device)
    recs = []
    for seed in a.seeds:
        r, _ = run_seeds(splits, a.model, [seed], recipe, device=a.device, progress=False)
        for rec in r:
            rec.update(epochs=a.epochs, size=a.size, device_name=env["device_name"], commit=env["commit"],
                       torch=env["versions"]["torch"])
        recs += r
        line = {x["metric"]: x["value"] for x in r}
        print(json.dumps({"dataset": a.dataset, "model": a.model, "seed": seed, **line}), flush=True)
        if a.out:
            with open(a.out, "a") as f:
                for rec in r:
                    f.write(json.dumps(rec) + "\n")
    print(compare(recs, a.size).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
