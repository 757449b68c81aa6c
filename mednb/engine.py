"""Training and evaluation for every MedMNIST task type, with the data resident on the device.

``fit(model, splits, ...)`` trains with device-resident uint8 tensors: each epoch is a shuffled
index permutation, each batch an index slice, and conversion, per-sample augmentation and
normalization run batched on the device (the airbench approach). A split that does not fit in
free GPU memory stays in pinned host memory and its batches are copied asynchronously; the
choice is logged once. ``loader="reference"`` trains through a torch ``DataLoader`` with
per-sample PIL/torchvision transforms, as the MedMNIST experiments code does, for comparison.

The paper's protocol (MedMNIST v2, Yang et al., Scientific Data 2023) is :data:`PAPER`:
Adam lr 1e-3, batch 128 (3D: 32), 100 epochs, LR ×0.1 at 50 % and 75 %, model selected by best
validation AUC. Losses: cross-entropy (binary, multi-class, ordinal regression — treated as
multi-class, as the paper does) and BCE-with-logits (multi-label).
"""
from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import metrics as M
from .data import Split, Splits, label_subset
from .runtime import get_device, seed_everything

PAPER = dict(lr=1e-3, batch_size=128, batch_size_3d=32, epochs=100, schedule="multistep",
             milestones=(0.5, 0.75), gamma=0.1, select="val_auc", optimizer="adam")
SCHEDULES = ("multistep", "cosine", "constant", "onecycle")
SELECT = ("val_auc", "val_acc", "val_loss", "last")
LOADERS = ("device", "reference")
MEAN, STD = 0.5, 0.5  # medmnist experiments: Normalize(mean=[.5], std=[.5])


class StopTraining(Exception):
    """Raise from a callback to end training after the current epoch."""


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


# ----------------------------------------------------------------------------- staging
@dataclass
class Staged:
    """A split placed for training: on the device, or pinned on the host for streaming."""
    x: torch.Tensor
    y: torch.Tensor
    masks: torch.Tensor | None
    device: torch.device
    resident: bool

    def __len__(self):
        return len(self.x)

    def batch(self, idx: torch.Tensor):
        if self.resident:
            idx = idx.to(self.x.device)
            return self.x[idx], self.y[idx], None if self.masks is None else self.masks[idx]
        idx = idx.cpu()
        out = [self.x[idx], self.y[idx], None if self.masks is None else self.masks[idx]]
        nb = self.device.type == "cuda"
        return tuple(None if t is None else (t.pin_memory() if nb else t).to(self.device, non_blocking=nb)
                     for t in out)

    def batches(self, order: torch.Tensor, batch_size: int):
        """Yield ``(x, y, masks)`` for consecutive ``batch_size`` slices of ``order``.

        Resident: index slices on the device. Streaming on CUDA: the next batch is gathered on the host
        and copied on a side stream while the current one trains (one batch of lookahead).
        """
        if self.resident:
            order = order.to(self.x.device)  # one copy per epoch, then index slices on the device
        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if self.resident or self.device.type != "cuda":
            for c in chunks:
                yield self.batch(c)
            return
        copy_stream = torch.cuda.Stream(self.device)

        def issue(c):
            c = c.cpu()
            host = [None if t is None else t[c].pin_memory() for t in (self.x, self.y, self.masks)]
            with torch.cuda.stream(copy_stream):
                return [None if t is None else t.to(self.device, non_blocking=True) for t in host]

        nxt = issue(chunks[0]) if chunks else None
        for i in range(len(chunks)):
            cur = nxt
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(copy_stream)
            for t in cur:
                if t is not None:
                    t.record_stream(main)
            nxt = issue(chunks[i + 1]) if i + 1 < len(chunks) else None
            yield tuple(cur)


def split_nbytes(split: Split) -> int:
    n = split.x.numel() * split.x.element_size() + split.y.numel() * split.y.element_size()
    if split.masks is not None:
        n += split.masks.numel() * split.masks.element_size()
    return n


