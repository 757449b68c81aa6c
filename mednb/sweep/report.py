"""The leaderboard of a sweep folder: ours (mean ± sd over seeds) beside the MedMNIST v2 table.

``write_report(DIR)`` reads every unit under ``DIR/units/`` (the ordinary ``mednb run`` output of one
notebook execution plus ``unit.json`` and ``status.json``) and writes, atomically:

- ``DIR/results.csv``      — every recorded metric of every unit, one row each, with the unit's name;
- ``DIR/leaderboard.md``   — per dataset × size × model: test AUC and ACC (mean ± sd, n seeds) beside
  the paper's number, the difference and a verdict; balanced accuracy, ECE, per-class recall and F1;
  time and cost; the failed units with the end of their traceback; the environment check;
- ``DIR/leaderboard.html`` — the same tables as HTML;
- ``DIR/claims.md``        — the claims every unit's notebook recorded (:mod:`mednb.claims`), one row each with
  the unit's name, and any comparison within a unit whose arms did not share one training budget.

Verdict. ``reproduced`` when |ours − paper| ≤ max(``abs``, ``sd`` × seed-sd), else ``below`` or
``above``; default ``abs`` = 0.02, ``sd`` = 2, overridable only through the spec's ``tolerance`` table
(stored in ``sweep.json`` before any unit runs, so it is fixed in advance). Why: the paper reports one
training run per cell, which scatters around its own expected value by about one seed-sd, so a
faithful reproduction lands within ±2 sd of it about 95 % of the time; the 0.02 floor covers what the
seed-sd misses with few seeds (n = 1 has no sd) and the test-set sampling noise of the small sets
(BreastMNIST has 156 test images: one image moves ACC by 0.006). The paper's values are rounded to 3
decimals, far below either term. Rows without a paper value — phantoms, sizes the paper did not run —
say "no paper row", never 0. A model without its own row (the ``cnn``) is compared with the paper's
ResNet-18 at the same size (:func:`mednb.references.method_for`) and the row says so.

Environment. A unit whose commit, package set, device class or settings (CPU threads, determinism:
:func:`mednb.sweep.kernel.settings`) differ from the majority of the sweep is listed and its row flagged.
Units of one grid point that ran under different settings are never averaged together: the point gets
one row per setting (``threads=2``), each flagged.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from pathlib import Path

from .. import metrics as M
from .. import references as R
from ..runner import atomic_write
from . import tables

TOLERANCE = {"abs": 0.02, "sd": 2.0}
NO_PAPER = "no paper row"
DETAIL = ("test_auc", "test_acc", "test_balanced_acc", "test_ece", "test_recall", "test_f1", "test_reliability")
SETTINGS = ("threads", "determinism")
ENV_FIELDS = ("commit", "packages", "device", *SETTINGS)


def check_tolerance(tol: dict | None) -> dict:
    """The tolerance table of a spec merged over :data:`TOLERANCE`; raises ValueError on a bad key or value."""
    out = dict(TOLERANCE)
    for k, v in (tol or {}).items():
        if k not in TOLERANCE:
            raise ValueError(f"unknown tolerance key {k!r}; valid: {', '.join(TOLERANCE)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"tolerance {k} must be a number >= 0, got {v!r}")
        out[k] = float(v)
    return out


def verdict(mean: float, sd: float, paper: float | None, tol: dict | None = None) -> str:
    """``below`` / ``reproduced`` / ``above`` the paper, or ``no paper row`` (see the module docstring)."""
    tol = check_tolerance(tol)
    if paper is None or mean is None or math.isnan(mean) or (isinstance(paper, float) and math.isnan(paper)):
        return NO_PAPER
    margin = max(tol["abs"], tol["sd"] * (0.0 if sd is None or math.isnan(sd) else sd))
    diff = mean - paper
    if abs(diff) <= margin + 1e-9:  # inclusive; the epsilon absorbs binary rounding of 3-decimal values
        return "reproduced"
    return "below" if diff < 0 else "above"


def paper_cell(dataset: str, model: str, size) -> tuple[dict | None, str]:
    """``(paper row or None, note)`` for one leaderboard row."""
    from ..data import PHANTOMS, dims_of
    ds = str(dataset).lower()
    if ds in PHANTOMS:
        return None, "phantom: no paper row"
    if not R.has(ds):
        return None, "not in MedMNIST v2"
    if size is None:
        return None, "size unknown"
    method, note = R.method_for(model, dims_of(ds), int(size))
    return (R.lookup(ds, method) if method else None), note


# ----------------------------------------------------------------------------- reading
def _json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _records(path: Path) -> list[dict]:
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _package_hash(p) -> str | None:
    if p is None or isinstance(p, str):
        return p
    return hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest()[:12]


def _device_class(d) -> str | None:
    if d is None:
        return None
    d = json.dumps(d, sort_keys=True) if isinstance(d, (dict, list)) else str(d)
    return "cpu" if d.lower().startswith("cpu") else re.sub(r"cuda:\d+", "cuda", d)


def _status(st: dict | None) -> dict:
    """A unit's status in one shape (the sweep's status.json; a bare ``mednb run`` status as fallback)."""
    if not st:
        return {"status": "incomplete", "error": "no status.json: the unit never finished", "traceback": ""}
    if "notebooks" in st and "status" not in st:  # the runner's own bookkeeping
        nbs = list(st["notebooks"].values())
        bad = next((n for n in nbs if n.get("status") != "ok"), None)
        return {"status": bad["status"] if bad else "ok", "seconds": sum(n.get("seconds") or 0 for n in nbs),
                "error": (bad or {}).get("error", ""), "traceback": (bad or {}).get("traceback", "")}
    return dict(st)


def _resolved(d: Path, stem: str, profile, grid: dict, env: dict) -> dict:
    """A unit's knob values: its profile's table, then its own parameters, then what the executed notebook
    printed (``mednb run``'s env.json, else the notebook itself)."""
    from ..params import NOTEBOOK_MODULES, notebook_profiles
    from ..recording import read_params
    out = {}
    if stem in NOTEBOOK_MODULES and profile:
        try:
            out.update(notebook_profiles(stem).get(str(profile), {}))
        except Exception:  # noqa: BLE001 - a broken topic module must not hide the results
            pass
    out.update(grid)
    printed = ((env.get("notebooks") or {}).get(stem) or {}).get("parameters")
    if printed is None and (d / f"{stem}.ipynb").is_file():
        try:
            printed = read_params(d / f"{stem}.ipynb")
        except (OSError, ValueError):
            printed = None
    return {**out, **(printed or {})}


def _settings(st: dict, env: dict) -> tuple:
    """``(threads, determinism)`` a unit computed with: its recorded settings, else its CPUs (None: unknown)."""
    rec = st.get("settings") or env.get("settings") or {}
    threads = rec.get("threads", st.get("cpus") or env.get("cpu_threads"))
    rest = {k: v for k, v in rec.items() if k != "threads"}
    return (None if threads is None else int(threads)), (json.dumps(rest, sort_keys=True) if rest else None)


def load_units(sweep_dir) -> list[dict]:
    """One dict per unit folder: ``name``, ``notebook``, ``params`` (resolved when known), ``grid`` (its
    own), ``status``, ``seconds``, ``error``, ``traceback``, ``commit``, ``packages``, ``device``, ``threads``,
    ``determinism``, ``records``."""
    units = []
    for d in sorted(p for p in (Path(sweep_dir) / "units").glob("*") if p.is_dir() and not p.name.startswith(".")):
        info, st = _json(d / "unit.json", {}) or {}, _status(_json(d / "status.json"))
        env = _json(d / "env.json", {}) or {}
        stem = Path(str(info.get("notebook", ""))).stem
        grid = dict(info.get("params") or {})
        threads, determinism = _settings(st, env)
        units.append({"name": d.name, "notebook": stem, "params": _resolved(d, stem, info.get("profile"), grid, env),
                      "grid": grid, "status": st.get("status", "unknown"),
                      "seconds": st.get("seconds"), "error": st.get("error") or "",
                      "traceback": st.get("traceback") or "", "attempts": st.get("attempts"),
                      "cpus": st.get("cpus") or env.get("cpu_threads"),
                      "commit": st.get("commit") or env.get("commit"),
                      "packages": _package_hash(st.get("packages")),
                      "device": _device_class(st.get("device") or env.get("device_name") or env.get("device")),
                      "threads": threads, "determinism": determinism, "records": _records(d / "metrics.jsonl")})
    return units


def environment(units: list[dict]) -> list[dict]:
    """Units whose commit, package hash, device class or settings differ from the majority of the sweep."""
    flagged = []
    for field in ENV_FIELDS:
        seen = Counter(u[field] for u in units if u[field] is not None)
        if len(seen) < 2:
            continue
        major = seen.most_common(1)[0][0]
        flagged += [{"unit": u["name"], "field": field, "value": u[field], "majority": major}
                    for u in units if u[field] is not None and u[field] != major]
    return flagged


# ----------------------------------------------------------------------------- the table
def _varying(units: list[dict]) -> list[str]:
    """Grid knobs other than seeds, dataset, model and size that differ between units (they split rows)."""
    skip = ("SEED", "DATASET", "MODEL", "SIZE", "DEVICE")
    keys = sorted({k for u in units for k in u["grid"] if not k.startswith(skip)})
    return [k for k in keys if len({json.dumps(u["grid"][k], sort_keys=True) for u in units if k in u["grid"]}) > 1]


def rows(units: list[dict]) -> list[dict]:
    """Leaderboard records (one per unit and metric) with ``unit``, ``size`` and ``setting`` filled in; only
    units whose status is ``ok`` count (a failed unit's partial records stay in results.csv only)."""
    vary = _varying(units)
    out = []
    for u in (u for u in units if u["status"] == "ok"):
        setting = ", ".join(f"{k}={u['grid'][k]}" for k in vary if k in u["grid"])
        for r in u["records"]:
            if r.get("metric") not in DETAIL or "experiment" in r or "dataset" not in r or "model" not in r:
                continue
            size = r.get("size", u["params"].get("SIZE"))
            out.append({**r, "unit": u["name"], "size": None if size is None else int(size), "setting": setting})
    return out


def by_settings(g: list[dict], units: dict) -> list[tuple[str, list[dict]]]:
    """The records of one grid point split by the settings their units ran with: ``[("", g)]`` when all
    agree, else one ``("threads=2", records)`` per setting (a field nobody recorded never splits)."""
    differ = [f for f in SETTINGS if len({units[r["unit"]][f] for r in g} - {None}) > 1]
    if not differ:
        return [("", g)]
    parts: dict[str, list[dict]] = {}
    for r in g:
        u = units[r["unit"]]
        label = ", ".join(f"{f}={'unknown' if u[f] is None else u[f]}" for f in differ)
        parts.setdefault(label, []).append(r)
    return sorted(parts.items())


def leaderboard(units: list[dict], tol: dict | None = None) -> list[dict]:
    """Per dataset × size × model (× varying setting): numbers, paper cell, differences and verdicts."""
    from ..data import dims_of
    tol = check_tolerance(tol)
    recs, flagged = rows(units), {f["unit"] for f in environment(units)}
    seconds, named = {u["name"]: u["seconds"] for u in units}, {u["name"]: u for u in units}
    points: dict[tuple, list[dict]] = {}
    for r in recs:
        points.setdefault((r["dataset"], r["size"], r["model"], r["setting"]), []).append(r)
    groups = {}  # a grid point whose units ran under different settings: one group per setting
    for (ds, size, model, setting), g in points.items():
        split = by_settings(g, named)
        for label, part in split:
            groups[(ds, size, model, ", ".join(x for x in (setting, label) if x))] = (part, len(split) > 1)
    board = []
    for (ds, size, model, setting), (g, mixed_settings) in groups.items():
        vals = lambda m: [r["value"] for r in g if r["metric"] == m]  # noqa: E731
        paper, note = paper_cell(ds, model, size)
        row = {"dataset": ds, "size": size, "model": model, "setting": setting, "dims": dims_of(ds),
               "paper_method": paper["method"] if paper else None, "note": note}
        for m in ("auc", "acc", "balanced_acc", "ece"):
            row[f"{m}_mean"], row[f"{m}_sd"], row[f"{m}_n"] = M.mean_sd(vals(f"test_{m}"))
        row["n"] = row["auc_n"]
        for m in ("auc", "acc"):
            p = paper[m] if paper else None
            row[f"paper_{m}"] = p
            row[f"diff_{m}"] = row[f"{m}_mean"] - p if p is not None and row[f"{m}_n"] else math.nan
            row[f"verdict_{m}"] = verdict(row[f"{m}_mean"], row[f"{m}_sd"], p, tol) if row[f"{m}_n"] else "no result"
        row.update(tables.per_class(g))
        row["reliability"] = tables.pooled_bins(g)
        row["units"] = sorted({r["unit"] for r in g})
        secs = [seconds[n] for n in row["units"] if seconds.get(n) is not None]
        row["seconds_per_unit"] = sum(secs) / len(secs) if secs else math.nan
        row["mixed_env"] = bool(flagged & set(row["units"]))
        row["mixed_settings"] = mixed_settings
        board.append(row)
    return sorted(board, key=lambda r: (r["dims"], r["dataset"], r["size"] or 0, r["model"], r["setting"]))


# ----------------------------------------------------------------------------- writing
def collect(sweep_dir) -> dict:
    """Everything the report shows: ``spec``, ``evidence``, ``tolerance``, ``units``, ``board``, ``failures``,
    ``environment`` (flagged units) and ``cost``."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir() or not ((sweep_dir / "units").is_dir() or (sweep_dir / "sweep.json").is_file()):
        raise ValueError(f"{sweep_dir} is not a sweep folder (no units/ and no sweep.json)")
    meta = _json(sweep_dir / "sweep.json", {}) or {}
    spec = meta.get("spec") or {}
    tol = check_tolerance(spec.get("tolerance"))
    units = load_units(sweep_dir)
    return {"dir": sweep_dir, "spec": spec, "evidence": meta.get("evidence") or {}, "tolerance": tol,
            "tolerance_from_spec": bool(spec.get("tolerance")), "units": units,
            "board": leaderboard(units, tol), "failures": [u for u in units if u["status"] != "ok"],
            "environment": environment(units), "cost": tables.cost(units)}


def unit_claims(sweep_dir, units: list[dict]) -> tuple[list[dict], list[str]]:
    """The claims of every unit (``notebook`` = the unit's name) and the units' unequal-budget comparisons."""
    from .. import claims
    found, problems = [], []
    for u in units:
        nb = Path(sweep_dir) / "units" / u["name"] / f"{u['notebook']}.ipynb"
        if nb.is_file():
            found += [{**c, "notebook": u["name"]} for c in claims.read_notebook(nb)]
        problems += claims.budget_problems([{**r, "notebook": u["name"]} for r in u["records"]])
    return found, problems


def write_report(sweep_dir) -> Path:
    """Write ``results.csv``, ``leaderboard.md``, ``leaderboard.html`` and ``claims.md`` into ``sweep_dir``;
    returns the .md path."""
    from .. import claims
    rep = collect(sweep_dir)
    d = rep["dir"]
    found, problems = unit_claims(d, rep["units"])
    atomic_write(d / "claims.md", claims.markdown(found, f"Claims — sweep {d.name}", problems))
    atomic_write(d / "results.csv", tables.results_csv(rep["units"]))
    atomic_write(d / "leaderboard.html", tables.html(rep))
    return atomic_write(d / "leaderboard.md", tables.markdown(rep))
