"""mednb.transfer: strategies really freeze/switch, sources load (ImageNet offline cache, in-domain
round trip, SSL), grey→RGB folding and 2D→3D inflation reproduce the original responses."""
import urllib.error

import pytest
import torch
import torch.nn as nn
import torchvision

from mednb import data, engine, models, transfer
from mednb.runtime import code_version


@pytest.fixture(autouse=True)
def _roots(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture(scope="module")
def tiny():
    return data.load("phantom2d", counts=(32, 16, 16), cache=False)


ONE_EPOCH = engine.Recipe(epochs=1, batch_size=8)


def _no_network(monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("network disabled in tests")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_names_list_valid_ones(tiny):
    with pytest.raises(ValueError, match="valid: scratch, linear_probe, finetune, two_stage, partial"):
        transfer.check_strategy("freeze_all")
    with pytest.raises(ValueError, match="valid: none, imagenet, indomain, ssl"):
        transfer.build("cnn", tiny, "jft300m")
    with pytest.raises(ValueError, match="valid: resnet18, resnet50"):
        transfer.imagenet_weights("cnn")
    m = models.create("cnn", 1, 4)
    with pytest.raises(ValueError, match="unknown strategy"):
        transfer.prepare(m, "nope", lr=1e-3)
    with pytest.raises(ValueError, match="unknown stage 'layer9'; valid: block1"):
        transfer.freeze(m, ["layer9"])


@pytest.mark.parametrize("strategy,n_frozen", [("linear_probe", 4), ("partial", 2)])
def test_freezing_really_freezes(tiny, strategy, n_frozen):
    torch.manual_seed(0)
    m = models.create("cnn", 1, 4)
    before = _state(m)
    res = transfer.fit(m, tiny, strategy, engine.Recipe(epochs=2, batch_size=8, lr=1e-2, select="last"),
                       freeze_stages=2, progress=False, device="cpu")
    stages = transfer.stages(m)
    assert res.plan.frozen == stages[:n_frozen] == transfer.frozen(m)
    after = _state(m)
    for k in before:
        name = k.split(".")[1] if k.startswith("features.") else "head"
        if name in res.plan.frozen:  # weights AND BatchNorm running stats unchanged
            assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["head.fc.weight"], after["head.fc.weight"])
    if strategy == "partial":
        assert not torch.equal(before["features.block3.0.weight"], after["features.block3.0.weight"])
    # no gradients reach frozen parameters; BatchNorm in frozen stages stays in eval mode under train()
    m.train()
    nn.functional.cross_entropy(m(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])).backward()
    for name in res.plan.frozen:
        stage = getattr(m.features, name)
        assert all(p.grad is None and not p.requires_grad for p in stage.parameters())
        assert all(not bn.training for bn in stage.modules() if isinstance(bn, nn.BatchNorm2d))
    assert m.head.fc.weight.grad is not None
    transfer.unfreeze(m)
    assert transfer.frozen(m) == [] and all(p.requires_grad for p in m.parameters())


def test_two_stage_switches_at_the_right_epoch(tiny):
    torch.manual_seed(0)
    m = models.create("cnn", 1, 4)
    snaps = [_state(m.features)]
    head0 = m.head.fc.weight.detach().clone()
    res = transfer.fit(m, tiny, "two_stage", engine.Recipe(epochs=4, batch_size=8, lr=1e-2, select="last"),
                       head_epochs=2, progress=False, device="cpu",
                       callbacks=[lambda log: snaps.append(_state(m.features))])
    assert res.plan.switch_epoch == 2
    assert res.plan.events == [{"epoch": 2, "event": "unfreeze", "stages": transfer.stages(m)}]
    # body (weights and BN stats) untouched during epochs 1-2, trained in epochs 3 and 4
    assert _same(snaps[0], snaps[1]) and _same(snaps[1], snaps[2])
    assert not _same(snaps[2], snaps[3]) and not _same(snaps[3], snaps[4])
    assert not torch.equal(head0, m.head.fc.weight)
    # body groups get the discriminative rate from the start
    lrs = res.plan.lrs
    assert lrs["head"] == 1e-2 and lrs["block1"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="epochs > head_epochs"):
        transfer.fit(m, tiny, "two_stage", engine.Recipe(epochs=2), head_epochs=2)


