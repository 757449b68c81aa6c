"""The papers' claims about UNet++ (quoted, cited) and the goal of notebook 05, beside our measurements.

The quotes are text, not numbers we computed; every number in :func:`claims` and :func:`goal_verdict`
is computed from the runs of :func:`mednb.seg.compare` and :func:`mednb.seg.label_efficiency`: differences
paired per seed with a 95 % interval (:func:`mednb.claims.paired`), IoU in points (×100), at one training
budget in optimizer steps per comparison. :func:`record_claims` enters the headline claims in the claims ledger.
"""
from __future__ import annotations

import numpy as np

from .. import claims as ledger

#: (citation, quoted claim) per paper
PAPER = {
    "unetpp_2018": ("Zhou, Siddiquee, Tajbakhsh, Liang. UNet++: A Nested U-Net Architecture for Medical Image "
                    "Segmentation. DLMIA 2018 (arXiv:1807.10165)",
                    "UNet++ with deep supervision achieves an average IoU gain of 3.9 and 3.4 points over U-Net "
                    "and wide U-Net, respectively (nodule, nuclei, liver and polyp segmentation)."),
    "unetpp_2019": ("Zhou, Siddiquee, Tajbakhsh, Liang. UNet++: Redesigning Skip Connections to Exploit Multiscale "
                    "Features in Image Segmentation. IEEE TMI 39(6):1856-1867, 2020 (arXiv:1912.05074)",
                    "UNet++ consistently outperforms the baseline models for semantic segmentation across six "
                    "datasets (incl. EM); pruned UNet++ models achieve significant speedup while showing only "
                    "modest performance degradation."),
    "wide_unet_filters": ("Zhou et al. 2018, Table 1", "U-Net 32-64-128-256-512 filters; wide U-Net 35-70-140-280-560 "
                          "so that its parameter count is close to UNet++'s."),
}
SHORT = {"unetpp_2018": "Zhou et al., DLMIA 2018", "unetpp_2019": "Zhou et al., IEEE TMI 2020",
         "wide_unet_filters": "Zhou et al. 2018, Table 1"}

#: notebook 05's goal: UNet++ with deep supervision beats U-Net on the EM membrane set by at least this
#: many IoU points at equal training (the paper reports +3.9 on average over its four tasks)
GOAL_IOU_GAIN = 1.0


def iou_gain(runs, a: str = "UNet++ DS", b: str = "U-Net") -> np.ndarray:
    """Per-seed IoU difference ``a − b`` in IoU points (×100), paired by seed; empty if a label is absent."""
    m = runs.pivot_table(index="seed", columns="label", values="iou")
    if a not in m or b not in m:
        return np.zeros(0)
    return (100 * (m[a] - m[b])).dropna().to_numpy()


def paired_gain(runs, a: str = "UNet++ DS", b: str = "U-Net") -> "ledger.Paired | None":
    """``a − b`` in IoU points paired over seeds (:func:`mednb.claims.paired`); None if a label is absent."""
    m = runs.pivot_table(index="seed", columns="label", values="iou")
    if a not in m or b not in m:
        return None
    return ledger.paired((100 * m[a]).to_dict(), (100 * m[b]).to_dict())


def goal_verdict(runs, goal: float = GOAL_IOU_GAIN) -> str:
    """UNet++ DS − U-Net (IoU points, paired over seeds with a 95 % interval) against the ``goal``: met when
    the whole interval lies at or above it, not met when it lies below, undecided when it spans it."""
    p = paired_gain(runs)
    if p is None:
        return "–"
    data = str(runs["dataset"].iloc[0]) if "dataset" in runs else "this data"
    if p.n < 2:
        met = "undecided (one seed: no interval)"
    else:
        met = "met" if p.lo >= goal else "NOT met" if p.hi < goal else "undecided (the interval spans it)"
    text = f"UNet++ DS − U-Net on {data}, IoU points: {p} → goal ≥ +{goal:g} {met}"
    if data != "em":
        text += "; the goal is stated for EM, this run used " + data
    return text


def _delta(runs, a: str, b: str) -> str:
    p = paired_gain(runs, a, b)
    return f"{p} (IoU points)" if p is not None else "–"


def _pruning_row(prune) -> dict | None:
    """L1 against the full depth: speed-up, parameter share, IoU (needs ≥ 2 prune levels)."""
    if prune is None or len(prune) < 2:
        return None
    full, small = prune.iloc[-1], prune.iloc[0]
    speedup = full.ms_per_image / max(small.ms_per_image, 1e-9)
    return dict(claim=PAPER["unetpp_2019"][1], source=SHORT["unetpp_2019"],
                ours=f"L1 vs L{int(full.prune_level)}: {speedup:.1f}× faster, {100 * small.params / full.params:.1f}% "
                     f"of the parameters, IoU {small.iou:.3f} vs {full.iou:.3f}")


