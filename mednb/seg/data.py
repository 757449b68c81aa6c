"""Segmentation data: image/mask folders (the ISBI 2012 EM membrane set), phantoms, labelled subsets, crops.

Every loader returns :class:`mednb.data.Splits` whose splits carry ``masks`` (N,1,...) uint8 class
indices beside uint8 images (N,C,...).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data import DataNotFound, Split, Splits
from ..runtime import check_name, data_root

DATASETS = ("phantom2d", "phantom3d", "em")
FOREGROUNDS = ("low", "high")
EM_NAME = "isbi2012_em_membrane"
EM_URL = "https://imagej.net/events/isbi-2012-segmentation-challenge"
EM_REPO = "https://github.com/zhixuhao/unet (data/membrane/train/{image,label})"
EM_LICENCE = ("ISBI 2012 challenge terms: non-commercial image-segmentation research only; cite "
              "Cardona et al., PLoS Biol 8(10):e1000521, 2010 (and TrakEM2). Not shipped with mednb.")
IMAGE_EXT = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


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


def _split_counts(split, n: int, where: Path) -> tuple[int, int, int]:
    """(n_train, n_val, n_test) from counts, or from fractions summing to 1, checked against ``n`` images."""
    if all(isinstance(s, float) for s in split) and abs(sum(split) - 1) < 1e-6:
        n_tr, n_va = int(round(split[0] * n)), int(round(split[1] * n))
        counts = (n_tr, n_va, n - n_tr - n_va)
    else:
        counts = tuple(int(s) for s in split)
    if sum(counts) > n or min(counts) < 0 or counts[0] < 1:
        raise ValueError(f"split {tuple(split)} needs {sum(counts)} labelled images; {n} found in {where}")
    return counts


def _unlabelled(folder: Path) -> torch.Tensor | None:
    """The images of ``folder`` as uint8 (M,1,H,W), or None when it is absent or empty."""
    files = _list_images(folder) if folder.is_dir() else {}
    if not files:
        return None
    return torch.from_numpy(np.stack([_read_image(p) for p in files.values()])[:, None])


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
    foreground = check_name(foreground, FOREGROUNDS, "foreground")
    root = Path(root).expanduser()
    base = root
    if not (root / image_dir).is_dir() and (root / "train" / image_dir).is_dir():
        base = root / "train"
    img_dir, lab_dir = base / image_dir, base / label_dir
    for d in (root, img_dir, lab_dir):
        if not d.is_dir():
            raise DataNotFound(_missing_folder(root, f"folder not found: {d}"))
    imgs, labs = _list_images(img_dir), _list_images(lab_dir)
    keys = sorted(set(imgs) & set(labs), key=lambda k: (len(k), k))[:limit or None]
    if not keys:
        raise DataNotFound(_missing_folder(root, f"no image/label pairs with matching names in {img_dir} and "
                                                 f"{lab_dir}"))
    x = np.stack([_read_image(imgs[k]) for k in keys])[:, None]
    m_raw = np.stack([_read_image(labs[k]) for k in keys])[:, None]
    m = (m_raw < 128) if foreground == "low" else (m_raw >= 128)
    counts = _split_counts(split, len(keys), img_dir)
    perm = torch.randperm(len(keys), generator=torch.Generator().manual_seed(int(seed))).numpy()
    xt, mt = torch.from_numpy(x), torch.from_numpy(m.astype(np.uint8))
    parts, files, start = [], {}, 0
    for part, c in zip(("train", "val", "test"), counts):
        idx = np.sort(perm[start:start + c])
        ti = torch.from_numpy(idx)
        parts.append(Split(xt[ti], torch.zeros(len(idx), 1, dtype=torch.long), mt[ti]))
        files[part] = [keys[i] for i in idx]
        start += c
    meta = {"files": files, "foreground": foreground, "seed": seed}
    unlabelled = _unlabelled(root / unlabeled_dir) if unlabeled_dir else None
    if unlabelled is not None:
        meta["unlabeled"] = unlabelled
    return Splits(name, int(x.shape[-1]), "binary-class", dict(enumerate(labels)), 1, 2, *parts,
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
    key = check_name(dataset, DATASETS, "segmentation dataset")
    if key == "em":
        return load_em(em_path, split=split, seed=seed)
    from .. import data
    s = data.load(key, size, counts=counts, seed=seed, cache=cache)
    s.labels = {0: "background", 1: "lesion"}
    return s


def labelled_subset(split: Split, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` seeded training indices among images with foreground (0 or ≥ len → all)."""
    has_fg = torch.nonzero(split.masks.flatten(1).amax(1) > 0).flatten()
    if n <= 0 or n >= len(has_fg):
        return torch.arange(len(split)) if n <= 0 else has_fg
    perm = torch.randperm(len(has_fg), generator=torch.Generator().manual_seed(int(seed)))
    return torch.sort(has_fg[perm[:n]]).values


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
