"""mednb.engine: determinism, label fractions, device vs reference path, streaming, every task type."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mednb import data, engine
from mednb.data import Split, Splits, label_subset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist"


def _synthetic(task="multi-class", k=3, n=(48, 16, 16), dims=2, side=12, channels=1, seed=0):
    """Tiny Splits whose class is visible in the mean intensity (so a model can learn it)."""
    g = torch.Generator().manual_seed(seed)
    shape = (channels,) + (side,) * dims

    def split(m):
        if task.startswith("multi-label"):
            y = (torch.rand(m, k, generator=g) < 0.4).long()
            y[0], y[1] = 1, 0
            level = y.float().mean(1)
        else:
            y = torch.arange(m).remainder(k).view(m, 1)
            level = y[:, 0].float() / max(k - 1, 1)
        x = (level.view(m, *([1] * len(shape))) * 160 + torch.rand(m, *shape, generator=g) * 90).to(torch.uint8)
        return Split(x, y)
    labels = {i: f"c{i}" for i in range(k)}
    return Splits("synthetic", side, task, labels, channels, dims, split(n[0]), split(n[1]), split(n[2]))


FAST_RECIPE = engine.Recipe(epochs=2, batch_size=16)
FAST = dict(recipe=FAST_RECIPE, progress=False, model_kw={"width": 4})


@pytest.mark.parametrize("task,k", [("binary-class", 2), ("multi-class", 3), ("ordinal-regression", 5),
                                    ("multi-label, binary-class", 4)])
def test_every_task_type_trains_and_evaluates(task, k):
    s = _synthetic(task, k)
    res = engine.train(s, "cnn", seed=0, **FAST)
    assert len(res.history) == 2 and 1 <= res.best_epoch <= 2
    assert set(res.test) >= {"auc", "acc", "balanced_acc", "loss"}
    assert 0 <= res.test["auc"] <= 1 and 0 <= res.test["acc"] <= 1 and res.test["loss"] > 0
    assert math.isnan(res.test["balanced_acc"]) == task.startswith("multi-label")
    scores = engine.predict(res.model, s.test.x, task, "cpu")
    assert scores.shape == (16, k)
    if task.startswith("multi-label"):  # independent sigmoids
        assert not np.allclose(scores.sum(1), 1)
    else:
        assert np.allclose(scores.sum(1), 1, atol=1e-5)


def test_loss_per_task_type():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    ce = engine.loss_for("ordinal-regression")(logits, torch.tensor([[2]]))
    assert ce.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.tensor([2])).item())
    bce = engine.loss_for("multi-label, binary-class")(logits, torch.tensor([[1, 0, 1]]))
    assert bce.item() == pytest.approx(torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.tensor([[1.0, 0.0, 1.0]])).item())


def test_same_seed_is_deterministic_on_cpu():
    s = _synthetic("multi-class", 3)
    a = engine.train(s, "cnn", seed=3, device="cpu", **FAST)
    b = engine.train(s, "cnn", seed=3, device="cpu", **FAST)
    assert a.test == b.test
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    c = engine.train(s, "cnn", seed=4, device="cpu", **FAST)
    assert [h["train_loss"] for h in c.history] != [h["train_loss"] for h in a.history]


def test_label_fraction_is_stratified_and_seeded():
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10).view(-1, 1)
    idx = label_subset(y, 0.1, seed=0)
    counts = torch.bincount(y[idx, 0], minlength=3).tolist()
    assert counts == [6, 3, 1]
    assert torch.equal(idx, label_subset(y, 0.1, seed=0))
    assert not torch.equal(idx, label_subset(y, 0.1, seed=1))
    assert len(label_subset(y, 0.001, seed=0)) == 3  # at least one per class
    assert len(label_subset(y, 1.0)) == 100
    with pytest.raises(ValueError):
        label_subset(y, 0.0)
    res = engine.fit(engine_model(), _synthetic("multi-class", 3, n=(60, 12, 12)),
                     engine.Recipe(epochs=1, batch_size=8), label_fraction=0.5, progress=False)
    assert res.n_train == 30


def engine_model(k=3, dims=2):
    from mednb import models
    torch.manual_seed(0)
    return models.create("cnn", 1, k, dims=dims, width=4)


@pytest.mark.parametrize("dims,channels", [(2, 1), (2, 3), (3, 1)])
def test_reference_and_device_paths_give_the_same_normalized_pixels(dims, channels):
    s = _synthetic("multi-class", 3, n=(20, 4, 4), dims=dims, side=8, channels=channels)
    ds = engine.ReferenceDataset(s.train)  # PIL -> ToTensor -> Normalize(.5, .5) per sample
    ref = torch.stack([ds[i][0] for i in range(len(ds))])
    dev = engine.normalize(s.train.x)  # batched uint8 -> float on the device
    assert ref.shape == dev.shape
    assert torch.allclose(ref, dev, atol=1e-6)
    assert ref.mean().item() == pytest.approx(dev.mean().item(), abs=1e-6)
    assert ref.std().item() == pytest.approx(dev.std().item(), abs=1e-6)
    assert torch.equal(torch.stack([ds[i][1] for i in range(len(ds))]), s.train.y)
    assert -1 <= dev.min() and dev.max() <= 1


def test_reference_loader_trains_like_the_device_loader():
    s = _synthetic("binary-class", 2)
    for loader in ("device", "reference"):
        res = engine.fit(engine_model(2), s, engine.Recipe(epochs=1, batch_size=16), loader=loader, progress=False)
        assert res.n_train == 48 and res.images_per_s > 0 and 0 <= res.best["val_auc"] <= 1
    with pytest.raises(ValueError, match="valid: device, reference"):
        engine.fit(engine_model(2), s, loader="dali")


def test_streaming_stage_gives_the_same_batches():
    s = _synthetic("multi-class", 3, n=(30, 4, 4))
    s.train.masks = (s.train.x > 128).to(torch.uint8)
    resident = engine.stage(s.train, "cpu", resident=True)
    logs = []
    streamed = engine.stage(s.train, "cpu", resident=False, log=logs.append)
    assert resident.resident and not streamed.resident
    assert logs and "streaming" in logs[0]
    order = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    for i in range(0, 30, 8):
        for a, b in zip(resident.batch(order[i:i + 8]), streamed.batch(order[i:i + 8])):
            assert torch.equal(a, b)
    via_iter = list(streamed.batches(order, 8))  # the iterator fit() uses
    assert len(via_iter) == 4
    for (xa, ya, ma), i in zip(via_iter, range(0, 30, 8)):
        assert torch.equal(xa, s.train.x[order[i:i + 8]]) and torch.equal(ya, s.train.y[order[i:i + 8]])
        assert torch.equal(ma, s.train.masks[order[i:i + 8]])
    assert engine.placement(10**12, torch.device("cpu"))  # CPU: always resident


def test_multistep_schedule_matches_paper_protocol():
    P = engine.PAPER
    assert (P.lr, P.batch_for(2), P.batch_for(3), P.epochs, P.optimizer) == (1e-3, 128, 32, 100, "adam")
    assert (P.schedule, P.milestones, P.gamma, P.select) == ("multistep", (0.5, 0.75), 0.1, "val_auc")
    s = _synthetic("multi-class", 3, n=(16, 8, 8))
    seen = []
    res = engine.fit(engine_model(), s, engine.PAPER.replace(epochs=4, batch_size=16), progress=False,
                     callbacks=[lambda log: seen.append(log["lr"])])
    # LR x0.1 after 50 % and 75 % of training (the logged lr is the one for the next epoch)
    assert seen == pytest.approx([1e-3, 1e-4, 1e-5, 1e-5])
    assert len(res.history) == 4


def test_selection_early_stopping_callbacks_and_checkpoints(tmp_path):
    s = _synthetic("multi-class", 3)
    logs = []

    def stop_at_two(log):
        logs.append(log)
        if log["epoch"] == 2:
            raise engine.StopTraining

    ck = tmp_path / "ck" / "best.pt"
    res = engine.fit(engine_model(), s, engine.Recipe(epochs=5, batch_size=16), progress=False, callbacks=[stop_at_two],
                     checkpoint=ck)
    assert len(res.history) == 2 and [l["epoch"] for l in logs] == [1, 2]
    assert res.best["val_auc"] == max(h["val_auc"] for h in res.history)
    assert {"train_loss", "val_auc", "val_acc", "val_loss", "lr", "seconds"} <= set(res.history[0])
    m2 = engine_model()
    meta = engine.load_checkpoint(m2, ck)
    assert meta["epoch"] == res.best_epoch
    for (k, a), b in zip(res.model.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    # early stopping: a validation score that never improves stops after `patience` more epochs
    flat = lambda model, split: {"val_auc": 0.5}  # noqa: E731
    res = engine.fit(engine_model(), s, engine.Recipe(epochs=6, batch_size=16, patience=2), progress=False, eval_fn=flat)
    assert res.best_epoch == 1 and len(res.history) == 3
    res = engine.fit(engine_model(), s, engine.Recipe(epochs=3, batch_size=16, select="last"), progress=False,
                     eval_fn=flat)
    assert res.best_epoch == 3
    with pytest.raises(ValueError, match="valid: val_auc"):
        engine.Recipe(select="best")


def test_class_imbalance_options():
    s = _synthetic("multi-class", 3, n=(40, 8, 8))
    s.train = s.train.subset(torch.tensor([i for i in range(40) if i % 3 != 2 or i < 6]))
    w = engine.class_weights(s.train.y, s.task, 3)
    counts = torch.bincount(s.train.y[:, 0], minlength=3).float()
    assert torch.allclose(w * counts, torch.full((3,), len(s.train.y) / 3))
    for kw in ({"class_weight": "balanced"}, {"sampler": "balanced"}, {"sampler": "balanced", "loader": "reference"}):
        res = engine.fit(engine_model(), s, engine.Recipe(epochs=1, batch_size=8), progress=False, **kw)
        assert math.isfinite(res.history[0]["train_loss"])
    with pytest.raises(ValueError, match="valid: None, 'balanced'"):
        engine.fit(engine_model(), s, sampler="oversample")


def test_phantom_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    s = data.load("phantom2d", counts=(64, 16, 16), cache=False)
    res = engine.train(s, "cnn", engine.Recipe(epochs=1, batch_size=32), seed=0, progress=False,
                       model_kw={"width": 8})
    assert res.device == "cpu" and 0 <= res.test["auc"] <= 1


@pytest.mark.skipif(not (SHARED / "breastmnist.npz").exists(), reason="needs ../shared/data/medmnist")
def test_breastmnist_real_file_one_epoch(monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(SHARED))
    s = data.load("breastmnist", download=False)
    res = engine.train(s, "cnn", engine.Recipe(epochs=1), seed=0, progress=False, model_kw={"width": 8})
    assert res.n_train == 546 and 0 <= res.test["auc"] <= 1


def test_recipe_validates_and_maps_notebook_knobs():
    with pytest.raises(ValueError, match="valid: adam, adamw, sgd"):
        engine.Recipe(optimizer="lion")
    with pytest.raises(ValueError, match="valid: multistep, cosine"):
        engine.PAPER.replace(schedule="step")
    with pytest.raises(TypeError, match="valid: epochs, steps, evals, lr"):
        engine.PAPER.replace(epoch=3)
    with pytest.raises(ValueError, match="epochs must be"):
        engine.Recipe(epochs=0)
    knobs = {"EPOCHS": 50, "EPOCHS_3D": 10, "LR": 2e-3, "BATCH_SIZE": 64, "BATCH_SIZE_3D": None, "SEEDS": [0]}
    r2 = engine.Recipe.from_knobs(knobs, engine.PAPER)
    r3 = engine.Recipe.from_knobs(knobs, engine.PAPER, suffix="_3D")
    assert (r2.epochs, r2.lr, r2.batch_size) == (50, 2e-3, 64)
    assert (r3.epochs, r3.lr, r3.batch_size) == (10, 2e-3, 64)  # BATCH_SIZE_3D unset -> BATCH_SIZE
    assert r2.schedule == engine.PAPER.schedule and r2.milestones == engine.PAPER.milestones
    from types import SimpleNamespace
    assert engine.Recipe.from_knobs(SimpleNamespace(EPOCHS=7)).epochs == 7  # the P object of mednb.params


@pytest.mark.parametrize("mode,device,cap,expected", [
    ("auto", "cpu", None, None), ("auto", "cuda", (9, 0), torch.bfloat16), ("auto", "cuda", (8, 0), torch.bfloat16),
    ("auto", "cuda", (7, 5), torch.float16), ("auto", "cuda", (7, 0), torch.float16), ("off", "cuda", (9, 0), None),
    ("fp16", "cpu", None, torch.float16), ("bf16", "cuda", (7, 5), torch.bfloat16)])
def test_amp_dtype_per_device_and_capability(mode, device, cap, expected):
    assert engine.amp_dtype(mode, torch.device(device), capability=cap) is expected


def test_amp_auto_queries_cuda_capability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4
    assert engine.amp_dtype("auto", torch.device("cuda")) is torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))
    assert engine.amp_dtype("auto", torch.device("cuda")) is torch.bfloat16


def test_fp16_gradient_scaler_path_trains_without_nan(monkeypatch):
    """The float16 + GradScaler path (T4/V100) runs on CPU autocast: the scaler scales, steps and updates."""
    from mednb.engine import loop
    calls = []
    real = torch.amp.GradScaler

    def spy(device, enabled=True, **kw):
        calls.append(enabled)
        return real(device, enabled=enabled, **kw)
    monkeypatch.setattr(loop.torch.amp, "GradScaler", spy)
    s = _synthetic("multi-class", 3, n=(32, 8, 8))
    res = engine.fit(engine_model(), s, engine.Recipe(epochs=2, batch_size=8, amp="fp16"), device="cpu",
                     progress=False)
    assert calls == [True]
    assert all(math.isfinite(h["train_loss"]) for h in res.history)
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


def test_augment_must_be_a_callable():
    s = _synthetic("multi-class", 3, n=(16, 8, 8))
    with pytest.raises(TypeError, match=r"mednb\.augment\.get"):
        engine.fit(engine_model(), s, engine.Recipe(epochs=1), augment="basic", progress=False)
    seen = []

    def aug(x, masks, g):
        seen.append(x.shape)
        return x.flip(-1), masks
    engine.fit(engine_model(), s, engine.Recipe(epochs=1, batch_size=8), augment=aug, progress=False)
    assert seen == [(8, 1, 12, 12), (8, 1, 12, 12)]


def test_engine_imports_no_topic_module():
    """The engine sits below the topics: importing it loads none of them (no import circle)."""
    import subprocess
    import sys
    code = ("import sys, mednb.engine; topics = ('augment', 'active', 'transfer', 'seg', 'ssl', 'cam', 'volumes'); "
            "print([t for t in topics if 'mednb.' + t in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def _scripted(values):
    """An eval_fn returning the scripted (val_auc, val_loss) of each epoch in turn."""
    it = iter(values)

    def fn(model, split):
        auc, loss = next(it)
        return {"val_auc": auc, "val_loss": loss}
    return fn


@pytest.mark.parametrize("values,tol,expected", [
    ([(0.80, 0.9), (0.86, 0.7), (0.855, 0.4), (0.70, 0.2), (0.861, 0.5)], 0.01, 3),  # near-tie, lower loss
    ([(0.80, 0.9), (0.86, 0.7), (0.855, 0.4), (0.90, 0.6), (0.70, 0.1)], 0.01, 4),   # a clearly better AUC later
    ([(0.86, 0.7), (0.855, 0.4), (0.87, 0.8), (0.865, 0.5)], 0.01, 4),               # pruned as the best rises
    ([(0.86, 0.7), (0.86, 0.4), (0.85, 0.3)], 0.0, 1),                               # 0: first best AUC (paper)
])
def test_auc_tolerance_selection_matches_the_rule_on_the_whole_history(values, tol, expected, tmp_path):
    s = _synthetic("multi-class", 3, n=(16, 8, 8))
    ck = tmp_path / "best.pt"
    recipe = engine.Recipe(epochs=len(values), batch_size=8, auc_tolerance=tol)
    res = engine.fit(engine_model(), s, recipe, eval_fn=_scripted(values), progress=False, checkpoint=ck)
    best = max(a for a, _ in values)
    offline = min((l, e) for e, (a, l) in enumerate(values, 1) if a >= best - tol)[1] if tol else \
        1 + [a for a, _ in values].index(best)
    assert res.best_epoch == offline == expected
    assert engine.load_checkpoint(engine_model(), ck)["epoch"] == expected  # the checkpoint follows the choice


def test_auc_tolerance_keeps_the_selected_epochs_weights():
    s = _synthetic("multi-class", 3, n=(16, 8, 8))
    states = []
    values = [(0.86, 0.7), (0.855, 0.4), (0.87, 0.8), (0.80, 0.1)]
    fn = _scripted(values)

    def grab(model, split):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return fn(model, split)
    res = engine.fit(engine_model(), s, engine.Recipe(epochs=4, batch_size=8, auc_tolerance=0.02), eval_fn=grab,
                     progress=False)
    assert res.best_epoch == 2
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, states[1][k]), k
    assert engine.STABLE == engine.PAPER.replace(auc_tolerance=0.01)
    with pytest.raises(ValueError, match="auc_tolerance"):
        engine.Recipe(auc_tolerance=-0.1)


# ----------------------------------------------------------------------------- a budget in optimizer steps
def _count_steps(monkeypatch):
    """Count optimizer steps and the size of each batch (patched into the loop's step)."""
    from mednb.engine import loop as L
    sizes, step = [], L._step

    def counting(loop, xb, yb, mb):
        sizes.append(len(xb))
        return step(loop, xb, yb, mb)
    monkeypatch.setattr(L, "_step", counting)
    return sizes


@pytest.mark.parametrize("loader", ["device", "reference"])
@pytest.mark.parametrize("n_train", [5, 48])
def test_step_budget_trains_exactly_n_steps_whatever_the_set_size(monkeypatch, loader, n_train):
    sizes = _count_steps(monkeypatch)
    s = _synthetic("multi-class", 3, n=(48, 16, 16))
    idx = torch.arange(n_train)
    res = engine.fit(engine_model(), s, engine.Recipe(steps=23, evals=4, batch_size=16), train_idx=idx,
                     loader=loader, progress=False)
    assert len(sizes) == res.steps == 23
    assert [h["step"] for h in res.history] == [6, 12, 17, 23] and [h["epoch"] for h in res.history] == [1, 2, 3, 4]
    if loader == "device":  # consecutive slices of back-to-back shuffled passes: every batch is full
        assert set(sizes) == {16}


def test_step_budget_milestones_and_checks_are_fractions_of_the_budget():
    r = engine.Recipe(steps=100, evals=8, milestones=(0.5, 0.75))
    assert sum(r.checks()) == 100 and len(r.checks()) == 8 and r.budget == "100 steps"
    assert engine.Recipe(steps=7).checks() == [1] * 7  # at most one check per step
    assert len(engine.Recipe(steps=1000).checks()) == engine.DEFAULT_EVALS
    s = _synthetic("multi-class", 3, n=(16, 8, 8))
    seen = []
    engine.fit(engine_model(), s, engine.PAPER.replace(steps=40, evals=4, batch_size=8), progress=False,
               callbacks=[lambda log: seen.append((log["step"], log["lr"]))])
    # LR x0.1 after 20 and 30 of 40 steps, whatever the epoch length (here 2 steps per pass)
    assert seen == [(10, pytest.approx(1e-3)), (20, pytest.approx(1e-4)), (30, pytest.approx(1e-5)),
                    (40, pytest.approx(1e-5))]


def test_step_budget_is_the_same_for_every_label_fraction():
    s = _synthetic("multi-class", 3, n=(96, 24, 24))
    r = engine.Recipe(steps=12, evals=3, batch_size=16)
    runs = [engine.train(s, "cnn", r, label_fraction=f, progress=False, model_kw={"width": 4}) for f in (0.1, 1.0)]
    assert [x.steps for x in runs] == [12, 12] and [len(x.history) for x in runs] == [3, 3]
    assert runs[0].n_train < runs[1].n_train
    again = engine.train(s, "cnn", r, label_fraction=0.1, progress=False, model_kw={"width": 4})
    assert again.test == runs[0].test  # same seed, same numbers


def test_epoch_recipes_are_unchanged_by_the_step_budget():
    """Without ``steps`` the loop validates once per epoch and logs no step count (the paper protocol)."""
    s = _synthetic("multi-class", 3, n=(32, 8, 8))
    res = engine.train(s, "cnn", engine.PAPER.replace(epochs=3, batch_size=16), progress=False, model_kw={"width": 4})
    assert len(res.history) == 3 and "step" not in res.history[0] and res.steps == 3 * 2


@pytest.mark.parametrize("bad,needle", [(dict(evals=3), "set steps"), (dict(steps=0), "steps must be"),
                                         (dict(steps=5, evals=6), "evals must be"),
                                         (dict(val_labels="half"), "full, matched")])
def test_step_budget_recipe_errors_name_the_valid_values(bad, needle):
    with pytest.raises(ValueError, match=needle):
        engine.Recipe(**bad)


def test_budget_knobs_map_onto_the_recipe():
    r = engine.Recipe.from_knobs({"STEPS": 180, "EVALS": 6, "VAL_LABELS": "matched", "EPOCHS": None})
    assert (r.steps, r.evals, r.val_labels) == (180, 6, "matched")


def test_matched_validation_is_stratified_proportional_and_seeded():
    y = torch.tensor([0] * 60 + [1] * 20).view(-1, 1)
    idx = engine.matched_val_idx(y, n_labels=100, ratio=0.25, per_class=5, seed=0)
    assert len(idx) == 25
    counts = torch.bincount(y[idx, 0])
    assert counts[1] >= 5 and counts[0] > counts[1]
    assert torch.equal(idx, engine.matched_val_idx(y, 100, seed=0))
    assert not torch.equal(idx, engine.matched_val_idx(y, 100, seed=1))
    small = engine.matched_val_idx(y, n_labels=4, seed=0)  # 2 × the floor of 5, split 3:1 with 5 at least
    assert torch.bincount(y[small, 0]).tolist() == [8, 5]
    assert torch.equal(engine.matched_val_idx(y, n_labels=1000), torch.arange(80))  # capped: the whole split


def test_matched_validation_selects_on_the_subset():
    s = _synthetic("multi-class", 3, n=(96, 60, 24))
    seen = []
    res = engine.fit(engine_model(), s, engine.Recipe(steps=4, evals=2, batch_size=16, val_labels="matched"),
                     label_fraction=0.25, progress=False, eval_fn=lambda m, split: seen.append(len(split)) or {})
    assert res.n_val == 15 and seen == [15, 15]  # 3 classes × the floor of 5 > 0.25 × 24 labels
    full = engine.fit(engine_model(), s, engine.Recipe(steps=4, evals=2, batch_size=16), label_fraction=0.25,
                      progress=False)
    assert full.n_val == 60
