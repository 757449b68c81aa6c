"""Seeds, devices and the environment record (one seed API for the whole package)."""
from __future__ import annotations

import os
import platform
import random
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


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
    from .data import repo_root
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
            "commit": git_commit()}
