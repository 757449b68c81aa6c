"""Segmentation for notebook 05: U-Net, wide U-Net and UNet++ (2D/3D), Dice + CE loss, Dice/IoU,
an image/mask-folder dataset (the ISBI 2012 EM membrane set) and the train/evaluate glue.

Models (registered in :mod:`mednb.models`, architectures in :mod:`mednb.unetpp`):
``unet`` (width, depth), ``wide_unet`` (width chosen so that its parameter count matches
``unetpp`` at the same width/depth, as the paper's wide U-Net: 35 vs 32 filters) and ``unetpp``
(width, depth, deep_supervision, mode "accurate"|"fast", prune_level 1..depth). Every model maps
(N,C,H,W) or (N,C,D,H,W) of any size to logits (N,K,...); a deeply supervised UNet++ in training
mode returns the list of its head logits, which :class:`DiceCELoss` averages.

Masks hold class indices (N,1,...) uint8: 1 = foreground (phantom lesion; EM membrane), 0 = rest.
Metrics (:func:`dice_iou`): per image — an image whose truth and prediction are both empty
scores 1 — and per dataset (pixels pooled over the whole split). The recorded ``iou``/``dice`` are
the per-dataset (pooled) scores of the foreground class.

Training runs through :func:`mednb.engine.fit` with ``loss_fn=DiceCELoss()`` (``target="mask"``:
the engine hands it the mask batch, augmented with the images) and an ``eval_fn`` that reports
``val_dice``/``val_iou`` and ``val_loss = 1 − val Dice`` (so ``select="val_loss"`` keeps the best
validation Dice). Random crops are the first step of the training augmentation policy.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import engine, models
from .data import DataNotFound, Split, Splits, data_root
from .runtime import get_device, seed_everything
from .unetpp import UNet, UNetPlusPlus, pruned, widths  # noqa: F401  (re-exported)

SEG_MODELS = ("unet", "wide_unet", "unetpp")
EM_NAME = "isbi2012_em_membrane"
EM_URL = "https://imagej.net/events/isbi-2012-segmentation-challenge"
EM_REPO = "https://github.com/zhixuhao/unet (data/membrane/train/{image,label})"
EM_LICENCE = ("ISBI 2012 challenge terms: non-commercial image-segmentation research only; cite "
              "Cardona et al., PLoS Biol 8(10):e1000521, 2010 (and TrakEM2). Not shipped with mednb.")
IMAGE_EXT = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")

# Quoted claims (text, not numbers we computed), shown beside our measurements.
PAPER = {
    "unetpp_2018": ("Zhou, Siddiquee, Tajbakhsh, Liang. UNet++: A Nested U-Net Architecture for Medical Image "
                    "Segmentation. DLMIA 2018 (arXiv:1807.10165)",
                    "UNet++ with deep supervision achieves an average IoU gain of 3.9 and 3.4 points over U-Net "
                    "and wide U-Net, respectively (nodule, nuclei, liver and polyp segmentation)."),
    "unetpp_2019": ("Zhou, Siddiquee, Tajbakhsh, Liang. UNet++: Redesigning Skip Connections to Exploit Multiscale "
                    "Features in Image Segmentation. IEEE TMI 39(6):1856-1867, 2020 (arXiv:1912.05074)",
                    "UNet++ consistently outperforms the baseline models for semantic segmentation across six "
                    "datasets (incl. EM); pruned UNet++ models achieve significant speedup while showing only "
                    "modest performance degradation."),
    "wide_unet_filters": ("Zhou et al. 2018, Table 1", "U-Net 32-64-128-256-512 filters; wide U-Net 35-70-140-280-560 "
                          "so that its parameter count is close to UNet++'s."),
}

PROFILES = {
    "smoke": dict(DATA_2D="phantom2d", EM_DIR="", SIZE=28, COUNTS_2D=[64, 24, 32], COUNTS_3D=[16, 6, 8],
                  EM_SPLIT=[20, 4, 6], CROP=0, SAMPLES_PER_EPOCH=32, WIDTH=8, DEPTH=3, WIDTH_3D=4, DEPTH_3D=2,
                  EPOCHS=4, EPOCHS_3D=3, BATCH_SIZE=8, LR=5e-3, AUGMENT="none", SEEDS=[0], N_LABELLED=[1, 3, 0],
                  EPOCHS_LABEL=3, PRETRAIN_EPOCHS=2, DEVICE="auto"),
    "student": dict(DATA_2D="em", EM_DIR="", SIZE=28, COUNTS_2D=[600, 150, 300], COUNTS_3D=[64, 16, 32],
                    EM_SPLIT=[20, 4, 6], CROP=64, SAMPLES_PER_EPOCH=128, WIDTH=8, DEPTH=4, WIDTH_3D=8, DEPTH_3D=2,
                    EPOCHS=10, EPOCHS_3D=6, BATCH_SIZE=8, LR=2e-3, AUGMENT="none", SEEDS=[0, 1],
                    N_LABELLED=[1, 3, 0], EPOCHS_LABEL=10, PRETRAIN_EPOCHS=10, DEVICE="auto"),
    "full": dict(DATA_2D="em", EM_DIR="", SIZE=64, COUNTS_2D=[1200, 300, 600], COUNTS_3D=[400, 100, 200],
                 EM_SPLIT=[20, 4, 6], CROP=256, SAMPLES_PER_EPOCH=800, WIDTH=32, DEPTH=4, WIDTH_3D=16, DEPTH_3D=3,
                 EPOCHS=60, EPOCHS_3D=40, BATCH_SIZE=8, LR=1e-3, AUGMENT="elastic", SEEDS=[0, 1, 2],
                 N_LABELLED=[1, 3, 0], EPOCHS_LABEL=40, PRETRAIN_EPOCHS=40, DEVICE="auto"),
}


# ----------------------------------------------------------------------------- models
def _unet_params(in_channels, num_classes, dims, width, depth) -> int:
    with torch.device("meta"):
        return models.count_parameters(UNet(in_channels, num_classes, dims, width, depth))


def _unetpp_params(in_channels, num_classes, dims, width, depth, deep_supervision=False) -> int:
    with torch.device("meta"):
        return models.count_parameters(UNetPlusPlus(in_channels, num_classes, dims, width, depth, deep_supervision))


def wide_width(width: int, depth: int, in_channels: int = 1, num_classes: int = 2, dims: int = 2) -> int:
    """The U-Net width whose parameter count is closest to UNet++ (no deep supervision) at ``width``."""
    target = _unetpp_params(in_channels, num_classes, dims, width, depth)
    best, best_err = width, math.inf
    for w in range(width, 2 * width + 2):
        err = abs(_unet_params(in_channels, num_classes, dims, w, depth) - target)
        if err < best_err:
            best, best_err = w, err
        elif _unet_params(in_channels, num_classes, dims, w, depth) > target:
            break
    return best


@models.register("unet")
def _build_unet(in_channels, num_classes, dims, size, width: int = 32, depth: int = 4):
    return UNet(in_channels, num_classes, dims, width, depth)


@models.register("wide_unet")
def _build_wide_unet(in_channels, num_classes, dims, size, width: int = 32, depth: int = 4):
    """U-Net made wider (``wide_width``) to match UNet++'s parameter count at ``width``."""
    m = UNet(in_channels, num_classes, dims, wide_width(width, depth, in_channels, num_classes, dims), depth)
    m.matched_width = width
    return m


