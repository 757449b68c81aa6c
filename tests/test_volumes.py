"""3D-specific pieces: 2D→3D conversions, the 64³ loader, MIP and the memory estimate."""
import importlib
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mednb import claims, data, models, volumes

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist"


@pytest.mark.parametrize("name", ["cnn_2.5d", "cnn_3d", "cnn_acs", "resnet18_2.5d", "resnet18_3d", "resnet18_acs"])
def test_each_conversion_runs_on_tiny_volumes(name):
    kw = {"width": 4} if name.startswith("cnn") else {}
    m = models.create(name, 1, 3, dims=3, size=16, **kw)
    out = m(torch.randn(2, 1, 16, 16, 16))
    assert out.shape == (2, 3)
    assert not any(isinstance(x, (nn.Conv2d, nn.BatchNorm2d)) for x in m.modules())


def test_2_5d_equals_slicewise_2d_convolution():
    conv = nn.Conv2d(2, 5, 3, padding=1, bias=True)
    m3 = models._convert_conv(conv, "2.5d")
    x = torch.randn(1, 2, 4, 8, 8)
    y3 = m3(x)
    for d in range(4):
        torch.testing.assert_close(y3[:, :, d], conv(x[:, :, d]), rtol=1e-5, atol=1e-5)


def test_3d_inflation_reproduces_2d_response_on_depth_constant_volume():
    conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    m3 = models._convert_conv(conv, "3d")
    img = torch.randn(1, 1, 8, 8)
    vol = img.unsqueeze(2).repeat(1, 1, 6, 1, 1)
    y = m3(vol)
    for d in range(1, 5):  # interior slices: zero padding along depth changes the two border slices
        torch.testing.assert_close(y[:, :, d], conv(img), rtol=1e-5, atol=1e-5)


def test_acs_splits_channels_over_three_planes():
    conv = nn.Conv2d(1, 6, 3, padding=1, bias=False)
    acs = models.ACSConv(conv)
    assert acs.splits == (2, 2, 2)
    x = torch.randn(1, 1, 5, 6, 7)
    y = acs(x)
    assert y.shape == (1, 6, 5, 6, 7)
    # the axial group is a per-slice 2D convolution with the first two 2D kernels
    for d in range(5):
        torch.testing.assert_close(y[:, :2, d], F.conv2d(x[:, :, d], conv.weight[:2], padding=1), rtol=1e-5, atol=1e-5)
    # the sagittal group convolves each (D,H) plane at fixed W
    for w in range(7):
        torch.testing.assert_close(y[:, 4:, :, :, w], F.conv2d(x[:, :, :, :, w], conv.weight[4:], padding=1),
                                   rtol=1e-5, atol=1e-5)


def test_unknown_conv_lists_valid_names():
    with pytest.raises(ValueError, match="2.5d, 3d, acs"):
        volumes.conv_model("4d", 1, 2)
    with pytest.raises(ValueError, match="valid"):
        models.to_3d(models.create("cnn", 1, 2), "xyz")


def test_mip_takes_max_along_each_axis():
    v = torch.zeros(1, 4, 5, 6, dtype=torch.uint8)
    v[0, 1, 2, 3] = 200
    assert volumes.mip(v, "axial").shape == (1, 5, 6)
    assert volumes.mip(v, "coronal").shape == (1, 4, 6)
    assert volumes.mip(v, "sagittal").shape == (1, 4, 5)
    assert volumes.mip(v, "axial")[0, 2, 3] == 200
    assert volumes.mip(v[0], 2)[1, 2] == 200
    with pytest.raises(ValueError, match="axial, coronal, sagittal"):
        volumes.mip(v, "oblique")


def test_phantom3d_at_64():
    s = data.load("phantom3d", 64, counts=(4, 2, 2), cache=False)
    assert s.train.x.shape == (4, 1, 64, 64, 64) and s.train.masks.shape == (4, 1, 64, 64, 64)
    assert s.dims == 3 and s.size == 64


@pytest.mark.skipif(not (SHARED / "adrenalmnist3d_64.npz").exists(), reason="../shared/data absent")
def test_64_loader_on_real_adrenalmnist3d(tmp_path):
    (tmp_path / "adrenalmnist3d_64.npz").symlink_to(SHARED / "adrenalmnist3d_64.npz")
    s = data.load("adrenalmnist3d", 64, root=tmp_path, download=False)
    assert s.train.x.shape == (1188, 1, 64, 64, 64) and s.train.x.dtype == torch.uint8
    assert (len(s.val), len(s.test)) == (98, 298)
    assert s.task == "binary-class" and s.dims == 3
    with pytest.raises(ValueError, match="valid sizes: 28, 64"):
        data.load("adrenalmnist3d", 128, root=tmp_path)


