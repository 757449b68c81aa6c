"""The multisite study of notebook 09: run every method over datasets × seeds, then measure.

Tables are tidy DataFrames (one row per dataset, seed, method, site); summaries give mean ± sd over seeds.
A verdict is a paired difference over seeds (same seed: same hospitals, same initial weights, same label picks)
with a 95 % Student-t interval, :func:`mednb.claims.paired`: *better* / *worse* when the interval excludes 0,
*within noise* otherwise (and with one seed). :func:`record_claims` puts the headline ones in the claims ledger
and :func:`record_results` tags every record with its comparison (``methods``, ``adaptation``, ``runtimes``) and
its budget in steps.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import adapt
from .. import claims as ledger
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
#: where each claim of :func:`claims` comes from
CITATIONS = {
    "fedavg": "McMahan et al., AISTATS 2017 (FedAvg)",
    "fedbn": "Li et al., ICLR 2021 (FedBN)",
    "adabn": "Li et al., Pattern Recognition 2018 (AdaBN)",
    "forgetting": "McCloskey & Cohen 1989; Kirkpatrick et al., PNAS 2017",
}


def _row(dataset, comparison, claim, a: pd.Series, b: pd.Series, citation=None) -> dict:
    """One claim: a − b paired over the seeds both have (:func:`mednb.claims.paired`); no shared seed: not run."""
    a, b = a.dropna().to_dict(), b.dropna().to_dict()
    both = [s for s in a if s in b]
    if not both:
        return {"dataset": dataset, "comparison": comparison, "claim": claim, "difference": "—", "verdict": "not run",
                "paired": None, "citation": citation}
    p = ledger.paired({s: a[s] for s in both}, {s: b[s] for s in both})
    return {"dataset": dataset, "comparison": comparison, "claim": claim, "difference": str(p).split(" → ")[0],
            "verdict": p.verdict, "paired": p, "citation": citation}


def claims(final: pd.DataFrame, unseen: pd.DataFrame, adaptation: pd.DataFrame, n_ft: int = 20) -> pd.DataFrame:
    """The notebook's claims per dataset: paired differences over seeds (95 % interval) and a verdict each
    (``better``: the first arm wins, ``worse``, ``within noise``; see :func:`mednb.claims.paired`).

    ``n_ft``: the number of fine-tuning labels judged (the nearest one run when it was not). Columns: dataset,
    comparison, claim, difference (Δ and its interval), verdict, paired (:class:`mednb.claims.Paired`), citation."""
    ps = per_seed(final).set_index(["dataset", "method", "seed"]).sort_index()
    rows = []
    for d in ps.index.get_level_values(0).unique():
        x = lambda m, col="mean_auc": ps.loc[(d, m), col] if (d, m) in ps.index.droplevel(2) else pd.Series(dtype=float)
        cite = CITATIONS["fedavg"]
        rows.append(_row(d, "methods", "FedAvg vs local-only, mean site AUC", x("fedavg"), x("local"), cite))
        rows.append(_row(d, "methods", "FedAvg vs local-only, worst site AUC", x("fedavg", "worst_auc"),
                         x("local", "worst_auc"), cite))
        rows.append(_row(d, "methods", "FedAvg vs centralized, mean site AUC", x("fedavg"), x("centralized"), cite))
        rows.append(_row(d, "methods", "FedBN vs FedAvg on the seen sites", x("fedbn"), x("fedavg"),
                         CITATIONS["fedbn"]))
        u = unseen[unseen["dataset"] == d].set_index(["method", "adabn", "seed"])["test_auc"].sort_index()
        get = lambda m, a: u.loc[(m, a)] if (m, a) in u.index.droplevel(2) else pd.Series(dtype=float)
        rows.append(_row(d, "methods", "unseen site: FedBN + AdaBN vs FedAvg", get("fedbn", True), get("fedavg", False),
                         CITATIONS["fedbn"]))
        rows.append(_row(d, "methods", "unseen site: FedBN + AdaBN vs FedAvg + AdaBN", get("fedbn", True),
                         get("fedavg", True), CITATIONS["fedbn"]))
        rows += _adaptation_claims(d, adaptation[adaptation["dataset"] == d], n_ft)
    return pd.DataFrame(rows)


def _adaptation_claims(d: str, a: pd.DataFrame, n_ft: int) -> list[dict]:
    st = lambda q: a.query(q).set_index("seed")["unseen_auc"]
    rows = [_row(d, "adaptation", "AdaBN (0 labels) vs the federated model on the unseen site",
                 st("stage == 'adabn'"), st("stage == 'federated'"), CITATIONS["adabn"])]
    budgets = sorted(set(a.loc[a["stage"] == "finetune", "n_labels"]))
    n_ft = min(budgets, key=lambda n: abs(n - n_ft)) if budgets else n_ft  # the budget nearest to n_ft
    for mode in sorted(set(a.loc[a["stage"] == "finetune", "mode"])):
        ft = a.query("stage == 'finetune' and n_labels == @n_ft and mode == @mode").set_index("seed")
        if len(ft):
            rows.append(_row(d, "adaptation", f"fine-tune {n_ft} labels ({mode}) vs AdaBN on the unseen site",
                             ft["unseen_auc"], st("stage == 'adabn'"), CITATIONS["adabn"]))
            rows.append({"dataset": d, "comparison": "adaptation",
                         "claim": f"  its forgetting on the seen sites ({mode}; AUC lost)",
                         "difference": metrics.fmt(ft["forgetting"], 3), "verdict": "measured", "paired": None,
                         "citation": CITATIONS["forgetting"]})
    return rows


def print_claims(table: pd.DataFrame) -> None:
    for r in table.itertuples():
        print(f"{r.dataset:>15} | {r.claim:<58} | {r.difference:<62} | {r.verdict}")


def record_claims(table: pd.DataFrame, budgets: dict) -> list[dict]:
    """Every paired claim of :func:`claims` into the claims ledger (:func:`mednb.claims.claim`).

    budgets: ``{(dataset, comparison): steps}`` — the budget of each comparison (:func:`budgets`)."""
    return [ledger.claim(r.claim, r.paired, comparison=r.comparison, steps=budgets.get((r.dataset, r.comparison)),
                         dataset=r.dataset, citation=r.citation)
            for r in table.itertuples() if r.paired is not None]


def budgets(setups: dict, ft_recipe: engine.Recipe) -> dict:
    """``{(dataset, comparison): steps}``: the methods comparison's :attr:`Setup.budget` (rounds × local steps of
    one hospital) and the adaptation comparison's fine-tuning steps, per dataset."""
    out = {}
    for d, s in setups.items():
        out[(d, "methods")] = s.budget
        out[(d, "adaptation")] = int(ft_recipe.steps)
    return out


