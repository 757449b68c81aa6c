"""Tests for mednb.seg: U-Net, wide U-Net, UNet++ (deep supervision, pruning), metrics, data, training."""
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mednb import engine, models, seg
from mednb.data import DataNotFound
from mednb.seg import UNetPlusPlus, pruned
from mednb.runtime import checkpoint_dir

mednb_params = importlib.import_module("mednb.params")  # the module (mednb.params is also the notebook function)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EM = SHARED / "isbi2012_em_membrane"


@pytest.mark.parametrize("name", ["unet", "wide_unet", "unetpp"])
@pytest.mark.parametrize("dims,shape", [(2, (2, 1, 28, 28)), (2, (1, 1, 37, 45)), (3, (1, 1, 12, 17, 19))])
def test_output_shapes_any_size(name, dims, shape):
    torch.manual_seed(0)
    m = models.create(name, 1, 3, dims=dims, width=4, depth=3).eval()
    y = m(torch.randn(shape))
    assert y.shape == (shape[0], 3) + shape[2:]
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_deep_supervision_heads_per_depth(depth):
    m = UNetPlusPlus(1, 2, dims=2, width=2, depth=depth, deep_supervision=True)
    x = torch.randn(2, 1, 20, 20)
    outs = m.train()(x)
    assert isinstance(outs, list) and len(outs) == depth
    assert all(o.shape == (2, 2, 20, 20) for o in outs)
    m.eval()
    assert m(x).shape == (2, 2, 20, 20)  # accurate mode: one averaged map
    plain = UNetPlusPlus(1, 2, dims=2, width=2, depth=depth)
    assert isinstance(plain.train()(x), torch.Tensor) and len(plain.heads) == 1


def test_accurate_mode_averages_head_probabilities():
    torch.manual_seed(1)
    m = UNetPlusPlus(1, 2, dims=2, width=3, depth=3, deep_supervision=True).eval()
    x = torch.randn(2, 1, 16, 16)
    heads = m.head_logits(x)
    expected = torch.stack([h.softmax(1) for h in heads]).mean(0)
    assert torch.allclose(m(x).softmax(1), expected, atol=1e-6)
    assert torch.equal(m(x, mode="fast"), heads[-1])


@pytest.mark.parametrize("dims,shape", [(2, (2, 1, 30, 26)), (3, (1, 1, 10, 12, 9))])
def test_pruned_level_k_is_exactly_the_subnetwork(dims, shape):
    torch.manual_seed(0)
    m = UNetPlusPlus(1, 2, dims=dims, width=3, depth=4 if dims == 2 else 3, deep_supervision=True).eval()
    x = torch.randn(shape)
    full = m.head_logits(x)  # every head of the full network, same weights
    sizes = []
    for k in range(1, m.depth + 1):
        p = pruned(m, k).eval()
        assert torch.equal(p(x), full[k - 1])
        assert torch.equal(m(x, prune_level=k, mode="fast"), full[k - 1])
        sizes.append(models.count_parameters(p))
        # the pruned copy holds only nodes with i + j <= k
        assert set(p.nodes.keys()) == {f"{i}_{j}" for j in range(1, k + 1) for i in range(k - j + 1)}
    assert sizes == sorted(sizes) and sizes[-1] < models.count_parameters(m)


def test_pruned_forward_computes_only_needed_nodes():
    m = UNetPlusPlus(1, 2, dims=2, width=2, depth=4, deep_supervision=True).eval()
    ran = []
    for key, node in m.nodes.items():
        node.register_forward_hook(lambda mod, i, o, key=key: ran.append(key))
    enc = []
    for i, b in enumerate(m.encoder.blocks):
        b.register_forward_hook(lambda mod, inp, o, i=i: enc.append(i))
    m(torch.randn(1, 1, 16, 16), prune_level=2, mode="fast")
    assert sorted(ran) == ["0_1", "0_2", "1_1"] and enc == [0, 1, 2]


