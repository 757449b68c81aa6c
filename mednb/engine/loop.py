"""The training loop: :func:`fit` reads top to bottom, each step a small named function.

Per epoch: draw a shuffled (or class-balanced) order of the training indices, take batches by index
slices of the device-resident uint8 split, convert + augment + normalize them batched on the device,
one optimisation step per batch, then evaluate on validation and keep the best epoch's weights
(:attr:`Recipe.select`). With a step budget (``Recipe(steps=N)``) the same happens per period of
``N / evals`` steps drawn from back-to-back shuffled passes, so every arm trains N steps whatever its size.
:func:`train` seeds, builds a registry model, fits it and scores the test split.
"""
from __future__ import annotations

import copy
import itertools
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..data import Split, Splits, label_subset
from ..runtime import get_device, seed_everything
from .evaluation import class_weights, evaluate, is_multilabel, loss_for, matched_val_idx, normalize
from .recipe import Recipe, amp_dtype, optimizer, scheduler, selection_score
from .staging import ReferenceDataset, stage

LOADERS = ("device", "reference")


class StopTraining(Exception):
    """Raise from a callback to end training after the current epoch."""


@dataclass
class FitResult:
    """What :func:`fit` returns. ``model`` holds the selected (best) weights."""
    model: nn.Module
    history: list[dict]
    best_epoch: int
    best: dict
    seconds: float
    images_per_s: float
    device: str
    n_train: int
    test: dict = field(default_factory=dict)
    steps: int = 0
    n_val: int = 0

    def metric(self, name: str):
        return self.history[self.best_epoch - 1][name] if self.history else math.nan


def save_checkpoint(model: nn.Module, path: str | Path, extra: dict | None = None, state: dict | None = None) -> Path:
    """Atomic ``torch.save`` of ``{"state_dict": state or model.state_dict(), **extra}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save({"state_dict": state if state is not None else model.state_dict(), **(extra or {})}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(model: nn.Module, path: str | Path, strict: bool = True) -> dict:
    """Load weights saved by :func:`save_checkpoint` (``weights_only=True``); returns the dict."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["state_dict"], strict=strict)
    return ckpt


def _check(loader, sampler, augment, class_weight):
    if loader not in LOADERS:
        raise ValueError(f"unknown loader {loader!r}; valid: {', '.join(LOADERS)}")
    if sampler not in (None, "balanced"):
        raise ValueError(f"unknown sampler {sampler!r}; valid: None, 'balanced'")
    if isinstance(class_weight, str) and class_weight != "balanced":
        raise ValueError(f"unknown class_weight {class_weight!r}; valid: None, 'balanced', a tensor")
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be None or a callable fn(x, masks, generator) -> (x, masks), got "
                        f"{augment!r}; for a policy name pass mednb.augment.get(name, dims=splits.dims)")


@dataclass
class _Loop:
    """Everything one training run needs, built once by :func:`_setup`."""
    model: nn.Module
    run_model: nn.Module
    recipe: Recipe
    device: torch.device
    generator: torch.Generator
    n_train: int
    batch_size: int
    opt: torch.optim.Optimizer
    sched: object
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    loss_fn: Callable
    target_mask: bool
    augment: Callable | None
    channels_last: bool
    epoch_batches: Callable  # () -> iterator of (x, y, masks) for one epoch
    take: Callable  # (k) -> iterator of the next k batches of a step budget, across epoch boundaries
    val: Split  # the validation split selection reads (all of it, or a subset matched to the labels)


