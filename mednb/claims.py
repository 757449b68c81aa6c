"""Paired verdicts and the claims ledger.

A comparison's arms train on the same seeds (the same label subset per seed), so their difference is taken per
seed: :func:`paired` gives the mean Δ with a 95 % Student-t interval over seeds and one verdict word —
``better`` (the interval lies above 0), ``worse`` (below 0) or ``within noise``. With one seed there is no
interval and the verdict is ``within noise``.

:func:`claim` records a notebook's claim as a structured record (claim, citation, paper value, ours with its
interval, n, budget in steps, verdict): shown in the notebook as one line, stored as an output of MIME type
:data:`MIME` (like :func:`mednb.record`), read back by ``mednb run`` and ``mednb report`` into ``claims.md``
(:func:`read_notebook`, :func:`markdown`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .recording import _clean, _outputs

MIME = "application/vnd.mednb.claim+json"
VERDICTS = ("better", "worse", "within noise")
COLUMNS = ("notebook", "claim", "citation", "paper", "ours", "n", "budget", "verdict")


@dataclass(frozen=True)
class Paired:
    """Δ = a − b paired over seeds: mean, 95 % interval ``[lo, hi]`` (NaN when n < 2), sd, n and the verdict.

    ``verdict`` is from a's side: ``better`` means a beats b (higher, or lower when ``higher_is_better`` is
    False).
    """
    delta: float
    lo: float
    hi: float
    sd: float
    n: int
    verdict: str
    higher_is_better: bool = True

    def __str__(self) -> str:
        if self.n < 2:
            return f"Δ {self.delta:+.3f} (n=1: no interval) → {self.verdict}"
        wide = f"; n={self.n}: a wide interval" if self.n <= 5 else ""
        return (f"Δ {self.delta:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}] (95 % CI over {self.n} paired seeds{wide})"
                f" → {self.verdict}")


def _values(x) -> dict:
    if isinstance(x, Mapping):
        return {k: float(v) for k, v in x.items()}
    if isinstance(x, Sequence) or hasattr(x, "__len__"):
        return {i: float(v) for i, v in enumerate(list(x))}
    raise TypeError(f"expected a mapping seed -> value or a sequence in seed order, got {type(x).__name__}")


def paired(a, b, *, higher_is_better: bool = True, level: float = 0.95) -> Paired:
    """Paired comparison of arm ``a`` against arm ``b``.

    a, b: ``{seed: value}`` (paired on the seeds both have) or equal-length sequences in the same seed order.
    Returns :class:`Paired`; raises ValueError when no seed is shared.
    """
    va, vb = _values(a), _values(b)
    if not (isinstance(a, Mapping) and isinstance(b, Mapping)) and len(va) != len(vb):
        raise ValueError(f"paired sequences must have one value per seed each, got {len(va)} and {len(vb)}")
    seeds = [s for s in va if s in vb and math.isfinite(va[s]) and math.isfinite(vb[s])]
    if not seeds:
        raise ValueError("no seed has a finite value in both arms: nothing to pair")
    d = [va[s] - vb[s] for s in seeds]
    n, mean = len(d), sum(d) / len(d)
    if n < 2:
        return Paired(mean, math.nan, math.nan, math.nan, 1, "within noise", higher_is_better)
    from scipy import stats
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    up, down = ("better", "worse") if higher_is_better else ("worse", "better")
    verdict = up if lo > 0 else down if hi < 0 else "within noise"
    return Paired(mean, lo, hi, sd, n, verdict, higher_is_better)


def claim(text: str, ours, *, comparison: str, steps: int | str | None, metric: str = "test_auc",
          dataset: str | None = None, citation: str | None = None, paper=None, verdict: str | None = None,
          n: int | None = None) -> dict:
    """Record one claim of a notebook and show it as one line.

    ours: a :class:`Paired` (its Δ, interval, n and verdict are used), or a number / text when the claim is not a
    paired difference (then give ``verdict`` and ``n``). steps: the comparison's budget in optimizer steps (or
    its description, e.g. ``"40 local steps × 10 rounds"``). paper: the paper's value or quoted result, beside
    ours, never in its place. Returns the record.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a claim needs its text")
    if isinstance(ours, Paired):
        rec_ours, n, verdict = str(ours).split(" → ")[0], ours.n, verdict or ours.verdict
        extra = {"delta": ours.delta, "lo": ours.lo, "hi": ours.hi}
    else:
        rec_ours, extra = (f"{ours:.3f}" if isinstance(ours, float) else str(ours)), {}
    if verdict is None:
        raise ValueError("a claim whose value is not a Paired needs verdict=...")
    rec = {"claim": text.strip(), "citation": citation, "paper": paper, "ours": rec_ours, "n": n,
           "budget": steps if isinstance(steps, str) or steps is None else f"{int(steps)} steps",
           "verdict": verdict, "comparison": comparison, "metric": metric, "dataset": dataset,
           **{k: _clean(v) for k, v in extra.items()}}
    rec = {k: _clean(v) for k, v in rec.items()}
    _show(rec)
    return rec


