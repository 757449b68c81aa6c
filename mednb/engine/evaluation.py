"""Losses, normalization, prediction and evaluation with medmnist's semantics.

Losses: cross-entropy (binary, multi-class, ordinal regression — treated as multi-class, as MedMNIST v2
does) and BCE-with-logits (multi-label). Inputs are normalized as in the MedMNIST experiments code:
``Normalize(mean=.5, std=.5)`` on [0, 1] images.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import metrics as M
from ..data import Split
from ..runtime import get_device
from .recipe import amp_dtype

MEAN, STD = 0.5, 0.5  # medmnist experiments: Normalize(mean=[.5], std=[.5])


def normalize(x_uint8_or_unit: torch.Tensor) -> torch.Tensor:
    """uint8 [0,255] or float [0,1] → float32 (x/255 − 0.5)/0.5, batched, on x's device."""
    x = x_uint8_or_unit
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    return (x - MEAN) / STD


def is_multilabel(task: str) -> bool:
    return task.startswith("multi-label")


def loss_for(task: str, class_weight: torch.Tensor | None = None) -> Callable:
    if is_multilabel(task):
        return lambda logits, y: F.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=class_weight)
    return lambda logits, y: F.cross_entropy(logits, y[:, 0], weight=class_weight)


def scores_from_logits(logits: torch.Tensor, task: str) -> torch.Tensor:
    return torch.sigmoid(logits) if is_multilabel(task) else torch.softmax(logits, dim=1)


def class_weights(y: torch.Tensor, task: str, n_classes: int) -> torch.Tensor:
    """'balanced' weights: n / (k · count_c) (multi-label: neg/pos ratio per label)."""
    if is_multilabel(task):
        pos = y.float().sum(0).clamp_min(1)
        return (len(y) - pos) / pos
    counts = torch.bincount(y[:, 0], minlength=n_classes).float().clamp_min(1)
    return len(y) / (n_classes * counts)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, task: str, device="auto", batch_size: int = 256,
            amp: str | bool = "auto") -> np.ndarray:
    """Class scores (N, K): softmax probabilities, or sigmoid per label for multi-label.

    amp: a :data:`~mednb.engine.recipe.AMP` mode (True = ``auto``, False = ``off``).
    """
    device = get_device(device)
    model.eval().to(device)
    dtype = amp_dtype(("auto" if amp else "off") if isinstance(amp, bool) else amp, device)
    out = []
    for i in range(0, len(x), batch_size):
        xb = normalize(x[i:i + batch_size].to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(xb)
        out.append(scores_from_logits(logits.float(), task).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def evaluate(model: nn.Module, split: Split, task: str, device="auto", batch_size: int = 256,
             return_scores: bool = False) -> dict:
    """``{"auc", "acc", "balanced_acc", "loss"}`` on a split (medmnist semantics)."""
    scores = predict(model, split.x, task, device, batch_size)
    y = split.y.numpy()
    out = M.classification(y, scores, task)
    s = torch.from_numpy(scores).clamp(1e-7, 1 - 1e-7)
    out["loss"] = float(F.binary_cross_entropy(s, split.y.float()) if is_multilabel(task)
                        else F.nll_loss(s.log(), split.y[:, 0]))
    if return_scores:
        out["y_true"], out["y_score"] = y, scores
    return out


def matched_val_idx(y: torch.Tensor, n_labels: int, ratio: float = 0.25, per_class: int = 5, seed: int = 0) -> torch.Tensor:
    """Row indices of a stratified validation subset matched to a labelled budget of ``n_labels`` images.

    y: (N,L) validation labels (stratified by the first column). Size ``max(ratio × n_labels, per_class ×
    classes)``, capped at N; classes keep their validation proportions with at least ``per_class`` each (or all
    of a rarer class). Seeded, so arms with the same budget and seed share it. Sorted; all of N when it
    covers the split.
    """
    strat, n = y[:, 0], len(y)
    classes = torch.unique(strat)
    want = min(n, max(int(round(ratio * n_labels)), per_class * len(classes)))
    if want >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(1_000_003 * int(seed) + 7919)
    picked = []
    for c in classes:
        idx = torch.nonzero(strat == c).flatten()
        k = min(len(idx), max(per_class, int(round(want * len(idx) / n))))
        picked.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.sort(torch.cat(picked)).values
