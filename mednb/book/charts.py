"""A sweep's charts as SVG files for the book: ours (mean ± sd over seeds) against the paper per dataset,
a reliability diagram per model, and notebook 10's heatmap, per-class recall and unit times
(:mod:`mednb.leaderboard`)."""
from __future__ import annotations

import math
from pathlib import Path


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return path.name


def ours_vs_paper(board: list[dict], metric: str = "auc"):
    """One panel per dataset: ours as mean ± sd over seeds (error bar, n in the label) for each size·model,
    the paper's value as a red diamond where it has a row."""
    import matplotlib.pyplot as plt
    datasets = list(dict.fromkeys(r["dataset"] for r in board))
    rows = {d: [r for r in board if r["dataset"] == d] for d in datasets}
    fig, axes = plt.subplots(len(datasets), 1, squeeze=False,
                             figsize=(6.4, 0.9 + sum(0.42 * len(v) + 0.5 for v in rows.values())),
                             gridspec_kw={"height_ratios": [len(v) + 0.6 for v in rows.values()]})
    for ax, d in zip(axes[:, 0], datasets):
        rs = rows[d]
        labels = [f"{r['size']}·{r['model']}" + (f" [{r['setting']}]" if r.get("setting") else "")
                  + f" (n={r[f'{metric}_n']})" for r in rs]
        y = list(range(len(rs)))
        mean = [r[f"{metric}_mean"] for r in rs]
        sd = [0.0 if r[f"{metric}_sd"] is None or math.isnan(r[f"{metric}_sd"]) else r[f"{metric}_sd"] for r in rs]
        ax.errorbar(mean, y, xerr=sd, fmt="o", color="tab:blue", capsize=4, label="ours (mean ± sd over seeds)")
        paper = [(r[f"paper_{metric}"], i) for i, r in enumerate(rs) if r[f"paper_{metric}"] is not None]
        if paper:
            ax.plot([p for p, _ in paper], [i for _, i in paper], "D", color="tab:red", ms=6,
                    label="MedMNIST v2 paper")
        for i, r in enumerate(rs):
            if r[f"paper_{metric}"] is None:
                ax.annotate("no paper row", (1.0, i), xycoords=("axes fraction", "data"), ha="right", va="center",
                            fontsize=7, color="grey")
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_ylim(len(rs) - 0.4, -0.6)
        lo = min([m - s for m, s in zip(mean, sd) if not math.isnan(m)] + [p for p, _ in paper] + [1.0])
        ax.set_xlim(max(0.0, lo - 0.05), 1.0)
        ax.set_title(d, fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    handles = {lab: h for ax in axes[:, 0] for h, lab in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2,
               fontsize=7, frameon=False)
    axes[-1, 0].set_xlabel(f"test {metric.upper()}")
    fig.tight_layout()
    return fig


def write_charts(rep: dict, out: Path, slug: str) -> dict:
    """Every chart of one sweep report (:func:`mednb.sweep.report.collect`) as SVG under ``out``; returns
    ``{"ours_vs_paper": [(title, file)], "reliability": [(model, file)], "more": [(title, file)]}``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .. import leaderboard as L
    board = rep["board"]
    charts: dict = {"ours_vs_paper": [], "reliability": [], "more": []}
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "mednb-book"}):
        if board:
            for m in ("auc", "acc"):
                if any(r[f"{m}_n"] for r in board):
                    name = _save(ours_vs_paper(board, m), out / f"{slug}-ours-vs-paper-{m}.svg")
                    charts["ours_vs_paper"].append((f"Test {m.upper()}: ours vs the paper", name))
            for model in dict.fromkeys(r["model"] for r in board):
                rows = [r for r in board if r["model"] == model and r.get("reliability")]
                if rows:
                    fig = L.reliability_diagram(rows, top=len(rows))
                    fig.axes[0].set_title(f"reliability diagram — {model} (10 equal-width bins)", fontsize=9)
                    charts["reliability"].append((model, _save(fig, out / f"{slug}-reliability-{model}.svg")))
            charts["more"].append(("ours − paper per dataset × size·model", _save(L.heatmap(board, "auc"),
                                                                             out / f"{slug}-heatmap-auc.svg")))
            if any(r["recall"] for r in board):
                charts["more"].append(("Per-class recall, worst rows first",
                                       _save(L.per_class_recall(board), out / f"{slug}-per-class-recall.svg")))
        if any(u["seconds"] is not None for u in rep["units"]):
            charts["more"].append(("Wall time per unit", _save(L.unit_times(rep["units"]),
                                                              out / f"{slug}-unit-times.svg")))
    return charts