@models.register("unetpp")
def _build_unetpp(in_channels, num_classes, dims, size, width: int = 32, depth: int = 4,
                  deep_supervision: bool = False, mode: str = "accurate", prune_level: int | None = None):
    return UNetPlusPlus(in_channels, num_classes, dims, width, depth, deep_supervision, mode, prune_level)


def create(name: str, in_channels: int = 1, num_classes: int = 2, dims: int = 2, **kw) -> nn.Module:
    """A segmentation model by name (``unet``, ``wide_unet``, ``unetpp``); errors list valid names."""
    if str(name).lower() not in SEG_MODELS:
        raise ValueError(f"unknown segmentation model {name!r}; valid: {', '.join(SEG_MODELS)}")
    return models.create(name, in_channels, num_classes, dims=dims, **kw)


# ----------------------------------------------------------------------------- loss and metrics
def _target(masks: torch.Tensor) -> torch.Tensor:
    """(N,1,...) masks (uint8, or float after interpolation) → (N,...) int64 class indices."""
    t = masks[:, 0] if masks.ndim >= 4 and masks.shape[1] == 1 else masks
    return (t.float().round() if t.is_floating_point() else t).long()


class DiceCELoss:
    """``ce_weight · CE + dice_weight · (1 − soft Dice of the foreground classes)``, batch-pooled.

    The UNet++ paper's loss is BCE + Dice per head; with deep supervision (a list of head logits)
    the loss is the mean over heads. ``target = "mask"`` makes :func:`mednb.engine.fit` pass masks.
    """
    target = "mask"

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1e-5):
        self.ce_weight, self.dice_weight, self.smooth = ce_weight, dice_weight, smooth

    def one(self, logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        ce = F.cross_entropy(logits, t)
        p = logits.softmax(1)[:, 1:]
        oh = F.one_hot(t, logits.shape[1]).movedim(-1, 1)[:, 1:].float()
        dims = (0,) + tuple(range(2, p.ndim))
        dice = (2 * (p * oh).sum(dims) + self.smooth) / (p.sum(dims) + oh.sum(dims) + self.smooth)
        return self.ce_weight * ce + self.dice_weight * (1 - dice.mean())

    def __call__(self, out, masks):
        t = _target(masks)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return sum(self.one(o, t) for o in outs) / len(outs)


def dice_iou(pred, truth, empty: float = 1.0) -> dict[str, np.ndarray | float]:
    """Dice and IoU of binary masks (N, ...): per image and per dataset (pixels pooled).

    An image with empty truth and empty prediction scores ``empty`` (1.0) per image.
    Returns ``{"dice_image", "iou_image"}`` (arrays (N,)) and ``{"dice", "iou"}`` (pooled floats).
    """
    p = torch.as_tensor(np.asarray(pred) if not isinstance(pred, torch.Tensor) else pred).bool()
    t = torch.as_tensor(np.asarray(truth) if not isinstance(truth, torch.Tensor) else truth).bool()
    if p.shape != t.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and truth {tuple(t.shape)} differ in shape")
    p, t = p.reshape(len(p), -1), t.reshape(len(t), -1)
    tp = (p & t).sum(1).double()
    fp = (p & ~t).sum(1).double()
    fn = (~p & t).sum(1).double()
    denom_d, denom_i = 2 * tp + fp + fn, tp + fp + fn
    dice_img = torch.where(denom_d > 0, 2 * tp / denom_d.clamp_min(1), torch.full_like(tp, empty))
    iou_img = torch.where(denom_i > 0, tp / denom_i.clamp_min(1), torch.full_like(tp, empty))
    TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
    dice = float(2 * TP / (2 * TP + FP + FN)) if (2 * TP + FP + FN) > 0 else empty
    iou = float(TP / (TP + FP + FN)) if (TP + FP + FN) > 0 else empty
    return {"dice_image": dice_img.numpy(), "iou_image": iou_img.numpy(), "dice": dice, "iou": iou}


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device="auto", batch_size: int = 16,
            return_probs: bool = False) -> torch.Tensor:
    """Predicted class map (N,1,...) uint8 for uint8 images (N,C,...); or probabilities (N,K,...)."""
    device = get_device(device)
    model.eval().to(device)
    out = []
    for i in range(0, len(x), batch_size):
        logits = model(engine.normalize(x[i:i + batch_size].to(device)))
        pr = logits.float().softmax(1)
        out.append((pr if return_probs else pr.argmax(1, keepdim=True).to(torch.uint8)).cpu())
    return torch.cat(out)


