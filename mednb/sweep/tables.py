"""Tables and text of a sweep's leaderboard (built by :mod:`mednb.sweep.report`): per-class summaries,
pooled reliability bins, time and cost, and the results.csv / leaderboard.md / leaderboard.html text."""
from __future__ import annotations

import html as _html
import io
import math

from .. import metrics as M

DASH = "–"
STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:110em}"
         "table{border-collapse:collapse;font-size:90%;margin:1em 0}"
         "th,td{border:1px solid #ccc;padding:2px 6px;text-align:left}th{background:#f0f0f0}"
         "pre{background:#f7f7f7;padding:.5em;overflow-x:auto}")


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def per_class(g: list[dict]) -> dict:
    """Mean over seeds of each class's recall and F1 (``recall``, ``f1``, class ``labels``, ``worst_recall``)."""
    out = {}
    labels: dict[int, str] = {}
    for metric, key in (("test_recall", "recall"), ("test_f1", "f1")):
        by: dict[int, list] = {}
        for r in g:
            if r["metric"] == metric and r.get("class") is not None:
                by.setdefault(int(r["class"]), []).append(r["value"])
                labels.setdefault(int(r["class"]), str(r.get("label", r["class"])))
        out[key] = [M.mean_sd(by[c])[0] for c in sorted(by)]
    out["labels"] = [labels[c] for c in sorted(labels)]
    finite = [v for v in out["recall"] if not _nan(v)]
    out["worst_recall"] = min(finite) if finite else math.nan
    return out


def pooled_bins(g: list[dict]) -> dict | None:
    """The ``test_reliability`` records of a group summed into :func:`mednb.metrics.reliability` bins."""
    rel = [r for r in g if r["metric"] == "test_reliability" and r.get("count")]
    if not rel:
        return None
    n_bins = int(rel[0].get("n_bins") or 10)
    bins = {"edges": [i / n_bins for i in range(n_bins + 1)], "count": [0] * n_bins,
            "confidence_sum": [0.0] * n_bins, "correct_sum": [0.0] * n_bins}
    for r in rel:
        b, n = int(r["bin"]), int(r["count"])
        bins["count"][b] += n
        bins["confidence_sum"][b] += float(r["confidence"]) * n
        bins["correct_sum"][b] += float(r["value"] if r["value"] is not None else 0.0) * n
    return bins


def is_gpu(device) -> bool:
    """A unit's device class is a GPU's name (or ``cuda``/``mps``), not ``cpu`` or unknown."""
    return device is not None and str(device).lower() not in ("cpu", "unknown", "")


def cost(units: list[dict]) -> dict:
    """Wall time summed over units, split into GPU-hours and CPU-hours (wall × the unit's CPUs when known)."""
    secs = [(u, float(u["seconds"])) for u in units if u["seconds"] is not None]
    gpu = sum(s for u, s in secs if is_gpu(u["device"])) / 3600
    cpu = sum(s * float(u.get("cpus") or 1) for u, s in secs if not is_gpu(u["device"])) / 3600
    total = sum(s for _, s in secs)
    return {"units": len(units), "timed": len(secs), "seconds": total, "gpu_hours": gpu, "cpu_hours": cpu,
            "mean_seconds": total / len(secs) if secs else math.nan}


# ----------------------------------------------------------------------------- cells
def _num(v, digits: int = 3, sign: bool = False) -> str:
    return DASH if _nan(v) else f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _ours(row: dict, m: str) -> str:
    n, mean = row[f"{m}_n"], row[f"{m}_mean"]
    return DASH if not n else f"{mean:.3f} (n=1)" if n == 1 else f"{mean:.3f} ± {row[f'{m}_sd']:.3f} (n={n})"


def _list(vals) -> str:
    return " / ".join(_num(v, 2) for v in vals) if vals else DASH


def compared_with(row: dict) -> str:
    if row["paper_method"] is None:
        return f"{row['note'] or 'no paper row'}"
    return row["paper_method"] + (f" ({row['note']})" if row["note"] else "")


