"""torchvision's ImageNet ResNet weights: the torch hub cache, download, hash check, and the mapping
onto a mednb ResNet (grey input and mednb's normalisation folded into conv1 and bn1)."""
from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path

import torch
import torch.nn as nn

from .. import engine
from ..data import DataCorrupt, DataNotFound

IMAGENET = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights"}
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's naming convention: name-<sha256 prefix>.pth


class WeightsNotFound(DataNotFound):
    """Pretrained weights are not cached and cannot be downloaded (message: numbered steps)."""


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

