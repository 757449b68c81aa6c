"""The ``mednb sweep`` command line (parsed by :mod:`mednb.cli`, run by :func:`mednb.sweep.driver.run`)."""
from __future__ import annotations

import argparse

HELP = "run a benchmark sweep: one notebook over a grid, on this machine, Ray or Slurm"
DESCRIPTION = """Expand a sweep spec into units (one papermill run of one notebook each) and run them into
DIR/units/<slug>-<hash>/, then write DIR/leaderboard.md. Starting it again resumes: completed units are
skipped, interrupted ones rerun, failed ones rerun with --retry-failed. Exit status: 0 when every unit is
ok, 1 when one failed, 2 on a bad spec or option (nothing is run or written)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="a shipped spec (smoke, medmnist_cpu, medmnist_v2) or a .toml path")
    p.add_argument("--out", required=True, metavar="DIR", help="the sweep folder")
    p.add_argument("--executor", default="local", metavar="{local,ray,slurm}",
                   help="local: one unit after another here (default); ray: Ray tasks; slurm: submitit job arrays")
    p.add_argument("--address", metavar="ADDR", help="ray: a running cluster (default: start a local instance)")
    p.add_argument("--retry-failed", action="store_true", help="rerun units that failed before")
    p.add_argument("--cpus-per-unit", type=int, metavar="N",
                   help="CPUs ray / slurm reserve per unit, i.e. how many run at once (default and minimum: the "
                        "spec's threads, which every unit computes with on every executor)")
    p.add_argument("--gpus-per-unit", "--gpus-per-job", dest="gpus_per_unit", type=int, metavar="N",
                   help="GPUs per unit (default: ray 1 when the cluster has GPUs, slurm 0; 0 = CPU only)")
    p.add_argument("--max-attempts", type=int, default=2, metavar="N",
                   help="runs of a unit whose kernel or worker process dies (default 2)")
    p.add_argument("--only-present", action=argparse.BooleanOptionalAction, default=None,
                   help="leave out units whose MedMNIST files are not in the data root (default: the spec's)")
    p.add_argument("--cell-timeout", type=int, metavar="S", help="fail a unit whose cell runs longer than S s")
    p.add_argument("--notebooks-dir", metavar="D", help="where the notebooks are (default: the clone's notebooks/)")
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    s = p.add_argument_group("slurm (submitit)")
    s.add_argument("--partition", help="Slurm partition")
    s.add_argument("--time-min", type=int, default=240, metavar="M", help="time limit per unit (default 240)")
    s.add_argument("--array-parallelism", type=int, metavar="N", help="at most N array tasks at once")
    s.add_argument("--slurm-folder", metavar="D", help="submitit's job folder (default DIR/slurm)")
    s.add_argument("--slurm-cluster", default="slurm", metavar="{slurm,local,debug}",
                   help="slurm (default); local: the same jobs as local processes (submitit LocalExecutor)")
    s.add_argument("--mem-gb", type=int, metavar="G", help="memory per unit")
    s.add_argument("--account", help="Slurm account")
    s.add_argument("--qos", help="Slurm QOS")
    s.add_argument("--slurm-setup", action="append", default=[], metavar="CMD",
                   help="a shell line run before each job (e.g. 'source .venv/bin/activate'); repeatable")


def run(args: argparse.Namespace) -> int:
    from .driver import Options, run as run_sweep
    opts = Options(executor=args.executor, address=args.address, cpus_per_unit=args.cpus_per_unit,
                   gpus_per_unit=args.gpus_per_unit, max_attempts=args.max_attempts, retry_failed=args.retry_failed,
                   only_present=args.only_present, cell_timeout=args.cell_timeout, partition=args.partition,
                   time_min=args.time_min, array_parallelism=args.array_parallelism, slurm_folder=args.slurm_folder,
                   slurm_cluster=args.slurm_cluster, mem_gb=args.mem_gb, account=args.account, qos=args.qos,
                   slurm_setup=args.slurm_setup)
    return run_sweep(args.spec, args.out, opts, notebooks_dir=args.notebooks_dir, progress=not args.no_progress)
