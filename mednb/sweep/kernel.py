"""The Jupyter kernel of one unit: its own environment (threads, GPU) and its own log file.

papermill starts kernels through nbclient's ``kernel_manager_class``; :func:`manager_class` returns a
subclass of jupyter_client's ``AsyncKernelManager`` whose launch step (the documented override point,
``_async_launch_kernel``) merges the unit's environment into the kernel's and sends the kernel
process's own stdout/stderr — start-up warnings such as "Kernel is running over TCP without
encryption", C-level crash messages — to a log file in the unit folder instead of the terminal.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def environment(threads: int, gpus: int | None = None, extra: dict | None = None) -> dict:
    """Variables set (``None``: removed) in a unit's kernel.

    threads: CPU threads of every math library and of torch (``MEDNB_THREADS``, read by
    :func:`mednb.params`); gpus: 0 hides every GPU, ``None``/``k`` keep the worker's
    ``CUDA_VISIBLE_DEVICES`` (set by Ray or Slurm to the unit's GPUs); extra: e.g. ``MEDNB_DATA``.
    ``MEDNB_METRICS`` is removed so that no unit appends to a file named in the caller's shell.
    """
    t = str(int(threads))
    env = dict(extra or {})
    env.update(OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, MEDNB_THREADS=t, MEDNB_METRICS=None)
    if gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def manager_class(env: dict, log_path: str | Path, on_start: Callable[[int], None] | None = None):
    """An ``AsyncKernelManager`` subclass that launches its kernel with ``env`` and logs to ``log_path``;
    ``on_start(pid)`` is called once the kernel process exists."""
    from jupyter_client.manager import AsyncKernelManager

    class UnitKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            merged = dict(kw.get("env") or os.environ)
            for k, v in env.items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = str(v)
            kw["env"] = merged
            with open(log_path, "ab") as log:  # the kernel keeps its own copy of the descriptor
                kw["stdout"] = kw["stderr"] = log
                await super()._async_launch_kernel(kernel_cmd, **kw)
            if on_start is not None and self.provisioner is not None and getattr(self.provisioner, "pid", None):
                on_start(int(self.provisioner.pid))

    return UnitKernelManager
