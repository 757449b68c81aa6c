"""The multisite study of notebook 09: run every method over datasets × seeds, then measure.

Tables are tidy DataFrames (one row per dataset, seed, method, site); summaries give mean ± sd over seeds.
A verdict compares a paired difference (same seed, same sites) with its seed-to-seed spread: *supported*
when its mean exceeds one sd in the claimed direction, *refuted* when it exceeds one sd the other way, and
*within the spread* otherwise; one seed gives no verdict.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import adapt
from .. import engine, metrics
from .methods import BASELINES, centralized, local_only
from .sites import Sites, build_sites

KEYS = ["dataset", "seed", "method"]


def build_all(datasets, seeds, k: int, alpha: float, size: int = 28, counts=None) -> dict:
    """``{(dataset, seed): Sites}`` for every dataset and seed."""
    return {(d, s): build_sites(d, k, alpha, s, size, counts) for d in datasets for s in seeds}


def baselines(site_sets: dict, setups: dict, methods=BASELINES) -> tuple[pd.DataFrame, dict]:
    """The local-only and centralized runs among ``methods`` for every (dataset, seed): rows (empty when
    neither is asked for) and ``{(d, s): {"local": [K models], "centralized": model}}``."""
    from tqdm.auto import tqdm
    rows, models = [pd.DataFrame(columns=[*KEYS, "site", "round", "alpha", "test_auc", "test_acc"])], {}
    for (d, s), sites in tqdm(site_sets.items(), desc="local-only and centralized", unit="run"):
        models[(d, s)] = {}
        for name, run in (("local", local_only), ("centralized", centralized)):
            if name in methods:
                df, models[(d, s)][name] = run(sites, setups[d])
                rows.append(df)
    return pd.concat(rows, ignore_index=True), models


def final_table(base: pd.DataFrame, results) -> pd.DataFrame:
    """Per-site test AUC/ACC of every method at the end of training (federated: last round)."""
    cols = [*KEYS, "site", "round", "alpha", "test_auc", "test_acc"]
    return pd.concat([base[cols], results.final()[cols]], ignore_index=True)


def per_seed(final: pd.DataFrame) -> pd.DataFrame:
    """Mean and worst site AUC of every (dataset, seed, method)."""
    g = final.groupby(KEYS)["test_auc"]
    return pd.DataFrame({"mean_auc": g.mean(), "worst_auc": g.min()}).reset_index()


def generalization(final: pd.DataFrame, unseen: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean ± sd over seeds of the mean-site and worst-site AUC (and the unseen site's, without AdaBN)."""
    ps = per_seed(final)
    if unseen is not None:
        u = unseen[~unseen["adabn"]][[*KEYS, "test_auc"]].rename(columns={"test_auc": "unseen_auc"})
        ps = ps.merge(u, on=KEYS, how="left")
    cols = [c for c in ("mean_auc", "worst_auc", "unseen_auc") if c in ps]
    return ps.groupby(["dataset", "method"], sort=False)[cols].agg(metrics.fmt)