def evaluate(model: nn.Module, split: Split, device="auto", batch_size: int = 16) -> dict:
    """``{"dice", "iou"}`` (pooled) and per-image arrays ``dice_image``/``iou_image`` on a split."""
    pred = predict(model, split.x, device, batch_size)
    return dice_iou(pred == 1, split.masks == 1)


def eval_fn(device="auto", batch_size: int = 16):
    """An ``engine.fit`` eval hook: ``{"val_dice", "val_iou", "val_loss" = 1 − val_dice}``."""
    def fn(model, split):
        r = evaluate(model, split, device, batch_size)
        return {"val_dice": r["dice"], "val_iou": r["iou"], "val_loss": 1.0 - r["dice"]}
    return fn


def inference_ms(model: nn.Module, x: torch.Tensor, device="auto", repeats: int = 3, batch_size: int = 16) -> float:
    """Median wall time per image in ms for predicting ``x`` (uint8), after one warm-up pass."""
    device = get_device(device)
    model.eval().to(device)
    xb = engine.normalize(x[:batch_size].to(device))
    times = []
    with torch.inference_mode():
        model(xb)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(xb)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times)) / len(xb)


# ----------------------------------------------------------------------------- data
def _seg_splits(name, train, val, test, dims, size, labels, licence, description, path=None, meta=None) -> Splits:
    return Splits(name, size, "binary-class", labels, int(train.x.shape[1]), dims, train, val, test,
                  licence=licence, description=description, path=path, meta=meta or {})


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        a = np.asarray(im.convert("L"))
    return a


def _missing_folder(root: Path, what: str) -> str:
    return (f"{what}\nThe ISBI 2012 EM membrane set is not shipped with mednb (its licence allows "
            f"non-commercial use only). To get it:\n"
            f"  1. Download the training stack (30 slices of 512×512 + labels) from the ISBI 2012 challenge site\n"
            f"     ({EM_URL}), or take the PNG layout of {EM_REPO}.\n"
            f"  2. Put the slices as PNG files in  <folder>/train/image/  and the labels, with the SAME file\n"
            f"     names, in  <folder>/train/label/  (labels: 255 = cell interior, 0 = membrane).\n"
            f"     Optional unlabelled slices go in  <folder>/test/image/.\n"
            f"  3. Pass that folder as EM_DIR in the notebook's parameters cell (or put it at\n"
            f"     {data_root() / EM_NAME}, the default when EM_DIR is empty).\n"
            f"  4. Re-run the notebook; by using the data you accept its terms ({EM_LICENCE})")


def _list_images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXT and p.is_file()}