def main_table(board: list[dict]):
    """ours ± sd beside the paper, difference and verdict, per row (a DataFrame of strings)."""
    import pandas as pd
    out = []
    for r in board:
        row = {"dataset": r["dataset"], "size": r["size"], "model": r["model"]}
        if any(b["setting"] for b in board):
            row["setting"] = r["setting"]
        for m in ("auc", "acc"):
            M_ = m.upper()
            row[f"ours {M_}"] = _ours(r, m)
            row[f"paper {M_}"] = "no paper row" if r[f"paper_{m}"] is None else f"{r[f'paper_{m}']:.3f}"
            row[f"Δ {M_}"] = _num(r[f"diff_{m}"], sign=True)
            row[f"{M_} verdict"] = r[f"verdict_{m}"]
        row["compared with"] = (compared_with(r) + (" ⚠ mixed environment" if r["mixed_env"] else "")
                                + (" ⚠ mixed settings: not averaged" if r.get("mixed_settings") else ""))
        out.append(row)
    return pd.DataFrame(out)


def detail_table(board: list[dict]):
    """Balanced ACC, ECE, worst-class and per-class recall/F1, seconds per unit (a DataFrame of strings)."""
    import pandas as pd
    return pd.DataFrame([{"dataset": r["dataset"], "size": r["size"], "model": r["model"],
                          **({"setting": r["setting"]} if any(b["setting"] for b in board) else {}),
                          "balanced ACC": _ours(r, "balanced_acc"), "ECE": _ours(r, "ece"),
                          "worst-class recall": _num(r["worst_recall"], 2),
                          "per-class recall": _list(r["recall"]), "per-class F1": _list(r["f1"]),
                          "classes": " / ".join(r["labels"]) or DASH,
                          "s / unit": _num(r["seconds_per_unit"], 1)} for r in board])


# ----------------------------------------------------------------------------- files
def results_csv(units: list[dict]) -> str:
    """Every record of every unit: ``unit, status, notebook, metric, value`` + one column per tag (``size``
    filled from the unit's resolved SIZE when the record has none); empty cells for absent tags."""
    import csv
    import json
    recs = [{"unit": u["name"], "status": u["status"], "notebook": u["notebook"], **r,
             **({"size": u["params"]["SIZE"]} if "size" not in r and "SIZE" in u["params"] else {})}
            for u in units for r in u["records"]]
    cols = list(dict.fromkeys(["unit", "status", "notebook", "metric", "value", *(k for r in recs for k in r)]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in recs:
        w.writerow([json.dumps(r[c]) if isinstance(r.get(c), (list, dict)) else "" if r.get(c) is None else r[c]
                    for c in cols])
    return buf.getvalue()


def _md_table(df) -> list[str]:
    if df.empty:
        return ["(no results)"]
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return ["| " + " | ".join(map(cell, df.columns)) + " |", "|" + "---|" * len(df.columns),
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False))]


def header(rep: dict) -> list[str]:
    """Title, tolerance and why, counts, cost: the lines above the tables."""
    tol, units, c = rep["tolerance"], rep["units"], rep["cost"]
    n_ok = sum(u["status"] == "ok" for u in units)
    name = rep["spec"].get("name") or rep["dir"].name
    src = "fixed in the sweep spec" if rep["tolerance_from_spec"] else "the default: the spec sets no tolerance"
    return [f"# Leaderboard — sweep `{name}`",
            f"{n_ok}/{len(units)} units ok · notebook `{rep['spec'].get('notebook', DASH)}` · profile "
            f"`{rep['spec'].get('profile', DASH)}` · commit `{rep['evidence'].get('commit', DASH)}`",
            f"**Verdict rule** ({src}): *reproduced* when |ours − paper| ≤ max({tol['abs']:g}, {tol['sd']:g} × "
            "seed-sd), else *below* / *above*. Why the default max(0.02, 2 × sd): the paper reports one run "
            "per cell, which scatters around its expected value by about one seed-sd, so a faithful "
            "reproduction falls within ±2 sd about 95 % of the time; the 0.02 floor covers few seeds (n = 1 "
            "has no sd) and the test-set noise of small sets (156 BreastMNIST test images). "
            "Paper: MedMNIST v2 (Yang et al., Scientific Data 2023); a model without its own paper row is "
            "compared with the paper's ResNet-18 at the same size, as the last column says; phantoms and sizes "
            "the paper did not run have no paper row.",
            f"Time: {c['seconds'] / 3600:.2f} h of wall time over {c['timed']} timed units (mean "
            f"{_num(c['mean_seconds'], 1)} s/unit) · {c['gpu_hours']:.2f} GPU-hours · {c['cpu_hours']:.2f} CPU-hours"]


