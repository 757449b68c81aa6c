"""Tests of mednb.cam: methods (2D/3D), cross-check with pytorch-grad-cam, metrics, sanity checks."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
import torch.nn as nn

from mednb import cam, models
from mednb.cam import metrics as CM
from mednb.cam import sanity
from mednb.runtime import code_version


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double().numpy(), b.flatten().double().numpy()
    return float(np.corrcoef(a, b)[0, 1])


@functools.lru_cache(maxsize=None)
def _tiny(name: str, dims: int = 2, seed: int = 0) -> nn.Module:
    """A small model, built once per process (CAMs do not change it; tests that do use _fresh)."""
    return _fresh(name, dims, seed)


def _fresh(name: str, dims: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    kw = {"width": 8} if name == "cnn" else {}
    return models.create(name, 1, 3, dims=dims, size=28, **kw).eval()


MODELS = [("cnn", 2, 28), ("cnn", 3, 16), ("resnet18", 2, 16)]


# ----------------------------------------------------------------------------- every method × model
@pytest.mark.parametrize("method", cam.names())
@pytest.mark.parametrize("name,dims,side", MODELS, ids=["cnn2d", "cnn3d", "resnet18"])
def test_every_method_and_model(method, name, dims, side):
    model = _tiny(name, dims)
    x = torch.randint(0, 256, (3, 1) + (side,) * dims, dtype=torch.uint8)
    c = cam.create(method, model)
    maps = c(x, target=[0, 1, 2], batch_size=2)  # batches of 2 exercise the batching
    assert maps.shape == (3,) + (side,) * dims
    assert torch.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1
    e = c.explain(x[:1], target=1)
    assert e.activations.ndim == dims + 2 and e.gradients.shape == e.activations.shape
    assert e.raw.shape == e.activations.shape[:1] + e.activations.shape[2:]
    assert e.target.tolist() == [1]
    assert (e.weights is not None) == c.uses_weights


def test_3d_shapes_and_layers():
    model = _tiny("cnn", 3)
    x = torch.randn(2, 1, 12, 16, 20)  # anisotropic volume, float (model-ready) input
    for layer in cam.stages(model):
        e = cam.create("gradcam", model, layer).explain(x)
        assert e.maps.shape == (2, 12, 16, 20)
        assert e.activations.ndim == 5
    assert e.target.tolist() == model(x).argmax(1).tolist()  # default target: predicted class


class _Pooled3D(nn.Module):
    """Hand-set 3D "classifier": features = 2× average pooling of the volume, logit 0 = their mean
    (logit 1 = minus it). For class 0 every method's map is the pooled volume, upsampled."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("pool", nn.AvgPool3d(2))
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        s = self.features(x * self.scale).flatten(1).mean(1)
        return torch.stack([s, -s], 1)


def test_3d_maps_upsample_along_the_right_axes():
    """On an anisotropic (D,H,W) = (8,12,16) volume with one bright 2×2×2 block at an asymmetric
    position, the map (computed at 4×6×8, upsampled trilinearly) peaks on the block in every
    method: a swapped or transposed axis would move or reshape the map."""
    x = torch.zeros(1, 1, 8, 12, 16)
    x[0, 0, 0:2, 8:10, 12:14] = 1.0
    block = torch.zeros(1, 8, 12, 16, dtype=torch.bool)
    block[0, 0:2, 8:10, 12:14] = True
    near = torch.zeros_like(block)
    near[0, 0:4, 6:12, 10:16] = True  # the block dilated by 2 voxels (one layer cell)
    for method in cam.names():
        e = cam.create(method, _Pooled3D(), "features.pool").explain(x, target=0)
        assert e.raw.shape == (1, 4, 6, 8) and e.maps.shape == (1, 8, 12, 16), method
        assert e.raw[0, 0, 4, 6] > 0 and (e.raw > 0).sum() == 1, method  # the block's cell at layer resolution
        m = e.maps
        assert np.unravel_index(int(m.argmax()), m.shape[1:]) == (0, 8, 12), method
        assert float(m[block].min()) > 0.5 and float(m[~near].max()) == 0.0, method
        assert CM.pointing_game(m, block) == 1.0 and CM.energy_in_mask(m, block) > 0.3, method


