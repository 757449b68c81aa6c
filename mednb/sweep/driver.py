"""``mednb sweep``: validate a spec, run its units through an executor, resume, report.

Layout of a sweep folder ``DIR``::

    DIR/sweep.json                the resolved spec, created/updated times, the unit names, the
                                  environment (full package list, Python, torch, CUDA, driver, GPUs,
                                  commit, host) and one entry per invocation
    DIR/units/<slug>-<hash>/      one unit: the ordinary `mednb run` output of one notebook execution
                                  + kernel.log, unit.json and status.json (written last)
    DIR/results.csv, leaderboard.md, leaderboard.html   written by mednb.sweep.report at the end
    DIR/slurm/                    submitit's job logs (slurm executor only)

Every unit computes with the spec's ``threads`` on every executor (:mod:`mednb.sweep.kernel`), so its
numbers depend on its spec, seed and code, not on where it ran; ``--cpus-per-unit`` only sets the CPUs an
executor reserves for a unit (default: ``threads``), i.e. how many units run at once.

Starting the same sweep again skips every unit whose status is ``ok``, reruns ``interrupted`` units
and units without a folder, and reruns ``failed`` ones only with ``retry_failed``. A folder holds one
spec: another spec there is an error, as is a second sweep running in it at the same time.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..params import ParamError
from ..runner import atomic_write
from . import evidence, executors
from . import spec as spec_mod
from .execute import lost, read_status, units_dir
from .progress import Progress
from .units import expand, present

SWEEP_FILE = "sweep.json"
PASS_ENV = "MEDNB_"                       # variables every unit's kernel gets from the driver
OWN_ENV = ("MEDNB_THREADS", "MEDNB_METRICS")  # set per unit (threads) or never passed (metrics file)


@dataclass
class Options:
    executor: str = "local"
    address: str | None = None            # ray: cluster address (default: a local instance)
    cpus_per_unit: int | None = None      # CPUs reserved per unit (ray, slurm); default: the spec's threads
    gpus_per_unit: int | None = None
    max_attempts: int = 2
    retry_failed: bool = False
    only_present: bool | None = None      # None: the spec's setting
    cell_timeout: int | None = None
    partition: str | None = None          # slurm (submitit) settings
    time_min: int = 240
    array_parallelism: int | None = None
    slurm_folder: str | None = None
    slurm_cluster: str = "slurm"
    mem_gb: int | None = None
    account: str | None = None
    qos: str | None = None
    slurm_setup: list = field(default_factory=list)
    name: str = "sweep"                   # set from the spec
    threads: int = spec_mod.DEFAULT_THREADS  # set from the spec: CPU threads of every unit


def check_options(opts: Options) -> None:
    for flag, value, low in (("--cpus-per-unit", opts.cpus_per_unit, 1), ("--gpus-per-unit", opts.gpus_per_unit, 0),
                             ("--max-attempts", opts.max_attempts, 1), ("--time-min", opts.time_min, 1),
                             ("--array-parallelism", opts.array_parallelism, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ParamError(f"{flag} must be an int >= {low}, got {value!r}")
    if opts.address and opts.executor != "ray":
        raise ParamError("--address is only used with --executor ray")
    if opts.slurm_cluster not in ("slurm", "local", "debug"):
        raise ParamError(f"unknown --slurm-cluster {opts.slurm_cluster!r}; valid: slurm, local, debug")


def plan(spec_ref, opts: Options, notebooks_dir=None, log=print):
    """The validated spec and its units (filtered by what is present when asked). Writes nothing."""
    check_options(opts)
    spec = spec_mod.load(spec_ref, notebooks_dir)
    if opts.cpus_per_unit is not None and opts.cpus_per_unit < spec.threads:
        raise ParamError(f"--cpus-per-unit {opts.cpus_per_unit} is less than the threads = {spec.threads} of sweep "
                         f"spec {spec.name}; give at least {spec.threads} (a unit computes with the spec's threads)")
    units = expand(spec)
    if spec.only_present if opts.only_present is None else opts.only_present:
        from ..data import data_root
        kept, missing = present(spec, units)
        if not kept:
            raise ParamError(f"sweep spec {spec.name}: no unit left: none of its datasets is in the data root "
                             f"{data_root()} (missing: {', '.join(missing)}); fetch with `mednb data fetch NAME`")
        if missing:
            log(f"{len(units) - len(kept)} of {len(units)} units left out: not in the data root {data_root()}: "
                f"{', '.join(missing)}")
        units = kept
    executors.get(opts.executor)
    return spec, units


def unit_environment() -> dict:
    """The ``MEDNB_*`` variables of this process that every unit's kernel gets (folders made absolute:
    a kernel runs in the notebooks folder, a worker on another node)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(PASS_ENV) and k not in OWN_ENV}
    for k in ("MEDNB_DATA", "MEDNB_CACHE"):
        if env.get(k):
            env[k] = str(Path(env[k]).expanduser().resolve())
    return env


