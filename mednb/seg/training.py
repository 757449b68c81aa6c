"""Training segmenters through :func:`mednb.engine.fit`, and restoration pre-training of their encoders.

:data:`RECIPE` is the segmentation recipe: Adam, lr 1e-3, cosine schedule, batch 8, a budget of 160
optimizer steps with 10 validation checks, the check of the best validation Dice kept
(``select="val_loss"`` with ``val_loss = 1 − val Dice``, see :func:`mednb.seg.metrics.eval_fn`). Every
arm of a comparison — each architecture, each number of labelled images, scratch or pre-trained — trains
the same number of steps (Oliver et al., NeurIPS 2018): the engine draws its batches from back-to-back
shuffled passes, so one labelled image fills every batch with random crops of it. The loss is
:class:`~mednb.seg.metrics.DiceCELoss`, which asks the engine for the mask batch (augmented together
with the images). Random crops are the first step of the training augmentation policy
(:func:`train_policy`); with an epoch recipe (restoration pre-training), small training sets are
repeated (:func:`repeat_index`) until an epoch sees ``samples_per_epoch`` crops.
"""
from __future__ import annotations

import copy
import hashlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import engine, models
from ..data import Split, Splits
from ..runtime import checkpoint_dir, seed_everything
from .data import center_crop, random_crop
from .metrics import DiceCELoss, eval_fn, evaluate
from .models import create

RECIPE = engine.Recipe(steps=160, lr=1e-3, batch_size=8, schedule="cosine", select="val_loss")
SELECT = ("val_loss", "last")
#: the restoration pretext of :func:`pretrain_restoration` (Models Genesis, :mod:`mednb.ssl.genesis`)
RESTORATION = "genesis"


def train_policy(crop: int = 0, augment: str | None = None, strength: float = 1.0, dims: int = 2):
    """``policy(x, masks, generator) -> (x, masks)``: random crop, then :mod:`mednb.augment` ``augment``."""
    aug = None
    if augment not in (None, "", "none"):
        from .. import augment as A  # the joint image/mask augmentations of notebook 02
        aug = A.get(augment, strength, dims)

    def policy(x, masks=None, generator=None):
        x, masks = random_crop(x, masks, crop, generator)
        if aug is not None:
            x, masks = aug(x, masks, generator)
        return x, masks
    return policy


def repeat_index(train_idx, samples_per_epoch: int | None) -> torch.Tensor:
    """Repeat training indices so one epoch sees ≥ ``samples_per_epoch`` (random-crop) samples."""
    idx = torch.as_tensor(train_idx, dtype=torch.long)
    if not samples_per_epoch or len(idx) >= samples_per_epoch:
        return idx
    return idx.repeat(math.ceil(samples_per_epoch / len(idx)))


def fit(model: nn.Module, splits: Splits, recipe: engine.Recipe | None = None, *, crop: int = 0,
        augment: str | None = None, strength: float = 1.0, train_idx=None, samples_per_epoch: int | None = None,
        val_crop: int = 0, loss: DiceCELoss | None = None, seed: int = 0, device="auto",
        **fit_kw) -> engine.FitResult:
    """Train a segmenter with :func:`mednb.engine.fit` and ``recipe`` (None → :data:`RECIPE`).

    crop, augment, strength: the training policy (:func:`train_policy`; ``augment`` is a policy
    name of :mod:`mednb.augment`). samples_per_epoch: with an epoch recipe only (a step budget needs no
    repetition). val_crop: select on central crops of this side of the validation images (cheaper per check). fit_kw: the other non-recipe keywords of :func:`mednb.engine.fit`
    (``progress``, ``desc``, …). ``result.test`` gets ``{"dice", "iou", "dice_image", "iou_image"}``
    on the full ``splits.test``; ``result.n_train`` counts distinct training images.
    """
    recipe = RECIPE if recipe is None else recipe
    if recipe.select not in SELECT:
        raise ValueError(f"recipe.select {recipe.select!r} has no segmentation score; valid: {', '.join(SELECT)}")
    idx = torch.arange(len(splits.train)) if train_idx is None else torch.as_tensor(train_idx)
    if val_crop:
        splits = copy.copy(splits)
        splits.val = center_crop(splits.val, val_crop)
    train_idx = idx if recipe.steps is not None else repeat_index(idx, samples_per_epoch)
    res = engine.fit(model, splits, recipe, train_idx=train_idx,
                     loss_fn=loss or DiceCELoss(), eval_fn=eval_fn(device),
                     augment=train_policy(crop, augment, strength, splits.dims), seed=seed, device=device, **fit_kw)
    res.n_train = len(idx)
    res.test = evaluate(res.model, splits.test, device)
    return res