def _label_efficiency_row(label_eff) -> dict | None:
    """Pretrained vs scratch IoU at the fewest labelled images (needs a pretrained run and some n > 0)."""
    if label_eff is None or not len(label_eff):
        return None
    budgets = [n for n in label_eff.n_requested if n > 0]
    if not budgets:
        return None
    p = _pretrained_gain(label_eff)
    if p is None:
        return None
    few = label_eff[label_eff.n_requested == min(budgets)]
    m = few.groupby("init")["iou"].mean()
    return dict(claim=GENESIS_CLAIM, source="Zhou et al., MedIA 2021",
                ours=f"{int(few.n_labelled.iloc[0])} labelled image(s): IoU pretrained {m['pretrained']:.3f} vs "
                     f"scratch {m['scratch']:.3f}; pretrained − scratch {p} (IoU points)")


GENESIS_CLAIM = ("Models Genesis: restoration pre-training helps when labels are scarce (Zhou et al., MICCAI 2019 / "
                 "MedIA 2021).")


def _pretrained_gain(label_eff) -> "ledger.Paired | None":
    """Pretrained − scratch IoU points at the fewest labelled images (n > 0), paired over seeds."""
    if label_eff is None or not len(label_eff):
        return None
    budgets = [n for n in label_eff.n_requested if n > 0]
    if not budgets:
        return None
    few = label_eff[label_eff.n_requested == min(budgets)]
    m = few.pivot_table(index="seed", columns="init", values="iou")
    if "pretrained" not in m or "scratch" not in m:
        return None
    return ledger.paired((100 * m["pretrained"]).to_dict(), (100 * m["scratch"]).to_dict())


def claims(runs2d, prune=None, label_eff=None) -> "pd.DataFrame":
    """The papers' claims (quoted, cited) beside our measured numbers (computed from the runs)."""
    import pandas as pd
    data = runs2d.get("dataset", pd.Series(["2D"])).iloc[0]
    rows = [dict(claim=PAPER["unetpp_2018"][1], source=SHORT["unetpp_2018"],
                 ours=f"UNet++ DS − U-Net: {_delta(runs2d, 'UNet++ DS', 'U-Net')}; UNet++ DS − wide U-Net: "
                      f"{_delta(runs2d, 'UNet++ DS', 'wide U-Net')} ({data})"),
            dict(claim=f"mednb's goal: UNet++ with deep supervision beats U-Net on EM by ≥ {GOAL_IOU_GAIN:g} IoU "
                       f"point at equal optimizer steps (the paper reports +3.9 on average over its tasks).",
                 source="mednb, notebook 05", ours=goal_verdict(runs2d)),
            dict(claim=PAPER["wide_unet_filters"][1], source=SHORT["wide_unet_filters"],
                 ours="parameters: " + ", ".join(f"{l} {int(g['params'].iloc[0]):,}"
                                                 for l, g in runs2d.groupby("label", sort=False)))]
    rows += [r for r in (_pruning_row(prune), _label_efficiency_row(label_eff)) if r is not None]
    return pd.DataFrame(rows)


def record_claims(runs2d, label_eff=None) -> list[dict]:
    """Enter notebook 05's headline claims in the claims ledger (:func:`mednb.claims.claim`): UNet++ DS against
    U-Net and against the wide U-Net (the 2018 paper: +3.9 / +3.4 IoU points), and restoration pre-training
    against scratch at the fewest labelled images. Returns the records."""
    data = str(runs2d["dataset"].iloc[0]) if "dataset" in runs2d else None
    out = []
    for b, paper in (("U-Net", "+3.9 IoU points (mean of 4 tasks)"), ("wide U-Net", "+3.4 IoU points (mean of 4 tasks)")):
        p = paired_gain(runs2d, "UNet++ DS", b)
        if p is not None:
            out.append(ledger.claim(f"UNet++ with deep supervision beats {b} (IoU points)", p,
                                    comparison="architectures_2d", steps=ledger.one_budget(runs2d), metric="iou", dataset=data,
                                    citation=SHORT["unetpp_2018"], paper=paper))
    p = _pretrained_gain(label_eff)
    if p is not None:
        n = int(label_eff[label_eff.n_requested == min(n for n in label_eff.n_requested if n > 0)].n_labelled.iloc[0])
        out.append(ledger.claim(f"restoration pre-training beats scratch with {n} labelled image(s) (IoU points)", p,
                                comparison="label_efficiency", steps=ledger.one_budget(label_eff), metric="iou", dataset=data,
                                citation="Zhou et al., MedIA 2021 (Models Genesis)"))
    return out
