"""Figures of notebook 05: the UNet++ node grid, prediction overlays, the receptive field of dilated convolutions."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


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
    from ..plot import to_display
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
