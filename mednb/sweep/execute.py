"""Run one unit: one papermill execution of one notebook into ``DIR/units/<slug>-<hash>/``.

The local, Ray and Slurm executors all call :func:`run_unit`. It runs the notebook with
:func:`mednb.runner.execute` into a hidden work folder ``DIR/units/.<name>.run/`` and writes there the
ordinary ``mednb run`` output (executed notebook, ``metrics.jsonl``, ``results.csv``, ``report.md``,
``env.json``), the kernel's own log (``kernel.log``), ``unit.json`` and — last, atomically —
``status.json``; then the folder is renamed to ``DIR/units/<name>/``. So a unit folder is either
complete or absent, and ``status.json`` is its completion marker.

- A unit whose ``status.json`` says ``ok`` is returned as it is (never run twice).
- The unit computes with ``threads`` CPU threads (the spec's, the same on every executor) and its GPUs
  only (:func:`mednb.sweep.kernel.environment`); ``status.json`` and ``env.json`` record these
  ``settings`` (:func:`mednb.sweep.kernel.settings`).
- A kernel that dies (killed, out of memory) is started again, up to ``max_attempts`` runs of the unit
  in all; the count lives in the work folder, so a worker process that dies and is run again by Ray or
  resubmitted to Slurm continues it.
- SIGTERM or SIGINT (Ctrl-C, ``scancel``, Slurm's time limit, a cancelled Ray task) stops the kernel,
  writes status ``interrupted`` (rerun when the sweep is started again) and re-raises.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import signal
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from ..execution import KERNEL_LOG, manager_class
from ..runner import atomic_write, execute, interruptible, write_results
from . import evidence, kernel
from .units import Unit

STATUS, UNIT, WORKER = "status.json", "unit.json", "worker.json"
_ATTEMPTS = ".attempts"


class Interrupted(KeyboardInterrupt):
    """A unit received SIGTERM: handled like Ctrl-C (the kernel is shut down, the unit marked)."""


def units_dir(out: str | Path) -> Path:
    return Path(out) / "units"


def work_dir(out: str | Path, unit: Unit) -> Path:
    return units_dir(out) / f".{unit.name}.run"


def read_status(folder: str | Path) -> dict | None:
    """A unit folder's ``status.json`` (None when absent or unreadable)."""
    try:
        return json.loads((Path(folder) / STATUS).read_text())
    except (OSError, ValueError):
        return None


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask: what Slurm or taskset granted)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def attempts_so_far(out: str | Path, unit: Unit) -> int:
    """Runs of the unit started since its last completed record (0 when none is under way)."""
    try:
        return int((work_dir(out, unit) / _ATTEMPTS).read_text())
    except (OSError, ValueError):
        return 0


def _begin(out: Path, unit: Unit) -> int:
    """Start one more attempt in a clean work folder; return its number."""
    work = work_dir(out, unit)
    n = attempts_so_far(out, unit) + 1
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    atomic_write(work / _ATTEMPTS, str(n))
    _worker_note(work, attempt=n)
    return n


def _worker_note(work: Path, **extra) -> None:
    """``worker.json`` in the work folder: which process (and kernel) runs the unit now."""
    note = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        note.update(json.loads((work / WORKER).read_text()))
    except (OSError, ValueError):
        pass
    note.update(extra, host=socket.gethostname(), pid=os.getpid())
    atomic_write(work / WORKER, json.dumps(note) + "\n")


