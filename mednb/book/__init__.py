"""The book: a ``mednb run`` folder (and sweep folders) as a static HTML site to read without a kernel.

``build(RUN_DIR, SITE, sweeps=[...])`` writes ``SITE/index.html`` (the curriculum, the run's evidence), one
page per executed notebook (nbconvert's HTMLExporter, offline), ``claims.html`` and one
``leaderboard-<sweep>.html`` with SVG charts per sweep. Relative links only; no network to build or view.
"""
from .build import build
from .charts import ours_vs_paper, write_charts
from .notebooks import exporter, prepare
from .source import BookError, Entry, Run, check_sweep, curriculum, load_run, run_sweeps

__all__ = ["build", "BookError", "Entry", "Run", "load_run", "check_sweep", "curriculum", "run_sweeps",
           "exporter", "prepare", "ours_vs_paper", "write_charts"]
