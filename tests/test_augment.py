"""Tests for mednb.augment: policies on 2D/3D batches, masks, seeding, strength, offline/online."""
import pytest
import torch

from mednb import augment as A
from mednb import data, engine, phantoms


@pytest.fixture(scope="module")
def ph2():
    """A few 2D phantoms with lesions (classes 1–3), float [0,1] images and uint8 masks."""
    arr = phantoms.generate(2, 28, counts=(24, 0, 0), seed=1)
    keep = arr["train_labels"][:, 0] > 0
    x = torch.from_numpy(arr["train_images"][keep]).unsqueeze(1).float() / 255
    m = torch.from_numpy(arr["train_masks"][keep]).unsqueeze(1)
    return x, m


@pytest.fixture(scope="module")
def ph3():
    arr = phantoms.generate(3, 28, counts=(8, 0, 0), seed=1)
    keep = arr["train_labels"][:, 0] > 0
    x = torch.from_numpy(arr["train_images"][keep]).unsqueeze(1)
    m = torch.from_numpy(arr["train_masks"][keep]).unsqueeze(1)
    return x.float() / 255, m


def _dice(a, b):
    a, b = a.bool(), b.bool()
    return float(2 * (a & b).sum() / (a.sum() + b.sum()).clamp_min(1))


def test_names_and_unknown_name():
    assert A.names() == ["none", "flip", "basic", "intensity", "elastic", "strong"]
    with pytest.raises(ValueError, match="valid: none, flip, basic, intensity, elastic, strong"):
        A.get("mixup")
    with pytest.raises(ValueError, match="dims"):
        A.get("basic", dims=4)
    with pytest.raises(ValueError, match="valid:"):
        A.get("basic", rotate_degrees=3)


