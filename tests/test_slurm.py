"""mednb sweep through submitit on a real single-node Slurm cluster (munged, slurmctld, slurmd started here,
see tests/slurm_cluster.py; no accounting): an array gives the local executor's numbers, a unit that reaches
its time limit is stopped, recorded as interrupted and requeued, a cancelled unit is reported; each is
completed by starting the sweep again, which redoes nothing else.

Outside CI (``CI`` != ``true``) the file skips when slurm-wlm or munge is missing; under CI it fails instead.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import slurm_cluster
from conftest import write_notebook
from test_sweep import TINY, _metrics, _wait_for  # notebook-01 trainings: 96 phantom images, 2 epochs, one per unit
from mednb.sweep import driver
from mednb.sweep.execute import read_status

CI = os.environ.get("CI") == "true"
MISSING = slurm_cluster.missing()
if MISSING and not CI:
    pytest.skip(MISSING, allow_module_level=True)

# a unit that waits until the file GO exists (at most WAIT s) and one that does not wait
WAITING = '''notebook = "{nb}"
profile = "smoke"
[fixed]
GO = "{go}"
[[grid]]
TAG = ["{held}"]
WAIT = [600]
[[grid]]
TAG = ["{free}"]
WAIT = [0]
'''
LIMIT_MIN = 3        # Slurm signals USR2 90 s before the limit, at its next 30 s check: 60-90 s into the job
WAIT_S = 240


def _units(out: Path) -> dict:
    return {d.name: d for d in sorted((out / "units").iterdir()) if not d.name.startswith(".")}


def _named(out: Path, prefix: str) -> str:
    return next(n for n in _units(out) if n.startswith(prefix))


def _stamps(out: Path) -> dict:
    return {n: (d / "status.json").stat().st_mtime_ns for n, d in _units(out).items()}


def _running(out: Path, prefix: str) -> dict | None:
    """worker.json of a running unit once its kernel exists, with the Slurm job id of its worker."""
    for f in (out / "units").glob(f".{prefix}*.run/worker.json"):
        try:
            note = json.loads(f.read_text())
            env = dict(kv.split("=", 1) for kv in Path(f"/proc/{note['pid']}/environ").read_text().split("\0")
                       if "=" in kv)
        except (OSError, ValueError, KeyError):
            continue
        if note.get("kernel_pid"):
            array = env.get("SLURM_ARRAY_JOB_ID")
            return {**note, "job": f"{array}_{env['SLURM_ARRAY_TASK_ID']}" if array else env.get("SLURM_JOB_ID")}
    return None


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _sweep_cmd(spec: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mednb.cli", "sweep", str(spec), "--out", str(out), "--executor", "slurm",
            "--no-progress", *extra]


# ----------------------------------------------------------------------------- the cluster
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A single-node Slurm cluster (4 CPUs declared: the test units mostly wait) for this module; the Slurm
    tools and submitit find it through SLURM_CONF. At teardown no process it started may be left."""
    if MISSING:
        pytest.fail(f"CI=true but {MISSING}")
    base = tmp_path_factory.mktemp("slurm")
    c = slurm_cluster.Cluster(base / "cluster", cpus=max(4, os.cpu_count() or 1))
    c.start()
    (base / "data").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(c.conf))
        mp.setenv("MEDNB_DATA", str(base / "data"))
        mp.setenv("MEDNB_CACHE", str(base / "cache"))
        mp.delenv("MEDNB_CACHE_IN_DATA", raising=False)
        c.work = base  # the tests' folder: specs, notebook, data, sweeps
        try:
            yield c
        finally:
            left = c.stop()
    assert not left, f"processes left behind by the Slurm test cluster: {left}"
    assert all(p.poll() is not None for p in c.procs.values())


@pytest.fixture(autouse=True)
def _cache_outside_the_data_root(cluster, monkeypatch):
    """Units cache in the module's cache folder (overrides the suite-wide cache-in-data-root default)."""
    monkeypatch.setenv("MEDNB_CACHE", str(cluster.work / "cache"))
    monkeypatch.delenv("MEDNB_CACHE_IN_DATA", raising=False)