def _show(rec: dict) -> None:
    line = f"◆ claim: {rec['claim']} — ours {rec['ours']} → {rec['verdict']}"
    if rec.get("paper") is not None:
        line += f" (paper: {rec['paper']})"
    try:
        from IPython import get_ipython
        from IPython.display import display
        if get_ipython() is not None:
            display({MIME: rec, "text/plain": line}, raw=True)
            return
    except ImportError:
        pass
    print(line)


def read_notebook(path: str | Path) -> list[dict]:
    """The claims recorded in an executed notebook, in order."""
    return list(_outputs(path, MIME))


def one_budget(*frames) -> int | None:
    """The one budget in optimizer steps of a comparison's result tables (their ``steps`` column); None when no
    table has rows with a ``steps`` column. Raises ValueError when the arms trained different budgets."""
    steps = sorted({int(v) for f in frames if f is not None and "steps" in f and len(f) for v in f["steps"]})
    if len(steps) > 1:
        raise ValueError(f"the arms of one comparison must train one budget of steps; they trained different "
                         f"budgets: {steps} steps")
    return steps[0] if steps else None


def budget_problems(records: list[dict]) -> list[str]:
    """Where ``records`` (metric records, optionally tagged ``notebook``) break the one-budget rule.

    Records sharing a ``comparison`` tag (within one notebook and dataset) must carry one ``steps`` value; a
    comparison whose name contains ``budget`` (a demonstration of what unequal budgets do) may carry several.
    Returns one line per problem (empty: the rule holds).
    """
    groups: dict[tuple, set] = {}
    problems = []
    for r in records:
        if r.get("comparison") in (None, ""):
            continue
        key = (r.get("notebook"), r["comparison"], r.get("dataset"))
        if r.get("steps") in (None, ""):
            problems.append(f"{_where(key)}: metric {r.get('metric')!r} has no steps tag")
            continue
        groups.setdefault(key, set()).add(str(r["steps"]))
    for key, steps in groups.items():
        if len(steps) > 1 and "budget" not in str(key[1]):
            problems.append(f"{_where(key)}: arms trained with different budgets ({', '.join(sorted(steps))} steps)")
    return problems


def _where(key) -> str:
    nb, comparison, dataset = key
    return " · ".join(x for x in (nb, f"comparison {comparison!r}", dataset and f"dataset {dataset}") if x)


def label(c: dict) -> str:
    """A claim's text for a table: its ``dataset`` appended in parentheses when the text does not name it, so
    that the same claim on two datasets reads as two rows."""
    text, dataset = str(c.get("claim") or ""), c.get("dataset")
    return f"{text} ({dataset})" if dataset and str(dataset).lower() not in text.lower() else text


def _cell(v) -> str:
    if v is None or v == "":
        return "—"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown(claims: list[dict], title: str = "Claims", problems: list[str] = ()) -> str:
    """One table over ``claims`` (each a record of :func:`claim`, optionally with a ``notebook`` key), then
    the :func:`budget_problems` of the same run, if any."""
    lines = [f"# {title}", ""]
    if problems:
        lines += ["**Unequal budgets** — these comparisons are not fair and their verdicts do not stand:", "",
                  *[f"- {p}" for p in problems], ""]
    if not claims:
        return "\n".join(lines + ["No claim was recorded.", ""])
    lines += ["Each claim is a paired difference over seeds (same label subsets) under one training budget per "
              "comparison; the interval is 95 % Student-t. Paper values stand beside ours, never in their place.",
              "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for c in claims:
        lines.append("| " + " | ".join(_cell(label(c) if k == "claim" else c.get(k)) for k in COLUMNS) + " |")
    return "\n".join(lines + [""])


__all__ = ["MIME", "VERDICTS", "Paired", "paired", "claim", "label", "read_notebook", "markdown", "budget_problems",
           "one_budget"]
