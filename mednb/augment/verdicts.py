"""Tables, verdicts, records and claims read from the DataFrames of :mod:`.experiments`.

Arms of a comparison train on the same seeds, and a seed fixes the label subset, so two arms are compared per
seed: :func:`mednb.claims.paired` gives the mean difference with a 95 % Student-t interval over seeds and the
verdict (``better`` / ``worse`` / ``within noise``). :func:`verdict` and :func:`describe_verdict` name the best
policy per setting with that paired difference against ``none``; :func:`budget_table` lays the budget
demonstration side by side; :func:`record_rows` records a comparison's runs with its ``comparison`` and ``steps``
tags; :func:`record_claims` records the notebook's headline claims.
"""
from __future__ import annotations

import numpy as np

from .. import claims as C
from .. import metrics as M

#: the policy the claims are made for: the first of these that the grid has
CLAIM_POLICIES = ("strong", "elastic", "basic", "intensity", "flip")
#: citations of the claims
CITE_AUGMENT = ("Shorten & Khoshgoftaar, J. Big Data 2019 (survey); Chlap et al., J. Med. Imaging Radiat. Oncol. "
                "2021 (medical imaging)")
CITE_BUDGET = ("Oliver et al., NeurIPS 2018 (Realistic evaluation of deep semi-supervised learning); "
               "Lüth et al., NeurIPS 2023 (Navigating the pitfalls of active learning evaluation)")
CITE_IMBALANCE = "Buda, Maki & Mazurowski, Neural Networks 2018 (class imbalance in CNNs)"


def by_seed(df, metric: str = "test_auc", **where) -> dict:
    """``{seed: metric}`` of the rows of ``df`` whose columns equal ``where`` (one run per seed)."""
    g = df
    for k, v in where.items():
        g = g[g[k] == v]
    return dict(zip(g["seed"], g[metric]))


def _steps(g):
    s = sorted({int(v) for v in g["steps"].dropna()}) if "steps" in g else []
    return s[0] if len(s) == 1 else (", ".join(map(str, s)) or None)


def verdict(df, metric: str = "test_auc", baseline: str = "none"):
    """Per (dataset, label fraction): the policy with the best mean ``metric``, its mean and sd, and its
    difference to ``baseline`` paired over seeds (:func:`mednb.claims.paired`: ``gain_over_baseline``, its 95 %
    interval ``lo``/``hi``, ``verdict``, the one-line ``paired`` text) — computed from a grid DataFrame."""
    import pandas as pd
    rows = []
    for (ds, frac), g in df.groupby(["dataset", "label_fraction"]):
        stats = g.groupby("policy")[metric].agg(["mean", "std", "count"])
        best = stats["mean"].idxmax()
        sd = lambda v: 0.0 if (v is None or not np.isfinite(v)) else float(v)
        row = dict(dataset=ds, label_fraction=frac, best_policy=best, best_mean=stats.loc[best, "mean"],
                   best_sd=sd(stats.loc[best, "std"]), baseline_mean=None, gain_over_baseline=None, lo=None, hi=None,
                   verdict=None, paired=None, n_seeds=int(stats["count"].min()), steps=_steps(g))
        if baseline in stats.index:
            row["baseline_mean"] = stats.loc[baseline, "mean"]
            if best != baseline:
                p = C.paired(by_seed(g, metric, policy=best), by_seed(g, metric, policy=baseline))
                row.update(gain_over_baseline=p.delta, lo=p.lo, hi=p.hi, verdict=p.verdict, paired=str(p), n_seeds=p.n)
        rows.append(row)
    return pd.DataFrame(rows)


def describe_verdict(v) -> str:
    """Plain-language lines from :func:`verdict` (one per dataset and label fraction)."""
    lines = []
    for r in v.itertuples():
        budget = f", {r.steps} steps" if getattr(r, "steps", None) is not None else ""
        where = f"{r.dataset}, {r.label_fraction:.0%} labels{budget}"
        if r.best_policy == "none" or r.paired is None:
            lines.append(f"{where}: no policy beat 'none' on average (best {r.best_policy}, AUC {r.best_mean:.3f}).")
        else:
            lines.append(f"{where}: {r.best_policy} has the best mean, AUC {r.best_mean:.3f} vs {r.baseline_mean:.3f} "
                         f"without augmentation; {r.best_policy} − none: {r.paired}.")
    return "\n".join(lines)


def summary(df, by, metrics=("test_auc",), digits: int = 3):
    """``mean ± sd (n)`` of wide result columns ``metrics`` per group ``by`` (via :func:`mednb.metrics.summarize`)."""
    by = [by] if isinstance(by, str) else list(by)
    long = df.melt(id_vars=by, value_vars=list(metrics), var_name="metric", value_name="value")
    out = M.summarize(long.to_dict("records"), by, metrics, digits)
    return out[[c for c in out.columns if not c.endswith("_mean")]]


