"""One live progress line for a sweep: units done / running / failed, elapsed time and ETA.

A ``tqdm.auto`` bar (a widget in Jupyter, one carriage-return line in a terminal) refreshed once a second
by a background thread. "running" counts the units whose work folder exists (``DIR/units/.<name>.run``),
so it is right for every executor — in this process, on Ray workers or in Slurm jobs — without asking
the engine. Off a terminal (a Slurm log, CI) it redraws at most every 60 s, so logs stay short.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path


class Progress:
    def __init__(self, units_dir: Path, names: list[str], total: int, done: int = 0, failed: int = 0,
                 desc: str = "sweep", enabled: bool = True):
        self.units_dir, self.names = Path(units_dir), list(names)
        self.failed, self.enabled = failed, enabled
        self._stop = threading.Event()
        self._thread = None
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=done, desc=desc, unit="unit", smoothing=0, dynamic_ncols=True,
                            file=sys.stderr,
                            bar_format="{desc}: {n_fmt}/{total_fmt} units done{postfix} [{elapsed}<{remaining}]")
            live = type(self.bar).__module__.startswith("tqdm.notebook") or getattr(sys.stderr, "isatty", bool)()
            self.every = 1.0 if live else 60.0
            self.bar.mininterval = self.every
            self._postfix()

    def running(self) -> int:
        return sum((self.units_dir / f".{n}.run").is_dir() for n in self.names)

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"{self.running()} running, {self.failed} failed", refresh=False)

    def start(self) -> "Progress":
        if self.bar is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="mednb-sweep-progress")
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._postfix()
            self.bar.refresh()

    def finished(self, name: str, status: str) -> None:
        """One unit finished with ``status`` (``ok``, ``failed`` or ``interrupted``)."""
        if status != "ok":
            self.failed += 1
        if self.bar is not None:
            self._postfix()
            self.bar.update(1)

    def write(self, line: str) -> None:
        """Print a line above the bar (or plainly when there is none)."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.bar is not None:
            self._postfix()
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
