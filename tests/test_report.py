"""mednb.sweep.report: the leaderboard of a sweep folder, on hand-made unit folders (no training)."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from mednb import metrics as M
from mednb.sweep import report as rep

NB = "01_baseline_medmnist"
OK_ENV = {"commit": "abc1234", "packages": "pk1", "device": "cpu"}


def unit(root, name, dataset, model, seed, auc, acc, *, size=28, status="ok", env=None, extra=(), grid=None,
         seconds=30.0, error="", traceback=""):
    """One unit folder in the sweep layout with the records notebook 01 makes."""
    d = root / "units" / name
    d.mkdir(parents=True)
    params = {"DATASET": dataset, "MODEL": model, "SEEDS": [seed], "SIZE": size, **(grid or {})}
    (d / "unit.json").write_text(json.dumps({"notebook": f"{NB}.ipynb", "profile": "student", "params": params,
                                             "hash": name[-8:], "slug": name}))
    st = {"status": status, "seconds": seconds, "attempts": 1, "error": error, "traceback": traceback,
          **OK_ENV, **(env or {})}
    (d / "status.json").write_text(json.dumps(st))
    tags = dict(dataset=dataset, model=model, seed=seed)
    recs = [] if status != "ok" else [{"notebook": NB, "metric": "test_auc", "value": auc, **tags},
                                      {"notebook": NB, "metric": "test_acc", "value": acc, **tags},
                                      *({"notebook": NB, **r, **tags, "size": size} for r in extra)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def sweep(root, spec=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.json").write_text(json.dumps({"spec": {"name": "hand", "notebook": NB, "profile": "student",
                                                          **(spec or {})},
                                                 "evidence": {"python": "3.11", "torch": "2.x", "commit": "abc1234"}}))
    return root


def board_row(board, dataset, model, size=28):
    hits = [r for r in board if (r["dataset"], r["model"], r["size"]) == (dataset, model, size)]
    assert len(hits) == 1
    return hits[0]


def test_verdict_logic():
    # paper 0.901; default tolerance max(0.02, 2 sd)
    assert rep.verdict(0.90, 0.005, 0.901) == "reproduced"
    assert rep.verdict(0.921, 0.0, 0.901) == "reproduced"  # exactly at the 0.02 floor: inclusive
    assert rep.verdict(0.870, 0.005, 0.901) == "below"
    assert rep.verdict(0.930, 0.005, 0.901) == "above"
    assert rep.verdict(0.870, 0.02, 0.901) == "reproduced"  # 2 sd = 0.04 widens the band
    assert rep.verdict(0.870, 0.02, 0.901, {"sd": 1.0}) == "below"
    assert rep.verdict(0.95, math.nan, None) == rep.NO_PAPER
    with pytest.raises(ValueError, match="valid: abs, sd"):
        rep.check_tolerance({"auc": 0.01})
    with pytest.raises(ValueError, match=">= 0"):
        rep.check_tolerance({"abs": -1})


def test_paper_cells():
    row, note = rep.paper_cell("breastmnist", "cnn", 28)
    assert (row["method"], row["auc"], row["acc"]) == ("ResNet-18 (28)", 0.901, 0.863) and "cnn" in note
    assert rep.paper_cell("breastmnist", "resnet50", 224)[0]["method"] == "ResNet-50 (224)"
    assert rep.paper_cell("adrenalmnist3d", "cnn", 28)[0]["method"] == "ResNet-18+3D"
    assert rep.paper_cell("adrenalmnist3d", "resnet18_acs", 28)[0]["method"] == "ResNet-18+ACS"
    assert rep.paper_cell("phantom2d", "cnn", 28) == (None, "phantom: no paper row")
    none64, why = rep.paper_cell("breastmnist", "cnn", 64)
    assert none64 is None and "28 px and 224 px only" in why
    assert rep.paper_cell("adrenalmnist3d", "cnn", 64)[0] is None


def test_leaderboard_verdicts_failures_and_files(tmp_path):
    root = sweep(tmp_path / "sw")
    for s, a in enumerate([0.895, 0.905, 0.910]):  # paper ResNet-18 (28): AUC 0.901, ACC 0.863
        unit(root, f"breast-cnn-s{s}-0000000{s}", "breastmnist", "cnn", s, a, 0.86 + s * 0.005)
    for s, a in enumerate([0.85, 0.852]):
        unit(root, f"breast-r18-s{s}-1111111{s}", "breastmnist", "resnet18", s, a, 0.80)
    unit(root, "pneu-r18-s0-22222222", "pneumoniamnist", "resnet18", 0, 0.99, 0.95)  # paper 0.944 / 0.854
    unit(root, "ph-cnn-s0-33333333", "phantom2d", "cnn", 0, 0.97, 0.91)
    unit(root, "breast64-cnn-s0-44444444", "breastmnist", "cnn", 0, 0.88, 0.84, size=64)
    half = unit(root, "breast-cnn-s9-66666666", "breastmnist", "cnn", 9, 0.1, 0.1, status="failed", error="killed")
    (half / "metrics.jsonl").write_text(json.dumps({"metric": "test_auc", "value": 0.1, "dataset": "breastmnist",
                                                    "model": "cnn", "seed": 9}) + "\n")  # partial: never averaged
    unit(root, "bad-cnn-s0-55555555", "nosuchmnist", "cnn", 0, None, None, status="failed",
         error="ValueError: unknown dataset 'nosuchmnist'",
         traceback="Traceback (most recent call last):\n" + "\n".join(f"  frame {i}" for i in range(30))
                   + "\nValueError: unknown dataset 'nosuchmnist'")
    md_path = rep.write_report(root)
    assert md_path == root / "leaderboard.md"

    r = rep.collect(root)
    board = r["board"]
    cnn = board_row(board, "breastmnist", "cnn")
    assert cnn["n"] == 3 and cnn["auc_mean"] == pytest.approx(np.mean([0.895, 0.905, 0.910]))
    assert cnn["paper_method"] == "ResNet-18 (28)" and cnn["verdict_auc"] == "reproduced"
    assert cnn["diff_auc"] == pytest.approx(cnn["auc_mean"] - 0.901)
    assert board_row(board, "breastmnist", "resnet18")["verdict_auc"] == "below"
    assert board_row(board, "pneumoniamnist", "resnet18")["verdict_auc"] == "above"
    assert board_row(board, "pneumoniamnist", "resnet18")["verdict_acc"] == "above"
    for ds, size in (("phantom2d", 28), ("breastmnist", 64)):
        row = board_row(board, ds, "cnn", size)
        assert row["paper_auc"] is None and row["verdict_auc"] == rep.NO_PAPER and math.isnan(row["diff_auc"])
    assert not any(b["dataset"] == "nosuchmnist" for b in board)

    md = md_path.read_text()
    main = md.split("## Test AUC")[1].split("## Per-class")[0]
    line = lambda key: next(ln for ln in main.splitlines() if ln.startswith(f"| {key} |"))  # noqa: E731
    assert "| 0.903 ± 0.008 (n=3) | 0.901 | +0.002 | reproduced |" in line("breastmnist | 28 | cnn")
    assert line("breastmnist | 28 | cnn").endswith("| ResNet-18 (28) (cnn vs the paper's ResNet-18) |")
    assert "| 0.851 ± 0.001 (n=2) | 0.901 | -0.050 | below |" in line("breastmnist | 28 | resnet18")
    for key in ("phantom2d | 28 | cnn", "breastmnist | 64 | cnn"):
        assert line(key).count("no paper row") >= 2 and "0.000" not in line(key)
    assert "max(0.02, 2 × seed-sd)" in md and "the default" in md
    # the failure with the end of its traceback, not the start
    fail = md.split("## Failures")[1].split("## Environment")[0]
    assert "bad-cnn-s0-55555555 — failed" in fail and "unknown dataset 'nosuchmnist'" in fail
    assert "frame 29" in fail and "frame 5\n" not in fail
    assert "same commit, package set and device class" in md

    csv = pd.read_csv(root / "results.csv")
    assert len(csv) == 3 * 2 + 2 * 2 + 2 + 2 + 2 + 1 and set(csv["unit"]) == {u["name"] for u in r["units"]} - {
        "bad-cnn-s0-55555555"}
    assert set(csv.loc[csv.unit == "breast-cnn-s9-66666666", "status"]) == {"failed"}
    html = (root / "leaderboard.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table" in html and "reproduced" in html and "frame 29" in html
    assert r["cost"]["cpu_hours"] == pytest.approx(10 * 30 / 3600) and r["cost"]["gpu_hours"] == 0


def test_mixed_environment_is_flagged(tmp_path):
    root = sweep(tmp_path / "sw")
    for s in range(3):
        unit(root, f"breast-cnn-s{s}-0000000{s}", "breastmnist", "cnn", s, 0.9, 0.86)
    unit(root, "breast-cnn-s3-00000003", "breastmnist", "cnn", 3, 0.9, 0.86,
         env={"commit": "fff9999", "device": "cuda:0 (NVIDIA H200)"})
    unit(root, "pneu-cnn-s0-00000004", "pneumoniamnist", "cnn", 0, 0.94, 0.85, env={"packages": ["torch==9"]})
    r = rep.collect(root)
    flags = {(f["unit"], f["field"]) for f in r["environment"]}
    assert flags == {("breast-cnn-s3-00000003", "commit"), ("breast-cnn-s3-00000003", "device"),
                     ("pneu-cnn-s0-00000004", "packages")}
    assert board_row(r["board"], "breastmnist", "cnn")["mixed_env"]
    md = (rep.write_report(root)).read_text()
    env = md.split("## Environment")[1]
    assert "⚠ 2 unit(s) ran in a different environment" in env and "fff9999" in env and "abc1234" in env
    assert "mixed environment" in md.split("## Test AUC")[1].split("## Per-class")[0]
    assert r["cost"]["gpu_hours"] == pytest.approx(30 / 3600)


def test_tolerance_from_the_spec_and_varying_settings(tmp_path):
    root = sweep(tmp_path / "sw", spec={"tolerance": {"abs": 0.05}})
    unit(root, "breast-cnn-e10-00000000", "breastmnist", "cnn", 0, 0.86, 0.82, grid={"EPOCHS": 10})
    unit(root, "breast-cnn-e50-00000001", "breastmnist", "cnn", 0, 0.80, 0.82, grid={"EPOCHS": 50})
    r = rep.collect(root)
    assert r["tolerance"] == {"abs": 0.05, "sd": 2.0} and r["tolerance_from_spec"]
    by = {b["setting"]: b for b in r["board"]}
    assert set(by) == {"EPOCHS=10", "EPOCHS=50"}  # a varying knob splits rows, never pools them
    assert by["EPOCHS=10"]["verdict_auc"] == "reproduced" and by["EPOCHS=50"]["verdict_auc"] == "below"
    assert "fixed in the sweep spec" in rep.write_report(root).read_text()
    bad = sweep(tmp_path / "bad", spec={"tolerance": {"abs": "x"}})
    with pytest.raises(ValueError, match="tolerance abs"):
        rep.collect(bad)


def test_per_class_and_calibration_columns(tmp_path):
    """baseline.detail_records → metrics.jsonl → leaderboard: per-class means, pooled reliability = ECE."""
    from mednb import baseline
    rng = np.random.default_rng(0)
    root = sweep(tmp_path / "sw")
    tests = []
    for s in range(2):
        y = rng.integers(0, 2, (156, 1))
        p = np.clip(y[:, 0] * 0.6 + rng.random(156) * 0.5, 0, 1)
        test = M.classification(y, np.stack([1 - p, p], 1), "binary-class")
        tests.append((y, np.stack([1 - p, p], 1), test))
        extra = [{k: v for k, v in r.items() if k not in ("dataset", "model", "seed", "size")}
                 for r in baseline.detail_records(test, "breastmnist", 28, "cnn", s, {0: "malignant", 1: "normal"})]
        assert {r["metric"] for r in extra} == {"test_balanced_acc", "test_ece", "test_recall", "test_f1",
                                                "test_reliability"}
        unit(root, f"breast-cnn-s{s}-0000000{s}", "breastmnist", "cnn", s, test["auc"], test["acc"], extra=extra)
    row = rep.collect(root)["board"][0]
    assert row["labels"] == ["malignant", "normal"]
    assert row["recall"] == pytest.approx(np.mean([t[2]["per_class_recall"] for t in tests], 0))
    assert row["f1"] == pytest.approx(np.mean([t[2]["per_class_f1"] for t in tests], 0))
    assert row["worst_recall"] == pytest.approx(min(row["recall"]))
    assert row["ece_mean"] == pytest.approx(np.mean([t[2]["ece"] for t in tests]))
    assert row["balanced_acc_n"] == 2
    y_all = np.concatenate([t[0] for t in tests])
    s_all = np.concatenate([t[1] for t in tests])
    assert M.ece_from_bins(row["reliability"]) == pytest.approx(M.ece(y_all, s_all, "binary-class"))
    md = rep.write_report(root).read_text()
    assert "malignant / normal" in md and "worst-class recall" in md


def test_unfinished_unit_and_cli(tmp_path, capsys):
    from mednb.cli import main
    root = sweep(tmp_path / "sw")
    unit(root, "breast-cnn-s0-00000000", "breastmnist", "cnn", 0, 0.9, 0.86)
    (root / "units" / ".breast-cnn-s2-00000002.run").mkdir()  # a unit still running: not a result yet
    half = root / "units" / "breast-cnn-s1-00000001"
    half.mkdir()
    (half / "unit.json").write_text(json.dumps({"notebook": f"{NB}.ipynb", "params": {"SEEDS": [1]}}))
    assert main(["report", str(root)]) == 0
    assert "leaderboard.md" in capsys.readouterr().out
    md = (root / "leaderboard.md").read_text()
    assert "breast-cnn-s1-00000001 — incomplete" in md and "1/2 units ok" in md
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def test_leaderboard_figures_and_sweep_folder(tmp_path):
    """Notebook 10's figures draw what the report found: verdict marks, no-paper cells, per-class bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mednb import leaderboard as L
    root = sweep(tmp_path / "sw")
    unit(root, "breast-r18-s0-00000000", "breastmnist", "resnet18", 0, 0.85, 0.80,
         extra=[{"metric": "test_recall", "value": v, "class": c, "label": n}
                for c, (v, n) in enumerate([(0.4, "malignant"), (0.95, "normal")])]
               + [{"metric": "test_reliability", "value": 0.7, "bin": 8, "n_bins": 10, "confidence": 0.85,
                   "count": 100}])
    unit(root, "ph-cnn-s0-00000001", "phantom2d", "cnn", 0, 0.97, 0.91, seconds=12.0, env={"device": "NVIDIA H200"})
    assert L.ensure_sweep(str(root)) == root and (root / "leaderboard.html").is_file()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        L.ensure_sweep(str(tmp_path / "absent"))
    board = rep.collect(root)["board"]
    texts = [t.get_text() for t in L.heatmap(board, "auc").axes[0].texts]
    assert sorted(texts) == ["-0.051 ▼", "no paper row"]
    with pytest.raises(ValueError, match="valid: auc, acc"):
        L.heatmap(board, "f1")
    bars = L.per_class_recall(board).axes[0]
    assert [round(p.get_width(), 2) for p in bars.patches] == [0.4, 0.95]
    assert "malignant 0.40" in [t.get_text() for t in bars.texts]
    line = L.reliability_diagram(board).axes[0].lines[1]
    assert list(line.get_xdata()) == pytest.approx([0.85]) and list(line.get_ydata()) == pytest.approx([0.7])
    times = L.unit_times(rep.load_units(root)).axes[0]
    assert "0.003 GPU-h" in times.get_title() and len(times.patches) == 2
    plt.close("all")


def test_default_sweep_folder_follows_the_spec(tmp_path, monkeypatch):
    from mednb import leaderboard as L
    from mednb.sweep.spec import SPECS_DIR
    monkeypatch.setenv("MEDNB_CACHE", str(tmp_path / "cache"))
    a = L.default_out("smoke")
    assert a == L.default_out("smoke") and a.parent == tmp_path / "cache" / "sweeps" and a.name.startswith("smoke-")
    edited = tmp_path / "smoke.toml"
    text = (SPECS_DIR / "smoke.toml").read_text()
    edited.write_text(re.sub(r"^seed = \[([^\]]*)\]", r"seed = [\1, 7]", text, count=1, flags=re.M))
    assert edited.read_text() != text
    assert L.default_out(str(edited)) != a  # an edited spec never resumes into the old folder
