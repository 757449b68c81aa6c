"""Metrics recorded from inside a notebook, read back by tests and by ``mednb run``.

``record(name, value, **tags)`` shows the value and stores it as an output of MIME type
:data:`MIME`, so any executed notebook carries its own metrics (papermill, nbval, JupyterLab
alike). When ``$MEDNB_METRICS`` names a file, each record is also appended there as a JSON line.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

MIME = "application/vnd.mednb.metric+json"
PARAMS_MIME = "application/vnd.mednb.params+json"

_LOG: list[dict] = []


def _clean(v):
    if hasattr(v, "item") and callable(v.item):
        try:
            v = v.item()
        except (ValueError, RuntimeError):
            pass
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def record(name: str, value, **tags) -> dict:
    """Record a metric. name: e.g. ``test_auc``; value: a number; tags: ``dataset=…, seed=…``.

    Returns the record (a dict with ``metric``, ``value`` and the tags).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("metric name must be a non-empty string")
    val = _clean(value)
    if not (val is None or isinstance(val, (int, float))) or isinstance(val, bool):
        raise TypeError(f"metric {name!r}: value must be a number, got {type(value).__name__}")
    rec = {"metric": name, "value": val, **{k: _clean(v) for k, v in tags.items()}}
    _LOG.append(rec)
    path = os.environ.get("MEDNB_METRICS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")
    tag_txt = ", ".join(f"{k}={v}" for k, v in tags.items())
    shown = f"{val:.4f}" if isinstance(val, float) else str(val)
    try:
        from IPython.display import display
        from IPython import get_ipython
        if get_ipython() is not None:
            display({MIME: rec, "text/plain": f"● {name} = {shown}" + (f"  [{tag_txt}]" if tag_txt else "")},
                    raw=True)
    except ImportError:
        pass
    return rec


def recorded() -> list[dict]:
    """Every record made in this process (a copy)."""
    return list(_LOG)


def _outputs(path: str | Path, mime: str):
    nb = json.loads(Path(path).read_text())
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            data = out.get("data", {})
            if mime in data:
                yield data[mime]


def read_notebook(path: str | Path) -> list[dict]:
    """The metrics recorded in an executed notebook, in order."""
    return list(_outputs(path, MIME))


def read_params(path: str | Path) -> dict | None:
    """The resolved parameters an executed notebook printed in its setup cell (None if absent)."""
    found = list(_outputs(path, PARAMS_MIME))
    return found[-1] if found else None