def finalize(out: str | Path, unit: Unit, status: dict) -> dict:
    """Write ``unit.json`` and, last, ``status.json`` into the work folder and rename it into place."""
    out = Path(out)
    work, final = work_dir(out, unit), units_dir(out) / unit.name
    work.mkdir(parents=True, exist_ok=True)
    for p in [work / _ATTEMPTS, work / WORKER, *work.glob(".*.running.ipynb"), *work.glob(".*.tmp")]:
        p.unlink(missing_ok=True)
    atomic_write(work / UNIT, json.dumps(unit.record(), indent=2) + "\n")
    atomic_write(work / STATUS, json.dumps(status, indent=2) + "\n")
    if final.exists():  # a failed or interrupted record being replaced
        old = final.with_name(f".{unit.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(work, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, final)
    return status


def lost(out: str | Path, unit: Unit, error: str) -> dict:
    """Record a unit whose worker process died ``max_attempts`` times (written by the sweep's driver)."""
    n = attempts_so_far(out, unit)
    return finalize(out, unit, {"status": "failed", "seconds": None, "attempts": n,
                                "error": f"the unit's process died ({n} attempt{'s' * (n != 1)}): {error}",
                                "traceback": None, "started": None, "finished": now(), "device": None,
                                "cpus": None, "gpus": None, "settings": None, **evidence.unit_evidence()})


@contextmanager
def _quiet_papermill():
    """papermill/nbclient log kernel deaths and cell errors; a unit keeps them in its status instead."""
    log = logging.getLogger("papermill")
    null, propagate = logging.NullHandler(), log.propagate
    log.addHandler(null)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(null)
        log.propagate = propagate


def _kernel_died(st: dict) -> bool:
    err = str(st.get("error") or "")
    return st.get("status") != "ok" and (err.startswith("DeadKernelError") or "kernel died" in err.lower())


def run_unit(unit: Unit, out: str | Path, *, threads: int | None = None, gpus: int | None = None,
             env: dict | None = None, max_attempts: int = 2, cell_timeout: int | None = None) -> dict:
    """Execute one unit into ``out/units/<name>/`` (see the module docstring); return its status dict.
    ``threads``: the spec's (default: every CPU this process may use, for a unit run on its own)."""
    out = Path(out)
    done = read_status(units_dir(out) / unit.name)
    if done and done.get("status") == "ok":
        return done
    threads = int(threads or available_cpus())
    kenv = kernel.environment(threads, gpus, env)
    if attempts_so_far(out, unit) >= max_attempts:
        return lost(out, unit, f"no attempt left of {max_attempts}")
    attempt = _begin(out, unit)
    work = work_dir(out, unit)
    params = {"PROFILE": unit.profile, **unit.params}
    started, t0 = now(), time.perf_counter()
    with interruptible((signal.SIGTERM,), Interrupted), _quiet_papermill():
        try:
            while True:
                km = manager_class(kenv, work / KERNEL_LOG, lambda pid: _worker_note(work, kernel_pid=pid))
                st = execute(Path(unit.path), work, params, cell_timeout=cell_timeout, kernel_manager_class=km)
                if not (_kernel_died(st) and attempt < max_attempts):
                    break
                attempt = _begin(out, unit)
        except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C, SIGTERM (handler above), submitit's requeue
            _interrupted(out, unit, e, started, t0, threads, kenv)
            raise
    return _complete(out, unit, st, attempt, started, threads, kenv)


def _base_status(attempt: int, started: str, threads: int, kenv: dict) -> dict:
    return {"attempts": attempt, "started": started, "finished": now(), "cpus": threads,
            "gpus": kenv.get("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES")),
            "settings": kernel.settings(threads), **evidence.unit_evidence()}


def _interrupted(out: Path, unit: Unit, exc: BaseException, started: str, t0: float, threads: int,
                 kenv: dict) -> None:
    status = {"status": "interrupted", "seconds": round(time.perf_counter() - t0, 2),
              "error": f"{type(exc).__name__}: {exc}".rstrip(": "), "traceback": None, "device": None,
              **_base_status(attempts_so_far(out, unit), started, threads, kenv)}
    finalize(out, unit, status)


def _complete(out: Path, unit: Unit, st: dict, attempt: int, started: str, threads: int, kenv: dict) -> dict:
    from ..recording import read_params
    work = work_dir(out, unit)
    executed = work / f"{unit.notebook}.ipynb"
    kparams = read_params(executed) if executed.exists() else None
    env = evidence.unit_env(kparams, threads)
    env.update(created=started, unit=unit.name)
    write_results(work, {"profile": unit.profile, "notebooks": {unit.notebook: {**st, "overrides": unit.params}}},
                  env)
    status = {"status": st["status"], "seconds": st.get("seconds"), "error": st.get("error") or None,
              "traceback": st.get("traceback") or None, "device": evidence.device_class(kparams),
              **_base_status(attempt, started, threads, kenv)}
    return finalize(out, unit, status)
