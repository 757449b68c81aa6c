"""The Jupyter kernel of one unit: its own environment (threads, GPU, determinism); the kernel manager that
applies it and sends the kernel's own output to the unit's ``kernel.log`` is :func:`mednb.execution.manager_class`.

What changes a unit's numbers besides its spec, seed and code is fixed here, the same on every executor:
the CPU threads of torch and of every math library (the spec's ``threads``; CPU float reductions depend on
the thread count) and cuBLAS's workspace. Deterministic kernels and cuDNN autotuning off are set by the
notebook's own :func:`mednb.params` (:func:`mednb.runtime.seed_everything`); :func:`settings` records all
of it in the unit's ``status.json`` and ``env.json``.
"""
from __future__ import annotations

CUBLAS_WORKSPACE = ":4096:8"          # what torch asks for with deterministic algorithms on CUDA
DETERMINISM = {"deterministic_algorithms": "warn_only", "cudnn_benchmark": False,
               "cublas_workspace_config": CUBLAS_WORKSPACE}


def settings(threads: int) -> dict:
    """The settings a unit computes with (recorded as its ``settings``; the report compares them)."""
    return {"threads": int(threads), **DETERMINISM}


def environment(threads: int, gpus: int | None = None, extra: dict | None = None) -> dict:
    """Variables set (``None``: removed) in a unit's kernel.

    threads: CPU threads of every math library and of torch (``MEDNB_THREADS``, read by
    :func:`mednb.params`); gpus: 0 hides every GPU, ``None``/``k`` keep the worker's
    ``CUDA_VISIBLE_DEVICES`` (set by Ray or Slurm to the unit's GPUs); extra: e.g. ``MEDNB_DATA``.
    ``MEDNB_METRICS`` is removed so that no unit appends to a file named in the caller's shell.
    """
    t = str(int(threads))
    env = dict(extra or {})
    env.update(OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, MEDNB_THREADS=t, MEDNB_METRICS=None,
               CUBLAS_WORKSPACE_CONFIG=CUBLAS_WORKSPACE)
    if gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env
