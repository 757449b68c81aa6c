"""Flower's Deployment Runtime on this machine: a real federation of separate processes.

:func:`deploy` starts one SuperLink (the coordinator) and one SuperNode per hospital on the loopback
address, each on a free port and each given only its own site's folder (``--node-config "site=<i>
data-dir=…"``), then submits the same ``ServerApp``/``ClientApp`` as the simulation with ``flwr run``.
Flower's own state and configuration live in the run folder (``FLWR_HOME``), never in ``~/.flwr``. The
whole run is bounded by ``timeout``; whatever happens, every process it started — and every process they
started (SuperExec, ServerApp and ClientApp processes) — is stopped before it returns
(:class:`Federation`). :func:`commands` prints the commands a class runs on real machines.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .simulation import Results, read_results, write_plan
from .sites import save_site, site_file

APP_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "mednb-hospitals"
version = "1.0.0"
description = "mednb notebook 09: the hospitals' ClientApp and the coordinator's ServerApp"
license = "MIT"
dependencies = ["mednb"]

[tool.flwr.app]
publisher = "mednb"

[tool.flwr.app.components]
serverapp = "hospital_app:serverapp"
clientapp = "hospital_app:clientapp"

[tool.flwr.app.config]
plan = "{plan}"
data-dir = ""
"""
APP_MODULE = '''"""mednb's hospitals as a Flower App (``flwr run`` ships this folder; every machine has mednb)."""
from mednb.federated.apps import client_app, server_app

clientapp = client_app()
serverapp = server_app()
'''


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports that are free on ``host`` now (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def write_app(folder: Path, plan: Path) -> Path:
    """The Flower App folder ``flwr run`` builds into a bundle: pyproject.toml + hospital_app.py."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(APP_PYPROJECT.format(plan=plan.as_posix()))
    (folder / "hospital_app.py").write_text(APP_MODULE)
    return folder


def _exe(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found; install Flower (pip install 'flwr[simulation]')")
    return found


class Federation:
    """A SuperLink and K SuperNodes as separate processes on 127.0.0.1 (a context manager).

    ``node_dirs[i]``: the folder SuperNode i reads (its site's files only). On exit (or :meth:`stop`) every
    process started here and all their descendants are terminated, then killed after ``grace`` seconds.
    """

    def __init__(self, node_dirs: list[Path], run_dir: Path, grace: float = 5.0):
        self.node_dirs, self.run_dir, self.grace = list(node_dirs), Path(run_dir), grace
        self.home = self.run_dir / "flwr-home"
        self.logs = self.run_dir / "logs"
        self.procs: list[subprocess.Popen] = []
        self.port, *self.node_ports = free_ports(1 + len(self.node_dirs))
        self.connection = f"mednb-{self.port}"

    def env(self) -> dict:
        return {**os.environ, "FLWR_HOME": str(self.home), "FLWR_TELEMETRY_ENABLED": "0",
                "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1"}

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)
        log.close()
        self.procs.append(p)
        return p

    def start(self, ready_timeout: float = 120.0) -> "Federation":
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{self.connection}"\n\n[superlink.{self.connection}]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n')
        self._start("superlink", [_exe("flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port",
                                  str(self.port), "--disable-runtime-dependency-installation"])
        for i, (folder, port) in enumerate(zip(self.node_dirs, self.node_ports)):
            self._start(f"supernode{i}", [_exe("flower-supernode"), "--insecure", "--superlink",
                                          f"127.0.0.1:{self.port}", "--port", str(port), "--node-config",
                                          f'site={i} data-dir="{Path(folder).as_posix()}"'])
        t0 = time.monotonic()
        while not port_open(self.port):
            if time.monotonic() - t0 > ready_timeout or self.procs[0].poll() is not None:
                raise RuntimeError(f"the SuperLink did not start within {ready_timeout:.0f} s:\n"
                                   f"{self.tail('superlink')}")
            time.sleep(0.2)
        return self

    def run(self, app: Path, timeout: float) -> subprocess.CompletedProcess:
        """``flwr run <app> <connection> --stream``: submit the app and wait for the run to end."""
        with open(self.logs / "flwr-run.log", "wb") as log:
            return subprocess.run([_exe("flwr"), "run", str(app), self.connection, "--stream"], stdout=log,
                                  stderr=subprocess.STDOUT, env=self.env(), timeout=timeout, check=False)

    def tail(self, name: str, n: int = 2000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def processes(self) -> list:
        """Every live process started here or by one of them (by parentage and by this run's FLWR_HOME)."""
        import psutil
        found = {}
        for p in self.procs:
            try:
                root = psutil.Process(p.pid)
                for q in [root, *root.children(recursive=True)]:
                    found[q.pid] = q
            except psutil.NoSuchProcess:
                pass
        for q in psutil.process_iter():
            try:
                if q.pid not in found and q.environ().get("FLWR_HOME") == str(self.home):
                    found[q.pid] = q
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        return [q for q in found.values() if _alive(q)]

    def stop(self) -> None:
        import psutil
        for _ in range(3):  # a SuperExec may spawn a ClientApp process while we stop it
            procs = self.processes()
            if not procs:
                break
            for sig in ("terminate", "kill"):
                for q in procs:
                    try:
                        getattr(q, sig)()
                    except psutil.NoSuchProcess:
                        pass
                _, procs = psutil.wait_procs(procs, timeout=self.grace)
                if not procs:
                    break
        for p in self.procs:
            try:
                p.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        return False


def _alive(q) -> bool:
    import psutil
    try:
        return q.is_running() and q.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def deploy(site_sets, methods, setups, run_dir: str | Path | None = None, *, timeout: float = 900.0) -> Results:
    """Run the federated ``methods`` through the Deployment Runtime (see the module docstring).

    Same plan, apps and seeds as :func:`mednb.federated.simulate`, so the results are comparable round by
    round. Raises TimeoutError after ``timeout`` seconds (processes stopped, logs kept in ``run_dir/logs``).
    """
    from .sites import Sites
    site_sets = [site_sets] if isinstance(site_sets, Sites) else list(site_sets)
    run_dir = Path(run_dir or tempfile.mkdtemp(prefix="mednb-deploy-"))
    t0 = time.perf_counter()
    plan = write_plan(site_sets, methods, setups, run_dir, threads=1, timeout=timeout, progress=False,
                      save_data=False)
    node_dirs = [run_dir / "nodes" / f"site{i}" for i in range(site_sets[0].k)]
    for sites in site_sets:  # each hospital's folder holds its own site's files, nothing else
        for i, sp in enumerate(sites.seen):
            save_site(sp, node_dirs[i] / site_file(sites.dataset, sites.seed, i))
    app = write_app(run_dir / "app", plan)
    with Federation(node_dirs, run_dir) as fed:
        try:
            proc = fed.run(app, timeout=max(1.0, timeout - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"the deployed federation did not finish within {timeout:.0f} s (processes stopped; "
                               f"logs in {fed.logs}):\n{fed.tail('flwr-run')}") from None
        if not (Path(json.loads(plan.read_text())["out_dir"]) / "done.json").exists():
            raise RuntimeError(f"the deployed run failed (flwr run exit code {proc.returncode}; logs in {fed.logs}):"
                               f"\n{fed.tail('flwr-run')}")
    res = read_results(run_dir, seconds=time.perf_counter() - t0)
    res.runtime = {"runtime": "deployment", "superlink_port": fed.port, "supernode_ports": fed.node_ports,
                   "flwr_home": str(fed.home), "logs": str(fed.logs)}
    return res


def commands(k: int, port: int = 9092, connection: str = "hospitals", app: str = "hospital-app") -> str:
    """The commands a class runs on real machines: one SuperLink, one SuperNode per hospital, ``flwr run``."""
    nodes = "\n".join(f'flower-supernode --insecure --superlink <coordinator-ip>:{port} '
                      f'--node-config "site={i} data-dir=\'/data/hospital{i}\'"' for i in range(k))
    return (f"# 1. coordinator machine (reachable by every hospital):\n"
            f"flower-superlink --insecure --host 0.0.0.0 --port {port} --disable-runtime-dependency-installation\n\n"
            f"# 2. hospital i's machine (its own site files only in /data/hospital<i>), one line per hospital:\n"
            f"{nodes}\n\n"
            f"# 3. the operator's laptop: add the federation to $FLWR_HOME/config.toml (default ~/.flwr/config.toml)\n"
            f"#    [superlink.{connection}]\n#    address = \"<coordinator-ip>:{port}\"\n#    insecure = true\n"
            f"#    then submit the app folder (written by mednb.federated.deployment.write_app):\n"
            f"flwr run {app} {connection} --run-config \"plan='/srv/plan.json'\" --stream\n\n"
            f"# --insecure is for a classroom LAN only: with patient data use TLS certificates "
            f"(--ssl-certfile/--ssl-keyfile/--ssl-ca-certfile) and SuperNode authentication.")
