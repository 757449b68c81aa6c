"""Run units as Slurm jobs with submitit: one job array, one array task per unit.

Each task asks for 1 node, 1 task, ``--cpus-per-unit`` CPUs (default 1, or 4 with a GPU),
``--gpus-per-job`` GPUs and ``--time-min`` minutes on ``--partition``; ``--array-parallelism`` caps how
many run at once. Slurm sets the job's ``CUDA_VISIBLE_DEVICES`` and CPU affinity; the unit's kernel
gets the same. Shortly before the time limit (or on preemption) submitit's signal makes the unit stop
its kernel, mark itself ``interrupted`` and requeue the job (``UnitCall.checkpoint``); the requeued job
runs the unit again. A job that dies otherwise (node failure, out of memory) is submitted again, up to
``--max-attempts`` submissions, then recorded as failed. Job logs go to ``--slurm-folder`` (default
``DIR/slurm/``). ``--slurm-cluster local`` runs the same jobs as local processes (submitit's
``LocalExecutor``); ``debug`` runs them in this process.
"""
from __future__ import annotations

import time
from pathlib import Path

from ...params import ParamError
from ..execute import lost, now, read_status, run_unit, units_dir, work_dir

POLL_S = 2.0


class UnitCall:
    """What submitit pickles for a job: run one unit. ``checkpoint`` makes submitit requeue the job with
    the same arguments when Slurm signals the time limit or a preemption."""

    def __call__(self, unit, out, threads, gpus, env, max_attempts, cell_timeout):
        return run_unit(unit, out, threads=threads, gpus=gpus, env=env, max_attempts=max_attempts,
                        cell_timeout=cell_timeout)

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission
        return DelayedSubmission(self, *args, **kwargs)


def executor(out: Path, opts, name: str):
    """A configured ``submitit.AutoExecutor``; returns ``(executor, cpus, gpus)``."""
    import submitit
    folder = Path(opts.slurm_folder or Path(out) / "slurm")
    gpus = int(opts.gpus_per_unit or 0)
    cpus = int(opts.cpus_per_unit or (4 if gpus else 1))
    try:
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster=opts.slurm_cluster)
    except Exception as e:  # noqa: BLE001 - e.g. no sbatch on this machine
        raise ParamError(f"submitit cannot use cluster {opts.slurm_cluster!r} here: {e}") from None
    params = dict(name=f"mednb-{name}", timeout_min=opts.time_min, nodes=1, tasks_per_node=1,
                  cpus_per_task=cpus, gpus_per_node=gpus, mem_gb=opts.mem_gb,
                  slurm_partition=opts.partition, slurm_array_parallelism=opts.array_parallelism,
                  slurm_account=opts.account, slurm_qos=opts.qos, slurm_setup=list(opts.slurm_setup or []) or None)
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex, cpus, gpus


def run(units, out, opts, env, on_done) -> None:
    ex, cpus, gpus = executor(out, opts, opts.name)
    call = UnitCall()
    args = (str(out), cpus, None if gpus else 0, env, opts.max_attempts, opts.cell_timeout)
    since = now()
    jobs = ex.map_array(call, units, *([a] * len(units) for a in args))
    pending = dict(zip(jobs, units))
    submitted = {u.name: 1 for u in units}
    try:
        while pending:
            for job in [j for j in pending if j.done()]:
                unit = pending.pop(job)
                status = _result(job, unit, out, since)
                if status is None and submitted[unit.name] < opts.max_attempts:
                    submitted[unit.name] += 1
                    pending[ex.submit(call, unit, *args)] = unit
                    continue
                on_done(unit, status or lost(out, unit, f"Slurm job {job.job_id} ended without a result"))
            if pending:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        for job in pending:  # scancel: the unit's run_unit stops its kernel and marks it interrupted
            job.cancel(check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(j.done() for j in pending):
            time.sleep(1)
        raise


def _result(job, unit, out, since: str) -> dict | None:
    """The unit's status, or None when its job died before the unit recorded one (since ``since``)."""
    try:
        return job.result()
    except Exception:  # noqa: BLE001 - submitit raises FailedJobError / UncompletedJobError
        st = None if work_dir(out, unit).exists() else read_status(units_dir(out) / unit.name)
        return st if st is not None and str(st.get("finished") or "") >= since else None
