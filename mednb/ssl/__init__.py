"""Self-supervised pretraining on unlabeled images (notebook 04), 2D and 3D.

``pretrain(method, model, x_unlabeled_uint8, epochs=…, batch_size=…, lr=…)`` trains the
``features`` of a mednb ``Classifier`` with one pretext method and returns
:class:`PretrainResult` (``model``, ``history``, ``checkpoint``, ``method``). Methods (one file
each, over :class:`mednb.ssl.base.Pretext`):

=============  ==========================  ===============================================
 name           family                      paper
=============  ==========================  ===============================================
 rotation       predictive                  Gidaris et al., ICLR 2018
 jigsaw         predictive                  Noroozi & Favaro, ECCV 2016
 genesis        generative (restoration)    Zhou et al., MICCAI 2019 (Models Genesis)
 autoencoder    generative (denoising)      Vincent et al., ICML 2008
 simclr         contrastive                 Chen et al., ICML 2020
 byol           distillation                Grill et al., NeurIPS 2020
 barlow         information maximization    Zbontar et al., ICML 2021
 deepcluster    clustering                  Caron et al., ECCV 2018
=============  ==========================  ===============================================

Checkpoints are cached in ``cache_root()/checkpoints/ssl/<code version>/`` under a key of (method,
dataset, model name, input shape, data fingerprint, training parameters, method keywords): a second
call with the same mednb code reloads instead of retraining; ``force=True`` retrains. The evaluation
helpers (linear probe, fine-tuning at label fractions vs scratch, kNN monitor) are in
:mod:`mednb.ssl.evaluation`.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from .. import knobs
from ..engine import Recipe, load_checkpoint, placement, save_checkpoint
from ..runtime import get_device, seed_everything
from . import genesis
from .autoencoder import Autoencoder
from .barlow import BarlowTwins
from .base import Decoder, Pretext
from .byol import BYOL
from .deepcluster import DeepCluster
from .evaluation import (CONVERGED_TOL, FINETUNE, PROTOCOLS, compare, convergence_summary, embed, embedding_2d,
                         finetune, knn_accuracy, knn_monitor, linear_probe, paired_vs)
from .genesis import Genesis
from .jigsaw import Jigsaw
from .rotation import Rotation
from .simclr import SimCLR

METHODS: dict[str, type[Pretext]] = {c.name: c for c in (Rotation, Jigsaw, Genesis, Autoencoder, SimCLR, BYOL,
                                                          BarlowTwins, DeepCluster)}
FAMILIES = {name: cls.family for name, cls in METHODS.items()}

# STEPS / STEPS_3D: the fine-tuning budget in optimizer steps of every arm (pretext or scratch, every label
# fraction) of the 2D / 3D comparison; pretraining (PRETRAIN_EPOCHS*) is outside it. Student: 100 steps of 128
# at 10 % labels is where both scratch and SimCLR have flattened on BreastMNIST (measured: 75 and 180 steps give
# the same AUCs); methods and the 1 % fraction beyond the student's ~15 min are in "full".
PROFILES = {
    "smoke": dict(DATASET="phantom2d", SIZE=28, MODEL="cnn", PHANTOM_COUNTS=[240, 60, 120],
                  METHODS=["rotation", "genesis"], N_UNLABELED=0, PRETRAIN_EPOCHS=2, BATCH_SIZE=16, LR=1e-3,
                  STEPS=45, FT_LR=3e-3, VAL_LABELS="full", LABEL_FRACTIONS=[0.1, 1.0], SEEDS=[0],
                  PROTOCOLS=["linear", "finetune"], FORCE_RETRAIN=False, EMBEDDING="pca",
                  DATASET_3D="phantom3d", MODEL_3D="cnn", PHANTOM_COUNTS_3D=[200, 50, 100], N_UNLABELED_3D=0,
                  PRETRAIN_EPOCHS_3D=1, STEPS_3D=350, LABEL_FRACTIONS_3D=[1.0], SEEDS_3D=[0],
                  DEVICE="auto"),
    "student": dict(DATASET="breastmnist", SIZE=28, MODEL="cnn", PHANTOM_COUNTS=[1200, 300, 600],
                    METHODS=["rotation", "simclr", "barlow"], N_UNLABELED=0, PRETRAIN_EPOCHS=30, BATCH_SIZE=128,
                    LR=1e-3, STEPS=100, FT_LR=1e-3, VAL_LABELS="full", LABEL_FRACTIONS=[0.1, 1.0], SEEDS=[0, 1, 2],
                    PROTOCOLS=["linear", "finetune"], FORCE_RETRAIN=False, EMBEDDING="tsne",
                    DATASET_3D="adrenalmnist3d", MODEL_3D="cnn", PHANTOM_COUNTS_3D=[400, 100, 200],
                    N_UNLABELED_3D=0, PRETRAIN_EPOCHS_3D=3, STEPS_3D=80, LABEL_FRACTIONS_3D=[0.1],
                    SEEDS_3D=[0, 1], DEVICE="auto"),
    "full": dict(DATASET="breastmnist", SIZE=28, MODEL="resnet18", PHANTOM_COUNTS=[1200, 300, 600],
                 METHODS=list(METHODS), N_UNLABELED=0, PRETRAIN_EPOCHS=200, BATCH_SIZE=256, LR=1e-3,
                 STEPS=600, FT_LR=1e-3, VAL_LABELS="full", LABEL_FRACTIONS=[0.01, 0.1, 1.0], SEEDS=[0, 1, 2, 3, 4],
                 PROTOCOLS=["linear", "finetune"], FORCE_RETRAIN=False, EMBEDDING="tsne",
                 DATASET_3D="adrenalmnist3d", MODEL_3D="resnet18_3d", PHANTOM_COUNTS_3D=[400, 100, 200],
                 N_UNLABELED_3D=0, PRETRAIN_EPOCHS_3D=100, STEPS_3D=1500, LABEL_FRACTIONS_3D=[0.1, 1.0],
                 SEEDS_3D=[0, 1, 2, 3, 4], DEVICE="auto"),
}
# knobs valid only for a dataset or a registry (checked by mednb.params before anything runs)
CHECKS = {"DATASET": knobs.dataset(2), "DATASET_3D": knobs.dataset(3), "SIZE": knobs.size("DATASET", "DATASET_3D"),
          "MODEL": knobs.model(2), "MODEL_3D": knobs.model(3), "METHODS": knobs.ssl_method(),
          "PROTOCOLS": knobs.ssl_protocol(), "EMBEDDING": knobs.embedding(), "VAL_LABELS": knobs.val_labels(),
          "STEPS": knobs.steps(), "STEPS_3D": knobs.steps()}


def finetune_recipe(values, suffix: str = "") -> Recipe:
    """The fine-tuning recipe of a comparison from notebook 04's knobs: :data:`FINETUNE` with ``STEPS<suffix>``
    (one budget for every arm and label fraction), ``FT_LR``, ``VAL_LABELS`` and the batch size (``BATCH_SIZE``;
    3D: ``max(2, BATCH_SIZE // 4)``)."""
    get = values.get if hasattr(values, "get") else (lambda k, d=None: getattr(values, k, d))
    bs = get("BATCH_SIZE")
    return FINETUNE.replace(steps=get("STEPS" + suffix), lr=get("FT_LR"), val_labels=get("VAL_LABELS"),
                            batch_size=max(2, bs // 4) if suffix == "_3D" else bs)


def names() -> list[str]:
    """Valid method names."""
    return list(METHODS)


def _check(method: str) -> str:
    from ..runtime import check_name
    return check_name(method, METHODS, "ssl method")


def create(method: str, model: nn.Module, in_channels: int, size: int, dims: int, **method_kw) -> Pretext:
    """Wrap ``model`` in the pretext method ``method`` (its heads built here)."""
    return METHODS[_check(method)](model, in_channels, size, dims, **method_kw)


@dataclass
class PretrainResult:
    """``model``: the classifier with pretrained ``features``; ``method``: the pretext object (heads);
    ``history``: per epoch ``{"epoch", "loss", "seconds", ["knn_acc"], …}``; ``cached``: reloaded."""
    model: nn.Module
    history: list[dict]
    checkpoint: Path | None
    method: Pretext
    cached: bool = False
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)


def fingerprint(x: torch.Tensor) -> str:
    """Short hash of a tensor's shape and a strided sample of its bytes (cheap data identity)."""
    h = hashlib.sha1(str(tuple(x.shape)).encode())
    step = max(1, len(x) // 128)
    h.update(x[::step].contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def checkpoint_dir() -> Path:
    """``cache_root()/checkpoints/ssl/<code version>/`` (:func:`mednb.runtime.checkpoint_dir`)."""
    from ..runtime import checkpoint_dir as _dir
    return _dir("ssl")


def checkpoint_path(meta: dict) -> Path:
    blob = json.dumps(meta, sort_keys=True, default=str)
    key = hashlib.sha1(blob.encode()).hexdigest()[:12]
    return checkpoint_dir() / f"{meta['method']}_{meta['dataset']}_{meta['model']}_{key}.pt"


def _from_checkpoint(obj, model: nn.Module, path: Path, meta: dict) -> "PretrainResult":
    """A :class:`PretrainResult` reloaded from a cached pretext checkpoint (no training)."""
    ckpt = load_checkpoint(obj, path)
    obj.eval()
    if ckpt.get("knn_init") is not None:
        meta["knn_init"] = float(ckpt["knn_init"])
    return PretrainResult(model, list(ckpt.get("history", [])), path, obj, cached=True,
                          seconds=float(ckpt.get("seconds", 0.0)), meta=meta)


def _pretext_epoch(obj, x_dev, device, order, bs: int, opt, sched, g_aug) -> dict:
    """One pass of the pretext task over ``order`` in batches of ``bs`` (a last batch of < 2 is dropped):
    ``{"loss": mean loss, **mean of the method's extra terms}``."""
    tot, nb, extra = 0.0, 0, {}
    for i in range(0, len(order) - 1, bs):
        idx = order[i:i + bs]
        if len(idx) < 2:
            break
        xb = x_dev[idx.to(x_dev.device)].to(device, non_blocking=True).float().div_(255.0)
        loss, info = obj.loss(xb, idx, g_aug)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        obj.after_step()
        tot += float(loss.detach())
        nb += 1
        for k, v in info.items():
            extra[k] = extra.get(k, 0.0) + float(v)
    return {"loss": tot / max(nb, 1), **{k: v / max(nb, 1) for k, v in extra.items()}}


def pretrain(method: str, model: nn.Module, x_unlabeled_uint8: torch.Tensor, *, epochs: int, batch_size: int,
             lr: float, device="auto", seed: int = 0, cache: bool = True, force: bool = False,
             progress: bool = True, dataset: str | None = None, knn=None, weight_decay: float = 1e-5,
             **method_kw) -> PretrainResult:
    """Pretrain ``model.features`` with a pretext ``method`` on unlabeled uint8 images.

    x_unlabeled_uint8: (N,C,S,S) or (N,C,S,S,S) — training images only, labels never used.
    Adam + cosine schedule; batches of ``batch_size`` (a last batch of < 2 is dropped).
    knn: optional ``(x_bank, y_bank, x_query, y_query)`` (:func:`knn_monitor`) → ``knn_acc`` per epoch.
    cache/force: reload ``checkpoint_dir()/<key>.pt`` when present unless ``force``.
    method_kw: the method's own options (e.g. ``grid``, ``n_perms`` for jigsaw; ``tau`` for byol).
    """
    key = _check(method)
    x = torch.as_tensor(x_unlabeled_uint8)
    if x.dtype != torch.uint8 or x.ndim not in (4, 5):
        raise ValueError(f"x_unlabeled_uint8 must be uint8 (N,C,H,W) or (N,C,D,H,W), got {x.dtype} {tuple(x.shape)}")
    if len(x) < 2:
        raise ValueError("need at least 2 unlabeled images")
    dims, in_ch, size = x.ndim - 2, int(x.shape[1]), int(x.shape[-1])
    device = get_device(device)
    seed_everything(seed)
    obj = create(key, model, in_ch, size, dims, **method_kw).to(device)
    meta = dict(method=key, dataset=str(dataset or "data"), model=getattr(model, "mednb_name", type(model).__name__),
                dims=dims, in_channels=in_ch, size=size, n=len(x), data=fingerprint(x), epochs=int(epochs),
                batch_size=int(batch_size), lr=float(lr), weight_decay=float(weight_decay), seed=int(seed),
                method_kw={k: method_kw[k] for k in sorted(method_kw)})
    path = checkpoint_path(meta) if cache else None
    if path is not None and path.exists() and not force:
        return _from_checkpoint(obj, model, path, meta)

    from tqdm.auto import tqdm
    x_dev = x.to(device) if device.type != "cpu" and placement(x.numel(), device) else x
    g_order = torch.Generator().manual_seed(int(seed))
    g_aug = torch.Generator(device=device).manual_seed(int(seed) + 1) if device.type == "cuda" else \
        torch.Generator().manual_seed(int(seed) + 1)
    bs = min(int(batch_size), len(x))
    steps = max(1, len(x) // bs)
    opt = torch.optim.Adam(obj.trainable_parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs * steps))
    history = []
    knn_init = knn_accuracy(model, *knn, device=device) if knn is not None else None
    t0 = time.perf_counter()
    bar = tqdm(range(1, int(epochs) + 1), desc=f"{key} {meta['dataset']}", unit="ep", disable=not progress)
    for epoch in bar:
        obj.train()
        log = {"epoch": epoch, **obj.start_epoch(x_dev, device, g_order, max(bs, 64))}
        log.update(_pretext_epoch(obj, x_dev, device, torch.randperm(len(x), generator=g_order), bs, opt, sched,
                                  g_aug))
        if knn is not None:
            log["knn_acc"] = knn_accuracy(model, *knn, device=device)
        log["seconds"] = time.perf_counter() - t0
        history.append(log)
        bar.set_postfix({k: round(v, 4) for k, v in log.items() if k in ("loss", "knn_acc")})
    bar.close()
    obj.eval()
    seconds = time.perf_counter() - t0
    if knn_init is not None:
        meta["knn_init"] = knn_init
    if path is not None:
        save_checkpoint(obj, path, {"history": history, "seconds": seconds, "knn_init": knn_init})
    return PretrainResult(model, history, path, obj, cached=False, seconds=seconds, meta=meta)


__all__ = ["METHODS", "FAMILIES", "PROFILES", "CHECKS", "PROTOCOLS", "PretrainResult", "Decoder", "Pretext", "names",
           "create", "pretrain", "genesis", "compare", "embed", "embedding_2d", "finetune", "knn_accuracy",
           "finetune_recipe", "paired_vs", "convergence_summary", "CONVERGED_TOL",
           "knn_monitor", "linear_probe", "checkpoint_dir", "checkpoint_path", "fingerprint"]
