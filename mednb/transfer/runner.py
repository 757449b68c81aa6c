"""Experiments: a model built from a source, one strategy run on a label fraction, domain adaptation.

A comparison gives every arm (strategy, source, model, label fraction or count) the same ``recipe``: with a step
budget (``recipe.steps``) each trains exactly that many optimizer steps whatever its number of labels (Oliver et
al., NeurIPS 2018), so that differences measure the weights' head start, not under-training of the small arms."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch.nn as nn

from .. import engine, models
from ..data import Splits, label_subset
from ..runtime import seed_everything
from .domain import label_budget
from .imagenet import imagenet_state_dict, imagenet_to_mednb
from .networks import create2d, load_body
from .sources import check_source, ssl_checkpoint
from .strategies import HEAD_FRACTION, RECIPE, check_strategy, fit, reset_parameters


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


def run(splits: Splits, model: str, source: str, strategy: str, recipe: engine.Recipe | None = None, *,
        label_fraction: float = 1.0, seed: int = 0, body_lr_mult: float = 0.1, freeze_stages: int = 2,
        head_epochs: int = 1, head_fraction: float = HEAD_FRACTION, checkpoint=None, stem: str = "imagenet",
        input_size: int | None = None, model_kw: dict | None = None, train_idx=None, keep_head: bool = False,
        device="auto", progress: bool = False) -> engine.FitResult:
    """Build from ``source``, apply ``strategy``, fit under ``recipe`` (None → :data:`RECIPE`) on a label
    fraction (or ``train_idx``), score on test.

    The recipe reaches ``engine.fit`` unchanged: give every arm of a comparison the same step budget
    (``recipe.replace(steps=N)``). ``two_stage`` keeps the body frozen for ``head_fraction`` of the steps (an
    epoch recipe: ``head_epochs`` epochs). Returns the FitResult with ``.test``, ``.plan``, ``.steps`` and
    ``.history`` (validation AUC per check, with its ``step``).
    """
    recipe = RECIPE if recipe is None else recipe
    strategy = check_strategy(strategy)
    net = build(model, splits, source if strategy != "scratch" else "none", stem=stem, input_size=input_size,
                checkpoint=checkpoint, seed=seed, model_kw=model_kw, keep_head=keep_head and strategy != "scratch")
    if train_idx is None:
        train_idx = label_subset(splits.train.y, label_fraction, seed, splits.task)
    seed_everything(seed)
    res = fit(net, splits, strategy, recipe, body_lr_mult=body_lr_mult, freeze_stages=freeze_stages,
              head_epochs=head_epochs, head_fraction=head_fraction, train_idx=train_idx, device=device, seed=seed,
              progress=progress)
    res.test = engine.evaluate(res.model, splits.test, splits.task, device)
    return res


def domain_adaptation(source_ckpt: str | Path, model: str, target: Splits, n_labels: int,
                      recipe: engine.Recipe | None = None, *, seed: int = 0, body_lr_mult: float = 0.1,
                      stem: str = "imagenet", input_size: int | None = None, model_kw: dict | None = None,
                      device="auto") -> list[dict]:
    """Supervised domain adaptation on one target domain with ``n_labels`` target labels, trained under
    ``recipe`` (None → :data:`RECIPE`; give every label count the same step budget) with ``select="last"``.

    Rows ``{"method", "target_labels", "test_auc", "steps"}``: ``source_only`` (the source classifier,
    head included, scored on the target test set; needs the same classes; 0 steps), and for n_labels > 0
    ``finetune`` (the source classifier, head included, fine-tuned on the labels) and
    ``target_only`` (scratch on them).
    Few labels mean no labelled validation set: the last check is kept (``select="last"``) and the
    validation log shows the labelled images.
    """
    rows = []
    if n_labels == 0:
        net = create2d(model, target.n_channels, target.n_outputs, target.size, stem=stem, input_size=input_size,
                       **(model_kw or {}))
        engine.load_checkpoint(net, source_ckpt)
        rows.append({"method": "source_only", "target_labels": 0,
                     "test_auc": engine.evaluate(net, target.test, target.task, device)["auc"], "steps": 0})
        return rows
    idx = label_budget(target.train.y, n_labels, seed)
    # no labelled target validation set exists in this setting: the "val" numbers are the labelled images
    # themselves (cheap, and unused for selection with select="last")
    target = dataclasses.replace(target, val=target.train.subset(idx))
    recipe = (RECIPE if recipe is None else recipe).replace(select="last")
    for method, src, strat in (("finetune", "indomain", "finetune"), ("target_only", "none", "scratch")):
        res = run(target, model, src, strat, recipe, seed=seed, body_lr_mult=body_lr_mult,
                  checkpoint=source_ckpt, stem=stem, input_size=input_size, model_kw=model_kw, train_idx=idx,
                  keep_head=True, device=device)
        rows.append({"method": method, "target_labels": len(idx), "test_auc": res.test["auc"], "steps": res.steps})
    return rows
