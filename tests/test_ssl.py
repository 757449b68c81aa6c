"""Tests of mednb.ssl: pretext losses, Models Genesis transforms, jigsaw permutations, BYOL's EMA,
DeepCluster's reassignment, the checkpoint cache and the evaluation helpers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mednb import data, models
from mednb import ssl as S
from mednb.runtime import code_version
from mednb.ssl import genesis as G
from mednb.ssl.deepcluster import fill_empty_clusters
from mednb.ssl.jigsaw import Jigsaw, min_hamming, permutation_set, tiles, validate_permutations


def _images(n=8, size=16, dims=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish structured images: a random blob per image plus noise
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, size)] * dims, indexing="ij"))
    c = torch.rand((n, dims) + (1,) * dims, generator=g) - 0.5
    r = ((grid[None] - c) ** 2).sum(1, keepdim=True)
    x = torch.exp(-r / 0.2) + 0.2 * torch.rand((n, 1) + (size,) * dims, generator=g)
    return (x / x.amax() * 255).to(torch.uint8)


def _model(dims=2, size=16):
    torch.manual_seed(0)
    return models.create("cnn", 1, 2, dims=dims, size=size, width=8)


KW = {"jigsaw": dict(grid=2, n_perms=12), "deepcluster": dict(k=3, pca_dim=4)}


@pytest.mark.parametrize("method", S.names())
def test_pretext_loss_falls_on_one_batch(method):
    x = _images(8, 16)
    obj = S.create(method, _model(), 1, 16, 2, **KW.get(method, {}))
    g0 = torch.Generator().manual_seed(0)
    obj.train()
    obj.start_epoch(x, torch.device("cpu"), g0, 8)
    opt = torch.optim.Adam(obj.trainable_parameters(), lr=3e-3)
    xf, idx = x.float() / 255, torch.arange(len(x))
    losses = []
    for _ in range(10):
        loss, _ = obj.loss(xf, idx, torch.Generator().manual_seed(1))  # same augmentations every step
        opt.zero_grad()
        loss.backward()
        opt.step()
        obj.after_step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-3:]) < 0.9 * losses[0], losses


@pytest.mark.parametrize("method", ["rotation", "jigsaw", "genesis"])
def test_pretext_3d_loss_falls(method):
    x = _images(4, 16, dims=3)
    obj = S.create(method, _model(3, 16), 1, 16, 3, **({"n_perms": 8} if method == "jigsaw" else {}))
    opt = torch.optim.Adam(obj.trainable_parameters(), lr=3e-3)
    xf, idx = x.float() / 255, torch.arange(len(x))
    losses = []
    for _ in range(8):
        loss, _ = obj.loss(xf, idx, torch.Generator().manual_seed(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert min(losses[-3:]) < 0.9 * losses[0], losses


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match="unknown ssl method 'nope'; valid: rotation, jigsaw"):
        S.pretrain("nope", _model(), _images(), epochs=1, batch_size=4, lr=1e-3, cache=False, progress=False)
    with pytest.raises(ValueError, match="uint8"):
        S.pretrain("rotation", _model(), _images().float(), epochs=1, batch_size=4, lr=1e-3, cache=False)


@pytest.mark.parametrize("dims", [2, 3])
def test_genesis_transforms_keep_shape_and_range(dims):
    x = _images(6, 16, dims).float() / 255
    g = torch.Generator().manual_seed(0)
    xt, target = G.transform(x, g)
    assert xt.shape == x.shape and target.shape == x.shape
    assert xt.min() >= 0 and xt.max() <= 1
    assert not torch.equal(xt, target)
    # target is the original up to flips: same sorted values per sample
    assert torch.allclose(target.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    for fn in (lambda v: G.nonlinear(v, 1.0, g), lambda v: G.local_shuffle(v, 1.0, g),
               lambda v: G.inpaint(v, g), lambda v: G.outpaint(v, g), lambda v: G.flip(v, 1.0, g)):
        y = fn(x)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    # local shuffling only moves values within each sample
    y = G.local_shuffle(x, 1.0, g, block=2)
    assert not torch.equal(y, x)
    assert torch.equal(y.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_genesis_identity_with_zero_probabilities():
    for dims in (2, 3):
        x = _images(4, 16, dims).float() / 255
        xt, target = G.transform(x, torch.Generator().manual_seed(0), flip_prob=0, local_shuffle_prob=0,
                                 nonlinear_prob=0, paint_prob=0)
        assert torch.equal(xt, x) and torch.equal(target, x)
        assert torch.equal(G.nonlinear(x, 0.0), x) and torch.equal(G.local_shuffle(x, 0.0), x)
        assert torch.equal(G.paint(x, 0.0), x)


def test_genesis_paper_probabilities_and_bezier_curves():
    assert G.PROBS == dict(flip=0.4, local_shuffle=0.5, nonlinear=0.9, paint=0.9, outpaint=0.8)
    xs, ys = G.bezier_luts(64, torch.Generator().manual_seed(0))
    assert (xs.diff(dim=1) >= 0).all()
    mono = (ys.diff(dim=1) >= 0).all(1) | (ys.diff(dim=1) <= 0).all(1)
    assert mono.all()  # every curve is monotone (half of them inverted)
    inverted = (ys[:, 0] > ys[:, -1]).float().mean()
    assert 0.2 < inverted < 0.8
    with pytest.raises(ValueError, match="valid: flip_prob"):
        G.GenesisTransform(flip=0.1)


def test_jigsaw_permutations_valid():
    p = permutation_set(9, 30, seed=0)
    assert p.shape == (30, 9)
    assert (np.sort(p, 1) == np.arange(9)).all() and len(np.unique(p, axis=0)) == 30
    assert min_hamming(p) >= 6  # maximal-Hamming selection keeps the puzzles far apart
    full = permutation_set(4, 24)
    assert len(np.unique(full, axis=0)) == 24
    for bad in ([[0, 1, 2], [0, 1, 1]], [[0, 1, 2], [0, 1, 2]], [[0, 1, 3], [1, 0, 2]], [[0, 1, 2]]):
        with pytest.raises(ValueError):
            validate_permutations(bad, 3)
    with pytest.raises(ValueError, match="exceeds"):
        permutation_set(3, 7)


def test_jigsaw_tiles_are_the_permuted_image():
    x = _images(3, 16).float() / 255
    obj = Jigsaw(_model(), 1, 16, 2, grid=2, n_perms=10, gap=0)
    g = torch.Generator().manual_seed(0)
    shuffled, label = obj.make_batch(x, g)
    original = tiles(x, 2, 0)
    assert shuffled.shape == (3, 4, 1, 8, 8)
    for i in range(3):
        perm = obj.perms[label[i]]
        assert torch.equal(shuffled[i], original[i, perm])


def test_byol_target_updated_only_by_ema():
    obj = S.create("byol", _model(), 1, 16, 2, tau=0.9)
    x = _images(8, 16).float() / 255
    tgt = [p.detach().clone() for p in obj.target.parameters()]
    assert not any(p.requires_grad for p in obj.target.parameters())
    opt = torch.optim.SGD(obj.trainable_parameters(), lr=0.1)
    assert all(p.data_ptr() not in {q.data_ptr() for q in obj.target.parameters()}
               for g in opt.param_groups for p in g["params"])
    loss, _ = obj.loss(x, torch.arange(8), torch.Generator().manual_seed(0))
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in obj.target.parameters())
    opt.step()
    # the optimizer step leaves the target untouched
    assert all(torch.equal(a, b) for a, b in zip(tgt, obj.target.parameters()))
    online = [p.detach().clone() for _, onl in obj.online_pairs() for p in onl.parameters()]
    obj.after_step()
    for old, new, o in zip(tgt, obj.target.parameters(), online):
        assert torch.allclose(new, 0.9 * old + 0.1 * o, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(tgt, obj.target.parameters()))


def test_deepcluster_fills_empty_clusters():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((20, 4)).astype(np.float32)
    labels = np.zeros(20, np.int64)  # clusters 1..4 empty
    out = fill_empty_clusters(labels, feats, 5)
    assert (np.bincount(out, minlength=5) > 0).all()
    same = np.zeros((6, 2), np.float32)  # identical points: the split falls back to a random half
    assert (np.bincount(fill_empty_clusters(np.zeros(6, np.int64), same, 3), minlength=3) > 0).all()
    with pytest.raises(ValueError):
        fill_empty_clusters(np.zeros(2, np.int64), feats[:2], 3)


def test_deepcluster_start_epoch_fills_empty_kmeans_clusters(monkeypatch):
    from mednb.ssl import deepcluster as D
    monkeypatch.setattr(D, "kmeans", lambda feats, k, seed=0, n_iter=20: np.zeros(len(feats), np.int64))
    obj = S.create("deepcluster", _model(), 1, 16, 2, k=4, pca_dim=4)
    info = obj.start_epoch(_images(12, 16), torch.device("cpu"), torch.Generator().manual_seed(0), 8)
    assert info["empty_clusters"] == 3  # k-means left 3 of 4 clusters empty...
    counts = np.bincount(obj.assignments[-1], minlength=4)
    assert (counts > 0).all() and counts.sum() == 12  # ...and every cluster got members before training
    assert torch.isfinite(obj.weights).all()  # inverse-size class weights stay finite
    loss, _ = obj.loss(_images(12, 16).float() / 255, torch.arange(12), torch.Generator().manual_seed(0))
    assert math.isfinite(float(loss.detach()))


def test_deepcluster_reassigns_each_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    x = _images(16, 16)
    res = S.pretrain("deepcluster", _model(), x, epochs=3, batch_size=8, lr=1e-3, cache=False, progress=False,
                     k=4, pca_dim=4)
    dc = res.method
    assert len(dc.assignments) == 3
    for a in dc.assignments:
        assert a.shape == (16,) and (np.bincount(a, minlength=4) > 0).all()
    assert "nmi_prev" in res.history[1] and "nmi_prev" not in res.history[0]
    assert all(0 <= h["nmi_prev"] <= 1 for h in res.history[1:])
    assert torch.equal(dc.labels.cpu(), torch.as_tensor(dc.assignments[-1]))


def test_checkpoint_cache_hit_and_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    x = _images(8, 16)
    kw = dict(epochs=1, batch_size=4, lr=1e-3, progress=False, dataset="toy", all_rotations=False)
    r1 = S.pretrain("rotation", _model(), x, **kw)
    assert not r1.cached and r1.checkpoint.exists()
    assert r1.checkpoint.parent == tmp_path / "checkpoints" / "ssl" / code_version()
    assert r1.checkpoint.name.startswith("rotation_toy_cnn_")
    r2 = S.pretrain("rotation", _model(), x, **kw)  # fresh weights, reloaded from the cache
    assert r2.cached and r2.checkpoint == r1.checkpoint and r2.history == r1.history
    for a, b in zip(r1.model.state_dict().values(), r2.model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(r1.method.head.weight, r2.method.head.weight)
    r3 = S.pretrain("rotation", _model(), x, force=True, **kw)
    assert not r3.cached
    r4 = S.pretrain("rotation", _model(), x, **{**kw, "lr": 2e-3})  # other parameters: a miss
    assert not r4.cached and r4.checkpoint != r1.checkpoint
    r5 = S.pretrain("rotation", _model(), _images(8, 16, seed=1), **kw)  # other data: a miss
    assert not r5.cached and r5.checkpoint != r1.checkpoint
    assert len(list(S.checkpoint_dir().glob("*.pt"))) == 3


@pytest.mark.parametrize("dims,size", [(2, 28), (2, 16), (3, 16)])
def test_decoder_restores_input_size(dims, size):
    m = _model(dims, size)
    obj = S.create("autoencoder", m, 1, size, dims)
    x = torch.rand((2, 1) + (size,) * dims)
    assert obj.restore(x).shape == x.shape


def test_pretrain_history_and_evaluation(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    sp = data.load("phantom2d", 28, counts=(48, 24, 24), cache=False, n_classes=2)
    knn = S.knn_monitor(sp, n_bank=48, n_query=24)
    model = models.create("cnn", 1, sp.n_outputs, size=28, width=8)
    res = S.pretrain("genesis", model, sp.train.x, epochs=2, batch_size=16, lr=1e-3, progress=False,
                     dataset=sp.name, knn=knn)
    assert [h["epoch"] for h in res.history] == [1, 2]
    assert all(0 <= h["knn_acc"] <= 1 and math.isfinite(h["loss"]) for h in res.history)
    recs = S.compare({"genesis": res.model}, sp, model_name="cnn", fractions=[0.5], seeds=[0],
                     recipe=S.FINETUNE.replace(epochs=1), progress=False, model_kw={"width": 8})
    assert {(r["method"], r["protocol"]) for r in recs} == {(m, p) for m in ("scratch", "genesis")
                                                            for p in ("linear", "finetune")}
    assert all(0 <= r["test_auc"] <= 1 and r["n_train"] == 24 for r in recs)
    emb = S.embedding_2d(res.model, sp.test.x)
    assert emb.shape == (24, 2)
    with pytest.raises(ValueError, match="unknown protocol"):
        S.compare({}, sp, model_name="cnn", protocols=["knn"])


def test_profiles_cover_all_methods():
    assert set(S.PROFILES) == {"smoke", "student", "full"}
    keys = set(S.PROFILES["student"])
    assert all(set(p) == keys for p in S.PROFILES.values())
    assert S.PROFILES["full"]["METHODS"] == S.names()
    assert set(S.PROFILES["smoke"]["METHODS"]) <= set(S.PROFILES["student"]["METHODS"]) | {"genesis"}
    assert "simclr" in S.PROFILES["student"]["METHODS"]
    for p in S.PROFILES.values():  # fine-tuning budgets in steps, no epoch knobs
        assert {"STEPS", "STEPS_3D", "VAL_LABELS"} <= set(p) and not {"FT_EPOCHS", "FT_EPOCHS_3D"} & set(p)


def test_finetune_recipe_and_budget_knobs():
    import importlib
    params = importlib.import_module("mednb.params")
    v = params.validate("04_self_supervised", {"VAL_LABELS": "matched"}, "smoke")
    r, r3 = S.finetune_recipe(v), S.finetune_recipe(v, "_3D")
    assert (r.steps, r.lr, r.batch_size, r.val_labels, r.schedule) == (v["STEPS"], v["FT_LR"], 16, "matched", "cosine")
    assert (r3.steps, r3.batch_size) == (v["STEPS_3D"], 4)
    for bad, match in (({"STEPS": 0}, "STEPS: a budget in optimizer steps"), ({"VAL_LABELS": "x"}, "full, matched")):
        with pytest.raises(params.ParamError, match=match):
            params.validate("04_self_supervised", bad, "smoke")


def test_every_finetuning_arm_trains_the_same_steps_and_verdicts_are_paired(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    sp = data.load("phantom2d", 28, counts=(48, 16, 24), cache=False, n_classes=2)
    torch.manual_seed(1)
    enc = models.create("cnn", 1, sp.n_outputs, size=28, width=8)
    hist = {}
    recipe = S.FINETUNE.replace(steps=6, evals=3, batch_size=8)
    recs = S.compare({"enc": enc}, sp, model_name="cnn", fractions=[0.25, 1.0], seeds=[0, 1], recipe=recipe,
                     progress=False, model_kw={"width": 8}, histories=hist)
    ft = [r for r in recs if r["protocol"] == "finetune"]
    assert {r["steps"] for r in ft} == {6} and {r["steps"] for r in recs if r["protocol"] == "linear"} == {0}
    assert {r["n_train"] for r in ft} == {12, 48}
    assert set(hist) == {(m, f, s) for m in ("scratch", "enc") for f in (0.25, 1.0) for s in (0, 1)}
    assert all([e["step"] for e in h] == [2, 4, 6] for h in hist.values())
    import pandas as pd
    d = pd.DataFrame(ft)
    p = S.paired_vs(d, "enc", "scratch", 0.25)
    a = d[(d.method == "enc") & (d.label_fraction == 0.25)].set_index("seed").test_auc
    b = d[(d.method == "scratch") & (d.label_fraction == 0.25)].set_index("seed").test_auc
    assert p.n == 2 and p.delta == pytest.approx((a - b).mean())
    from mednb.ssl import figures
    text = figures.verdict(pd.DataFrame(recs), fraction=0.25)
    assert "[finetune] enc − scratch at 25% labels: Δ" in text and "95 % CI over 2 paired seeds" in text
    assert "6 fine-tuning steps for every arm" in text and "within one sd" not in text
    summary = S.convergence_summary({"scratch": [hist[("scratch", 0.25, s)] for s in (0, 1)],
                                     "enc": [hist[("enc", 0.25, s)] for s in (0, 1)]})
    assert summary.startswith("scratch: final val_auc") and "of 6" in summary


def test_convergence_summary_reads_where_each_curve_settles():
    def hist(vals):
        return [{"epoch": i + 1, "step": 10 * (i + 1), "val_auc": v} for i, v in enumerate(vals)]
    fast = hist([0.84, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85])
    slow = hist([0.5, 0.6, 0.7, 0.8, 0.89, 0.9, 0.9, 0.9])
    late = hist([0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9])
    text = S.convergence_summary({"pretrained": [fast], "scratch": [slow]})
    assert "pretrained: final val_auc 0.850" in text and "from step 10 of 80 → converged" in text
    assert "scratch: final val_auc 0.900" in text and "from step 50 of 80 → converged" in text
    assert "pretrained settles first (step 10 vs 50 for scratch)" in text
    assert "still moving late" in S.convergence_summary({"scratch": [late]})
    with pytest.raises(ValueError, match="step budget"):
        S.convergence_summary({"x": [[{"epoch": 1, "val_auc": 0.5}]]})