def site_method(final: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Site × method table of test AUC (mean ± sd over seeds) for one dataset."""
    df = final[final["dataset"] == dataset]
    return df.pivot_table(index="site", columns="method", values="test_auc", aggfunc=metrics.fmt, sort=False)


def unseen_all(site_sets: dict, results, models: dict, device="auto") -> pd.DataFrame:
    """Every method's model on every unseen site, as it is and after AdaBN (local: mean of the K models)."""
    rows = []
    for (d, s), sites in site_sets.items():
        named = {m: results.model(d, s, m) for m in sorted(set(results.evaluations["method"]))}
        named.update(models[(d, s)])
        for method, model in named.items():
            for ada in (False, True):
                scores = [_unseen(m, sites, ada, device) for m in (model if isinstance(model, list) else [model])]
                rows.append({"dataset": d, "seed": s, "method": method, "adabn": ada,
                             "test_auc": float(np.mean([a for a, _ in scores])),
                             "test_acc": float(np.mean([b for _, b in scores]))})
    return pd.DataFrame(rows)


def _unseen(model, sites: Sites, ada: bool, device) -> tuple[float, float]:
    m = adapt.adabn(model, sites.unseen.train.x, device=device) if ada else model
    r = engine.evaluate(m, sites.unseen.test, sites.unseen.task, device)
    return r["auc"], r["acc"]


def adaptation_all(site_sets: dict, results, n_labels, modes, recipe, method: str = "fedavg",
                   device="auto") -> pd.DataFrame:
    """:func:`mednb.federated.adapt.adaptation` of ``method``'s final model for every dataset and seed."""
    from tqdm.auto import tqdm
    out = [adapt.adaptation(results.model(d, s, method), sites, n_labels, modes, recipe, s, device)
           for (d, s), sites in tqdm(site_sets.items(), desc="adapting to the unseen site", unit="run")]
    return pd.concat(out, ignore_index=True).assign(method=method)


def communication(results, final: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and method: bytes per round (mean), and the first round whose mean site AUC reaches
    local-only's (mean ± sd over seeds; "not reached" counts)."""
    rows = []
    local = per_seed(final).query("method == 'local'").set_index(["dataset", "seed"])["mean_auc"]
    if results.evaluations.empty:
        return pd.DataFrame(rows)
    curve = results.evaluations.groupby([*KEYS, "round"])["test_auc"].mean().reset_index()
    for (d, m), g in curve.groupby(["dataset", "method"], sort=False):
        reach = []
        for s, gs in g.groupby("seed"):
            hit = gs[gs["test_auc"] >= local.get((d, s), math.inf)]["round"]
            reach.append(int(hit.min()) if len(hit) else None)
        t = results.traffic.query("dataset == @d and method == @m")
        got = [r for r in reach if r is not None]
        rows.append({"dataset": d, "method": m, "bytes_per_round": float(t["bytes_sent"].mean()),
                     "MB_per_round": float(t["bytes_sent"].mean()) / 2**20,
                     "rounds_to_local_auc": metrics.fmt(got, 1) if got else
                     ("not reached" if len(local) else "no local-only run"),
                     "runs_reaching_it": f"{len(got)}/{len(reach)}"})
    return pd.DataFrame(rows)


def upload_bytes(sites: Sites) -> int:
    """Bytes of images and labels centralized training collects once (train + val of every seen site)."""
    return int(sum(sp.split(s).x.numel() * sp.split(s).x.element_size() + sp.split(s).y.numel() * 8
                   for sp in sites.seen for s in ("train", "val")))


# ----------------------------------------------------------------------------- verdicts
def judge(diffs, margin: float = 0.0) -> str:
    """Verdict on "the paired difference is above ``margin``" (see the module docstring)."""
    m, sd, n = metrics.mean_sd(diffs)
    if n == 0:
        return "not run"
    if n < 2:
        return "one seed: no verdict"
    if m - sd > margin:
        return "supported"
    if m + sd < margin:
        return "refuted"
    return "within the spread"


def _paired(a: pd.Series, b: pd.Series) -> list[float]:
    """a − b for the seeds both have."""
    both = a.index.intersection(b.index)
    return [float(a[i] - b[i]) for i in both]


def _row(dataset, claim, diffs, margin=0.0, shown=None) -> dict:
    shown = diffs if shown is None else shown
    return {"dataset": dataset, "claim": claim, "difference": metrics.fmt(shown, 3), "verdict": judge(diffs, margin)}


def claims(final: pd.DataFrame, unseen: pd.DataFrame, adaptation: pd.DataFrame, margin_central: float = 0.02,
           n_ft: int = 20) -> pd.DataFrame:
    """The notebook's four claims per dataset: paired differences over seeds and a verdict each.

    ``n_ft``: the fine-tuning budget judged (the nearest one run when it was not)."""
    ps = per_seed(final).set_index(["dataset", "method", "seed"]).sort_index()
    rows = []
    for d in ps.index.get_level_values(0).unique():
        x = lambda m, col="mean_auc": ps.loc[(d, m), col] if (d, m) in ps.index.droplevel(2) else pd.Series(dtype=float)
        rows.append(_row(d, "FedAvg > local-only, mean site AUC", _paired(x("fedavg"), x("local"))))
        rows.append(_row(d, "FedAvg > local-only, worst site AUC",
                         _paired(x("fedavg", "worst_auc"), x("local", "worst_auc"))))
        gap = _paired(x("centralized"), x("fedavg"))
        rows.append(_row(d, f"FedAvg within {margin_central} AUC of centralized (gap shown)",
                         [margin_central - g for g in gap], shown=gap))
        rows.append(_row(d, "FedBN > FedAvg on the seen sites", _paired(x("fedbn"), x("fedavg"))))
        u = unseen[unseen["dataset"] == d].set_index(["method", "adabn", "seed"])["test_auc"].sort_index()
        get = lambda m, a: u.loc[(m, a)] if (m, a) in u.index.droplevel(2) else pd.Series(dtype=float)
        rows.append(_row(d, "unseen site: FedBN + AdaBN > FedAvg", _paired(get("fedbn", True), get("fedavg", False))))
        rows.append(_row(d, "unseen site: FedBN + AdaBN > FedAvg + AdaBN",
                         _paired(get("fedbn", True), get("fedavg", True))))
        rows += _adaptation_claims(d, adaptation[adaptation["dataset"] == d], n_ft)
    return pd.DataFrame(rows)


def _adaptation_claims(d: str, a: pd.DataFrame, n_ft: int) -> list[dict]:
    st = lambda q: a.query(q).set_index("seed")["unseen_auc"]
    rows = [_row(d, "AdaBN (0 labels) > federated model on the unseen site",
                 _paired(st("stage == 'adabn'"), st("stage == 'federated'")))]
    budgets = sorted(set(a.loc[a["stage"] == "finetune", "n_labels"]))
    n_ft = min(budgets, key=lambda n: abs(n - n_ft)) if budgets else n_ft  # the budget nearest to n_ft
    for mode in sorted(set(a.loc[a["stage"] == "finetune", "mode"])):
        ft = a.query("stage == 'finetune' and n_labels == @n_ft and mode == @mode").set_index("seed")
        if len(ft):
            rows.append(_row(d, f"fine-tune {n_ft} labels ({mode}) > AdaBN on the unseen site",
                             _paired(ft["unseen_auc"], st("stage == 'adabn'"))))
            rows.append({"dataset": d, "claim": f"  its forgetting on the seen sites ({mode}; AUC lost)",
                         "difference": metrics.fmt(ft["forgetting"], 3), "verdict": "measured"})
    return rows


def print_claims(table: pd.DataFrame) -> None:
    for r in table.itertuples():
        print(f"{r.dataset:>15} | {r.claim:<62} | Δ = {r.difference:<24} | {r.verdict}")


def compare_runtimes(sim, dep, tolerance: float = 0.01) -> pd.DataFrame:
    """Deployment vs simulation, same seed, round and site: test AUC of each and |difference| ≤ ``tolerance``."""
    on = [*KEYS, "round", "site"]
    df = dep.final()[[*on, "test_auc"]].merge(sim.evaluations[[*on, "test_auc"]], on=on,
                                              suffixes=("_deployment", "_simulation"))
    df["abs_diff"] = (df["test_auc_deployment"] - df["test_auc_simulation"]).abs()
    df["within_tolerance"] = df["abs_diff"] <= tolerance
    return df
