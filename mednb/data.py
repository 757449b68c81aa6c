"""Data layer: every MedMNIST set (via medmnist's ``INFO``) and the built-in phantoms.

``load(name, size)`` returns :class:`Splits` with uint8 tensors (N,C,H,W) or (N,C,D,H,W),
labels (N,L) int64, the task type and the class names. Files live in one data root
(:func:`data_root`); every MedMNIST file is checked against its MD5 from ``INFO``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import phantoms
from .cache import phantom_path
from .runtime import cache_dir, cache_root, data_root, repo_root  # noqa: F401  (re-exported)

PHANTOMS = {"phantom2d": 2, "phantom3d": 3}
SIZES_2D = (28, 64, 128, 224)
SIZES_3D = (28, 64)
SPLITS = ("train", "val", "test")
LICENCE_URL = "https://medmnist.com"


class DataError(RuntimeError):
    """A data problem with a human-readable message (no traceback needed to act on it)."""


class DataNotFound(DataError):
    pass


class DataCorrupt(DataError):
    pass


def _info():
    from medmnist import INFO  # imports pandas/sklearn (~2 s): only when needed
    return INFO


def names() -> list[str]:
    """All dataset names: the 18 MedMNIST sets and the phantoms."""
    return list(_info()) + list(PHANTOMS)


def check_name(name: str) -> str:
    key = str(name).lower()
    if key in PHANTOMS:
        return key
    info = _info()
    if key not in info:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(list(info) + list(PHANTOMS))}")
    return key


def dims_of(name: str) -> int:
    key = check_name(name)
    return PHANTOMS.get(key) or (3 if key.endswith("3d") else 2)


def valid_sizes(name: str) -> tuple[int, ...]:
    key = check_name(name)
    if key in PHANTOMS:
        return phantoms.SIZES
    return SIZES_3D if dims_of(key) == 3 else SIZES_2D


def _check_size(name: str, size: int) -> int:
    sizes = valid_sizes(name)
    if int(size) not in sizes:
        raise ValueError(f"size {size!r} is not available for {name}; valid sizes: {', '.join(map(str, sizes))}")
    return int(size)


def filename(name: str, size: int = 28) -> str:
    key = check_name(name)
    _check_size(key, size)
    return f"{key}.npz" if size == 28 else f"{key}_{size}.npz"


def url_md5(name: str, size: int = 28) -> tuple[str, str]:
    key = check_name(name)
    if key in PHANTOMS:
        raise ValueError(f"{key} is generated locally; it has no URL")
    _check_size(key, size)
    info = _info()[key]
    suffix = "" if size == 28 else f"_{size}"
    return info[f"url{suffix}"], info[f"MD5{suffix}"]


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _missing_message(name: str, size: int, root: Path, reason: str) -> str:
    url, md5 = url_md5(name, size)
    fn = filename(name, size)
    return (
        f"{fn} is not in the data root {root} and could not be downloaded ({reason}).\n"
        f"To fix it:\n"
        f"  1. On a machine with internet access, download {url}\n"
        f"     (expected MD5 {md5}).\n"
        f"  2. Put the file at {root / fn}\n"
        f"     (or point MEDNB_DATA at the folder that holds it).\n"
        f"  3. Or, once online, run:  mednb data fetch {name} --size {size}\n"
        f"  4. Check it with:         mednb data verify"
    )


def fetch(name: str, size: int = 28, root: Path | None = None, force: bool = False,
          timeout: float = 60.0) -> Path:
    """Download a MedMNIST file into the data root (atomic) and verify its MD5.

    Returns the path. A present file with the right MD5 is not downloaded again. Raises
    :class:`DataNotFound` with numbered steps when offline, :class:`DataCorrupt` on an MD5 mismatch.
    """
    root = Path(root) if root is not None else data_root()
    url, md5 = url_md5(name, size)
    dest = root / filename(name, size)
    if dest.exists() and not force:
        if md5sum(dest) == md5:
            return dest
        raise DataCorrupt(f"{dest} exists but its MD5 is {md5sum(dest)}, expected {md5}. "
                          f"Delete it and run: mednb data fetch {name} --size {size}")
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, 1 << 20)
    except OSError as e:  # URLError, timeouts, DNS failures are all OSError
        Path(tmp).unlink(missing_ok=True)
        raise DataNotFound(_missing_message(name, size, root, f"{type(e).__name__}: {e}")) from None
    got = md5sum(Path(tmp))
    if got != md5:
        Path(tmp).unlink(missing_ok=True)
        raise DataCorrupt(f"downloaded {url} but its MD5 is {got}, expected {md5}; nothing was saved")
    os.replace(tmp, dest)
    return dest


def verify(root: Path | None = None) -> list[tuple[str, str, str]]:
    """Check every MedMNIST file present in the data root against its MD5.

    Returns ``(filename, status, detail)`` rows with status ``OK`` or ``CORRUPT``.
    """
    root = Path(root) if root is not None else data_root()
    expected = {}
    for key in _info():
        for size in valid_sizes(key):
            expected[filename(key, size)] = url_md5(key, size)[1]
    rows = []
    for path in sorted(root.glob("*.npz")) if root.exists() else []:
        if path.name not in expected:
            continue
        got = md5sum(path)
        ok = got == expected[path.name]
        rows.append((path.name, "OK" if ok else "CORRUPT",
                     f"md5 {got}" + ("" if ok else f", expected {expected[path.name]}")))
    return rows


# ----------------------------------------------------------------------------- splits
@dataclass
class Split:
    """One split: ``x`` uint8 (N,C,H,W) or (N,C,D,H,W), ``y`` int64 (N,L), optional ``masks`` uint8 (N,1,...)."""
    x: torch.Tensor
    y: torch.Tensor
    masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx) -> "Split":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Split(self.x[idx], self.y[idx], None if self.masks is None else self.masks[idx])


@dataclass
class Splits:
    """A dataset in memory. ``dims`` is 2 or 3; ``task`` is medmnist's task string."""
    name: str
    size: int
    task: str
    labels: dict[int, str]
    n_channels: int
    dims: int
    train: Split
    val: Split
    test: Split
    licence: str = ""
    description: str = ""
    path: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def n_outputs(self) -> int:
        """Output units a classifier needs (one per class, one per label for multi-label)."""
        return len(self.labels)

    @property
    def has_masks(self) -> bool:
        return self.train.masks is not None

    def split(self, which: str) -> Split:
        if which not in SPLITS:
            raise ValueError(f"unknown split {which!r}; valid: {', '.join(SPLITS)}")
        return getattr(self, which)

    def class_counts(self, which: str = "train") -> np.ndarray:
        y = self.split(which).y
        if self.task.startswith("multi-label"):
            return y.sum(0).numpy()
        return np.bincount(y[:, 0].numpy(), minlength=self.n_classes)

    def card(self) -> str:
        shape = "×".join(str(s) for s in self.train.x.shape[1:])
        lines = [f"{self.name} ({self.dims}D, {shape} per sample, uint8)",
                 f"  task     : {self.task}",
                 f"  splits   : train {len(self.train)} / val {len(self.val)} / test {len(self.test)}",
                 "  classes  :"]
        counts = self.class_counts("train")
        total = max(len(self.train), 1)
        for i, lab in self.labels.items():
            c = int(counts[i]) if i < len(counts) else 0
            lines.append(f"    {i:>2} {lab[:48]:<48} {c:>6} ({100 * c / total:5.1f}% of train)")
        if self.has_masks:
            lines.append(f"  masks    : per-pixel lesion masks ({self.train.masks.float().mean():.1%} lesion pixels)")
        lines.append(f"  licence  : {self.licence}")
        if self.path is not None:
            lines.append(f"  file     : {self.path}")
        return "\n".join(lines)

    __str__ = card

    def __repr__(self) -> str:
        return (f"Splits({self.name!r}, size={self.size}, task={self.task!r}, "
                f"train={len(self.train)}, val={len(self.val)}, test={len(self.test)})")

    def _repr_pretty_(self, p, cycle):
        p.text(self.card())


