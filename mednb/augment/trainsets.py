"""Training sets built from a split: offline-augmented copies and class-imbalanced subsets.

Offline augmentation enlarges a training set beforehand by ``copies`` transformed versions of
every image; online augmentation transforms each mini-batch on the fly instead (a policy passed
as ``augment=`` to :func:`mednb.engine.fit`).
"""
from __future__ import annotations

import dataclasses

import torch

from ..data import Split, label_subset


def offline(split, policy, copies: int, seed: int = 0, batch_size: int = 256, device="cpu"):
    """Offline augmentation: the split plus ``copies`` transformed versions of every sample.

    Returns a :class:`mednb.data.Split` of ``(copies + 1) · N`` uint8 samples (originals first),
    labels repeated, masks transformed with their images.
    """
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies!r}")
    g = torch.Generator().manual_seed(int(seed))
    xs, ms = [split.x], [split.masks]
    for _ in range(int(copies)):
        for i in range(0, len(split), batch_size):
            xb = split.x[i:i + batch_size].to(device).float().div_(255)
            mb = None if split.masks is None else split.masks[i:i + batch_size].to(device)
            xa, ma = policy(xb, mb, g)
            xs.append(xa.mul_(255).round_().clamp_(0, 255).to(torch.uint8).cpu())
            ms.append(None if ma is None else ma.cpu())
    x = torch.cat(xs)
    y = split.y.repeat(int(copies) + 1, 1)
    masks = None if split.masks is None else torch.cat(ms)
    return Split(x, y, masks)


def offline_splits(splits, policy, copies: int, label_fraction: float = 1.0, seed: int = 0):
    """``splits`` whose train split is the (stratified, seeded) label subset enlarged offline."""
    idx = label_subset(splits.train.y, label_fraction, seed, splits.task)
    train = offline(splits.train.subset(idx), policy, copies, seed)
    return dataclasses.replace(splits, train=train, meta={**splits.meta, "offline_copies": copies})


def nbytes(split) -> int:
    """Bytes held by a split's tensors (images, labels, masks)."""
    return sum(t.numel() * t.element_size() for t in (split.x, split.y, split.masks) if t is not None)


def imbalanced_indices(y: torch.Tensor, ratio: float, seed: int = 0, minority: int | None = None) -> torch.Tensor:
    """Indices of a subset where class ``minority`` (default: the rarest) has ``ratio`` × the
    samples of the largest class (0 < ratio ≤ 1; other classes kept whole). y: (N,L) labels."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    lab = y[:, 0]
    counts = torch.bincount(lab)
    minority = int(torch.argmin(torch.where(counts > 0, counts, counts.max() + 1))) if minority is None else minority
    keep = max(1, int(round(ratio * int(counts.max()))))
    g = torch.Generator().manual_seed(int(seed))
    idx_min = torch.nonzero(lab == minority).flatten()
    idx_min = idx_min[torch.randperm(len(idx_min), generator=g)[:keep]]
    return torch.sort(torch.cat([torch.nonzero(lab != minority).flatten(), idx_min])).values
