"""mednb sweep: spec validation, grid expansion and unit hashes, the local / Ray / Slurm (submitit)
executors giving the same numbers, and faults: a failing unit, a killed kernel or worker, SIGTERM, resume."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from mednb import cli
from mednb.params import ParamError
from mednb.sweep import driver, spec as spec_mod, units as units_mod
from mednb.sweep.execute import read_status
from mednb.sweep.spec import tomllib

# one notebook-01 training per unit, a few seconds of work: 96 phantom images, 2 epochs
TINY = '''notebook = "01_baseline_medmnist"
profile = "smoke"
[fixed]
DATASET_3D = "none"
COMPARE_MODELS = []
N_TRAIN = 96
EPOCHS = 2
[[grid]]
DATASET = ["phantom2d"]
MODEL = ["cnn"]
seed = [0, 1]
'''
BROKEN = '''[[grid]]   # a MedMNIST file that is present but corrupt: the unit fails when it loads it
DATASET = ["breastmnist"]
MODEL = ["cnn"]
seed = [0]
'''


def _units(out: Path) -> dict:
    return {d.name: d for d in sorted((out / "units").iterdir())}


def _metrics(out: Path, name: str) -> list:
    return [(r["metric"], r.get("class"), r["value"]) for r in
            map(json.loads, (out / "units" / name / "metrics.jsonl").read_text().splitlines())]


def _stamp(d: Path) -> int:
    return (d / "status.json").stat().st_mtime_ns


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """A data root with a corrupt breastmnist.npz and a cache folder, set as MEDNB_DATA / MEDNB_CACHE."""
    base = tmp_path_factory.mktemp("sweep")
    (base / "data").mkdir()
    (base / "data" / "breastmnist.npz").write_bytes(b"not a zip file")
    (base / "tiny.toml").write_text(TINY)
    (base / "broken.toml").write_text(TINY + BROKEN)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDNB_DATA", str(base / "data"))
        mp.setenv("MEDNB_CACHE", str(base / "cache"))
        yield base


@pytest.fixture(autouse=True)
def _cache_outside_the_data_root(roots, monkeypatch):
    """Every test here caches in the sweep's own cache folder, never in its (shared, read-only) data root:
    overrides the suite-wide default that puts caches in each test's data root."""
    monkeypatch.setenv("MEDNB_CACHE", str(roots / "cache"))
    monkeypatch.delenv("MEDNB_CACHE_IN_DATA", raising=False)


