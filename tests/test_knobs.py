"""Knobs valid only for a dataset or a registry (mednb.knobs): rejected before any kernel starts."""
from __future__ import annotations

import importlib

import pytest

import mednb
from mednb import cli, data, knobs, models, runner
from conftest import NOTEBOOKS

params = importlib.import_module("mednb.params")  # the module (mednb.params is also the notebook function)


def _registry(module: str, attr: str):
    return lambda: list(getattr(importlib.import_module(module), attr))


# notebook -> (knob, bad value, the valid choices the message must list, read from the registry)
BAD = {
    "00_medmnist_tour": ("SIZE", "50", lambda: data.valid_sizes("phantom2d")),
    "01_baseline_medmnist": ("MODEL", "resnet999", lambda: knobs.classifiers(2)),
    "02_augmentation": ("POLICIES", "none,fancy", lambda: mednb.augment.names()),
    "03_transfer_learning": ("STRATEGIES", "scratch,distill", _registry("mednb.transfer", "STRATEGIES")),
    "04_self_supervised": ("METHODS", "rotation,mae", lambda: mednb.ssl.names()),
    "05_unetpp_segmentation": ("AUGMENT", "fancy", lambda: mednb.augment.names()),
    "06_active_learning": ("STRATEGIES", "random,oracle", lambda: mednb.active.names()),
    "07_gradcam": ("MODELS", "cnn,unetpp", lambda: knobs.classifiers(2)),
    "08_3d_volumes": ("CONVS", "2.5d,4d", _registry("mednb.volumes", "CONVS")),
    "09_multisite_federated": ("METHODS", "fedavg,fedsgd", _registry("mednb.federated", "METHODS")),
    "10_benchmark_leaderboard": ("EXECUTOR", "dask", _registry("mednb.sweep.executors", "EXECUTORS")),
}
STEMS = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb") if p.stem in params.NOTEBOOK_MODULES)


@pytest.fixture
def no_kernel(monkeypatch):
    """Fail the test if the runner gets as far as executing a notebook."""
    def execute(*a, **k):
        raise AssertionError("a kernel was started")
    monkeypatch.setattr(runner, "execute", execute)


def _run(capsys, tmp_path, *args) -> tuple[int, str, object]:
    out = tmp_path / "out"
    rc = cli.main(["run", *args, "--out", str(out)])
    return rc, capsys.readouterr().err, out


@pytest.mark.parametrize("stem", STEMS)
def test_bad_registry_knob_stops_mednb_run_before_any_kernel(stem, tmp_path, capsys, no_kernel):
    if stem not in BAD:
        pytest.fail(f"notebook {stem} has no registry-knob case in BAD")
    knob, bad, valid = BAD[stem]
    rc, err, out = _run(capsys, tmp_path, stem, "--profile", "smoke", "-p", knob, bad)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert knob in err and f"valid: {', '.join(map(str, valid()))}" in err.replace("valid sizes for phantom2d, "
                                                                                    "phantom3d:", "valid:")
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("stem,overrides,needle", [
    ("02_augmentation", [("DATASET", "adrenalmnist3d")], "is not a 2D dataset; valid: pathmnist"),
    ("06_active_learning", [("SIZE", "128")], "128 px is not available for adrenalmnist3d; valid sizes for "
                                              "breastmnist, adrenalmnist3d: 28, 64"),
    ("03_transfer_learning", [("SHIFT_TARGETS", "phantom2d:7")], "valid sites: 0, 1, 2, 3"),
    ("06_active_learning", [("MODEL", "resnet18_3d")], "classifier for 2D and 3D data 'resnet18_3d'; valid: cnn"),
    ("08_3d_volumes", [("CONVS", "3d"), ("BACKBONE", "unet")], "unknown backbone 'unet'"),
    ("08_3d_volumes", [("PHANTOM_CLASSES", "5")], "PHANTOM_CLASSES: 5 phantom classes; valid: 2, 3, 4 (the first "
                                                  "classes of normal, round, spiculated, multifocal)"),
    ("02_augmentation", [("PHANTOM_CLASSES_3D", "1")], "PHANTOM_CLASSES_3D: 1 phantom classes; valid: 2, 3, 4"),
    ("03_transfer_learning", [("PHANTOM_CLASSES_3D", "5")], "PHANTOM_CLASSES_3D: 5 phantom classes; valid: 2, 3, 4"),
    ("07_gradcam", [("PHANTOM_CLASSES_3D", "0")], "PHANTOM_CLASSES_3D: 0 phantom classes; valid: 2, 3, 4"),
])
def test_dataset_dependent_values_use_the_resolved_profile(stem, overrides, needle):
    with pytest.raises(params.ParamError) as e:
        runner.run([stem], profile="student", out="/nonexistent/never", overrides=overrides, log=lambda *_: None)
    assert needle in str(e.value) and f"(in {stem})" in str(e.value)


@pytest.mark.parametrize("stem", sorted(params.NOTEBOOK_MODULES))
def test_every_profile_passes_its_own_checks(stem):
    module = importlib.import_module(params.NOTEBOOK_MODULES[stem])
    assert set(getattr(module, "CHECKS", {})) <= set(params.knob_types(module.PROFILES))  # no misspelt knob
    for profile in params.PROFILES:
        assert params.validate(stem, {}, profile) == module.PROFILES[profile]


def test_notebook_setup_cell_gives_the_same_line(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    from mednb import baseline
    with pytest.raises(params.ParamError, match=r"^MODEL_3D: unknown 3D classifier 'unet'; valid: cnn, .*_acs$"):
        mednb.params({"PROFILE": "smoke", "MODEL_3D": "unet"}, baseline.PROFILES, show=False)
    # a table of no topic module has no registry checks
    table = {p: {"MODEL": "cnn"} for p in params.PROFILES}
    assert mednb.params({"PROFILE": "smoke", "MODEL": "anything"}, table, show=False).MODEL == "anything"


def test_classifier_lists_follow_what_the_registry_builds():
    """classifiers(dims) are exactly the registered non-segmentation models that build with those dims."""
    import torch
    from mednb import seg
    names = [n for n in models.names() if n not in seg.SEG_MODELS]
    for dims in (2, 3):
        with torch.device("meta"):  # shapes only: no weights allocated or initialised
            built = [n for n in names if models.create(n, 1, 2, dims=dims).dims == dims]
        assert knobs.classifiers(dims) == built
    assert knobs.classifiers((2, 3)) == [n for n in knobs.classifiers(2) if n in knobs.classifiers(3)]