def test_default_layer_choice():
    # shallowest stage at the coarsest grid with >= 7 cells per side, at 28 px
    assert cam.default_layer(_tiny("cnn", 2)) == "features.block2"
    assert cam.default_layer(_tiny("cnn", 3)) == "features.block2"
    r = _tiny("resnet18")
    shapes = cam.stage_shapes(r)
    assert shapes["features.layer4"][1:] == (4, 4) and shapes["features.layer3"][1:] == (7, 7)
    assert cam.default_layer(r) == "features.layer3"
    assert cam.create("gradcam", r).layer == "features.layer3"


def test_unknown_names_list_valid_ones():
    model = _tiny("cnn")
    with pytest.raises(ValueError, match=r"gradcam, gradcam\+\+, hirescam, layercam"):
        cam.create("scorecam", model)
    with pytest.raises(ValueError, match="features.block1, features.block2, features.block3, features.block4"):
        cam.create("gradcam", model, "features.block9")
    with pytest.raises(ValueError, match="out of range"):
        cam.create("gradcam", model)(torch.randn(1, 1, 28, 28), target=7)
    with pytest.raises(ValueError, match="batch"):
        cam.create("gradcam", model)(torch.randn(1, 28, 28))


# ----------------------------------------------------------------------------- cross-check
def _reference(method):
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM
    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "hirescam": HiResCAM, "layercam": LayerCAM}[method]


def _check_against_reference(ours, ref, targets):
    for i, t in enumerate(targets):
        a, b = ours[i], ref[i]
        if float(a.max() - a.min()) == 0 or float(b.max() - b.min()) == 0:  # both all-zero (ReLU killed all)
            assert torch.allclose(a, b, atol=1e-5), f"sample {i}"
        else:
            assert _corr(a, b) > 0.99, f"sample {i} class {t}: corr {_corr(a, b):.4f}"


@pytest.mark.parametrize("method", cam.names())
@pytest.mark.parametrize("name,dims,layer", [("cnn", 2, "features.block2"), ("resnet18", 2, "features.layer3"),
                                             ("cnn", 3, "features.block1.2")], ids=["cnn2d", "resnet18", "cnn3d"])
def test_matches_pytorch_grad_cam(method, name, dims, layer):
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model = _tiny(name, dims, seed=1)
    side = 28 if name == "cnn" and dims == 2 else 16  # ResNet-18 at 16 px: layer3 is 4×4, upsampled ×4
    x = torch.randn((3, 1) + (side,) * dims, generator=torch.Generator().manual_seed(0))
    targets = [0, 1, 2]
    ours = cam.create(method, model, layer)(x, target=targets)
    with _reference(method)(model=model, target_layers=[cam.get_layer(model, layer)]) as ref:
        theirs = torch.from_numpy(ref(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets]))
    assert theirs.shape == ours.shape
    _check_against_reference(ours, theirs, targets)


@pytest.mark.parametrize("method", cam.names())
def test_matches_pytorch_grad_cam_3d_at_layer_resolution(method):
    """3D at a downsampling stage: pytorch-grad-cam upsamples with a cubic spline (scipy.zoom), we
    trilinearly, so compare the maps at the layer's own resolution (before upsampling)."""
    pytest.importorskip("pytorch_grad_cam")
    model = _tiny("cnn", 3, seed=2)
    layer = "features.block3"
    x = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(3))
    e = cam.create(method, model, layer).explain(x, target=[0, 2])
    ref = _reference(method)(model=model, target_layers=[cam.get_layer(model, layer)])
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    out = ref.activations_and_grads(x)
    model.zero_grad()
    sum(ClassifierOutputTarget(t)(o) for t, o in zip([0, 2], out)).backward()
    A = ref.activations_and_grads.activations[0].numpy()
    G = ref.activations_and_grads.gradients[0].numpy()
    theirs = torch.from_numpy(np.maximum(ref.get_cam_image(x, None, None, A, G, False), 0))
    ref.activations_and_grads.release()
    _check_against_reference(e.raw, theirs.float(), [0, 2])


