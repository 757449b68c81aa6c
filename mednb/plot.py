"""Figures shared by the notebooks (matplotlib; each function returns its Figure).

Images are uint8 or float tensors/arrays shaped (C,H,W), (N,C,H,W), (C,D,H,W) or (N,C,D,H,W).
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def to_display(img) -> np.ndarray:
    """(C,H,W) → (H,W) grey or (H,W,3) RGB for imshow; 3D volumes give their middle axial slice."""
    a = _np(img)
    if a.ndim == 4:  # (C,D,H,W)
        a = a[:, a.shape[1] // 2]
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    return a


def montage(x, labels=None, class_names=None, n: int = 32, cols: int = 8, title: str | None = None,
            masks=None, size: float = 1.3):
    """A grid of images (middle slice for volumes), optional label captions and mask contours."""
    n = min(n, len(x))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size * 1.12), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(to_display(x[i]), cmap="gray")
        if masks is not None:
            ax.contour(to_display(masks[i]), levels=[0.5], colors="r", linewidths=0.7)
        if labels is not None:
            lab = int(_np(labels[i]).reshape(-1)[0])
            name = class_names.get(lab, str(lab)) if isinstance(class_names, dict) else lab
            ax.set_title(str(name)[:14], fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def class_balance(splits, ax=None):
    """Bar chart of class counts per split."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 3))
    k = splits.n_classes
    w = 0.8 / 3
    for j, s in enumerate(("train", "val", "test")):
        ax.bar(np.arange(k) + (j - 1) * w, splits.class_counts(s), w, label=s)
    ax.set_xticks(range(k))
    ax.set_xticklabels([str(splits.labels[i])[:16] for i in range(k)], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("images")
    ax.set_title(f"{splits.name}: class balance")
    ax.legend()
    fig.tight_layout()
    return fig


def history(hist, keys=("train_loss", "val_loss", "val_auc", "val_acc"), title=None, axes=None):
    """Learning curves from :class:`mednb.engine.FitResult.history` (one panel per quantity)."""
    keys = [k for k in keys if hist and k in hist[0]]
    fig, axes = (axes[0].figure, axes) if axes is not None else plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8))
    axes = np.atleast_1d(axes)
    ep = [h["epoch"] for h in hist]
    for ax, k in zip(axes, keys):
        ax.plot(ep, [h[k] for h in hist], marker=".")
        ax.set_xlabel("epoch")
        ax.set_title(k)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def convergence(runs: dict, key: str = "val_auc", title: str | None = None, ax=None):
    """Validation ``key`` against optimizer steps, one line per arm: the evidence that a step budget is long
    enough (the curves have flattened) and of which arm converges faster.

    runs: ``{label: history or [history, ...]}`` (histories of :class:`mednb.engine.FitResult` trained with a
    step budget; several histories of one arm, e.g. one per seed, are drawn as their mean with a min–max band).
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3.2))
    for label, hs in runs.items():
        hs = [hs] if hs and isinstance(hs[0], dict) else list(hs)
        hs = [h for h in hs if h and "step" in h[0]]
        if not hs:
            raise ValueError(f"{label!r}: convergence needs histories trained with a step budget (Recipe(steps=N))")
        n = min(len(h) for h in hs)
        steps = [e["step"] for e in hs[0][:n]]
        vals = np.array([[e.get(key, np.nan) for e in h[:n]] for h in hs], dtype=float)
        line, = ax.plot(steps, np.nanmean(vals, 0), marker=".", label=f"{label} (n={len(hs)})")
        if len(hs) > 1:
            ax.fill_between(steps, np.nanmin(vals, 0), np.nanmax(vals, 0), color=line.get_color(), alpha=0.15)
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title or f"{key} against training steps")
    fig.tight_layout()
    return fig


def confusion(y_true, y_score, class_names=None, ax=None, normalize: bool = True):
    """Confusion matrix of argmax predictions (rows: truth)."""
    from sklearn.metrics import confusion_matrix
    y_true = _np(y_true).reshape(len(y_true), -1)[:, 0]
    y_score = _np(y_score)
    k = y_score.shape[1]
    cm = confusion_matrix(y_true, y_score.argmax(1), labels=list(range(k))).astype(float)
    if normalize:
        cm = cm / cm.sum(1, keepdims=True).clip(min=1)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{cm[i, j]:.2f}" if normalize else int(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > (0.5 if normalize else cm.max() / 2) else "black")
    names = [str((class_names or {}).get(i, i))[:12] for i in range(k)]
    ax.set_xticks(range(k))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k))
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig


def roc(y_true, y_score, class_names=None, ax=None, task: str = "multi-class"):
    """One-vs-rest ROC curves (binary: the positive class only)."""
    from sklearn.metrics import roc_auc_score, roc_curve
    y_true = _np(y_true)
    y_score = _np(y_score)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(3.6, 3.2))
    if task.startswith("multi-label"):
        cols = [(i, y_true[:, i]) for i in range(y_score.shape[1])]
    else:
        yt = y_true.reshape(len(y_true), -1)[:, 0]
        cls = [y_score.shape[1] - 1] if task == "binary-class" else range(y_score.shape[1])
        cols = [(i, (yt == i).astype(int)) for i in cls]
    for i, t in cols:
        if t.min() == t.max():
            continue
        fpr, tpr, _ = roc_curve(t, y_score[:, i])
        name = str((class_names or {}).get(i, i))[:14]
        ax.plot(fpr, tpr, lw=1, label=f"{name} ({roc_auc_score(t, y_score[:, i]):.2f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.6)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def mean_sd_lines(df, x: str, y: str, hue: str, ax=None, logx: bool = False, ylabel: str | None = None):
    """Mean ± sd of ``y`` vs ``x`` for each ``hue`` group of a tidy DataFrame (one row per run)."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3.4))
    for name, g in df.groupby(hue, sort=False):
        s = g.groupby(x)[y].agg(["mean", "std", "count"]).reset_index().sort_values(x)
        ax.plot(s[x], s["mean"], marker="o", label=str(name))
        ax.fill_between(s[x], s["mean"] - s["std"].fillna(0), s["mean"] + s["std"].fillna(0), alpha=0.15)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=hue)
    fig.tight_layout()
    return fig


