"""Transfer learning (notebook 03): what to transfer (sources), how (strategies), when it helps.

Strategies (``STRATEGIES``), applied to a mednb ``Classifier`` (``features`` stages + ``head``):

* ``scratch`` — every weight re-initialised and trained (the source is discarded): the baseline.
* ``linear_probe`` — the body is a frozen feature extractor; only the new head is trained.
* ``finetune`` — every weight trained, the body with a smaller learning rate (discriminative LRs,
  Howard & Ruder, ULMFiT, ACL 2018): ``lr × body_lr_mult × layer_decay**(depth from the top)``.
* ``two_stage`` — the head alone for ``head_epochs`` epochs with the body frozen, then the body is
  unfrozen and everything is trained (discriminative LRs) — one ``engine.fit`` call, switched by a
  callback at the end of epoch ``head_epochs``.
* ``partial`` — the first ``freeze_stages`` parameterised stages of ``model.features`` are frozen,
  the rest fine-tuned (discriminative LRs).

Frozen means ``requires_grad=False`` for the stage's parameters AND its BatchNorm layers kept in
eval mode (a forward pre-hook), so neither weights nor running statistics move while frozen.

Sources (``SOURCES``): ``none`` (random init); ``imagenet`` (torchvision's ``IMAGENET1K_V1``
ResNet weights through the weights API: read from the torch hub cache
``$TORCH_HOME/hub/checkpoints`` when present, else downloaded; offline without the file →
:class:`WeightsNotFound` with the numbered fix); ``indomain`` (a mednb model trained with labels
on another MedMNIST set or phantom site, saved with ``engine.save_checkpoint`` under
``data_root()/checkpoints/transfer/`` and reloaded); ``ssl`` (a checkpoint of notebook 04 under
``data_root()/checkpoints/ssl/``; :class:`SourceUnavailable` when there is none).

Input adaptation, stated once:

* grey → RGB: the ImageNet conv1 kernel is summed over its RGB input channels for 1-channel
  input, i.e. the model sees the grey image replicated to RGB. ImageNet's per-channel
  normalisation is folded into conv1 (and bn1's running mean), so on mednb's (x−0.5)/0.5 input the
  converted stem computes exactly what the ImageNet stem computes on the ImageNet-normalised RGB
  replica (exact away from the zero-padded border; tested).
* 28 px: ResNets use the torchvision (ImageNet) stem — 7×7 stride-2 conv + max-pool — so the
  pretrained conv1 transfers unchanged; at 28 px that leaves 7×7 maps after the stem (1×1 at
  layer4). ``input_size`` > data size upsamples inside the model (bilinear/trilinear ``resize``
  stage) — the full profile feeds 64 px. The CIFAR stem (3×3, no pool) has no ImageNet weights.
* 2D → 3D: the 2D model is built and loaded, then :func:`mednb.models.to_3d` inflates it
  (I3D, Carreira & Zisserman, CVPR 2017: each 2D kernel repeated k times along depth and divided
  by k), so a volume constant along depth gives the 2D response on every slice away from the
  depth border (zero padding along depth changes the border slices; tested on interior slices).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from . import engine, models
from .data import DataCorrupt, DataNotFound, Splits, data_root, label_subset
from .runtime import seed_everything

PROFILES = {
    "smoke": dict(
        DATASET="phantom2d", SITE=2, SIZE=28, INPUT_SIZE=28, MODEL="cnn", STEM="imagenet",
        SOURCES=["none", "indomain"], SOURCE_DATASET="phantom2d", SOURCE_SITE=0, SOURCE_EPOCHS=2,
        PHANTOM_COUNTS=[320, 80, 160], STRATEGIES=["scratch", "linear_probe", "finetune", "two_stage", "partial"],
        LABEL_FRACTIONS=[0.01, 0.1, 1.0], SEEDS=[0], EPOCHS=2, MIN_STEPS=4, BATCH_SIZE=64, LR=1e-3,
        BODY_LR_MULT=0.1, FREEZE_STAGES=2, HEAD_EPOCHS=1,
        TRANSFUSION_MODELS=["cnn", "resnet18"], TRANSFUSION_SOURCE="indomain", TRANSFUSION_FRACTION=0.1,
        DATASET_3D="phantom3d", PHANTOM3D_COUNTS=[32, 16, 32], WIDTH_3D=16, EPOCHS_3D=2, LABEL_FRACTION_3D=1.0,
        SHIFT_SOURCE="phantom2d:0", SHIFT_TARGETS=["phantom2d:1", "phantom2d:3"], TARGET_LABELS=[0, 16],
        EMBEDDING="pca", DEVICE="auto"),
    "student": dict(
        DATASET="breastmnist", SITE=0, SIZE=28, INPUT_SIZE=28, MODEL="cnn", STEM="imagenet",
        SOURCES=["none", "indomain", "ssl"], SOURCE_DATASET="phantom2d", SOURCE_SITE=0, SOURCE_EPOCHS=8,
        PHANTOM_COUNTS=[1200, 300, 600], STRATEGIES=["scratch", "linear_probe", "finetune", "two_stage", "partial"],
        LABEL_FRACTIONS=[0.01, 0.1, 1.0], SEEDS=[0, 1, 2], EPOCHS=15, MIN_STEPS=60, BATCH_SIZE=64, LR=1e-3,
        BODY_LR_MULT=0.1, FREEZE_STAGES=2, HEAD_EPOCHS=3,
        TRANSFUSION_MODELS=["cnn", "resnet18", "resnet50"], TRANSFUSION_SOURCE="indomain",
        TRANSFUSION_FRACTION=0.1,
        DATASET_3D="adrenalmnist3d", PHANTOM3D_COUNTS=[400, 100, 200], WIDTH_3D=16, EPOCHS_3D=6,
        LABEL_FRACTION_3D=0.25,
        SHIFT_SOURCE="phantom2d:0", SHIFT_TARGETS=["phantom2d:1", "phantom2d:3"],
        TARGET_LABELS=[0, 8, 64], EMBEDDING="tsne", DEVICE="auto"),
    "full": dict(
        DATASET="breastmnist", SITE=0, SIZE=28, INPUT_SIZE=64, MODEL="cnn", STEM="imagenet",
        SOURCES=["none", "imagenet", "indomain", "ssl"], SOURCE_DATASET="organamnist", SOURCE_SITE=0,
        SOURCE_EPOCHS=30, PHANTOM_COUNTS=[1200, 300, 600],
        STRATEGIES=["scratch", "linear_probe", "finetune", "two_stage", "partial"],
        LABEL_FRACTIONS=[0.01, 0.1, 1.0], SEEDS=[0, 1, 2, 3, 4], EPOCHS=50, MIN_STEPS=300, BATCH_SIZE=128,
        LR=1e-3, BODY_LR_MULT=0.1, FREEZE_STAGES=2, HEAD_EPOCHS=10,
        TRANSFUSION_MODELS=["cnn", "resnet18", "resnet50"], TRANSFUSION_SOURCE="imagenet",
        TRANSFUSION_FRACTION=1.0,
        DATASET_3D="adrenalmnist3d", PHANTOM3D_COUNTS=[400, 100, 200], WIDTH_3D=32, EPOCHS_3D=50,
        LABEL_FRACTION_3D=1.0,
        SHIFT_SOURCE="organamnist", SHIFT_TARGETS=["organcmnist", "organsmnist"],
        TARGET_LABELS=[0, 10, 100, 1000], EMBEDDING="tsne", DEVICE="auto"),
}

STRATEGIES = {
    "scratch": "random initialisation, every weight trained (the source is discarded)",
    "linear_probe": "frozen pretrained body as a feature extractor, new head trained",
    "finetune": "every weight trained, body at a smaller (discriminative) learning rate",
    "two_stage": "head only with the body frozen for head_epochs, then unfreeze and train all",
    "partial": "first freeze_stages stages frozen, the rest fine-tuned",
}
SOURCES = {
    "none": "random initialisation",
    "imagenet": "torchvision IMAGENET1K_V1 weights (ResNets; torch hub cache or download)",
    "indomain": "a mednb model trained with labels on another medical set / phantom site",
    "ssl": "a self-supervised checkpoint of notebook 04 (data_root()/checkpoints/ssl)",
}
IMAGENET = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights"}
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's naming convention: name-<sha256 prefix>.pth


class WeightsNotFound(DataNotFound):
    """Pretrained weights are not cached and cannot be downloaded (message: numbered steps)."""


class SourceUnavailable(RuntimeError):
    """An optional source (e.g. ``ssl``) has nothing to load; callers may skip it."""


def check_strategy(name: str) -> str:
    key = str(name).lower()
    if key not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    return key


def check_source(name: str) -> str:
    key = str(name).lower()
    if key not in SOURCES:
        raise ValueError(f"unknown source {name!r}; valid: {', '.join(SOURCES)}")
    return key


# ----------------------------------------------------------------------------- freezing
def stages(model: nn.Module) -> list[str]:
    """Names of the ``model.features`` stages that hold parameters, input to output."""
    return [n for n, m in model.features.named_children() if any(True for _ in m.parameters())]


def _bn_eval_hook(module, inputs):
    module.train(False)  # frozen BatchNorm: running statistics, no update


def freeze(model: nn.Module, names) -> list[str]:
    """Freeze ``features`` stages: ``"all"``, an int k (the first k of :func:`stages`) or names.

    Parameters get ``requires_grad=False``; BatchNorm layers in them stay in eval mode (running
    stats used and not updated) even under ``model.train()``. Returns the newly frozen names.
    """
    all_stages = stages(model)
    if names == "all":
        names = all_stages
    elif isinstance(names, int):
        if not 0 <= names <= len(all_stages):
            raise ValueError(f"can freeze 0..{len(all_stages)} stages of {all_stages}, got {names}")
        names = all_stages[:names]
    hooks = model.__dict__.setdefault("_mednb_frozen", {})
    done = []
    for name in names:
        if name not in all_stages:
            raise ValueError(f"unknown stage {name!r}; valid: {', '.join(all_stages)}")
        if name in hooks:
            continue
        stage = getattr(model.features, name)
        for p in stage.parameters():
            p.requires_grad_(False)
        hooks[name] = [m.register_forward_pre_hook(_bn_eval_hook) for m in stage.modules()
                       if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        done.append(name)
    return done


def unfreeze(model: nn.Module, names=None) -> list[str]:
    """Undo :func:`freeze` for ``names`` (default: every frozen stage). Returns the names."""
    hooks = model.__dict__.setdefault("_mednb_frozen", {})
    names = list(hooks) if names is None else list(names)
    for name in names:
        for h in hooks.pop(name, []):
            h.remove()
        for p in getattr(model.features, name).parameters():
            p.requires_grad_(True)
    return names


def frozen(model: nn.Module) -> list[str]:
    """Names of the frozen stages."""
    return list(model.__dict__.get("_mednb_frozen", {}))


def param_groups(model: nn.Module, lr: float, body_lr_mult: float = 0.1, layer_decay: float = 1.0,
                 only_trainable: bool = False) -> list[dict]:
    """Optimizer groups with discriminative learning rates.

    head: ``lr``; stage i of n (0 = input side): ``lr × body_lr_mult × layer_decay**(n−1−i)``.
    Frozen parameters are included (Adam/SGD skip parameters without gradients) unless
    ``only_trainable``, so that a later unfreeze trains them with their own rate.
    """
    names = stages(model)
    groups = []
    for i, name in enumerate(names):
        ps = [p for p in getattr(model.features, name).parameters() if p.requires_grad or not only_trainable]
        if ps:
            groups.append({"params": ps, "lr": lr * body_lr_mult * layer_decay ** (len(names) - 1 - i),
                           "name": name})
    head = [p for p in model.head.parameters() if p.requires_grad or not only_trainable]
    groups.append({"params": head, "lr": lr, "name": "head"})
    return groups


def reset_parameters(model: nn.Module) -> nn.Module:
    """Re-initialise every submodule that has ``reset_parameters`` (in place, uses torch's RNG)."""
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return model


@dataclass
class Plan:
    """What :func:`prepare` decided: optimizer groups, callbacks, frozen stages, the switch epoch."""
    strategy: str
    param_groups: list
    callbacks: list
    frozen: list[str]
    switch_epoch: int | None = None
    events: list = field(default_factory=list)
    lrs: dict = field(default_factory=dict)

    def __post_init__(self):  # initial rates per group (the optimizer's scheduler mutates the groups)
        self.lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.param_groups)}