def _setup(model, splits: Splits, recipe: Recipe, train_idx, label_fraction, seed, device, augment, class_weight,
           sampler, loss_fn, param_groups, channels_last, compile, loader, num_workers, reference_transform):
    device = get_device(device)
    g = torch.Generator().manual_seed(int(seed))
    if train_idx is None:
        train_idx = label_subset(splits.train.y, label_fraction, seed, splits.task)
    train = splits.train.subset(train_idx)
    val = splits.val
    if recipe.val_labels == "matched":
        val = val.subset(matched_val_idx(val.y, len(train), recipe.val_ratio, recipe.val_per_class, seed))
    use_cl = (device.type == "cuda") if channels_last is None else bool(channels_last)
    model = model.to(device)
    if use_cl:
        model = model.to(memory_format=torch.channels_last if splits.dims == 2 else torch.channels_last_3d)
    if isinstance(class_weight, str):
        class_weight = class_weights(train.y, splits.task, splits.n_outputs)
    if class_weight is not None:
        class_weight = class_weight.to(device)
    groups = param_groups if param_groups is not None else [p for p in model.parameters() if p.requires_grad]
    opt = optimizer(recipe, groups)
    bs = recipe.batch_for(splits.dims)
    epoch_batches, steps, take = _batch_source(train, splits, bs, device, g, sampler, loader, num_workers,
                                               reference_transform)
    dtype = amp_dtype(recipe.amp, device)
    return _Loop(model, torch.compile(model) if compile else model, recipe, device, g, len(train), bs, opt,
                 scheduler(recipe, opt, steps), torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
                 dtype, loss_fn or loss_for(splits.task, class_weight), getattr(loss_fn, "target", None) == "mask",
                 augment, use_cl, epoch_batches, take, val)


def _batch_source(train, splits, batch_size, device, g, sampler, loader, num_workers, reference_transform):
    """``(epoch_batches, steps_per_epoch, take)`` for the device-resident or the reference DataLoader path.

    ``take(k)`` continues one stream of shuffled passes: its batches are consecutive ``batch_size`` slices of
    back-to-back orders, so each is full even when the set is smaller than a batch.
    """
    n, task = len(train), splits.task
    weights = None
    if sampler == "balanced":
        cw = class_weights(train.y, task, splits.n_outputs)
        weights = cw[train.y[:, 0]] if not is_multilabel(task) else torch.ones(n)
    if loader == "device":
        staged = stage(train, device)

        def draw():
            return torch.multinomial(weights, n, True, generator=g) if weights is not None else torch.randperm(n, generator=g)

        def device_batches():
            return staged.batches(draw(), batch_size)
        pending = [torch.empty(0, dtype=torch.long)]

        def take(k):
            need, buf = k * batch_size, pending[0]
            while len(buf) < need:
                buf = torch.cat([buf, draw()])
            pending[0] = buf[need:]
            return staged.batches(buf[:need], batch_size)
        return device_batches, max(1, math.ceil(n / batch_size)), take
    ref_sampler = None if weights is None else torch.utils.data.WeightedRandomSampler(weights.double(), n, True,
                                                                                      generator=g)
    dl = torch.utils.data.DataLoader(ReferenceDataset(train, reference_transform), batch_size=batch_size,
                                     shuffle=ref_sampler is None, sampler=ref_sampler, num_workers=num_workers,
                                     generator=g, pin_memory=device.type == "cuda", drop_last=False)

    def reference_batches():
        return ((xb.to(device, non_blocking=True), yb.to(device, non_blocking=True), None) for xb, yb in dl)
    stream = itertools.chain.from_iterable(reference_batches() for _ in itertools.count())

    def take(k):
        return itertools.islice(stream, k)
    reference_batches.reference = True
    return reference_batches, len(dl), take


def _prepare(loop: _Loop, xb, mb, raw: bool):
    """uint8 batch → float [0,1] → augmentation → normalization (device path), then the memory format."""
    if raw:
        xb = xb.float().div_(255.0)
        if loop.augment is not None:
            xb, mb = loop.augment(xb, mb, loop.generator)
        xb = normalize(xb)
    if loop.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last if xb.ndim == 4 else torch.channels_last_3d)
    return xb, mb


def _step(loop: _Loop, xb, yb, mb) -> torch.Tensor:
    """One optimisation step (autocast + gradient scaler when the recipe's AMP asks for them)."""
    with torch.autocast(loop.device.type, dtype=loop.amp or torch.bfloat16, enabled=loop.amp is not None):
        out = loop.run_model(xb)
        loss = loop.loss_fn(out, mb if loop.target_mask else yb)
    loop.opt.zero_grad(set_to_none=True)
    loop.scaler.scale(loss).backward()
    loop.scaler.step(loop.opt)
    loop.scaler.update()
    if loop.sched is not None:
        loop.sched.step()
    return loss.detach()