def overlay(image, heat=None, mask=None, ax=None, alpha: float = 0.45, cmap: str = "jet", title: str | None = None):
    """Image with an optional heat map (e.g. Grad-CAM, [0,1]) and mask contour; 3D → middle slice."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(2.6, 2.6))
    ax.imshow(to_display(image), cmap="gray")
    if heat is not None:
        h = to_display(heat if _np(heat).ndim >= 3 else _np(heat)[None])
        ax.imshow(h, cmap=cmap, alpha=alpha, vmin=0, vmax=max(float(h.max()), 1e-8))
    if mask is not None:
        ax.contour(to_display(mask), levels=[0.5], colors="w", linewidths=0.8)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
    return fig


def orthogonal(volume, index=None, mask=None, axes=None, title: str | None = None):
    """Axial, coronal and sagittal slices of a (C,D,H,W) or (D,H,W) volume through ``index``."""
    v = _np(volume)
    v = v[0] if v.ndim == 4 else v
    m = None if mask is None else (_np(mask)[0] if _np(mask).ndim == 4 else _np(mask))
    idx = index or tuple(s // 2 for s in v.shape)
    views = [("axial", "z", idx[0], (idx[0], slice(None), slice(None))),
             ("coronal", "y", idx[1], (slice(None), idx[1], slice(None))),
             ("sagittal", "x", idx[2], (slice(None), slice(None), idx[2]))]
    return side_by_side([(v[sl], None if m is None else m[sl], f"{name} {axis}={i}") for name, axis, i, sl in views],
                        title=title, axes=axes, vmin=v.min(), vmax=v.max())


def side_by_side(panels, title: str | None = None, axes=None, **imshow):
    """Grey 2D images in one row: ``panels`` = [(image, mask or None, label)], each mask drawn as a red contour;
    ``axes``: existing axes to draw into (default: a new 7.5 × 2.7 in figure); ``imshow``: e.g. vmin, vmax."""
    fig, axes = (axes[0].figure, axes) if axes is not None else plt.subplots(1, len(panels), figsize=(7.5, 2.7))
    for ax, (image, mask, label) in zip(axes, panels):
        ax.imshow(image, cmap="gray", **imshow)
        if mask is not None and mask.any():
            ax.contour(mask, levels=[0.5], colors="r", linewidths=0.7)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
