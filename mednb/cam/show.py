"""Figures and widgets for class activation maps (built on :func:`mednb.plot.overlay`).

Every figure function returns its matplotlib Figure; widget functions return an ipywidgets box to
``display`` (nothing waits for input, so papermill and nbval run straight through).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import plot


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def grid(images, maps: dict, masks=None, titles=None, size: float = 1.6):
    """Rows = images, columns = the image then one overlay per entry of ``maps`` ({name: (N,*S)}).
    3D inputs show their middle axial slice. titles: one caption per row (shown on the image)."""
    n = len(images)
    cols = 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(cols * size, n * size * 1.05), squeeze=False)
    for i in range(n):
        m = None if masks is None else masks[i]
        plot.overlay(images[i], None, m, ax=axes[i, 0], title=None if titles is None else titles[i])
        for j, (name, mp) in enumerate(maps.items(), start=1):
            plot.overlay(images[i], _np(mp[i])[None], m, ax=axes[i, j], title=name if i == 0 else None)
    fig.tight_layout()
    return fig


def steps(expl, image, k: int = 4, mask=None):
    """Grad-CAM step by step for the first sample of an :class:`~mednb.cam.Explanation` (2D):
    the ``k`` channels with the largest |alpha_k| (A^k and dy/dA^k with alpha_k), the weighted sum,
    its ReLU at layer resolution, and the upsampled map on the image."""
    A, G = _np(expl.activations[0]), _np(expl.gradients[0])
    w = _np(expl.weights[0]) if expl.weights is not None else G.reshape(len(G), -1).mean(1)
    top = np.argsort(-np.abs(w))[:k]
    fig, axes = plt.subplots(3, k + 1, figsize=(1.9 * (k + 1), 5.8))
    for j, c in enumerate(top):
        axes[0, j].imshow(A[c], cmap="viridis")
        axes[0, j].set_title(f"A^{c}", fontsize=8)
        lim = np.abs(G[c]).max() or 1.0
        axes[1, j].imshow(G[c], cmap="coolwarm", vmin=-lim, vmax=lim)
        axes[1, j].set_title(f"dy/dA^{c}: α={w[c]:+.2e}", fontsize=7)
    s = (w[:, None, None] * A).sum(0)
    lim = np.abs(s).max() or 1.0
    axes[0, k].imshow(s, cmap="coolwarm", vmin=-lim, vmax=lim)
    axes[0, k].set_title("Σ_k α_k A^k", fontsize=8)
    axes[1, k].imshow(np.maximum(s, 0), cmap="jet")
    axes[1, k].set_title("ReLU(Σ_k α_k A^k)", fontsize=8)
    plot.overlay(image, _np(expl.maps[0])[None], mask, ax=axes[2, k], title="upsampled on the image")
    axes[2, 0].bar(range(len(w)), np.sort(w)[::-1], width=1.0)
    axes[2, 0].set_title("all α_k (sorted)", fontsize=8)
    for ax in axes.flat:
        if ax is not axes[2, 0]:
            ax.axis("off")
    for ax in axes[2, 1:k]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def slices(volume, heat=None, mask=None, index=None, axes=None, title: str | None = None):
    """Axial, coronal and sagittal slices of a (C,D,H,W)/(D,H,W) volume through ``index`` with the
    map overlaid (a slice-wise :func:`mednb.plot.overlay`)."""
    v = _np(volume)
    v = v[0] if v.ndim == 4 else v
    h = None if heat is None else _np(heat).reshape(v.shape)
    m = None if mask is None else _np(mask).reshape(v.shape)
    idx = index or tuple(s // 2 for s in v.shape)
    fig, axes = (axes[0].figure, axes) if axes is not None else plt.subplots(1, 3, figsize=(7.2, 2.6))
    views = [("axial", (idx[0], slice(None), slice(None))), ("coronal", (slice(None), idx[1], slice(None))),
             ("sagittal", (slice(None), slice(None), idx[2]))]
    for ax, (name, sl), i in zip(axes, views, idx):
        msl = None if m is None or not m[sl].any() else m[sl]
        plot.overlay(v[sl], None if h is None else h[sl], msl, ax=ax, title=f"{name} {i}")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def volume_viewer(volume, heat, mask=None, title: str = ""):
    """An axial-slice slider over a volume with its map (ipywidgets; returns the box to display)."""
    import ipywidgets as W
    v = _np(volume)
    depth = v.shape[-3]
    start = int(np.argmax(_np(heat).reshape(depth, -1).max(1)))  # the slice where the map peaks
    z = W.IntSlider(value=start, min=0, max=depth - 1, description="axial slice", continuous_update=False)
    out = W.interactive_output(lambda z: (slices(volume, heat, mask, (z, v.shape[-2] // 2, v.shape[-1] // 2),
                                                 title=title), plt.show()), {"z": z})
    return W.VBox([z, out])


def sanity(result, image: int = 0, images=None):
    """The sanity-check figure: for each method, maps of one image on the trained model and after
    each cumulative randomization step, and the mean rank correlation per step (right)."""
    methods = list(result.maps)
    stages_ = list(result.maps[methods[0]])
    cols = len(stages_) + 1
    fig, axes = plt.subplots(len(methods), cols, figsize=(1.45 * cols + 1.6, 1.5 * len(methods)), squeeze=False)
    df = result.frame()
    for i, meth in enumerate(methods):
        for j, st in enumerate(stages_):
            ax = axes[i, j]
            mp = _np(result.maps[meth][st][image])
            if images is not None:
                plot.overlay(images[image], mp[None], None, ax=ax)
            else:
                ax.imshow(plot.to_display(mp[None]), cmap="jet", vmin=0, vmax=1)
                ax.axis("off")
            if i == 0:
                ax.set_title(st.replace("features.", "") if j else "trained", fontsize=7)
            if j == 0:
                ax.text(-0.1, 0.5, meth, transform=ax.transAxes, rotation=90, va="center", ha="right", fontsize=8)
        ax = axes[i, -1]
        d = df[df.method == meth]
        ax.plot(range(1, len(d) + 1), d.spearman.values, marker="o", label="Spearman")
        ax.plot(range(1, len(d) + 1), d.ssim.values, marker="s", label="SSIM")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylim(-0.3, 1.05)
        ax.set_xticks(range(1, len(d) + 1))
        ax.set_xticklabels([s.replace("features.", "")[:6] for s in d.layer_randomized], rotation=60, fontsize=6)
        ax.tick_params(labelsize=6)
        if i == 0:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def curves(results: dict, kind: str = "deletion", ax=None):
    """Mean deletion or insertion curve per method ({name: deletion_insertion(...) result})."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(3.6, 2.9))
    for name, r in results.items():
        y = r[kind].mean(0)
        ax.plot(r["fractions"], y, label=f"{name} (AUC {r[f'{kind}_auc'].mean():.3f})")
    ax.set_xlabel(f"fraction of pixels {'removed' if kind == 'deletion' else 'inserted'}")
    ax.set_ylabel("target-class probability")
    ax.set_title(kind, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def explorer(images, models: dict, class_names: dict, masks=None, methods=None, labels=None):
    """Pick an image, a class, a model's layer and a method; see the map (ipywidgets box).

    images: uint8 (N,C,H,W) or (N,C,D,H,W); models: {name: classifier}; labels: (N,) true classes.
    """
    import ipywidgets as W
    from . import create, names, stages
    methods = methods or names()
    first = next(iter(models.values()))
    layer_opts = [(f"{mn}: {s}", (mn, s)) for mn, m in models.items() for s in stages(m)]
    img = W.IntSlider(value=0, min=0, max=len(images) - 1, description="image", continuous_update=False)
    cls = W.Dropdown(options=[("predicted", -1)] + [(str(v), int(k)) for k, v in class_names.items()],
                     value=-1, description="class")
    layer = W.Dropdown(options=layer_opts, value=(next(iter(models)),
                                                  create("gradcam", first).layer), description="layer")
    meth = W.Dropdown(options=methods, value=methods[0], description="method")

    def show(i, c, lay, m):
        mn, ln = lay
        net = models[mn]
        x = images[i:i + 1]
        with torch.no_grad():
            from .base import model_ready
            p = torch.softmax(net.eval()(model_ready(x).to(next(net.parameters()).device)), 1)[0].cpu()
        t = int(p.argmax()) if c < 0 else c
        mp = create(m, net, ln)(x, t)
        truth = "" if labels is None else f"true {class_names.get(int(labels[i]), labels[i])}, "
        title = f"{truth}map for {class_names.get(t, t)} (p={p[t]:.2f})"
        if x.ndim == 5:
            slices(x[0], mp[0], None if masks is None else masks[i], title=title)
        else:
            plot.overlay(x[0], _np(mp[0])[None], None if masks is None else masks[i], title=title)
            plt.gcf().set_size_inches(3.2, 3.2)
        plt.show()

    out = W.interactive_output(show, {"i": img, "c": cls, "lay": layer, "m": meth})
    return W.VBox([W.HBox([img, cls]), W.HBox([layer, meth]), out])