def test_pruning_needs_deep_supervision_and_valid_level():
    m = UNetPlusPlus(1, 2, dims=2, width=2, depth=3)
    with pytest.raises(ValueError, match="deep_supervision"):
        m(torch.randn(1, 1, 8, 8), prune_level=1)
    with pytest.raises(ValueError, match="1..3"):
        UNetPlusPlus(1, 2, width=2, depth=3, deep_supervision=True, prune_level=5)
    with pytest.raises(ValueError, match="accurate, fast"):
        UNetPlusPlus(1, 2, width=2, depth=3, mode="slow")


def test_dice_iou_on_hand_made_masks():
    truth = np.zeros((3, 4, 4), bool)
    pred = np.zeros((3, 4, 4), bool)
    truth[0, :2, :2] = True          # 4 px
    pred[0, :2, :3] = True           # 6 px, 4 overlap → dice 8/10, iou 4/6
    truth[1, 0, 0] = True            # missed entirely → 0, 0
    # image 2: both empty → 1, 1 (per image)
    r = seg.dice_iou(pred, truth)
    np.testing.assert_allclose(r["dice_image"], [0.8, 0.0, 1.0])
    np.testing.assert_allclose(r["iou_image"], [4 / 6, 0.0, 1.0])
    # pooled: TP 4, FP 2, FN 1
    assert r["dice"] == pytest.approx(8 / 11) and r["iou"] == pytest.approx(4 / 7)
    same = seg.dice_iou(truth, truth)
    assert same["dice"] == 1.0 and same["iou"] == 1.0
    with pytest.raises(ValueError, match="shape"):
        seg.dice_iou(pred[:, :2], truth)


def test_dice_ce_loss_perfect_vs_wrong_and_deep_supervision_mean():
    masks = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    masks[:, :, 2:5, 2:5] = 1
    good = torch.where(masks.bool(), torch.tensor([-20.0, 20.0]).view(1, 2, 1, 1),
                       torch.tensor([20.0, -20.0]).view(1, 2, 1, 1))
    loss = seg.DiceCELoss()
    assert loss.target == "mask"
    assert float(loss(good, masks)) < 1e-3
    assert float(loss(-good, masks)) > 1.5
    assert float(loss([good, -good], masks)) == pytest.approx((float(loss(good, masks)) + float(loss(-good, masks))) / 2)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("width", [8, 16, 32])
def test_wide_unet_matches_unetpp_parameters_within_10_percent(dims, width):
    with torch.device("meta"):
        wide = models.count_parameters(models.create("wide_unet", 1, 2, dims=dims, width=width, depth=4))
        pp = models.count_parameters(models.create("unetpp", 1, 2, dims=dims, width=width, depth=4))
        unet = models.count_parameters(models.create("unet", 1, 2, dims=dims, width=width, depth=4))
    assert abs(wide - pp) / pp < 0.10
    assert unet < pp  # the plain U-Net is the smaller one


def test_paper_parameter_count_of_unet():
    # Zhou et al. 2018, Table 1: U-Net 7.76M parameters (32..512 filters)
    with torch.device("meta"):
        n = models.count_parameters(models.create("unet", 1, 1, width=32, depth=4))
    assert n / 1e6 == pytest.approx(7.76, abs=0.01)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError) as e:
        models.create("unet+++", 1, 2)
    assert all(n in str(e.value) for n in ("unet", "wide_unet", "unetpp"))
    with pytest.raises(ValueError, match="unet, wide_unet, unetpp"):
        seg.create("cnn")
    with pytest.raises(ValueError, match="phantom2d, phantom3d, em"):
        seg.load("brats")


