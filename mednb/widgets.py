"""ipywidgets for exploring images and volumes in JupyterLab / Colab.

Every function builds and returns a widget (display it, or let it be the cell's last value);
nothing waits for input, so notebooks run unchanged under papermill and nbval. Slices are
rendered to PNG with Pillow (nearest-neighbour upscaling), which keeps sliders responsive on CPU.
"""
from __future__ import annotations

import io

import numpy as np

AXES = {"axial": 0, "coronal": 1, "sagittal": 2}  # axis of a (D,H,W) volume each view slices along


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def to_uint8(img, vmin=None, vmax=None) -> np.ndarray:
    """Scale a 2D array to uint8 for display (uint8 input is kept as is unless vmin/vmax given)."""
    a = _np(img)
    if a.dtype == np.uint8 and vmin is None and vmax is None:
        return a
    a = a.astype(np.float32)
    lo = float(a.min()) if vmin is None else float(vmin)
    hi = float(a.max()) if vmax is None else float(vmax)
    return (np.clip((a - lo) / max(hi - lo, 1e-8), 0, 1) * 255).round().astype(np.uint8)


def png(img, mask=None, scale: int = 8, alpha: float = 0.45) -> bytes:
    """PNG bytes of a 2D grey (H,W) or RGB (H,W,3) image, upscaled ``scale``×, mask tinted red."""
    from PIL import Image
    a = to_uint8(img)
    rgb = np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a.copy()
    if mask is not None:
        m = _np(mask).astype(bool)
        rgb[m] = ((1 - alpha) * rgb[m] + alpha * np.array([255, 0, 0])).astype(np.uint8)
    im = Image.fromarray(rgb)
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def take_slice(volume, axis: str | int, index: int) -> np.ndarray:
    """A 2D slice of a (D,H,W) or (C,D,H,W) volume (first channel) along ``axis`` (name or 0–2)."""
    v = _np(volume)
    v = v[0] if v.ndim == 4 else v
    if v.ndim != 3:
        raise ValueError(f"expected a (D,H,W) or (C,D,H,W) volume, got shape {v.shape}")
    ax = AXES.get(axis, -1) if isinstance(axis, str) else int(axis)
    if ax not in (0, 1, 2):
        raise ValueError(f"unknown axis {axis!r}; valid: {', '.join(AXES)} or 0, 1, 2")
    return np.take(v, int(np.clip(index, 0, v.shape[ax] - 1)), axis=ax)


def slice_viewer(volumes, mask=None, labels=None, class_names=None, axis: str = "axial",
                 scale: int = 8, title: str | None = None, masks=None):
    """Explore 3D volumes: a sample slider (for a batch), axis buttons and a slice slider.

    volumes: (D,H,W), (C,D,H,W) or a batch (N,C,D,H,W); mask (or masks): same layout, optional,
    tinted red; labels: (N,) or (N,1) for captions with ``class_names`` {i: name}.
    Returns an ipywidgets VBox.
    """
    import ipywidgets as W
    masks = mask if mask is not None else masks
    v = _np(volumes)
    batch = v if v.ndim == 5 else (v[None] if v.ndim == 4 else v[None, None])
    m = None if masks is None else _np(masks)
    if m is not None:
        m = m if m.ndim == 5 else (m[None] if m.ndim == 4 else m[None, None])
    lab = None if labels is None else _np(labels).reshape(len(batch), -1)[:, 0]
    d = batch.shape[2:]
    sample = W.IntSlider(0, 0, len(batch) - 1, description="sample", continuous_update=True,
                         layout=W.Layout(display="flex" if len(batch) > 1 else "none"))
    ax_btn = W.ToggleButtons(options=list(AXES), value=axis, description="axis")
    sl = W.IntSlider(d[AXES[axis]] // 2, 0, d[AXES[axis]] - 1, description="slice", continuous_update=True)
    img = W.Image(format="png")
    caption = W.HTML()

    def draw(*_):
        i, a = sample.value, ax_btn.value
        sl.max = d[AXES[a]] - 1
        two = take_slice(batch[i], a, sl.value)
        mk = None if m is None else take_slice(m[i], a, sl.value)
        img.value = png(two, mk, scale)
        name = "" if lab is None else f" · label {int(lab[i])}" + (
            f" ({class_names.get(int(lab[i]), '')})" if isinstance(class_names, dict) else "")
        caption.value = f"<b>{title or ''}</b> sample {i}{name} · {a} slice {sl.value}/{sl.max}"

    def on_axis(change):
        sl.max = d[AXES[change["new"]]] - 1
        sl.value = sl.max // 2
        draw()

    sample.observe(draw, "value")
    sl.observe(draw, "value")
    ax_btn.observe(on_axis, "value")
    draw()
    return W.VBox([caption, W.HBox([img, W.VBox([sample, ax_btn, sl])])])


def image_browser(images, labels=None, class_names=None, masks=None, scale: int = 8, title: str | None = None):
    """Browse a batch of 2D images (N,C,H,W) with a slider; 3D batches show their middle axial slice."""
    import ipywidgets as W
    from .plot import to_display
    x = _np(images)
    mm = None if masks is None else _np(masks)
    lab = None if labels is None else _np(labels).reshape(len(x), -1)[:, 0]
    idx = W.IntSlider(0, 0, len(x) - 1, description="image", continuous_update=True)
    show_mask = W.Checkbox(value=mm is not None, description="mask", disabled=mm is None)
    img = W.Image(format="png")
    caption = W.HTML()

    def draw(*_):
        i = idx.value
        mk = to_display(mm[i]) if (mm is not None and show_mask.value) else None
        img.value = png(to_display(x[i]), mk, scale)
        name = "" if lab is None else f" · label {int(lab[i])}" + (
            f" ({class_names.get(int(lab[i]), '')})" if isinstance(class_names, dict) else "")
        caption.value = f"<b>{title or ''}</b> image {i}{name}"

    idx.observe(draw, "value")
    show_mask.observe(draw, "value")
    draw()
    return W.VBox([caption, W.HBox([img, W.VBox([idx, show_mask])])])


def figure_selector(make_figure, options, description: str = "show"):
    """A dropdown that redraws ``make_figure(option) -> matplotlib Figure`` into an Output widget."""
    import ipywidgets as W
    import matplotlib.pyplot as plt
    from IPython.display import display
    dd = W.Dropdown(options=list(options), description=description)
    out = W.Output()

    def draw(*_):
        with out:
            out.clear_output(wait=True)
            fig = make_figure(dd.value)
            display(fig)
            plt.close(fig)

    dd.observe(draw, "value")
    draw()
    return W.VBox([dd, out])
