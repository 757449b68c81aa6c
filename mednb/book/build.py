"""``build(RUN_DIR, SITE, sweeps=...)``: the whole static site, written into a temp folder beside SITE and
swapped in when complete."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from markupsafe import Markup

from . import charts, notebooks, pages
from .source import EVIDENCE_FILES, BookError, check_sweep, load_run, run_sweeps

MARKER = ".mednb-book"
SWEEP_FILES = ("leaderboard.md", "results.csv", "sweep.json")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "sweep"


def _check_target(site: Path, sources: list[Path]) -> None:
    for s in sources:
        if site == s or site in s.parents:
            raise BookError(f"--out {site} would replace the folder it is built from ({s}); choose another --out")
    if site.exists() and (not site.is_dir() or (any(site.iterdir()) and not (site / MARKER).is_file())):
        raise BookError(f"{site} exists and is not a book built by mednb; choose another --out or remove it")


def _swap(tmp: Path, site: Path) -> None:
    """Put the finished ``tmp`` at ``site``; a previous book there is removed only once the new one is in place."""
    old = None
    if site.exists():
        old = site.with_name(f".{site.name}.old-{os.getpid()}")
        os.replace(site, old)
    os.replace(tmp, site)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _sweep_pages(sweep_dirs: list[Path]) -> list[dict]:
    from ..sweep.report import collect
    out, seen = [], set()
    for d in sweep_dirs:
        rep = collect(d)
        name = rep["spec"].get("name") or d.name
        slug = _slug(d.name if name in seen else name)
        seen.add(name)
        out.append({"dir": d, "rep": rep, "name": name if slug == _slug(name) else d.name, "slug": slug,
                    "page": f"leaderboard-{slug}.html"})
    return out


def build(run_dir, site, sweeps=(), *, auto_sweeps: bool = True, log=print) -> Path:
    """Build the book of the run folder ``run_dir`` into ``site`` (replaced atomically) and return its
    index.html. ``sweeps``: sweep folders to add a leaderboard page for; with ``auto_sweeps`` the folder
    notebook 10 reported on is added too when it still exists. Raises :class:`BookError` on bad input,
    before anything is written."""
    t0 = time.perf_counter()
    run = load_run(run_dir)
    sweep_dirs = [check_sweep(s) for s in sweeps]
    if auto_sweeps:
        sweep_dirs += [d for d in run_sweeps(run) if d not in sweep_dirs]
    site = Path(site).expanduser().resolve()
    _check_target(site, [run.dir, *sweep_dirs])
    site.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=site.parent, prefix=f".{site.name}.building-"))
    try:
        _write(run, _sweep_pages(sweep_dirs), tmp)
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the site from a web server
        _swap(tmp, site)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n = sum(1 for _ in site.rglob("*.html"))
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    log(f"book: {n} pages, {size / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s → {site / 'index.html'}")
    return site / "index.html"


def _write(run, sweeps: list[dict], out: Path) -> None:
    from .. import claims as C
    from ..runner import collect, collect_claims
    env = pages.environment()
    title = f"mednb — {run.profile} run"
    (out / "assets").mkdir()
    (out / "assets" / "book.css").write_text(pages.CSS, encoding="utf-8")
    (out / "assets" / "jupyterlab.css").write_text(notebooks.lab_css(), encoding="utf-8")
    (out / ".nojekyll").write_text("")  # GitHub Pages: serve the folder as it is
    (out / MARKER).write_text(json.dumps({"run": str(run.dir), "sweeps": [str(s["dir"]) for s in sweeps]}) + "\n")

    order = [("index.html", "Index"), *((e.page, e.stem) for e in run.entries), ("claims.html", "Claims"),
             *((s["page"], f"Leaderboard: {s['name']}") for s in sweeps)]

    def chrome(page: str) -> dict:
        i = [p for p, _ in order].index(page)
        return {"nav": Markup(pages.render(env, "nav", title=title, entries=run.entries, sweeps=sweeps,
                                           current=page)),
                "pager": Markup(pages.render(env, "pager", prev=order[i - 1] if i else None,
                                             next=order[i + 1] if i + 1 < len(order) else None))}

    def page(name: str, template: str, page_title: str, **ctx) -> None:
        html = pages.render(env, template, title=title, page_title=page_title, run=run, **chrome(name), **ctx)
        (out / name).write_text(html, encoding="utf-8")

    # the run's own evidence files, linked from the index
    (out / "data").mkdir()
    files = [f for f in EVIDENCE_FILES if (run.dir / f).is_file()]
    for f in files:
        shutil.copyfile(run.dir / f, out / "data" / f)
    per_nb = [(stem, ", ".join(f"{k}={v}" for k, v in (info.get("parameters") or {}).items()
                               if k not in ("device", "device_name", "profile")))
              for stem, info in (run.env.get("notebooks") or {}).items()]
    status = {"notebooks": {e.stem: {} for e in run.entries}}
    claims = collect_claims(run.dir, status)
    problems = C.budget_problems(collect(run.dir, status))
    page("index.html", "index", "Index", env=run.env, n_ok=sum(e.ok for e in run.entries), sweeps=sweeps,
         n_claims=len(claims), per_nb=per_nb, files=files)
    page("claims.html", "claims", "Claims", claims=[{**c, "claim": C.label(c)} for c in claims], problems=problems,
         columns=C.COLUMNS)

    exp = notebooks.exporter()
    for e in run.entries:
        banner = Markup("" if e.ok else pages.render(env, "failed", e=e))
        if e.path is None:
            page(e.page, "missing", e.stem, e=e, banner=banner)
            continue
        (out / e.page).write_text(notebooks.render(e.path, {"banner": banner, **chrome(e.page)}, exp),
                                  encoding="utf-8")

    for s in sweeps:
        _leaderboard(s, out, page)


def _leaderboard(s: dict, out: Path, page) -> None:
    from ..sweep import tables
    rep = s["rep"]
    found = charts.write_charts(rep, out / "charts", s["slug"])
    tab = lambda df: Markup(df.to_html(index=False, na_rep=tables.DASH, border=0, escape=True))  # noqa: E731
    (out / "data" / s["slug"]).mkdir(parents=True)
    files = [f for f in SWEEP_FILES if (s["dir"] / f).is_file()]
    for f in files:
        shutil.copyfile(s["dir"] / f, out / "data" / s["slug"] / f)
    page(s["page"], "leaderboard", f"Leaderboard {s['name']}", s=s, charts=found, files=files,
         header=[Markup(tables._inline(h)) for h in tables.header(rep)[1:]],
         main_table=tab(tables.main_table(rep["board"])), detail_table=tab(tables.detail_table(rep["board"])),
         failures=rep["failures"], env_lines=tables.env_lines(rep))
