"""One pool-based active-learning run: :class:`ActiveLearner` and the model it retrains (:class:`ModelSpec`).

A round is *query* (the strategy picks ``k`` unlabelled pool samples), *label* (:meth:`ActiveLearner.add`:
the annotator's labels, the ground truth by default), *retrain* (:func:`mednb.engine.fit` on the
labelled set with the learner's :class:`~mednb.engine.Recipe`, model selection on val) and *evaluate*
(test AUC/ACC, one row of ``history``).

Every round of every strategy trains the same :class:`~mednb.engine.Recipe` step budget (``Recipe(steps=N)``),
whatever its number of labels: an arm with fewer labels is not also an arm with fewer optimizer steps (Oliver
et al., NeurIPS 2018; Lüth et al., NeurIPS 2023). With ``val_labels="matched"`` each round selects its model on
a validation subset proportional to its labels instead of the whole validation split (Lüth et al.).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from .. import engine
from ..data import Split, Splits
from .probes import predict_probs
from .sources import load_encoder
from .strategies import Scoring, get, scores_table

#: the learner's training default: 100 optimizer steps of Adam at lr 1e-3 on batches of 32 per round whatever
#: the number of labels (multistep schedule, best val AUC of 10 checks kept — the other
#: :class:`~mednb.engine.Recipe` defaults)
RECIPE = engine.Recipe(steps=100, lr=1e-3, batch_size=32)


@dataclass(frozen=True)
class ModelSpec:
    """The classifier each round trains: registry ``name`` (:func:`mednb.models.create`) with head
    ``dropout`` (BALD needs > 0) and further keywords ``kw``; ``init``: pre-trained encoder weights
    (see :func:`~mednb.active.sources.load_encoder`) loaded into every fresh model."""
    name: str = "cnn"
    dropout: float = 0.3
    kw: dict = field(default_factory=dict)
    init: object = field(default=None, repr=False)

    def __post_init__(self):
        if not 0 <= float(self.dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "dropout", float(self.dropout))
        object.__setattr__(self, "kw", dict(self.kw or {}))

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    def create(self, splits: Splits) -> nn.Module:
        """A fresh model for ``splits`` (encoder weights from ``init`` when given)."""
        from .. import models
        kw = dict(self.kw)
        if self.dropout > 0:
            kw["dropout"] = self.dropout
        m = models.create(self.name, splits.n_channels, splits.n_outputs, dims=splits.dims, size=splits.size, **kw)
        return load_encoder(m, self.init)


def pool_indices(pool, n: int, seed: int) -> np.ndarray:
    """The pool as sorted train indices: None → all ``n``; an int → a seeded random subset of that size
    (all when it is not in ``1..n-1``); else the given indices."""
    if pool is None:
        return np.arange(n)
    if isinstance(pool, (int, np.integer)):
        return np.sort(np.random.default_rng(10_000 + seed).permutation(n)[:int(pool)]) if 0 < pool < n \
            else np.arange(n)
    return np.unique(np.asarray(pool, dtype=np.int64))


def _seed_set(y: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator, stratified: bool) -> np.ndarray:
    if not stratified:
        return pool[rng.permutation(len(pool))[:n]]
    classes = np.unique(y[pool])
    per = [pool[y[pool] == c] for c in classes]
    out = [p[rng.permutation(len(p))[:max(1, n // len(classes))]] for p in per]
    got = np.concatenate(out)[:n]
    rest = np.setdiff1d(pool, got)
    return np.concatenate([got, rest[rng.permutation(len(rest))[:n - len(got)]]])


def _fit_keywords(fit_kw) -> dict:
    kw = dict(fit_kw or {})
    clash = sorted(set(kw) & {f.name for f in dataclasses.fields(engine.Recipe)})
    if clash:
        raise ValueError(f"fit_kw takes engine.fit's non-recipe keywords; put {', '.join(clash)} in the recipe")
    return kw


class ActiveLearner:
    """State of one active-learning run over ``splits.train`` (a labelled list, the rest of the pool
    unlabelled). ``seed_set(n)`` → ``fit()`` → ``query(k)`` → ``add(idx, y)`` → ``fit()`` …

    recipe: how each round trains (:class:`~mednb.engine.Recipe`; None → :data:`RECIPE`).
    model: a registry name or a :class:`ModelSpec` (dropout, keywords, pre-trained ``init``).
    scoring: the query-time settings of BALD and AIFT (:class:`~mednb.active.strategies.Scoring`).
    pool: None (all of train), an int (a seeded random pool of that size) or train indices.
    warm_start: keep training the previous round's model instead of a fresh one.
    fit_kw: further non-recipe keywords of :func:`mednb.engine.fit` (e.g. ``class_weight``, or ``augment``:
    a callable such as ``mednb.augment.get(name, dims=...)``).
    ``history``: one dict per fit — round, n_labels, test_auc, test_acc, val_auc, queried (indices),
    n_queried, n_wrong_labels, strategy, seed, steps (optimizer steps of the fit), n_val (validation images
    selection read), seconds (and tag). ``curves``: the engine's validation history of each fit (one list of
    checks per round, with ``"step"``), for :func:`mednb.plot.convergence`.
    """

    def __init__(self, splits: Splits, strategy: str = "entropy", recipe: engine.Recipe | None = None, *,
                 model: str | ModelSpec = "cnn", scoring: Scoring | None = None, pool=None,
                 warm_start: bool = False, seed: int = 0, device="auto",
                 fit_kw: dict | None = None, tag: str | None = None):
        self.strategy_name = str(strategy).lower()
        self.strategy = get(strategy)
        if engine.is_multilabel(splits.task):
            raise ValueError("multi-label sets are not supported by these strategies")
        self.spec = model if isinstance(model, ModelSpec) else ModelSpec(str(model))
        if self.strategy_name == "bald" and self.spec.dropout <= 0:
            raise ValueError("strategy 'bald' needs dropout > 0 (MC dropout)")
        recipe = RECIPE if recipe is None else recipe
        if not isinstance(recipe, engine.Recipe):
            raise TypeError(f"recipe must be an engine.Recipe, got {type(recipe).__name__}")
        if recipe.steps is None:
            raise ValueError(f"every active-learning round trains one step budget: give the recipe steps=N "
                             f"(got {recipe.budget}, which gives a round with fewer labels fewer steps)")
        self.recipe, self.scoring = recipe, scoring or Scoring()
        self.warm_start, self.seed = bool(warm_start), int(seed)
        self.device = engine.get_device(device)
        self.fit_kw, self.tag = _fit_keywords(fit_kw), tag
        self.rng = np.random.default_rng(self.seed)
        self.splits = splits
        self.pool = pool_indices(pool, len(splits.train), self.seed)
        self._in_pool = np.zeros(len(splits.train), bool)
        self._in_pool[self.pool] = True
        # the labels the annotator gave (start as the ground truth; only labelled rows are ever used)
        self.given = splits.train.y.clone()
        self.truth = splits.train.y[:, 0].numpy().copy()
        self._view = dataclasses.replace(splits, train=Split(splits.train.x, self.given, splits.train.masks))
        self.labelled: list[int] = []
        self._pending: list[int] = []
        self.history: list[dict] = []
        self.curves: list[list[dict]] = []
        self.model: nn.Module | None = None
        self.round = 0
        self._probs_cache: tuple[int, np.ndarray] | None = None

    # -- sets
    @property
    def unlabelled(self) -> np.ndarray:
        mask = self._in_pool.copy()
        mask[self.labelled] = False
        return np.nonzero(mask)[0]

    @property
    def n_labels(self) -> int:
        return len(self.labelled)

    def seed_set(self, n: int, stratified: bool = False) -> np.ndarray:
        """Cold start: label ``n`` random pool samples (class-stratified if asked)."""
        idx = _seed_set(self.truth, self.unlabelled, int(n), self.rng, stratified)
        self.add(idx)
        return idx

    def add(self, idx, y=None) -> None:
        """Label pool samples ``idx`` with ``y`` (None = the ground truth, an oracle annotator)."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if len(np.unique(idx)) != len(idx):
            raise ValueError("duplicate indices in one batch")
        lab = set(self.labelled)
        again = [int(i) for i in idx if int(i) in lab]
        if again:
            raise ValueError(f"already labelled: {again[:5]}")
        if not self._in_pool[idx].all():
            raise ValueError("indices outside the pool")
        if y is not None:
            y = np.asarray(y, dtype=np.int64).reshape(-1)
            if len(y) != len(idx):
                raise ValueError("need one label per index")
            if (y < 0).any() or (y >= self.splits.n_classes).any():
                raise ValueError(f"labels must be in 0..{self.splits.n_classes - 1}")
            self.given[torch.as_tensor(idx), 0] = torch.as_tensor(y)
        self.labelled.extend(int(i) for i in idx)
        self._pending.extend(int(i) for i in idx)

    # -- model
    def new_model(self) -> nn.Module:
        return self.spec.create(self.splits)

    def fit(self) -> dict:
        """Train on the labelled set (fresh model, or warm start), evaluate on test; append to ``history``."""
        if not self.labelled:
            raise ValueError("nothing labelled yet: call seed_set(n) or add(idx) first")
        t0 = time.perf_counter()
        res = self._retrain()
        row = self._evaluate(res, t0)
        self.history.append(row)
        self.curves.append(res.history)
        self._pending = []
        self._probs_cache = None
        self.round += 1
        return row

    def _retrain(self) -> engine.FitResult:
        s = self.seed * 1000 + self.round
        engine.seed_everything(s)
        if self.model is None or not self.warm_start:
            self.model = self.new_model()
        kw = dict(device=self.device, seed=s, progress=False)
        kw.update(self.fit_kw)
        res = engine.fit(self.model, self._view, self.recipe, train_idx=torch.as_tensor(np.sort(self.labelled)),
                         **kw)
        self.model = res.model
        return res

    def _evaluate(self, res: engine.FitResult, t0: float) -> dict:
        test = engine.evaluate(self.model, self.splits.test, self.splits.task, self.device)
        pending = self._pending
        row = {"round": self.round, "n_labels": self.n_labels, "test_auc": test["auc"], "test_acc": test["acc"],
               "val_auc": res.best.get("val_auc", math.nan), "queried": list(pending), "n_queried": len(pending),
               "n_wrong_labels": int((self.given[pending, 0].numpy() != self.truth[pending]).sum()),
               "strategy": self.strategy_name, "seed": self.seed, "steps": res.steps,
               "n_val": res.n_val,
               "seconds": time.perf_counter() - t0}
        if self.tag is not None:
            row["tag"] = self.tag
        return row

    def probs(self, idx) -> np.ndarray:
        """(len(idx), K) current model probabilities of train samples ``idx``."""
        if self.model is None:
            raise ValueError("no model yet: fit() first")
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        x, task = self.splits.train.x, self.splits.task
        if self._probs_cache is None or self._probs_cache[0] != self.round:
            allp = np.full((len(x), self.splits.n_outputs), np.nan, np.float32)
            allp[self.pool] = predict_probs(self.model, x[torch.as_tensor(self.pool)], task, self.device)
            self._probs_cache = (self.round, allp)
        out = self._probs_cache[1][idx]
        if np.isnan(out).any():  # outside the pool
            out = predict_probs(self.model, x[torch.as_tensor(idx)], task, self.device)
        return out

    def query(self, k: int, strategy: str | None = None) -> np.ndarray:
        """The ``k`` unlabelled pool samples the strategy (default: this learner's) would label next."""
        if self.model is None and (strategy or self.strategy_name) != "random":
            raise ValueError("no model yet: fit() first")
        cand = self.unlabelled
        k = min(int(k), len(cand))
        fn = self.strategy if strategy is None else get(strategy)
        rng = np.random.default_rng([self.seed, self.round, 1])
        picked = np.asarray(fn(self, cand, k, rng), dtype=np.int64)
        assert len(np.unique(picked)) == len(picked) == k and np.isin(picked, cand).all()
        return picked

    def step(self, k: int) -> dict:
        """One round: query ``k``, label them with the ground truth, retrain and evaluate."""
        self.add(self.query(k))
        return self.fit()

    def scores_table(self, idx) -> "pd.DataFrame":
        """How each strategy sees train samples ``idx`` (see :func:`~mednb.active.strategies.scores_table`)."""
        return scores_table(self, idx)
