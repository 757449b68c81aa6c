"""Executors: run a list of units through an existing engine, reporting each unit as it finishes.

Each module has ``run(units, out, opts, env, on_done)``: ``opts`` is :class:`mednb.sweep.driver.Options`,
``env`` the ``MEDNB_*`` variables every unit's kernel gets, ``on_done(unit, status)`` is called in this
process once per unit. All of them execute a unit with :func:`mednb.sweep.execute.run_unit`.

- ``local``: one unit after another in this process (like ``mednb run``);
- ``ray``:   one Ray task per unit (a local Ray instance, or a cluster given by ``--address``);
- ``slurm``: submitit job arrays (``--slurm-cluster local`` runs the jobs as local processes).
"""
from __future__ import annotations

import importlib
import importlib.util

from ...params import ParamError

EXECUTORS = {"local": "local", "ray": "ray_tasks", "slurm": "slurm"}
ENGINES = {"ray": "ray", "slurm": "submitit"}


def get(name: str):
    """The executor module for ``name``; one clear error for an unknown name or a missing engine."""
    if name not in EXECUTORS:
        raise ParamError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    engine = ENGINES.get(name)
    if engine is not None and importlib.util.find_spec(engine) is None:
        raise ParamError(f"--executor {name} needs the {engine!r} package (pip install {engine})")
    return importlib.import_module(f"{__name__}.{EXECUTORS[name]}")
