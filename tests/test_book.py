"""mednb book: a run folder (two tiny notebooks and a failing one, run by `mednb run --book`) and a
hand-made sweep folder become a static site; every page exists, every link and image inside it resolves,
nothing is loaded from the network, and (with Chromium) every page loads without a console error."""
from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from conftest import write_notebook
from mednb import book, cli

CLAIM = '''from mednb import claims
claims.claim("alpha beats nothing", claims.paired([0.9, 0.8], [0.5, 0.6]), comparison="demo", steps=10,
             citation="Doe 2024", paper=0.7)'''
FIGURE = '''import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
import matplotlib.pyplot as plt
import mednb
plt.plot([0, 1], [1, 0]); plt.title("a line"); plt.show()
mednb.record("test_auc", 0.91, dataset="phantom2d", seed=0)'''
WIDGET = '''import ipywidgets as W
out = W.Output()
with out:
    print("printed inside an Output widget")
W.VBox([W.IntSlider(3, min=0, max=9, description="knob"), W.HTML("<b>saved label</b>"), out])'''


def _notebooks(d: Path) -> Path:
    for name, body, title in (("00_alpha", [FIGURE, CLAIM], "Alpha: a figure and a claim"),
                              ("01_beta", [WIDGET], "Beta: a widget"),
                              ("02_gamma", ['raise ValueError("boom: the phantom ran away")'], "Gamma fails")):
        p = write_notebook(d / f"{name}.ipynb", {}, body)
        nb = nbformat.read(p, as_version=4)
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"# {title}\n\n[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/mednb/mednb/blob/main/notebooks/{name}.ipynb)"))
        nbformat.write(nb, p)
    return d