def prepare(model: nn.Module, strategy: str, *, lr: float, body_lr_mult: float = 0.1, layer_decay: float = 1.0,
            freeze_stages: int = 2, head_epochs: int = 1) -> Plan:
    """Apply a strategy to ``model`` in place and return the :class:`Plan` for ``engine.fit``.

    ``scratch`` re-initialises the model (seed torch first); ``two_stage`` returns a callback that
    unfreezes the body at the end of epoch ``head_epochs`` and logs it in ``plan.events``.
    """
    key = check_strategy(strategy)
    unfreeze(model)
    if key == "scratch":
        reset_parameters(model)
        return Plan(key, [{"params": list(model.parameters()), "lr": lr, "name": "all"}], [], [])
    if key == "linear_probe":
        fz = freeze(model, "all")
        return Plan(key, [{"params": list(model.head.parameters()), "lr": lr, "name": "head"}], [], fz)
    if key == "finetune":
        return Plan(key, param_groups(model, lr, body_lr_mult, layer_decay), [], [])
    if key == "partial":
        fz = freeze(model, int(freeze_stages))
        return Plan(key, param_groups(model, lr, body_lr_mult, layer_decay, only_trainable=True), [], fz)
    # two_stage
    if head_epochs < 1:
        raise ValueError(f"two_stage needs head_epochs >= 1, got {head_epochs}")
    fz = freeze(model, "all")
    plan = Plan(key, param_groups(model, lr, body_lr_mult, layer_decay), [], fz, switch_epoch=int(head_epochs))

    def switch(log: dict):
        if log["epoch"] == plan.switch_epoch:
            unfreeze(model)
            plan.events.append({"epoch": log["epoch"], "event": "unfreeze", "stages": list(fz)})
    plan.callbacks.append(switch)
    return plan


