"""Seeds, devices and the environment record (one seed API for the whole package)."""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import random
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def repo_root() -> Path | None:
    """The git clone mednb runs from (editable install), else None."""
    here = Path(__file__).resolve().parent.parent
    pp = here / "pyproject.toml"
    if pp.exists() and 'name = "mednb"' in pp.read_text(errors="ignore"):
        return here
    return None


def data_root() -> Path:
    """``$MEDNB_DATA``, else the clone's ``data/``, else medmnist's default ``~/.medmnist``."""
    env = os.environ.get("MEDNB_DATA")
    if env:
        return Path(env).expanduser().resolve()
    repo = repo_root()
    if repo is not None:
        return repo / "data"
    return Path("~/.medmnist").expanduser()


def cache_root() -> Path:
    """Where mednb caches what it can regenerate (phantom arrays, trained checkpoints).

    1. ``$MEDNB_CACHE``; 2. the data root when ``$MEDNB_CACHE_IN_DATA=1`` (it must then be writable);
    3. the per-user cache, ``$XDG_CACHE_HOME/mednb`` (default ``~/.cache/mednb``). The data root itself is
    only read, so a shared read-only dataset folder works. Cache files are written atomically (a unique temp
    file, then ``os.replace``), so concurrent runs never see a half-written entry.
    """
    env = os.environ.get("MEDNB_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    if os.environ.get("MEDNB_CACHE_IN_DATA", "").lower() in ("1", "true", "yes"):
        root = data_root()
        if root.exists() and not os.access(root, os.W_OK):
            raise PermissionError(f"MEDNB_CACHE_IN_DATA is set but the data root {root} is not writable; "
                                  "unset MEDNB_CACHE_IN_DATA or point MEDNB_CACHE at a writable folder")
        return root
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "mednb"


def cache_dir(*parts: str) -> Path:
    """A folder under :func:`cache_root`, e.g. ``cache_dir("checkpoints", "ssl")`` (not created here)."""
    return cache_root().joinpath(*parts)


def source_hash(files, root: Path | None = None) -> str:
    """10 hex digits of SHA-1 over the bytes of ``files``, in the order given (with each file's path relative
    to ``root`` when given, so that a renamed module changes the hash too)."""
    h = hashlib.sha1()
    for f in map(Path, files):
        if root is not None:
            h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:10]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The version of mednb's own code: :func:`source_hash` of every ``*.py`` file of the installed package.

    Trained checkpoints are cached per code version (:func:`checkpoint_dir`), so a model is reloaded only
    by the code that trained it: a changed engine, model or pretext task retrains instead of reusing a
    checkpoint it could not have produced."""
    pkg = Path(__file__).resolve().parent
    return source_hash(sorted(pkg.rglob("*.py")), root=pkg)


def checkpoint_dir(kind: str) -> Path:
    """``cache_root()/checkpoints/<kind>/<code_version()>``: where the weights one topic trains are cached
    (``kind``: ssl, seg, cam, transfer, active). Not created here."""
    return cache_dir("checkpoints", kind, code_version())


def check_name(name, valid, what: str) -> str:
    """The lower-cased registry key for ``name``; an unknown name is a ValueError listing ``valid``."""
    key = str(name).lower()
    if key not in valid:
        raise ValueError(f"unknown {what} {name!r}; valid: {', '.join(valid)}")
    return key


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU ``torch.Generator`` seeded alike.

    deterministic=True also asks torch for deterministic kernels where they exist (warn-only),
    so that on CPU two runs with the same seed give identical numbers.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def get_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when present, else MPS, else CPU. Anything else must be available."""
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    base = name.split(":")[0]
    if base not in DEVICES:
        raise ValueError(f"unknown device {device!r}; valid: {', '.join(DEVICES)} (or 'cuda:N')")
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise ValueError("DEVICE='cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("DEVICE='mps' but MPS is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    device = get_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return str(device)


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    root = repo_root() or Path.cwd()
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def versions() -> dict[str, str]:
    return {"python": platform.python_version(),
            **{p: _version(p) for p in ("mednb", "torch", "torchvision", "medmnist", "numpy",
                                        "scikit-learn", "kornia")}}


def env_info(device: str | torch.device = "auto") -> dict:
    """Versions, device, GPU name, git commit: the evidence attached to every benchmark."""
    dev = get_device(device)
    return {"versions": versions(), "device": str(dev), "device_name": device_name(dev),
            "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
            "commit": git_commit(), "code_version": code_version()}
