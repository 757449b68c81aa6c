"""Shared fixtures: temporary data roots, the real MedMNIST files when present, tiny notebooks."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
import torch

# Under pytest-xdist each worker, and each notebook kernel or subprocess it starts, gets its share of the cores:
# two workers with torch's default thread count on two cores slow each other several-fold.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
if _WORKERS > 1:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _threads = str(max(1, _cores // _WORKERS))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _threads)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MEDMNIST = SHARED / "medmnist"
REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    """An empty data root in tmp_path, set as ``$MEDNB_DATA``."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("MEDNB_DATA", str(root))
    return root


@pytest.fixture
def real_file():
    """Path of a real MedMNIST file in ../shared/data/medmnist (skip when absent)."""
    def get(name: str = "breastmnist.npz") -> Path:
        path = MEDMNIST / name
        if not path.is_file():
            pytest.skip(f"{path} not present")
        return path
    return get


@pytest.fixture
def no_network(monkeypatch):
    """Make every download fail like an offline machine; returns the list of attempted URLs."""
    import urllib.error
    import urllib.request
    tried = []

    def offline(url, *a, **k):
        tried.append(url)
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return tried


def write_notebook(path: Path, knobs: dict[str, str], body: list[str], profiles: str | None = None) -> Path:
    """A small notebook: a ``parameters`` cell (``PROFILE`` + knobs = None), an optional
    ``mednb.params`` setup cell over an inline PROFILES table, then ``body`` cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    lines = ["PROFILE = None  # profile"] + [f"{k} = None  # {c}" for k, c in knobs.items()]
    p = nbformat.v4.new_code_cell("\n".join(lines))
    p.metadata["tags"] = ["parameters"]
    cells = [p]
    if profiles:
        cells.append(nbformat.v4.new_code_cell(f"import mednb\nPROFILES = {profiles}\nP = mednb.params(globals(), PROFILES)"))
    cells += [nbformat.v4.new_code_cell(b) for b in body]
    nb.cells = cells
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(autouse=True)
def _cache_follows_data_root(monkeypatch):
    """Caches (phantoms, checkpoints) go to the data root a test sets, so each test's tmp root isolates them.
    The default per-user cache and read-only data roots are tested explicitly in tests/test_data.py."""
    monkeypatch.delenv("MEDNB_CACHE", raising=False)
    monkeypatch.setenv("MEDNB_CACHE_IN_DATA", "1")


@pytest.fixture(autouse=True)
def _no_metrics_sink(monkeypatch):
    """Tests must not append records to a metrics file named in the caller's shell."""
    monkeypatch.delenv("MEDNB_METRICS", raising=False)


# ----------------------------------------------------------------------------- the one-budget rule, read back
# Every notebook run by nbval appends its records to its own metrics file ($MEDNB_METRICS, set while its kernel
# starts); after its last cell the records are read back and the notebook fails if the arms of a comparison
# did not share one training budget (mednb.claims.budget_problems), or if a notebook that compares arms
# recorded no comparison at all. Registered as a plugin (not conftest hooks) so that it sees notebooks/ too.
COMPARING = ("02_", "03_", "04_", "05_", "06_", "08_", "09_")


class OneBudget:
    def __init__(self):
        import tempfile
        self.last_cell: dict[str, str] = {}
        self.dir = Path(tempfile.mkdtemp(prefix="mednb-nbval-metrics-"))

    @staticmethod
    def is_cell(item) -> bool:
        return type(item).__name__ == "IPyNbCell"

    def metrics_file(self, item) -> Path:
        return self.dir / (Path(str(item.parent.fspath)).stem + ".jsonl")

    def pytest_collection_modifyitems(self, items):
        for item in items:
            if self.is_cell(item):
                self.last_cell[item.parent.nodeid] = item.nodeid

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item):
        first = self.is_cell(item) and getattr(item.parent, "kernel", None) is None
        if first:
            f = self.metrics_file(item)
            f.write_text("")
            os.environ["MEDNB_METRICS"] = str(f)
        try:
            yield
        finally:
            if first:
                os.environ.pop("MEDNB_METRICS", None)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if not (self.is_cell(item) and call.when == "call" and report.passed
                and self.last_cell.get(item.parent.nodeid) == item.nodeid):
            return
        import json
        from mednb import claims
        stem = Path(str(item.parent.fspath)).stem
        lines = self.metrics_file(item).read_text().splitlines()
        records = [{"notebook": stem, **json.loads(line)} for line in lines if line.strip()]
        problems = claims.budget_problems(records)
        if stem.startswith(COMPARING) and not any(r.get("comparison") for r in records):
            problems.append(f"{stem}: no record carries a comparison tag (record each arm with comparison=…, steps=…)")
        if problems:
            report.outcome = "failed"
            report.longrepr = ("one training budget per comparison (read back from metrics.jsonl):\n"
                               + "\n".join(problems))

    def pytest_unconfigure(self):
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)


def pytest_configure(config):
    if not config.pluginmanager.has_plugin("mednb-one-budget"):
        config.pluginmanager.register(OneBudget(), "mednb-one-budget")
