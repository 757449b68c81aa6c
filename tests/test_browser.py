"""JupyterLab in a real browser: notebooks run from the UI and their widgets respond to the mouse.

A module fixture starts ``jupyter lab`` on a free loopback port (no token, smoke profile, every cache and
setting in a temp folder, copies of the notebooks as its root) and headless Chromium driven by Playwright;
at teardown it stops both and checks that no process they started is left. A notebook passes when no cell
shows a traceback, "Error displaying widget" or a figure as text, and no uncaught JavaScript exception occurs.
Each test saves screenshots in its tmp folder. Outside CI (``CI`` != ``true``) the file skips when playwright or chromium is missing;
under CI it fails instead.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import NOTEBOOKS

CI = os.environ.get("CI") == "true"
CHROMIUM = next((p for p in (os.environ.get("MEDNB_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p and os.access(p, os.X_OK)), None)
TIMEOUT_S = 300          # one notebook's run from the UI, with margin for a loaded 2-core machine
SERVER_START_S = 90


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed: pip install -e '.[dev]'"
    if CHROMIUM is None:
        return "chromium not installed: apt-get install chromium (or set MEDNB_CHROMIUM to its path)"
    return None


MISSING = _missing()
if MISSING and not CI:
    pytest.skip(MISSING, allow_module_level=True)

# JupyterLab user settings: every cell stays in the DOM (no virtual scrolling), no news or update toasts.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}
ERROR_JS = r"""() => {
  const bad = [];
  for (const o of document.querySelectorAll('.jp-OutputArea-output')) {
    const t = o.innerText || '';
    if (o.dataset.mimeType === 'application/vnd.jupyter.stderr' && /Traceback|\w+Error\b/.test(t)) bad.push(t);
    if (/Error displaying widget/.test(t)) bad.push(t);
    if (/^\s*<Figure size [^>]*>\s*$/.test(t)) bad.push('a figure shown as text, not as an image: ' + t);
  }
  return bad.map(t => t.slice(0, 2000));
}"""
# every code cell's prompt shows an execution count, e.g. "[7]:" (not "[ ]:" or "[*]:")
ALL_EXECUTED_JS = r"""() => {
  const cells = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')];
  return cells.length > 0 && cells.every(c => /\[\d+\]/.test(c.querySelector('.jp-InputPrompt').textContent));
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, method: str = "GET"):
    req = urllib.request.Request(base + path, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


def _descendants(pid: int) -> set:
    import psutil
    try:
        return {(p.pid, p.create_time()) for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _alive(procs: set) -> list:
    """The (pid, create_time) pairs that are still running (a reused pid does not count)."""
    import psutil
    out = []
    for pid, t in procs:
        try:
            p = psutil.Process(pid)
            if p.create_time() == t and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _reap(procs, grace: float = 10.0) -> list:
    """Wait up to ``grace`` s for ``procs`` to exit, kill the ones still alive and return those."""
    deadline = time.monotonic() + grace
    while _alive(procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _alive(procs)
    for p in left:
        p.kill()
    return left


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab (base URL) over copies of the notebooks, stopped with all its kernels at the end."""
    if MISSING:
        pytest.fail(f"CI=true but {MISSING}")
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    for nb in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(nb, root / nb.name)
    for rel, value in LAB_SETTINGS.items():
        f = tmp / "lab-settings" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEDNB_", "JUPYTER", "IPYTHON")) or k == "MEDNB_THREADS"}
    env.update(MEDNB_PROFILE="smoke", MEDNB_CACHE=str(tmp / "cache"), MEDNB_DATA=str(tmp / "data"),
               JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"), JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"),
               JUPYTER_DATA_DIR=str(tmp / "jupyter-data"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "lab-workspaces"), IPYTHONDIR=str(tmp / "ipython"))
    env.pop("MPLBACKEND", None)  # kernels use their inline backend
    (tmp / "data").mkdir()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--IdentityProvider.token=",
           "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}",
           "--ServerApp.terminals_enabled=False",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=None"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    log = open(tmp / "jupyter.log", "wb")
    server = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    seen: set = set()
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                _api(base, "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not answer on {base}:\n"
                                       + (tmp / "jupyter.log").read_text(errors="replace")[-3000:])
                time.sleep(0.3)
        yield {"base": base, "root": root, "log": tmp / "jupyter.log", "server": server, "seen": seen}
        seen |= _descendants(server.pid)
        try:
            _api(base, "/api/shutdown", "POST")  # shuts every kernel down, then the server
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            pass
    finally:
        seen |= _descendants(server.pid)
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()
        left = _reap(seen)
    assert server.returncode is not None
    assert not left, f"processes left after jupyter lab stopped: {[(p.pid, p.name()) for p in left]}"


@pytest.fixture(scope="module")
def browser(lab):
    """Headless Chromium (Debian's), closed with its Playwright driver at the end; no process left behind."""
    from playwright.sync_api import sync_playwright
    before = _descendants(os.getpid())
    pw = sync_playwright().start()
    started: set = set()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield b
        finally:
            started = _descendants(os.getpid()) - before - _descendants(lab["server"].pid)
            b.close()
    finally:
        pw.stop()
    left = _reap(started)
    assert not left, f"browser processes left: {[(p.pid, p.name()) for p in left]}"


@pytest.fixture
def page(lab, browser, tmp_path):
    """A fresh browser page; at the end its kernels are shut down, its console errors are written to
    tmp_path, and an uncaught JavaScript exception fails the test."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    try:
        yield pg
    finally:
        try:
            snap(pg, tmp_path, "last")
        except Exception:  # a page that already failed still gets its kernels shut down below
            pass
        (tmp_path / "browser-errors.txt").write_text("\n".join(errors))
        ctx.close()
        lab["seen"] |= _descendants(lab["server"].pid)  # the kernels, checked again at the end
        for s in _api(lab["base"], "/api/sessions") or []:
            _api(lab["base"], f"/api/sessions/{s['id']}", "DELETE")
    uncaught = [e for e in errors if e.startswith("pageerror: ")]
    assert not uncaught, "uncaught JavaScript exceptions:\n" + "\n".join(uncaught)


# ---------------------------------------------------------------------------------------------- helpers
def open_notebook(page, lab, name: str):
    """Open ``name`` in a fresh JupyterLab workspace and wait until its kernel is idle."""
    page.goto(f"{lab['base']}/lab/tree/{name}?reset")
    page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=60_000)
    deadline = time.monotonic() + 60
    while not any(s["path"] == name and s["kernel"]["execution_state"] == "idle"
                  for s in _api(lab["base"], "/api/sessions")):
        assert time.monotonic() < deadline, f"no idle kernel for {name} after 60 s"
        time.sleep(0.3)
    wait_idle(page, 60)


def wait_idle(page, timeout_s: float = TIMEOUT_S):
    page.wait_for_selector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]',
                           timeout=timeout_s * 1000)


def code_cell(page, contains: str):
    """The code cell whose source contains ``contains``."""
    cells = page.locator(".jp-NotebookPanel .jp-CodeCell")
    for i in range(cells.count()):
        if contains in cells.nth(i).locator(".jp-InputArea-editor").inner_text():
            return cells.nth(i)
    raise AssertionError(f"no code cell contains {contains!r}")


def run_cells(page, *contains: str, timeout_s: float = TIMEOUT_S):
    """Select each cell (by a piece of its source) with the mouse, run it with Ctrl+Enter, wait for all."""
    for text in contains:
        prompt = code_cell(page, text).locator(".jp-InputPrompt")
        prompt.click()
        page.keyboard.press("Control+Enter")
        prompt.filter(has_text=re.compile(r"\[(\d+|\*)\]")).wait_for(timeout=10_000)  # queued or done
    for text in contains:
        prompt = code_cell(page, text).locator(".jp-InputPrompt")
        prompt.filter(has_text=re.compile(r"\[\d+\]")).wait_for(timeout=timeout_s * 1000)
    wait_idle(page, timeout_s)


def wait_all_executed(page, tmp_path: Path, timeout_s: float = TIMEOUT_S):
    """Wait until every code cell shows an execution count and the kernel is idle."""
    deadline = time.monotonic() + timeout_s
    while not (page.evaluate(ALL_EXECUTED_JS) and kernel_status(page) == "idle"):
        if time.monotonic() > deadline:
            snap(page, tmp_path, "timeout")
            prompts = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt").all_inner_texts()
            raise AssertionError(f"cells not all executed after {timeout_s} s (kernel {kernel_status(page)}): "
                                 f"{prompts}; see {tmp_path}")
        time.sleep(0.5)


def kernel_status(page) -> str | None:
    return page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator").first.get_attribute("data-status")


def add_cell_and_run(page, source: str) -> str:
    """Insert a cell below the selected one (key ``b``), type ``source``, run it; returns its output text."""
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.keyboard.type(source)
    page.keyboard.press("Control+Enter")
    cell = page.locator(".jp-NotebookPanel .jp-Cell.jp-mod-selected")
    cell.locator(".jp-InputPrompt").filter(has_text=re.compile(r"\[\d+\]")).wait_for(timeout=60_000)
    wait_idle(page, 60)
    return cell.locator(".jp-OutputArea").inner_text()


def assert_no_errors(page):
    bad = page.evaluate(ERROR_JS)
    assert not bad, "error output in the notebook:\n" + "\n---\n".join(bad)
    assert page.locator("text=Error displaying widget").count() == 0


def snap(page, tmp_path: Path, name: str):
    page.screenshot(path=str(tmp_path / f"{name}.png"))


def image_bytes(locator) -> bytes:
    return locator.screenshot()


# ---------------------------------------------------------------------------------------------- tests
def test_tour_runs_all_from_the_menu_and_the_image_browser_follows_its_slider(page, lab, tmp_path):
    t0 = time.monotonic()
    open_notebook(page, lab, "00_medmnist_tour.ipynb")
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    wait_all_executed(page, tmp_path)
    print(f"notebook 00 ran from the UI in {time.monotonic() - t0:.1f} s")
    snap(page, tmp_path, "00_run_all")
    assert_no_errors(page)
    assert page.locator(".jp-NotebookPanel .jupyter-widgets.widget-slider").count() >= 2  # browser + viewer

    browser_cell = code_cell(page, "widgets.image_browser(")
    box = browser_cell.locator(".jp-OutputArea .widget-vbox").first
    box.scroll_into_view_if_needed()
    caption = box.locator(".widget-html").first
    img = box.locator("img").first
    assert "image 0" in caption.inner_text()
    src0, png0 = img.get_attribute("src"), image_bytes(img)
    box.screenshot(path=str(tmp_path / "00_browser_before.png"))

    handle = box.locator(".noUi-handle").first
    track = box.locator(".noUi-target").first
    hb, tb = handle.bounding_box(), track.bounding_box()
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    for f in (0.3, 0.5, 0.75):
        page.mouse.move(tb["x"] + f * tb["width"], tb["y"] + tb["height"] / 2, steps=5)
    page.mouse.up()
    page.wait_for_function("([el, s]) => el.getAttribute('src') !== s", arg=[img.element_handle(), src0])
    wait_idle(page, 30)
    box.screenshot(path=str(tmp_path / "00_browser_after.png"))
    moved = caption.inner_text()
    assert re.search(r"image (\d+)", moved) and "image 0" not in moved, moved
    assert image_bytes(img) != png0, "the image did not change with the slider"
    assert_no_errors(page)


def test_labelling_panel_records_a_click(page, lab, tmp_path):
    open_notebook(page, lab, "06_active_learning.ipynb")
    run_cells(page, "mednb.params(globals()", "splits = active.load_data(", "panel = active.LabelingPanel(")
    assert_no_errors(page)
    cell = code_cell(page, "panel = active.LabelingPanel(")
    toggles = cell.locator(".jp-OutputArea .widget-toggle-buttons")
    assert toggles.count() == 8, "one label toggle per proposed sample"
    first = toggles.first
    first.scroll_into_view_if_needed()
    snap(page, tmp_path, "06_panel_before")
    first.locator("button").nth(1).click()
    page.wait_for_function("el => el.classList.contains('mod-active')", arg=first.locator("button").nth(1)
                           .element_handle(), timeout=10_000)
    snap(page, tmp_path, "06_panel_clicked")
    out = add_cell_and_run(page, 'print("ANSWERS", panel.answers)')
    snap(page, tmp_path, "06_panel_read_back")
    assert cell.locator(".jp-OutputArea img").count() >= 9, "8 sample tiles and the learning curve"
    m = re.search(r"ANSWERS (\[.*\])", out)
    assert m, out
    assert m.group(1) == "[1, None, None, None, None, None, None, None]", out
    assert_no_errors(page)


def test_augmentation_explorer_follows_its_dropdown(page, lab, tmp_path):
    open_notebook(page, lab, "02_augmentation.ipynb")
    run_cells(page, "mednb.params(globals()", "i = int(torch.nonzero(ph2", "augment.explorer(")
    assert_no_errors(page)
    box = code_cell(page, "augment.explorer(").locator(".jp-OutputArea .widget-vbox").first
    box.scroll_into_view_if_needed()
    caption = box.locator(".widget-html").first
    before, after = box.locator("img").nth(0), box.locator("img").nth(1)
    assert "strong" in caption.inner_text()
    b0, a0, src0 = image_bytes(before), image_bytes(after), after.get_attribute("src")
    box.screenshot(path=str(tmp_path / "02_explorer_before.png"))
    box.locator(".widget-dropdown select").select_option("elastic")
    page.wait_for_function("([el, s]) => el.getAttribute('src') !== s", arg=[after.element_handle(), src0])
    wait_idle(page, 30)
    box.screenshot(path=str(tmp_path / "02_explorer_after.png"))
    assert "elastic" in caption.inner_text()
    assert image_bytes(after) != a0, "the augmented image did not change with the policy"
    assert image_bytes(before) == b0, "the original image must not change"
    assert_no_errors(page)