def _write_pngs(root: Path, n: int, size=(20, 24), unlabeled: int = 2):
    from PIL import Image
    rng = np.random.default_rng(0)
    (root / "train" / "image").mkdir(parents=True)
    (root / "train" / "label").mkdir(parents=True)
    (root / "test" / "image").mkdir(parents=True)
    for i in range(n):
        img = rng.integers(0, 256, size, dtype=np.uint8)
        lab = np.full(size, 255, np.uint8)
        lab[:, i] = 0  # a dark "membrane" column at x = i
        Image.fromarray(img).save(root / "train" / "image" / f"{i}.png")
        Image.fromarray(lab).save(root / "train" / "label" / f"{i}.png")
    Image.fromarray(lab).save(root / "train" / "label" / "orphan.png")  # no image: ignored
    for i in range(unlabeled):
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(root / "test" / "image" / f"{i}.png")


def test_folder_dataset_on_tiny_pngs(tmp_path):
    _write_pngs(tmp_path, 6)
    s = seg.load_folder(tmp_path, split=(3, 1, 2), seed=0, foreground="low")
    assert (len(s.train), len(s.val), len(s.test)) == (3, 1, 2)
    assert s.train.x.dtype == torch.uint8 and s.train.x.shape[1:] == (1, 20, 24)
    assert s.train.masks.shape == s.train.x.shape and s.dims == 2
    files = s.meta["files"]
    assert sorted(files["train"] + files["val"] + files["test"], key=int) == [str(i) for i in range(6)]
    # foreground "low": the dark column is class 1, exactly one column per image
    for name, m in zip(files["train"], s.train.masks):
        assert m.sum() == 20 and m[0, :, int(name)].all()
    assert s.meta["unlabeled"].shape == (2, 1, 20, 24)
    again = seg.load_folder(tmp_path, split=(3, 1, 2), seed=0)
    assert torch.equal(again.train.x, s.train.x)
    other = seg.load_folder(tmp_path, split=(3, 1, 2), seed=1)
    assert other.meta["files"] != files
    high = seg.load_folder(tmp_path, split=(0.5, 0.17, 0.33), foreground="high")
    assert len(high.train) == 3 and int(high.train.masks[0].sum()) == 20 * 23


def test_folder_dataset_missing_gives_numbered_steps(tmp_path):
    with pytest.raises(DataNotFound) as e:
        seg.load_em(tmp_path / "nope")
    msg = str(e.value)
    assert "1." in msg and "2." in msg and "3." in msg and "non-commercial" in msg
    (tmp_path / "image").mkdir()
    (tmp_path / "label").mkdir()
    with pytest.raises(DataNotFound, match="no image/label pairs"):
        seg.load_folder(tmp_path)


