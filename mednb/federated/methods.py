"""The five ways to train across hospitals, one engine underneath.

==============  ===========================================================================
 method          what is trained, and what leaves a hospital
==============  ===========================================================================
 local           each site alone on its own data; nothing is shared
 centralized     one model on all seen sites' data pooled (the images leave the hospitals:
                 the upper bound privacy rules forbid)
 fedavg          Flower FedAvg: sites train locally, the server averages all weights by
                 training-set size (McMahan et al., AISTATS 2017)
 fedprox         FedAvg + a proximal term μ/2·||w − w_global||² in every local loss
                 (Li et al., MLSys 2020)
 fedbn           FedAvg of everything except batch-norm layers, which stay local
                 (Li et al., ICLR 2021: designed for feature shift between scanners)
==============  ===========================================================================

Every method trains with :func:`mednb.engine.fit` and the same budget in optimizer steps. ``recipe.steps`` (the
notebook's ``STEPS``) is the local training of one round: each participating hospital takes that many optimizer
steps, whatever its number of images, so the federation trains ``rounds × steps × m`` steps in all (``m``
hospitals per round, :meth:`Setup.sites_per_round`). The baselines get the same total: local-only spreads it
evenly over the K hospitals (``rounds × steps × m / K`` each, ``rounds × steps`` when every hospital trains every
round), centralized trains all of it on the pooled data. The budget of a comparison (:attr:`Setup.budget`, the
``steps`` tag of its records) is ``rounds × steps``: the optimizer steps of one hospital that trains in every round.
The federated methods run through Flower's Simulation Runtime (:func:`simulate`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd
import torch

from .. import data, engine
from ..runtime import check_name
from .apps import initial_model
from .sites import Sites, check_knobs

METHODS = {
    "local": "each site alone",
    "centralized": "all seen sites' data pooled",
    "fedavg": "federated averaging",
    "fedprox": "federated averaging + proximal term",
    "fedbn": "federated averaging, batch norm kept local",
}
BASELINES = ("local", "centralized")
#: one round of local training: ``steps`` optimizer steps (set by the STEPS knob), constant LR, the last weights kept;
#: one check at the end (``evals=1``: local rounds are not validated)
LOCAL = engine.Recipe(steps=10, evals=1, schedule="constant", select="last")


def check_method(name: str) -> str:
    """The registry key of a method; an unknown name raises one error listing the valid ones."""
    return check_name(name, list(METHODS), "method")


def check_methods(names) -> list[str]:
    return [check_method(n) for n in names]


@dataclass(frozen=True)
class Setup:
    """How every method trains on one dataset. recipe: the local training of one round, a budget of
    ``recipe.steps`` optimizer steps (``select="last"`` keeps the round's final weights); rounds: communication
    rounds; fraction: share of the sites training each round; mu: FedProx's μ. The baselines' budgets are
    :meth:`local_recipe` and :meth:`pooled_recipe` (the module docstring)."""
    recipe: engine.Recipe
    rounds: int = 10
    model: str = "cnn"
    model_kw: dict = field(default_factory=dict)
    fraction: float = 1.0
    mu: float = 0.01
    eval_every: int = 1
    device: str = "auto"

    def __post_init__(self):
        if int(self.rounds) < 1:
            raise ValueError(f"rounds must be an int >= 1, got {self.rounds!r}")
        if not 0 < float(self.fraction) <= 1:
            raise ValueError(f"fraction of sites per round must be in (0, 1], got {self.fraction!r}")
        if not float(self.mu) >= 0:
            raise ValueError(f"FedProx mu must be >= 0, got {self.mu!r}")
        if self.recipe.steps is None:
            raise ValueError("a federated Setup trains a budget in optimizer steps per round: "
                             "recipe=engine.Recipe(steps=N, ...) (the notebook's STEPS knob)")

    @property
    def budget(self) -> int:
        """Optimizer steps of a hospital that trains in every round: ``rounds × recipe.steps`` (the ``steps`` tag)."""
        return int(self.rounds) * int(self.recipe.steps)

    def sites_per_round(self, k: int) -> int:
        """Hospitals that train in each round (as the strategies draw them: at least one, at most K)."""
        return min(int(k), max(1, int(round(float(self.fraction) * int(k)))))

    def local_recipe(self, k: int) -> engine.Recipe:
        """Local-only's recipe for each of K hospitals: the federation's total steps shared evenly among them."""
        return self.recipe.replace(steps=max(1, round(self.budget * self.sites_per_round(k) / int(k))))

    def pooled_recipe(self, k: int) -> engine.Recipe:
        """Centralized training's recipe: the federation's total steps, ``rounds × steps × m``, on the pooled data."""
        return self.recipe.replace(steps=self.budget * self.sites_per_round(k))



def check_plan(k: int, alpha: float, methods) -> list[str]:
    """Validate the number of sites, the Dirichlet α and the method names before anything runs."""
    check_knobs(k, alpha)
    return check_methods(methods)


def _knob(knobs, name: str, suffix: str):
    get = knobs.get if hasattr(knobs, "get") else (lambda key, d=None: getattr(knobs, key, d))
    value = get(name + suffix) if suffix else None
    return get(name) if value is None else value


def setups_from(knobs, datasets) -> dict[str, Setup]:
    """``{dataset: Setup}`` from notebook knobs (3D datasets use the ``*_3D`` knobs where they exist)."""
    out = {}
    for d in datasets:
        suffix = "_3D" if data.dims_of(d) == 3 else ""
        model = _knob(knobs, "MODEL", suffix)
        out[d] = Setup(engine.Recipe.from_knobs(knobs, LOCAL, suffix), int(_knob(knobs, "ROUNDS", suffix)), model,
                       {"width": int(_knob(knobs, "WIDTH", suffix))} if model == "cnn" else {},
                       float(_knob(knobs, "FRACTION", "")), float(_knob(knobs, "MU", "")),
                       device=str(_knob(knobs, "DEVICE", "")))
    return out


def experiment(sites: Sites, method: str, setup: Setup, threads: int | None = 1) -> dict:
    """The JSON description of one federated run that the ServerApp sends to the clients."""
    sp = sites.seen[0]
    return {"tag": f"{sites.dataset}-seed{sites.seed}-{method}", "method": method, "dataset": sites.dataset,
            "seed": sites.seed, "alpha": sites.alpha, "rounds": int(setup.rounds), "fraction": float(setup.fraction),
            "mu": float(setup.mu) if method == "fedprox" else 0.0, "eval_every": int(setup.eval_every),
            "model": {"name": setup.model, "in_channels": sp.n_channels, "num_classes": sp.n_outputs,
                      "dims": sp.dims, "size": sp.size, "kw": dict(setup.model_kw)},
            "recipe": asdict(setup.recipe), "device": setup.device, "threads": threads}


# ----------------------------------------------------------------------------- baselines
def _score(model, sp, device) -> dict:
    r = engine.evaluate(model, sp.test, sp.task, device)
    return {"test_auc": r["auc"], "test_acc": r["acc"], "n_test": len(sp.test)}


def local_only(sites: Sites, setup: Setup) -> tuple[pd.DataFrame, list]:
    """Each seen site trains alone; rows (site, test AUC/ACC on its own test split) and the K models."""
    rows, fitted = [], []
    for i, sp in enumerate(sites.seen):
        model = initial_model(experiment(sites, "local", setup))
        res = engine.fit(model, sp, setup.local_recipe(sites.k), eval_fn=lambda m, s: {}, seed=sites.seed * 100 + i,
                         device=setup.device, progress=False)
        rows.append({"site": i, **_score(res.model, sp, setup.device)})
        fitted.append(res.model)
    return _tag(pd.DataFrame(rows), sites, "local", setup), fitted


def centralized(sites: Sites, setup: Setup) -> tuple[pd.DataFrame, torch.nn.Module]:
    """One model on the pooled seen sites; rows = its test AUC/ACC on every seen site's test split."""
    model = initial_model(experiment(sites, "centralized", setup))
    res = engine.fit(model, sites.pooled(), setup.pooled_recipe(sites.k), eval_fn=lambda m, s: {},
                     seed=sites.seed * 100 + 99,
                     device=setup.device, progress=False)
    rows = [{"site": i, **_score(res.model, sp, setup.device)} for i, sp in enumerate(sites.seen)]
    return _tag(pd.DataFrame(rows), sites, "centralized", setup), res.model


def _tag(df: pd.DataFrame, sites: Sites, method: str, setup: Setup) -> pd.DataFrame:
    return df.assign(method=method, dataset=sites.dataset, seed=sites.seed, alpha=sites.alpha, round=setup.rounds,
                     steps=setup.budget)
