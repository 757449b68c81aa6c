"""The strategy registry: name → ``fn(learner, candidates, k, rng) -> chosen train indices``.

``candidates`` are the unlabelled pool's global train indices; ``rng`` a seeded NumPy generator for
tie-breaking. Every strategy but ``random`` probes the learner's current model (:mod:`.probes`)
with the settings of its :class:`Scoring` and ranks by a score of :mod:`.scores`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .probes import augmented_probs, dropout_layers, embeddings, mc_dropout_probs
from .scores import aift_scores, bald, entropy, k_center_greedy, least_confidence, margin, top_k


@dataclass(frozen=True)
class Scoring:
    """How the model is probed at query time: ``mc_samples`` dropout passes ``T`` (BALD);
    ``aift_copies`` augmented copies ``m``, the share ``aift_alpha`` kept by majority selection and the
    augmentation ``aift_augment`` (see :func:`~mednb.active.probes.augmented_probs`) for AIFT."""
    mc_samples: int = 10
    aift_copies: int = 8
    aift_alpha: float = 0.5
    aift_augment: object = "auto"

    def __post_init__(self):
        if int(self.mc_samples) < 1 or int(self.aift_copies) < 1:
            raise ValueError(f"mc_samples and aift_copies must be >= 1, got {self.mc_samples}, {self.aift_copies}")
        if not 0 < float(self.aift_alpha) <= 1:
            raise ValueError(f"aift_alpha must be in (0, 1], got {self.aift_alpha}")
        object.__setattr__(self, "mc_samples", int(self.mc_samples))
        object.__setattr__(self, "aift_copies", int(self.aift_copies))
        object.__setattr__(self, "aift_alpha", float(self.aift_alpha))


STRATEGIES: dict[str, Callable] = {}


def register(name: str):
    """Decorator: add ``fn(learner, candidates, k, rng)`` to :data:`STRATEGIES` under ``name``."""
    def deco(fn):
        STRATEGIES[name.lower()] = fn
        return fn
    return deco


def names() -> list[str]:
    """Valid strategy names."""
    return list(STRATEGIES)


def get(name: str) -> Callable:
    """The strategy called ``name``; an unknown name raises a ValueError listing the valid ones."""
    from ..runtime import check_name
    return STRATEGIES[check_name(name, STRATEGIES, "strategy")]


def _x(learner, idx) -> torch.Tensor:
    return learner.splits.train.x[torch.as_tensor(idx)]


def _query_seed(learner) -> int:
    return learner.seed * 7919 + learner.round


@register("random")
def _random(learner, cand, k, rng):
    return cand[rng.permutation(len(cand))[:k]]


def _uncertainty(score_fn):
    def strategy(learner, cand, k, rng):
        return cand[top_k(score_fn(learner.probs(cand)), k, rng)]
    strategy.__doc__ = f"Query the top-k of {score_fn.__name__}(p) on the unlabelled pool."
    return strategy


register("least_confidence")(_uncertainty(least_confidence))
register("margin")(_uncertainty(margin))
register("entropy")(_uncertainty(entropy))


@register("bald")
def _bald(learner, cand, k, rng):
    mc = mc_dropout_probs(learner.model, _x(learner, cand), learner.splits.task, learner.scoring.mc_samples,
                          learner.device, seed=_query_seed(learner))
    return cand[top_k(bald(mc), k, rng)]


@register("coreset")
def _coreset(learner, cand, k, rng):
    lab = np.asarray(learner.labelled, dtype=np.int64)
    both = np.concatenate([lab, cand])
    emb = embeddings(learner.model, _x(learner, both), learner.device)
    picked = k_center_greedy(emb, np.arange(len(lab)), k)
    return both[picked]


@register("aift")
def _aift(learner, cand, k, rng):
    sc = learner.scoring
    pr = augmented_probs(learner.model, _x(learner, cand), learner.splits.task, sc.aift_copies, sc.aift_augment,
                         learner.device, seed=_query_seed(learner))
    return cand[top_k(aift_scores(pr, sc.aift_alpha), k, rng)]


def scores_table(learner, idx) -> "pd.DataFrame":
    """How each strategy sees train samples ``idx`` (higher = asked first): the model's
    probabilities, least confidence, margin, entropy, BALD (if the model has dropout), core-set
    distance to the nearest labelled sample, and the AIFT score; plus the hidden truth."""
    import pandas as pd
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    x, sp, sc, dev = _x(learner, idx), learner.splits, learner.scoring, learner.device
    p = learner.probs(idx)
    cols = {"index": idx}
    for c in range(p.shape[1]):
        cols[f"p({str(sp.labels[c])[:14]})"] = p[:, c]
    cols.update(least_confidence=least_confidence(p), margin=margin(p), entropy=entropy(p))
    if dropout_layers(learner.model):
        cols["bald"] = bald(mc_dropout_probs(learner.model, x, sp.task, sc.mc_samples, dev, learner.seed))
    lab = np.asarray(learner.labelled, dtype=np.int64)
    if len(lab):
        e = torch.from_numpy(embeddings(learner.model, torch.cat([x, _x(learner, lab)]), dev))
        cols["coreset"] = torch.cdist(e[:len(idx)], e[len(idx):]).min(1).values.numpy()
    cols["aift"] = aift_scores(augmented_probs(learner.model, x, sp.task, sc.aift_copies, sc.aift_augment, dev,
                                               learner.seed), sc.aift_alpha)
    cols["truth"] = [str(sp.labels[int(t)]) for t in learner.truth[idx]]
    return pd.DataFrame(cols)
