"""Run units one after another in this process: each gets every CPU this process may use (or
``--cpus-per-unit``) and the GPUs visible here (none with ``--gpus-per-unit 0``)."""
from __future__ import annotations

from ..execute import available_cpus, run_unit


def run(units, out, opts, env, on_done) -> None:
    threads = opts.cpus_per_unit or available_cpus()
    for unit in units:
        on_done(unit, run_unit(unit, out, threads=threads, gpus=opts.gpus_per_unit, env=env,
                               max_attempts=opts.max_attempts, cell_timeout=opts.cell_timeout))