@pytest.mark.parametrize("name", A.names())
@pytest.mark.parametrize("dims", [2, 3])
def test_every_policy_2d_3d(name, dims, ph2, ph3):
    x, m = ph2 if dims == 2 else ph3
    pol = A.get(name, dims=dims)
    y, mo = pol(x, m, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert mo.shape == m.shape and mo.dtype == m.dtype
    assert set(mo.unique().tolist()) <= {0, 1}  # label values preserved (nearest)
    if name != "none":
        assert not torch.equal(y, x)
    if name in ("none", "intensity"):
        assert torch.equal(mo, m)  # intensity transforms never touch the mask


@pytest.mark.parametrize("name", A.transforms())
@pytest.mark.parametrize("dims", [2, 3])
def test_single_transforms_2d_3d(name, dims, ph2, ph3):
    x, m = ph2 if dims == 2 else ph3
    t = A.transform(name, dims=dims)
    assert t.name == name
    y, mo = t(x, m, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(y, x)
    assert set(mo.unique().tolist()) <= {0, 1}
    if A.TRANSFORMS[name][0] == "intensity":
        assert torch.equal(mo, m)
    y0, m0 = A.transform(name, 0.0, dims)(x, m, torch.Generator().manual_seed(0))
    assert torch.allclose(y0, x, atol=1e-5) and torch.equal(m0, m)


def test_single_transforms_do_only_their_part():
    n, eye = 16, torch.eye(2).expand(16, 2, 2)

    def theta(name):
        t = A.transform(name)
        th = t.matrix(t.sample(n, torch.Generator().manual_seed(0)), n)
        return th[:, :, :2], th[:, :, 2]

    R, b = theta("rotate")  # a pure rotation: orthonormal, det 1, no translation
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-6) and torch.allclose(torch.det(R), torch.ones(n))
    assert not torch.allclose(R, eye, atol=1e-3) and b.abs().max() == 0
    M, b = theta("shift")
    assert torch.equal(M, eye) and b.abs().max() > 0.05
    for name in ("scale", "crop"):  # isotropic zoom, no rotation/flip
        M, b = theta(name)
        assert torch.equal(M[:, 0, 1], torch.zeros(n)) and torch.equal(M[:, 0, 0], M[:, 1, 1])
        assert len(torch.unique(M[:, 0, 0])) > 1
        assert (b.abs().max() == 0) if name == "scale" else bool((b.abs() <= 1 - M[:, :1, 0] + 1e-6).all())
    neutral = dict(gamma=1.0, contrast=1.0, brightness=0.0, noise_sd=0.0)
    for name in ("gamma", "contrast", "brightness", "noise"):
        p = A.transform(name).sample(n, torch.Generator().manual_seed(0))
        key = "noise_sd" if name == "noise" else name
        assert len(torch.unique(p[key])) > 1, name
        assert all(torch.all(p[k] == v) for k, v in neutral.items() if k != key), name
    with pytest.raises(ValueError, match="valid: flip, rotate, shift"):
        A.transform("shear")
    with pytest.raises(ValueError, match="single transforms: flip, rotate"):
        A.gallery(torch.zeros(1, 8, 8), ["shear"], n=1)


def test_wrong_dims_is_a_clear_error(ph2):
    x, _ = ph2
    with pytest.raises(ValueError, match="dims=2"):
        A.get("basic", dims=3)(x)


@pytest.mark.parametrize("name", A.GEOMETRIC)
@pytest.mark.parametrize("dims", [2, 3])
def test_mask_stays_aligned(name, dims, ph2, ph3):
    """The lesion mask moved as a mask (nearest) overlaps the same lesion moved as image content
    (a float indicator channel, bilinear), far more than the untransformed mask does."""
    x, m = ph2 if dims == 2 else ph3
    pol = A.get(name, strength=1.5, dims=dims)
    both = torch.cat([x, m.float()], dim=1)  # channel 1: the lesion as image-space indicator
    y, mo = pol(both, m, torch.Generator().manual_seed(3))
    moved_indicator = y[:, 1:] > 0.5
    aligned = _dice(moved_indicator, mo)
    stale = _dice(moved_indicator, m)
    assert aligned > 0.85, aligned
    assert aligned > stale + 0.1, (aligned, stale)
    # and the bright lesion is still under the transformed mask in the transformed image
    inside = y[:, :1][mo.bool()].mean()
    outside = y[:, :1][~mo.bool()].mean()
    assert inside > outside


def test_per_sample_parameters_differ():
    x = torch.rand(1, 1, 28, 28).repeat(4, 1, 1, 1)
    for name in ("basic", "elastic", "intensity", "strong"):
        y, _ = A.get(name)(x, None, torch.Generator().manual_seed(0))
        assert not torch.allclose(y[0], y[1]), name
        p = A.get(name).sample(4, torch.Generator().manual_seed(0))
        for k, v in p.items():
            if torch.is_tensor(v) and v.is_floating_point():
                assert len(torch.unique(v.reshape(4, -1), dim=0)) > 1, (name, k)
    v = torch.rand(1, 1, 16, 16, 16).repeat(3, 1, 1, 1, 1)
    y, _ = A.get("strong", dims=3)(v, None, torch.Generator().manual_seed(0))
    assert not torch.allclose(y[0], y[1])


@pytest.mark.parametrize("dims", [2, 3])
def test_seeded_reproducibility(dims):
    x = torch.rand(3, 1, *([20] * dims))
    m = (x > 0.7).to(torch.uint8)
    pol = A.get("strong", dims=dims)
    y1, m1 = pol(x, m, torch.Generator().manual_seed(7))
    y2, m2 = pol(x, m, torch.Generator().manual_seed(7))
    y3, _ = pol(x, m, torch.Generator().manual_seed(8))
    assert torch.equal(y1, y2) and torch.equal(m1, m2)
    assert not torch.allclose(y1, y3)
    # without a generator the global seed decides
    torch.manual_seed(5)
    a, _ = pol(x)
    torch.manual_seed(5)
    b, _ = pol(x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", A.names())
@pytest.mark.parametrize("dims", [2, 3])
def test_strength_zero_is_identity(name, dims):
    x = torch.rand(4, 1, *([16] * dims))
    m = (torch.rand(4, 1, *([16] * dims)) > 0.8).to(torch.uint8)
    y, mo = A.get(name, strength=0.0, dims=dims)(x, m, torch.Generator().manual_seed(0))
    assert torch.allclose(y, x, atol=1e-5)
    assert torch.equal(mo, m)


def test_strength_scales_the_change():
    x = torch.rand(16, 1, 28, 28)
    diffs = [float((A.get("basic", s)(x, None, torch.Generator().manual_seed(0))[0] - x).abs().mean())
             for s in (0.25, 1.0, 2.0)]
    assert diffs[0] < diffs[1] < diffs[2]


def test_float_masks_and_multichannel_images():
    x = torch.rand(2, 3, 24, 24)
    m = (torch.rand(2, 1, 24, 24) > 0.5).float() * 2  # label value 2
    y, mo = A.get("strong")(x, m, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and mo.dtype == torch.float32
    assert set(mo.unique().tolist()) <= {0.0, 2.0}


def test_offline_output_size_and_masks(ph2):
    x, m = ph2
    split = data.Split((x * 255).to(torch.uint8), torch.arange(len(x)).view(-1, 1), m)
    out = A.offline(split, A.get("basic"), copies=3, seed=0)
    assert len(out) == 4 * len(split) and out.x.dtype == torch.uint8
    assert out.masks.shape == (4 * len(split), *m.shape[1:])
    assert torch.equal(out.x[:len(split)], split.x)  # originals first
    assert torch.equal(out.y[len(split):2 * len(split)], split.y)  # labels repeated in order
    assert not torch.equal(out.x[len(split):2 * len(split)], split.x)
    assert A.nbytes(out) > 3.9 * A.nbytes(split)
    again = A.offline(split, A.get("basic"), copies=3, seed=0)
    assert torch.equal(again.x, out.x)


def test_offline_splits_uses_label_subset(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    sp = data.load("phantom2d", counts=(40, 8, 8), cache=False)
    off = A.offline_splits(sp, A.get("flip"), copies=2, label_fraction=0.5, seed=0)
    assert len(off.train) == 3 * 20 and len(off.val) == len(sp.val)


def test_imbalanced_indices():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 40).view(-1, 1)
    idx = A.imbalanced_indices(y, 0.1, seed=0)
    counts = torch.bincount(y[idx, 0], minlength=3).tolist()
    assert counts == [50, 5, 40]
    idx0 = A.imbalanced_indices(y, 0.2, seed=0, minority=0)
    assert torch.bincount(y[idx0, 0], minlength=3).tolist() == [10, 30, 40]
    with pytest.raises(ValueError):
        A.imbalanced_indices(y, 0.0)


def test_torchvision_policy_moves_mask_with_image(ph2):
    from torchvision import tv_tensors
    x, m = ph2
    img = tv_tensors.Image((x[0] * 255).to(torch.uint8))
    mask = tv_tensors.Mask(m[0])
    torch.manual_seed(0)
    yi, ym = A.torchvision_policy("basic", 1.5)(img, mask)
    assert yi.shape == img.shape and yi.dtype == torch.float32
    assert set(ym.unique().tolist()) <= {0, 1}
    assert yi[ym.bool()].mean() > yi[~ym.bool()].mean()


def test_engine_fit_with_policy(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    sp = data.load("phantom2d", counts=(32, 16, 16), cache=False)
    res = engine.train(sp, "cnn", engine.Recipe(epochs=1, batch_size=16), seed=0, augment=A.get("basic"),
                       device="cpu", progress=False)
    assert res.n_train == 32 and 0.0 <= res.test["auc"] <= 1.0


def test_engine_rejects_a_policy_name(tmp_path, monkeypatch):
    """The engine takes a callable only; a policy name is resolved by the caller with ``get``."""
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    sp = data.load("phantom2d", counts=(32, 16, 16), cache=False)
    with pytest.raises(TypeError):
        engine.train(sp, "cnn", engine.Recipe(epochs=1, batch_size=16), seed=0, augment="basic", device="cpu",
                     progress=False)


def test_grid_and_verdict(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    sp = data.load("phantom2d", counts=(32, 16, 16), cache=False)
    df = A.label_fraction_grid(sp, ["none", "flip"], [0.5], [0], recipe=engine.Recipe(epochs=1, batch_size=16),
                               device="cpu", progress=False)
    assert len(df) == 2 and set(df.policy) == {"none", "flip"}
    assert (df.n_train == 16).all() and (df.train_images_per_s > 0).all() and (df.steps == 1).all()
    v = A.verdict(df)
    assert len(v) == 1 and v.best_policy[0] in ("none", "flip")
    assert "50% labels" in A.describe_verdict(v)


@pytest.fixture(scope="module")
def step_grid(tmp_path_factory):
    """Two policies × two label fractions × two seeds under one step budget (8 steps of 16, 2 checks)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDNB_DATA", str(tmp_path_factory.mktemp("grid")))
        sp = data.load("phantom2d", counts=(48, 16, 16), cache=False)
    recipe = engine.Recipe(steps=8, evals=2, batch_size=16)
    df = A.label_fraction_grid(sp, ["none", "flip"], [0.25, 1.0], [0, 1], recipe=recipe, device="cpu",
                               progress=False)
    return sp, recipe, df


def test_grid_gives_every_arm_the_same_steps(step_grid):
    sp, recipe, df = step_grid
    assert len(df) == 8 and set(df.steps) == {8}  # 12 and 48 training images, 8 steps each
    assert sorted(set(df.n_train)) == [12, 48]
    assert all([h["step"] for h in hist] == [4, 8] for hist in df.history)
    with pytest.raises(ValueError, match=r"one budget in optimizer steps.*Recipe\(steps=N\).*10 epochs"):
        A.label_fraction_grid(sp, ["none"], [0.25, 1.0], [0], recipe=engine.Recipe(epochs=10), progress=False)


def test_paired_verdict_and_claims(step_grid):
    from mednb import claims
    _, _, df = step_grid
    v = A.verdict(df)
    assert list(v.n_seeds) == [2, 2] and set(v.steps) == {8}
    for r in v.itertuples():
        if r.best_policy != "none":
            p = claims.paired(A.by_seed(df, policy=r.best_policy, label_fraction=r.label_fraction),
                              A.by_seed(df, policy="none", label_fraction=r.label_fraction))
            assert r.gain_over_baseline == pytest.approx(p.delta) and r.verdict == p.verdict
            assert r.paired == str(p) and "95 % CI over 2 paired seeds" in A.describe_verdict(v)
    recs = A.record_claims(df, policy="flip")
    assert len(recs) == 3  # one per fraction + the scarce-vs-plenty difference
    assert all(r["budget"] == "8 steps" and r["comparison"] == "policy_x_fraction" and r["n"] == 2 for r in recs)
    assert all(r["verdict"] in claims.VERDICTS for r in recs)


def test_budget_demo_two_budgets_and_reuse(step_grid, monkeypatch):
    sp, recipe, df = step_grid
    calls = []
    train = engine.train
    monkeypatch.setattr(engine, "train", lambda *a, **k: calls.append(k["label_fraction"]) or train(*a, **k))
    demo = A.budget_demo(sp, ["none", "flip"], 0.25, [0, 1], recipe=recipe, epochs=3, reuse=df, device="cpu",
                         progress=False)
    assert len(calls) == 4  # only the equal-epochs arms train; the equal-steps arms are the grid's runs
    by = demo.groupby("budget").steps.unique()
    assert list(by["equal epochs"]) == [3] and list(by["equal steps"]) == [8]  # 12 images: 1 step per epoch
    assert set(demo.full_label_steps) == {9}  # 3 epochs × ⌈48 / 16⌉
    same = demo[demo.budget == "equal steps"].set_index(["policy", "seed"]).test_auc
    grid = df[df.label_fraction == 0.25].set_index(["policy", "seed"]).test_auc
    assert same.sort_index().equals(grid.sort_index())
    table = A.budget_table(demo)
    assert list(table.policy) == ["none", "flip"] and "equal steps: − none" in table.columns
    again = A.label_fraction_grid(sp, ["none"], [0.25], [0], recipe=recipe, reuse=demo, device="cpu",
                                  progress=False)
    assert len(calls) == 4 and again.test_auc[0] == grid.loc[("none", 0)]


def test_records_carry_comparison_and_one_budget(step_grid):
    from mednb import recording
    _, _, df = step_grid
    before = len(recording.recorded())
    n = A.record_rows(df, "policy_x_fraction", tags=("policy", "label_fraction"), model="cnn")
    recs = recording.recorded()[before:]
    assert n == len(recs) == len(df)
    assert {r["comparison"] for r in recs} == {"policy_x_fraction"} and {r["steps"] for r in recs} == {8}
    assert all({"dataset", "seed", "policy", "label_fraction", "model"} <= set(r) for r in recs)


def test_offline_vs_online_one_step_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    sp = data.load("phantom2d", counts=(32, 16, 16), cache=False)
    with pytest.raises(ValueError, match="optimizer steps"):
        A.compare_offline_online(sp, "flip", copies=1, recipe=engine.Recipe(epochs=2, batch_size=16), progress=False)
    df = A.compare_offline_online(sp, "flip", copies=1, recipe=engine.Recipe(steps=4, evals=2, batch_size=16),
                                  device="cpu", progress=False)
    rows = df.set_index("mode")
    assert list(df["mode"]) == ["none", "online", "offline"]
    assert rows.loc["offline", "n_train"] == 2 * rows.loc["online", "n_train"] == 64
    assert set(rows.steps) == {4} and set(rows.images_seen) == {64}  # the same images seen by every mode
    assert rows.loc["none", "policy"] == "none"
    assert rows.loc["offline", "train_bytes"] > 1.9 * rows.loc["online", "train_bytes"]


def test_imbalance_experiment_strategies(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    sp = data.load("phantom2d", counts=(48, 16, 16), cache=False)
    with pytest.raises(ValueError, match="valid: nothing, weighted loss, oversample"):
        A.imbalance_experiment(sp, strategies=["smote"])
    df = A.imbalance_experiment(sp, 0.25, recipe=engine.Recipe(steps=3, evals=1, batch_size=16), device="cpu",
                                progress=False)
    assert list(df.strategy) == list(A.IMBALANCE_STRATEGIES)  # the policy name of a strategy is resolved
    assert set(df.steps) == {3}  # one budget for every strategy
    counts = [int(c) for c in df.train_counts[0].strip("[]").split(",")]
    assert min(counts) == max(1, round(0.25 * max(counts)))
    assert df.test_auc.between(0, 1).all() and df.test_balanced_acc.between(0, 1).all()


def test_elastic_3d_field_matches_2d_displacement():
    """α is rescaled in 3D so that the RMS displacement (px) equals the 2D one for the same σ."""
    from mednb.augment import elastic
    rms = []
    for d, n in ((2, 8), (3, 4)):
        f = elastic.displacement(n, (28,) * d, 4.0, 34.0, seed=0, device="cpu")
        assert f.shape == (n, *(28,) * d, d)
        rms.append(float((f * 14).pow(2).mean().sqrt()))  # normalized units → px (2 / 28 per px)
    assert abs(rms[1] / rms[0] - 1) < 0.1, rms


def test_policy_files_do_not_import_the_engine():
    """Only the experiments import the engine (which takes policies), so there is no import circle."""
    import ast
    from pathlib import Path
    for path in Path(A.__file__).parent.glob("*.py"):
        if path.name in ("experiments.py", "__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
                assert not any("engine" in n for n in names), path.name


def test_throughput_positive(ph2):
    x, _ = ph2
    assert A.throughput(A.get("basic"), x[:8], "cpu", repeats=1) > 0
    assert A.throughput(A.torchvision_policy("flip"), (x[:4] * 255).to(torch.uint8), "cpu", repeats=1) > 0


def test_mask_alignment_table(ph2):
    x, m = ph2
    t = A.mask_alignment(x[:6], m[:6], seed=0)
    assert list(t.policy) == list(A.GEOMETRIC)
    assert (t.dice_moved_mask > 0.85).all()
    assert (t.dice_moved_mask > t.dice_unmoved_mask).all()


def test_explorer_updates_without_waiting(ph2):
    pytest.importorskip("ipywidgets")
    x, m = ph2
    w = A.explorer((x[0] * 255).to(torch.uint8), m[0])
    (pol, strength, seed), caption, (before, after) = w.children[0].children, w.children[1], w.children[2].children
    first = after.value
    assert before.value and first and "strong" in caption.value
    pol.value, strength.value = "elastic", 2.0
    assert after.value != first and "elastic" in caption.value
    assert set(A.names()) | set(A.transforms()) == set(pol.options)  # policies and single transforms
    pol.value = "rotate"
    assert "rotate" in caption.value
    strength.value = 0.0
    assert "strength 0" in caption.value


def test_gallery_figure(ph2):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x, m = ph2
    fig = A.gallery(x[0], ["none", "basic"], n=3, masks=m[0])
    assert len(fig.axes) == 2 * 4
    plt.close(fig)


def test_budget_knobs_of_notebook_02():
    """STEPS / STEPS_3D / EVALS / VAL_LABELS map onto the recipes; a bad VAL_LABELS names the valid rules."""
    import importlib
    params = importlib.import_module("mednb.params")
    for profile in ("smoke", "student", "full"):
        P = params.validate("02_augmentation", {}, profile)
        r2, r3 = engine.Recipe.from_knobs(P), engine.Recipe.from_knobs(P, suffix="_3D")
        assert (r2.steps, r3.steps, r2.val_labels) == (P["STEPS"], P["STEPS_3D"], P["VAL_LABELS"])
        assert r3.batch_size == P["BATCH_SIZE_3D"] and P["DEMO_FRACTION"] in P["LABEL_FRACTIONS"]
    with pytest.raises(params.ParamError, match="unknown validation-label rule 'half'; valid: full, matched"):
        params.validate("02_augmentation", {"VAL_LABELS": "half"}, "smoke")