def test_load_volumes_rejects_2d_sets():
    with pytest.raises(ValueError, match="not a 3D dataset"):
        volumes.load_volumes("phantom2d", 28)


@pytest.mark.parametrize("name", ["cnn_3d", "cnn_acs"])
def test_memory_estimate_within_factor_two_of_measured_cpu_peak(name):
    # realistic size (~0.2 GB of activations) so allocator noise does not dominate the measurement
    shape, batch, kw = (1, 28, 28, 28), 32, {"width": 16}
    m = models.create(name, 1, 2, dims=3, **kw)
    est = volumes.estimate_memory(m, shape, batch)
    assert est["total"] == sum(v for k, v in est.items() if k != "total")
    measured = volumes.measure_peak_memory(name, shape, batch, device="cpu", **kw)["peak_bytes"]
    # the measured step growth covers activations and the input batch (weights/Adam state exist before it)
    predicted = est["activations"] + est["input"]
    assert 0.5 <= measured / predicted <= 2.0, (measured, predicted)


def test_memory_estimate_scales_with_voxels_and_batch():
    m = models.create("cnn_3d", 1, 2, dims=3, width=4)
    a = volumes.estimate_memory(m, (1, 16, 16, 16), 4)["activations"]
    assert volumes.estimate_memory(m, (1, 32, 32, 32), 4)["activations"] == pytest.approx(8 * a, rel=0.02)
    assert volumes.estimate_memory(m, (1, 16, 16, 16), 8)["activations"] == 2 * a
    with pytest.raises(ValueError, match="adam"):
        volumes.estimate_memory(m, (1, 16, 16, 16), 4, optimizer="lbfgs")


def test_studies_reuse_the_identical_conv_runs_instead_of_retraining(tmp_path, monkeypatch):
    """Scratch at 100 % labels (Genesis study) and "no augmentation" are the compare_convs 3d runs: same
    recipe (so the same budget of steps), same seed, so the reused numbers equal a retraining; another recipe,
    budget, device or data is not reused."""
    monkeypatch.setenv("MEDNB_CACHE", str(tmp_path))
    counts = [24, 12, 12]
    recipe = volumes.RECIPE.replace(steps=3, evals=2, batch_size=8)
    runs = volumes.compare_convs(["phantom3d"], [28], ["3d"], [0], recipe, width=4, phantom_counts=counts,
                                 measure_memory=False, device="cpu", progress=False)
    vol = volumes.load_volumes("phantom3d", 28, counts)
    kw = dict(fractions=[1.0], seeds=[0], width=4, genesis_epochs=1, device="cpu", progress=False)
    fresh, _ = volumes.genesis_vs_scratch(vol, recipe, **kw)
    reused, _ = volumes.genesis_vs_scratch(vol, recipe, reuse=runs, **kw)
    cols = ["init", "label_fraction", "seed", "steps", "test_auc", "test_acc", "n_labels"]
    assert reused[cols].equals(fresh[cols])
    aug_kw = dict(policy="flip", seeds=[0], width=4, device="cpu", progress=False)
    a_fresh = volumes.augment_on_off(vol, recipe, **aug_kw)
    a_reused = volumes.augment_on_off(vol, recipe, reuse=runs, **aug_kw)
    assert a_reused.equals(a_fresh)
    assert volumes._reused(runs, vol, recipe.replace(steps=4), "cnn", 4, "cpu", "3d", 0) is None
    assert volumes._reused(runs, vol, recipe, "cnn", 4, "cuda", "3d", 0) is None
    other = volumes.load_volumes("phantom3d", 28, [24, 12, 16])   # same name, other data
    assert volumes._reused(runs, other, recipe, "cnn", 4, "cpu", "3d", 0) is None
    binary = volumes.load_volumes("phantom3d", 28, counts, phantom_classes=2)   # same sizes, other classes
    assert binary.n_outputs != vol.n_outputs
    assert volumes._reused(runs, binary, recipe, "cnn", 4, "cpu", "3d", 0) is None
    hit = volumes._reused(runs, vol, recipe, "cnn", 4, "cpu", "3d", 0)
    assert hit[:3] == (fresh.test_auc.iloc[0], fresh.test_acc.iloc[0], 3)
    assert [e["step"] for e in hit[3]] == [2, 3]  # the reused run's validation history, for the convergence plot


