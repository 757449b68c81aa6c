"""A real single-node Slurm cluster for tests: munged, slurmctld and slurmd in a temporary folder.

``Cluster(base).start()`` writes a ``slurm.conf`` (this host, its CPUs and memory, two free ports,
state, spool, logs and the munge key and socket all under ``base``; ``cpus`` declares more CPUs than the
host has, for jobs that mostly wait), starts the three daemons in the
foreground as children of this process and waits until ``sinfo`` shows the node idle; ``env`` is what
the Slurm client tools need (``SLURM_CONF``). ``stop()`` cancels every job, stops the daemons and
kills whatever still carries this cluster's ``SLURM_CONF`` (job steps, kernels); it returns what it
had to kill. Needs root (slurmd starts jobs) and the Debian packages ``slurm-wlm`` and ``munge``.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
INSTALL = "apt-get install slurm-wlm munge"


def missing() -> str | None:
    """Why a cluster cannot start here (one line), or None."""
    absent = [b for b in (*DAEMONS, *CLIENTS) if _which(b) is None]
    if absent:
        return f"slurm-wlm/munge not installed (no {', '.join(absent)}): {INSTALL}"
    if os.geteuid() != 0:
        return "a test Slurm cluster needs root (slurmd starts the jobs): run the tests as root"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_hardware() -> dict:
    """``slurmd -C``: CPUs, Boards, sockets, cores, threads and RealMemory of this host."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0].split()
    return dict(kv.split("=", 1) for kv in first[1:])


class Cluster:
    def __init__(self, base: Path, cpus: int | None = None):
        self.base, self.cpus = Path(base), cpus
        self.conf = self.base / "slurm.conf"
        self.host = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {"SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------------ start
    def start(self, timeout: float = 60.0) -> "Cluster":
        for d in ("munge", "state", "spool", "log"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.base / "munge", 0o700)
        try:
            self._start_munge()
            self._write_conf()
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            self._wait(lambda: self._ok(["scontrol", "ping"]) and "UP" in self._out(["scontrol", "ping"]),
                       timeout, "slurmctld to answer `scontrol ping`")
            self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.host])
            self._wait(lambda: self.node_state() == "idle", timeout, f"node {self.host} to be idle in sinfo")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munge(self) -> None:
        m = self.base / "munge"
        key = m / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        self.socket = m / "munge.socket"
        self._spawn("munged", [_which("munged"), "--foreground", "--force", f"--socket={self.socket}",
                               f"--key-file={key}", f"--pid-file={m / 'munged.pid'}",
                               f"--log-file={self.base / 'log' / 'munged.log'}", f"--seed-file={m / 'munged.seed'}"])
        self._wait(self.socket.exists, 20, "munged's socket")

    def _write_conf(self) -> None:
        hw = _node_hardware()
        overrides = ""
        if self.cpus and self.cpus != int(hw["CPUs"]):
            hw.update(CPUs=self.cpus, Boards=1, SocketsPerBoard=1, CoresPerSocket=self.cpus, ThreadsPerCore=1)
            overrides = "SlurmdParameters=config_overrides\n"
        ctld, slurmd = _free_ports(2)
        b, log = self.base, self.base / "log"
        (b / "plugstack.conf").write_text("")
        (b / "cgroup.conf").write_text("")
        node = " ".join(f"{k}={hw[k]}" for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                                   "ThreadsPerCore", "RealMemory") if k in hw)
        self.conf.write_text(f"""\
ClusterName=mednbtest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
StateSaveLocation={b / 'state'}
SlurmdSpoolDir={b / 'spool'}
SlurmctldPidFile={b / 'slurmctld.pid'}
SlurmdPidFile={b / 'slurmd.pid'}
SlurmctldLogFile={log / 'slurmctld.log'}
SlurmdLogFile={log / 'slurmd.log'}
PlugStackConfig={b / 'plugstack.conf'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
SlurmctldDebug=info
SlurmdDebug=info
{overrides}NodeName={self.host} NodeAddr=127.0.0.1 {node} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.base / "log" / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**os.environ, **self.env}, start_new_session=True)
        log.close()

    def _wait(self, pred, timeout: float, what: str) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}) while waiting for {what}; "
                                       f"see {self.base / 'log'}:\n{self.log_tail(name)}")
            if pred():
                return
            time.sleep(0.3)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; see {self.base / 'log'}:\n"
                           + "\n".join(self.log_tail(n) for n in self.procs))

    def log_tail(self, name: str, n: int = 15) -> str:
        text = ""
        for f in (self.base / "log" / f"{name}.out", self.base / "log" / f"{name}.log"):
            if f.exists():
                text += f.read_text(errors="replace")
        return "\n".join(f"  {name}: {line}" for line in text.splitlines()[-n:])

    # ------------------------------------------------------------------ client tools
    def run(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=check,
                              env={**os.environ, **self.env})

    def _ok(self, cmd) -> bool:
        try:
            return self.run(cmd, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _out(self, cmd) -> str:
        return self.run(cmd, check=False).stdout

    def node_state(self) -> str:
        return self._out(["sinfo", "-h", "-N", "-o", "%t"]).strip()

    def queue(self) -> dict[str, str]:
        """Job id (``123`` or ``123_4``) -> state, for every job slurmctld still holds."""
        out = self._out(["squeue", "-h", "-r", "--states=all", "-o", "%i|%T"])
        return dict(line.split("|", 1) for line in out.split() if "|" in line)

    # ------------------------------------------------------------------ stop
    def stop(self) -> list[str]:
        """Cancel every job, stop the daemons, kill leftovers; returns the leftovers that were killed."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self._ok(["scancel", "--full", "--user", str(os.geteuid())])
            t0 = time.monotonic()
            while time.monotonic() - t0 < 30 and any(s in ("RUNNING", "PENDING", "COMPLETING", "CONFIGURING",
                                                           "REQUEUED", "SUSPENDED")
                                                      for s in self.queue().values()):
                time.sleep(0.5)
        for name in reversed(DAEMONS):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        left = self.leftovers()
        for pid, cmd in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return [f"{pid} {cmd}" for pid, cmd in left]

    def leftovers(self) -> list[tuple[int, str]]:
        """Processes other than this one whose environment holds this cluster's ``SLURM_CONF``."""
        marker = f"SLURM_CONF={self.conf}".encode()
        found = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == os.getpid():
                continue
            try:
                if marker in (d / "environ").read_bytes().split(b"\0"):
                    found.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()))
            except OSError:
                continue
        return found
