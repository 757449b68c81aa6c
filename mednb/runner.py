"""The batch runner behind ``mednb run``: execute notebooks with papermill, collect their metrics.

``run(names, profile=..., out=DIR)`` executes the selected notebooks in order, each with
``PROFILE`` (and any ``-p NAME VALUE`` overrides) injected by papermill, and writes into ``DIR``:

- ``<stem>.ipynb``  — the executed notebooks (written to a temp file, moved into place when done);
- ``metrics.jsonl`` — every ``mednb.record(...)`` read back from the executed notebooks;
- ``results.csv``   — one row per metric: ``notebook, metric, value`` + one column per tag;
- ``report.md``     — per notebook: status, wall time, key metrics; failures with their traceback tail;
- ``claims.md``     — every notebook's claims (:func:`mednb.claims.claim`) in one table, and any comparison
  whose arms did not share one training budget;
- ``env.json``      — versions, device, GPU, git commit, profile, resolved parameters and seeds;
- ``status.json``   — the runner's own bookkeeping (what ``--resume`` reads);
- ``kernel.log``    — the kernels' own output (start-up warnings, crashes), kept off the terminal.
- ``site/``         — with ``book=True`` (``mednb run --book``): the folder as a static HTML site
  (:func:`mednb.book.build`), built at the end of the batch.

Overrides are validated against each notebook's ``PROFILES`` table (the assignments of its
``parameters`` cell for notebooks without one) before anything runs or is written. A failing notebook
does not stop the others. Every file is written atomically (temp file + ``os.replace``). Ctrl-C, or
SIGINT/SIGTERM sent to the runner alone (a job scheduler's stop), ends the batch within seconds: the kernel
is shut down, the notebook being run is recorded as ``interrupted`` and ``--resume`` reruns only it.
"""
from __future__ import annotations

import ast
import csv
import datetime as _dt
import io
import json
import os
import sys
import tempfile
from pathlib import Path

from .params import (NOTEBOOK_MODULES, ParamError, check_value, knob_types, notebook_profiles,
                     resolve_profile, validate as validate_knobs)
from .execution import KERNEL_LOG, execute, execute_quietly, interruptible  # noqa: F401  (runner's API)
from .recording import read_notebook, read_params

STATUS_FILE = "status.json"
BOOK_DIR = "site"  # where `mednb run --book` puts the static site, inside the output folder
RESULT_FILES = ("metrics.jsonl", "results.csv", "report.md", "claims.md", "env.json", STATUS_FILE, KERNEL_LOG)
_ANY = object()  # knob whose type is unknown (papermill inspection of a `None` default)
# types of the shared knob vocabulary (used when a notebook has no PROFILES table)
SHARED_TYPES = {"DATASET": str, "SIZE": int, "MODEL": str, "EPOCHS": int, "BATCH_SIZE": int, "LR": float,
                "SEEDS": list, "LABEL_FRACTIONS": list, "DEVICE": str}


# ----------------------------------------------------------------------------- selection
def default_notebooks_dir() -> Path:
    """``notebooks/`` of the clone mednb runs from."""
    from .data import repo_root
    root = repo_root()
    if root is None or not (root / "notebooks").is_dir():
        raise ParamError("no notebooks folder found (mednb is not running from a clone); pass --notebooks-dir")
    return root / "notebooks"


def discover(notebooks_dir: str | Path) -> list[Path]:
    """Every ``*.ipynb`` in the folder, sorted by name (``00_…``, ``01_…``, …)."""
    d = Path(notebooks_dir)
    if not d.is_dir():
        raise ParamError(f"notebooks folder {d} does not exist")
    return sorted(p for p in d.glob("*.ipynb") if not p.name.startswith("."))


def select(names, notebooks_dir: str | Path) -> list[Path]:
    """Notebooks named by file stem, unique prefix (``02``) or path; all of them when ``names`` is empty."""
    found = discover(notebooks_dir)
    if not names:
        if not found:
            raise ParamError(f"no notebooks in {notebooks_dir}")
        return found
    stems = {p.stem: p for p in found}
    picked: list[Path] = []
    for name in names:
        key = Path(name).stem if str(name).endswith(".ipynb") else str(name)
        if str(name).endswith(".ipynb") and Path(name).is_file() and key not in stems:
            path = Path(name).resolve()
        elif key in stems:
            path = stems[key]
        else:
            hits = [p for s, p in stems.items() if s.startswith(key)]
            if len(hits) != 1:
                why = "ambiguous" if hits else "unknown"
                raise ParamError(f"{why} notebook {name!r}; valid: {', '.join(stems) or '(none)'}")
            path = hits[0]
        if path not in picked:
            picked.append(path)
    order = {p: i for i, p in enumerate(found)}
    return sorted(picked, key=lambda p: order.get(p, len(order)))