def test_two_stage_under_a_step_budget_unfreezes_after_its_fraction_of_the_steps(tiny):
    torch.manual_seed(0)
    m = models.create("cnn", 1, 4)
    snaps = [_state(m.features)]
    recipe = engine.Recipe(steps=12, evals=4, batch_size=8, lr=1e-2, select="last")
    assert transfer.head_steps(recipe, 0.5) == 6 and transfer.head_steps(recipe, 0.1) == 3
    assert transfer.head_steps(recipe, 0.95) == 9  # at least one validation period trains the body
    res = transfer.fit(m, tiny, "two_stage", recipe, head_fraction=0.5, progress=False, device="cpu",
                       callbacks=[lambda log: snaps.append(_state(m.features))])
    assert res.steps == 12 and res.plan.switch_step == 6 and res.plan.switch_epoch is None
    assert res.plan.events == [{"epoch": 2, "step": 6, "event": "unfreeze", "stages": transfer.stages(m)}]
    assert _same(snaps[0], snaps[1]) and _same(snaps[1], snaps[2])  # frozen for steps 1-6
    assert not _same(snaps[2], snaps[3]) and not _same(snaps[3], snaps[4])
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="head_fraction must be in"):
            transfer.head_steps(recipe, bad)
    with pytest.raises(ValueError, match="at least 2 validation checks"):
        transfer.head_steps(recipe.replace(evals=1), 0.5)


def test_discriminative_learning_rates():
    m = models.create("cnn", 1, 4)
    groups = transfer.param_groups(m, 1.0, body_lr_mult=0.1, layer_decay=0.5)
    assert [g["name"] for g in groups] == ["block1", "block2", "block3", "block4", "head"]
    assert [g["lr"] for g in groups] == pytest.approx([0.0125, 0.025, 0.05, 0.1, 1.0])
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))
    assert not hasattr(transfer, "epochs_for")  # one budget implementation: the engine's Recipe(steps=N)
    with pytest.raises(ValueError, match="onecycle"):
        transfer.fit(m, None, "finetune", engine.Recipe(schedule="onecycle"))
    with pytest.raises(TypeError):
        transfer.fit(m, None, "finetune", epochs=2)  # training knobs travel in the recipe


def test_indomain_weights_round_trip(tmp_path):
    path = transfer.indomain_checkpoint("cnn", "phantom2d:1", ONE_EPOCH, counts=(16, 8, 8), progress=False,
                                        device="cpu")
    assert path.parent == tmp_path / "data" / "checkpoints" / "transfer" / code_version()
    info = transfer.checkpoint_info(path)
    assert info["recipe"]["source"] == "phantom2d:1" and 0 <= info["test_auc"] <= 1
    mtime = path.stat().st_mtime_ns
    assert transfer.indomain_checkpoint("cnn", "phantom2d:1", ONE_EPOCH, counts=(16, 8, 8),
                                        progress=False) == path and path.stat().st_mtime_ns == mtime  # cached
    saved = torch.load(path, weights_only=True)["state_dict"]
    target = data.load("phantom2d", counts=(8, 4, 4), site=2, n_classes=2, cache=False)  # other site, 2 classes
    net = transfer.build("cnn", target, "indomain", checkpoint=path, seed=3)
    got = net.state_dict()
    assert all(torch.equal(got[k], v) for k, v in saved.items() if k.startswith("features."))
    assert got["head.fc.weight"].shape == (2, 128)  # a fresh head for the target's classes
    same = transfer.build("cnn", data.load("phantom2d", counts=(8, 4, 4), cache=False), "indomain",
                          checkpoint=path, keep_head=True)
    assert torch.equal(same.head.fc.weight, saved["head.fc.weight"])
    # grey source → 3-channel target: first conv repeated/3, so a grey image replicated to RGB gives the same features
    rgb = transfer.create2d("cnn", 3, 4)
    transfer.load_body(rgb, path)
    grey = transfer.create2d("cnn", 1, 4)
    transfer.load_body(grey, path)
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(rgb.eval().embed(x.repeat(1, 3, 1, 1)), grey.eval().embed(x), atol=1e-5)


