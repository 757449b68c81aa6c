"""mednb.record: values and tags, the metrics-file sink, and the round trip through an executed notebook."""
from __future__ import annotations

import json
import math

import nbformat
import numpy as np
import pytest
import torch

import mednb
from mednb import recording
from conftest import write_notebook


def test_record_returns_clean_record():
    rec = mednb.record("test_auc", np.float32(0.75), dataset="phantom2d", seed=np.int64(2),
                       label_fraction=torch.tensor(0.1), seeds=(0, 1))
    assert rec == {"metric": "test_auc", "value": 0.75, "dataset": "phantom2d", "seed": 2,
                   "label_fraction": pytest.approx(0.1), "seeds": [0, 1]}
    assert isinstance(rec["value"], float) and isinstance(rec["seed"], int)
    assert recording.recorded()[-1] == rec
    assert mednb.record("dice", math.nan)["value"] is None  # NaN is stored as null (valid JSON)


def test_record_rejects_bad_input():
    with pytest.raises(TypeError, match="must be a number"):
        mednb.record("test_auc", "high")
    with pytest.raises(ValueError, match="non-empty"):
        mednb.record("", 1.0)


def test_record_appends_to_metrics_file(tmp_path, monkeypatch):
    sink = tmp_path / "m.jsonl"
    monkeypatch.setenv("MEDNB_METRICS", str(sink))
    mednb.record("test_acc", 0.5, model="cnn")
    mednb.record("test_acc", 0.6, model="resnet18")
    lines = [json.loads(x) for x in sink.read_text().splitlines()]
    assert [(r["model"], r["value"]) for r in lines] == [("cnn", 0.5), ("resnet18", 0.6)]


def test_round_trip_through_executed_notebook(tmp_path, monkeypatch):
    """Records and resolved parameters survive execution and are read back from the .ipynb file."""
    from nbclient import NotebookClient
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path / "data"))
    profiles = ('{"smoke": {"EPOCHS": 1, "LR": 0.1, "SEEDS": [3]}, "student": {"EPOCHS": 2, "LR": 0.01, "SEEDS": [0]},'
                ' "full": {"EPOCHS": 3, "LR": 0.001, "SEEDS": [0, 1]}}')
    path = write_notebook(tmp_path / "nb.ipynb", {"EPOCHS": "epochs", "LR": "learning rate"}, [
        f'PROFILE = "smoke"\nEPOCHS = 7\nimport mednb\nPROFILES = {profiles}',
        'P = mednb.params(globals(), PROFILES)',
        'import numpy as np\nmednb.record("test_auc", np.float64(0.875), dataset="phantom2d", seed=P.seed)\n'
        'mednb.record("dice", 0.5, method="unet", label_fraction=0.1)'])
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, path)
    assert recording.read_notebook(path) == [
        {"metric": "test_auc", "value": 0.875, "dataset": "phantom2d", "seed": 3},
        {"metric": "dice", "value": 0.5, "method": "unet", "label_fraction": 0.1}]
    params = recording.read_params(path)
    assert params["profile"] == "smoke" and params["EPOCHS"] == 7 and params["LR"] == 0.1 and params["SEEDS"] == [3]
    text = "".join(o.get("data", {}).get("text/plain", "") for c in nb.cells for o in c.get("outputs", []))
    assert "● test_auc = 0.8750  [dataset=phantom2d, seed=3]" in text


def test_read_notebook_without_records(tmp_path):
    path = write_notebook(tmp_path / "empty.ipynb", {}, ["x = 1"])
    assert recording.read_notebook(path) == [] and recording.read_params(path) is None
