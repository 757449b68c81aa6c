"""Executing one notebook with papermill: atomic output, quiet kernels, clean interrupts.

:func:`execute` runs a notebook into ``out/<stem>.ipynb`` (a temp file moved into place when done) and
returns its status; :func:`execute_quietly` also sends the kernel's own output (start-up warnings such as
"Kernel is running over TCP without encryption", crash messages) to ``out/kernel.log`` and turns
SIGINT/SIGTERM into KeyboardInterrupt, killing the kernel before the interrupt goes on.
"""
from __future__ import annotations

import os
import re
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

KERNEL_LOG = "kernel.log"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@contextmanager
def interruptible(signals=(signal.SIGINT, signal.SIGTERM), exc: type[BaseException] = KeyboardInterrupt):
    """While the block runs (main thread only), each of ``signals`` raises ``exc`` there: Ctrl-C, a
    ``kill -INT`` of this process alone and a scheduler's SIGTERM all stop the work the same way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise exc(f"received {signal.Signals(signum).name}")
    old = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _stop_kernel(pid: int | None) -> None:
    """Kill a kernel process left behind by an interrupted execution (no-op when it is gone)."""
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _traceback_tail(exc: BaseException, n: int = 20) -> tuple[str, str]:
    tb = getattr(exc, "traceback", None)
    if tb:
        text = "\n".join(_ANSI.sub("", t) for t in tb)
        head = f"{getattr(exc, 'ename', type(exc).__name__)}: {getattr(exc, 'evalue', '')}"
    else:
        import traceback
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        head = f"{type(exc).__name__}: {exc}"
    lines = text.rstrip().splitlines()
    return head.splitlines()[0][:300] if head else "", "\n".join(lines[-n:])


def execute(path: Path, out: Path, parameters: dict, cwd: Path | None = None,
            cell_timeout: int | None = None, kernel_name: str | None = None, **engine_kw) -> dict:
    """Run one notebook with papermill into ``out/<stem>.ipynb`` (atomically). Returns its status.
    ``engine_kw`` go to papermill's engine (e.g. nbclient's ``kernel_manager_class``)."""
    import logging
    import papermill
    # our own validation already checked the knobs; papermill's regex-based re-inspection of the
    # parameters cell only adds noise ("Unable to parse line", "Passed unknown parameter")
    for name in ("papermill", "papermill.translators"):
        logging.getLogger(name).setLevel(logging.ERROR)
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{path.stem}.", suffix=".running.ipynb")
    os.close(fd)
    t0 = time.perf_counter()
    st = {"status": "ok"}
    try:
        papermill.execute_notebook(str(path), tmp, parameters=parameters, cwd=str(cwd or path.parent),
                                   progress_bar=False, log_output=False, kernel_name=kernel_name,
                                   execution_timeout=cell_timeout, **engine_kw)
    except KeyboardInterrupt:
        Path(tmp).unlink(missing_ok=True)
        raise
    except Exception as e:  # noqa: BLE001 - a failing notebook must not stop the others
        head, tail = _traceback_tail(e)
        st = {"status": "failed", "error": head, "traceback": tail}
    st["seconds"] = round(time.perf_counter() - t0, 2)
    if Path(tmp).exists() and Path(tmp).stat().st_size > 0:
        os.replace(tmp, out / f"{path.stem}.ipynb")
    else:
        Path(tmp).unlink(missing_ok=True)
    return st


def execute_quietly(path: Path, out: Path, parameters: dict, cell_timeout, kernel_name) -> dict:
    """:func:`execute` with the kernel's own output sent to ``out/kernel.log`` and SIGINT/SIGTERM turned
    into KeyboardInterrupt; an interrupted kernel is killed before the interrupt goes on."""
    pid: list[int] = []
    km = manager_class({}, out / KERNEL_LOG, pid.append)
    with interruptible():
        try:
            return execute(path, out, parameters, cell_timeout=cell_timeout, kernel_name=kernel_name,
                           kernel_manager_class=km)
        except KeyboardInterrupt:
            for p in pid:
                _stop_kernel(p)
            raise


# papermill starts kernels through nbclient's ``kernel_manager_class``; the subclass below overrides the
# launch step (jupyter_client's documented ``_async_launch_kernel``) to merge an environment into the
# kernel's and to send the kernel process's own stdout/stderr to a log file instead of the terminal.
def manager_class(env: dict, log_path: str | Path, on_start: Callable[[int], None] | None = None):
    """An ``AsyncKernelManager`` subclass that launches its kernel with ``env`` and logs to ``log_path``;
    ``on_start(pid)`` is called once the kernel process exists."""
    from jupyter_client.manager import AsyncKernelManager

    class UnitKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            merged = dict(kw.get("env") or os.environ)
            for k, v in env.items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = str(v)
            kw["env"] = merged
            with open(log_path, "ab") as log:  # the kernel keeps its own copy of the descriptor
                kw["stdout"] = kw["stderr"] = log
                await super()._async_launch_kernel(kernel_cmd, **kw)
            if on_start is not None and self.provisioner is not None and getattr(self.provisioner, "pid", None):
                on_start(int(self.provisioner.pid))

    return UnitKernelManager
