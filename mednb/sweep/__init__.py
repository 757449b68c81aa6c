"""Benchmark sweeps: many papermill runs of one notebook over a grid, on one machine, Ray or Slurm.

``mednb sweep SPEC --out DIR`` expands a TOML spec (:mod:`mednb.sweep.spec`) into units
(:mod:`mednb.sweep.units`), runs each unit with :func:`mednb.sweep.execute.run_unit` through an existing
engine — in this process, as Ray tasks or as submitit (Slurm) job arrays (:mod:`mednb.sweep.executors`) —
and writes the leaderboard (:mod:`mednb.sweep.report`). The driver is :func:`mednb.sweep.driver.run`.

Nothing here imports Ray or submitit until an executor that needs it runs.
"""
