"""Run units one after another in this process (like ``mednb run``): one unit at a time, each with the
spec's threads, and the GPUs visible here (none with ``--gpus-per-unit 0``). For several units at once on
one machine use ``--executor ray`` (a local instance): the units compute the same numbers."""
from __future__ import annotations

from ..execute import run_unit


def run(units, out, opts, env, on_done) -> None:
    for unit in units:
        on_done(unit, run_unit(unit, out, threads=opts.threads, gpus=opts.gpus_per_unit, env=env,
                               max_attempts=opts.max_attempts, cell_timeout=opts.cell_timeout))