def _unit(root: Path, name: str, dataset: str, model: str, seed: int, auc: float, acc: float) -> None:
    """One unit folder in the layout `mednb sweep` writes, with notebook 01's detail records."""
    d = root / "units" / name
    d.mkdir(parents=True)
    params = {"DATASET": dataset, "MODEL": model, "SEEDS": [seed], "SIZE": 28}
    (d / "unit.json").write_text(json.dumps({"notebook": "01_baseline_medmnist.ipynb", "profile": "smoke",
                                             "params": params}))
    (d / "status.json").write_text(json.dumps({"status": "ok", "seconds": 12.0, "commit": "abc", "device": "cpu"}))
    tags = {"dataset": dataset, "model": model, "seed": seed, "size": 28}
    recs = [{"metric": "test_auc", "value": auc}, {"metric": "test_acc", "value": acc},
            *({"metric": "test_recall", "value": v, "class": c, "label": f"class {c}"} for c, v in enumerate([.6, .9])),
            *({"metric": "test_reliability", "value": a, "bin": b, "n_bins": 10, "confidence": b / 10 + .05,
               "count": 20} for b, a in ((6, .55), (8, .8), (9, .9)))]
    (d / "metrics.jsonl").write_text("".join(json.dumps({"notebook": "01_baseline_medmnist", **r, **tags}) + "\n"
                                             for r in recs))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`mednb run --book` over the three notebooks, then `mednb book` with a two-seed sweep folder."""
    base = tmp_path_factory.mktemp("book")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDNB_DATA", str(base / "data"))
        mp.setenv("MEDNB_CACHE_IN_DATA", "1")
        rc = cli.main(["run", "--profile", "smoke", "--out", str(base / "run"), "--book",
                       "--notebooks-dir", str(_notebooks(base / "nbs"))])
    sweep = base / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"spec": {"name": "tiny", "notebook": "01_baseline_medmnist",
                                                           "profile": "smoke"}, "evidence": {"commit": "abc"}}))
    for s, (auc, acc) in enumerate([(0.88, 0.84), (0.90, 0.86)]):
        _unit(sweep, f"breast-cnn-s{s}", "breastmnist", "cnn", s, auc, acc)
        _unit(sweep, f"ph-resnet18-s{s}", "phantom2d", "resnet18", s, 0.95 + s / 100, 0.9)
    assert cli.main(["book", str(base / "run"), "--out", str(base / "site"), "--sweep", str(sweep)]) == 0
    return {"base": base, "rc": rc, "site": base / "site", "run": base / "run"}


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v:
                self.refs.append((tag, k, v))


def _refs(page: Path) -> list[tuple[str, str, str]]:
    p = _Refs()
    p.feed(page.read_text(encoding="utf-8"))
    return p.refs


def test_run_book_and_every_page(built):
    site, run = built["site"], built["run"]
    assert built["rc"] == 1  # 02_gamma failed; the book is still built
    assert (run / "site" / "index.html").is_file()  # mednb run --book
    names = {"index.html", "claims.html", "00_alpha.html", "01_beta.html", "02_gamma.html", "leaderboard-tiny.html"}
    assert names <= {p.name for p in site.glob("*.html")}
    index = (site / "index.html").read_text()
    for stem in ("00_alpha", "01_beta", "02_gamma"):
        assert f'href="{stem}.html"' in index
    assert "Alpha: a figure and a claim" in index and "status-failed" in index
    assert 'name="viewport"' in index and "2/3 ok" in index


def test_no_broken_link_and_nothing_from_the_network(built):
    site = built["site"]
    pages = sorted(site.rglob("*.html"))
    checked = 0
    for page in pages:
        for tag, attr, ref in _refs(page):
            url = urlsplit(ref)
            if url.scheme in ("http", "https"):
                assert tag == "a", f"{page.name}: <{tag} {attr}={ref}> loads from the network"
                continue
            if url.scheme in ("data", "mailto") or not url.path:
                continue
            assert not url.scheme and not ref.startswith("/"), f"{page.name}: {ref} is not a relative link"
            target = (page.parent / unquote(url.path)).resolve()
            assert target.is_file() and site.resolve() in target.parents, f"{page.name}: broken {attr} {ref}"
            checked += 1
    assert checked > 20
    for page in pages:
        text = page.read_text()
        assert "require.js" not in text and "mathjax" not in text.lower() and "unpkg.com" not in text


def test_failed_widget_and_figure_pages(built):
    site = built["site"]
    gamma = (site / "02_gamma.html").read_text()
    assert "This notebook failed" in gamma and "boom: the phantom ran away" in gamma and "ValueError" in gamma
    alpha = (site / "00_alpha.html").read_text()
    assert '<img' in alpha and "data:image/png;base64," in alpha  # the figure, embedded
    assert 'href="https://colab.research.google.com/github/mednb/mednb/blob/main/notebooks/00_alpha.ipynb"' in alpha
    beta = (site / "01_beta.html").read_text()
    assert "Interactive widget." in beta and "jupyter lab notebooks/" in beta
    assert "saved label" in beta and "printed inside an Output widget" in beta and "knob: <b>3</b>" in beta
    assert "application/vnd.jupyter.widget-state+json" in beta  # the saved state stays in the page
    assert 'href="02_gamma.html" rel="next"' in beta


def test_claims_and_leaderboard_pages(built):
    site = built["site"]
    claims = (site / "claims.html").read_text()
    assert "<table>" in claims and "alpha beats nothing" in claims and "Doe 2024" in claims
    board = (site / "leaderboard-tiny.html").read_text()
    imgs = [ref for tag, _, ref in _refs(site / "leaderboard-tiny.html") if tag == "img"]
    assert any("ours-vs-paper-auc" in i for i in imgs) and any("reliability-cnn" in i for i in imgs)
    assert any("reliability-resnet18" in i for i in imgs)
    svg = (site / imgs[0]).read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "breastmnist" in svg
    assert "0.890 ± 0.014 (n=2)" in board and "no paper row" in board


def test_errors_and_atomic_rebuild(built, tmp_path, capsys):
    site, run = built["site"], built["run"]
    with pytest.raises(book.BookError, match=r"not a mednb run folder: it has no status.json.*status.json, env.json"):
        book.build(tmp_path, tmp_path / "out")
    with pytest.raises(book.BookError, match="pass it with --sweep"):
        book.build(built["base"] / "sweep", tmp_path / "out")
    with pytest.raises(book.BookError, match="is not a sweep folder"):
        book.build(run, tmp_path / "out", [tmp_path])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(book.BookError, match="is not a book built by mednb"):
        book.build(run, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(book.BookError, match="would replace the folder it is built from"):
        book.build(run, run.parent)
    assert cli.main(["book", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (site / "stale.html").write_text("from an earlier build")
    book.build(run, site, auto_sweeps=False)
    assert not (site / "stale.html").exists() and not (site / "leaderboard-tiny.html").exists()
    assert not [p for p in site.parent.iterdir() if p.name.startswith(".site.")]  # no temp folder left


# ----------------------------------------------------------------------------- in Chromium
CI = os.environ.get("CI") == "true"
CHROMIUM = next((p for p in (os.environ.get("MEDNB_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p and os.access(p, os.X_OK)), None)


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed: pip install -e '.[dev]'"
    return None if CHROMIUM else "chromium not installed: apt-get install chromium (or set MEDNB_CHROMIUM)"


def test_every_page_loads_in_chromium_without_console_errors(built, tmp_path):
    """Each page from file:// in headless Chromium (desktop and phone sizes): no console or page error, no
    request leaving the file system, every image decoded. Skips outside CI when the browser is missing."""
    missing = _browser_missing()
    if missing:
        (pytest.fail if CI else pytest.skip)(missing)
    from playwright.sync_api import sync_playwright
    site = built["site"]
    book.build(built["run"], site, [built["base"] / "sweep"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            for i, page_file in enumerate(sorted(site.glob("*.html"))):
                pg = browser.new_page(viewport={"width": 390, "height": 844} if i % 2 else None)
                errors: list[str] = []
                pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                pg.on("pageerror", lambda e: errors.append(str(e)))
                pg.on("requestfailed", lambda r: errors.append(f"failed {r.url}"))
                pg.on("request", lambda r: errors.append(f"network {r.url}") if r.url.startswith("http") else None)
                pg.goto(page_file.as_uri(), wait_until="load")
                broken = pg.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
                                     ".map(i => i.src.slice(0, 80))")
                assert not errors and not broken, f"{page_file.name}: {errors} {broken}"
                if page_file.name == "index.html":
                    pg.screenshot(path=str(tmp_path / "index.png"))
                pg.close()
        finally:
            browser.close()


def test_the_sweep_notebook_10_reported_on_is_found(built, tmp_path):
    run = book.load_run(built["run"])
    assert book.run_sweeps(run) == []
    run.env["notebooks"] = {"10_benchmark_leaderboard": {"parameters": {"SWEEP_DIR": str(built["base"] / "sweep"),
                                                                        "SPEC": "smoke", "OUT": ""}},
                            "11_gone": {"parameters": {"SWEEP_DIR": str(tmp_path / "gone"), "SPEC": "smoke"}}}
    assert book.run_sweeps(run) == [(built["base"] / "sweep").resolve()]
