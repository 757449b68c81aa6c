"""The per-sample ``torchvision.transforms.v2`` equivalent of a 2D policy, for teaching and for a
speed comparison with the batched policies."""
from __future__ import annotations

import torch

from .policies import DEFAULTS, POLICIES, _check


def torchvision_policy(name: str, strength: float = 1.0, size: int = 28):
    """The per-sample ``torchvision.transforms.v2`` equivalent of a 2D policy (for teaching).

    Works on one (C,H,W) image, or jointly on ``(tv_tensors.Image, tv_tensors.Mask)``: v2 moves
    the mask with the image and uses nearest interpolation for it. ``size``: the image size (the
    crop is resized back to it). Random numbers come from
    torch's global RNG (seed with ``torch.manual_seed``).
    """
    from torchvision.transforms import v2
    key, s, c = _check(name), float(strength), DEFAULTS
    comp = POLICIES[key]
    t = []
    if comp.get("flip"):
        t.append(v2.RandomHorizontalFlip(p=c["flip_p"] * min(s, 1.0)))
    if comp.get("affine"):
        t.append(v2.RandomAffine(degrees=c["rotate_deg"] * s, translate=(c["shift"] * s,) * 2,
                                 scale=(1 - c["scale"] * s, 1 + c["scale"] * s), interpolation=v2.InterpolationMode.BILINEAR))
    if comp.get("crop"):
        lo = 1 / (1 + c["crop_zoom"] * s) ** 2
        t.append(v2.RandomResizedCrop(size, scale=(lo, 1.0), ratio=(1.0, 1.0), antialias=True))
    if comp.get("elastic"):
        t.append(v2.ElasticTransform(alpha=c["elastic_alpha"] * s, sigma=c["elastic_sigma"]))
    if comp.get("intensity"):
        t.append(v2.ColorJitter(brightness=c["brightness"] * s, contrast=c["contrast"] * s))
    if comp.get("noise"):
        t.append(v2.GaussianNoise(sigma=c["noise_sd"] * s))
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), *t]) if t else v2.Identity()