def _train_epoch(loop: _Loop, batches=None) -> tuple[float, int, float, int]:
    """One pass over the training set (or over ``batches``): ``(mean train loss, images seen, seconds, steps)``."""
    loop.model.train()
    t0 = time.perf_counter()
    raw = not getattr(loop.epoch_batches, "reference", False)
    total, nb, seen = torch.zeros((), device=loop.device), 0, 0
    for xb, yb, mb in (loop.epoch_batches() if batches is None else batches):
        xb, mb = _prepare(loop, xb, mb, raw)
        total += _step(loop, xb, yb, mb)
        nb += 1
        seen += len(xb)
    return float(total) / max(nb, 1), seen, time.perf_counter() - t0, nb


def _validate(loop: _Loop, splits: Splits, eval_fn, eval_batch_size) -> dict:
    if eval_fn is not None:
        return eval_fn(loop.model, loop.val)
    r = evaluate(loop.model, loop.val, splits.task, loop.device, eval_batch_size)
    return {"val_auc": r["auc"], "val_acc": r["acc"], "val_loss": r["loss"]}


class _Selection:
    """Keeps the weights of the selected epoch under ``recipe.select``; counts epochs without improvement.

    With ``recipe.auc_tolerance > 0`` the kept epoch is the lowest-``val_loss`` one among the epochs whose
    ``val_auc`` is within the tolerance of the best so far. Only epochs not beaten on both AUC and loss by
    another can ever be chosen, so just their weights are held (a short Pareto front), and the choice equals
    the rule applied to the whole history at the end.
    """

    def __init__(self, recipe: Recipe, checkpoint):
        self.recipe, self.checkpoint = recipe, checkpoint
        self.state, self.score, self.epoch, self.bad = None, -math.inf, 0, 0
        self.front: list[tuple[float, float, int, dict]] = []  # (val_auc, val_loss, epoch, weights)
        self.tolerant = recipe.select == "val_auc" and recipe.auc_tolerance > 0

    def update(self, model: nn.Module, log: dict) -> bool:
        """Record epoch ``log``; True when training should stop for lack of improvement."""
        before = self.epoch
        if self.tolerant:
            self._update_front(model, log)
        else:
            score = selection_score(self.recipe, log)
            if self.state is None or score > self.score:
                self.score, self.epoch = score, log["epoch"]
                self.state = _copy_state(model)
        if self.epoch != before and self.checkpoint is not None:
            save_checkpoint(model, self.checkpoint, {"epoch": self.epoch, "select": self.recipe.select},
                            state=self.state)
        self.bad = 0 if self.epoch == log["epoch"] else self.bad + 1
        return self.recipe.patience is not None and self.bad >= self.recipe.patience

    def _update_front(self, model: nn.Module, log: dict) -> None:
        auc, loss = _finite(log.get("val_auc"), -math.inf), _finite(log.get("val_loss"), math.inf)
        if not any(a >= auc and l <= loss for a, l, _, _ in self.front):  # an earlier epoch is at least as good
            self.front = [c for c in self.front if not (auc >= c[0] and loss < c[1])]
            self.front.append((auc, loss, log["epoch"], _copy_state(model)))
        best_auc = max(a for a, _, _, _ in self.front)
        self.front = [c for c in self.front if c[0] >= best_auc - self.recipe.auc_tolerance]
        _, _, self.epoch, self.state = min(self.front, key=lambda c: (c[1], c[2]))


def _finite(v, default: float) -> float:
    return default if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _copy_state(model: nn.Module) -> dict:
    return copy.deepcopy({k: v.detach() for k, v in model.state_dict().items()})


def _callbacks_stop(callbacks, log) -> bool:
    stop = False
    for cb in callbacks:
        try:
            cb(log)
        except StopTraining:
            stop = True
    return stop


