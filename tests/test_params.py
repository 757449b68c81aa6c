"""Profiles and knob resolution (mednb.params)."""
from __future__ import annotations

import pytest
import torch

import mednb
from mednb import params as _  # noqa: F401  (module import for NOTEBOOK_MODULES below)
from mednb.params import NOTEBOOK_MODULES, ParamError, check_value, knob_types, notebook_profiles, resolve, resolve_profile

PROFILES = {
    "smoke": {"DATASET": "phantom2d", "EPOCHS": 1, "LR": 0.01, "SEEDS": [0], "LABEL_FRACTIONS": [0.5], "DEVICE": "auto"},
    "student": {"DATASET": "breastmnist", "EPOCHS": 10, "LR": 0.001, "SEEDS": [0, 1], "LABEL_FRACTIONS": [0.1, 1.0],
                "DEVICE": "auto"},
    "full": {"DATASET": "breastmnist", "EPOCHS": 100, "LR": 0.001, "SEEDS": [0, 1, 2], "LABEL_FRACTIONS": [0.01, 1.0],
             "DEVICE": "auto"},
}


def test_none_takes_the_profile_value(monkeypatch):
    monkeypatch.delenv("MEDNB_PROFILE", raising=False)
    prof, got = resolve({k: None for k in PROFILES["smoke"]}, PROFILES, "smoke")
    assert prof == "smoke" and got == PROFILES["smoke"]
    assert resolve({}, PROFILES)[0] == "student"  # no profile anywhere → student


def test_explicit_value_wins(monkeypatch):
    monkeypatch.delenv("MEDNB_PROFILE", raising=False)
    _, got = resolve({"EPOCHS": 3, "DATASET": None, "LR": 1}, PROFILES, "full")
    assert got["EPOCHS"] == 3 and got["DATASET"] == "breastmnist"
    assert got["LR"] == 1.0 and isinstance(got["LR"], float)  # int accepted for a float knob


def test_environment_profile(monkeypatch):
    monkeypatch.setenv("MEDNB_PROFILE", "smoke")
    assert resolve_profile(None) == "smoke" and resolve({}, PROFILES)[1]["EPOCHS"] == 1
    assert resolve_profile("full") == "full"  # PROFILE in the notebook (or injected by papermill) beats the env
    monkeypatch.setenv("MEDNB_PROFILE", "huge")
    with pytest.raises(ParamError, match="valid profiles: smoke, student, full"):
        resolve_profile(None)


@pytest.mark.parametrize("values,needle", [
    ({"EPOCHS": "3"}, "EPOCHS must be an int"),
    ({"EPOCHS": True}, "EPOCHS must be an int, got bool"),
    ({"EPOCHS": 0}, "EPOCHS must be >= 1"),
    ({"LR": -1.0}, "LR must be > 0"),
    ({"DATASET": "breastmnst"}, "unknown dataset 'breastmnst'"),
    ({"SEEDS": []}, "SEEDS must be a non-empty list"),
    ({"LABEL_FRACTIONS": [0.0, 2]}, "LABEL_FRACTIONS must be a non-empty list of numbers in (0, 1]"),
    ({"DEVICE": "tpu"}, "unknown device 'tpu'"),
])
def test_bad_values_raise_one_line(values, needle):
    with pytest.raises(ParamError) as e:
        resolve(values, PROFILES, "student")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_profiles_table_must_have_all_profiles():
    with pytest.raises(ParamError, match="lacks profile"):
        resolve({}, {"student": PROFILES["student"]}, "student")


def test_knob_types_come_from_student():
    assert knob_types(PROFILES) == {"DATASET": str, "EPOCHS": int, "LR": float, "SEEDS": list,
                                    "LABEL_FRACTIONS": list, "DEVICE": str}
    assert check_value("SEEDS", (1, 2), list) == [1, 2] and check_value("X", None, int) is None


def test_params_writes_back_and_seeds(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    ns = {"PROFILE": "smoke", "EPOCHS": 5, "DATASET": None, "LR": None, "SEEDS": [7], "LABEL_FRACTIONS": None,
          "DEVICE": None}
    P = mednb.params(ns, PROFILES)
    assert ns["DATASET"] == "phantom2d" and ns["EPOCHS"] == 5 and ns["PROFILE"] == "smoke"
    assert P.EPOCHS == 5 and P.seed == 7 and P.profile == "smoke" and isinstance(P.device, torch.device)
    a = torch.rand(3, generator=P.generator)
    assert torch.equal(a, torch.rand(3, generator=torch.Generator().manual_seed(7)))
    out = capsys.readouterr().out
    assert "profile: smoke" in out and "seed: 7" in out and str(tmp_path) in out and "EPOCHS" in out


def test_notebook_profiles_lookup():
    with pytest.raises(ParamError, match="unknown notebook 'zz'; valid: 00_medmnist_tour"):
        notebook_profiles("zz")
    assert set(notebook_profiles("00_medmnist_tour")) == {"smoke", "student", "full"}
    assert list(NOTEBOOK_MODULES)[:2] == ["00_medmnist_tour", "01_baseline_medmnist"]