# ----------------------------------------------------------------------------- parameters
def parse_value(text: str):
    """A command-line value: a Python literal (``3``, ``1e-3``, ``[0, 1]``, ``'x'``), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def notebook_knobs(path: Path) -> dict[str, object]:
    """Knob name → expected type for one notebook (``_ANY`` when unknown), ``PROFILE`` excluded.

    Registered notebooks (:data:`mednb.params.NOTEBOOK_MODULES`) use their PROFILES table;
    others fall back to the assignments of their ``parameters`` cell.
    """
    stem = Path(path).stem
    if stem in NOTEBOOK_MODULES:
        try:
            return dict(knob_types(notebook_profiles(stem)))
        except Exception:  # noqa: BLE001 - topic module missing or broken: read the parameters cell instead
            pass
    return parameters_cell_knobs(path)


def parameters_cell_knobs(path: Path) -> dict[str, object]:
    """Knob → type from the assignments of a notebook's ``parameters``-tagged cell (``_ANY`` for None).

    Parsed with :mod:`ast` (papermill's own inspection trips over comments containing ``=``).
    """
    import nbformat
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as e:  # noqa: BLE001 - malformed notebook
        raise ParamError(f"cannot read {path}: {e}") from None
    cell = next((c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as e:
        raise ParamError(f"the parameters cell of {path} is not valid Python: {e}") from None
    out: dict[str, object] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) else None)
        if not isinstance(target, ast.Name) or target.id == "PROFILE":
            continue
        try:
            default = ast.literal_eval(node.value) if node.value is not None else None
        except ValueError:
            default = None
        out[target.id] = type(default) if default is not None else _ANY
    return out


def _coerce(name: str, value, expected):
    if expected is _ANY:  # untyped knob: the shared vocabulary still has known types
        expected = SHARED_TYPES.get(name, type(value))
    if expected is list and not isinstance(value, (list, tuple)):
        value = [parse_value(v.strip()) for v in value.split(",")] if isinstance(value, str) else [value]
    return check_value(name, value, expected)


def validate(paths: list[Path], overrides) -> dict[str, dict]:
    """Check ``[(NAME, VALUE_TEXT), ...]`` against every selected notebook.

    Returns ``{stem: {NAME: value}}`` — an override goes to every selected notebook that has
    the knob. Raises :class:`ParamError` (one line) for an unknown name or a bad value.
    """
    knobs = {p.stem: notebook_knobs(p) for p in paths}
    out: dict[str, dict] = {p.stem: {} for p in paths}
    for name, text in overrides or []:
        if name == "PROFILE":
            raise ParamError("PROFILE is set with --profile, not -p")
        value = parse_value(text) if isinstance(text, str) else text
        having = [s for s, k in knobs.items() if name in k]
        if not having:
            valid = sorted({k for ks in knobs.values() for k in ks})
            raise ParamError(f"unknown parameter {name!r} for {', '.join(knobs)}; valid: {', '.join(valid) or '(none)'}")
        for stem in having:
            try:
                out[stem][name] = _coerce(name, value, knobs[stem][name])
            except ParamError as e:
                raise ParamError(f"{e} (in {stem})") from None
    return out


# ----------------------------------------------------------------------------- atomic files
def atomic_write(path: str | Path, text: str) -> Path:
    """Write text to ``path`` through a temp file in the same folder + ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _load_status(out: Path) -> dict:
    f = out / STATUS_FILE
    if not f.exists():
        return {}
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# ----------------------------------------------------------------------------- outputs
def _fmt_s(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _key_metrics(records: list[dict], limit: int = 8) -> str:
    """Compact summary: one entry per metric and tag combination (seeds pooled: mean ± sd (n))."""
    from .metrics import fmt
    groups: dict[str, list] = {}
    for r in records:
        if not isinstance(r.get("value"), (int, float)) or isinstance(r.get("value"), bool):
            continue
        tags = ",".join(f"{k}={v}" for k, v in r.items() if k not in ("metric", "value", "seed", "notebook"))
        groups.setdefault(r["metric"] + (f"[{tags}]" if tags else ""), []).append(r["value"])
    parts = [f"{k} {fmt(v)}" if len(v) > 1 else f"{k} {v[0]:.4g}" for k, v in list(groups.items())[:limit]]
    if len(groups) > limit:
        parts.append(f"… {len(groups) - limit} more in results.csv")
    return "<br>".join(parts) or "—"


def collect(out: Path, status: dict) -> list[dict]:
    """Metrics of every completed notebook in ``status``, each tagged with its notebook."""
    rows = []
    for stem, st in status["notebooks"].items():
        nb = out / f"{stem}.ipynb"
        if nb.exists():
            for r in read_notebook(nb):
                rows.append({"notebook": stem, **r})
    return rows


def collect_claims(out: Path, status: dict) -> list[dict]:
    """Claims of every notebook in ``status`` that left an executed notebook, each tagged with its notebook."""
    from . import claims
    return [{"notebook": stem, **c} for stem in status["notebooks"] if (out / f"{stem}.ipynb").exists()
            for c in claims.read_notebook(out / f"{stem}.ipynb")]


def write_results(out: Path, status: dict, env: dict) -> None:
    """(Re)write metrics.jsonl, results.csv, report.md, claims.md and env.json from ``status``."""
    from . import claims
    rows = collect(out, status)
    problems = claims.budget_problems(rows)
    atomic_write(out / "claims.md", claims.markdown(
        collect_claims(out, status), f"Claims — mednb run, profile `{status['profile']}`", problems))
    atomic_write(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    tags: list[str] = []
    for r in rows:
        for k in r:
            if k not in ("notebook", "metric", "value") and k not in tags:
                tags.append(k)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["notebook", "metric", "value", *tags])
    for r in rows:
        w.writerow([r["notebook"], r["metric"], r["value"],
                    *[json.dumps(r[t]) if isinstance(r.get(t), (list, dict)) else r.get(t, "") for t in tags]])
    atomic_write(out / "results.csv", buf.getvalue())

    nbs = status["notebooks"]
    env_out = dict(env)
    env_out["profile"] = status["profile"]
    env_out["notebooks"] = {}
    seeds: set = set()
    for stem, st in nbs.items():
        p = read_params(out / f"{stem}.ipynb") if (out / f"{stem}.ipynb").exists() else None
        s = (p or {}).get("SEEDS")
        if isinstance(s, list):
            seeds.update(x for x in s if isinstance(x, int))
        env_out["notebooks"][stem] = {"status": st["status"], "seconds": st.get("seconds"),
                                      "overrides": st.get("overrides", {}), "parameters": p,
                                      "seeds": s}
    env_out["seeds"] = sorted(seeds)
    atomic_write(out / "env.json", json.dumps(env_out, indent=2, default=str) + "\n")

    n_ok = sum(st["status"] == "ok" for st in nbs.values())
    lines = [f"# mednb run — profile `{status['profile']}`", "",
             f"{n_ok}/{len(nbs)} notebooks ok · {env.get('created', '')} · commit `{env.get('commit')}` · "
             f"device {env.get('device')} ({env.get('device_name')}) · torch {env.get('versions', {}).get('torch')}",
             "", "| notebook | status | wall time | key metrics |", "|---|---|---|---|"]
    for stem, st in nbs.items():
        recs = [r for r in rows if r["notebook"] == stem]
        lines.append(f"| {stem} | {st['status']} | {_fmt_s(st.get('seconds') or 0)} | {_key_metrics(recs)} |")
    if problems:
        lines += ["", "## Unequal training budgets", "", *[f"- {p}" for p in problems]]
    failed = [(s, st) for s, st in nbs.items() if st["status"] != "ok"]
    if failed:
        lines += ["", "## Failures"]
        for stem, st in failed:
            lines += ["", f"### {stem}", "", f"`{st.get('error', '')}`", "", "```",
                      st.get("traceback", "").rstrip(), "```"]
    lines += ["", f"Files: executed notebooks `<stem>.ipynb`, `claims.md`, `metrics.jsonl`, `results.csv`, "
                  f"`env.json`.", ""]
    atomic_write(out / "report.md", "\n".join(lines))


def run(names=(), *, profile: str, out: str | Path, resume: bool = False, overrides=(),
        notebooks_dir: str | Path | None = None, cell_timeout: int | None = None,
        kernel_name: str | None = None, book: bool = False, log=print) -> int:
    """Execute notebooks and write the results folder (see module docstring). Returns the exit status:
    0 when every notebook ran, 1 when any failed (or the book could not be built), 130 when interrupted.
    ``book``: at the end, build the static site of the folder into ``<out>/site`` (:func:`mednb.book.build`).
    Raises :class:`ParamError` on bad input, before anything is written."""
    profile = resolve_profile(profile)
    paths = select(list(names), notebooks_dir or default_notebooks_dir())
    per_nb = validate(paths, overrides)
    for stem in (s for s in per_nb if s in NOTEBOOK_MODULES):  # knobs valid only for a dataset or registry
        validate_knobs(stem, per_nb[stem], profile)
    from .runtime import env_info

    out = Path(out).expanduser().resolve()
    status = _load_status(out)
    if status and status.get("profile") != profile:
        log(f"{out} held a {status.get('profile')!r} run; starting a fresh {profile!r} run there")
        status = {}
    status.setdefault("profile", profile)
    status.setdefault("notebooks", {})
    env = env_info("auto")
    env["created"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    env["command"] = ["mednb", *sys.argv[1:]] if Path(sys.argv[0]).name == "mednb" else sys.argv
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob(".*.running.ipynb"), *out.glob(".*.tmp")]:  # left by a run that was killed
        stale.unlink(missing_ok=True)

    for i, path in enumerate(paths, 1):
        stem = path.stem
        prev = status["notebooks"].get(stem)
        if (resume and prev and prev.get("status") == "ok" and prev.get("overrides", {}) == per_nb[stem]
                and (out / f"{stem}.ipynb").exists()):
            log(f"[{i}/{len(paths)}] {stem}: already completed in {out.name}/, skipped (--resume)")
            continue
        log(f"[{i}/{len(paths)}] {stem}: running (profile {profile}"
            + (f", {per_nb[stem]}" if per_nb[stem] else "") + ") …")
        try:
            st = execute_quietly(path, out, {"PROFILE": profile, **per_nb[stem]}, cell_timeout, kernel_name)
        except KeyboardInterrupt as e:
            status["notebooks"][stem] = {"status": "interrupted", "error": str(e) or "KeyboardInterrupt",
                                         "overrides": per_nb[stem]}
            atomic_write(out / STATUS_FILE, json.dumps(status, indent=2) + "\n")
            write_results(out, status, env)
            log(f"[{i}/{len(paths)}] {stem}: interrupted ({e or 'Ctrl-C'}); kernel stopped, nothing half-written. "
                f"Continue with the same command and --resume")
            return 130
        st["overrides"] = per_nb[stem]
        status["notebooks"][stem] = st
        status["notebooks"] = dict(sorted(status["notebooks"].items()))
        atomic_write(out / STATUS_FILE, json.dumps(status, indent=2) + "\n")
        write_results(out, status, env)
        n = len(read_notebook(out / f"{stem}.ipynb")) if (out / f"{stem}.ipynb").exists() else 0
        msg = f"ok in {_fmt_s(st['seconds'])}, {n} metrics" if st["status"] == "ok" else f"FAILED: {st['error']}"
        log(f"[{i}/{len(paths)}] {stem}: {msg}")
    write_results(out, status, env)
    failed = [s for s in (p.stem for p in paths) if status["notebooks"].get(s, {}).get("status") != "ok"]
    log(f"results: {out}/report.md, claims.md, results.csv, metrics.jsonl, env.json"
        + (f" — {len(failed)} failed: {', '.join(failed)}" if failed else " — all ok"))
    if book:
        from .book import build as build_book
        try:
            build_book(out, out / BOOK_DIR, log=log)
        except Exception as e:  # noqa: BLE001 - the results stand; say why the book is missing
            log(f"book: not built: {e}")
            return 1
    return 1 if failed else 0