def budget_table(demo, metric: str = "test_auc", baseline: str = "none"):
    """The budget demonstration side by side: one row per policy, for each budget its steps and ``mean ± sd``,
    and each policy's difference to ``baseline`` paired over seeds under that budget."""
    import pandas as pd
    rows = []
    for pol, g in demo.groupby("policy", sort=False):
        row = {"policy": pol}
        for b, gb in g.groupby("budget", sort=False):
            row[f"{b}: steps"] = _steps(gb)
            row[f"{b}: {metric}"] = M.fmt(gb[metric].tolist())
            if pol != baseline:
                base = demo[(demo.budget == b) & (demo.policy == baseline)]
                if len(base):
                    row[f"{b}: − {baseline}"] = str(C.paired(by_seed(gb, metric), by_seed(base, metric)))
        rows.append(row)
    return pd.DataFrame(rows)


def record_rows(df, comparison: str, metrics=("test_auc",), tags=(), **fixed) -> int:
    """Record every run of ``df`` with :func:`mednb.record`: each of ``metrics``, tagged ``comparison``, the
    run's ``steps``, ``dataset`` and ``seed``, the columns ``tags`` (names, or ``{tag: column}``) and the
    ``fixed`` values. Returns the number of records."""
    from ..recording import record
    tags = dict(tags) if hasattr(tags, "items") else {t: t for t in tags}
    n = 0
    for r in df.to_dict("records"):
        for m in metrics:
            record(m, r[m], comparison=comparison, steps=int(r["steps"]), dataset=r["dataset"],
                   **{t: r[c] for t, c in tags.items()}, seed=r["seed"], **fixed)
            n += 1
    return n


def claim_policy(policies) -> str | None:
    """The policy the claims are made for: the first of :data:`CLAIM_POLICIES` among ``policies``."""
    return next((p for p in CLAIM_POLICIES if p in list(policies)), None)


def record_claims(grid, demo=None, imbalance=None, metric: str = "test_auc", policy: str | None = None,
                  comparison: str = "policy_x_fraction") -> list[dict]:
    """Record the notebook's headline claims with :func:`mednb.claims.claim`, each a paired difference over seeds:

    * per label fraction of ``grid``: ``policy`` (default :func:`claim_policy`) against ``none``;
    * "augmentation helps most when labels are scarce": the gain at the lowest fraction minus the gain at the
      highest, per seed;
    * ``demo`` (:func:`~mednb.augment.budget_demo`): ``policy`` at equal steps against itself at equal epochs;
    * ``imbalance``: oversampling + augmentation against nothing, by balanced accuracy.
    """
    out = []
    policy = policy or claim_policy(grid.policy.unique())
    if policy is None or "none" not in set(grid.policy):
        return out
    ds, steps = grid.dataset.iloc[0], _steps(grid)
    fracs = sorted(grid.label_fraction.unique())
    gains = {}
    for f in fracs:
        a, b = by_seed(grid, metric, policy=policy, label_fraction=f), by_seed(grid, metric, policy="none",
                                                                              label_fraction=f)
        gains[f] = {s: a[s] - b[s] for s in a if s in b}
        out.append(C.claim(f"{policy} augmentation beats none at {f:.0%} labels (equal steps)", C.paired(a, b),
                           comparison=comparison, steps=steps, metric=metric, dataset=ds, citation=CITE_AUGMENT))
    if len(fracs) > 1:
        lo, hi = fracs[0], fracs[-1]
        out.append(C.claim(f"augmentation ({policy}) helps more at {lo:.0%} than at {hi:.0%} labels "
                           f"(gain over none, difference of the two)", C.paired(gains[lo], gains[hi]),
                           comparison=comparison, steps=steps, metric=metric, dataset=ds, citation=CITE_AUGMENT))
    if demo is not None and len(demo) and policy in set(demo.policy):
        d = demo[demo.policy == policy]
        eq_s, eq_e = d[d.budget == "equal steps"], d[d.budget == "equal epochs"]
        out.append(C.claim(f"{policy} at {d.label_fraction.iloc[0]:.0%} labels: a step budget equal to the "
                           f"full-label arm's beats equal epochs (the old protocol under-trains few-label arms)",
                           C.paired(by_seed(eq_s, metric), by_seed(eq_e, metric)), comparison="budget_demo",
                           steps=f"{_steps(eq_s)} vs {_steps(eq_e)} steps", metric=metric, dataset=ds,
                           citation=CITE_BUDGET))
    if imbalance is not None and len(imbalance) and {"oversample + augment", "nothing"} <= set(imbalance.strategy):
        m = "test_balanced_acc"
        out.append(C.claim("oversampling + augmentation beats doing nothing on an imbalanced training set "
                           "(balanced accuracy)",
                           C.paired(by_seed(imbalance, m, strategy="oversample + augment"),
                                    by_seed(imbalance, m, strategy="nothing")),
                           comparison="imbalance", steps=_steps(imbalance), metric=m, dataset=imbalance.dataset.iloc[0],
                           citation=CITE_IMBALANCE))
    return out
