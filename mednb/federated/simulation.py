"""Running the federated methods in Flower's Simulation Runtime and reading their results back.

:func:`simulate` writes each site's files (what a hospital holds) and a plan (the experiments), then
calls ``flwr.simulation.run_simulation`` once for all of them: one Ray start, K virtual SuperNodes whose
ClientApps run in Ray actors with ``client_resources`` of one CPU each (and a share of a GPU when CUDA is
present). :class:`Results` holds every per-round, per-site evaluation and the traffic of every round.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from .. import engine
from .apps import FEDERATED, build_model, client_app, server_app, write_json
from .methods import Setup, check_methods, experiment
from .sites import Sites


def available_cpus() -> int:
    """CPUs this process may use: ``$MEDNB_THREADS`` (a sweep unit's share), else its CPU affinity."""
    if os.environ.get("MEDNB_THREADS"):
        return int(os.environ["MEDNB_THREADS"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def backend_config(k: int, device: str = "auto", cpus: int | None = None) -> dict:
    """Ray settings for K clients: ≤ ``cpus`` (default :func:`available_cpus`) actors with one CPU each and,
    on CUDA, an equal share of the GPUs; no dashboard, quiet logs."""
    cpus = max(1, min(int(cpus or available_cpus()), k))
    gpus = torch.cuda.device_count() if device != "cpu" and torch.cuda.is_available() else 0
    share = min(1.0, gpus / cpus) if gpus else 0.0
    init = {"num_cpus": cpus, "num_gpus": gpus, "include_dashboard": False, "logging_level": "ERROR",
            "log_to_driver": False}
    return {"client_resources": {"num_cpus": 1, "num_gpus": share}, "init_args": init}


@contextmanager
def quiet_flower(level: int = logging.ERROR):
    """Flower logs every round at INFO; show only errors while the runtime runs."""
    log = logging.getLogger("flwr")
    old = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(old)


def _setup_for(setups, dataset: str) -> Setup:
    return setups[dataset] if isinstance(setups, dict) else setups


def write_plan(site_sets: list[Sites], methods, setups, run_dir: Path, threads: int | None = 1,
               timeout: float = 3600.0, progress: bool = True, save_data: bool = True) -> Path:
    """``run_dir/plan.json`` (and, with ``save_data``, every site's files in ``run_dir/data``); returns its path."""
    methods = check_methods(methods)
    if not methods:
        raise ValueError(f"no federated method to run; choose from {', '.join(FEDERATED)}")
    bad = [m for m in methods if m not in FEDERATED]
    if bad:
        raise ValueError(f"{', '.join(bad)} do not run in a federation; federated methods: {', '.join(FEDERATED)}")
    ks = {s.k for s in site_sets}
    if len(ks) != 1:
        raise ValueError(f"one federation has one number of sites; got K = {sorted(ks)}")
    run_dir.mkdir(parents=True, exist_ok=True)
    for sites in site_sets if save_data else ():
        sites.save(run_dir / "data")
    exps = [experiment(s, m, _setup_for(setups, s.dataset), threads) for s in site_sets for m in methods]
    plan = {"k": ks.pop(), "timeout": float(timeout), "out_dir": str(run_dir / "out"), "progress": progress,
            "experiments": exps}
    path = run_dir / "plan.json"
    write_json(path, plan)
    return path


def simulate(site_sets: list[Sites], methods, setups, run_dir: str | Path | None = None, *,
             cpus: int | None = None, timeout: float = 3600.0) -> "Results":
    """Run the federated ``methods`` on every ``Sites`` in one Flower Simulation Runtime run."""
    site_sets = [site_sets] if isinstance(site_sets, Sites) else list(site_sets)
    run_dir = Path(run_dir or tempfile.mkdtemp(prefix="mednb-federated-"))
    plan = write_plan(site_sets, methods, setups, run_dir, threads=1, timeout=timeout)
    from flwr.simulation import run_simulation
    k = site_sets[0].k
    device = _setup_for(setups, site_sets[0].dataset).device
    t0 = time.perf_counter()
    with quiet_flower(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
        run_simulation(server_app=server_app({"plan": str(plan)}),
                       client_app=client_app({"data-dir": str(run_dir / "data")}),
                       num_supernodes=k, backend_config=backend_config(k, device, cpus))
    res = read_results(run_dir, seconds=time.perf_counter() - t0)
    res.runtime = {"runtime": "simulation", "backend_config": backend_config(k, device, cpus)}
    return res


@dataclass
class Results:
    """Federated runs read back from a run folder.

    evaluations: dataset, seed, method, round, site, test_auc, test_acc (client-side, every evaluated round).
    traffic: dataset, seed, method, round, bytes_down, bytes_up, bytes_sent (= down + up), n_sites.
    """
    run_dir: Path
    plan: dict
    evaluations: pd.DataFrame
    traffic: pd.DataFrame
    seconds: float = float("nan")
    runtime: dict = field(default_factory=dict)  # how it ran (runtime name; Deployment: ports, FLWR_HOME)

    def experiment(self, dataset: str, seed: int, method: str) -> dict:
        for e in self.plan["experiments"]:
            if (e["dataset"], int(e["seed"]), e["method"]) == (dataset, int(seed), method):
                return e
        raise KeyError(f"no federated run {dataset}/seed {seed}/{method} in {self.run_dir}")

    def model(self, dataset: str, seed: int, method: str) -> torch.nn.Module:
        """The final global model of a run (FedBN: shared weights + the sites' averaged BN arrays)."""
        exp = self.experiment(dataset, seed, method)
        model = build_model(exp)
        engine.load_checkpoint(model, Path(self.plan["out_dir"]) / exp["tag"] / "model.pt")
        return model.eval()

    def final(self) -> pd.DataFrame:
        """The last evaluated round of every run (one row per site)."""
        last = self.evaluations.groupby(["dataset", "seed", "method"])["round"].transform("max")
        return self.evaluations[self.evaluations["round"] == last]


def read_results(run_dir: str | Path, seconds: float = float("nan")) -> Results:
    """Load every run listed in ``run_dir/plan.json`` (histories written by the ServerApp)."""
    run_dir = Path(run_dir)
    plan = json.loads((run_dir / "plan.json").read_text())
    evals, traffic = [], []
    for e in plan["experiments"]:
        h = json.loads((Path(plan["out_dir"]) / e["tag"] / "history.json").read_text())
        tags = {"dataset": e["dataset"], "seed": e["seed"], "method": e["method"], "alpha": e.get("alpha")}
        evals += [{**tags, **r} for r in h["evaluations"]]
        traffic += [{**tags, "round": t["round"], "bytes_down": t["bytes_down"], "bytes_up": t["bytes_up"],
                     "bytes_sent": t["bytes_down"] + t["bytes_up"], "n_sites": len(t["sites"])}
                    for t in h["traffic"]]
    return Results(run_dir, plan, pd.DataFrame(evals), pd.DataFrame(traffic), seconds)