@pytest.mark.skipif(not EM.is_dir(), reason="shared ISBI 2012 EM folder absent")
def test_em_folder_from_shared_data():
    s = seg.load_em(EM, split=(20, 4, 6), seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (20, 4, 6)
    assert s.train.x.shape[1:] == (1, 512, 512)
    frac = float(s.train.masks.float().mean())
    assert 0.1 < frac < 0.4  # membranes are the thin minority class
    assert s.meta["unlabeled"].shape == (30, 1, 512, 512)


def test_random_crop_keeps_image_and_mask_aligned():
    x = torch.arange(2 * 10 * 12, dtype=torch.float32).view(2, 1, 10, 12)
    m = x.clone()
    g = torch.Generator().manual_seed(0)
    xc, mc = seg.random_crop(x, m, 6, g)
    assert xc.shape == (2, 1, 6, 6) and torch.equal(xc, mc)
    vol = torch.rand(1, 1, 8, 9, 10)
    assert seg.random_crop(vol, None, 4, g)[0].shape == (1, 1, 4, 4, 4)
    assert seg.center_crop(seg.Split(vol, torch.zeros(1, 1), vol), 4).x.shape == (1, 1, 4, 4, 4)


def test_train_and_pretrain_on_tiny_phantom(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    s = seg.load("phantom2d", 28, counts=(16, 8, 8), cache=False)
    assert s.has_masks and s.labels[1] == "lesion"
    idx = seg.labelled_subset(s.train, 3, seed=0)
    assert len(idx) == 3 and all(s.train.masks[i].any() for i in idx)
    recipe = seg.RECIPE.replace(steps=None, epochs=1)  # restoration pre-training: an epoch budget
    kw = dict(model_kw=dict(width=4, depth=2), progress=False, device="cpu")
    net = seg.pretrain_restoration(s, "unet", None, recipe, **kw)
    ckpts = list(checkpoint_dir("seg").glob("*.pt"))
    assert len(ckpts) == 1
    again = seg.pretrain_restoration(s, "unet", None, recipe, **kw)  # cache hit: same weights, no new file
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    seg.pretrain_restoration(s, "unet", None, recipe.replace(lr=3e-3), **kw)  # other lr: a miss, a second file
    assert len(list(checkpoint_dir("seg").glob("*.pt"))) == 2
    seg.pretrain_restoration(s, "unet", None, recipe.replace(optimizer="adamw"), **kw)  # other optimizer: a miss
    assert len(list(checkpoint_dir("seg").glob("*.pt"))) == 3
    r = seg.train(s, "unetpp", recipe.replace(batch_size=4), model_kw=dict(width=4, depth=2, deep_supervision=True),
                  init=net, train_idx=idx, samples_per_epoch=8, progress=False, device="cpu")
    assert set(r.test) >= {"dice", "iou", "dice_image", "iou_image"} and 0 <= r.test["iou"] <= 1
    assert r.n_train == 3 and len(r.history) == 1 and "val_dice" in r.history[0]
    assert r.steps == 3                                            # 3 images repeated to 9 ≥ 8 samples: 3 batches of 4
    r = seg.train(s, "unet", seg.RECIPE.replace(steps=5, evals=2, batch_size=4), model_kw=dict(width=4, depth=2),
                  train_idx=idx, samples_per_epoch=8, progress=False, device="cpu")
    assert r.steps == 5 and [h["step"] for h in r.history] == [2, 5] and r.n_train == 3


def test_profiles_share_knobs_and_types():
    keys = set(seg.PROFILES["student"])
    for p in ("smoke", "student", "full"):
        assert set(seg.PROFILES[p]) == keys
        for k, v in seg.PROFILES[p].items():
            assert type(v) is type(seg.PROFILES["student"][k]), (p, k)


def test_train_policy_crops_then_augments_jointly():
    pytest.importorskip("mednb.augment")
    policy = seg.train_policy(16, "elastic", 1.0, dims=2)
    x = torch.rand(3, 1, 32, 32)
    m = (x > 0.5).to(torch.uint8)  # the mask is a function of the image...
    xa, ma = policy(x, m, torch.Generator().manual_seed(0))
    assert xa.shape == ma.shape == (3, 1, 16, 16)
    assert set(ma.unique().tolist()) <= {0, 1}
    # ...and stays (mostly) one after the joint warp: nearest-neighbour masks follow the image
    agree = ((xa > 0.5).to(torch.uint8) == ma).float().mean()
    assert agree > 0.8


def test_pruning_table_and_receptive_field():
    torch.manual_seed(0)
    m = UNetPlusPlus(1, 2, dims=2, width=2, depth=3, deep_supervision=True)
    x = torch.randint(0, 256, (4, 1, 12, 12), dtype=torch.uint8)
    split = seg.Split(x, torch.zeros(4, 1, dtype=torch.long), (x > 128).to(torch.uint8))
    t = seg.pruning_table(m, split, device="cpu", repeats=1)
    assert t.prune_level.tolist() == [1, 2, 3]
    assert t.params.is_monotonic_increasing and (t.ms_per_image > 0).all()
    assert t.iou.between(0, 1).all()
    # receptive field of three 3×3 convolutions: 7 px wide; with dilations 1, 2, 4: 15 px wide
    assert (seg.receptive_field((1, 1, 1)).max(0) > 0).sum() == 7
    assert (seg.receptive_field((1, 2, 4)).max(0) > 0).sum() == 15


def test_claims_compute_paired_gains_and_the_goal():
    import pandas as pd
    rows = [dict(label=l, model=m, seed=s, iou=v, dice=v, params=p, dataset="em")
            for s, (u, w, pp, ds) in enumerate([(0.50, 0.52, 0.51, 0.53), (0.60, 0.61, 0.60, 0.605)])
            for l, m, v, p in (("U-Net", "unet", u, 100), ("wide U-Net", "wide_unet", w, 120),
                               ("UNet++", "unetpp", pp, 118), ("UNet++ DS", "unetpp", ds, 119))]
    runs = pd.DataFrame(rows)
    np.testing.assert_allclose(seg.iou_gain(runs), [3.0, 0.5])  # paired per seed, in IoU points
    text = seg.goal_verdict(runs)
    p = seg.paired_gain(runs)
    assert p.n == 2 and p.delta == pytest.approx(1.75) and p.lo < 0 < p.hi and p.verdict == "within noise"
    assert str(p) in text and "undecided (the interval spans it)" in text and "within one sd" not in text
    one = seg.goal_verdict(runs[runs.seed == 1])
    assert "one seed" in one and "undecided" in one
    unet = runs[runs.label == "U-Net"].iou.to_numpy()
    sure, worse = runs.copy(), runs.copy()
    sure.loc[sure.label == "UNet++ DS", "iou"] = unet + [0.05, 0.051]   # +5.0, +5.1 points: interval above +1
    worse.loc[worse.label == "UNet++ DS", "iou"] = unet - [0.03, 0.031]  # −3.0, −3.1 points: interval below +1
    assert "→ goal ≥ +1 met" in seg.goal_verdict(sure) and "→ better" in seg.goal_verdict(sure)
    assert "NOT met" in seg.goal_verdict(worse)
    assert "this run used phantom2d" in seg.goal_verdict(runs.assign(dataset="phantom2d"))
    table = seg.claims(runs)
    assert table.ours.str.contains("goal ≥ \\+1").any()
    assert seg.goal_verdict(runs[runs.label != "U-Net"]) == "–"
    eff = pd.DataFrame(dict(n_requested=[1, 1, 0], n_labelled=[1, 1, 16], init=["scratch", "pretrained", "scratch"],
                            seed=0, iou=[0.2, 0.3, 0.6]))
    assert "IoU pretrained 0.300 vs scratch 0.200" in seg.claims(runs, label_eff=eff).ours.iloc[-1]
    assert len(seg.claims(runs, label_eff=eff[eff.n_requested == 0])) == len(table)  # all labels: no few-label row
    recs = seg.record_claims(runs.assign(steps=40), eff.assign(steps=24))
    assert [r["comparison"] for r in recs] == ["architectures_2d", "architectures_2d", "label_efficiency"]
    assert [r["budget"] for r in recs] == ["40 steps", "40 steps", "24 steps"]
    assert recs[0]["verdict"] == "within noise" and recs[0]["paper"].startswith("+3.9")
    with pytest.raises(ValueError, match="different budgets"):
        seg.record_claims(runs.assign(steps=[40, 41] * 4))


def test_recipe_reaches_engine_fit_unchanged(monkeypatch):
    """seg.fit hands engine.fit the segmentation recipe (None → seg.RECIPE) and a callable crop policy;
    pretraining keeps its recipe but selects the last epoch; a selection without a segmentation score fails early."""
    assert seg.RECIPE == engine.Recipe(steps=160, lr=1e-3, batch_size=8, schedule="cosine", select="val_loss")
    seen = []

    class Called(Exception):
        pass

    def fake_fit(model, splits, recipe=None, **kw):
        seen.append((recipe, kw))
        raise Called

    monkeypatch.setattr(engine, "fit", fake_fit)
    s = seg.load("phantom2d", 28, counts=(4, 2, 2), cache=False)
    for recipe, expected in ((None, seg.RECIPE), (seg.RECIPE.replace(lr=5e-3), seg.RECIPE.replace(lr=5e-3))):
        with pytest.raises(Called):
            seg.train(s, "unet", recipe, model_kw=dict(width=2, depth=1), crop=16, device="cpu")
        assert seen[-1][0] == expected and callable(seen[-1][1]["augment"]) and seen[-1][1]["loss_fn"].target == "mask"
    with pytest.raises(Called):
        seg.pretrain_restoration(s, "unet", recipe=seg.RECIPE.replace(epochs=2), model_kw=dict(width=2, depth=1),
                                 device="cpu", cache=False)
    assert seen[-1][0] == seg.RECIPE.replace(epochs=2, select="last")
    with pytest.raises(ValueError, match="val_loss, last"):
        seg.fit(seg.create("unet", width=2, depth=1), s, engine.Recipe(select="val_auc"))


def test_notebook_knobs_give_the_profile_recipes():
    """The notebook's recipes from its knobs, one step budget per comparison: 2D (STEPS), 3D (STEPS_3D) and label
    efficiency (STEPS_LABEL); no epoch knob is left for a comparison's training."""
    for p in seg.PROFILES.values():
        assert not {"EPOCHS", "EPOCHS_3D", "EPOCHS_LABEL"} & set(p)
        base = seg.RECIPE.replace(lr=p["LR"], batch_size=p["BATCH_SIZE"], val_labels=p["VAL_LABELS"], evals=p["EVALS"])
        assert engine.Recipe.from_knobs(p, seg.RECIPE) == base.replace(steps=p["STEPS"])
        assert engine.Recipe.from_knobs(p, seg.RECIPE, "_3D") == base.replace(steps=p["STEPS_3D"], evals=p["EVALS_3D"])
        assert engine.Recipe.from_knobs(p, seg.RECIPE, "_LABEL") == base.replace(steps=p["STEPS_LABEL"])
    with pytest.raises(mednb_params.ParamError, match="valid: full, matched"):
        mednb_params.validate("05_unetpp_segmentation", {"VAL_LABELS": "all"}, "smoke")


def test_every_arm_of_a_comparison_trains_the_same_steps(monkeypatch):
    """compare and label_efficiency: 1 labelled image or all, scratch or pre-trained, every architecture — the same
    optimizer steps, in the frames' steps column; a step budget hands engine.fit the labelled indices unrepeated."""
    s = seg.load("phantom2d", 28, counts=(12, 4, 4), cache=False)
    recipe = seg.RECIPE.replace(steps=3, evals=3, batch_size=4)
    sizes = []
    real = engine.fit

    def spy(model, splits, recipe=None, **kw):
        sizes.append(len(kw["train_idx"]))
        return real(model, splits, recipe, **kw)

    monkeypatch.setattr(engine, "fit", spy)
    kw = dict(width=2, depth=1, device="cpu", progress=False, samples_per_epoch=8)
    runs, fitted = seg.compare(s, (0,), recipe, **kw)
    assert set(runs.steps) == {3} and len(fitted) == len(seg.CONFIGS)
    enc = seg.create("unet", 1, 2, width=2, depth=1)
    eff, fits = seg.label_efficiency(s, [1, 0], (0, 1), recipe, pretrained=enc, **kw)
    assert set(eff.steps) == {3} and len(eff) == 8 and set(fits) == {(n, i, sd) for n in (1, 0)
                                                                    for i in ("scratch", "pretrained") for sd in (0, 1)}
    assert sizes[-8:] == [1, 1, 12, 12] * 2                           # no repetition up to samples_per_epoch
    assert all([h["step"] for h in r.history] == [1, 2, 3] for r in fits.values())
    table = seg.convergence_table(fits, 1)
    assert list(table.init) == ["scratch", "pretrained"] and (table["share of the budget"] <= 1).all()


def test_bad_folder_options_name_valid_choices(tmp_path):
    _write_pngs(tmp_path, 3)
    with pytest.raises(ValueError, match="low, high"):
        seg.load_folder(tmp_path, split=(1, 1, 1), foreground="middle")
    with pytest.raises(ValueError, match="needs 9 labelled images; 3 found"):
        seg.load_folder(tmp_path, split=(5, 2, 2))
