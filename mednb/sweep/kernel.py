"""The Jupyter kernel of one unit: its own environment (threads, GPU); the kernel manager that applies it
and sends the kernel's own output to the unit's ``kernel.log`` is :func:`mednb.execution.manager_class`.
"""
from __future__ import annotations


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