def _randomize_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_inflation_reproduces_the_2d_response_on_interior_slices():
    torch.manual_seed(0)
    m2 = models.create("cnn", 1, 3, width=8)
    _randomize_bn(m2)
    m3 = models.to_3d(m2, "3d")
    img = torch.randn(1, 1, 8, 8)
    vol = img.unsqueeze(2).repeat(1, 1, 32, 1, 1)  # constant along depth
    with torch.no_grad():
        f2 = m2.eval().features(img)
        f3 = m3.eval().features(vol)
    # zero padding along depth corrupts the border slices; depth 32 → 8 after two pools, and the
    # four 3×3×3 convs reach 3 slices in from each side: slices 3 and 4 are interior
    assert f3.shape[2] == 8
    for d in (3, 4):
        assert torch.allclose(f3[:, :, d], f2, atol=1e-5)
    assert not torch.allclose(f3[:, :, 0], f2, atol=1e-3)  # the stated condition matters


def test_3d_target_gets_inflated_source_weights(tmp_path):
    path = transfer.indomain_checkpoint("cnn", "phantom2d:0", ONE_EPOCH, counts=(8, 4, 4), model_kw={"width": 8},
                                        progress=False, device="cpu")
    vol = data.load("phantom3d", counts=(4, 2, 2), cache=False)
    net = transfer.build("cnn", vol, "indomain", checkpoint=path, model_kw={"width": 8})
    w2 = torch.load(path, weights_only=True)["state_dict"]["features.block2.0.weight"]
    w3 = net.features.block2[0].weight
    assert w3.shape == (16, 8, 3, 3, 3) and torch.allclose(w3.sum(2), w2, atol=1e-6)
    assert net(torch.randn(2, 1, 28, 28, 28)).shape == (2, 4)
    scratch = transfer.build("cnn", vol, "none", model_kw={"width": 8})
    assert scratch.features.block2[0].weight.shape == w3.shape  # same architecture, fresh 3D init
    assert not torch.allclose(scratch.features.block2[0].weight.sum(2), w2)


def _prefill_imagenet_cache():
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    _randomize_bn(tv)
    path = transfer.imagenet_file("resnet18")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tv.state_dict(), path)  # the expected file name, the right keys, random values
    return tv.eval(), path


def test_imagenet_loads_from_a_prefilled_offline_cache(tiny, tmp_path, monkeypatch):
    _no_network(monkeypatch)
    tv, path = _prefill_imagenet_cache()
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    net = transfer.build("resnet18", tiny, "imagenet").eval()
    assert net.features.stem[0].kernel_size == (7, 7)
    assert torch.equal(net.features.layer3[1].conv2.weight, tv.layer3[1].conv2.weight)
    assert net.head.fc.weight.shape == (4, 512)
    # grey input + folded normalisation: the mednb stem on (x-.5)/.5 equals the ImageNet stem on the grey
    # image replicated to RGB and normalised with ImageNet mean/std, away from the zero-padded border
    x = torch.rand(2, 1, 28, 28)
    tf = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    mean, std = torch.tensor(tf.mean).view(1, 3, 1, 1), torch.tensor(tf.std).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = tv.bn1(tv.conv1((x.repeat(1, 3, 1, 1) - mean) / std))
        ours = net.features.stem[1](net.features.stem[0](engine.normalize(x)))
    assert torch.allclose(ours[..., 2:12, 2:12], ref[..., 2:12, 2:12], atol=1e-4)
    # RGB targets use per-channel scaling instead of the sum
    rgb = data.Splits("rgb", 28, "multi-class", {0: "a", 1: "b"}, 3, 2, tiny.train, tiny.val, tiny.test)
    net3 = transfer.build("resnet18", rgb, "imagenet").eval()
    xr = torch.rand(2, 3, 28, 28)
    with torch.no_grad():
        ref = tv.bn1(tv.conv1((xr - mean) / std))
        ours = net3.features.stem[1](net3.features.stem[0](engine.normalize(xr)))
    assert torch.allclose(ours[..., 2:12, 2:12], ref[..., 2:12, 2:12], atol=1e-4)
    # the cached file is used as is (torch hub checks the hash prefix only when downloading);
    # verify=True checks it here and rejects our random stand-in
    with pytest.raises(data.DataCorrupt, match="SHA-256"):
        transfer.imagenet_state_dict("resnet18", verify=True)
    with pytest.raises(ValueError, match="torchvision stem"):
        transfer.build("resnet18", tiny, "imagenet", stem="cifar")