def placement(nbytes: int, device: torch.device, headroom: float = 0.5) -> bool:
    """True when ``nbytes`` fits on ``device`` (≤ ``headroom`` × free memory; always on CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= headroom * free


_SAID: set[str] = set()


def stage(split: Split, device: torch.device, resident: bool | None = None, log: Callable | None = print) -> Staged:
    """Put a split on the device when it fits (else pinned host memory), saying which once."""
    device = get_device(device)
    if resident is None:
        resident = placement(split_nbytes(split), device)
    if resident:
        if log and device.type == "cuda" and str(device) not in _SAID:  # once per process and device
            _SAID.add(str(device))
            log(f"[mednb] training data resident on {device} as uint8 ({split_nbytes(split) / 2**20:.0f} MiB)")
        to = lambda t: None if t is None else t.to(device)
        return Staged(to(split.x), to(split.y), to(split.masks), device, True)
    if log:
        log(f"[mednb] {split_nbytes(split) / 2**30:.1f} GiB does not fit in free {device} memory: "
            f"keeping it in pinned host memory and streaming batches asynchronously")
    pin = lambda t: None if t is None else (t.pin_memory() if device.type == "cuda" else t)
    return Staged(pin(split.x), pin(split.y), pin(split.masks), device, False)


# ----------------------------------------------------------------------------- reference loader
class ReferenceDataset(torch.utils.data.Dataset):
    """Per-sample PIL/torchvision pipeline as in the MedMNIST experiments code.

    2D: ``PIL.Image`` → optional ``transform`` (PIL-level augmentation) → ToTensor → Normalize(.5,.5).
    3D: float volume /255 → Normalize(.5,.5) (the experiments use numpy transforms for 3D).
    """

    def __init__(self, split: Split, transform=None):
        import torchvision.transforms as T
        self.x, self.y, self.transform = split.x, split.y, transform
        self.to_tensor = T.Compose([T.ToTensor(), T.Normalize(mean=[MEAN], std=[STD])])

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image
        x = self.x[i]
        if x.ndim == 3:  # (C,H,W) image
            arr = x.numpy()
            img = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
            if self.transform is not None:
                img = self.transform(img)
            t = self.to_tensor(img)
        else:
            t = (x.float() / 255.0 - MEAN) / STD
        return t, self.y[i]


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, task: str, device="auto", batch_size: int = 256,
            amp: bool | None = None, tta: Callable | None = None) -> np.ndarray:
    """Class scores (N, K): softmax probabilities, or sigmoid per label for multi-label."""
    device = get_device(device)
    model.eval().to(device)
    use_amp = (device.type == "cuda") if amp is None else amp
    out = []
    for i in range(0, len(x), batch_size):
        xb = normalize(x[i:i + batch_size].to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
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


# ----------------------------------------------------------------------------- training
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

    def metric(self, name: str):
        return self.history[self.best_epoch - 1][name] if self.history else math.nan


def save_checkpoint(model: nn.Module, path: str | Path, extra: dict | None = None) -> Path:
    """Atomic ``torch.save`` of ``{"state_dict", **extra}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save({"state_dict": model.state_dict(), **(extra or {})}, tmp)
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


def _make_scheduler(opt, schedule, epochs, steps_per_epoch, milestones, gamma, lr):
    if schedule == "multistep":
        ms = sorted({max(1, int(round(m * epochs))) * steps_per_epoch for m in milestones})
        return torch.optim.lr_scheduler.MultiStepLR(opt, ms, gamma)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs * steps_per_epoch))
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=max(1, epochs * steps_per_epoch))
    return None


def _resolve_augment(augment, dims):
    if augment is None or augment == "none":
        return None
    if isinstance(augment, str):
        from . import augment as A  # lazy: optional dependency on kornia
        return A.get(augment, dims=dims)
    if not callable(augment):
        raise TypeError("augment must be None, a policy name or a callable (x, masks, generator) -> (x, masks)")
    return augment


