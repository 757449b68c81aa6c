"""What the strategies ask the model at query time: probabilities, MC-dropout samples, probabilities
of augmented copies, and pooled embeddings, for uint8 images (N,C,H,W) and volumes (N,C,D,H,W) alike.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .. import engine


def _batches(x: torch.Tensor, device, batch_size: int = 256):
    for i in range(0, len(x), batch_size):
        yield engine.normalize(x[i:i + batch_size].to(device))


def _probs_from_logits(logits: torch.Tensor, task: str) -> torch.Tensor:
    s = engine.scores_from_logits(logits.float(), task)
    if engine.is_multilabel(task):
        raise ValueError("active learning strategies here handle single-label tasks (binary/multi-class/ordinal)")
    return s


@torch.no_grad()
def predict_probs(model: nn.Module, x: torch.Tensor, task: str, device="auto") -> np.ndarray:
    """(N,K) class probabilities of uint8 images/volumes ``x`` (eval mode)."""
    return engine.predict(model, x, task, device=device, amp=False)


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The dropout modules of ``model`` with ``p > 0`` (empty: MC dropout is impossible)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


@torch.no_grad()
def mc_dropout_probs(model: nn.Module, x: torch.Tensor, task: str, samples: int = 10, device="auto",
                     seed: int = 0) -> np.ndarray:
    """(T,N,K) probabilities from ``samples`` forward passes with dropout on (everything else in eval mode).

    When dropout sits only in the head (the registry's ``Head``), the features are computed once and
    the head is sampled ``T`` times — the same distribution at a fraction of the cost."""
    device = engine.get_device(device)
    drops = dropout_layers(model)
    if not drops:
        raise ValueError("MC dropout needs a model with dropout > 0: models.create(name, ..., dropout=0.3)")
    model.eval().to(device)
    g = torch.Generator(device=device).manual_seed(int(seed))
    head_only = hasattr(model, "features") and hasattr(model, "head") and not dropout_layers(model.features)
    out = []
    try:
        for m in drops:
            m.train()
        for xb in _batches(x, device):
            if head_only:
                f = model.features(xb)
                runs = [model.head(_seeded(f, g, t)) for t in range(samples)]
            else:
                runs = [model(_seeded(xb, g, t)) for t in range(samples)]
            out.append(torch.stack([_probs_from_logits(r, task) for r in runs]).cpu())
    finally:
        model.eval()
    return torch.cat(out, dim=1).numpy()


def _seeded(x, g, t):
    # dropout draws from the global RNG: reseed it from our generator so queries are reproducible
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=g.device)))
    return x


@torch.no_grad()
def embeddings(model: nn.Module, x: torch.Tensor, device="auto") -> np.ndarray:
    """(N,F) pooled features ``model.embed`` of uint8 images/volumes (eval mode)."""
    device = engine.get_device(device)
    model.eval().to(device)
    return torch.cat([model.embed(xb).float().cpu() for xb in _batches(x, device)]).numpy()


def dihedral(x: torch.Tensor, j: int) -> torch.Tensor:
    """The ``j``-th (0–7) element of the dihedral group on the last two axes: rotation by
    ``90°·(j mod 4)``, then a left-right flip for ``j ≥ 4`` (2D images and 3D volumes alike)."""
    y = torch.rot90(x, j % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if j % 8 >= 4 else y


def _augment_policy(augment, dims: int):
    """"dihedral" → the built-in rotations/flips (returns None); a callable → itself; "auto"/None →
    :mod:`mednb.augment`'s ``basic`` policy (flips, small affine, crops — AIFT's translated/scaled
    copies); any other name → ``mednb.augment.get(name, dims=dims)``."""
    if augment == "dihedral":
        return None
    if callable(augment):
        return augment
    from .. import augment as A
    return A.get("basic" if augment in (None, "auto") else augment, dims=dims)


@torch.no_grad()
def augmented_probs(model: nn.Module, x: torch.Tensor, task: str, copies: int = 8, augment=None,
                    device="auto", seed: int = 0) -> np.ndarray:
    """(N,m,K) probabilities of ``m`` augmented copies of each sample (copy 0 is the original).

    augment: "auto"/None (:mod:`mednb.augment` ``basic``), "dihedral" (rotations and flips,
    deterministic), a :mod:`mednb.augment` policy name, or a callable
    ``policy(x, masks, generator) -> (x, masks)`` on float [0,1] batches; seeded by ``seed``."""
    device = engine.get_device(device)
    model.eval().to(device)
    policy = _augment_policy(augment, x.ndim - 2)
    g = torch.Generator(device=device).manual_seed(int(seed))
    out = []
    for i in range(0, len(x), 128):
        xb = x[i:i + 128].to(device).float().div_(255.0)
        per = []
        for j in range(copies):
            if j == 0:
                xa = xb
            elif policy is None:
                xa = dihedral(xb, j)
            else:
                xa, _ = policy(xb.clone(), None, g)
            per.append(_probs_from_logits(model(engine.normalize(xa)), task).cpu())
        out.append(torch.stack(per, dim=1))
    return torch.cat(out).numpy()
