"""Run units as Ray tasks: on a local Ray instance, or on a running cluster (``--address``).

Each unit is one task that asks Ray for its resources: one GPU (``--gpus-per-unit``) when the cluster has
GPUs, and ``--cpus-per-unit`` CPUs (default: the spec's ``threads``). Ray places as many tasks at once as
the resources allow — k units on a box with k GPUs, n units on n CPUs with ``threads = 1`` — and sets
each worker's ``CUDA_VISIBLE_DEVICES`` to the unit's GPU; the unit's kernel gets exactly that GPU and
the spec's threads, as on every executor. A task whose worker dies (killed, node lost) is retried by Ray
(``max_retries`` = ``--max-attempts`` − 1), then recorded as failed. Workers import mednb themselves:
on a cluster every node needs the same installation, data root and sweep folder (a shared file system).
"""
from __future__ import annotations

import logging
import warnings

from ...params import ParamError
from ..execute import lost, now, read_status, run_unit, units_dir, work_dir


def _task(unit, out, threads, gpus, env, max_attempts, cell_timeout):
    return run_unit(unit, out, threads=threads, gpus=gpus, env=env, max_attempts=max_attempts,
                    cell_timeout=cell_timeout)


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` or start a local instance; True when this call started Ray."""
    import ray
    if ray.is_initialized():
        return False
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Ray's notice about accelerator variables
        try:
            ray.init(address=address, **kw)
        except Exception as e:  # noqa: BLE001 - Ray raises plain Exceptions on start-up failures
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise ParamError(f"could not start or join {where}: {str(e).splitlines()[0]}") from None
    return True


def resources(cpus_per_unit: int | None, gpus_per_unit: int | None, threads: int = 1) -> tuple[int, int]:
    """(CPUs, GPUs) each unit asks for (CPUs: ``cpus_per_unit``, default ``threads``), checked against the
    largest node of the cluster."""
    import ray
    total = ray.cluster_resources()
    n_gpu = int(total.get("GPU", 0))
    gpus = (1 if n_gpu else 0) if gpus_per_unit is None else int(gpus_per_unit)
    if gpus and not n_gpu:
        raise ParamError(f"--gpus-per-unit {gpus}, but the Ray cluster has no GPU")
    cpus = int(cpus_per_unit or threads)
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        largest = max((int(n.get("CPU", 0)) for n in nodes), default=0)
        raise ParamError(f"no Ray node has {cpus} CPUs and {gpus} GPUs for one unit (largest node: "
                         f"{largest} CPUs); lower --cpus-per-unit / --gpus-per-unit, or the spec's threads")
    return cpus, gpus


def run(units, out, opts, env, on_done) -> None:
    import ray
    started = connect(opts.address)
    try:
        cpus, gpus = resources(opts.cpus_per_unit, opts.gpus_per_unit, opts.threads)
        since = now()
        task = ray.remote(_task)
        refs = {task.options(num_cpus=cpus, num_gpus=gpus, max_retries=opts.max_attempts - 1, retry_exceptions=False,
                             name=f"mednb-unit-{u.name}").remote(
            u, str(out), opts.threads, None if gpus else 0, env, opts.max_attempts, opts.cell_timeout): u
            for u in units}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in done:
                    on_done(refs[ref], _result(ray, ref, refs[ref], out, since))
        except KeyboardInterrupt:
            for ref in pending:  # the unit's run_unit gets KeyboardInterrupt and marks it interrupted
                ray.cancel(ref)
            ray.wait(pending, num_returns=len(pending), timeout=30)
            raise
    finally:
        if started:
            ray.shutdown()


def _result(ray, ref, unit, out, since: str) -> dict:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as e:
        message = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
        if not work_dir(out, unit).exists():  # run_unit finished its record (e.g. interrupted) then raised
            st = read_status(units_dir(out) / unit.name)
            if st is not None and str(st.get("finished") or "") >= since:
                return st
        return lost(out, unit, message)