def failure_lines(u: dict, n: int = 15) -> list[str]:
    tail = "\n".join((u["traceback"] or u["error"] or "").rstrip().splitlines()[-n:])
    return [f"### {u['name']} — {u['status']}", f"`{u['error'].splitlines()[0] if u['error'] else DASH}`",
            "```\n" + tail + "\n```"]


def env_lines(rep: dict) -> list[str]:
    ev = dict(rep["evidence"])
    ev["gpus"] = ", ".join(g.get("name", "?") for g in ev.get("gpus") or []) if isinstance(ev.get("gpus"), list) \
        else ev.get("gpus")
    lines = [("Sweep started with: " + ", ".join(f"{k} {ev[k]}" for k in ("python", "torch", "cuda", "driver", "gpus",
                                                                           "host", "packages_hash") if ev.get(k)))
             if ev else "no evidence recorded in sweep.json"]
    mixed = [r for r in rep["board"] if r.get("mixed_settings")]
    if mixed:
        points = {(r["dataset"], r["size"], r["model"]) for r in mixed}
        lines.append(f"⚠ {len(points)} grid point(s) ran under different settings (CPU threads, determinism): "
                     "their units are shown one row per setting, never averaged together.")
    if not rep["environment"]:
        return lines + ["All units ran under the same commit, package set and device class, with the same settings "
                        "(CPU threads, determinism)."]
    return lines + [f"⚠ {len({f['unit'] for f in rep['environment']})} unit(s) ran in a different environment "
                    "than the majority:"]


def markdown(rep: dict) -> str:
    import pandas as pd
    lines = []
    for block in header(rep):
        lines += [block, ""]
    lines += ["## Test AUC and ACC vs the paper", "", *_md_table(main_table(rep["board"])), "",
              "## Per-class recall and F1, balanced accuracy, calibration (ECE, 10 equal-width bins, top-label)",
              "", *_md_table(detail_table(rep["board"])), "", "## Failures", ""]
    for u in rep["failures"]:
        lines += [x for ln in failure_lines(u) for x in (ln, "")]
    if not rep["failures"]:
        lines += ["None.", ""]
    lines += ["## Environment", "", *(x for ln in env_lines(rep) for x in (ln, ""))]
    if rep["environment"]:
        lines += [*_md_table(pd.DataFrame(rep["environment"])), ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escaped HTML of one line of the Markdown above: `code`, **bold** and *emphasis*."""
    import re
    t = _html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", t)


def html(rep: dict) -> str:
    import pandas as pd
    esc = _html.escape
    tab = lambda df: df.to_html(index=False, na_rep=DASH, border=0, escape=True)  # noqa: E731
    head = header(rep)
    body = [f"<h1>{_inline(head[0][2:])}</h1>", *(f"<p>{_inline(h)}</p>" for h in head[1:]),
            "<h2>Test AUC and ACC vs the paper</h2>", tab(main_table(rep["board"])),
            "<h2>Per-class recall and F1, balanced accuracy, calibration</h2>", tab(detail_table(rep["board"])),
            "<h2>Failures</h2>"]
    for u in rep["failures"]:
        t, e, tb = failure_lines(u)
        body += [f"<h3>{esc(t[4:])}</h3>", f"<p><code>{esc(e.strip('`'))}</code></p>",
                 f"<pre>{esc(tb.strip('`').strip())}</pre>"]
    if not rep["failures"]:
        body.append("<p>None.</p>")
    body += ["<h2>Environment</h2>", *(f"<p>{esc(x)}</p>" for x in env_lines(rep))]
    if rep["environment"]:
        body.append(tab(pd.DataFrame(rep["environment"])))
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc(head[0][2:])}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
