"""Whole experiments: a budget schedule, one run of the loop, and a paired comparison of strategies."""
from __future__ import annotations

from .. import engine
from ..data import Splits
from .learner import ActiveLearner
from .strategies import get


def load_data(name: str, size: int = 28, phantom_counts=None) -> Splits:
    """:func:`mednb.data.load`, with ``phantom_counts`` = (train, val, test) sizes used for phantoms only."""
    from .. import data
    if data.check_name(name) in data.PHANTOMS and phantom_counts:
        return data.load(name, size, counts=tuple(int(c) for c in phantom_counts))
    return data.load(name, size)


def schedule(initial: int, query: int, rounds: int) -> list[int]:
    """Cumulative label counts: ``[initial, initial + query, …]`` (``rounds`` queries after the seed set)."""
    if initial < 1 or query < 1 or rounds < 0:
        raise ValueError(f"need initial >= 1, query >= 1, rounds >= 0; got {initial}, {query}, {rounds}")
    return [initial + r * query for r in range(rounds + 1)]


def run(splits: Splits, strategy: str, budget, recipe: engine.Recipe | None = None, *, seed: int = 0,
        stratified: bool = False, progress: bool = False, **learner_kw) -> ActiveLearner:
    """Run one pool-based active-learning experiment.

    budget: cumulative label counts, e.g. ``schedule(20, 20, 5)`` = ``[20, 40, …, 120]``: a random
    seed set of ``budget[0]`` (stratified if asked), then one query round per further entry.
    recipe (a step budget, the same for every round) and learner_kw (``model``, ``scoring``, ``pool``, …): see :class:`ActiveLearner`.
    Returns the :class:`ActiveLearner` (``.history``, ``.labelled``, ``.model``).
    """
    budget = [int(b) for b in budget]
    if not budget or budget[0] < 1 or any(b <= a for a, b in zip(budget, budget[1:])):
        raise ValueError(f"budget must be increasing label counts >= 1, got {budget}")
    learner = ActiveLearner(splits, strategy, recipe, seed=seed, **learner_kw)
    if budget[-1] > len(learner.pool):
        raise ValueError(f"budget {budget[-1]} exceeds the pool ({len(learner.pool)} samples)")
    from tqdm.auto import tqdm
    learner.seed_set(budget[0], stratified)
    learner.fit()
    for n in tqdm(budget[1:], desc=f"{strategy} seed {seed}", disable=not progress, leave=False):
        learner.step(n - learner.n_labels)
    return learner


def compare(splits: Splits, strategies, budget, seeds=(0,), recipe: engine.Recipe | None = None, *,
            progress: bool = True, **learner_kw):
    """Every strategy × seed with the same seeded cold-start set per seed (a paired comparison).

    Returns ``(frame, learners)``: a tidy DataFrame (one row per strategy, seed and round) and the
    learners keyed by ``(strategy, seed)``."""
    import pandas as pd
    from tqdm.auto import tqdm
    for s in strategies:
        get(s)
    runs = {}
    jobs = [(s, sd) for sd in seeds for s in strategies]
    for s, sd in tqdm(jobs, desc=f"active learning on {splits.name}", disable=not progress):
        runs[(s, sd)] = run(splits, s, budget, recipe, seed=sd, **learner_kw)
    frame = pd.DataFrame([dict(row, dataset=splits.name) for lr in runs.values() for row in lr.history])
    return frame, runs
