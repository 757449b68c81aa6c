"""Notebook 00 (MedMNIST tour): the collection at a glance, dataset statistics, why imbalance matters.

Everything is computed from medmnist's ``INFO`` table and from the loaded arrays — no number in
the notebook is typed in by hand.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import data, knobs, metrics, phantoms

PROFILES = {
    "smoke":   {"DATASET": "phantom2d",   "VOLUME_DATASET": "phantom3d",      "SIZE": 28, "N_SHOW": 16,
                "N_PER_SITE": 6, "SEEDS": [0]},
    "student": {"DATASET": "breastmnist", "VOLUME_DATASET": "adrenalmnist3d", "SIZE": 28, "N_SHOW": 32,
                "N_PER_SITE": 8, "SEEDS": [0]},
    "full":    {"DATASET": "breastmnist", "VOLUME_DATASET": "adrenalmnist3d", "SIZE": 64, "N_SHOW": 48,
                "N_PER_SITE": 8, "SEEDS": [0]},
}
# knobs valid only for a dataset or a registry (checked by mednb.params before anything runs);
# the phantom sections load phantom2d and phantom3d at SIZE whatever the datasets
CHECKS = {"DATASET": knobs.dataset(2), "VOLUME_DATASET": knobs.dataset(3),
          "SIZE": knobs.size("DATASET", "VOLUME_DATASET", fixed=("phantom2d", "phantom3d"))}


def medmnist_table() -> pd.DataFrame:
    """One row per MedMNIST v2 dataset (from ``medmnist.INFO``): dims, task, classes, sizes, licence."""
    from medmnist import INFO
    rows = []
    for key, info in INFO.items():
        n = info["n_samples"]
        rows.append({"dataset": key, "dims": data.dims_of(key), "task": info["task"],
                     "classes": len(info["label"]), "channels": info["n_channels"],
                     "train": n["train"], "val": n["val"], "test": n["test"],
                     "total": n["train"] + n["val"] + n["test"],
                     "sizes": ",".join(map(str, data.valid_sizes(key))), "licence": info["license"]})
    return pd.DataFrame(rows).set_index("dataset")


def summary_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Datasets and samples per (dims, task) and per licence — the collection in two small tables."""
    by_task = table.groupby(["dims", "task"]).agg(datasets=("total", "size"), samples=("total", "sum"))
    return by_task.reset_index()


def dataset_stats(splits) -> dict:
    """Statistics of a loaded dataset: split sizes, class fractions (train), pixel mean/sd in [0, 1],
    imbalance ratio (largest / smallest class) and, for phantoms, the lesion-pixel fraction."""
    counts = splits.class_counts("train").astype(float)
    x = splits.train.x
    xf = x.float() / 255.0
    out = {"n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test),
           "class_fraction": (counts / max(counts.sum(), 1)).round(4).tolist(),
           "pixel_mean": float(xf.mean()), "pixel_std": float(xf.std()),
           "imbalance_ratio": float(counts.max() / max(counts.min(), 1))}
    if splits.has_masks:
        out["lesion_fraction"] = float(splits.train.masks.float().mean())
        out["lesion_contrast"] = phantoms.lesion_contrast(splits.train.x[:256], splits.train.masks[:256]) / 255.0
    return out


def stats_table(stats: dict[str, dict]) -> pd.DataFrame:
    """Side-by-side table of :func:`dataset_stats` results keyed by dataset name."""
    rows = {}
    for name, s in stats.items():
        r = {k: v for k, v in s.items() if k != "class_fraction"}
        r["class_fraction"] = ", ".join(f"{f:.2f}" for f in s["class_fraction"])
        rows[name] = r
    return pd.DataFrame(rows).T


