"""Figures and summaries of notebook 04 (matplotlib; each figure function returns its Figure).

Images are uint8 (N,C,H,W) / (N,C,D,H,W) tensors; volumes are shown by their middle axial slice.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..plot import to_display
from . import genesis as G


def _show(ax, img, title=None, **kw):
    a = to_display(img.detach().cpu().float() if isinstance(img, torch.Tensor) else img)
    ax.imshow(a, cmap="gray", **kw)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)


def genesis_gallery(x_uint8, seed: int = 0, n: int = 4):
    """Rows: images; columns: original, each Models Genesis transform alone, the full pipeline."""
    x = x_uint8[:n].float() / 255
    g = torch.Generator().manual_seed(seed)
    cols = [("original", x), ("non-linear (Bézier)", G.nonlinear(x, 1.0, g)),
            ("local shuffle", G.local_shuffle(x, 1.0, g)), ("in-painting", G.inpaint(x, g)),
            ("out-painting", G.outpaint(x, g)), ("pipeline input", G.transform(x, g)[0])]
    fig, axes = plt.subplots(len(x), len(cols), figsize=(1.6 * len(cols), 1.6 * len(x)), squeeze=False)
    for j, (name, imgs) in enumerate(cols):
        for i in range(len(x)):
            _show(axes[i, j], imgs[i], name if i == 0 else None, vmin=0, vmax=1)
    fig.suptitle("Models Genesis: the network sees the transformed image and must restore the original")
    fig.tight_layout()
    return fig


def pretext_gallery(methods: dict, x_uint8, seed: int = 0):
    """One row per input family: rotation batch with its labels, jigsaw tiles with the permutation
    index, two SimCLR views. ``methods``: {name: Pretext object} holding rotation/jigsaw/simclr."""
    x = x_uint8[:2].float() / 255
    g = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(3, 8, figsize=(12, 4.8))
    for ax in axes.flat:
        ax.axis("off")
    if "rotation" in methods:
        from .rotation import rotate
        k = torch.arange(4)
        xr = rotate(x[:1].repeat(4, *([1] * (x.ndim - 1))), k)
        for j in range(min(4, len(xr))):
            _show(axes[0, j], xr[j], f"rotation: {90 * int(k[j])}°", vmin=0, vmax=1)
    if "jigsaw" in methods:
        jig = methods["jigsaw"]
        tl, lab = jig.make_batch(x[:1], g)
        t = tl[0]
        for j in range(min(len(t), 4)):
            _show(axes[0, 4 + j], t[j], f"tile at {j}: #{int(jig.perms[lab[0], j])}", vmin=0, vmax=1)
        axes[1, 0].text(0, 0.5, f"jigsaw: {len(t)} tiles,\npermutation {int(lab[0])} of {len(jig.perms)}\n"
                        f"(class to predict)", fontsize=8)
    if "simclr" in methods:
        views = methods["simclr"].views
        for i in range(2):
            _show(axes[2, 4 * i], x[i], "image", vmin=0, vmax=1)
            for j in range(3):
                _show(axes[2, 4 * i + 1 + j], views(x[i:i + 1], g)[0], f"view {j + 1}", vmin=0, vmax=1)
    fig.suptitle("What the predictive and contrastive pretexts see")
    fig.tight_layout()
    return fig


def curves(results: dict):
    """Pretraining loss (relative to epoch 1) and kNN accuracy per method."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, r in results.items():
        h = r.history
        ep = [e["epoch"] for e in h]
        loss = np.array([e["loss"] for e in h])
        axes[0].plot(ep, loss / loss[0], marker=".", label=name)
        if h and "knn_acc" in h[0]:
            axes[1].plot([0] + ep, [r.meta.get("knn_init", np.nan)] + [e["knn_acc"] for e in h], marker=".", label=name)
    axes[0].set(xlabel="epoch", ylabel="loss / loss at epoch 1", title="pretext loss")
    axes[1].set(xlabel="epoch", ylabel="kNN accuracy (val)", title="kNN monitor (epoch 0 = random init)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@torch.no_grad()
def predictions(methods: dict, x_uint8, seed: int = 0):
    """After pretraining: rotation predictions, Genesis / autoencoder restorations of a few images."""
    x = x_uint8[:3].float() / 255
    dev = next(next(iter(methods.values())).parameters()).device if methods else "cpu"
    x = x.to(dev)
    g = torch.Generator().manual_seed(seed)
    rows = [m for m in ("rotation", "genesis", "autoencoder") if m in methods]
    fig, axes = plt.subplots(max(1, len(rows)), 6, figsize=(9.6, 1.8 * max(1, len(rows))), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, name in enumerate(rows):
        obj = methods[name].eval()
        if name == "rotation":
            xr, k = obj.make_batch(x[:1], g)
            pred = obj.predict(xr).softmax(1)
            for j in range(min(4, len(xr))):
                _show(axes[r, j], xr[j], f"true {90 * int(k[j])}° → {90 * int(pred[j].argmax())}° "
                      f"({float(pred[j].max()):.0%})", vmin=0, vmax=1)
        else:
            xt, tgt = G.transform(x, g) if name == "genesis" else (obj.corrupt(x, g), x)
            out = (obj.restore(xt) * 0.5 + 0.5).clamp(0, 1)
            for i in range(2):
                _show(axes[r, 3 * i], xt[i], f"{name} input", vmin=0, vmax=1)
                _show(axes[r, 3 * i + 1], out[i], "restored", vmin=0, vmax=1)
                _show(axes[r, 3 * i + 2], tgt[i], "target", vmin=0, vmax=1)
    fig.suptitle("What the pretrained pretext heads predict")
    fig.tight_layout()
    return fig


def clusters(x_uint8, assignment, y=None, n_clusters: int = 6, per: int = 6, class_names=None):
    """A row of images per (largest) cluster; captions give the true label (never used to cluster)."""
    assignment = np.asarray(assignment)
    top = np.argsort(-np.bincount(assignment))[:n_clusters]
    fig, axes = plt.subplots(len(top), per, figsize=(1.3 * per, 1.4 * len(top)), squeeze=False)
    for r, c in enumerate(top):
        idx = np.flatnonzero(assignment == c)[:per]
        for j in range(per):
            axes[r, j].axis("off")
            if j < len(idx):
                lab = None if y is None else int(np.asarray(y)[idx[j]].reshape(-1)[0])
                cap = None if lab is None else (class_names or {}).get(lab, str(lab))
                _show(axes[r, j], x_uint8[idx[j]], (f"c{c}: " if j == 0 else "") + str(cap or "")[:10])
    fig.suptitle("DeepCluster pseudo-labels: each row is one k-means cluster")
    fig.tight_layout()
    return fig


def fraction_plot(df, title: str = ""):
    """Test AUC vs label fraction (log x), one panel per protocol, mean ± sd bands per method."""
    from ..plot import mean_sd_lines
    protos = list(dict.fromkeys(df["protocol"]))
    fig, axes = plt.subplots(1, len(protos), figsize=(5.2 * len(protos), 3.6), squeeze=False)
    for ax, p in zip(axes[0], protos):
        mean_sd_lines(df[df["protocol"] == p], "label_fraction", "test_auc", "method", ax=ax, logx=True,
                      ylabel="test AUC")
        ax.set_title(f"{p} {title}".strip())
    fig.tight_layout()
    return fig


def table(df):
    """``mean ± sd (n)`` of test AUC: rows (protocol, method), columns label fractions."""
    from ..metrics import fmt
    t = df.groupby(["protocol", "method", "label_fraction"], sort=False)["test_auc"].apply(lambda v: fmt(v))
    return t.unstack("label_fraction")


def verdict(df, fraction: float = 0.1, protocol: str | None = None) -> str:
    """Plain statements computed from the records, per protocol: every pretext vs scratch at ``fraction``
    (closest available), paired over seeds with a 95 % interval (:func:`mednb.claims.paired`: the seeds share
    the label subset), and the best pretext at ``fraction`` vs scratch with the most labels."""
    from .evaluation import paired_vs
    fr = sorted(df["label_fraction"].unique())
    f = min(fr, key=lambda v: abs(v - fraction))
    top = max(fr)
    lines = []
    for p in ([protocol] if protocol else list(dict.fromkeys(df["protocol"]))):
        d = df[df["protocol"] == p]
        at_f = d[d.label_fraction == f]
        pre = [k for k in dict.fromkeys(at_f.method) if k != "scratch"]
        if not pre or "scratch" not in set(at_f.method):
            continue
        steps = sorted(set(int(x) for x in d.get("steps", [0])))
        budget = "" if p == "linear" else f", {'/'.join(map(str, steps))} fine-tuning steps for every arm"
        for k in pre:
            lines.append(f"[{p}] {k} − scratch at {f:.0%} labels: {paired_vs(d, k, 'scratch', f)}")
        best = max(pre, key=lambda k: at_f[at_f.method == k].test_auc.mean())
        if top != f:
            lines.append(f"[{p}] best pretext at {f:.0%} ({best}) − scratch at {top:.0%}: "
                         f"{paired_vs(d, best, 'scratch', f, top)}")
        lines.append(f"[{p}] each pretext pretrained once (first seed): the interval covers label subsets and "
                     f"fine-tuning only{budget}.")
    return "\n".join(lines)


def embedding(points: dict, y, class_names=None):
    """Scatter of 2D embeddings per model, coloured by the true label."""
    y = np.asarray(y).reshape(len(y), -1)[:, 0]
    fig, axes = plt.subplots(1, len(points), figsize=(4 * len(points), 3.6), squeeze=False)
    for ax, (name, pts) in zip(axes[0], points.items()):
        for c in np.unique(y):
            ax.scatter(pts[y == c, 0], pts[y == c, 1], s=6, alpha=0.7,
                       label=(class_names or {}).get(int(c), str(c))[:16])
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, -1].legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    return fig
