"""Many hospitals, one model (notebook 09): multisite generalization, federated learning with Flower,
and continual adaptation to a new hospital.

* :mod:`.sites` — K simulated hospitals (Dirichlet label skew) and one unseen site; :mod:`.scanners` — their
  acquisition profiles (feature shift);
* :mod:`.methods` — local-only, centralized, FedAvg, FedProx, FedBN (one engine: :func:`mednb.engine.fit`);
* :mod:`.apps` — the Flower ``ClientApp`` / ``ServerApp``; :mod:`.strategy` — Flower's strategies, seeded per
  site and instrumented; :mod:`.exchange` — which arrays leave a hospital;
* :mod:`.simulation` — Flower's Simulation Runtime (Ray); :mod:`.deployment` — its Deployment Runtime (a SuperLink
  and one SuperNode process per hospital on this machine);
* :mod:`.adapt` — AdaBN and few-label fine-tuning at the unseen site, with forgetting on the seen ones;
* :mod:`.study` — the measurements, tables and verdicts; :mod:`.figures` — its two figures; :mod:`.profiles` —
  the knob tables.

Flower's telemetry and update check and Ray's usage statistics are switched off unless the environment
already says otherwise (hospital data workflows should not phone home).
"""
import os as _os

for _k, _v in (("FLWR_TELEMETRY_ENABLED", "0"), ("FLWR_DISABLE_UPDATE_CHECK", "1"), ("RAY_USAGE_STATS_ENABLED", "0")):
    _os.environ.setdefault(_k, _v)

from .scanners import SHIFTS, apply_shift, site_shifts  # noqa: E402
from .sites import Sites, build_sites, check_knobs, dirichlet_shares, load_site, partition  # noqa: E402
from .methods import (BASELINES, LOCAL, METHODS, Setup, centralized, check_method, check_methods,  # noqa: E402
                      check_plan, local_only, setups_from)
from .apps import FEDERATED, client_app, server_app  # noqa: E402
from .simulation import Results, backend_config, read_results, simulate  # noqa: E402
from .deployment import Federation, commands, deploy, free_ports  # noqa: E402
from .adapt import FINETUNE, adabn, adaptation, finetune, pick_labels  # noqa: E402
from .study import (adaptation_all, baselines, budgets, build_all, claims, communication,  # noqa: E402
                    compare_runtimes, final_table, generalization, print_claims, record_claims, record_results,
                    results, site_method, unseen_all, upload_bytes)
from .profiles import CHECKS, PROFILES  # noqa: E402


def __getattr__(name):
    """The figures load matplotlib on first use (hospital processes import this package and never plot)."""
    if name in ("sites_figure", "rounds_figure", "adaptation_convergence"):
        from . import figures
        return getattr(figures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
