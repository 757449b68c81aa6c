"""Segmentation loss and scores: Dice + cross-entropy, Dice/IoU, prediction, evaluation, timing.

Masks hold class indices (N,1,...) uint8: 1 = foreground (phantom lesion; EM membrane), 0 = rest.
:func:`dice_iou` scores per image — an image whose truth and prediction are both empty scores 1 —
and per dataset (pixels pooled over the whole split). The recorded ``iou``/``dice`` are the
per-dataset (pooled) scores of the foreground class.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import Split
from ..engine import normalize
from ..runtime import get_device


def _target(masks: torch.Tensor) -> torch.Tensor:
    """(N,1,...) masks (uint8, or float after interpolation) → (N,...) int64 class indices."""
    t = masks[:, 0] if masks.ndim >= 4 and masks.shape[1] == 1 else masks
    return (t.float().round() if t.is_floating_point() else t).long()


class DiceCELoss:
    """``ce_weight · CE + dice_weight · (1 − soft Dice of the foreground classes)``, batch-pooled.

    The UNet++ paper's loss is BCE + Dice per head; with deep supervision (a list of head logits)
    the loss is the mean over heads. ``target = "mask"`` makes :func:`mednb.engine.fit` pass masks.
    """
    target = "mask"

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1e-5):
        self.ce_weight, self.dice_weight, self.smooth = ce_weight, dice_weight, smooth

    def one(self, logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        ce = F.cross_entropy(logits, t)
        p = logits.softmax(1)[:, 1:]
        oh = F.one_hot(t, logits.shape[1]).movedim(-1, 1)[:, 1:].float()
        dims = (0,) + tuple(range(2, p.ndim))
        dice = (2 * (p * oh).sum(dims) + self.smooth) / (p.sum(dims) + oh.sum(dims) + self.smooth)
        return self.ce_weight * ce + self.dice_weight * (1 - dice.mean())

    def __call__(self, out, masks):
        t = _target(masks)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return sum(self.one(o, t) for o in outs) / len(outs)


def dice_iou(pred, truth, empty: float = 1.0) -> dict[str, np.ndarray | float]:
    """Dice and IoU of binary masks (N, ...): per image and per dataset (pixels pooled).

    An image with empty truth and empty prediction scores ``empty`` (1.0) per image.
    Returns ``{"dice_image", "iou_image"}`` (arrays (N,)) and ``{"dice", "iou"}`` (pooled floats).
    """
    p = torch.as_tensor(np.asarray(pred) if not isinstance(pred, torch.Tensor) else pred).bool()
    t = torch.as_tensor(np.asarray(truth) if not isinstance(truth, torch.Tensor) else truth).bool()
    if p.shape != t.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and truth {tuple(t.shape)} differ in shape")
    p, t = p.reshape(len(p), -1), t.reshape(len(t), -1)
    tp = (p & t).sum(1).double()
    fp = (p & ~t).sum(1).double()
    fn = (~p & t).sum(1).double()
    denom_d, denom_i = 2 * tp + fp + fn, tp + fp + fn
    dice_img = torch.where(denom_d > 0, 2 * tp / denom_d.clamp_min(1), torch.full_like(tp, empty))
    iou_img = torch.where(denom_i > 0, tp / denom_i.clamp_min(1), torch.full_like(tp, empty))
    TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
    dice = float(2 * TP / (2 * TP + FP + FN)) if (2 * TP + FP + FN) > 0 else empty
    iou = float(TP / (TP + FP + FN)) if (TP + FP + FN) > 0 else empty
    return {"dice_image": dice_img.numpy(), "iou_image": iou_img.numpy(), "dice": dice, "iou": iou}


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device="auto", batch_size: int = 16,
            return_probs: bool = False) -> torch.Tensor:
    """Predicted class map (N,1,...) uint8 for uint8 images (N,C,...); or probabilities (N,K,...)."""
    device = get_device(device)
    model.eval().to(device)
    out = []
    for i in range(0, len(x), batch_size):
        logits = model(normalize(x[i:i + batch_size].to(device)))
        pr = logits.float().softmax(1)
        out.append((pr if return_probs else pr.argmax(1, keepdim=True).to(torch.uint8)).cpu())
    return torch.cat(out)


def evaluate(model: nn.Module, split: Split, device="auto", batch_size: int = 16) -> dict:
    """``{"dice", "iou"}`` (pooled) and per-image arrays ``dice_image``/``iou_image`` on a split."""
    pred = predict(model, split.x, device, batch_size)
    return dice_iou(pred == 1, split.masks == 1)


def eval_fn(device="auto", batch_size: int = 16):
    """An ``engine.fit`` eval hook: ``{"val_dice", "val_iou", "val_loss" = 1 − val_dice}``.

    With ``select="val_loss"`` the engine keeps the epoch of the best validation Dice.
    """
    def fn(model, split):
        r = evaluate(model, split, device, batch_size)
        return {"val_dice": r["dice"], "val_iou": r["iou"], "val_loss": 1.0 - r["dice"]}
    return fn


def inference_ms(model: nn.Module, x: torch.Tensor, device="auto", repeats: int = 3, batch_size: int = 16) -> float:
    """Median wall time per image in ms for predicting ``x`` (uint8), after one warm-up pass."""
    device = get_device(device)
    model.eval().to(device)
    xb = normalize(x[:batch_size].to(device))
    times = []
    with torch.inference_mode():
        model(xb)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(xb)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times)) / len(xb)
