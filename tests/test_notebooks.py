"""Every notebook follows the shared skeleton, and every PROFILES table is consistent.

Skeleton (in order): a title cell with an "Open in Colab" badge and "Runs in ~N min on CPU"; the
colab-install cell; a ``parameters`` cell of commented knobs all set to None whose names equal the
PROFILES keys (+ PROFILE); a setup cell calling ``mednb.params(``; topic sections; ``## Results``
with a ``record(`` call; ``## Exercises``; ``## Summary``. Outputs are cleared and no code cell
is longer than 40 lines.
"""
from __future__ import annotations

import ast
import importlib
import re

import nbformat
import numpy as np
import pytest

from mednb.params import NOTEBOOK_MODULES, PROFILES as PROFILE_NAMES
from conftest import NOTEBOOKS

COLAB_INSTALL = '''# On Colab, install mednb first (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    get_ipython().run_line_magic("pip", "install -q git+https://github.com/mednb/mednb")'''
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
ids = [p.stem for p in PATHS]


def _read(path):
    return nbformat.read(path, as_version=4)


def _profiles(stem):
    return importlib.import_module(NOTEBOOK_MODULES[stem]).PROFILES


def test_there_are_notebooks():
    assert PATHS and PATHS[0].name == "00_medmnist_tour.ipynb"


@pytest.mark.parametrize("path", PATHS, ids=ids)
def test_skeleton(path):
    nb = _read(path)
    cells = nb.cells
    stem = path.stem
    num = stem.split("_")[0]
    assert re.fullmatch(r"\d\d_[a-z0-9_]+", stem), "notebooks are named NN_topic.ipynb"
    assert stem in NOTEBOOK_MODULES, f"add {stem} to mednb.params.NOTEBOOK_MODULES"

    title = cells[0]
    assert title.cell_type == "markdown" and title.source.startswith(f"# {num} · ")
    badge = f"https://colab.research.google.com/github/mednb/mednb/blob/main/notebooks/{path.name}"
    assert "colab-badge.svg" in title.source and badge in title.source
    assert re.search(r"Runs in ~\d+(\.\d+)? min on CPU", title.source) and "smoke profile" in title.source

    assert cells[1].cell_type == "code" and cells[1].metadata.get("tags") == ["colab-install"]
    assert cells[1].source.strip() == COLAB_INSTALL

    par = cells[2]
    assert par.cell_type == "code" and "parameters" in par.metadata.get("tags", [])
    knobs = {}
    for line in par.source.splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"([A-Z][A-Z0-9_]*) = (None)\s+# (.+)", line.strip())
        assert m, f"parameters line must be `NAME = None  # comment`: {line!r}"
        knobs[m.group(1)] = m.group(3)
    assert list(knobs)[0] == "PROFILE"
    assert set(knobs) - {"PROFILE"} == set(_profiles(stem)["student"]), "knobs must equal the PROFILES keys"
    assert all(len(c) > 8 for c in knobs.values()), "each knob needs a comment saying what it is"

    setup = cells[3]
    assert setup.cell_type == "code" and "mednb.params(globals()" in setup.source

    heads = [(i, c.source.splitlines()[0]) for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source]
    h2 = [(i, h) for i, h in heads if h.startswith("## ")]
    names = [h for _, h in h2]
    for want in ("## Results", "## Exercises", "## Summary"):
        assert want in names, f"missing {want!r} section"
    assert names.index("## Results") < names.index("## Exercises") < names.index("## Summary")
    assert len(names) >= 4, "topic sections (## …) come before Results"
    i_res = dict((h, i) for i, h in h2)["## Results"]
    i_ex = dict((h, i) for i, h in h2)["## Exercises"]
    assert any("record(" in c.source for c in cells[i_res:i_ex] if c.cell_type == "code")
    exercises = cells[i_ex].source
    assert len(re.findall(r"^\s*\d+\.", exercises, flags=re.M)) >= 3, "3–5 numbered exercises"

    for c in cells:
        if c.cell_type != "code":
            continue
        assert not c.get("outputs") and c.get("execution_count") is None, "commit notebooks with outputs cleared"
        assert len(c.source.splitlines()) <= 40, f"code cell longer than 40 lines: {c.source[:60]!r}"
        ast.parse("\n".join(l for l in c.source.splitlines() if not l.lstrip().startswith(("%", "!"))))


