"""The environment a sweep and each of its units ran in: packages, Python, torch, CUDA, GPU, commit, host.

``sweep.json`` keeps the full record once (:func:`sweep_evidence`); each unit's ``status.json`` keeps
what can differ between workers (:func:`unit_evidence`: commit, a hash of the package list, host) and
the settings the unit computed with (threads, determinism), so the leaderboard can flag a unit that ran
in another environment than the rest. Nothing here initialises CUDA: the GPUs are read with
``nvidia-smi``, so a sweep's driver process never holds GPU memory that its units need.
"""
from __future__ import annotations

import hashlib
import platform
import shutil
import socket
import subprocess
from importlib import metadata


def packages() -> list[str]:
    """Every installed distribution as ``name==version``, sorted (what ``pip freeze`` lists)."""
    seen = {}
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").strip()
        if name:
            seen.setdefault(name.lower().replace("_", "-"), dist.version)
    return [f"{n}=={v}" for n, v in sorted(seen.items())]


def packages_hash(pkgs: list[str] | None = None) -> str:
    """12 hex digits of the SHA-256 of the package list."""
    return hashlib.sha256("\n".join(packages() if pkgs is None else pkgs).encode()).hexdigest()[:12]


def gpus() -> list[dict]:
    """Name, driver and memory of each GPU ``nvidia-smi`` sees here ([] without one)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[c.strip() for c in line.split(",")] for line in out.stdout.splitlines() if line.strip()]
    return [{"name": r[0], "driver": r[1], "memory": r[2]} for r in rows if len(r) == 3]


def sweep_evidence() -> dict:
    """The full record kept once in ``sweep.json``."""
    import torch
    from ..runtime import git_commit, versions
    pkgs = packages()
    found = gpus()
    return {"host": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "versions": versions(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "driver": found[0]["driver"] if found else None, "gpus": found, "commit": git_commit(),
            "packages_hash": packages_hash(pkgs), "packages": pkgs}


def unit_evidence() -> dict:
    """What each unit records about the worker it ran on."""
    from ..runtime import git_commit
    return {"commit": git_commit(), "packages": packages_hash(), "host": socket.gethostname()}


def unit_env(kernel_params: dict | None, threads: int) -> dict:
    """``env.json`` content of a unit: versions and commit of the worker, device as the kernel saw it, and the
    settings it computed with (threads, determinism: :func:`mednb.sweep.kernel.settings`)."""
    import torch
    from ..runtime import git_commit, versions
    from .kernel import settings
    p = kernel_params or {}
    device = str(p.get("device") or "unknown")
    return {"versions": versions(), "device": device, "device_name": p.get("device_name") or device,
            "cuda": torch.version.cuda, "gpu": p.get("device_name") if device.startswith("cuda") else None,
            "cpu_threads": threads, "settings": settings(threads), "platform": platform.platform(),
            "commit": git_commit(), "host": socket.gethostname()}


def device_class(kernel_params: dict | None) -> str | None:
    """``cpu``, a GPU's name (``NVIDIA H200``) or ``mps``; None when the kernel never reported it."""
    p = kernel_params or {}
    device = str(p.get("device") or "")
    if not device:
        return None
    if device.startswith("cuda"):
        return str(p.get("device_name") or "cuda")
    return device.split(":")[0]
