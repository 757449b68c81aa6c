"""Measuring the policies: mask alignment after the spatial transform, and throughput."""
from __future__ import annotations

import math
import time

import torch

from .policies import GEOMETRIC, Policy, get


def mask_alignment(x: torch.Tensor, masks: torch.Tensor, policies=GEOMETRIC, strength: float = 1.0,
                   seed: int = 0):
    """Measure that masks stay aligned: Dice between the mask moved as a mask (nearest) and the
    same lesion moved as image content (a float indicator channel, bilinear, thresholded at 0.5),
    and, for contrast, Dice with the untransformed mask. One row per policy (float batches)."""
    import pandas as pd
    rows = []
    xf = x.float() / 255 if x.dtype == torch.uint8 else x
    for name in policies:
        both = torch.cat([xf, masks.float()], dim=1)
        y, mo = get(name, strength, x.ndim - 2)(both, masks, torch.Generator().manual_seed(seed))
        ind = y[:, -1:] > 0.5
        d = lambda a, b: float(2 * (a & b).sum() / (a.sum() + b.sum()).clamp_min(1))
        rows.append(dict(policy=name, dice_moved_mask=d(ind, mo.bool()), dice_unmoved_mask=d(ind, masks.bool())))
    return pd.DataFrame(rows)


def throughput(policy, x: torch.Tensor, device="cpu", repeats: int = 3, masks: torch.Tensor | None = None) -> float:
    """Images (or volumes) per second of ``policy`` on batch ``x`` (uint8 or float) on ``device``.

    ``policy``: a :class:`Policy` (batched) or a per-sample callable such as
    :func:`~mednb.augment.torchvision_policy` (then applied in a Python loop, one sample at a time).
    The best of ``repeats`` timed runs after one warm-up run.
    """
    from ..runtime import get_device
    dev = get_device(device)
    xb = x.to(dev)
    xb = xb.float().div(255) if xb.dtype == torch.uint8 else xb
    mb = None if masks is None else masks.to(dev)
    g = torch.Generator().manual_seed(0)
    batched = isinstance(policy, Policy)
    xs = xb if batched else x  # per-sample pipelines take uint8 images (they convert themselves)

    def once():
        if batched:
            policy(xs, mb, g)
        else:
            for i in range(len(xs)):
                policy(xs[i])
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    once()
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - t0)
    return len(x) / best