def results(final: pd.DataFrame, unseen: pd.DataFrame, adapted: pd.DataFrame, comm: pd.DataFrame,
            setups: dict, runtimes: pd.DataFrame | None = None, deploy_setup=None) -> list[tuple[str, float, dict]]:
    """``(metric, value, tags)`` of every result of the notebook (for :func:`mednb.record`), each tagged with its
    ``comparison`` and ``steps``:
    ``methods`` (every hospital's final AUC/ACC, the unseen site, bytes per round; steps = :attr:`Setup.budget`),
    ``adaptation`` (fine-tuning at the new hospital and its forgetting; steps = the fine-tuning budget) and
    ``runtimes`` (the Deployment Runtime's run; steps = its rounds × local steps)."""
    out, alpha = [], final.groupby("dataset")["alpha"].first().to_dict()
    record = lambda name, value, **tags: out.append((name, value, tags))
    for r in final.itertuples():
        for m in ("test_auc", "test_acc"):
            record(m, getattr(r, m), comparison="methods", steps=setups[r.dataset].budget, method=r.method,
                   site=r.site, round=r.round, alpha=r.alpha, dataset=r.dataset, seed=r.seed)
    for r in unseen.itertuples():
        s = setups[r.dataset]
        record("test_auc", r.test_auc, comparison="methods", steps=s.budget,
               method=r.method + ("+adabn" if r.adabn else ""),
               site="unseen", round=s.rounds, alpha=alpha.get(r.dataset), dataset=r.dataset, seed=r.seed)
    for r in adapted[adapted.stage == "finetune"].itertuples():
        tags = dict(comparison="adaptation", steps=int(r.steps), method=f"{r.method}+adabn+finetune-{r.mode}",
                    n_labels=r.n_labels, alpha=alpha.get(r.dataset), dataset=r.dataset, seed=r.seed)
        record("test_auc", r.unseen_auc, site="unseen", **tags)
        record("forgetting", r.forgetting, **tags)
    for r in comm.itertuples():
        record("bytes_sent", r.bytes_per_round, comparison="methods", steps=setups[r.dataset].budget, method=r.method,
               dataset=r.dataset)
    for r in (runtimes.itertuples() if runtimes is not None else ()):
        record("test_auc", r.test_auc_deployment, comparison="runtimes", steps=deploy_setup.budget,
               method=f"{r.method} (deployment)", site=r.site, round=r.round, alpha=alpha.get(r.dataset),
               dataset=r.dataset, seed=r.seed)
    return out


def compare_runtimes(sim, dep, tolerance: float = 0.01) -> pd.DataFrame:
    """Deployment vs simulation, same seed, round and site: test AUC of each and |difference| ≤ ``tolerance``."""
    on = [*KEYS, "round", "site"]
    df = dep.final()[[*on, "test_auc"]].merge(sim.evaluations[[*on, "test_auc"]], on=on,
                                              suffixes=("_deployment", "_simulation"))
    df["abs_diff"] = (df["test_auc_deployment"] - df["test_auc_simulation"]).abs()
    df["within_tolerance"] = df["abs_diff"] <= tolerance
    return df


def record_results(*args, **kwargs) -> int:
    """:func:`mednb.record` every entry of :func:`results` (same arguments); returns the number of records."""
    from ..recording import record
    found = results(*args, **kwargs)
    for name, value, tags in found:
        record(name, value, **tags)
    return len(found)