def load_folder(root, image_dir: str = "image", label_dir: str = "label", *, split=(20, 4, 6), seed: int = 0,
                foreground: str = "low", unlabeled_dir: str | None = "test/image", name: str = "folder",
                labels=("background", "foreground"), licence: str = "", limit: int | None = None) -> Splits:
    """An image/mask-folder segmentation dataset: files matched by name in ``image_dir`` and ``label_dir``.

    root: the folder; ``image_dir``/``label_dir`` are looked up in ``root`` and, if absent, in
    ``root/train`` (the layout of the public unet repo). split: (n_train, n_val, n_test) slices,
    or fractions summing to 1; assignment is a seeded permutation. foreground: ``"low"`` (label
    pixels < 128 are class 1 — EM membranes, drawn black) or ``"high"`` (≥ 128). Unlabelled images
    (``unlabeled_dir``, relative to ``root``) go to ``splits.meta["unlabeled"]`` (uint8 (M,1,H,W)).
    Images are uint8 (N,1,H,W) of the files' own size (all must agree).
    """
    if foreground not in ("low", "high"):
        raise ValueError(f"unknown foreground {foreground!r}; valid: low, high")
    root = Path(root).expanduser()
    base = root
    if not (root / image_dir).is_dir() and (root / "train" / image_dir).is_dir():
        base = root / "train"
    img_dir, lab_dir = base / image_dir, base / label_dir
    for d in (root, img_dir, lab_dir):
        if not d.is_dir():
            raise DataNotFound(_missing_folder(root, f"folder not found: {d}"))
    imgs, labs = _list_images(img_dir), _list_images(lab_dir)
    keys = sorted(set(imgs) & set(labs), key=lambda k: (len(k), k))
    if limit:
        keys = keys[:limit]
    if not keys:
        raise DataNotFound(_missing_folder(root, f"no image/label pairs with matching names in {img_dir} and {lab_dir}"))
    x = np.stack([_read_image(imgs[k]) for k in keys])[:, None]
    m_raw = np.stack([_read_image(labs[k]) for k in keys])[:, None]
    m = (m_raw < 128) if foreground == "low" else (m_raw >= 128)
    n = len(keys)
    if all(isinstance(s, float) for s in split) and abs(sum(split) - 1) < 1e-6:
        n_tr, n_va = int(round(split[0] * n)), int(round(split[1] * n))
        counts = (n_tr, n_va, n - n_tr - n_va)
    else:
        counts = tuple(int(s) for s in split)
    if sum(counts) > n or min(counts) < 0 or counts[0] < 1:
        raise ValueError(f"split {tuple(split)} needs {sum(counts)} labelled images; {n} found in {img_dir}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).numpy()
    xt, mt = torch.from_numpy(x), torch.from_numpy(m.astype(np.uint8))
    parts, start = [], 0
    for c in counts:
        idx = torch.from_numpy(np.sort(perm[start:start + c]))
        parts.append(Split(xt[idx], torch.zeros(len(idx), 1, dtype=torch.long), mt[idx]))
        start += c
    meta = {"files": {s: [keys[i] for i in np.sort(perm[a:a + c])] for s, a, c in
                      zip(("train", "val", "test"), np.cumsum((0,) + counts[:-1]), counts)},
            "foreground": foreground, "seed": seed}
    if unlabeled_dir:
        ud = root / unlabeled_dir
        if ud.is_dir():
            files = _list_images(ud)
            if files:
                meta["unlabeled"] = torch.from_numpy(np.stack([_read_image(p) for p in files.values()])[:, None])
    return _seg_splits(name, *parts, dims=2, size=int(x.shape[-1]), labels=dict(enumerate(labels)),
                       licence=licence, description=f"image/mask folder {root}", path=root, meta=meta)


def em_dir(path: str | Path | None = None) -> Path:
    """The EM folder: ``path`` if given (non-empty), else ``data_root()/isbi2012_em_membrane``."""
    return Path(path).expanduser() if path else data_root() / EM_NAME


def load_em(path: str | Path | None = None, split=(20, 4, 6), seed: int = 0, **kw) -> Splits:
    """ISBI 2012 EM membrane segmentation (30 labelled 512×512 slices). Foreground = membrane.

    The UNet++ papers' EM task segments neuronal membranes (Ciresan et al. 2012 classify pixels as
    membrane / non-membrane); the labels draw membranes black (0), so ``foreground="low"``.
    """
    return load_folder(em_dir(path), split=split, seed=seed, foreground="low", name="em",
                       labels=("cell interior", "membrane"), licence=EM_LICENCE, **kw)


def load(dataset: str, size: int = 28, *, em_path=None, counts=None, split=(20, 4, 6), seed: int = 0,
         cache: bool = True) -> Splits:
    """Segmentation data by name: ``phantom2d``/``phantom3d`` (lesion masks) or ``em`` (membranes)."""
    key = str(dataset).lower()
    if key == "em":
        return load_em(em_path, split=split, seed=seed)
    if key in ("phantom2d", "phantom3d"):
        from . import data
        s = data.load(key, size, counts=counts, seed=seed, cache=cache)
        s.labels = {0: "background", 1: "lesion"}
        return s
    raise ValueError(f"unknown segmentation dataset {dataset!r}; valid: phantom2d, phantom3d, em")


# ----------------------------------------------------------------------------- training
def random_crop(x: torch.Tensor, masks: torch.Tensor | None, size: int, generator=None):
    """Per-sample random crops of side ``size`` (all spatial dims) of x and masks alike."""
    spatial = x.shape[2:]
    if size <= 0 or all(s <= size for s in spatial):
        return x, masks
    starts = [torch.randint(0, max(s - size, 0) + 1, (len(x),), generator=generator) for s in spatial]
    xs, ms = [], []
    for n in range(len(x)):
        sl = (slice(None),) + tuple(slice(int(st[n]), int(st[n]) + min(size, s)) for st, s in zip(starts, spatial))
        xs.append(x[n][sl])
        if masks is not None:
            ms.append(masks[n][sl])
    return torch.stack(xs), (torch.stack(ms) if masks is not None else None)


def center_crop(split: Split, size: int) -> Split:
    """The central ``size``-sided crop (every spatial dim) of a split's images and masks."""
    sl = (slice(None), slice(None)) + tuple(slice(max(0, (s - size) // 2), max(0, (s - size) // 2) + size)
                                            for s in split.x.shape[2:])
    return Split(split.x[sl], split.y, None if split.masks is None else split.masks[sl])


def train_policy(crop: int = 0, augment: str | None = None, strength: float = 1.0, dims: int = 2):
    """``policy(x, masks, generator) -> (x, masks)``: random crop, then :mod:`mednb.augment` ``augment``."""
    aug = None
    if augment not in (None, "", "none"):
        from . import augment as A  # the joint image/mask augmentations of notebook 02
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


def fit(model: nn.Module, splits: Splits, *, epochs: int = 10, lr: float = 1e-3, batch_size: int = 8,
        crop: int = 0, augment: str | None = None, strength: float = 1.0, train_idx=None,
        samples_per_epoch: int | None = None, val_crop: int = 0, loss: DiceCELoss | None = None, seed: int = 0,
        device="auto", progress: bool = True, desc: str | None = None, **fit_kw) -> engine.FitResult:
    """Train a segmenter with :func:`mednb.engine.fit` (Dice+CE, cosine LR, best val Dice kept).

    val_crop: select on central crops of this side of the validation images (cheaper per epoch).
    ``result.test`` gets ``{"dice", "iou", "dice_image", "iou_image"}`` on the full ``splits.test``.
    """
    idx = torch.arange(len(splits.train)) if train_idx is None else torch.as_tensor(train_idx)
    if val_crop:
        splits = copy.copy(splits)
        splits.val = center_crop(splits.val, val_crop)
    res = engine.fit(model, splits, epochs=epochs, lr=lr, batch_size=batch_size, schedule="cosine",
                     train_idx=repeat_index(idx, samples_per_epoch), loss_fn=loss or DiceCELoss(),
                     eval_fn=eval_fn(device), select="val_loss",
                     augment=train_policy(crop, augment, strength, splits.dims), seed=seed, device=device,
                     progress=progress, desc=desc, **fit_kw)
    res.n_train = len(idx)
    res.test = evaluate(res.model, splits.test, device)
    return res


def train(splits: Splits, model: str = "unet", *, seed: int = 0, model_kw: dict | None = None,
          device="auto", init: nn.Module | None = None, **fit_kw) -> engine.FitResult:
    """Seed, build ``model`` (by name, 2 classes) and :func:`fit` it. ``init``: copy its encoder first."""
    seed_everything(seed)
    net = create(model, splits.n_channels, 2, dims=splits.dims, **(model_kw or {}))
    if init is not None:
        net.encoder.load_state_dict(init.encoder.state_dict())
    res = fit(net, splits, seed=seed, device=device, **fit_kw)
    res.params = models.count_parameters(res.model)
    return res


# ----------------------------------------------------------------------------- restoration pre-training
def corrupt(x: torch.Tensor, generator=None):
    """(x̃, target) for restoration: Models Genesis transforms (:mod:`mednb.ssl.genesis`) when that
    module is present, else a denoising autoencoder's corruption (Gaussian noise σ 0.1–0.3 and
    random pixel dropout p 0.1–0.3)."""
    try:
        from .ssl import genesis
    except ImportError:
        genesis = None
    if genesis is not None:
        return genesis.transform(x, generator)
    n = len(x)
    shape = (n,) + (1,) * (x.ndim - 1)
    sigma = 0.1 + 0.2 * torch.rand(shape, generator=generator).to(x.device)
    p = 0.1 + 0.2 * torch.rand(shape, generator=generator).to(x.device)
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    keep = (torch.rand(x.shape, generator=generator).to(x.device) >= p).float()
    return ((x + sigma * noise) * keep).clamp(0, 1), x


def restoration_method() -> str:
    try:
        from .ssl import genesis  # noqa: F401
        return "genesis"
    except ImportError:
        return "denoising"


class _RestoreLoss:
    target = "mask"  # engine passes the policy's second output: the clean target

    def __call__(self, out, target):
        outs = out if isinstance(out, (list, tuple)) else [out]
        return sum(F.mse_loss(o.float(), engine.normalize(target.float())) for o in outs) / len(outs)


def pretrain_restoration(splits: Splits, model: str = "unet", x_unlabeled: torch.Tensor | None = None, *,
                         model_kw: dict | None = None, epochs: int = 10, lr: float = 1e-3, batch_size: int = 8,
                         crop: int = 0, samples_per_epoch: int | None = None, seed: int = 0, device="auto",
                         cache: bool = True, progress: bool = True) -> nn.Module:
    """Pre-train a segmentation network (1 output channel) to restore corrupted unlabelled images.

    Models Genesis (Zhou et al., MICCAI 2019) when :mod:`mednb.ssl.genesis` exists, else a denoising
    autoencoder. Runs through :func:`mednb.engine.fit`: the augmentation policy crops, corrupts and
    hands the clean crop to the loss as its target. Returns the network; its ``encoder`` initialises
    a segmenter (``train(..., init=net)``). Cached in ``data_root()/checkpoints/seg/`` under a key of
    (method, dataset, model and its options, data shape and a hash of a sample of it, epochs, lr, batch
    size, crop, samples per epoch, seed); ``cache=False`` always retrains.
    """
    x = splits.train.x if x_unlabeled is None else x_unlabeled
    method = restoration_method()
    kw = dict(model_kw or {})
    import hashlib
    data_id = hashlib.sha1(str(tuple(x.shape)).encode() + x[::max(1, len(x) // 64)].contiguous().numpy().tobytes())
    key = (f"{method}_{splits.name}_{model}_{'-'.join(f'{k}{v}' for k, v in sorted(kw.items()))}"
           f"_n{len(x)}_s{tuple(x.shape[2:])[0]}_e{epochs}_lr{lr:g}_b{batch_size}_c{crop}_spe{samples_per_epoch}"
           f"_seed{seed}_{data_id.hexdigest()[:8]}")
    path = data_root() / "checkpoints" / "seg" / f"{key}.pt"
    seed_everything(seed)
    net = create(model, x.shape[1], 1, dims=x.ndim - 2, **kw)
    if cache and path.exists():
        engine.load_checkpoint(net, path)
        return net.eval()
    n_val = max(1, len(x) // 10)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    y0 = torch.zeros(len(x), 1, dtype=torch.long)
    un = Splits(f"{splits.name}-unlabelled", splits.size, "binary-class", {0: "image"}, x.shape[1], x.ndim - 2,
                Split(x[perm[n_val:]], y0[n_val:], None), Split(x[perm[:n_val]], y0[:n_val], None),
                Split(x[:0], y0[:0], None))

    def policy(xb, _masks=None, generator=None):
        xb, _ = random_crop(xb, None, crop, generator)
        return corrupt(xb, generator)

    engine.fit(net, un, epochs=epochs, lr=lr, batch_size=batch_size, schedule="cosine", select="last",
               train_idx=repeat_index(torch.arange(len(un.train)), samples_per_epoch), loss_fn=_RestoreLoss(),
               eval_fn=lambda m, s: {}, augment=policy, seed=seed, device=device, progress=progress,
               desc=f"pretrain {method}")
    if cache:
        engine.save_checkpoint(net, path, {"method": method})
    return net.eval()


def labelled_subset(split: Split, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` seeded training indices among images with foreground (0 or ≥ len → all)."""
    has_fg = torch.nonzero(split.masks.flatten(1).amax(1) > 0).flatten()
    if n <= 0 or n >= len(has_fg):
        return torch.arange(len(split)) if n <= 0 else has_fg
    perm = torch.randperm(len(has_fg), generator=torch.Generator().manual_seed(int(seed)))
    return torch.sort(has_fg[perm[:n]]).values


# ----------------------------------------------------------------------------- figures
def node_grid(depth: int = 4, deep_supervision: bool = True, ax=None, prune_level: int | None = None):
    """Draw the UNet++ node grid X^{i,j}: encoder, nested skip nodes, dense skips, up-sampling, heads."""
    import matplotlib.pyplot as plt
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(1.5 * depth + 3, 1.1 * depth + 1.6))
    L = depth
    keep = (lambda i, j: i + j <= prune_level) if prune_level else (lambda i, j: True)
    pos = {(i, j): (j + 0.5 * i, -i) for j in range(L + 1) for i in range(L + 1 - j)}
    for (i, j), (px, py) in pos.items():
        if j >= 1:
            for jj in range(j):  # dense skips on the same level
                if keep(i, j):
                    x0, y0 = pos[(i, jj)]
                    ax.annotate("", (px - 0.22, py), (x0 + 0.22, y0), arrowprops=dict(arrowstyle="->", color="tab:green",
                                lw=0.8, connectionstyle=f"arc3,rad={-0.25 if j - jj > 1 else 0}"))
            x1, y1 = pos[(i + 1, j - 1)]
            if keep(i, j):
                ax.annotate("", (px - 0.1, py - 0.2), (x1 + 0.1, y1 + 0.2),
                            arrowprops=dict(arrowstyle="->", color="tab:blue", lw=0.9))
        if j == 0 and i >= 1 and keep(i, j):
            x0, y0 = pos[(i - 1, 0)]
            ax.annotate("", (px - 0.05, py + 0.2), (x0 + 0.05, y0 - 0.2),
                        arrowprops=dict(arrowstyle="->", color="tab:red", lw=0.9))
        color = "#f4a582" if j == 0 else ("#92c5de" if i > 0 else "#b8e186")
        ax.add_patch(plt.Circle((px, py), 0.22, color=color if keep(i, j) else "#eeeeee", ec="k", lw=0.6))
        ax.text(px, py, f"X$^{{{i},{j}}}$", ha="center", va="center", fontsize=8,
                color="k" if keep(i, j) else "#bbbbbb")
    for j in range(1, L + 1):
        if (deep_supervision or j == L) and keep(0, j):
            px, py = pos[(0, j)]
            ax.annotate(f"head {j}", (px, py + 0.25), (px, py + 0.75), ha="center", fontsize=7,
                        arrowprops=dict(arrowstyle="<-", color="k", lw=0.8))
    from matplotlib.lines import Line2D
    ax.legend(handles=[Line2D([], [], color="tab:red", label="down-sampling (encoder)"),
                       Line2D([], [], color="tab:blue", label="up-sampling"),
                       Line2D([], [], color="tab:green", label="dense skip connection")],
              loc="lower right", fontsize=7, frameon=False)
    ax.set_xlim(-0.6, L + 0.8)
    ax.set_ylim(-L - 0.6, 1.1)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"UNet++ L{L}" + (f" pruned to L{prune_level}" if prune_level else ""), fontsize=9)
    return fig


def overlays(x, truth, preds: dict, n: int = 3, title: str | None = None):
    """Rows of images with truth (white) and each model's prediction (red) contours; 3D → middle slice."""
    import matplotlib.pyplot as plt
    from .plot import to_display
    cols = len(preds)
    fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.2 * n), squeeze=False)
    for r in range(n):
        for c, (name, p) in enumerate(preds.items()):
            ax = axes[r, c]
            ax.imshow(to_display(x[r]), cmap="gray")
            t, q = to_display(truth[r]).astype(float), to_display(p[r]).astype(float)
            if t.any():
                ax.contour(t, levels=[0.5], colors="w", linewidths=0.7)
            if q.any() and p is not truth:
                ax.contour(q, levels=[0.5], colors="r", linewidths=0.7)
            ax.axis("off")
            if r == 0:
                ax.set_title(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- experiments of notebook 05
CONFIGS = (("U-Net", "unet", {}), ("wide U-Net", "wide_unet", {}), ("UNet++", "unetpp", {}),
           ("UNet++ DS", "unetpp", {"deep_supervision": True}))


def compare(splits: Splits, seeds=(0,), *, configs=CONFIGS, width: int = 8, depth: int = 3, device="auto",
            progress: bool = True, **fit_kw):
    """Train every (label, model, kw) config for every seed at equal epochs.

    Returns ``(runs, fitted)``: a DataFrame (label, model, deep_supervision, seed, iou, dice,
    iou_image, params, seconds) and ``{(label, seed): FitResult}``.
    """
    import pandas as pd
    from tqdm.auto import tqdm
    rows, fitted = [], {}
    jobs = [(c, s) for s in seeds for c in configs]
    for (label, name, kw), seed in tqdm(jobs, desc=f"{splits.name}: models × seeds", disable=not progress):
        t0 = time.perf_counter()
        r = train(splits, name, seed=seed, model_kw=dict(width=width, depth=depth, **kw), device=device,
                  progress=False, **fit_kw)
        fitted[(label, seed)] = r
        rows.append(dict(label=label, model=name, deep_supervision=bool(kw.get("deep_supervision", False)),
                         seed=seed, iou=r.test["iou"], dice=r.test["dice"],
                         iou_image=float(np.mean(r.test["iou_image"])), params=r.params,
                         seconds=time.perf_counter() - t0))
    return pd.DataFrame(rows), fitted


def table(runs, by=("label",), metrics=("iou", "dice"), digits: int = 3):
    """``mean ± sd (n)`` of each metric per group of a runs DataFrame (plus the parameter count)."""
    from .metrics import fmt
    import pandas as pd
    out = []
    for key, g in runs.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row.update({m: fmt(g[m].tolist(), digits) for m in metrics})
        if "params" in g:
            row["parameters"] = f"{int(g['params'].iloc[0]):,}"
        out.append(row)
    return pd.DataFrame(out)


def pruning_table(model: UNetPlusPlus, split: Split, device="auto", repeats: int = 3, batch_size: int = 8):
    """UNet++ L^1..L^depth from one deeply supervised model: test IoU/Dice, parameters, inference ms/image."""
    import pandas as pd
    rows = []
    for k in range(1, model.depth + 1):
        p = pruned(model, k)
        r = evaluate(p, split, device)
        rows.append(dict(prune_level=k, iou=r["iou"], dice=r["dice"], params=models.count_parameters(p),
                         ms_per_image=inference_ms(p, split.x, device, repeats, batch_size)))
    return pd.DataFrame(rows)


def receptive_field(dilations=(1, 1, 1), size: int = 41) -> np.ndarray:
    """Effective receptive field of a stack of 3×3 convolutions (all-ones weights) with these dilations:
    the gradient magnitude of the centre output pixel w.r.t. the input, (size, size), max-normalised."""
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    y = x
    for d in dilations:
        w = torch.ones(1, 1, 3, 3)
        y = F.conv2d(y, w, padding=d, dilation=d)
    y[0, 0, size // 2, size // 2].backward()
    g = x.grad[0, 0].abs().numpy()
    return g / g.max()


def label_efficiency(splits: Splits, n_labelled=(1, 3, 0), seeds=(0,), *, model: str = "unet", width: int = 8,
                     depth: int = 3, pretrained: nn.Module | None = None, device="auto", progress: bool = True,
                     **fit_kw):
    """Train ``model`` with n labelled training images (0 = all), from scratch and (if given) from the
    ``pretrained`` encoder. Returns a DataFrame (n_labelled, init, seed, iou, dice)."""
    import pandas as pd
    from tqdm.auto import tqdm
    inits = [("scratch", None)] + ([("pretrained", pretrained)] if pretrained is not None else [])
    jobs = [(n, i, s) for s in seeds for n in n_labelled for i in inits]
    rows = []
    for n, (init, net), seed in tqdm(jobs, desc="label efficiency", disable=not progress):
        idx = labelled_subset(splits.train, n, seed)
        r = train(splits, model, seed=seed, model_kw=dict(width=width, depth=depth), init=net, train_idx=idx,
                  device=device, progress=False, **fit_kw)
        rows.append(dict(n_labelled=len(idx) if n > 0 else len(splits.train), n_requested=n, init=init, seed=seed,
                         iou=r.test["iou"], dice=r.test["dice"]))
    return pd.DataFrame(rows)


GOAL_IOU_GAIN = 1.0  # issue 7: UNet++ DS should beat U-Net on EM by at least this many IoU points


def iou_gain(runs, a: str = "UNet++ DS", b: str = "U-Net") -> np.ndarray:
    """Per-seed IoU difference ``a − b`` in IoU points (×100), paired by seed; empty if a label is absent."""
    m = runs.pivot_table(index="seed", columns="label", values="iou")
    if a not in m or b not in m:
        return np.zeros(0)
    return (100 * (m[a] - m[b])).dropna().to_numpy()


def goal_verdict(runs, goal: float = GOAL_IOU_GAIN) -> str:
    """Plain statement of UNet++ DS − U-Net (IoU points, mean ± sd over seeds) against the ``goal``."""
    from .metrics import fmt
    g = iou_gain(runs)
    if not len(g):
        return "–"
    data = str(runs["dataset"].iloc[0]) if "dataset" in runs else "this data"
    met = "met" if g.mean() >= goal else "NOT met"
    text = f"UNet++ DS − U-Net on {data}: {fmt(g.tolist(), 1)} IoU points → goal ≥ +{goal:g} {met}"
    if len(g) < 2:
        text += " (one seed: no spread to judge)"
    elif g.mean() - g.std(ddof=1) < goal <= g.mean():
        text += " (but within one sd of the goal)"
    if data != "em":
        text += "; the goal is stated for EM, this run used " + data
    return text


def claims(runs2d, prune=None, label_eff=None) -> "pd.DataFrame":
    """The papers' claims (quoted, cited) beside our measured numbers (computed from the runs)."""
    import pandas as pd
    from .metrics import fmt

    def delta(a, b):
        g = iou_gain(runs2d, a, b)
        return fmt(g.tolist(), 1) + " IoU points" if len(g) else "–"

    short = {"unetpp_2018": "Zhou et al., DLMIA 2018", "unetpp_2019": "Zhou et al., IEEE TMI 2020",
             "wide_unet_filters": "Zhou et al. 2018, Table 1"}
    rows = [dict(claim=PAPER["unetpp_2018"][1], source=short["unetpp_2018"],
                 ours=f"UNet++ DS − U-Net: {delta('UNet++ DS', 'U-Net')}; UNet++ DS − wide U-Net: "
                      f"{delta('UNet++ DS', 'wide U-Net')} ({runs2d.get('dataset', pd.Series(['2D'])).iloc[0]})"),
            dict(claim=f"mednb's goal: UNet++ with deep supervision beats U-Net on EM by ≥ {GOAL_IOU_GAIN:g} IoU "
                       f"point at equal epochs (the paper reports +3.9 on average over its tasks).",
                 source="mednb issue 7", ours=goal_verdict(runs2d)),
            dict(claim=PAPER["wide_unet_filters"][1], source=short["wide_unet_filters"],
                 ours="parameters: " + ", ".join(f"{l} {int(g['params'].iloc[0]):,}"
                                                 for l, g in runs2d.groupby("label", sort=False)))]
    if prune is not None and len(prune) > 1:
        full, small = prune.iloc[-1], prune.iloc[0]
        rows.append(dict(claim=PAPER["unetpp_2019"][1], source=short["unetpp_2019"],
                         ours=f"L1 vs L{int(full.prune_level)}: {full.ms_per_image / max(small.ms_per_image, 1e-9):.1f}× "
                              f"faster, {100 * small.params / full.params:.1f}% of the parameters, IoU "
                              f"{small.iou:.3f} vs {full.iou:.3f}"))
    if label_eff is not None and len(label_eff):
        few = label_eff[label_eff.n_requested == min(n for n in label_eff.n_requested if n > 0)]
        m = few.groupby("init")["iou"].mean()
        if "pretrained" in m:
            rows.append(dict(claim="Models Genesis: restoration pre-training helps when labels are scarce "
                                   "(Zhou et al., MICCAI 2019 / MedIA 2021).",
                             source="Zhou et al., MedIA 2021",
                             ours=f"{int(few.n_labelled.iloc[0])} labelled image(s): IoU pretrained "
                                  f"{m['pretrained']:.3f} vs scratch {m['scratch']:.3f}"))
    return pd.DataFrame(rows)


def param_count(name: str, in_channels: int = 1, num_classes: int = 2, dims: int = 2, **kw) -> int:
    """Parameters of a segmentation model, counted without allocating weights (meta device)."""
    with torch.device("meta"):
        return models.count_parameters(create(name, in_channels, num_classes, dims=dims, **kw))