def test_imagenet_offline_without_cache_gives_the_numbered_fix(tiny, tmp_path, monkeypatch):
    _no_network(monkeypatch)
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    for kw in ({}, {"download": False}):
        with pytest.raises(transfer.WeightsNotFound) as e:
            transfer.imagenet_state_dict("resnet50", **kw)
        msg = str(e.value)
        assert "To fix it:" in msg and "  1. " in msg and "  2. " in msg
        assert url in msg and str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in msg
        assert "TORCH_HOME" in msg
    assert "URLError" in str(pytest.raises(transfer.WeightsNotFound, transfer.build, "resnet50", tiny,
                                           "imagenet").value)
    assert isinstance(e.value, data.DataNotFound)


def test_ssl_source_skips_cleanly_then_loads_a_notebook04_checkpoint(tiny, tmp_path):
    with pytest.raises(transfer.SourceUnavailable, match="run notebook 04"):
        transfer.build("cnn", tiny, "ssl")

    class Pretext(nn.Module):  # notebook 04 saves the pretext object: keys "model.features.…"
        def __init__(self):
            super().__init__()
            self.model = models.create("cnn", 1, 4)
            self.proj = nn.Linear(128, 8)

    torch.manual_seed(5)
    obj = Pretext()
    folder = tmp_path / "data" / "checkpoints" / "ssl" / code_version()
    engine.save_checkpoint(models.create("cnn", 1, 4, width=8), folder / "rotation_other_cnn_0.pt")  # does not fit
    engine.save_checkpoint(obj, folder / "rotation_phantom2d_cnn_1.pt")
    net = transfer.build("cnn", tiny, "ssl")
    assert torch.equal(net.features.block3[0].weight, obj.model.features.block3[0].weight)


def test_a_real_ssl_pretrain_checkpoint_is_found_and_loaded(tiny, tmp_path):
    from mednb import ssl
    enc = models.create("cnn", 1, 4)
    r = ssl.pretrain("rotation", enc, tiny.train.x[:16], epochs=1, batch_size=8, lr=1e-3, device="cpu",
                     progress=False, dataset=tiny.name)
    assert r.checkpoint.parent == tmp_path / "data" / "checkpoints" / "ssl" / code_version()
    assert transfer.ssl_checkpoint(transfer.create2d("cnn", 1, 4), tiny.name) == r.checkpoint
    net = transfer.build("cnn", tiny, "ssl", seed=1)
    own = net.state_dict()
    assert all(torch.equal(own[k], v) for k, v in enc.state_dict().items() if k.startswith("features."))


def test_run_label_budget_and_domain_adaptation(tmp_path):
    target = data.load("phantom2d", counts=(24, 8, 12), site=3, cache=False)
    idx = transfer.label_budget(target.train.y, 6, seed=0)
    assert len(idx) == 6 and len(torch.unique(target.train.y[idx, 0])) == 4
    path = transfer.indomain_checkpoint("cnn", "phantom2d:0", ONE_EPOCH, counts=(16, 8, 8), progress=False,
                                        device="cpu")
    rows = transfer.domain_adaptation(path, "cnn", target, 0) + \
        transfer.domain_adaptation(path, "cnn", target, 8, ONE_EPOCH, device="cpu")
    assert [r["method"] for r in rows] == ["source_only", "finetune", "target_only"]
    assert [r["target_labels"] for r in rows] == [0, 8, 8] and all(0 <= r["test_auc"] <= 1 for r in rows)
    res = transfer.run(target, "cnn", "indomain", "two_stage", engine.Recipe(steps=8, evals=4, batch_size=8),
                       checkpoint=path, label_fraction=0.5, head_fraction=0.25, device="cpu")
    assert res.plan.switch_step == 2 and len(res.history) == 4 and res.steps == 8 and 0 <= res.test["auc"] <= 1
    steps = transfer.domain_adaptation(path, "cnn", target, 4, engine.Recipe(steps=6, evals=2, batch_size=8),
                                       device="cpu")
    assert [r["steps"] for r in rows] == [0, 1, 1] and [r["steps"] for r in steps] == [6, 6]


