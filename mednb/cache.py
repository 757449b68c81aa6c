"""What mednb keeps in its cache root, and pruning what the installed code can no longer read.

The cache root (:func:`mednb.runtime.cache_root`) holds:

- ``checkpoints/<kind>/<code version>/*.pt`` — weights the notebooks train (kind: ssl, seg, cam, transfer,
  active). Only the folder of the installed :func:`~mednb.runtime.code_version` is read, so the other
  folders are weights of older (or newer) mednb code: stale here, removed by :func:`prune`.
- ``phantoms/<name>_…_g<generator>.npz`` — phantom arrays. Only files of the installed
  :func:`phantom_generator` are read; the others are stale.
- ``sweeps/<spec>-<hash>/`` — notebook 10's sweep folders: results, listed but never pruned.

Files are written atomically through a hidden temp file (``.<name>.<random>``); one older than an hour was
left by a killed process and is stale too.

Everything except the sweeps is regenerated on demand, so pruning only costs retraining time.
"""
from __future__ import annotations

import functools
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import phantoms
from .runtime import cache_root, code_version, source_hash

_GENERATOR = re.compile(r"_g([0-9a-f]+)\.npz$")
#: a hidden file (``.<name>.<random>``: an atomic write's temp file) this old was left by a killed process
ORPHAN_AFTER_S = 3600.0


def phantom_path(name: str, size: int, counts, site: int, seed: int, n_classes: int,
                 root: Path | None = None) -> Path:
    """The cached arrays of one phantom: ``<root or cache_root()>/phantoms/<name>_…_g<generator>.npz``, where
    ``<generator>`` is :func:`phantom_generator` (a changed generator never reloads old arrays)."""
    root = Path(root) if root is not None else cache_root()
    c = "-".join(str(int(n)) for n in counts)
    return root / "phantoms" / f"{name}_{size}_site{site}_seed{seed}_k{n_classes}_n{c}_g{phantom_generator()}.npz"


@functools.lru_cache(maxsize=1)
def phantom_generator() -> str:
    """The version of the phantom generator: :func:`mednb.runtime.source_hash` of :mod:`mednb.phantoms`."""
    return source_hash([phantoms.__file__])


@dataclass
class Entry:
    """One group of cache files: ``what`` (``checkpoints/ssl``, ``phantoms``, ``sweeps/<name>``), the code
    or generator ``version`` that wrote them (None: written before versions were recorded), ``stale``
    (the installed mednb never reads them) and ``why`` (the reason, or ``current`` / ``results``), their
    ``paths`` (files, or one folder), and the number of files and bytes they held when listed."""
    what: str
    version: str | None
    why: str
    paths: list[Path] = field(default_factory=list)
    n_files: int = 0
    nbytes: int = 0

    def __post_init__(self):
        files = [f for p in self.paths for f in ([p] if p.is_file() else (q for q in p.rglob("*") if q.is_file()))]
        self.n_files, self.nbytes = len(files), sum(f.stat().st_size for f in files)

    @property
    def stale(self) -> bool:
        return self.why not in ("current", "results")


def _split(files: list[Path], now: float) -> tuple[list[Path], list[Path]]:
    """``files`` → (entries, temp files of interrupted writes older than :data:`ORPHAN_AFTER_S`); younger temp
    files may belong to a write in progress and are in neither."""
    keep = [f for f in files if not f.name.startswith(".")]
    orphans = [f for f in files if f.name.startswith(".") and now - f.stat().st_mtime > ORPHAN_AFTER_S]
    return keep, orphans


def entries(root: str | Path | None = None) -> list[Entry]:
    """Every group of files in the cache ``root`` (default :func:`~mednb.runtime.cache_root`), in a fixed
    order: checkpoints by kind and version, phantoms by generator, sweep folders."""
    root = Path(root) if root is not None else cache_root()
    now, out = time.time(), []
    ck = root / "checkpoints"
    for kind in sorted(p for p in ck.iterdir() if p.is_dir()) if ck.is_dir() else []:
        what = f"checkpoints/{kind.name}"
        loose = sorted(p for p in kind.iterdir() if p.is_file())
        if loose:
            out.append(Entry(what, None, "no code version", loose))
        for ver in sorted(p for p in kind.iterdir() if p.is_dir()):
            if ver.name != code_version():
                out.append(Entry(what, ver.name, "other code version", [ver]))
                continue
            keep, orphans = _split(sorted(p for p in ver.rglob("*") if p.is_file()), now)
            out.append(Entry(what, ver.name, "current", keep))
            if orphans:
                out.append(Entry(what, ver.name, "interrupted writes", orphans))
    ph = root / "phantoms"
    if ph.is_dir():
        keep, orphans = _split(sorted(p for p in ph.iterdir() if p.is_file()), now)
        groups: dict[str | None, list[Path]] = {}
        for f in keep:
            m = _GENERATOR.search(f.name)
            groups.setdefault(m.group(1) if m else None, []).append(f)
        gen = phantom_generator()
        for v, fs in sorted(groups.items(), key=lambda kv: str(kv[0])):
            out.append(Entry("phantoms", v, "current" if v == gen else "other generator" if v else "no generator "
                             "version", fs))
        if orphans:
            out.append(Entry("phantoms", None, "interrupted writes", orphans))
    sw = root / "sweeps"
    for d in sorted(p for p in sw.iterdir() if p.is_dir()) if sw.is_dir() else []:
        out.append(Entry(f"sweeps/{d.name}", None, "results", [d]))
    return out


def prune(root: str | Path | None = None, dry_run: bool = False) -> list[Entry]:
    """Delete every stale entry of the cache ``root``: checkpoints of other code versions, phantoms of other
    generators, temp files of writes interrupted more than an hour ago; ``dry_run`` deletes nothing.
    Returns the stale entries."""
    stale = [e for e in entries(root) if e.stale]
    if not dry_run:
        for e in stale:
            for p in e.paths:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return stale


def human(n: float) -> str:
    """``n`` bytes as ``"12.3 MB"`` (``"80 B"`` below a kilobyte)."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}"


__all__ = ["Entry", "entries", "prune", "human", "phantom_path", "phantom_generator", "ORPHAN_AFTER_S"]