@pytest.fixture(scope="module")
def waiting_nb(cluster) -> Path:
    return write_notebook(cluster.work / "nb" / "wait.ipynb", {"TAG": "unit name", "WAIT": "at most s",
                                                               "GO": "file that ends the wait"},
                          ["import os, time\nt0 = time.time()\n"
                           "while not os.path.exists(GO) and time.time() - t0 < WAIT:\n    time.sleep(0.2)"])


def _waiting_spec(cluster, nb: Path, name: str) -> tuple[Path, Path]:
    go = cluster.work / f"go-{name}"
    spec = cluster.work / f"{name}.toml"
    spec.write_text(WAITING.format(nb=nb, go=go, held=f"{name}held", free=f"{name}free"))
    return spec, go


@pytest.fixture(scope="module", autouse=True)
def time_limit_sweep(cluster, waiting_nb):
    """Started first, in the background (its unit needs 60-90 s to reach the time limit): a sweep with
    --time-min 3 of a unit that waits 10 minutes and one that does not. A thread records what happens to
    the waiting unit: its first kernel and job, when it is recorded interrupted, when that kernel is gone
    and the job's states in squeue afterwards."""
    spec, go = _waiting_spec(cluster, waiting_nb, "limit")
    out = cluster.work / "limit"
    env = {**os.environ, "MEDNB_CACHE": str(cluster.work / "cache")}
    log = cluster.work / "limit.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(_sweep_cmd(spec, out, "--time-min", str(LIMIT_MIN)), env=env, stdout=f,
                                stderr=subprocess.STDOUT)
    seen = {"states": []}
    stop = threading.Event()

    def look():
        if "note" not in seen:
            note = _running(out, "wait-limitheld")
            if note:
                seen["note"] = note
        elif "interrupted" not in seen:
            st = next((read_status(d) for n, d in _units(out).items() if n.startswith("wait-limitheld")), None)
            if st and st["status"] == "interrupted":
                seen["interrupted"] = time.monotonic()
        if "note" in seen and "kernel_gone" not in seen and _gone(seen["note"]["kernel_pid"]):
            seen["kernel_gone"] = time.monotonic()
        if "interrupted" in seen and "PENDING" not in seen["states"] and len(seen["states"]) < 200:
            state = cluster.queue().get(seen["note"]["job"])
            if state:  # None: squeue did not answer
                seen["states"].append(state)

    def watch():
        while not stop.is_set() and proc.poll() is None:
            try:
                look()
            except (OSError, subprocess.SubprocessError):  # a unit folder renamed while read, squeue timed out
                pass
            stop.wait(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield {"proc": proc, "spec": spec, "go": go, "out": out, "seen": seen, "log": log}
    finally:
        stop.set()
        watcher.join(timeout=10)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


# ----------------------------------------------------------------------------- (a) same numbers as local
def test_array_gives_the_local_executors_numbers(cluster, capfd):
    (cluster.work / "tiny.toml").write_text(TINY)
    local_out, out = cluster.work / "tiny-local", cluster.work / "tiny-slurm"
    local = subprocess.Popen([sys.executable, "-m", "mednb.cli", "sweep", str(cluster.work / "tiny.toml"),
                              "--out", str(local_out), "--no-progress"], env={**os.environ}, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    try:
        rc = driver.run(cluster.work / "tiny.toml", out, driver.Options(executor="slurm", time_min=10),
                        log=lines.append, progress=False)
    finally:
        local_log, _ = local.communicate(timeout=WAIT_S)
    assert local.returncode == 0, local_log
    assert rc == 0, "\n".join(lines)
    names = ["01-phantom2d-cnn-s0-afdb6d96", "01-phantom2d-cnn-s1-77732304"]
    assert sorted(_units(out)) == sorted(_units(local_out)) == names
    for name in names:
        st, local_st = read_status(out / "units" / name), read_status(local_out / "units" / name)
        assert st["status"] == "ok" and st["cpus"] == 1 and st.get("settings") == local_st.get("settings")
        assert _metrics(out, name) == _metrics(local_out, name)  # bit-identical: same seed, same threads

    script = next((out / "slurm").rglob("*_submission.sh")).read_text()
    assert "#SBATCH --array=0-1" in script and "#SBATCH --cpus-per-task=1" in script
    job = next((out / "slurm").glob("*_0")).name.split("_")[0]  # submitit's folder of array task 0
    assert {k: v for k, v in cluster.queue().items() if k.split("_")[0] == job} == \
        {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}
    assert "sacct" not in capfd.readouterr().err  # ended jobs are found without accounting


# ----------------------------------------------------------------------------- (c) scancel
def test_cancelled_unit_is_reported_and_completed_by_the_next_start(cluster, waiting_nb, capsys):
    spec, go = _waiting_spec(cluster, waiting_nb, "cancel")
    out = cluster.work / "cancel"
    opts = driver.Options(executor="slurm", time_min=10)
    cancelled = {}

    def cancel_the_held_unit():
        try:
            note = _wait_for(lambda: _running(out, "wait-cancelheld"), what="the held unit's kernel")
        except AssertionError:
            go.touch()  # let the sweep end; the assertions below fail
            raise
        cluster.run(["scancel", note["job"]])
        cancelled.update(note)

    canceller = threading.Thread(target=cancel_the_held_unit, daemon=True)
    canceller.start()
    lines = []
    rc = driver.run(spec, out, opts, log=lines.append, progress=False)
    canceller.join(timeout=5)
    reported = capsys.readouterr().err
    held, free = _named(out, "wait-cancelheld"), _named(out, "wait-cancelfree")
    assert rc == 1 and f"1/2 units ok; not ok: {held}" in lines[-1], lines
    assert re.search(rf"{held}: interrupted — .*SIGTERM", reported), reported
    assert read_status(out / "units" / held)["status"] == "interrupted"
    assert read_status(out / "units" / free)["status"] == "ok"
    assert _wait_for(lambda: _gone(cancelled["kernel_pid"]), 30, "the cancelled unit's kernel to stop")
    assert cluster.queue()[cancelled["job"]] == "CANCELLED"

    stamps = _stamps(out)
    go.touch()
    lines.clear()
    assert driver.run(spec, out, opts, log=lines.append, progress=False) == 0, lines
    assert "1 done, 1 to run" in lines[0]
    again = _stamps(out)
    assert read_status(out / "units" / held)["status"] == "ok" and again[free] == stamps[free]
    lines.clear()
    assert driver.run(spec, out, opts, log=lines.append, progress=False) == 0
    assert "2 done, 0 to run" in lines[0] and _stamps(out) == again  # a further start redoes nothing


# ----------------------------------------------------------------------------- (b) time limit
def test_time_limit_interrupts_requeues_and_the_next_start_completes(cluster, time_limit_sweep):
    proc, out, seen = time_limit_sweep["proc"], time_limit_sweep["out"], time_limit_sweep["seen"]
    _wait_for(lambda: "interrupted" in seen, LIMIT_MIN * 60 + 60, "the held unit to be interrupted at its time limit")
    _wait_for(lambda: "PENDING" in seen["states"] or len(seen["states"]) >= 200, 120, "its job to be requeued")
    held, free = _named(out, "wait-limitheld"), _named(out, "wait-limitfree")
    assert read_status(out / "units" / free)["status"] == "ok"
    # its kernel was stopped with it, not left to Slurm's SIGKILL
    assert seen.get("kernel_gone", float("inf")) - seen["interrupted"] < 5
    job = seen["note"]["job"]
    log = "".join(p.read_text() for p in (out / "slurm" / job).glob("*_log.out"))
    assert f"Requeued job {job}" in log
    # requeued: the same job went back to the queue without ending (COMPLETING while its processes exit)
    assert seen["states"][-1] == "PENDING" and set(seen["states"]) <= {"RUNNING", "COMPLETING", "REQUEUED", "PENDING"}
    assert proc.poll() is None  # the sweep waits for the requeued job

    proc.send_signal(signal.SIGINT)  # stop the sweep; start it again with a sufficient time limit
    proc.wait(timeout=60)
    first_log = time_limit_sweep["log"].read_text()
    assert proc.returncode == 130 and "interrupted; completed units are kept" in first_log, first_log
    assert cluster.queue()[job] == "CANCELLED"
    assert read_status(out / "units" / held)["status"] == "interrupted"
    stamps = _stamps(out)
    time_limit_sweep["go"].touch()
    lines = []
    rc = driver.run(time_limit_sweep["spec"], out, driver.Options(executor="slurm", time_min=10),
                    log=lines.append, progress=False)
    assert rc == 0 and "1 done, 1 to run" in lines[0], lines
    assert read_status(out / "units" / held)["status"] == "ok" and _stamps(out)[free] == stamps[free]