def epochs_for(n_train: int, batch_size: int, epochs: int, min_steps: int = 0) -> int:
    """``epochs``, raised so that training makes at least ``min_steps`` optimizer steps
    (tiny label fractions otherwise get one or two steps in total)."""
    steps = max(1, math.ceil(n_train / batch_size))
    return max(int(epochs), math.ceil(min_steps / steps))


def fit(model: nn.Module, splits: Splits, strategy: str, *, lr: float = 1e-3, body_lr_mult: float = 0.1,
        layer_decay: float = 1.0, freeze_stages: int = 2, head_epochs: int = 1, epochs: int = 10,
        callbacks=(), **fit_kw) -> engine.FitResult:
    """:func:`prepare` + :func:`mednb.engine.fit`. Returns the FitResult with ``.plan`` attached.

    Use a ``schedule`` that scales every group (multistep/cosine/constant): ``onecycle`` sets one
    max LR for all groups and would undo the discriminative rates.
    """
    key = check_strategy(strategy)
    if key == "two_stage" and head_epochs >= epochs:
        raise ValueError(f"two_stage needs epochs > head_epochs, got epochs={epochs}, head_epochs={head_epochs}")
    if fit_kw.get("schedule") == "onecycle" and key not in ("scratch", "linear_probe"):
        raise ValueError("schedule='onecycle' overrides discriminative learning rates; use multistep or cosine")
    plan = prepare(model, key, lr=lr, body_lr_mult=body_lr_mult, layer_decay=layer_decay,
                   freeze_stages=freeze_stages, head_epochs=head_epochs)
    res = engine.fit(model, splits, epochs=epochs, lr=lr, param_groups=plan.param_groups,
                     callbacks=[*plan.callbacks, *callbacks], **fit_kw)
    res.plan = plan
    return res


