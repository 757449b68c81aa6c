"""Notebook 10 — a sweep's leaderboard: ours vs the MedMNIST v2 table, per class, calibrated, costed.

:func:`ensure_sweep` returns a sweep folder: the one named, or the profile's spec run first with
:func:`mednb.sweep.driver.run` (completed units are skipped, so running the notebook again costs nothing).
:func:`mednb.sweep.report.collect` reads it; the figures here draw what it found: :func:`heatmap` (ours −
paper per dataset × size/model with verdict marks), :func:`per_class_recall` (the rows whose worst class
fares worst), :func:`reliability_diagram` (pooled over seeds) and :func:`unit_times` (wall time and
CPU/GPU-hours per unit).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from . import knobs

PROFILES = {
    "smoke": dict(SWEEP_DIR="", SPEC="smoke", OUT="", EXECUTOR="local", TOP=4),
    "student": dict(SWEEP_DIR="", SPEC="medmnist_cpu", OUT="", EXECUTOR="local", TOP=6),
    "full": dict(SWEEP_DIR="", SPEC="medmnist_v2", OUT="", EXECUTOR="local", TOP=8),
}
"""Knobs: SWEEP_DIR (a sweep folder to read; "" → run SPEC first), SPEC (a shipped spec name or a TOML path),
OUT (where SPEC's sweep goes; "" → :func:`default_out`, in the per-user cache), EXECUTOR (local | ray | slurm),
TOP (rows shown in the per-class and reliability figures)."""
# knobs valid only for a registry (checked by mednb.params before anything runs)
CHECKS = {"SPEC": knobs.sweep_spec(), "EXECUTOR": knobs.executor()}

MARKS = {"reproduced": "=", "below": "▼", "above": "▲"}


def default_out(spec: str) -> Path:
    """``<cache root>/sweeps/<spec name>-<hash8>`` (see :func:`mednb.runtime.cache_root`); the hash is of the
    validated spec, so an edited spec gets a folder of its own and an unchanged one resumes."""
    from .runtime import cache_dir
    from .sweep import spec as spec_mod
    resolved = spec_mod.load(spec).resolved()
    blob = json.dumps({k: v for k, v in resolved.items() if k not in ("source", "description")}, sort_keys=True,
                      default=str)
    return cache_dir("sweeps", f"{resolved['name']}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}")


def ensure_sweep(sweep_dir: str = "", spec: str = "smoke", out: str = "", executor: str = "local") -> Path:
    """The sweep folder to report on: ``sweep_dir`` when given (it must exist), else ``spec`` run into
    ``out`` (default :func:`default_out`) by :func:`mednb.sweep.driver.run` with ``executor`` — completed
    units are kept, so a second call runs nothing; failed units stay in the report. The leaderboard files
    are (re)written."""
    from .sweep.report import write_report
    if sweep_dir:
        path = Path(sweep_dir).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"SWEEP_DIR {path} does not exist; give a sweep folder or '' to run SPEC")
    else:
        from .sweep import driver
        path = Path(out).expanduser() if out else default_out(spec)
        driver.run(spec, path, driver.Options(executor=executor))
    write_report(path)
    return path


def _label(row: dict) -> str:
    return f"{row['size']}·{row['model']}" + (f" [{row['setting']}]" if row.get("setting") else "")


def heatmap(board: list[dict], metric: str = "auc", ax=None):
    """ours − paper (``metric``: auc | acc) per dataset (rows) × size·model (columns); cells without a paper
    row are grey and say so, combinations the sweep did not run are blank; marks: = reproduced, ▼ below,
    ▲ above the paper."""
    import matplotlib.pyplot as plt
    if metric not in ("auc", "acc"):
        raise ValueError(f"unknown metric {metric!r}; valid: auc, acc")
    datasets = list(dict.fromkeys(r["dataset"] for r in board))
    order = sorted(board, key=lambda r: (r["dims"], r["size"] or 0, r["model"], r["setting"]))
    cols = list(dict.fromkeys(_label(r) for r in order))
    grid = np.full((len(datasets), len(cols)), np.nan)
    marks = {}
    for r in board:
        i, j = datasets.index(r["dataset"]), cols.index(_label(r))
        grid[i, j] = r[f"diff_{metric}"]
        marks[i, j] = MARKS.get(r[f"verdict_{metric}"], "no paper row")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.4 + 1.2 * len(cols), 0.9 + 0.45 * len(datasets)))
    lim = max(0.05, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.05)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    for (i, j), mark in marks.items():
        v = grid[i, j]
        dark = not math.isnan(v) and abs(v) > 0.6 * lim
        ax.text(j, i, mark if math.isnan(v) else f"{v:+.3f} {mark}", ha="center", va="center", fontsize=7,
                color="white" if dark else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(datasets)), datasets, fontsize=8)
    ax.set_title(f"ours − paper, test {metric.upper()} (= reproduced, ▼ below, ▲ above; blank: not run)", fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.04)
    ax.figure.tight_layout()
    return ax.figure


def per_class_recall(board: list[dict], top: int = 6, ax=None):
    """Per-class test recall (mean over seeds) of the ``top`` rows with the lowest worst-class recall,
    one bar per class, labelled with the class name and its recall."""
    import matplotlib.pyplot as plt
    rows = sorted((r for r in board if r["recall"]), key=lambda r: r["worst_recall"])[:top]
    n_bars = sum(len(r["recall"]) for r in rows)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 1.2 + 0.2 * n_bars + 0.15 * len(rows)))
    y, ticks = 0.0, []
    for r in rows:
        start = y
        for c, v in enumerate(r["recall"]):
            ax.barh(y, 0 if math.isnan(v) else v, height=0.8, color=plt.cm.tab10(c % 10))
            ax.text((0 if math.isnan(v) else v) + 0.01, y, f"{r['labels'][c][:28]} {v:.2f}", va="center", fontsize=6)
            y += 1
        ticks.append(((start + y - 1) / 2, f"{r['dataset']} {_label(r)}"))
        y += 0.8
    ax.set_yticks([t for t, _ in ticks], [name for _, name in ticks], fontsize=8)
    ax.set_xlim(0, 1.35)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.invert_yaxis()
    ax.set_xlabel("test recall per class (mean over seeds)")
    ax.set_title("per-class recall, worst rows first — what macro-AUC hides", fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


def reliability_diagram(board: list[dict], top: int = 4, ax=None):
    """Accuracy vs mean confidence per bin (pooled over seeds) for up to ``top`` rows, with their ECE."""
    import matplotlib.pyplot as plt
    from .metrics import ece_from_bins
    rows = [r for r in board if r.get("reliability")][:top]
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect calibration")
    for r in rows:
        b = r["reliability"]
        n = np.asarray(b["count"], float)
        keep = n > 0
        conf = np.asarray(b["confidence_sum"])[keep] / n[keep]
        acc = np.asarray(b["correct_sum"])[keep] / n[keep]
        ax.plot(conf, acc, marker="o", ms=3, label=f"{r['dataset']} {_label(r)} (ECE {ece_from_bins(b):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence in bin (top label)")
    ax.set_ylabel("accuracy in bin")
    ax.legend(fontsize=6, loc="upper left")
    ax.set_title("reliability diagram (10 equal-width bins)", fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


def unit_times(units: list[dict], ax=None):
    """Wall time of every unit, coloured by status; the title sums GPU- and CPU-hours."""
    import matplotlib.pyplot as plt
    from .sweep.tables import cost
    c = cost(units)
    timed = [u for u in units if u["seconds"] is not None]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 1.4 + 0.22 * len(timed)))
    colors = {"ok": "tab:green", "failed": "tab:red"}
    ax.barh(range(len(timed)), [u["seconds"] for u in timed], color=[colors.get(u["status"], "tab:orange")
                                                                     for u in timed])
    ax.set_yticks(range(len(timed)), [u["name"] for u in timed], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("wall time per unit (s)")
    ax.set_title(f"{c['timed']} units · {c['gpu_hours']:.3f} GPU-h · {c['cpu_hours']:.3f} CPU-h "
                 "(green ok, red failed)", fontsize=9)
    ax.figure.tight_layout()
    return ax.figure