def fit(model: nn.Module, splits: Splits, recipe: Recipe | None = None, *, label_fraction: float = 1.0,
        train_idx=None, augment: Callable | None = None, class_weight: str | torch.Tensor | None = None,
        sampler: str | None = None, loss_fn: Callable | None = None, eval_fn: Callable | None = None,
        param_groups=None, device="auto", channels_last: bool | None = None, compile: bool = False,
        loader: str = "device", num_workers: int = 0, reference_transform=None, seed: int = 0, callbacks=(),
        checkpoint: str | Path | None = None, progress: bool = True, desc: str | None = None,
        eval_batch_size: int = 512) -> FitResult:
    """Train ``model`` on ``splits.train`` (or a label subset) with ``recipe``; select on ``splits.val``.

    label_fraction: stratified seeded subset of the training labels (ignored if ``train_idx``).
    augment: None or ``fn(x, masks, generator) -> (x, masks)`` on float [0,1] batches on the device
    (e.g. ``mednb.augment.get("basic", dims=2)``). class_weight: None | "balanced" | tensor.
    sampler: None | "balanced" (class-balanced sampling with replacement). loss_fn(logits, y) /
    eval_fn(model, split) -> dict override loss and validation (``loss_fn.target == "mask"``: y is the
    mask batch). param_groups: optimizer groups. callbacks: ``cb(log)`` after each epoch — or each
    validation check of a step budget, whose ``log["epoch"]`` counts checks and ``log["step"]`` steps (raise
    :class:`StopTraining` to stop). loader: ``device`` | ``reference`` (per-sample DataLoader).
    """
    from tqdm.auto import tqdm
    recipe = recipe or Recipe()
    _check(loader, sampler, augment, class_weight)
    loop = _setup(model, splits, recipe, train_idx, label_fraction, seed, device, augment, class_weight, sampler,
                  loss_fn, param_groups, channels_last, compile, loader, num_workers, reference_transform)
    select, history, seen, train_time, steps = _Selection(recipe, checkpoint), [], 0, 0.0, 0
    budget = recipe.steps is not None
    periods = recipe.checks() if budget else [None] * recipe.epochs
    bar = tqdm(total=int(recipe.steps) if budget else recipe.epochs, unit="step" if budget else "ep",
               desc=desc or f"{getattr(model, 'mednb_name', 'model')} {splits.name}", disable=not progress, leave=True)
    t_start = time.perf_counter()
    for epoch, k in enumerate(periods, 1):
        train_loss, n, secs, nb = _train_epoch(loop, None if k is None else loop.take(k))
        seen, train_time, steps = seen + n, train_time + secs, steps + nb
        log = {"epoch": epoch, **({"step": steps} if budget else {}), "train_loss": train_loss,
               "lr": loop.opt.param_groups[0]["lr"], **_validate(loop, splits, eval_fn, eval_batch_size),
               "seconds": time.perf_counter() - t_start}
        history.append(log)
        stop = select.update(loop.model, log)
        bar.update(nb if budget else 1)
        bar.set_postfix({k: round(v, 4) for k, v in log.items()
                         if k in ("train_loss", "val_auc", "val_acc", "val_dice") and isinstance(v, float)})
        if _callbacks_stop(callbacks, log) or stop:
            break
    bar.close()
    loop.model.load_state_dict(select.state)
    return FitResult(model=loop.model, history=history, best_epoch=select.epoch, best=history[select.epoch - 1],
                     seconds=time.perf_counter() - t_start, images_per_s=seen / max(train_time, 1e-9),
                     device=str(loop.device), n_train=loop.n_train, steps=steps, n_val=len(loop.val))


def train(splits: Splits, model: str | nn.Module = "cnn", recipe: Recipe | None = None, *, seed: int = 0,
          device="auto", evaluate_test: bool = True, model_kw: dict | None = None, deterministic: bool = True,
          **fit_kw) -> FitResult:
    """Seed, build (by registry name) and :func:`fit` a classifier, then score it on the test split.

    ``fit_kw``: the keywords of :func:`fit` that are not part of a :class:`Recipe`.
    ``result.test`` holds ``{"auc", "acc", "balanced_acc", "loss"}`` of the selected model.
    """
    from .. import models
    seed_everything(seed, deterministic)
    if isinstance(model, str):
        model = models.create(model, splits.n_channels, splits.n_outputs, dims=splits.dims, size=splits.size,
                              **(model_kw or {}))
    res = fit(model, splits, recipe, seed=seed, device=device, **fit_kw)
    if evaluate_test:
        res.test = evaluate(res.model, splits.test, splits.task, device)
    return res