# ----------------------------------------------------------------------------- class dependence
class _RegionModel(nn.Module):
    """Hand-set linear "classifier": one feature channel per class; class c's logit is the mean of
    the image over region c only (left half → class 0, right half → class 1)."""

    def __init__(self, side: int = 16):
        super().__init__()
        w = torch.zeros(2, 1, side, side)
        w[0, :, :, : side // 2] = 1
        w[1, :, :, side // 2:] = 1
        self.register_buffer("w", w)
        self.features = nn.Sequential()
        self.features.add_module("regions", nn.Identity())
        self.scale = nn.Parameter(torch.ones(1))  # so that next(model.parameters()) works

    def forward(self, x):
        f = self.features(x * self.w[None, :, 0] * self.scale)  # (N, 2, H, W): channel c = image on region c
        return f.mean(dim=(2, 3))


def test_class_dependence_two_lesions():
    side = 16
    x = torch.zeros(1, 1, side, side)
    x[0, 0, 6:10, 2:6] = 1.0    # lesion A in the left half
    x[0, 0, 6:10, 10:14] = 1.0  # lesion B in the right half
    model = _RegionModel(side)
    for method in cam.names():
        c = cam.create(method, model, "features.regions")
        m0, m1 = c(x, target=0)[0], c(x, target=1)[0]
        assert m0[6:10, 2:6].mean() > 0.9 and m0[:, side // 2:].max() < 0.1, method
        assert m1[6:10, 10:14].mean() > 0.9 and m1[:, : side // 2].max() < 0.1, method
        assert CM.pointing_game(m0[None], (x[0] * (torch.arange(side) < side // 2)).bool()) == 1.0


def test_class_dependence_trained_cnn():
    """A small cnn fitted for a few steps on 'no lesion' (0), 'lesion left' (1), 'lesion right' (2)
    gives different maps for classes 1 and 2 on an image with both lesions, each on its own side."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n, side = 96, 16
    x = 0.1 * torch.randn(n, 1, side, side, generator=g)
    y = torch.arange(n) % 3
    for i in range(n):
        if y[i] == 0:
            continue
        r = int(torch.randint(3, 10, (1,), generator=g))
        c = 3 if y[i] == 1 else 10
        x[i, 0, r:r + 3, c:c + 3] += 1.0
    model = models.create("cnn", 1, 3, dims=2, width=8)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.9
    both = torch.zeros(1, 1, side, side)
    both[0, 0, 6:9, 3:6] = 1.0
    both[0, 0, 6:9, 10:13] = 1.0
    for method in cam.names():
        c = cam.create(method, model, "features.block2")
        m1, m2 = c(both, target=1)[0], c(both, target=2)[0]
        assert _corr(m1, m2) < 0.9, method
        if method == "gradcam":  # each class's map peaks on its own lesion's side (pointing-game criterion;
            # on this 40-step model Grad-CAM++'s class-1 map peaks on the wrong side, so it is not asserted)
            assert int(m1.argmax()) % side < side // 2 <= int(m2.argmax()) % side, method


# ----------------------------------------------------------------------------- metrics
def test_pointing_game_and_energy_on_hand_made_maps():
    masks = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    masks[0, 0, 2:4, 2:4] = 1
    masks[1, 0, 2:4, 2:4] = 1
    masks[2, 0, 5:7, 5:7] = 1  # image 3 has no lesion
    maps = torch.zeros(4, 8, 8)
    maps[0, 3, 3] = 1.0; maps[0, 7, 7] = 1.0 / 3             # hit; 3/4 of the energy inside
    maps[1, 0, 0] = 1.0; maps[1, 2, 2] = 0.5                  # miss; 1/3 inside
    # maps[2] all zero: a miss, energy 0
    maps[3, 1, 1] = 1.0
    hits = CM.pointing_game(maps, masks, reduce="none")
    assert hits[:3].tolist() == [1.0, 0.0, 0.0] and np.isnan(hits[3])
    assert CM.pointing_game(maps, masks) == pytest.approx(1 / 3)
    # move image 1's maximum next to the lesion: a hit within 1 px tolerance only
    maps[1, 0, 0] = 0.0; maps[1, 1, 2] = 1.0
    assert CM.pointing_game(maps, masks, tolerance=1, reduce="none")[1] == 1.0
    assert CM.pointing_game(maps, masks, tolerance=0, reduce="none")[1] == 0.0
    e = CM.energy_in_mask(maps, masks, reduce="none")
    assert e[0] == pytest.approx(0.75) and e[1] == pytest.approx(0.5 / 1.5) and e[2] == 0.0 and np.isnan(e[3])
    assert CM.mask_fraction(masks, reduce="none")[0] == pytest.approx(4 / 64)
    assert CM.energy_in_mask(torch.ones(3, 8, 8), masks[:3]) == pytest.approx(4 / 64)  # uniform = chance
    with pytest.raises(ValueError, match="shape"):
        CM.pointing_game(maps[:, :4], masks)


def test_metrics_3d():
    masks = torch.zeros(2, 1, 6, 6, 6)
    masks[:, 0, 1:3, 1:3, 1:3] = 1
    maps = torch.zeros(2, 6, 6, 6)
    maps[0, 2, 2, 2] = 1
    maps[1, 5, 5, 5] = 1
    assert CM.pointing_game(maps, masks) == 0.5
    assert CM.energy_in_mask(maps, masks) == 0.5


def test_deletion_insertion_orders_by_saliency():
    """Model whose score is the mean brightness of a 4×4 patch: a map pointing at the patch
    deletes the evidence first (low deletion AUC) and inserts it first (high insertion AUC)."""
    class Patch(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.tensor(8.0))

        def forward(self, x):
            v = x[:, 0, 2:6, 2:6].mean((1, 2))
            return torch.stack([torch.zeros_like(v), self.s * v], 1)

    x = torch.full((2, 1, 12, 12), -1.0)
    x[:, 0, 2:6, 2:6] = 1.0
    good = torch.zeros(2, 12, 12)
    good[:, 2:6, 2:6] = 1
    bad = 1 - good
    r_good = CM.deletion_insertion(Patch(), x, good, [1, 1], steps=12, baseline="mean")
    r_bad = CM.deletion_insertion(Patch(), x, bad, [1, 1], steps=12, baseline="mean")
    assert r_good["deletion"].shape == (2, 13)
    assert np.allclose(r_good["deletion"][:, 0], r_good["insertion"][:, -1])  # both ends = the full image
    assert (r_good["deletion_auc"] < r_bad["deletion_auc"] - 0.2).all()
    assert (r_good["insertion_auc"] > r_bad["insertion_auc"] + 0.2).all()
    with pytest.raises(ValueError, match="blur, mean"):
        CM.baseline_image(x, "zeros")


# ----------------------------------------------------------------------------- sanity checks
def test_randomization_changes_the_maps_but_not_the_edge_detector():
    model = _tiny("cnn", 2, seed=0)
    x = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    res = sanity.cascading_randomization(model, x, ["gradcam", "edge"], seed=0)
    df = res.frame()
    assert list(df[df.method == "gradcam"].layer_randomized) == sanity.cascade_order(model)
    g = df[df.method == "gradcam"]
    assert (g.spearman < 0.9).all(), g
    e = df[df.method == "edge"]
    assert np.allclose(e.spearman, 1.0) and np.allclose(e.ssim, 1.0)  # ignores the model: fails the check
    # the original model is untouched by the cascade
    before = cam.create("gradcam", model)(x)
    assert torch.allclose(before[:4], res.maps["gradcam"]["trained"])
    p0 = dict(model.named_parameters())["features.block1.0.weight"].clone()
    list(sanity.cascade(model))
    assert torch.equal(p0, dict(model.named_parameters())["features.block1.0.weight"])


def test_reinitialize_and_similarity():
    model = _fresh("cnn", 2)
    w = model.head.fc.weight.detach().clone()
    sanity.reinitialize(model.head, seed=5)
    assert not torch.equal(w, model.head.fc.weight)
    a = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    s = sanity.similarity(a, a)
    assert s["spearman"] == pytest.approx(1.0) and s["ssim"] == pytest.approx(1.0)
    s2 = sanity.similarity(a, 1 - a)
    assert s2["spearman"] == pytest.approx(-1.0) and s2["abs_spearman"] == pytest.approx(1.0)
    assert sanity.ssim(torch.rand(2, 6, 6, 6), torch.rand(2, 6, 6, 6)).shape == (2,)


def test_guided_backprop_and_label_permutation(tmp_path, monkeypatch):
    from mednb import data
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    model = _tiny("cnn", 2)
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    gb = cam.create("guided_backprop", model)(x, target=[0, 1])
    assert gb.shape == (2, 28, 28) and gb.min() >= 0 and gb.max() <= 1
    sp = data.load("phantom2d", counts=(40, 8, 8), cache=False)
    perm = sanity.permute_labels(sp, seed=0)
    assert not torch.equal(perm.train.y, sp.train.y)
    assert torch.equal(torch.sort(perm.train.y[:, 0]).values, torch.sort(sp.train.y[:, 0]).values)
    assert torch.equal(perm.test.y, sp.test.y) and torch.equal(perm.train.x, sp.train.x)
    rows = sanity.compare_models(model, _tiny("cnn", 2, seed=9), x, ["gradcam", "edge"], target=[0, 1])
    assert [r["method"] for r in rows] == ["gradcam", "edge"]
    assert rows[0]["layer"] == "features.block2" and rows[0]["spearman"] < 0.9  # another network, other maps
    assert rows[1]["spearman"] == pytest.approx(1.0)  # the edge map ignores the model
    same = sanity.compare_models(model, model, x, ["gradcam"], target=[0, 1])[0]
    assert same["spearman"] == pytest.approx(1.0) and same["ssim"] == pytest.approx(1.0)


def test_trained_classifier_is_cached(tmp_path, monkeypatch):
    from mednb import data
    from mednb.cam import evaluate as ev
    monkeypatch.setenv("MEDNB_DATA", str(tmp_path))
    sp = data.load("phantom2d", counts=(32, 8, 8), cache=False)
    net, info = ev.trained(sp, "cnn", ev.RECIPE.replace(epochs=1, batch_size=16), device="cpu", progress=False,
                           model_kw={"width": 8})
    assert not info["cached"] and info["path"].exists()
    assert info["path"].parent == tmp_path / "checkpoints" / "cam" / code_version()
    net2, info2 = ev.trained(sp, "cnn", ev.RECIPE.replace(epochs=1, batch_size=16), device="cpu", progress=False,
                             model_kw={"width": 8})
    assert info2["cached"] and info2["test"] == pytest.approx(info["test"])
    x = sp.test.x[:2]
    assert torch.equal(net(x.float()), net2(x.float()))
    rows = ev.localization(net, sp.test, ["gradcam"], ["features.block2"], n=3, progress=False)
    assert rows[0]["n"] <= 3 and 0 <= rows[0]["pointing_game"] <= 1
    binary = data.load("phantom2d", counts=(32, 8, 8), n_classes=2, cache=False)  # same sizes, other classes
    recipe = dataclasses.asdict(ev.RECIPE.replace(epochs=1, batch_size=16))
    assert ev.checkpoint_path(binary, "cnn", seed=0, **recipe) != ev.checkpoint_path(sp, "cnn", seed=0, **recipe)