def test_phantom_classes_reach_the_phantoms_only(tmp_path, monkeypatch):
    """load_volumes / compare_convs pass phantom_classes to phantom3d (2 = normal vs round lesion)."""
    monkeypatch.setenv("MEDNB_CACHE", str(tmp_path))
    vol = volumes.load_volumes("phantom3d", 28, [8, 4, 4], phantom_classes=2)
    assert vol.labels == {0: "normal", 1: "round"} and set(vol.train.y[:, 0].tolist()) == {0, 1}
    runs = volumes.compare_convs(["phantom3d"], [28], ["2.5d"], [0], volumes.RECIPE.replace(steps=2, batch_size=4),
                                 width=4, phantom_counts=[8, 4, 4], phantom_classes=2, measure_memory=False,
                                 device="cpu", progress=False)
    assert runs.attrs["data"][("phantom3d", 28)] == (8, 4, 4, vol.n_outputs)
    with pytest.raises(ValueError, match="n_classes must be in 2..4"):
        volumes.load_volumes("phantom3d", 28, [8, 4, 4], phantom_classes=5)


def test_every_arm_trains_one_budget_of_steps_and_records_carry_it(tmp_path, monkeypatch):
    """Convolutions, Genesis vs scratch at 50 % and 100 % labels, and augmentation on/off all train the recipe's
    steps (a 50 % arm is not also a shorter one); every record is tagged with its comparison and that budget; the
    verdicts are paired over seeds (mednb.claims.paired)."""
    from mednb import recording
    monkeypatch.setenv("MEDNB_CACHE", str(tmp_path))
    counts = [24, 12, 12]
    recipe = volumes.recipe_from({"STEPS": 5, "BATCH_SIZE": 8, "LR": 2e-3, "VAL_LABELS": "matched"})
    assert (recipe.steps, recipe.batch_size, recipe.val_labels) == (5, 8, "matched")
    kw = dict(width=4, device="cpu", progress=False)
    runs = volumes.compare_convs(["phantom3d"], [28], ["2.5d", "3d"], [0, 1], recipe, phantom_counts=counts,
                                 measure_memory=False, **kw)
    vol = volumes.load_volumes("phantom3d", 28, counts)
    gen, _ = volumes.genesis_vs_scratch(vol, recipe, fractions=[0.5, 1.0], seeds=[0, 1], genesis_epochs=1, reuse=runs,
                                        **kw)
    aug = volumes.augment_on_off(vol, recipe, policy="flip", seeds=[0, 1], reuse=runs, **kw)
    assert set(runs.steps) == set(gen.steps) == set(aug.steps) == {5}
    assert set(gen[gen.label_fraction == 0.5].n_labels) == {12}
    curves = volumes.convergence(gen)
    assert list(curves) == ["scratch at 50% labels", "genesis at 50% labels"]
    assert all(len(hs) == 2 and [e["step"] for e in hs[0]][-1] == 5 for hs in curves.values())
    found = volumes.verdicts(runs, gen, aug, "flip")
    assert {v["comparison"] for v in found} == set(volumes.COMPARISONS)
    assert all(isinstance(v["paired"], claims.Paired) and v["paired"].n == 2 and v["steps"] == 5 for v in found)
    by = lambda df: {r.seed: r.test_auc for r in df.itertuples()}
    g = found[[v["comparison"] for v in found].index("genesis")]["paired"]
    half = gen[gen.label_fraction == 0.5]
    sc, ge = half[half.init == "scratch"], half[half.init == "genesis"]
    assert g.delta == pytest.approx(claims.paired(by(ge), by(sc)).delta)
    before = len(recording.recorded())
    n = volumes.record_results(runs, gen, aug, vol.name, vol.size, "cnn")
    recs = recording.recorded()[before:]
    assert len(recs) == n and all(r["comparison"] in volumes.COMPARISONS and r["steps"] == 5 for r in recs)
    assert len(volumes.record_claims(found)) == len(found)
    with pytest.raises(ValueError, match="one budget of steps"):
        claims.one_budget(gen.assign(steps=[5, 5, 4, 5, 5, 5, 5, 5]))


def test_recipe_needs_a_step_budget_and_steps_knob_is_checked():
    params = importlib.import_module("mednb.params")  # the module (mednb.params is also the notebook function)
    with pytest.raises(ValueError, match="steps must be"):
        volumes.recipe_from({"STEPS": 0})
    with pytest.raises(params.ParamError, match="STEPS must be an int >= 1"):
        params.validate("08_3d_volumes", {"STEPS": 0}, "smoke")
    with pytest.raises(params.ParamError, match="VAL_LABELS: unknown validation-label rule 'half'; valid: full"):
        params.validate("08_3d_volumes", {"VAL_LABELS": "half"}, "smoke")
