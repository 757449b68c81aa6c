"""The batch runner (`mednb run`): failures, --resume, parameter validation, result files."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mednb import cli, runner
from mednb.params import ParamError
from conftest import NOTEBOOKS, write_notebook

PROFILES = ('{"smoke": {"EPOCHS": 1, "DATASET": "phantom2d", "SEEDS": [0]}, '
            '"student": {"EPOCHS": 5, "DATASET": "breastmnist", "SEEDS": [0, 1]}, '
            '"full": {"EPOCHS": 9, "DATASET": "breastmnist", "SEEDS": [0, 1, 2]}}')
KNOBS = {"EPOCHS": "training epochs", "DATASET": "dataset name"}


@pytest.fixture
def nbs(tmp_path) -> Path:
    d = tmp_path / "nbs"
    write_notebook(d / "00_ok.ipynb", KNOBS, [
        'for s in P.SEEDS:\n    mednb.record("test_auc", 0.5 + EPOCHS / 100 + s / 1000, dataset=DATASET, seed=s)',
        'mednb.record("n_train", 12, dataset=DATASET, split="train")'], PROFILES)
    write_notebook(d / "01_fail.ipynb", KNOBS, [
        'mednb.record("val_auc", 0.25, dataset=DATASET)',
        'def inner():\n    raise RuntimeError("boom in " + DATASET)\ninner()'], PROFILES)
    write_notebook(d / "02_plain.ipynb", {"WIDTH": "channels (int >= 1; 0 = auto)"}, ["x = 1"])
    (d / "02_plain.ipynb").write_text((d / "02_plain.ipynb").read_text().replace("WIDTH = None", "WIDTH = 16"))
    return d


def test_run_failure_resume_and_result_files(nbs, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["run", "00", "01_fail", "--profile", "smoke", "--out", str(out), "--notebooks-dir", str(nbs),
                   "-p", "EPOCHS", "3"])
    assert rc == 1  # one notebook failed, the other still ran
    assert {p.name for p in out.iterdir()} == {"00_ok.ipynb", "01_fail.ipynb", *runner.RESULT_FILES}

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["notebook", "metric", "value"] and {"dataset", "seed", "split"} <= set(rows[0])
    auc = [r for r in rows if r["metric"] == "test_auc"]
    assert [(r["notebook"], float(r["value"]), r["dataset"], r["seed"]) for r in auc] == [("00_ok", 0.53, "phantom2d", "0")]
    assert any(r["notebook"] == "01_fail" and r["metric"] == "val_auc" for r in rows)  # recorded before the failure
    jsonl = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(jsonl) == len(rows) == 3

    report = (out / "report.md").read_text()
    assert "| 00_ok | ok |" in report and "| 01_fail | failed |" in report and "profile `smoke`" in report
    assert "RuntimeError: boom in phantom2d" in report and "inner()" in report  # end of the traceback
    assert "test_auc[dataset=phantom2d] 0.53" in report

    env = json.loads((out / "env.json").read_text())
    assert env["profile"] == "smoke" and env["versions"]["torch"] and env["commit"] and "device" in env
    ok = env["notebooks"]["00_ok"]
    assert ok["status"] == "ok" and ok["overrides"] == {"EPOCHS": 3}
    assert ok["parameters"]["EPOCHS"] == 3 and ok["parameters"]["DATASET"] == "phantom2d" and ok["seeds"] == [0]
    assert env["notebooks"]["01_fail"]["status"] == "failed" and env["seeds"] == [0]

    executed = out / "00_ok.ipynb"
    stamp = executed.stat().st_mtime_ns
    capsys.readouterr()
    rc = cli.main(["run", "--profile", "smoke", "--out", str(out), "--notebooks-dir", str(nbs),
                   "-p", "EPOCHS", "3", "--resume", "00_ok", "01_fail"])
    log = capsys.readouterr().out
    assert rc == 1 and "00_ok: already completed" in log and "01_fail: running" in log
    assert executed.stat().st_mtime_ns == stamp  # not executed again
    assert not list(out.glob(".*"))  # no temp files left behind


@pytest.mark.parametrize("args,needle", [
    (["-p", "NO_SUCH_PARAM", "1"], "unknown parameter 'NO_SUCH_PARAM'"),
    (["-p", "EPOCHS", "three"], "EPOCHS must be an int"),
    (["-p", "DATASET", "nosuchmnist"], "unknown dataset 'nosuchmnist'"),
    (["-p", "PROFILE", "full"], "--profile"),
    (["07_missing"], "unknown notebook '07_missing'"),
])
def test_bad_input_is_one_line_and_writes_nothing(nbs, tmp_path, capsys, args, needle):
    out = tmp_path / "never"
    rc = cli.main(["run", "--profile", "smoke", "--out", str(out), "--notebooks-dir", str(nbs), *args])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_unknown_parameter_lists_valid_knobs(nbs):
    with pytest.raises(ParamError, match="valid: DATASET, EPOCHS, WIDTH"):
        runner.validate(runner.select([], nbs), [("NOPE", "1")])


def test_override_goes_to_notebooks_that_have_it(nbs):
    paths = runner.select([], nbs)
    got = runner.validate(paths, [("EPOCHS", "4"), ("WIDTH", "32")])
    assert got == {"00_ok": {"EPOCHS": 4}, "01_fail": {"EPOCHS": 4}, "02_plain": {"WIDTH": 32}}
    with pytest.raises(ParamError, match="WIDTH must be an int"):  # type from the parameters cell (16)
        runner.validate(paths, [("WIDTH", "1.5")])


def test_registered_notebook_uses_its_profiles_table():
    path = NOTEBOOKS / "00_medmnist_tour.ipynb"
    if not path.exists():
        pytest.skip("notebook 00 absent")
    assert runner.validate([path], [("N_SHOW", "5"), ("SEEDS", "1,2")]) == {
        "00_medmnist_tour": {"N_SHOW": 5, "SEEDS": [1, 2]}}
    with pytest.raises(ParamError, match="N_SHOW must be an int"):
        runner.validate([path], [("N_SHOW", "'many'")])


def test_select_by_stem_prefix_and_path(nbs):
    assert [p.stem for p in runner.select([], nbs)] == ["00_ok", "01_fail", "02_plain"]
    assert [p.stem for p in runner.select(["01", "00_ok"], nbs)] == ["00_ok", "01_fail"]  # run in order
    assert runner.select([str(nbs / "02_plain.ipynb")], nbs)[0].stem == "02_plain"
    with pytest.raises(ParamError, match="ambiguous notebook '0'"):
        runner.select(["0"], nbs)


def test_parse_value():
    assert runner.parse_value("3") == 3 and runner.parse_value("1e-3") == 1e-3
    assert runner.parse_value("[0, 1]") == [0, 1] and runner.parse_value("breastmnist") == "breastmnist"
    assert runner.parse_value("'auto'") == "auto" and runner.parse_value("None") is None


def test_interrupted_notebook_leaves_no_partial_files(nbs, tmp_path, monkeypatch):
    import papermill

    def interrupted(input_path, output_path, **kw):
        Path(output_path).write_text('{"half": ')  # papermill had begun writing
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    out = tmp_path / "out"
    assert runner.run(["00_ok"], profile="smoke", out=out, notebooks_dir=nbs, log=lambda *_: None) == 130
    assert not (out / "00_ok.ipynb").exists() and not list(out.glob(".*"))  # no executed or half-written file
    status = json.loads((out / "status.json").read_text())
    assert status["notebooks"]["00_ok"]["status"] == "interrupted"  # so --resume reruns it


def _kernels_tagged(tag: str) -> list[int]:
    """Pids of live processes whose environment holds ``MEDNB_TEST_TAG=tag`` (the run's kernels)."""
    import os
    pids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if f"MEDNB_TEST_TAG={tag}".encode() in (d / "environ").read_bytes().split(b"\0"):
                if (d / "stat").read_text().split(") ")[-1][0] != "Z":
                    pids.append(int(d.name))
        except OSError:
            pass
    return [p for p in pids if p != os.getpid()]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the kernel processes")
def test_sigterm_stops_the_batch_quietly_and_resume_finishes_it(tmp_path):
    """A scheduler's SIGTERM to the runner alone: exit within seconds, one line, no kernel left, --resume."""
    import os
    import signal
    import subprocess
    import sys
    import time
    d = tmp_path / "nbs"
    write_notebook(d / "00_quick.ipynb", {}, ['x = 1'])
    write_notebook(d / "01_slow.ipynb", {"SLEEP": "seconds"}, [
        'import time\nfor _ in range(int(SLEEP or 0) * 10):\n    time.sleep(0.1)'])
    out, tag = tmp_path / "out", f"sigterm-{os.getpid()}"
    env = {**os.environ, "MEDNB_TEST_TAG": tag}
    cmd = [sys.executable, "-m", "mednb.cli", "run", "--profile", "smoke", "--out", str(out),
           "--notebooks-dir", str(d)]
    proc = subprocess.Popen([*cmd, "-p", "SLEEP", "120"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (out / "00_quick.ipynb").exists() or not list(out.glob(".01_slow.*.running.ipynb")):
        assert proc.poll() is None and time.time() < deadline, "the batch did not reach the slow notebook"
        time.sleep(0.2)
    time.sleep(3)  # the slow notebook's kernel is running its cell
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    assert time.time() - t0 < 15 and proc.returncode == 130
    assert "01_slow: interrupted (received SIGTERM)" in output and "Traceback" not in output
    assert "Kernel is running over TCP" not in output  # kernel noise goes to kernel.log
    time.sleep(1)
    assert _kernels_tagged(tag) == []
    assert not (out / "01_slow.ipynb").exists() and not list(out.glob(".*"))
    stamp = (out / "00_quick.ipynb").stat().st_mtime_ns
    done = subprocess.run([*cmd, "--resume", "-p", "SLEEP", "0"], env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "01_slow.ipynb").exists() and (out / "00_quick.ipynb").stat().st_mtime_ns == stamp
    assert "00_quick: already completed" in done.stdout


def test_atomic_write(tmp_path):
    f = runner.atomic_write(tmp_path / "sub" / "a.txt", "x")
    assert f.read_text() == "x" and [p.name for p in f.parent.iterdir()] == ["a.txt"]