def test_every_arm_of_a_comparison_trains_the_same_steps(tmp_path):
    """Strategies, sources and label fractions under one step budget: the same optimizer steps and validation
    points for each, whatever the number of labels (a 10 % arm no longer gets a tenth of the updates)."""
    target = data.load("phantom2d", counts=(40, 8, 12), cache=False)
    path = transfer.indomain_checkpoint("cnn", "phantom2d:1", ONE_EPOCH, counts=(16, 8, 8), progress=False,
                                        device="cpu")
    recipe = engine.Recipe(steps=6, evals=3, batch_size=8)
    runs = {(s, f): transfer.run(target, "cnn", "indomain", s, recipe, checkpoint=path, label_fraction=f,
                                 device="cpu")
            for s in ("scratch", "two_stage") for f in (0.1, 1.0)}
    assert {r.steps for r in runs.values()} == {6}
    assert {tuple(e["step"] for e in r.history) for r in runs.values()} == {(2, 4, 6)}
    assert runs[("scratch", 0.1)].n_train < runs[("scratch", 1.0)].n_train
    again = transfer.run(target, "cnn", "indomain", "scratch", recipe, checkpoint=path, label_fraction=0.1,
                         device="cpu")
    assert again.test["auc"] == runs[("scratch", 0.1)].test["auc"]  # same seed, same numbers


def test_load_domain_passes_phantom_classes():
    """A phantom domain takes ``n_classes`` (2: normal vs round lesion) and its site; the default is all four."""
    two = transfer.load_domain("phantom3d", 28, (6, 4, 4), n_classes=2)
    assert two.n_classes == 2 and two.task == "binary-class" and int(two.train.y.max()) <= 1
    assert transfer.load_domain("phantom2d:1", 28, (8, 4, 4)).n_classes == 4
    with pytest.raises(ValueError, match="sites exist for phantoms only"):
        transfer.load_domain("breastmnist:1", 28)


class _Seen(Exception):
    pass


def _spy_fit(monkeypatch):
    """Replace engine.fit by a spy that records (recipe, keywords) and stops before training."""
    seen = []

    def spy(model, splits, recipe=None, **kw):
        seen.append((recipe, kw))
        raise _Seen
    monkeypatch.setattr(engine, "fit", spy)
    return seen


def test_the_recipe_reaches_engine_fit_unchanged_but_for_selection(tiny, tmp_path, monkeypatch):
    source = tmp_path / "source.pt"
    engine.save_checkpoint(models.create("cnn", 1, 4), source)
    seen = _spy_fit(monkeypatch)
    r = engine.Recipe(epochs=2, lr=3e-3, batch_size=8, optimizer="sgd", weight_decay=1e-4, schedule="cosine")
    idx = torch.arange(8)
    calls = [lambda: transfer.run(tiny, "cnn", "none", "scratch", r, train_idx=idx, device="cpu"),
             lambda: transfer.run(tiny, "cnn", "none", "finetune", train_idx=idx, device="cpu"),
             lambda: transfer.domain_adaptation(source, "cnn", tiny, 4, r, device="cpu"),
             lambda: transfer.domain_adaptation(source, "cnn", tiny, 4, device="cpu"),
             lambda: transfer.indomain_checkpoint("cnn", "phantom2d:1", r, counts=(16, 8, 8), device="cpu"),
             lambda: transfer.indomain_checkpoint("cnn", "phantom2d:1", counts=(16, 8, 8), device="cpu"),
             lambda: transfer.fit(models.create("cnn", 1, 4), tiny, "finetune", device="cpu")]
    for call in calls:
        with pytest.raises(_Seen):
            call()
    recipes = [rec for rec, _ in seen]
    assert recipes == [r,  # unchanged: a comparison gives every arm the same recipe (its step budget)
                       transfer.RECIPE,  # engine defaults at batch size 64
                       r.replace(select="last"), transfer.RECIPE.replace(select="last"),
                       r, transfer.RECIPE,
                       engine.Recipe()]  # transfer.fit alone: the engine's own defaults
    assert transfer.RECIPE == engine.Recipe(batch_size=64)
    assert torch.equal(seen[0][1]["train_idx"], idx) and seen[0][1]["device"] == "cpu"