# ----------------------------------------------------------------------------- building models
class Resize(nn.Module):
    """Upsample (N,C,H,W) / (N,C,D,H,W) inputs to ``size`` px (bilinear / trilinear)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def forward(self, x):
        mode = "bilinear" if x.ndim == 4 else "trilinear"
        return nn.functional.interpolate(x, size=(self.size,) * (x.ndim - 2), mode=mode, align_corners=False)

    def extra_repr(self):
        return f"size={self.size}"


def create2d(model: str, in_channels: int, num_classes: int, size: int = 28, *, stem: str = "imagenet",
             input_size: int | None = None, **model_kw) -> nn.Module:
    """A 2D mednb classifier for ``size`` px data; ResNets get ``stem``; ``input_size`` > size
    prepends a ``resize`` stage to ``features`` (the model then works at ``input_size``)."""
    name = str(model).lower()
    if name not in ("cnn", "resnet18", "resnet50"):
        raise ValueError(f"transfer builds 2D models and inflates them for 3D; valid models: cnn, resnet18, "
                         f"resnet50 (got {model!r})")
    work = int(input_size or size)
    kw = dict(model_kw)
    if name.startswith("resnet"):
        kw["stem"] = stem
    net = models.create(name, in_channels, num_classes, dims=2, size=work, **kw)
    if work > size:
        feats = nn.Sequential()
        feats.add_module("resize", Resize(work))
        for n, m in net.features.named_children():
            feats.add_module(n, m)
        net.features = feats
    return net


def _adapt_first_conv(w: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Source conv weight (O, C_src, k…) → (O, in_channels, k…): sum for RGB→grey, repeat/C for grey→C."""
    c = w.shape[1]
    if c == in_channels:
        return w
    if in_channels == 1:
        return w.sum(1, keepdim=True)
    if c == 1:
        return w.repeat(1, in_channels, *([1] * (w.ndim - 2))) / in_channels
    raise ValueError(f"cannot adapt a {c}-channel first convolution to {in_channels} channels")


def body_state(state: dict) -> dict:
    """The ``features.*`` entries of a state dict, with any prefix before ``features.`` removed
    (SSL checkpoints store ``model.features.…``)."""
    out = {}
    for k, v in state.items():
        i = k.find("features.")
        if i >= 0 and (i == 0 or k[i - 1] == "."):
            out.setdefault(k[i:], v)
    return out


def load_body(model: nn.Module, state, adapt_channels: bool = True) -> list[str]:
    """Copy ``features.*`` weights into ``model`` (the head is left as it is).

    state: a state dict, an ``nn.Module`` or a checkpoint path of ``engine.save_checkpoint``.
    Every ``features`` tensor of ``model`` must be present with the same shape (the first conv
    may differ in input channels when ``adapt_channels``). Returns the loaded keys.
    """
    if isinstance(state, (str, Path)):
        state = torch.load(state, map_location="cpu", weights_only=True)["state_dict"]
    if isinstance(state, nn.Module):
        state = state.state_dict()
    src = body_state(state)
    own = {k: v for k, v in model.state_dict().items() if k.startswith("features.")}
    if not src:
        raise ValueError("the source has no 'features.*' weights")
    first = next((k for k, v in own.items() if v.ndim >= 4), None)
    new, bad = {}, []
    for k, v in own.items():
        s = src.get(k)
        if s is None and k.endswith("num_batches_tracked"):
            continue  # older torchvision files do not store it
        if s is not None and s.shape != v.shape and k == first and adapt_channels:
            s = _adapt_first_conv(s, v.shape[1])
        if s is None or s.shape != v.shape:
            bad.append(f"{k} {tuple(v.shape)} vs {None if s is None else tuple(s.shape)}")
        else:
            new[k] = s
    if bad:
        raise ValueError(f"source weights do not fit the model ({len(bad)} tensors), e.g. {'; '.join(bad[:3])}")
    model.load_state_dict(new, strict=False)
    return list(new)


# ----------------------------------------------------------------------------- ImageNet
def imagenet_weights(arch: str):
    """torchvision's ``IMAGENET1K_V1`` weights enum member for ``resnet18``/``resnet50``."""
    import torchvision
    key = str(arch).lower()
    if key not in IMAGENET:
        raise ValueError(f"no ImageNet weights for {arch!r}; valid: {', '.join(IMAGENET)}")
    return getattr(torchvision.models, IMAGENET[key]).IMAGENET1K_V1