def train(splits: Splits, model: str = "unet", recipe: engine.Recipe | None = None, *, seed: int = 0,
          model_kw: dict | None = None, device="auto", init: nn.Module | None = None, **fit_kw) -> engine.FitResult:
    """Seed, build ``model`` (by name, 2 classes) and :func:`fit` it. ``init``: copy its encoder first."""
    seed_everything(seed)
    net = create(model, splits.n_channels, 2, dims=splits.dims, **(model_kw or {}))
    if init is not None:
        net.encoder.load_state_dict(init.encoder.state_dict())
    res = fit(net, splits, recipe, seed=seed, device=device, **fit_kw)
    res.params = models.count_parameters(res.model)
    return res


class _RestoreLoss:
    target = "mask"  # engine passes the policy's second output: the clean target

    def __call__(self, out, target):
        outs = out if isinstance(out, (list, tuple)) else [out]
        return sum(F.mse_loss(o.float(), engine.normalize(target.float())) for o in outs) / len(outs)


def _restoration_key(splits: Splits, model: str, kw: dict, x: torch.Tensor, recipe: engine.Recipe, crop: int,
                     samples_per_epoch, seed: int) -> str:
    """Cache key: method, dataset, model and options, data shape and a hash of a sample of it, the
    recipe (epochs or step budget, lr, batch size, then any field that differs from :data:`RECIPE`), crop, samples,
    seed."""
    budget = "" if recipe.steps is None else f"_st{recipe.steps}"  # a step budget replaces the epochs
    data_id = hashlib.sha1(str(tuple(x.shape)).encode() + x[::max(1, len(x) // 64)].contiguous().numpy().tobytes())
    other = "".join(f"_{f}{getattr(recipe, f)}" for f in ("optimizer", "weight_decay", "momentum", "schedule",
                                                           "milestones", "gamma", "patience", "amp")
                    if getattr(recipe, f) != getattr(RECIPE, f))
    return (f"{RESTORATION}_{splits.name}_{model}_{'-'.join(f'{k}{v}' for k, v in sorted(kw.items()))}"
            f"_n{len(x)}_s{tuple(x.shape[2:])[0]}_e{recipe.epochs}{budget}_lr{recipe.lr:g}_b{recipe.batch_size}{other}"
            f"_c{crop}_spe{samples_per_epoch}_seed{seed}_{data_id.hexdigest()[:8]}")


def _unlabelled_splits(splits: Splits, x: torch.Tensor, seed: int) -> Splits:
    """``x`` split seeded into train and a tenth (≥ 1 image) for validation; no labels, no test images."""
    n_val = max(1, len(x) // 10)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    y0 = torch.zeros(len(x), 1, dtype=torch.long)
    return Splits(f"{splits.name}-unlabelled", splits.size, "binary-class", {0: "image"}, x.shape[1], x.ndim - 2,
                  Split(x[perm[n_val:]], y0[n_val:], None), Split(x[perm[:n_val]], y0[:n_val], None),
                  Split(x[:0], y0[:0], None))


def pretrain_restoration(splits: Splits, model: str = "unet", x_unlabeled: torch.Tensor | None = None,
                         recipe: engine.Recipe | None = None, *, model_kw: dict | None = None, crop: int = 0,
                         samples_per_epoch: int | None = None, seed: int = 0, device="auto", cache: bool = True,
                         progress: bool = True) -> nn.Module:
    """Pre-train a segmentation network (1 output channel) to restore corrupted unlabelled images.

    Models Genesis (Zhou et al., MICCAI 2019; the transforms of :mod:`mednb.ssl.genesis`). Runs
    through :func:`mednb.engine.fit` with ``recipe`` (None → :data:`RECIPE`) and the last epoch kept
    (there is no validation score, so ``recipe.select`` is ignored): the augmentation policy crops,
    corrupts and hands the clean crop to the loss as its target. Returns the network; its
    ``encoder`` initialises a segmenter (``train(..., init=net)``). Cached in
    ``cache_root()/checkpoints/seg/<code version>/`` (key: :func:`_restoration_key`); ``cache=False``
    always retrains.
    """
    from ..ssl import genesis
    recipe = (RECIPE if recipe is None else recipe).replace(select="last")
    x = splits.train.x if x_unlabeled is None else x_unlabeled
    kw = dict(model_kw or {})
    key = _restoration_key(splits, model, kw, x, recipe, crop, samples_per_epoch, seed)
    path = checkpoint_dir("seg") / f"{key}.pt"
    seed_everything(seed)
    net = create(model, x.shape[1], 1, dims=x.ndim - 2, **kw)
    if cache and path.exists():
        engine.load_checkpoint(net, path)
        return net.eval()
    un = _unlabelled_splits(splits, x, seed)

    def policy(xb, _masks=None, generator=None):
        xb, _ = random_crop(xb, None, crop, generator)
        return genesis.transform(xb, generator)

    engine.fit(net, un, recipe, train_idx=repeat_index(torch.arange(len(un.train)), samples_per_epoch),
               loss_fn=_RestoreLoss(), eval_fn=lambda m, s: {}, augment=policy, seed=seed, device=device,
               progress=progress, desc=f"pretrain {RESTORATION}")
    if cache:
        engine.save_checkpoint(net, path, {"method": RESTORATION})
    return net.eval()
