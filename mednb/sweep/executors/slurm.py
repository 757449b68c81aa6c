"""Run units as Slurm jobs with submitit: one job array, one array task per unit.

Each task asks for 1 node, 1 task, ``--cpus-per-unit`` CPUs (default: the spec's ``threads``, which the
unit computes with, as on every executor),
``--gpus-per-job`` GPUs and ``--time-min`` minutes on ``--partition``; ``--array-parallelism`` caps how
many run at once. Slurm sets the job's ``CUDA_VISIBLE_DEVICES`` and CPU affinity; the unit's kernel
gets the same. Shortly before the time limit (or on preemption) submitit's signal makes the unit stop
its kernel, mark itself ``interrupted`` and requeue the job (``UnitCall.checkpoint``); the requeued job
runs the unit again. A job that dies otherwise (node failure, out of memory) is submitted again, up to
``--max-attempts`` submissions, then recorded as failed; a job cancelled with ``scancel`` leaves its unit
``interrupted`` (rerun when the sweep is started again). Job logs go to ``--slurm-folder`` (default
``DIR/slurm/``). ``--slurm-cluster local`` runs the same jobs as local processes (submitit's
``LocalExecutor``); ``debug`` runs them in this process.

A job has ended when submitit's result file exists or ``squeue`` no longer shows it running, pending or
requeued: no ``sacct`` is needed, so clusters without accounting work too.
"""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from ...params import ParamError
from ..execute import lost, now, read_status, run_unit, units_dir, work_dir

POLL_S = 2.0
QUEUE_S = 5.0     # at most one squeue call per QUEUE_S
GRACE_S = 5.0     # how long a job that left the queue may take to show its result file (shared file systems)
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
          "RESIZING", "SIGNALING", "STAGE_OUT", "SUSPENDED", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}


class UnitCall:
    """What submitit pickles for a job: run one unit. ``checkpoint`` makes submitit requeue the job with
    the same arguments when Slurm signals the time limit or a preemption."""

    def __call__(self, unit, out, threads, gpus, env, max_attempts, cell_timeout):
        return run_unit(unit, out, threads=threads, gpus=gpus, env=env, max_attempts=max_attempts,
                        cell_timeout=cell_timeout)

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission
        # submitit calls this from its signal handler, then requeues the job (Slurm sends SIGTERM to it) and
        # exits; the unit's interruption record is written on that exit and must not be cut short by the SIGTERM
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return DelayedSubmission(self, *args, **kwargs)


def executor(out: Path, opts, name: str):
    """A configured ``submitit.AutoExecutor``; returns ``(executor, cpus, gpus)``."""
    import submitit
    folder = Path(opts.slurm_folder or Path(out) / "slurm")
    gpus = int(opts.gpus_per_unit or 0)
    cpus = int(opts.cpus_per_unit or opts.threads)
    try:
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster=opts.slurm_cluster)
    except Exception as e:  # noqa: BLE001 - e.g. no sbatch on this machine
        raise ParamError(f"submitit cannot use cluster {opts.slurm_cluster!r} here: {e}") from None
    params = dict(name=f"mednb-{name}", timeout_min=opts.time_min, nodes=1, tasks_per_node=1,
                  cpus_per_task=cpus, gpus_per_node=gpus or None, mem_gb=opts.mem_gb,
                  slurm_partition=opts.partition, slurm_array_parallelism=opts.array_parallelism,
                  slurm_account=opts.account, slurm_qos=opts.qos, slurm_setup=list(opts.slurm_setup or []) or None)
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex, cpus, gpus


def run(units, out, opts, env, on_done) -> None:
    ex, cpus, gpus = executor(out, opts, opts.name)
    call = UnitCall()
    args = (str(out), opts.threads, None if gpus else 0, env, opts.max_attempts, opts.cell_timeout)
    since = now()
    jobs = ex.map_array(call, units, *([a] * len(units) for a in args))
    pending = dict(zip(jobs, units))
    submitted = {u.name: 1 for u in units}
    ended = _Ended(opts.slurm_cluster == "slurm")
    try:
        while pending:
            for job in [j for j in pending if ended(j, pending)]:
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
        while time.monotonic() < deadline and not all(ended(j, pending) for j in pending):
            time.sleep(1)
        raise


class _Ended:
    """``ended(job, jobs)``: whether a job has ended. On Slurm: its result file exists, or ``squeue`` (one
    call for all ``jobs``) has not shown it active for ``GRACE_S``; elsewhere submitit's ``job.done()``."""

    def __init__(self, slurm: bool):
        self.slurm, self.states, self.asked, self.gone = slurm, {}, float("-inf"), {}

    def __call__(self, job, jobs) -> bool:
        if not self.slurm:
            return job.done()
        if job.paths.result_pickle.exists():
            return True
        if time.monotonic() - self.asked >= QUEUE_S:
            self._ask(jobs)
        if self.states.get(job.job_id, "") in ACTIVE:
            self.gone.pop(job.job_id, None)
            return False
        if job.job_id not in self.states:  # squeue did not answer: no news
            return False
        first = self.gone.setdefault(job.job_id, time.monotonic())
        return time.monotonic() - first >= GRACE_S

    def _ask(self, jobs) -> None:
        ids = sorted({j.job_id.split("_")[0] for j in jobs})
        self.asked = time.monotonic()
        try:
            r = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T",
                                "--jobs=" + ",".join(ids)], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return
        if r.returncode != 0 and "invalid job id" not in r.stderr.lower():
            return  # controller busy or down: ask again later
        seen = dict(line.split("|", 1) for line in r.stdout.split() if "|" in line)
        # a job squeue no longer lists (purged after MinJobAge) has ended
        self.states = {j.job_id: seen.get(j.job_id, "GONE") for j in jobs}


def _result(job, unit, out, since: str) -> dict | None:
    """The unit's status, or None when its job died before the unit recorded one (since ``since``)."""
    try:
        if job.paths.result_pickle.exists():
            return job.result()
    except Exception:  # noqa: BLE001 - submitit raises FailedJobError / UncompletedJobError
        pass
    # no result: killed, cancelled or requeued too often; the unit's own record, when it wrote one
    st = None if work_dir(out, unit).exists() else read_status(units_dir(out) / unit.name)
    return st if st is not None and str(st.get("finished") or "") >= since else None