def test_indomain_cache_key_follows_the_recipe(tmp_path):
    path = transfer.indomain_checkpoint("cnn", "phantom2d:1", ONE_EPOCH, counts=(16, 8, 8), progress=False,
                                        device="cpu")
    record = transfer.checkpoint_info(path)["recipe"]
    assert set(record) == {"model", "source", "size", "n", "epochs", "lr", "batch_size", "seed", "stem",
                           "input_size", "model_kw"}  # a recipe that differs only in epochs/lr/batch adds nothing
    assert (record["epochs"], record["lr"], record["batch_size"]) == (1, 1e-3, 8)
    decayed = transfer.indomain_checkpoint("cnn", "phantom2d:1", ONE_EPOCH.replace(weight_decay=1e-4),
                                           counts=(16, 8, 8), progress=False, device="cpu")
    assert decayed != path and transfer.checkpoint_info(decayed)["recipe"]["weight_decay"] == 1e-4


def test_resize_stage_and_profiles():
    net = transfer.create2d("resnet18", 1, 2, 28, input_size=64)
    assert list(dict(net.features.named_children()))[:2] == ["resize", "stem"]
    assert transfer.stages(net)[0] == "stem"
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 2)
    keys = {p: set(t) for p, t in transfer.PROFILES.items()}
    assert keys["smoke"] == keys["student"] == keys["full"]
    for k, v in transfer.PROFILES["student"].items():
        assert all(type(transfer.PROFILES[p][k]) is type(v) for p in ("smoke", "full")), k
    for p in transfer.PROFILES.values():
        assert all(s in transfer.STRATEGIES for s in p["STRATEGIES"])
        assert all(s in transfer.SOURCES for s in p["SOURCES"])
    assert "imagenet" not in transfer.PROFILES["smoke"]["SOURCES"] + transfer.PROFILES["student"]["SOURCES"]
    for p in transfer.PROFILES.values():  # budgets in steps; no epoch or step-floor knobs for the comparisons
        assert {"STEPS", "STEPS_3D", "VAL_LABELS", "HEAD_FRACTION"} <= set(p)
        assert not {"EPOCHS", "MIN_STEPS", "HEAD_EPOCHS", "EPOCHS_3D"} & set(p)


def test_budget_knobs_are_checked_before_anything_runs():
    import importlib
    params = importlib.import_module("mednb.params")
    for bad, match in (({"STEPS": 0}, "STEPS: a budget in optimizer steps"),
                       ({"STEPS_3D": -5}, "STEPS_3D: a budget in optimizer steps"),
                       ({"HEAD_FRACTION": 1.0}, "HEAD_FRACTION: must be a fraction in"),
                       ({"VAL_LABELS": "half"}, "valid: full, matched")):
        with pytest.raises(params.ParamError, match=match):
            params.validate("03_transfer_learning", bad, "smoke")


def test_notebook_records_carry_comparison_and_steps():
    """Every ``mednb.record`` of notebook 03 names its comparison and the steps its arms trained."""
    import json
    import pathlib
    nb = json.loads((pathlib.Path(__file__).parents[1] / "notebooks" / "03_transfer_learning.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    calls = [c[:400] for c in code.split("mednb.record(")[1:]]  # the arguments of each call (and a little more)
    assert len(calls) == 2 and all("comparison=" in c and "steps=" in c for c in calls)
    assert "min_steps" not in code and "EPOCHS_3D" not in code and "plot.convergence(" in code
    assert "claims.claim(" in code and "claims.paired(" in code