def fit(model: nn.Module, splits: Splits, *, epochs: int = 10, lr: float = 1e-3, batch_size: int | None = None,
        optimizer: str = "adam", weight_decay: float = 0.0, momentum: float = 0.9,
        schedule: str = "multistep", milestones=(0.5, 0.75), gamma: float = 0.1,
        label_fraction: float = 1.0, train_idx=None, augment=None,
        class_weight: str | torch.Tensor | None = None, sampler: str | None = None,
        select: str = "val_auc", patience: int | None = None,
        loss_fn: Callable | None = None, eval_fn: Callable | None = None, param_groups=None,
        device="auto", amp: bool | None = None, channels_last: bool | None = None, compile: bool = False,
        loader: str = "device", num_workers: int = 0, reference_transform=None,
        seed: int = 0, callbacks=(), checkpoint: str | Path | None = None,
        progress: bool = True, desc: str | None = None, eval_batch_size: int = 512) -> FitResult:
    """Train ``model`` on ``splits.train`` (or a label subset), select on ``splits.val``.

    label_fraction: stratified seeded subset of the training labels (ignored if ``train_idx``).
    augment: None, a policy name of :mod:`mednb.augment`, or ``fn(x, masks, generator) -> (x, masks)``
    on float [0,1] batches on the device. class_weight: None | "balanced" | tensor.
    sampler: None | "balanced" (class-balanced sampling with replacement).
    select: ``val_auc`` | ``val_acc`` | ``val_loss`` | ``last``. patience: early stopping (epochs).
    loss_fn(logits, y) / eval_fn(model, split) -> dict: override loss and validation (e.g. segmentation,
    where ``y`` is the mask batch when ``splits`` has masks and ``loss_fn`` asks for them via
    ``loss_fn.target == "mask"``). param_groups: optimizer groups (discriminative LRs).
    callbacks: ``cb(log: dict)`` after each epoch; raise :class:`StopTraining` to stop.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if select not in SELECT:
        raise ValueError(f"unknown select {select!r}; valid: {', '.join(SELECT)}")
    if loader not in LOADERS:
        raise ValueError(f"unknown loader {loader!r}; valid: {', '.join(LOADERS)}")
    if sampler not in (None, "balanced"):
        raise ValueError(f"unknown sampler {sampler!r}; valid: None, 'balanced'")
    if optimizer not in ("adam", "adamw", "sgd"):
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: adam, adamw, sgd")
    device = get_device(device)
    task = splits.task
    batch_size = batch_size or (PAPER["batch_size_3d"] if splits.dims == 3 else PAPER["batch_size"])
    g = torch.Generator().manual_seed(int(seed))
    use_amp = (device.type == "cuda") if amp is None else bool(amp)
    use_cl = (device.type == "cuda") if channels_last is None else bool(channels_last)

    if train_idx is None:
        train_idx = label_subset(splits.train.y, label_fraction, seed, task)
    train = splits.train.subset(train_idx)
    n_train = len(train)
    target_mask = getattr(loss_fn, "target", None) == "mask"

    model = model.to(device)
    if use_cl:
        model = model.to(memory_format=torch.channels_last if splits.dims == 2 else torch.channels_last_3d)
    run_model = torch.compile(model) if compile else model

    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"unknown class_weight {class_weight!r}; valid: None, 'balanced', a tensor")
        class_weight = class_weights(train.y, task, splits.n_outputs)
    if class_weight is not None:
        class_weight = class_weight.to(device)
    loss_fn = loss_fn or loss_for(task, class_weight)
    aug = _resolve_augment(augment, splits.dims)

    groups = param_groups if param_groups is not None else [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        opt = (torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam)(groups, lr=lr, weight_decay=weight_decay)

    if loader == "device":
        staged = stage(train, device)
        steps = max(1, math.ceil(n_train / batch_size))
    else:
        ds = ReferenceDataset(train, reference_transform)
        ref_sampler = None
        if sampler == "balanced":
            cw = class_weights(train.y, task, splits.n_outputs)
            w = cw[train.y[:, 0]] if not is_multilabel(task) else torch.ones(n_train)
            ref_sampler = torch.utils.data.WeightedRandomSampler(w.double(), n_train, True, generator=g)
        dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=ref_sampler is None, sampler=ref_sampler,
                                         num_workers=num_workers, generator=g, pin_memory=device.type == "cuda",
                                         drop_last=False)
        steps = len(dl)
    sched = _make_scheduler(opt, schedule, epochs, steps, milestones, gamma, lr)
    if sampler == "balanced":
        cw = class_weights(train.y, task, splits.n_outputs)
        sample_w = cw[train.y[:, 0]] if not is_multilabel(task) else torch.ones(n_train)

    def evaluate_val():
        if eval_fn is not None:
            return eval_fn(model, splits.val)
        r = evaluate(model, splits.val, task, device, eval_batch_size)
        return {"val_auc": r["auc"], "val_acc": r["acc"], "val_loss": r["loss"]}

    history, best_state, best_score, best_epoch, bad = [], None, -math.inf, 0, 0
    seen, train_time = 0, 0.0
    from tqdm.auto import tqdm
    bar = tqdm(range(1, epochs + 1), desc=desc or f"{getattr(model, 'mednb_name', 'model')} {splits.name}",
               unit="ep", disable=not progress, leave=True)
    t_start = time.perf_counter()
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        tot, nb = torch.zeros((), device=device), 0
        if loader == "device":
            order = (torch.multinomial(sample_w, n_train, True, generator=g) if sampler == "balanced"
                     else torch.randperm(n_train, generator=g))
            batches = staged.batches(order, batch_size)
        else:
            batches = ((xb.to(device, non_blocking=True), yb.to(device, non_blocking=True), None) for xb, yb in dl)
        for xb, yb, mb in batches:
            if loader == "device":
                xb = xb.float().div_(255.0)
                if aug is not None:
                    xb, mb = aug(xb, mb, g)
                xb = normalize(xb)
            if use_cl:
                xb = xb.contiguous(memory_format=torch.channels_last if xb.ndim == 4 else torch.channels_last_3d)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = run_model(xb)
                loss = loss_fn(out, mb if target_mask else yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            tot += loss.detach()
            nb += 1
            seen += len(xb)
        train_loss = float(tot) / max(nb, 1)
        train_time += time.perf_counter() - t0
        log = {"epoch": epoch, "train_loss": train_loss, "lr": opt.param_groups[0]["lr"], **evaluate_val(),
               "seconds": time.perf_counter() - t_start}
        history.append(log)
        score = {"val_loss": -log.get("val_loss", math.nan), "last": epoch}.get(select, log.get(select, math.nan))
        if select != "last" and (score is None or (isinstance(score, float) and math.isnan(score))):
            score = -math.inf
        if best_state is None or score > best_score:
            best_score, best_epoch, bad = score, epoch, 0
            best_state = copy.deepcopy({k: v.detach() for k, v in model.state_dict().items()})
            if checkpoint is not None:
                save_checkpoint(model, checkpoint, {"epoch": epoch, "select": select})
        else:
            bad += 1
        bar.set_postfix({k: round(v, 4) for k, v in log.items()
                         if k in ("train_loss", "val_auc", "val_acc", "val_dice") and isinstance(v, float)})
        stop = patience is not None and bad >= patience
        for cb in callbacks:
            try:
                cb(log)
            except StopTraining:
                stop = True
        if stop:
            break
    bar.close()
    model.load_state_dict(best_state)
    return FitResult(model=model, history=history, best_epoch=best_epoch, best=history[best_epoch - 1],
                     seconds=time.perf_counter() - t_start, images_per_s=seen / max(train_time, 1e-9),
                     device=str(device), n_train=n_train)


def train(splits: Splits, model: str | nn.Module = "cnn", *, seed: int = 0, device="auto", evaluate_test: bool = True,
          model_kw: dict | None = None, deterministic: bool = True, **fit_kw) -> FitResult:
    """Seed, build (by registry name) and :func:`fit` a classifier, then score it on the test split.

    ``result.test`` holds ``{"auc", "acc", "balanced_acc", "loss"}`` of the selected model.
    """
    from . import models
    seed_everything(seed, deterministic)
    if isinstance(model, str):
        model = models.create(model, splits.n_channels, splits.n_outputs, dims=splits.dims, size=splits.size,
                              **(model_kw or {}))
    res = fit(model, splits, seed=seed, device=device, **fit_kw)
    if evaluate_test:
        res.test = evaluate(res.model, splits.test, splits.task, device)
    return res