def _comparable(resolved: dict) -> str:
    """The spec fields that must match to resume a folder (a spec stored before ``threads`` existed has 1)."""
    resolved = {"threads": spec_mod.DEFAULT_THREADS, **resolved}
    return json.dumps({k: v for k, v in resolved.items() if k not in ("source", "description")}, sort_keys=True)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _read_meta(out: Path) -> dict | None:
    try:
        return json.loads((out / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        return None


def _check_same_spec(out: Path, spec) -> None:
    meta = _read_meta(out)
    if meta and _comparable(meta.get("spec") or {}) != _comparable(spec.resolved()):
        old = meta.get("spec") or {}
        old = {"threads": spec_mod.DEFAULT_THREADS, **old}
        changed = [k for k, v in spec.resolved().items() if k not in ("source", "description") and old.get(k) != v]
        raise ParamError(f"{out} holds sweep {old.get('name')!r} with another spec (differs in: "
                         f"{', '.join(changed) or 'its fields'}); use another --out")


@contextmanager
def _lock(out: Path):
    """Only one sweep process per folder (an advisory lock on ``DIR/.lock``, where the file system has locks)."""
    import fcntl
    f = open(out / ".lock", "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ParamError(f"another mednb sweep is running in {out}") from None
        except OSError:
            pass
        yield
    finally:
        f.close()


def _write_meta(out: Path, spec, units, opts: Options) -> dict:
    meta = _read_meta(out) or {}
    ev = evidence.sweep_evidence()
    first = meta.get("evidence") or ev
    names = sorted({*(meta.get("units") or []), *(u.name for u in units)})
    meta.update(name=spec.name, spec=spec.resolved(), units=names, created=meta.get("created") or _now(),
                updated=_now(), evidence=first)
    meta.setdefault("runs", []).append({"started": _now(), "executor": opts.executor, "host": ev["host"],
                                        "commit": ev["commit"], "packages_hash": ev["packages_hash"],
                                        "command": ["mednb", *sys.argv[1:]]})
    atomic_write(out / SWEEP_FILE, json.dumps(meta, indent=2) + "\n")
    return {"first": first, "now": ev}


def run(spec_ref, out, opts: Options | None = None, *, notebooks_dir=None, log=print, progress: bool = True) -> int:
    """Run a sweep (see the module docstring). Returns 0 when every unit is ok, 1 otherwise; raises
    :class:`ParamError` (nothing written) on a bad spec or option."""
    opts = opts or Options()
    spec, units = plan(spec_ref, opts, notebooks_dir, log)
    opts.name, opts.threads = spec.name, spec.threads
    out = Path(out).expanduser().resolve()
    _check_same_spec(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        ev = _write_meta(out, spec, units, opts)
        if ev["first"]["packages_hash"] != ev["now"]["packages_hash"] or ev["first"]["commit"] != ev["now"]["commit"]:
            log(f"note: this environment differs from the sweep's first run (commit {ev['first']['commit']} → "
                f"{ev['now']['commit']}, packages {ev['first']['packages_hash']} → {ev['now']['packages_hash']})")
        for stale in [*units_dir(out).glob(".*.run"), *units_dir(out).glob(".*.old-*")]:
            shutil.rmtree(stale, ignore_errors=True)  # left by a sweep that was killed
        results = _run_units(spec, units, out, opts, log, progress)
    return _finish(spec, units, results, out, log)


def _run_units(spec, units, out: Path, opts: Options, log, progress: bool) -> dict:
    before = {u.name: read_status(units_dir(out) / u.name) or {} for u in units}
    kept = {n: st for n, st in before.items() if st.get("status") == "ok" or
            (st.get("status") == "failed" and not opts.retry_failed)}
    todo = [u for u in units if u.name not in kept]
    n_failed = sum(st.get("status") != "ok" for st in kept.values())
    log(f"sweep {spec.name}: {len(units)} units — {len(kept) - n_failed} done, "
        + (f"{n_failed} failed before (rerun them with --retry-failed), " if n_failed else "")
        + f"{len(todo)} to run · executor {opts.executor}, {opts.threads} thread{'s' * (opts.threads != 1)} "
        f"per unit → {out}")
    results = dict(kept)
    env = unit_environment()
    bar = Progress(units_dir(out), [u.name for u in todo], total=len(units), done=len(kept), failed=n_failed,
                   desc=f"sweep {spec.name}", enabled=progress and bool(todo))

    def on_done(unit, status):
        results[unit.name] = status
        bar.finished(unit.name, status.get("status"))
        if status.get("status") != "ok":
            bar.write(f"  {unit.name}: {status.get('status')} — {status.get('error')}")

    if todo:
        try:
            with bar:
                executors.get(opts.executor).run(todo, out, opts, env, on_done)
        except KeyboardInterrupt:
            log(f"sweep {spec.name}: interrupted; completed units are kept — run the same command to resume")
            raise
    for u in todo:  # an engine that returned without a status for a unit
        if u.name not in results:
            results[u.name] = lost(out, u, "the executor returned no result")
    return results


def _finish(spec, units, results: dict, out: Path, log) -> int:
    meta = _read_meta(out) or {}
    meta["updated"] = _now()
    atomic_write(out / SWEEP_FILE, json.dumps(meta, indent=2) + "\n")
    bad = [u.name for u in units if results.get(u.name, {}).get("status") != "ok"]
    rc = 1 if bad else 0
    try:
        from .report import write_report
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.report":
            raise
        log(f"no leaderboard: mednb.sweep.report is not installed; the unit results are in {out}/units/")
    else:
        try:
            log(f"leaderboard: {write_report(out)}")
        except Exception as e:  # noqa: BLE001 - the units are done; say why the table is missing
            log(f"leaderboard FAILED ({type(e).__name__}: {e}); rerun it with `mednb report {out}`")
            rc = 1
    log(f"sweep {spec.name}: {len(units) - len(bad)}/{len(units)} units ok"
        + (f"; not ok: {', '.join(bad)}" if bad else ""))
    return rc
