"""Convergence curves, paired verdicts, claims and tagged records of notebook 08's comparisons.
"""
from __future__ import annotations

from .. import claims


def convergence(genesis_runs, fraction: float | None = None) -> dict:
    """``{label: [history per seed]}`` of scratch and Genesis at ``fraction`` (default: the lowest label fraction
    run), for :func:`mednb.plot.convergence`: validation AUC against optimizer steps."""
    hist = genesis_runs.attrs.get("histories", {})
    f = min(genesis_runs.label_fraction) if fraction is None else fraction
    return {f"{init} at {f:.0%} labels": [h for (i, lf, _), h in sorted(hist.items(), key=lambda kv: kv[0][2])
                                          if i == init and lf == f and h]
            for init in ("scratch", "genesis")}


def _by_seed(df, metric: str = "test_auc") -> dict:
    return {int(r.seed): float(getattr(r, metric)) for r in df.itertuples()}


def verdicts(runs, genesis_runs, aug_runs, policy: str) -> list[dict]:
    """The notebook's claims, each a paired difference over seeds (:func:`mednb.claims.paired`): per (dataset,
    size), 3D − 2.5D and ACS − 2.5D; Genesis − scratch at each label fraction; ``policy`` − no augmentation.
    One dict per claim: comparison, dataset, text, paired, steps, citation."""
    out = []
    for (d, s), g in runs.groupby(["dataset", "size"], sort=False):
        by = {c: _by_seed(gc) for c, gc in g.groupby("conv")}
        for c in ("3d", "acs"):
            if c in by and "2.5d" in by:
                out.append(dict(comparison="convs", dataset=d, text=f"{c.upper()} beats 2.5D convolutions ({s}³)",
                                paired=claims.paired(by[c], by["2.5d"]), steps=claims.one_budget(g),
                                citation="Yang et al., Sci. Data 2023 (MedMNIST v2); "
                                         "Yang et al., IEEE JBHI 2021 (ACS)"))
    d = runs.dataset.iloc[0] if len(runs) else None
    for f, g in genesis_runs.groupby("label_fraction"):
        sc, ge = g[g.init == "scratch"], g[g.init == "genesis"]
        if len(sc) and len(ge):
            out.append(dict(comparison="genesis", dataset=d,
                            text=f"Models Genesis pre-training beats scratch at {f:.0%} labels",
                            paired=claims.paired(_by_seed(ge), _by_seed(sc)), steps=claims.one_budget(genesis_runs),
                            citation="Zhou et al., MICCAI 2019 / MedIA 2021 (Models Genesis)"))
    on, off = aug_runs[aug_runs.augment == policy], aug_runs[aug_runs.augment == "none"]
    if len(on) and len(off):
        out.append(dict(comparison="augment", dataset=d, text=f"3D augmentation {policy!r} beats none",
                        paired=claims.paired(_by_seed(on), _by_seed(off)), steps=claims.one_budget(aug_runs),
                        citation="Shorten & Khoshgoftaar, J. Big Data 2019"))
    return out


def record_claims(found: list[dict]) -> list[dict]:
    """Record each of :func:`verdicts`' claims with :func:`mednb.claims.claim` (shown as one line each)."""
    return [claims.claim(v["text"], v["paired"], comparison=v["comparison"], steps=v["steps"], dataset=v["dataset"],
                         citation=v["citation"]) for v in found]


def results(runs, genesis_runs, aug_runs, dataset: str, size: int, backbone: str) -> list[tuple[str, float, dict]]:
    """``(metric, value, tags)`` of every run of the three comparisons, each tagged ``comparison`` and ``steps`` (its
    budget) besides conv, size, dataset and seed: what the notebook passes to :func:`mednb.record`."""
    out = []
    for r in runs.to_dict("records"):
        tags = dict(comparison="convs", steps=int(r["steps"]), conv=r["conv"], size=r["size"], dataset=r["dataset"],
                    seed=r["seed"])
        out += [(m, r[m], {**tags, "model": backbone}) for m in ("test_auc", "test_acc")]
        out.append(("sec_per_epoch", r["sec_per_epoch"], tags))
    for r in genesis_runs.to_dict("records"):
        out.append(("test_auc", r["test_auc"], dict(comparison="genesis", steps=int(r["steps"]), conv="3d", size=size,
                                                    dataset=dataset, seed=r["seed"], init=r["init"],
                                                    label_fraction=r["label_fraction"])))
    for r in aug_runs.to_dict("records"):
        out.append(("test_auc", r["test_auc"], dict(comparison="augment", steps=int(r["steps"]), conv="3d", size=size,
                                                    dataset=dataset, seed=r["seed"], augment=r["augment"])))
    return out


def record_results(runs, genesis_runs, aug_runs, dataset: str, size: int, backbone: str) -> int:
    """:func:`mednb.record` every entry of :func:`results`; returns the number of records."""
    from ..recording import record
    found = results(runs, genesis_runs, aug_runs, dataset, size, backbone)
    for name, value, tags in found:
        record(name, value, **tags)
    return len(found)