def constant_predictors(splits, which: str = "test", seed: int = 0) -> pd.DataFrame:
    """Metrics of predictors that ignore the image, on one split (medmnist AUC/ACC semantics).

    ``majority``: always the most frequent training class (score 1 for it); ``prior``: the
    training class frequencies as scores; ``random``: uniform random scores. Accuracy rewards the
    majority predictor on imbalanced data; AUC and balanced accuracy expose it (0.5 / 1/K).
    """
    task = splits.task
    y = splits.split(which).y.numpy()
    k = splits.n_outputs
    counts = splits.class_counts("train").astype(float)
    prior = counts / counts.sum()
    n = len(y)
    rng = np.random.default_rng(seed)
    scores = {"majority": np.tile(np.eye(k)[int(np.argmax(counts))], (n, 1)),
              "prior": np.tile(prior, (n, 1)),
              "random": rng.uniform(size=(n, k))}
    if task.startswith("multi-label"):
        scores["majority"] = np.tile((prior > 0.5).astype(float), (n, 1))
    rows = []
    for name, s in scores.items():
        r = metrics.classification(y, s, task)
        rows.append({"predictor": name, **{m: r[m] for m in ("acc", "balanced_acc", "auc") if m in r}})
    return pd.DataFrame(rows).set_index("predictor")


def site_gallery(dims: int = 2, size: int = 28, n: int = 8, seed: int = 0) -> dict[int, "data.Splits"]:
    """The same phantom recipe acquired at each of the 4 sites (small, not cached): site → Splits."""
    name = "phantom2d" if dims == 2 else "phantom3d"
    return {site: data.load(name, size, counts=(n, 0, 0), site=site, seed=seed, cache=False)
            for site in sorted(phantoms.SITES)}


def site_stats(gallery: dict) -> pd.DataFrame:
    """Per site: mean intensity, noise-like high-frequency energy and lesion contrast (all in [0, 1] units)."""
    rows = []
    for site, s in gallery.items():
        x = s.train.x.float() / 255.0
        sp = tuple(range(2, x.ndim))
        hf = (x - x.roll(1, dims=sp[-1])).abs().mean().item()  # neighbour differences: noise + edges
        rows.append({"site": site, **phantoms.SITES[site], "mean_intensity": x.mean().item(),
                     "neighbour_diff": hf,
                     "lesion_contrast": phantoms.lesion_contrast(s.train.x, s.train.masks) / 255.0})
    return pd.DataFrame(rows).set_index("site")


def volume_summary(split) -> dict:
    """Shape and per-axis mean intensity profile of a 3D split (N,C,D,H,W) — where the content sits."""
    x = split.x.float() / 255.0
    if x.ndim != 5:
        raise ValueError(f"expected (N,C,D,H,W) volumes, got shape {tuple(x.shape)}")
    return {"shape": tuple(x.shape[1:]), "profile_z": x.mean((0, 1, 3, 4)).numpy(),
            "profile_y": x.mean((0, 1, 2, 4)).numpy(), "profile_x": x.mean((0, 1, 2, 3)).numpy(),
            "nonzero_fraction": float((split.x > 0).float().mean())}



def imbalanced(split, share: float = 0.9, majority: int | None = None, seed: int = 0):
    """A seeded subset of a single-label split in which one class makes up ``share`` of the samples.

    majority: that class (default: the most frequent one). Used to show what imbalance does to
    accuracy vs AUC on any dataset, balanced phantoms included.
    """
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share!r}")
    y = split.y[:, 0].numpy()
    maj = int(np.bincount(y).argmax()) if majority is None else int(majority)
    rng = np.random.default_rng(seed)
    keep = np.flatnonzero(y == maj)
    rest = rng.permutation(np.flatnonzero(y != maj))
    n_rest = min(len(rest), max(1, int(round(len(keep) * (1 - share) / share))))
    if n_rest == len(rest):  # not enough minority samples: shrink the majority instead
        keep = rng.permutation(keep)[:max(1, int(round(n_rest * share / (1 - share))))]
    idx = np.sort(np.concatenate([keep, rest[:n_rest]]))
    return split.subset(idx)


def imbalanced_splits(splits, share: float = 0.9, majority: int | None = None, seed: int = 0):
    """The same dataset with every split subsampled by :func:`imbalanced` (one class = ``share``)."""
    import dataclasses
    maj = int(splits.class_counts("train").argmax()) if majority is None else int(majority)
    return dataclasses.replace(splits, name=f"{splits.name} ({share:.0%} {splits.labels[maj]})",
                               **{s: imbalanced(splits.split(s), share, maj, seed) for s in data.SPLITS})
