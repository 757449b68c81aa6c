"""Domains (a MedMNIST set, or a phantom set at one scanner site), written ``name[:site]``, and the
class-balanced target label budgets of domain adaptation."""
from __future__ import annotations

import torch

from .. import data
from ..data import Splits


def parse_domain(spec: str) -> tuple[str, int]:
    """``"phantom2d:3"`` → ("phantom2d", 3); ``"organcmnist"`` → ("organcmnist", 0)."""
    name, _, site = str(spec).partition(":")
    return name.lower(), int(site) if site else 0


def domain_spec(name: str, site: int = 0) -> str:
    """``name:site`` for phantoms (``phantom2d:2``), the plain name for MedMNIST sets."""
    return f"{name}:{int(site)}" if str(name).lower() in data.PHANTOMS else str(name).lower()


def load_domain(spec: str, size: int = 28, counts=None, seed: int = 0, n_classes: int = 4) -> Splits:
    """Load ``name[:site]`` through :func:`mednb.data.load` (``counts``/``site``/``n_classes`` — 2: normal vs
    round lesion, up to 4 — for phantoms only; a MedMNIST set keeps its own classes).
    A missing MedMNIST file raises the data layer's :class:`~mednb.data.DataNotFound`."""
    name, site = parse_domain(spec)
    if name in data.PHANTOMS:
        return data.load(name, size, counts=counts, site=site, seed=seed, n_classes=n_classes)
    if site:
        raise ValueError(f"{spec!r}: sites exist for phantoms only")
    return data.load(name, size)


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

