"""Figures of notebook 09: the sites (one image each + class mix), test AUC vs communication round, and the
new hospital's validation AUC against fine-tuning steps."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..plot import to_display
from .sites import Sites


def sites_figure(sites: Sites, size: float = 1.9):
    """Top: one training image of each site (volumes: middle axial slice), titled by its scanner.
    Bottom: each site's class mix in its training split (the Dirichlet label skew)."""
    n = len(sites.all)
    fig = plt.figure(figsize=(max(6.0, size * n), size * 2.3))
    grid = fig.add_gridspec(2, n, height_ratios=[1.0, 0.9])
    for i, sp in enumerate(sites.all):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(to_display(sp.train.x[0]), cmap="gray", vmin=0, vmax=255)
        role = "unseen" if i == sites.k else f"site {i}"
        ax.set_title(f"{role}\n{sites.shifts[i]['scanner']}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    counts = np.stack([sp.class_counts("train") for sp in sites.all]).astype(float)
    mix = counts / counts.sum(1, keepdims=True).clip(min=1)
    bottom = np.zeros(n)
    names = [f"site {i}" for i in range(sites.k)] + ["unseen"]
    for c in range(mix.shape[1]):
        ax.bar(names, mix[:, c], bottom=bottom, label=sites.unseen.labels[c][:24])
        bottom += mix[:, c]
    for i, total in enumerate(counts.sum(1)):
        ax.text(i, 1.02, f"n={int(total)}", ha="center", fontsize=7)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("share of training images", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"{sites.dataset}: {sites.k} hospitals + 1 unseen (Dirichlet α={sites.alpha:g}, seed {sites.seed})",
                 fontsize=9)
    fig.tight_layout()
    return fig


def rounds_figure(evaluations: pd.DataFrame, final: pd.DataFrame):
    """Mean site test AUC vs round per federated method (mean ± sd over seeds); baselines as lines."""
    datasets = list(dict.fromkeys(evaluations["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 3.5), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        ev = evaluations[evaluations["dataset"] == d]
        curve = ev.groupby(["method", "seed", "round"])["test_auc"].mean().reset_index()
        for m, g in curve.groupby("method", sort=False):
            s = g.groupby("round")["test_auc"].agg(["mean", "std"]).reset_index()
            ax.plot(s["round"], s["mean"], marker="o", ms=3, label=m)
            ax.fill_between(s["round"], s["mean"] - s["std"].fillna(0), s["mean"] + s["std"].fillna(0), alpha=0.15)
        base = final[(final["dataset"] == d) & final["method"].isin(["local", "centralized"])]
        for (m, g), style in zip(base.groupby("method"), ("--", ":")):
            ax.axhline(g.groupby("seed")["test_auc"].mean().mean(), ls=style, c="k", lw=1, label=f"{m} (final)")
        ax.set_title(d, fontsize=9)
        ax.set_xlabel("communication round")
        ax.set_ylabel("mean test AUC over the seen sites")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def adaptation_convergence(adapted: pd.DataFrame, n_labels: int | None = None):
    """The new hospital's validation AUC against fine-tuning steps at ``n_labels`` (default: the fewest labels
    run), one line per mode (mean and min–max band over seeds), one panel per dataset
    (:func:`mednb.plot.convergence`): the evidence that the fine-tuning budget is long enough."""
    from ..plot import convergence
    ft = adapted[adapted["stage"] == "finetune"]
    n = int(ft["n_labels"].min()) if n_labels is None else int(n_labels)
    datasets = list(dict.fromkeys(ft["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.0 * len(datasets), 3.2), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        g = ft[(ft["dataset"] == d) & (ft["n_labels"] == n)]
        runs = {f"{mode}, {n} labels": [h for h in gm.sort_values("seed")["history"] if h]
                for mode, gm in g.groupby("mode", sort=False)}
        convergence(runs, title=f"{d}: fine-tuning at the new hospital", ax=ax)
    return fig