# ----------------------------------------------------------------------------- specs and units
@pytest.mark.parametrize("text,needle", [
    ('notebook = "07_missing"\nprofile = "smoke"\n[grid]\nSEEDS = [[0]]', "unknown notebook '07_missing'"),
    ('notebook = "01"\nprofile = "tiny"\n[grid]\nSEEDS = [[0]]', "unknown profile 'tiny'; valid profiles: smoke"),
    ('notebook = "01"\nprofile = "smoke"\n[fixed]\nNOPE = 1\n[grid]\nSEEDS = [[0]]', "unknown knob 'NOPE'"),
    ('notebook = "01"\nprofile = "smoke"\n[grid]\nEPOCHS = ["two"]', "EPOCHS must be an int"),
    ('notebook = "01"\nprofile = "smoke"\n[grid]\nDATASET = ["nosuchmnist"]', "unknown dataset 'nosuchmnist'"),
    ('notebook = "01"\nprofile = "smoke"\n[grid]\nMODEL = ["resnet19"]',
     "unit 01-resnet19: MODEL: unknown 2D classifier 'resnet19'; valid: cnn"),
    ('notebook = "01"\nprofile = "smoke"\n[grid]\nDATASET = []', "DATASET must be a non-empty list"),
    ('notebook = "01"\nprofile = "smoke"\n[grid]\nDATASET = ["adrenalmnist3d"]',
     "'adrenalmnist3d' is not a 2D dataset"),
    ('notebook = "00"\nprofile = "smoke"\n[grid]\nDATASET = ["none"]', "'none' is not a 2D dataset"),
    ('notebook = "01"\nprofile = "smoke"\n[grid]', "[grid] is empty"),
    ('notebook = "01"\nprofile = "smoke"\n[fixed]\nMODEL = "cnn"', "[grid] is required"),
    ('notebook = "01"\nprofile = "smoke"\nseeds = [0]\n[grid]\nSEEDS = [[0]]', "unknown key 'seeds'; valid keys"),
    ('notebook = "01"\nprofile = "smoke"\n[grid]\nSIZE = [224]', "224 px is not available for phantom2d"),
    ('notebook = "01"\nprofile = "smoke"\n[grid]\nseed = [0]\n[tolerance]\nabs = -1', "abs must be a number >= 0"),
    ('notebook = "01"\nprofile = "smoke"\nthreads = 0\n[grid]\nseed = [0]',
     "threads must be an int from 1 to 256 (the CPU threads each unit computes with; default 1), got 0"),
    ('notebook = "01"\nprofile = "smoke"\nthreads = "2"\n[grid]\nseed = [0]', "threads must be an int from 1 to 256"),
    ('notebook = "01"\nprofile = "smoke"\nthreads = true\n[grid]\nseed = [0]', "threads must be an int from 1 to 256"),
    ('notebook = "01"\nprofile = "smoke"\nthreads = 1.5\n[grid]\nseed = [0]', "threads must be an int from 1 to 256"),
])
def test_bad_spec_is_one_line_and_writes_nothing(tmp_path, capsys, text, needle):
    (tmp_path / "bad.toml").write_text(text)
    out = tmp_path / "never"
    rc = cli.main(["sweep", str(tmp_path / "bad.toml"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("args,needle", [
    (["nosuch"], "unknown sweep spec 'nosuch'; valid: medmnist_cpu, medmnist_v2, smoke"),
    (["smoke", "--executor", "dask"], "unknown executor 'dask'; valid: local, ray, slurm"),
    (["smoke", "--cpus-per-unit", "0"], "--cpus-per-unit must be an int >= 1"),
    (["smoke", "--address", "1.2.3.4:6379"], "--address is only used with --executor ray"),
])
def test_bad_command_is_one_line_and_writes_nothing(tmp_path, capsys, args, needle):
    rc = cli.main(["sweep", *args, "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "never").exists()


def test_threads_come_from_the_spec(tmp_path, capsys):
    """A spec's threads (default 1) reach every executor; --cpus-per-unit only reserves CPUs, never fewer."""
    assert spec_mod.load("smoke").threads == 1 and spec_mod.load("medmnist_v2").threads == 1
    two = spec_mod.from_dict({"notebook": "01", "profile": "smoke", "threads": 2, "grid": {"seed": [0]}}, name="two")
    assert two.threads == 2 and two.resolved()["threads"] == 2
    assert [u.hash for u in units_mod.expand(two)] == [u.hash for u in units_mod.expand(spec_mod.from_dict(
        {"notebook": "01", "profile": "smoke", "grid": {"seed": [0]}}, name="one"))]  # not part of a unit's hash
    (tmp_path / "two.toml").write_text('notebook = "01"\nprofile = "smoke"\nthreads = 2\n[grid]\nseed = [0]\n')
    rc = cli.main(["sweep", str(tmp_path / "two.toml"), "--out", str(tmp_path / "never"), "--cpus-per-unit", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "--cpus-per-unit 1 is less than the threads = 2 of sweep spec two" in err
    assert not (tmp_path / "never").exists()
    old = tmp_path / "old"  # a folder of a spec stored before `threads` existed resumes with threads = 1
    old.mkdir()
    stored = {k: v for k, v in spec_mod.load("smoke").resolved().items() if k != "threads"}
    (old / "sweep.json").write_text(json.dumps({"spec": stored}))
    driver._check_same_spec(old, spec_mod.load("smoke"))
    with pytest.raises(ParamError, match="differs in: threads"):
        driver._check_same_spec(old, spec_mod.from_dict({**tomllib.loads(spec_mod.find("smoke").read_text()),
                                                         "threads": 2}, name="smoke"))


def test_expansion_and_hashes_are_stable(tmp_path):
    smoke = spec_mod.load("smoke")
    got = units_mod.expand(smoke)
    # pinned: a unit's folder name must not change between versions, machines or spellings of the spec
    assert [u.name for u in got] == ["01-phantom2d-cnn-s0-ec39aac1", "01-phantom2d-cnn-s1-9c8847d9"]
    assert got[0].params == {"COMPARE_MODELS": [], "DATASET": "phantom2d", "DATASET_3D": "none", "MODEL": "cnn",
                             "SEEDS": [0]}
    assert units_mod.unit_hash("01_baseline_medmnist", "smoke", {"SEEDS": [0]}) == "3dbef000"
    assert units_mod.unit_hash("n", "smoke", {"A": 1, "B": [2]}) == units_mod.unit_hash("n", "smoke",
                                                                                      {"B": [2], "A": 1})
    spelled = spec_mod.from_dict({"notebook": "01", "profile": "smoke", "fixed": {"MODEL": "cnn", "DATASET_3D": "none",
                                  "COMPARE_MODELS": []}, "grid": {"SEEDS": [[0], [1]], "DATASET": ["phantom2d"]}},
                                 name="other")
    assert [u.hash for u in units_mod.expand(spelled)] == [u.hash for u in got]  # seed axis == SEEDS = [[s]]

    v2 = units_mod.expand(spec_mod.load("medmnist_v2"))
    assert len(v2) == 12 * 4 * 2 * 3 + 6 * 2 * 3 * 3 and len({u.name for u in v2}) == len(v2)
    assert v2[0].slug == "01-pathmnist-28-resnet18-s0" and v2[-1].slug == "01-synapsemnist3d-64-resnet18_acs-s2"
    assert all(u.profile == "full" and u.params["COMPARE_MODELS"] == [] for u in v2)

    cpu = spec_mod.load("medmnist_cpu")
    every = units_mod.expand(cpu)
    assert len(every) == (12 + 6) * 3 and cpu.only_present
    for f in ("breastmnist.npz", "adrenalmnist3d.npz"):
        (tmp_path / f).write_bytes(b"")
    kept, missing = units_mod.present(cpu, every, tmp_path)
    assert [u.slug for u in kept] == [f"01-{d}-cnn-s{s}" for d in ("breastmnist", "adrenalmnist3d") for s in range(3)]
    assert len(missing) == 16 and "pathmnist.npz" in missing


# ----------------------------------------------------------------------------- local executor and faults
def _wait_for(pred, timeout=240.0, what="condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _running(out: Path, slug: str) -> dict | None:
    """worker.json of a running unit once its kernel exists."""
    for f in (out / "units").glob(f".{slug}-*.run/worker.json"):
        try:
            note = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if note.get("kernel_pid"):
            return note
    return None


@pytest.fixture(scope="module")
def local_sweep(roots):
    """The broken spec (2 phantom units + 1 corrupt-file unit) run locally, through every fault:
    kernel of unit s0 killed (retried), sweep SIGTERMed during unit s1, then started again."""
    out = roots / "local"
    cmd = [sys.executable, "-m", "mednb.cli", "sweep", str(roots / "broken.toml"), "--out", str(out),
           "--cpus-per-unit", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = _wait_for(lambda: _running(out, "01-phantom2d-cnn-s0"), what="unit s0's kernel")
        time.sleep(1.0)
        os.kill(first["kernel_pid"], signal.SIGKILL)  # the unit's process dies mid-run
        _wait_for(lambda: _running(out, "01-phantom2d-cnn-s1"), what="unit s1's kernel")
        proc.send_signal(signal.SIGTERM)              # e.g. Slurm's time limit / scancel of the whole sweep
        log, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    after_term = {n: read_status(d) for n, d in _units(out).items()}
    stamps = {n: _stamp(d) for n, d in _units(out).items()}
    return {"out": out, "cmd": cmd, "rc_term": proc.returncode, "log_term": log, "after_term": after_term,
            "stamps": stamps}


def test_local_sweep_faults_resume_and_retry(local_sweep, capsys):
    out, after = local_sweep["out"], local_sweep["after_term"]
    s0, s1 = "01-phantom2d-cnn-s0-afdb6d96", "01-phantom2d-cnn-s1-77732304"
    assert local_sweep["rc_term"] != 0 and "interrupted" in local_sweep["log_term"]
    assert "Kernel is running over TCP" not in local_sweep["log_term"]  # kernel noise stays in kernel.log
    assert after[s0]["status"] == "ok" and after[s0]["attempts"] == 2  # killed kernel → retried, completed
    assert after[s1]["status"] == "interrupted" and "SIGTERM" in after[s1]["error"]
    assert set(after) == {s0, s1} and not list((out / "units").glob(".*"))  # nothing half-written

    rc = cli.main(local_sweep["cmd"][3:])  # started again: redoes s1, runs the failing unit, keeps s0
    log = capsys.readouterr().out
    units = _units(out)
    assert rc == 1 and _stamp(units[s0]) == local_sweep["stamps"][s0]
    assert read_status(units[s1])["status"] == "ok"
    bad = next(n for n in units if n.startswith("01-breastmnist-cnn-s0-"))
    st = read_status(units[bad])
    assert st["status"] == "failed" and "DataCorrupt" in st["error"] and "breastmnist.npz" in st["traceback"]
    assert f"2/3 units ok; not ok: {bad}" in log and "1 done, 2 to run" in log
    for name, d in units.items():  # every unit folder is the ordinary `mednb run` output + the sweep files
        assert {"unit.json", "status.json", "env.json", "metrics.jsonl", "results.csv", "report.md",
                "kernel.log", "01_baseline_medmnist.ipynb"} <= {p.name for p in d.iterdir()}
        assert json.loads((d / "unit.json").read_text())["hash"] == name[-8:]
    assert "Kernel is running over TCP" in (units[s1] / "kernel.log").read_text()
    assert read_status(units[s0])["cpus"] == 1 and read_status(units[s0])["device"] == "cpu"
    meta = json.loads((out / "sweep.json").read_text())
    assert sorted(meta["units"]) == sorted(units) and len(meta["runs"]) == 2
    assert any(p.startswith("torch==") for p in meta["evidence"]["packages"]) and meta["evidence"]["commit"]
    if "no leaderboard" not in log:  # mednb.sweep.report is installed: it lists the failure
        assert bad in (out / "leaderboard.md").read_text()

    stamps = {n: _stamp(d) for n, d in units.items()}
    assert cli.main(local_sweep["cmd"][3:]) == 1  # again: nothing to run (the failure is kept)
    assert "0 to run" in capsys.readouterr().out and {n: _stamp(d) for n, d in _units(out).items()} == stamps
    assert cli.main([*local_sweep["cmd"][3:], "--retry-failed"]) == 1
    now = {n: _stamp(d) for n, d in _units(out).items()}
    assert now[s0] == stamps[s0] and now[s1] == stamps[s1] and now[bad] != stamps[bad]  # only the failed one reran


# ----------------------------------------------------------------------------- Ray and Slurm give the same numbers
def _same_as_local(local_out: Path, out: Path, names: list[str]) -> None:
    assert sorted(_units(out)) == names
    for name in names:
        assert read_status(out / "units" / name)["status"] == "ok"
        assert _metrics(out, name) == _metrics(local_out, name)  # bit-identical: same seed, same 1 thread


@pytest.fixture
def local_ray(roots):
    import ray
    kw = dict(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    for attempt in range(2):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # Ray's notice about accelerator variables
                ray.init(**kw)
            break
        except Exception as e:  # noqa: BLE001 - Ray's start-up timeout on an overloaded machine
            ray.shutdown()
            if attempt == 1:
                pytest.skip(f"a local Ray instance could not start on this machine: {str(e).splitlines()[0]}")
    yield ray
    ray.shutdown()


def test_ray_gives_the_same_results_and_retries_a_killed_worker(roots, local_sweep, local_ray):
    out = roots / "ray"
    killed = {}

    def kill_one_worker():
        note = _wait_for(lambda: _running(out, "01-phantom2d-cnn-s1"), what="a Ray worker running unit s1")
        time.sleep(1.0)
        os.kill(note["pid"], signal.SIGKILL)  # the Ray worker process dies; Ray runs the task again
        killed.update(note)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    rc = driver.run(roots / "tiny.toml", out, driver.Options(executor="ray", cpus_per_unit=1), log=lambda *_: None,
                    progress=False)
    killer.join(timeout=5)
    assert rc == 0 and killed["pid"] != os.getpid()
    _same_as_local(local_sweep["out"], out, ["01-phantom2d-cnn-s0-afdb6d96", "01-phantom2d-cnn-s1-77732304"])
    assert read_status(out / "units" / "01-phantom2d-cnn-s1-77732304")["attempts"] == 2


def test_slurm_through_submitit_local_gives_the_same_results(roots, local_sweep):
    out = roots / "slurm"
    (roots / "seed0.toml").write_text(TINY.replace("seed = [0, 1]", "seed = [0]"))  # the same unit s0
    opts = driver.Options(executor="slurm", slurm_cluster="local", cpus_per_unit=1, time_min=10)
    assert driver.run(roots / "seed0.toml", out, opts, log=lambda *_: None, progress=False) == 0
    _same_as_local(local_sweep["out"], out, ["01-phantom2d-cnn-s0-afdb6d96"])
    assert list((out / "slurm").rglob("*_log.out"))  # submitit's job logs


@pytest.fixture(scope="module")
def local_default(roots):
    """The tiny spec run locally with the default options: every CPU here is the unit's, 1 thread is used."""
    out = roots / "local-default"
    assert driver.run(roots / "tiny.toml", out, driver.Options(), log=lambda *_: None, progress=False) == 0
    return out


def test_local_and_ray_give_identical_results_whatever_their_cpus(roots, local_sweep, local_default, local_ray):
    """Local gives a unit this machine (one at a time), Ray one CPU (two at once): the same numbers, bit for bit."""
    out = roots / "ray-default"
    assert driver.run(roots / "tiny.toml", out, driver.Options(executor="ray"), log=lambda *_: None,
                      progress=False) == 0
    assert (out / "results.csv").read_text() == (local_default / "results.csv").read_text()
    names = ["01-phantom2d-cnn-s0-afdb6d96", "01-phantom2d-cnn-s1-77732304"]
    _same_as_local(local_sweep["out"], local_default, names)
    _same_as_local(local_sweep["out"], out, names)
    for d in (local_default, out):
        for name in names:
            st, env = read_status(d / "units" / name), json.loads((d / "units" / name / "env.json").read_text())
            assert st["cpus"] == 1 and env["cpu_threads"] == 1 and st["settings"] == env["settings"] == {
                "threads": 1, "deterministic_algorithms": "warn_only", "cudnn_benchmark": False,
                "cublas_workspace_config": ":4096:8"}
    assert json.loads((out / "sweep.json").read_text())["spec"]["threads"] == 1


def test_report_never_averages_units_run_with_different_threads(tmp_path, local_default):
    import shutil
    from mednb.sweep import report as rep
    sw = shutil.copytree(local_default, tmp_path / "sw")
    (row,) = rep.collect(sw)["board"]
    assert row["n"] == 2 and not row["mixed_settings"] and row["setting"] == "" and not rep.collect(sw)["environment"]
    s1 = sw / "units" / "01-phantom2d-cnn-s1-77732304"
    st = read_status(s1)
    st["settings"]["threads"] = st["cpus"] = 2  # as if this seed had run with 2 threads
    (s1 / "status.json").write_text(json.dumps(st))
    got = rep.collect(sw)
    assert [(r["setting"], r["n"], r["mixed_settings"]) for r in got["board"]] == [("threads=1", 1, True),
                                                                                ("threads=2", 1, True)]
    assert {(f["field"], f["value"]) for f in got["environment"]} <= {("threads", 1), ("threads", 2)}
    assert len(got["environment"]) == 1
    md = rep.write_report(sw).read_text()
    assert md.count("⚠ mixed settings: not averaged") == 2 and "never averaged together" in md
    assert "(n=2)" not in md.split("## Test AUC")[1].split("## Per-class")[0]


def test_sweep_writes_nothing_to_the_data_root(roots, local_sweep):
    """On a cluster the data root is a shared, often read-only folder: units only read it, and the phantoms
    they generate go to the cache root (MEDNB_CACHE), whatever the executor."""
    assert sorted(p.relative_to(roots / "data").as_posix() for p in (roots / "data").rglob("*")) == ["breastmnist.npz"]
    assert list((roots / "cache" / "phantoms").glob("phantom2d_*.npz"))