def imagenet_file(arch: str) -> Path:
    """Where torch hub caches the weights: ``torch.hub.get_dir()/checkpoints/<file name of url>``
    (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``)."""
    url = imagenet_weights(arch).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _weights_message(arch: str, reason: str) -> str:
    w = imagenet_weights(arch)
    path = imagenet_file(arch)
    return (
        f"ImageNet weights for {arch} (torchvision {IMAGENET[arch]}.IMAGENET1K_V1) are not in the torch hub cache "
        f"and could not be downloaded ({reason}).\n"
        f"To fix it:\n"
        f"  1. On a machine with internet access, download {w.url}\n"
        f"  2. Put the file, keeping its name, at {path}\n"
        f"     (torch hub cache = $TORCH_HOME/hub/checkpoints; TORCH_HOME is "
        f"{os.environ.get('TORCH_HOME', 'unset → ~/.cache/torch')})\n"
        f"  3. Or point TORCH_HOME at a folder whose hub/checkpoints/ already holds {path.name}\n"
        f"  4. Or leave 'imagenet' out of SOURCES / TRANSFUSION_SOURCE (the smoke and student profiles "
        f"do not need it)."
    )


def _sha256_prefix_ok(path: Path) -> tuple[bool, str, str]:
    m = HASH_REGEX.search(path.name)
    if not m:
        return True, "", ""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    got = h.hexdigest()
    return got.startswith(m.group(1)), m.group(1), got[:len(m.group(1))]


def imagenet_state_dict(arch: str, download: bool = True, verify: bool = False, progress: bool = False,
                        timeout: float = 30.0) -> dict:
    """torchvision's ImageNet state dict for ``arch`` (keys ``conv1.weight``, ``bn1.*``, ``layerN.*``, ``fc.*``).

    A cached file is used as it is (as torchvision does: torch hub checks the SHA-256 prefix in the
    file name only when downloading with ``check_hash=True``); ``verify=True`` checks it here too
    (:class:`~mednb.data.DataCorrupt` on mismatch). Missing: downloaded with ``check_hash=True``;
    offline or ``download=False`` → :class:`WeightsNotFound` with the numbered fix.
    """
    key = str(arch).lower()
    w = imagenet_weights(key)
    path = imagenet_file(key)
    if not path.exists():
        if not download:
            raise WeightsNotFound(_weights_message(key, "download=False"))
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout)
        try:
            return w.get_state_dict(progress=progress, check_hash=True, weights_only=True)
        except OSError as e:  # URLError, DNS failure, timeout
            raise WeightsNotFound(_weights_message(key, f"{type(e).__name__}: {e}")) from None
        finally:
            socket.setdefaulttimeout(old)
    if verify:
        ok, want, got = _sha256_prefix_ok(path)
        if not ok:
            raise DataCorrupt(f"{path}: SHA-256 starts with {got}, expected {want} (from the file name). "
                              f"Delete it and download {w.url} again.")
    return torch.load(path, map_location="cpu", weights_only=True)


