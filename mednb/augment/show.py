"""Looking at the policies: a gallery of draws and an ipywidgets explorer, 2D and 3D.

Rows or choices are policies (:func:`~mednb.augment.names`) or single transforms
(:func:`~mednb.augment.transforms`); volumes show their middle axial slice.
"""
from __future__ import annotations

import torch

from .policies import POLICIES, named, names, transforms


def _one_sample_batch(x: torch.Tensor, masks: torch.Tensor | None, n: int):
    """One sample (C,*spatial), uint8 or float [0,1], repeated into a float batch of ``n`` (and its mask)."""
    xf = (x.float() / 255 if x.dtype == torch.uint8 else x.float()).unsqueeze(0).repeat(n, *([1] * x.ndim))
    mf = None if masks is None else masks.unsqueeze(0).repeat(n, *([1] * masks.ndim))
    return xf, mf


def gallery(x: torch.Tensor, policies=None, n: int = 6, strength: float = 1.0, masks: torch.Tensor | None = None,
            seed: int = 0, size: float = 1.25, title: str | None = None):
    """Rows: policies or single transforms (:func:`names`, :func:`transforms`); columns: the original
    then ``n`` augmented draws of ONE sample.

    x: (C,H,W) or (C,D,H,W) uint8 or float [0,1] (volumes show their middle axial slice); masks:
    the sample's mask, drawn as a red contour after the same transform.
    """
    import matplotlib.pyplot as plt
    from ..plot import to_display
    policies = list(policies or names())
    dims = x.ndim - 1
    xf, mf = _one_sample_batch(x, masks, n)
    pols = [named(name, strength, dims) for name in policies]  # unknown names fail before any figure
    fig, axes = plt.subplots(len(policies), n + 1, figsize=((n + 1) * size, len(policies) * size * 1.05),
                             squeeze=False)
    for r, (name, pol) in enumerate(zip(policies, pols)):
        y, m = pol(xf, mf, torch.Generator().manual_seed(seed + r))
        for c in range(n + 1):
            ax = axes[r, c]
            img, msk = (xf[0], None if mf is None else mf[0]) if c == 0 else (y[c - 1], None if m is None else m[c - 1])
            ax.imshow(to_display(img), cmap="gray", vmin=0, vmax=1)
            if msk is not None and msk.any():
                ax.contour(to_display(msk.float()), levels=[0.5], colors="r", linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title("original" if c == 0 else f"draw {c}", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def explorer(x: torch.Tensor, masks: torch.Tensor | None = None, policies=None, scale: int = 8):
    """An ipywidgets explorer: policy or single transform + strength + seed → before/after of one
    sample (2D or 3D).

    x: (C,H,W) or (C,D,H,W) (volumes show their middle axial slice); masks: the sample's mask,
    tinted red. Renders with :func:`mednb.widgets.png`. Builds and returns the widget (display it);
    never waits for input, so papermill/nbval run on.
    """
    import ipywidgets as W
    from ..plot import to_display
    from ..widgets import png
    dims = x.ndim - 1
    xf, mf = _one_sample_batch(x, masks, 1)
    options = list(policies or names() + [t for t in transforms() if t not in POLICIES])
    pol = W.Dropdown(options=options, value="strong" if "strong" in options else options[0],
                     description="augment")
    strength = W.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.25, description="strength")
    seed = W.IntSlider(value=0, min=0, max=20, description="seed")
    before, after, caption = W.Image(format="png"), W.Image(format="png"), W.HTML()
    u8 = lambda t: (t.clamp(0, 1) * 255).round().to(torch.uint8)  # fixed 0–255 scale: intensity changes show
    show = lambda img, msk: png(to_display(u8(img)), None if msk is None else to_display(msk) > 0, scale)
    before.value = show(xf[0], None if mf is None else mf[0])

    def draw(*_):
        y, m = named(pol.value, strength.value, dims)(xf, mf, torch.Generator().manual_seed(seed.value))
        after.value = show(y[0], None if m is None else m[0])
        caption.value = f"before · after <b>{pol.value}</b> at strength {strength.value:g} (seed {seed.value})"

    for w in (pol, strength, seed):
        w.observe(draw, names="value")
    draw()
    return W.VBox([W.HBox([pol, strength, seed]), caption, W.HBox([before, after])])


def convergence(grid, key: str = "val_auc", policies=None, fractions=None, title: str | None = None):
    """The evidence that a grid's step budget is long enough: one panel per label fraction, validation ``key``
    against optimizer steps for each policy (mean and min–max band over seeds; :func:`mednb.plot.convergence`).

    grid: a DataFrame of :func:`~mednb.augment.label_fraction_grid` (its ``history`` column); policies,
    fractions: subsets to draw (default: all).
    """
    import matplotlib.pyplot as plt
    from ..plot import convergence as draw
    fractions = sorted(grid.label_fraction.unique()) if fractions is None else list(fractions)
    policies = list(grid.policy.unique()) if policies is None else list(policies)
    fig, axes = plt.subplots(1, len(fractions), figsize=(4.2 * len(fractions), 3.2), squeeze=False)
    for ax, f in zip(axes[0], fractions):
        g = grid[grid.label_fraction == f]
        runs = {p: list(g[g.policy == p].history) for p in policies if (g.policy == p).any()}
        steps = sorted(set(g.steps))
        draw(runs, key=key, ax=ax, title=f"{f:.0%} labels ({int(g.n_train.iloc[0])} images), "
                                         f"{', '.join(map(str, steps))} steps")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