@pytest.mark.parametrize("path", PATHS, ids=ids)
def test_profiles_table(path):
    table = _profiles(path.stem)
    assert set(table) == set(PROFILE_NAMES)
    keys = list(table["student"])
    for prof in PROFILE_NAMES:
        assert set(table[prof]) == set(keys), f"{prof} has different knobs"
        for k in keys:
            want, got = type(table["student"][k]), type(table[prof][k])
            assert got is want or (want is float and got is int), f"{prof}.{k}: {got.__name__} vs {want.__name__}"
    smoke = table["smoke"]
    for k, v in smoke.items():
        if "DATASET" in k:
            values = v if isinstance(v, list) else [v]
            assert all(str(x).startswith("phantom") for x in values), f"smoke {k} must use the built-in phantoms"
    from mednb.params import resolve
    for prof in PROFILE_NAMES:  # every table value passes the knob checks
        resolve({}, table, prof)


# ----------------------------------------------------------------------------- helpers behind notebook 00
def test_tour_tables_and_constant_predictors():
    from mednb import data, tour
    table = tour.medmnist_table()
    assert len(table) == 18 and (table["dims"] == 3).sum() == 6
    assert table.loc["chestmnist", "task"].startswith("multi-label") and table.loc["breastmnist", "total"] == 780
    assert set(table["licence"]) == {"CC BY 4.0", "CC BY-NC 4.0"}
    ds = data.load("phantom2d", counts=(40, 8, 200), cache=False)
    st = tour.dataset_stats(ds)
    assert st["n_train"] == 40 and st["class_fraction"] == [0.25] * 4 and st["imbalance_ratio"] == 1.0
    assert 0 < st["pixel_mean"] < 1 and 0 < st["lesion_fraction"] < 0.2 and st["lesion_contrast"] > 0
    skew = tour.imbalanced_splits(ds, share=0.9)
    counts = skew.class_counts("train")
    assert counts[0] / counts.sum() == pytest.approx(0.9, abs=0.03)
    const = tour.constant_predictors(skew)
    assert const.loc["majority", "acc"] == pytest.approx(counts[0] / counts.sum(), abs=0.1)
    assert const.loc["majority", "auc"] == 0.5 and const.loc["majority", "balanced_acc"] == 0.25


def test_site_gallery_stats():
    from mednb import tour
    sites = tour.site_stats(tour.site_gallery(dims=2, n=4))
    assert list(sites.index) == [0, 1, 2, 3]
    assert sites.loc[3, "mean_intensity"] < sites.loc[0, "mean_intensity"]  # gamma 2.2 darkens
    assert sites.loc[1, "neighbour_diff"] > sites.loc[0, "neighbour_diff"]  # noisier scanner


def test_slice_viewer_and_browser():
    from mednb import data, widgets
    vol = data.load("phantom3d", counts=(3, 0, 0), cache=False).train
    w = widgets.slice_viewer(vol.x, mask=vol.masks, labels=vol.y, class_names={0: "a", 1: "b", 2: "c", 3: "d"})
    caption, (img, (sample, axis, sl)) = w.children[0], (w.children[1].children[0], w.children[1].children[1].children)
    assert img.value[:8] == b"\x89PNG\r\n\x1a\n" and "axial slice 14/27" in caption.value
    axis.value, sl.value, sample.value = "sagittal", 3, 2
    assert "sample 2" in caption.value and "sagittal slice 3/27" in caption.value
    assert widgets.take_slice(vol.x[0], "coronal", 5).shape == (28, 28)
    assert (widgets.take_slice(vol.x[0], 2, 5) == vol.x[0, 0, :, :, 5].numpy()).all()
    with pytest.raises(ValueError, match="unknown axis"):
        widgets.take_slice(vol.x[0], "oblique", 0)
    b = widgets.image_browser(data.load("phantom2d", counts=(4, 0, 0), cache=False).train.x)
    assert b.children[1].children[0].value[:4] == b"\x89PNG"


def test_orthogonal_titles():
    import matplotlib.pyplot as plt
    from mednb import plot
    fig = plot.orthogonal(np.zeros((1, 20, 24, 28)), index=(3, 4, 5))
    assert [ax.get_title() for ax in fig.axes] == ["axial z=3", "coronal y=4", "sagittal x=5"]
    fig2 = plot.orthogonal(np.zeros((20, 24, 28)))
    assert [ax.get_title() for ax in fig2.axes] == ["axial z=10", "coronal y=12", "sagittal x=14"]
    plt.close("all")
