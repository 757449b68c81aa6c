"""Taking a federated model to a new hospital: AdaBN, few-label fine-tuning, and what the old sites lose.

* :func:`adabn` — Li et al., "Adaptive batch normalization for practical domain adaptation" (Pattern
  Recognition 80, 2018; AdaBN): re-estimate every batch-norm layer's running mean and variance on the
  new site's *unlabeled* images; no weight changes, no label needed.
* :func:`finetune` — ``n`` labelled images of the new site (class-balanced pick), either the head only or
  all layers, for a budget of ``recipe.steps`` optimizer steps whatever ``n`` is (so 5 labels are not also 10×
  less training than 50); batch-norm layers keep the (AdaBN) statistics they start with, since 5–50 images are
  too few to re-estimate them. The last weights are kept; the new site's validation AUC is logged at the
  recipe's checks only to draw the convergence curve (:func:`mednb.plot.convergence`), never to select.
* :func:`adaptation` — the gain at the new site and the *forgetting* on the seen sites: their test AUC
  before minus after adapting (catastrophic forgetting; McCloskey & Cohen 1989, Kirkpatrick et al. 2017).
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .. import engine
from ..data import Splits
from ..runtime import get_device
from .exchange import BN

MODES = ("head", "all")


@torch.no_grad()
def adabn(model: nn.Module, x: torch.Tensor, batch_size: int = 64, device="auto") -> nn.Module:
    """A copy of ``model`` whose BN running statistics are those of the uint8 images ``x`` (N,C,…).

    Each batch enters the running statistics with weight (batch size / images seen so far), so the running
    mean is the mean over all of ``x`` and the running variance the size-weighted mean of the batch
    variances; every parameter and every other buffer is left as it was. The copy is returned in eval mode.
    """
    device = get_device(device)
    model = copy.deepcopy(model).to(device).eval()
    bns = [m for m in model.modules() if isinstance(m, BN) and m.track_running_stats]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.train()
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        for m in bns:
            m.momentum = len(xb) / (i + len(xb))
        model(engine.normalize(xb.to(device)))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    return model.eval()


def pick_labels(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` indices drawn class by class in turn (seeded), so 5 labels of 2 classes are 3 + 2."""
    g = torch.Generator().manual_seed(int(seed))
    pools = [p[torch.randperm(len(p), generator=g)] for p in
             (torch.nonzero(y[:, 0] == c).flatten() for c in torch.unique(y[:, 0]))]
    picked, depth = [], 0
    while len(picked) < min(int(n), len(y)):
        picked += [int(p[depth]) for p in pools if depth < len(p)][:int(n) - len(picked)]
        depth += 1
    return torch.sort(torch.tensor(picked, dtype=torch.long)).values


def _bn_eval(module, args):
    module.eval()  # a forward pre-hook: the layer normalises with its stored statistics even in train()


#: the fine-tuning recipe when none is given: 50 optimizer steps at a constant LR, the last weights kept
FINETUNE = engine.Recipe(steps=50, lr=1e-3, schedule="constant", select="last")


def finetune(model: nn.Module, splits: Splits, n_labels: int, mode: str, recipe: engine.Recipe, seed: int = 0,
             device="auto", history: list | None = None) -> nn.Module:
    """A copy of ``model`` trained on ``n_labels`` images of ``splits.train`` for ``recipe.steps`` optimizer steps;
    ``mode``: head | all. ``history``: a list that receives the run's checks (``step``, ``val_auc`` on
    ``splits.val``: a curve to read, not a selection — the last weights are kept)."""
    if mode not in MODES:
        raise ValueError(f"unknown fine-tuning mode {mode!r}; valid: {', '.join(MODES)}")
    if recipe.steps is None:
        raise ValueError("fine-tuning trains a budget in optimizer steps: recipe=engine.Recipe(steps=N, ...)")
    model = copy.deepcopy(model)
    hooks = [m.register_forward_pre_hook(_bn_eval) for m in model.modules() if isinstance(m, BN)]
    if mode == "head":
        for p in model.features.parameters():
            p.requires_grad_(False)
    idx = pick_labels(splits.train.y, n_labels, seed)
    rec = recipe.replace(batch_size=min(recipe.batch_for(splits.dims), len(idx)), select="last")
    monitor = (lambda m, s: {"val_auc": engine.evaluate(m, s, splits.task, device)["auc"]}) if history is not None \
        else (lambda m, s: {})
    res = engine.fit(model, splits, rec, train_idx=idx, eval_fn=monitor, seed=seed, device=device, progress=False)
    if history is not None:
        history[:] = res.history
    for h in hooks:
        h.remove()
    for p in res.model.parameters():
        p.requires_grad_(True)
    return res.model.eval()


def _auc(model, sp: Splits, device) -> tuple[float, float]:
    r = engine.evaluate(model, sp.test, sp.task, device)
    return r["auc"], r["acc"]


def adaptation(model: nn.Module, sites, n_labels=(5, 20, 50), modes=MODES, recipe: engine.Recipe | None = None,
               seed: int = 0, device="auto") -> pd.DataFrame:
    """Adapt ``model`` to ``sites.unseen`` step by step; one row per stage.

    Stages: the model as it is; ``adabn`` (unlabeled images of the unseen site's training split); then,
    from the AdaBN model, ``finetune`` with each ``n`` labels and mode, every one for ``recipe.steps`` steps
    (default :data:`FINETUNE`). Columns: unseen test AUC/ACC, the mean and worst seen-site test AUC,
    ``forgetting`` = the seen sites' mean AUC before adapting minus after, ``steps`` (0 for the stages that do not
    train) and ``history`` (a fine-tuning run's checks, for :func:`mednb.plot.convergence`; None otherwise).
    """
    recipe = recipe or FINETUNE
    new = sites.unseen
    stages = [("federated", 0, "-", model, None)]
    adapted = adabn(model, new.train.x, device=device)
    stages.append(("adabn", 0, "-", adapted, None))
    for n in n_labels:
        for mode in modes:
            hist: list = []
            stages.append(("finetune", int(n), mode, finetune(adapted, new, n, mode, recipe, seed, device, hist), hist))
    rows = []
    for stage, n, mode, m, hist in stages:
        auc, acc = _auc(m, new, device)
        seen = [_auc(m, sp, device)[0] for sp in sites.seen]
        rows.append({"stage": stage, "n_labels": n, "mode": mode, "unseen_auc": auc, "unseen_acc": acc,
                     "seen_auc": float(np.mean(seen)), "seen_worst": float(np.min(seen)),
                     "steps": int(recipe.steps) if hist is not None else 0, "history": hist})
    df = pd.DataFrame(rows)
    df["forgetting"] = df.loc[0, "seen_auc"] - df["seen_auc"]
    return df.assign(dataset=sites.dataset, seed=sites.seed)