def imagenet_to_mednb(state: dict, model: nn.Module, arch: str | None = None) -> dict:
    """Map a torchvision ResNet state dict onto a mednb ResNet ``Classifier`` (torchvision stem).

    conv1 is adapted to the model's input channels and mednb's normalisation (x−0.5)/0.5 instead
    of ImageNet's per-channel mean/std: W' = Σ_c W_c·0.5/std_c (grey: summed over RGB, i.e. the grey
    image replicated to RGB), and the constant Σ W_c·(0.5−mean_c)/std_c is folded into bn1's running
    mean. Returns a ``features.*`` state dict for :func:`load_body` (``fc`` dropped).
    """
    stem = model.features.stem
    conv = stem[0]
    if conv.kernel_size != (7, 7):
        raise ValueError("ImageNet weights need the torchvision stem (7×7 conv1 + max-pool): build the ResNet with "
                         "stem='imagenet' (the CIFAR stem used at 28 px by default has no ImageNet weights)")
    tf = imagenet_weights(arch or getattr(model, "mednb_name", "resnet18")).transforms()
    mean = torch.tensor(tf.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(tf.std, dtype=torch.float32).view(1, 3, 1, 1)
    w = state["conv1.weight"].float()
    cin = conv.in_channels
    if cin not in (1, 3):
        raise ValueError(f"ImageNet weights need 1 (grey) or 3 (RGB) input channels, got {cin}")
    scaled = w * engine.STD / std
    w_new = scaled.sum(1, keepdim=True) if cin == 1 else scaled
    shift = (w * (engine.MEAN - mean) / std).sum(dim=(1, 2, 3))  # per output channel
    out = {"features.stem.0.weight": w_new}
    for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        if f"bn1.{k}" in state:
            out[f"features.stem.1.{k}"] = state[f"bn1.{k}"]
    out["features.stem.1.running_mean"] = state["bn1.running_mean"] - shift
    for k, v in state.items():
        if k.startswith("layer"):
            out[f"features.{k}"] = v
    return out


# ----------------------------------------------------------------------------- in-domain and SSL
def parse_domain(spec: str) -> tuple[str, int]:
    """``"phantom2d:3"`` → ("phantom2d", 3); ``"organcmnist"`` → ("organcmnist", 0)."""
    name, _, site = str(spec).partition(":")
    return name.lower(), int(site) if site else 0


def domain_spec(name: str, site: int = 0) -> str:
    """``name:site`` for phantoms (``phantom2d:2``), the plain name for MedMNIST sets."""
    from . import data
    return f"{name}:{int(site)}" if str(name).lower() in data.PHANTOMS else str(name).lower()


def load_domain(spec: str, size: int = 28, counts=None, seed: int = 0) -> Splits:
    """Load ``name[:site]`` through :func:`mednb.data.load` (``counts``/``site`` for phantoms only).
    A missing MedMNIST file raises the data layer's :class:`~mednb.data.DataNotFound`."""
    from . import data
    name, site = parse_domain(spec)
    if name in data.PHANTOMS:
        return data.load(name, size, counts=counts, site=site, seed=seed)
    if site:
        raise ValueError(f"{spec!r}: sites exist for phantoms only")
    return data.load(name, size)


def indomain_checkpoint(model: str, source: str, *, size: int = 28, counts=None, epochs: int = 10,
                        lr: float = 1e-3, batch_size: int = 64, seed: int = 0, stem: str = "imagenet",
                        input_size: int | None = None, model_kw: dict | None = None, device="auto",
                        progress: bool = True, force: bool = False) -> Path:
    """Train (once) a 2D ``model`` with labels on ``source`` (``name[:site]``) and save it with
    ``engine.save_checkpoint`` under ``data_root()/checkpoints/transfer/``; returns the path.

    The checkpoint's extras hold the recipe and the source's val/test AUC. Cached by recipe.
    """
    splits = load_domain(source, size, counts, seed=seed)
    if splits.dims != 2:
        raise ValueError(f"in-domain sources are 2D (3D targets inflate them); {source!r} is 3D")
    recipe = dict(model=str(model), source=str(source), size=int(size), n=[len(splits.train), len(splits.val)],
                  epochs=int(epochs), lr=float(lr), batch_size=int(batch_size), seed=int(seed), stem=str(stem),
                  input_size=int(input_size or size), model_kw={k: model_kw[k] for k in sorted(model_kw or {})})
    key = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    tag = str(source).replace(":", "-site")
    path = data_root() / "checkpoints" / "transfer" / f"{model}_{tag}_{size}_{key}.pt"
    if path.exists() and not force:
        return path
    seed_everything(seed)
    net = create2d(model, splits.n_channels, splits.n_outputs, size, stem=stem, input_size=input_size,
                   **(model_kw or {}))
    res = engine.fit(net, splits, epochs=epochs, lr=lr, batch_size=batch_size, device=device, seed=seed,
                     progress=progress, desc=f"source {model} on {source}")
    test = engine.evaluate(res.model, splits.test, splits.task, device)
    engine.save_checkpoint(res.model, path, {"recipe": recipe, "val_auc": float(res.metric("val_auc")),
                                             "test_auc": float(test["auc"]), "in_channels": splits.n_channels,
                                             "n_outputs": splits.n_outputs, "task": splits.task})
    return path


def checkpoint_info(path: str | Path) -> dict:
    """The extras stored with a checkpoint (recipe, source AUCs, …), without the weights."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v for k, v in ckpt.items() if k != "state_dict"}


def _fits(t, shape) -> bool:
    """Same shape, or a conv weight that differs only in input channels (adapted on load)."""
    if t is None:
        return False
    return t.shape == shape or (t.ndim == len(shape) >= 4 and t.shape[0] == shape[0] and t.shape[2:] == shape[2:])


def _fitting(files, model: nn.Module, what: str, hint: str, accept=None) -> Path:
    """First of ``files`` (checkpoint paths) whose ``features`` fit ``model`` and, when given, whose loaded
    checkpoint dict passes ``accept``; else :class:`SourceUnavailable` ("no {what} for {model} {hint}")."""
    own = {k: v.shape for k, v in model.state_dict().items() if k.startswith("features.")}
    for f in files:
        try:
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
            body = body_state(ckpt["state_dict"])
        except Exception:  # unreadable or foreign file: not a candidate
            continue
        if accept is not None and not accept(ckpt):
            continue
        if body and all(_fits(body.get(k), s) for k, s in own.items() if not k.endswith("num_batches_tracked")):
            return f
    name = getattr(model, "mednb_name", type(model).__name__)
    raise SourceUnavailable(f"no {what} for {name} {hint}")


def _newest(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.exists() else []


def ssl_checkpoint(model: nn.Module, dataset: str | None = None) -> Path:
    """The newest notebook-04 checkpoint in ``data_root()/checkpoints/ssl/`` whose ``features`` fit
    ``model`` (preferring file names that contain ``dataset``); :class:`SourceUnavailable` if none."""
    folder = data_root() / "checkpoints" / "ssl"
    files = _newest(folder)
    if dataset:
        files.sort(key=lambda p: f"_{dataset}_" not in p.name)  # stable: matching names first
    return _fitting(files, model, "SSL checkpoint",
                    f"in {folder} — run notebook 04 (ssl.pretrain) first; skipping the 'ssl' source")


def indomain_for(model: nn.Module, target: str) -> Path:
    """The newest notebook-03 in-domain checkpoint (:func:`indomain_checkpoint`, under
    ``data_root()/checkpoints/transfer/``) whose ``features`` fit ``model`` and whose labelled source is
    another domain than ``target`` (``name[:site]``; a source trained on the target's own labels would
    leak them). :class:`SourceUnavailable` when there is none."""
    folder = data_root() / "checkpoints" / "transfer"
    tgt = parse_domain(target)

    def other_domain(ckpt: dict) -> bool:
        src = (ckpt.get("recipe") or {}).get("source")
        return src is not None and parse_domain(src) != tgt

    return _fitting(_newest(folder), model, "in-domain checkpoint",
                    f"from a domain other than {target!r} in {folder} — run notebook 03 "
                    f"(transfer.indomain_checkpoint) first, or use another source", accept=other_domain)


def build(model: str, splits: Splits, source: str = "none", *, stem: str = "imagenet",
          input_size: int | None = None, checkpoint: str | Path | None = None, imagenet_download: bool = True,
          seed: int = 0, model_kw: dict | None = None, keep_head: bool = False) -> nn.Module:
    """A classifier for ``splits`` (channels, classes, 2D/3D) initialised from ``source``, with a fresh head.

    source: ``none`` | ``imagenet`` | ``indomain`` (needs ``checkpoint``, see
    :func:`indomain_checkpoint`) | ``ssl`` (``checkpoint`` or the newest fitting one of notebook 04).
    3D targets: the 2D model is loaded, then inflated with ``models.to_3d(·, "3d")``; with
    ``source="none"`` the inflated architecture is re-initialised (a fair 3D scratch baseline).
    keep_head: ``indomain`` only — also load the source classifier's head (same classes required).
    """
    src = check_source(source)
    seed_everything(seed)
    net = create2d(model, splits.n_channels, splits.n_outputs, splits.size, stem=stem, input_size=input_size,
                   **(model_kw or {}))
    if src == "imagenet":
        arch = str(model).lower()
        load_body(net, imagenet_to_mednb(imagenet_state_dict(arch, download=imagenet_download), net, arch))
    elif src == "indomain":
        if checkpoint is None:
            raise ValueError("source='indomain' needs checkpoint= (see transfer.indomain_checkpoint)")
        if keep_head:
            engine.load_checkpoint(net, checkpoint)
        else:
            load_body(net, checkpoint)
    elif src == "ssl":
        load_body(net, checkpoint or ssl_checkpoint(net, splits.name))
    net.transfer_source = src
    if splits.dims == 3:
        net = models.to_3d(net, "3d")
        if src == "none":
            reset_parameters(net)
    return net


# ----------------------------------------------------------------------------- experiments
def run(splits: Splits, model: str, source: str, strategy: str, *, label_fraction: float = 1.0, seed: int = 0,
        epochs: int = 10, min_steps: int = 0, batch_size: int = 64, lr: float = 1e-3, body_lr_mult: float = 0.1,
        freeze_stages: int = 2, head_epochs: int = 1, checkpoint=None, stem: str = "imagenet",
        input_size: int | None = None, model_kw: dict | None = None, train_idx=None, select: str = "val_auc",
        keep_head: bool = False, device="auto", progress: bool = False) -> engine.FitResult:
    """Build from ``source``, apply ``strategy``, fit on a label fraction, score on test.

    Epochs are raised to reach ``min_steps`` optimizer steps (``two_stage``'s ``head_epochs`` scale
    with them). Returns the FitResult with ``.test`` and ``.plan``.
    """
    strategy = check_strategy(strategy)
    net = build(model, splits, source if strategy != "scratch" else "none", stem=stem, input_size=input_size,
                checkpoint=checkpoint, seed=seed, model_kw=model_kw, keep_head=keep_head and strategy != "scratch")
    if train_idx is None:
        train_idx = label_subset(splits.train.y, label_fraction, seed, splits.task)
    n = len(train_idx)
    ep = epochs_for(n, batch_size, epochs, min_steps)
    he = max(1, round(head_epochs * ep / max(epochs, 1)))
    if strategy == "two_stage" and he >= ep:
        he = ep - 1 if ep > 1 else 1
        ep = max(ep, 2)
    seed_everything(seed)
    res = fit(net, splits, strategy, lr=lr, body_lr_mult=body_lr_mult, freeze_stages=freeze_stages,
              head_epochs=he, epochs=ep, batch_size=batch_size, train_idx=train_idx, select=select,
              device=device, seed=seed, progress=progress)
    res.test = engine.evaluate(res.model, splits.test, splits.task, device)
    return res


def label_budget(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` training indices drawn class-balanced (round-robin over classes, seeded); y: (N,L)."""
    g = torch.Generator().manual_seed(int(seed))
    strat = y[:, 0]
    pools = [torch.nonzero(strat == c).flatten() for c in torch.unique(strat)]
    pools = [p[torch.randperm(len(p), generator=g)] for p in pools]
    take = [0] * len(pools)
    picked = []
    while len(picked) < min(n, len(y)):
        for i, p in enumerate(pools):
            if take[i] < len(p) and len(picked) < n:
                picked.append(int(p[take[i]]))
                take[i] += 1
    return torch.sort(torch.tensor(picked, dtype=torch.long)).values


def domain_adaptation(source_ckpt: str | Path, model: str, target: Splits, n_labels: int, *, seed: int = 0,
                      epochs: int = 10, min_steps: int = 0, batch_size: int = 64, lr: float = 1e-3,
                      body_lr_mult: float = 0.1, stem: str = "imagenet", input_size: int | None = None,
                      model_kw: dict | None = None, device="auto") -> list[dict]:
    """Supervised domain adaptation on one target domain with ``n_labels`` target labels.

    Rows ``{"method", "target_labels", "test_auc"}``: ``source_only`` (the source classifier,
    head included, scored on the target test set; needs the same classes), and for n_labels > 0
    ``finetune`` (the source classifier, head included, fine-tuned on the labels) and
    ``target_only`` (scratch on them).
    Few labels mean no labelled validation set: the last epoch is kept (``select="last"``) and the
    per-epoch validation log shows the labelled images.
    """
    rows = []
    if n_labels == 0:
        net = create2d(model, target.n_channels, target.n_outputs, target.size, stem=stem, input_size=input_size,
                       **(model_kw or {}))
        engine.load_checkpoint(net, source_ckpt)
        rows.append({"method": "source_only", "target_labels": 0,
                     "test_auc": engine.evaluate(net, target.test, target.task, device)["auc"]})
        return rows
    idx = label_budget(target.train.y, n_labels, seed)
    # no labelled target validation set exists in this setting: the per-epoch "val" numbers are the
    # labelled images themselves (cheap, and unused for selection with select="last")
    target = dataclasses.replace(target, val=target.train.subset(idx))
    for method, src, strat in (("finetune", "indomain", "finetune"), ("target_only", "none", "scratch")):
        res = run(target, model, src, strat, seed=seed, epochs=epochs, min_steps=min_steps, batch_size=batch_size,
                  lr=lr, body_lr_mult=body_lr_mult, checkpoint=source_ckpt, stem=stem, input_size=input_size,
                  model_kw=model_kw, train_idx=idx, select="last", keep_head=True, device=device)
        rows.append({"method": method, "target_labels": len(idx), "test_auc": res.test["auc"]})
    return rows


@torch.no_grad()
def embed(model: nn.Module, x_uint8: torch.Tensor, device="auto", batch_size: int = 256) -> np.ndarray:
    """Pooled ``features`` (N, F) of uint8 images (eval mode, mednb normalisation)."""
    from .runtime import get_device
    device = get_device(device)
    model.eval().to(device)
    out = [model.embed(engine.normalize(x_uint8[i:i + batch_size].to(device))).float().cpu()
           for i in range(0, len(x_uint8), batch_size)]
    return torch.cat(out).numpy()


def embedding_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, F) → (N, 2) with scikit-learn ``pca`` or ``tsne`` (features standardised first)."""
    f = (features - features.mean(0)) / (features.std(0) + 1e-6)
    if method == "pca":
        from sklearn.decomposition import PCA
        return PCA(2, random_state=seed).fit_transform(f)
    if method == "tsne":
        from sklearn.manifold import TSNE
        return TSNE(2, random_state=seed, init="pca", perplexity=min(30.0, max(5.0, (len(f) - 1) / 4))).fit_transform(f)
    raise ValueError(f"unknown embedding method {method!r}; valid: pca, tsne")


def separability(features: np.ndarray, y) -> float:
    """Silhouette score (cosine) of the class labels in feature space: −1…1, higher = better separated."""
    from sklearn.metrics import silhouette_score
    y = np.asarray(y).reshape(len(y), -1)[:, 0]
    if len(np.unique(y)) < 2:
        return math.nan
    return float(silhouette_score(features, y, metric="cosine"))


def plot_embeddings(panels: dict, y, class_names: dict | None = None, size: float = 3.2):
    """One scatter per ``{title: (N,2) array}``, coloured by class. Returns the Figure."""
    import matplotlib.pyplot as plt
    y = np.asarray(y).reshape(len(y), -1)[:, 0]
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), squeeze=False)
    for ax, (title, z) in zip(axes[0], panels.items()):
        for c in np.unique(y):
            m = y == c
            ax.scatter(z[m, 0], z[m, 1], s=6, alpha=0.7, label=str((class_names or {}).get(int(c), c))[:14])
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    return fig


__all__ = ["PROFILES", "STRATEGIES", "SOURCES", "WeightsNotFound", "SourceUnavailable", "indomain_for", "stages", "freeze",
           "unfreeze", "frozen", "param_groups", "prepare", "fit", "Plan", "epochs_for", "create2d", "build",
           "load_body", "body_state", "imagenet_weights", "imagenet_file", "imagenet_state_dict",
           "imagenet_to_mednb", "domain_spec", "parse_domain", "load_domain", "indomain_checkpoint", "checkpoint_info",
           "ssl_checkpoint", "run", "label_budget", "domain_adaptation", "embed", "embedding_2d", "separability",
           "plot_embeddings", "reset_parameters", "Resize"]
