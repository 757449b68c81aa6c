"""mednb.models: every registered model on tiny 2D/3D inputs, stems, conversions, errors."""
import pytest
import torch
import torch.nn as nn

from mednb import models

CLASSIFIERS_2D = ["cnn", "resnet18", "resnet50"]
CLASSIFIERS_3D = ["cnn", "cnn_2.5d", "cnn_3d", "cnn_acs", "resnet18_2.5d", "resnet18_3d", "resnet18_acs",
                  "resnet50_2.5d", "resnet50_3d", "resnet50_acs"]


def test_registry_names_and_unknown_name_lists_valid_names():
    names = models.names()
    assert set(CLASSIFIERS_2D + CLASSIFIERS_3D) <= set(names)
    with pytest.raises(ValueError, match="valid models: .*resnet18"):
        models.create("resnet19")
    with pytest.raises(ValueError, match="dims"):
        models.create("cnn", dims=4)


@pytest.mark.parametrize("name", CLASSIFIERS_2D)
@pytest.mark.parametrize("channels", [1, 3])
def test_2d_classifiers_forward_embed_backward(name, channels):
    torch.manual_seed(0)
    m = models.create(name, channels, 5, dims=2, size=28)  # 28 px: CIFAR stem for the ResNets
    assert list(dict(m.features.named_children()))  # named stages for CAM/transfer code
    if name != "cnn":  # the CIFAR-stem ResNets are slow on CPU: one forward pass only
        with torch.no_grad():
            assert m.eval()(torch.randn(1, channels, 28, 28)).shape == (1, 5)
        return
    x = torch.randn(2, channels, 28, 28)
    out = m(x)
    assert out.shape == (2, 5)
    assert m.embed(x).shape == (2, 128)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize("name", CLASSIFIERS_3D)
def test_3d_classifiers_tiny_volumes(name):
    torch.manual_seed(0)
    m = models.create(name, 1, 3, dims=3, size=8).eval()
    with torch.no_grad():
        out = m(torch.randn(1, 1, 8, 8, 8))
    assert out.shape == (1, 3)
    assert not any(isinstance(mod, nn.Conv2d) for mod in m.modules())


def test_segmentation_plugins_forward():
    """Models registered by other modules (segmenters) also build and run on tiny inputs."""
    extra = [n for n in models.names() if n not in CLASSIFIERS_2D + CLASSIFIERS_3D]
    for name in extra:
        m = models.create(name, 1, 2, dims=2, size=16).eval()
        with torch.no_grad():
            out = m(torch.randn(1, 1, 16, 16))
        assert out.shape[0] == 1 and out.shape[1] == 2


def test_stems_and_parameter_counts():
    small = models.create("resnet18", 1, 2, size=28)
    big = models.create("resnet18", 1, 2, size=224)
    assert small.stem_kind == "cifar" and big.stem_kind == "imagenet"
    conv1 = small.features.stem[0]
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1)
    assert isinstance(small.features.stem[3], nn.Identity)  # no max-pool at 28 px
    assert big.features.stem[0].kernel_size == (7, 7) and isinstance(big.features.stem[3], nn.MaxPool2d)
    with torch.no_grad():
        assert big.eval()(torch.randn(1, 1, 64, 64)).shape == (1, 2)
    # the small CNNs match the reference scripts' sizes (0.24M 2D, 0.18M 3D)
    assert 230_000 < models.count_parameters(models.create("cnn", 1, 2)) < 250_000
    assert 170_000 < models.count_parameters(models.create("cnn", 1, 2, dims=3)) < 190_000
    assert 11.0e6 < models.count_parameters(small) < 11.3e6
    with pytest.raises(ValueError, match="valid: auto, cifar, imagenet"):
        models.create("resnet18", stem="vgg")


def test_to_3d_keeps_weights():
    torch.manual_seed(0)
    m2 = models.create("cnn", 1, 2, width=4)
    x2 = torch.randn(2, 1, 12, 12)
    # a volume that is constant along depth: 2.5D applies the 2D net per slice, and I3D inflation
    # (kernel repeated over depth / k) sees the same sums in the interior slices
    vol = x2.unsqueeze(2).repeat(1, 1, 6, 1, 1)
    m2.eval()
    with torch.no_grad():
        f2 = m2.features.block1(x2)
        for mode in ("2.5d", "3d"):
            m3 = models.to_3d(m2, mode).eval()
            f3 = m3.features.block1(vol)
            mid = f3[:, :, 1]  # an interior slice (pooled depth 3)
            assert torch.allclose(mid, f2, atol=1e-5), mode
    assert isinstance(m2.features.block1[0], nn.Conv2d)  # input untouched
    with pytest.raises(ValueError, match="valid: 3d, 2.5d, acs"):
        models.to_3d(m2, "4d")


def test_acs_conv_planes_and_weights():
    conv = nn.Conv2d(2, 7, 3, padding=1, bias=True)
    acs = models.ACSConv(conv)
    assert sum(acs.splits) == 7 and acs.splits == (3, 2, 2)
    assert torch.equal(acs.weight, conv.weight)
    y = acs(torch.randn(1, 2, 5, 6, 7))
    assert y.shape == (1, 7, 5, 6, 7)
    # a volume constant along depth: axial outputs equal the 2D conv on one slice
    x2 = torch.randn(1, 2, 6, 7)
    vol = x2.unsqueeze(2).repeat(1, 1, 5, 1, 1)
    with torch.no_grad():
        assert torch.allclose(acs(vol)[:, :3, 2], conv(x2)[:, :3], atol=1e-5)


def test_width_kw_only_for_the_small_cnn_family():
    """A width knob reaches cnn / cnn_3d / cnn_2.5d / cnn_acs; ResNets (no width) and width 0/None get nothing."""
    assert models.width_kw("cnn", 8) == {"width": 8} and models.width_kw("CNN_3D", 8) == {"width": 8}
    assert models.width_kw("cnn_acs", 4) == {"width": 4}
    assert models.width_kw("resnet18_3d", 8) == {}
    assert models.width_kw("cnn", 0) == {} and models.width_kw("cnn", None) == {}
    m = models.create("cnn_3d", 1, 2, dims=3, **models.width_kw("cnn_3d", 4))
    assert models.count_parameters(m) < models.count_parameters(models.create("cnn_3d", 1, 2, dims=3))
