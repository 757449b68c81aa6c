"""What a book is built from: a ``mednb run`` output folder (and the sweep folders it reported on)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

RUN_HOLDS = ("executed notebooks <stem>.ipynb", "status.json", "env.json", "report.md", "claims.md",
             "metrics.jsonl", "results.csv")
EVIDENCE_FILES = ("report.md", "claims.md", "results.csv", "metrics.jsonl", "env.json")


class BookError(ValueError):
    """A folder that cannot be made into a book (one clear line)."""


@dataclass
class Entry:
    """One notebook of the run: its status, wall time, error, the executed file and what it teaches."""
    stem: str
    status: str
    seconds: float | None
    error: str = ""
    traceback: str = ""
    path: Path | None = None
    title: str = ""
    teaches: str = ""

    @property
    def page(self) -> str:
        return f"{self.stem}.html"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Run:
    """A run folder read back: ``status.json``, ``env.json`` and one :class:`Entry` per notebook."""
    dir: Path
    profile: str
    env: dict
    entries: list[Entry] = field(default_factory=list)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BookError(f"{path} cannot be read as JSON ({e})") from None


def _not_a_run(d: Path, why: str) -> BookError:
    hint = " (it holds sweep.json: pass it with --sweep, and a run folder as DIR)" if (d / "sweep.json").exists() else ""
    return BookError(f"{d} is not a mednb run folder: {why}{hint}. A run folder, written by "
                     f"`mednb run --out DIR`, holds {', '.join(RUN_HOLDS)}")


def curriculum(readme: Path | None = None) -> dict[str, str]:
    """``{stem: what it teaches}`` from the notebooks table of the clone's README (empty when absent)."""
    if readme is None:
        from ..data import repo_root
        root = repo_root()
        readme = root / "README.md" if root else None
    if readme is None or not readme.is_file():
        return {}
    rows = re.findall(r"^\|\s*`(\d\d_[\w]+)`\s*\|\s*(.+?)\s*\|\s*$", readme.read_text(encoding="utf-8"), re.M)
    return dict(rows)


def title_of(path: Path | None) -> str:
    """The first Markdown heading of a notebook, without its ``#`` (empty when none)."""
    if path is None:
        return ""
    import nbformat
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # noqa: BLE001 - a truncated notebook still gets a page
        return ""
    for c in nb.cells:
        if c.cell_type == "markdown":
            m = re.search(r"^#+\s+(.+)$", c.source, re.M)
            if m:
                return m.group(1).strip()
    return ""


def load_run(run_dir) -> Run:
    """Read a run folder; raises :class:`BookError` naming what a run folder holds when it is not one."""
    d = Path(run_dir).expanduser()
    if not d.is_dir():
        raise BookError(f"{d} does not exist or is not a folder; give the --out folder of a `mednb run`")
    if not (d / "status.json").is_file():
        raise _not_a_run(d, "it has no status.json")
    status = _json(d / "status.json")
    if not isinstance(status.get("notebooks"), dict):
        raise _not_a_run(d, "its status.json lists no notebooks")
    env = _json(d / "env.json") if (d / "env.json").is_file() else {}
    teaches = curriculum()
    run = Run(d.resolve(), str(status.get("profile") or env.get("profile") or "?"), env)
    for stem, st in status["notebooks"].items():
        path = d / f"{stem}.ipynb"
        path = path if path.is_file() else None
        run.entries.append(Entry(stem, st.get("status", "unknown"), st.get("seconds"), st.get("error") or "",
                                 st.get("traceback") or "", path, title_of(path), teaches.get(stem, "")))
    return run


def check_sweep(sweep_dir) -> Path:
    """A sweep folder (``units/`` or ``sweep.json``); raises :class:`BookError` otherwise."""
    d = Path(sweep_dir).expanduser()
    if not d.is_dir() or not ((d / "units").is_dir() or (d / "sweep.json").is_file()):
        raise BookError(f"{d} is not a sweep folder: a sweep folder, written by `mednb sweep SPEC --out DIR`, holds "
                        "sweep.json and units/ (one `mednb run` folder per unit)")
    return d.resolve()


def run_sweeps(run: Run) -> list[Path]:
    """The sweep folders a run's notebook 10 reported on, when they still exist (SWEEP_DIR, OUT, else the
    default folder of its SPEC)."""
    found = []
    for stem, info in (run.env.get("notebooks") or {}).items():
        p = (info or {}).get("parameters") or {}
        if "SPEC" not in p and "SWEEP_DIR" not in p:
            continue
        cand = p.get("SWEEP_DIR") or p.get("OUT")
        if not cand and p.get("SPEC"):
            try:
                from ..leaderboard import default_out
                cand = default_out(p["SPEC"])
            except Exception:  # noqa: BLE001 - a spec that no longer loads: no sweep page
                cand = None
        if cand and (Path(cand) / "sweep.json").is_file() and Path(cand).resolve() not in found:
            found.append(Path(cand).resolve())
    return found