def _to_tensor(images: np.ndarray, dims: int) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(images))
    if dims == 2:
        return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()
    return t.unsqueeze(1) if t.ndim == 4 else t.permute(0, 4, 1, 2, 3).contiguous()


def atomic_savez(path: Path, arrays: dict, compressed: bool = True) -> Path:
    """``np.savez(_compressed)`` through a unique temp file in the same folder + ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _load_phantom(key, size, root, counts, site, seed, n_classes, cache):
    dims = PHANTOMS[key]
    counts = tuple(int(n) for n in (counts or phantoms.DEFAULT_COUNTS[dims]))
    if len(counts) != 3 or min(counts) < 0:
        raise ValueError(f"counts must be (n_train, n_val, n_test) >= 0, got {counts!r}")
    path = phantom_path(key, size, counts, site, seed, n_classes, root)
    if cache and path.exists():
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    else:
        arrays = phantoms.generate(dims, size, counts, site=site, seed=seed, n_classes=n_classes)
        if cache:
            atomic_savez(path, arrays)
    labels = {i: phantoms.CLASSES[i] for i in range(n_classes)}
    task = "binary-class" if n_classes == 2 else "multi-class"
    split = {s: Split(_to_tensor(arrays[f"{s}_images"], dims),
                      torch.from_numpy(arrays[f"{s}_labels"].astype(np.int64)),
                      _to_tensor(arrays[f"{s}_masks"], dims)) for s in SPLITS}
    return Splits(key, size, task, labels, 1, dims, split["train"], split["val"], split["test"],
                  licence=phantoms.LICENCE,
                  description=f"mednb procedural phantom, site {site}, seed {seed}",
                  path=path if cache else None, meta=dict(site=site, seed=seed, counts=counts))


def load(name: str, size: int = 28, root: Path | str | None = None, download: bool = True,
         *, counts=None, site: int = 0, seed: int = 0, n_classes: int = 4, cache: bool = True) -> Splits:
    """Load a dataset into memory.

    name: a MedMNIST name (``breastmnist``, ``adrenalmnist3d``, …; see :func:`names`) or
    ``phantom2d`` / ``phantom3d``. size: 28/64/128/224 (2D), 28/64 (3D and phantoms).
    download: fetch a missing MedMNIST file (MD5-checked); offline, raise :class:`DataNotFound`
    with the steps to fix it. Phantom-only keywords: counts=(train, val, test), site (0–3), seed,
    n_classes (2–4), cache (keep the generated arrays under :func:`cache_root`, or ``root`` when given).
    """
    key = check_name(name)
    size = _check_size(key, size)
    if key in PHANTOMS:  # generated, so cached with the other caches (the data root may be read-only)
        return _load_phantom(key, size, root, counts, int(site), int(seed), int(n_classes), cache)
    root = Path(root) if root is not None else data_root()
    path = root / filename(key, size)
    if not path.exists():
        if not download:
            raise DataNotFound(_missing_message(key, size, root, "download=False"))
        path = fetch(key, size, root)
    info = _info()[key]
    dims = dims_of(key)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # truncated / not a zip
        raise DataCorrupt(f"{path} cannot be read ({type(e).__name__}: {e}); "
                          f"run `mednb data verify`, delete the file and fetch it again") from None
    split = {}
    for s in SPLITS:
        x, y = arrays[f"{s}_images"], arrays[f"{s}_labels"]
        split[s] = Split(_to_tensor(x, dims), torch.from_numpy(y.astype(np.int64).reshape(len(y), -1)))
    labels = {int(k): v for k, v in info["label"].items()}
    return Splits(key, size, info["task"], labels, int(info["n_channels"]), dims,
                  split["train"], split["val"], split["test"], licence=info["license"],
                  description=info["description"], path=path)


def info_card(name: str) -> str:
    """Describe a dataset from ``INFO`` alone (works offline, no file needed)."""
    key = check_name(name)
    if key in PHANTOMS:
        dims = PHANTOMS[key]
        n = phantoms.DEFAULT_COUNTS[dims]
        cls = ", ".join(f"{i} {c}" for i, c in phantoms.CLASSES.items())
        return (f"{key}: built-in {dims}D phantom (multi-class, {len(phantoms.CLASSES)} classes: {cls})\n"
                f"  sizes    : {', '.join(map(str, phantoms.SIZES))}\n"
                f"  default  : train {n[0]} / val {n[1]} / test {n[2]} (configurable), sites 0–3\n"
                f"  masks    : per-pixel lesion masks\n  licence  : {phantoms.LICENCE}\n"
                f"  {phantoms.__doc__.strip().splitlines()[0]}")
    info = _info()[key]
    n = info["n_samples"]
    root = data_root()
    lines = [f"{key}: {info['python_class']} ({dims_of(key)}D, {info['n_channels']} channel(s))",
             f"  task     : {info['task']}",
             f"  splits   : train {n['train']} / val {n['val']} / test {n['test']}",
             f"  classes  : " + "; ".join(f"{k} {v}" for k, v in info["label"].items()),
             f"  licence  : {info['license']}"]
    for size in valid_sizes(key):
        url, md5 = url_md5(key, size)
        here = "present" if (root / filename(key, size)).exists() else "not downloaded"
        lines.append(f"  size {size:>3} : {filename(key, size):<28} md5 {md5}  [{here}]")
    lines.append(f"  data root: {root}")
    lines.append("  " + info["description"])
    return "\n".join(lines)


def label_subset(y: torch.Tensor, fraction: float, seed: int = 0, task: str = "multi-class") -> torch.Tensor:
    """Stratified, seeded subset of row indices keeping ``fraction`` of each class (≥1 per class).

    y: (N,L) labels. Multi-label sets are stratified by their first label. fraction in (0, 1].
    """
    if not 0 < float(fraction) <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction!r}")
    n = len(y)
    if fraction >= 1:
        return torch.arange(n)
    g = torch.Generator().manual_seed(int(seed))
    strat = y[:, 0]
    picked = []
    for c in torch.unique(strat):
        idx = torch.nonzero(strat == c).flatten()
        k = max(1, int(round(float(fraction) * len(idx))))
        picked.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.sort(torch.cat(picked)).values
