"""Active learning: which samples should a doctor label?

Pool-based loop. The training split is a pool; a small random *seed set* is labelled (cold start),
a model is trained, a *strategy* scores the unlabelled pool and the ``k`` most informative samples
go to the annotator (an oracle that reads the ground truth, or a person through
:class:`LabelingPanel`); the model is retrained (from scratch, or warm-started) and the loop goes
on until the budget is spent. Every round is evaluated on the test split (model selection on val,
as :func:`mednb.engine.fit` does) and logged in a tidy history.

Strategies (:data:`STRATEGIES`, :func:`names`; higher score = queried first):

* ``random`` — uniform sampling, the baseline every claim is measured against.
* ``least_confidence`` — ``1 − max_k p_k``.
* ``margin`` — ``−(p_(1) − p_(2))``, the gap between the two most probable classes.
* ``entropy`` — ``−Σ_k p_k log p_k``.
* ``bald`` — Bayesian Active Learning by Disagreement (Houlsby et al. 2011; MC dropout as in Gal,
  Islam & Ghahramani, ICML 2017): mutual information ``H(E_t p_t) − E_t H(p_t)`` over ``T``
  stochastic forward passes with dropout on (the model needs ``dropout > 0``; dropout is enabled
  at query time only).
* ``coreset`` — core-set / k-center greedy on ``model.embed`` features (Sener & Savarese, ICLR 2018):
  repeatedly take the pool sample farthest from every labelled (or already chosen) sample.
* ``aift`` — Zhou et al., "Fine-tuning convolutional neural networks for biomedical image analysis:
  actively and incrementally", CVPR 2017: each candidate is augmented into ``m`` copies, the
  ``alpha`` fraction of copies that agree most with the candidate's majority class is kept, and the
  candidate's score is ``λ1 Σ_j e_j + λ2 Σ_{j≠l} d(j, l)`` — entropy of each copy plus the symmetric
  KL diversity between copies. The paper starts from a pre-trained CNN (see :func:`pretrained`).

Annotation-cost measures: :func:`labels_needed` and :func:`labels_saved_vs_random`.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import engine
from .data import Split, Splits, data_root

# ----------------------------------------------------------------------------- notebook profiles
PROFILES = {
    "smoke": dict(DATASET="phantom2d", VOLUME_DATASET="phantom3d", SIZE=28, MODEL="cnn",
                  STRATEGIES=["random", "entropy", "bald", "coreset", "aift"], VOLUME_STRATEGIES=["random", "entropy"],
                  PHANTOM_COUNTS=[240, 100, 200], VOLUME_PHANTOM_COUNTS=[120, 40, 80],
                  POOL=0, INITIAL=16, QUERY=16, ROUNDS=1, VOLUME_ROUNDS=1,
                  EPOCHS=4, MIN_STEPS=8, VOLUME_EPOCHS=3, BATCH_SIZE=32, LR=2e-3, DROPOUT=0.3, MC_SAMPLES=6,
                  AIFT_COPIES=4, PRETRAIN="auto", PRETRAIN_EPOCHS=1, SEEDS=[0], VOLUME_SEEDS=[0], DEVICE="auto"),
    "student": dict(DATASET="breastmnist", VOLUME_DATASET="adrenalmnist3d", SIZE=28, MODEL="cnn",
                    STRATEGIES=["random", "least_confidence", "margin", "entropy", "bald", "coreset", "aift"],
                    VOLUME_STRATEGIES=["random", "entropy", "coreset"],
                    PHANTOM_COUNTS=[1200, 300, 600], VOLUME_PHANTOM_COUNTS=[400, 100, 200], POOL=0, INITIAL=20, QUERY=20, ROUNDS=7, VOLUME_ROUNDS=3,
                    EPOCHS=15, MIN_STEPS=40, VOLUME_EPOCHS=10, BATCH_SIZE=32, LR=1e-3, DROPOUT=0.3,
                    MC_SAMPLES=10, AIFT_COPIES=8, PRETRAIN="auto", PRETRAIN_EPOCHS=10, SEEDS=[0, 1, 2],
                    VOLUME_SEEDS=[0, 1], DEVICE="auto"),
    "full": dict(DATASET="bloodmnist", VOLUME_DATASET="adrenalmnist3d", SIZE=28, MODEL="resnet18",
                 STRATEGIES=["random", "least_confidence", "margin", "entropy", "bald", "coreset", "aift"],
                 VOLUME_STRATEGIES=["random", "least_confidence", "margin", "entropy", "bald", "coreset", "aift"],
                 PHANTOM_COUNTS=[1200, 300, 600], VOLUME_PHANTOM_COUNTS=[400, 100, 200], POOL=0, INITIAL=100, QUERY=100, ROUNDS=10, VOLUME_ROUNDS=8,
                 EPOCHS=30, MIN_STEPS=300, VOLUME_EPOCHS=30, BATCH_SIZE=64, LR=1e-3, DROPOUT=0.3,
                 MC_SAMPLES=20, AIFT_COPIES=8, PRETRAIN="auto", PRETRAIN_EPOCHS=50, SEEDS=[0, 1, 2, 3, 4],
                 VOLUME_SEEDS=[0, 1, 2], DEVICE="auto"),
}


# Zhou, Shin, Zhang, Gurudu, Gotway, Liang. "Fine-tuning convolutional neural networks for biomedical
# image analysis: actively and incrementally". CVPR 2017, pp. 7340-7349 (abstract: "cut the annotation
# cost by at least half" compared with random selection / full training). Shown beside ours, never in place.
AIFT_PAPER = {"labels_saved_vs_random": 0.5, "claim": "annotation cost cut by at least half vs random selection",
              "citation": "Zhou et al., CVPR 2017 (AIFT)"}


# ----------------------------------------------------------------------------- scores (pure)
def _p(probs) -> torch.Tensor:
    p = torch.as_tensor(np.asarray(probs) if not isinstance(probs, torch.Tensor) else probs).double()
    if p.ndim != 2 and p.ndim != 3:
        raise ValueError(f"probabilities must be (N,K) or (T,N,K), got shape {tuple(p.shape)}")
    if p.shape[-1] == 1:  # a single sigmoid column → two classes
        p = torch.cat([1 - p, p], dim=-1)
    return p


def entropy(probs) -> np.ndarray:
    """Predictive entropy ``−Σ_k p_k log p_k`` (nats) of (N,K) probabilities → (N,)."""
    p = _p(probs)
    return (-(p * p.clamp_min(1e-12).log()).sum(-1)).numpy()


def least_confidence(probs) -> np.ndarray:
    """``1 − max_k p_k`` → (N,) (higher = less confident)."""
    return (1 - _p(probs).max(-1).values).numpy()


def margin(probs) -> np.ndarray:
    """Negative margin ``−(p_(1) − p_(2))`` → (N,) (higher = closer call between the two top classes)."""
    top2 = _p(probs).topk(2, dim=-1).values
    return (-(top2[..., 0] - top2[..., 1])).numpy()


def bald(mc_probs) -> np.ndarray:
    """Mutual information ``H(mean_t p_t) − mean_t H(p_t)`` of (T,N,K) MC-dropout probabilities → (N,).

    Zero when all T samples agree (only disagreement between passes counts, not mere uncertainty).
    """
    p = _p(mc_probs)
    if p.ndim != 3:
        raise ValueError(f"bald needs (T,N,K) MC samples, got shape {tuple(p.shape)}")
    mean = p.mean(0)
    h_mean = -(mean * mean.clamp_min(1e-12).log()).sum(-1)
    mean_h = (-(p * p.clamp_min(1e-12).log()).sum(-1)).mean(0)
    return (h_mean - mean_h).clamp_min(0).numpy()


def k_center_greedy(embeddings, labelled, k: int) -> np.ndarray:
    """Core-set selection (Sener & Savarese 2018): ``k`` rows of ``embeddings`` (N,F) chosen greedily,
    each the row farthest (L2) from all rows in ``labelled`` (indices) and those already chosen.
    With no labelled rows the first pick is the row farthest from the mean. Returns row indices."""
    e = torch.as_tensor(np.asarray(embeddings) if not isinstance(embeddings, torch.Tensor) else embeddings).float()
    lab = torch.as_tensor(np.asarray(labelled, dtype=np.int64).reshape(-1))
    k = min(int(k), len(e) - len(lab))
    if len(lab):
        d = torch.cdist(e, e[lab]).min(1).values
    else:
        d = (e - e.mean(0, keepdim=True)).norm(dim=1)
    d[lab] = -1.0
    chosen = []
    for _ in range(max(k, 0)):
        i = int(torch.argmax(d))
        chosen.append(i)
        d = torch.minimum(d, (e - e[i]).norm(dim=1))
        d[i] = -1.0
    return np.asarray(chosen, dtype=np.int64)


def aift_scores(copy_probs, alpha: float = 0.5, lambda1: float = 1.0, lambda2: float = 1.0) -> np.ndarray:
    """AIFT score (Zhou et al. CVPR 2017) of (N,m,K) probabilities of ``m`` augmented copies → (N,).

    Majority selection: keep the ``ceil(alpha·m)`` copies with the highest probability for the
    candidate's majority class (argmax of the mean); then ``λ1 Σ_j e_j + λ2 Σ_{j≠l} d(j,l)`` with
    ``e`` the entropy of each kept copy and ``d(j,l) = Σ_k (p_j^k − p_l^k) log(p_j^k / p_l^k)``.
    """
    p = _p(copy_probs)
    if p.ndim != 3:
        raise ValueError(f"aift needs (N,m,K) probabilities of augmented copies, got {tuple(p.shape)}")
    n, m, _ = p.shape
    keep = max(1, math.ceil(float(alpha) * m))
    major = p.mean(1).argmax(-1)                                        # (N,)
    conf = p.gather(2, major[:, None, None].expand(n, m, 1))[..., 0]    # (N,m)
    top = conf.topk(keep, dim=1).indices
    q = p.gather(1, top[..., None].expand(n, keep, p.shape[-1])).clamp_min(1e-12)  # (N,keep,K)
    ent = -(q * q.log()).sum(-1).sum(-1)
    diff = q[:, :, None, :] - q[:, None, :, :]
    logr = q.log()[:, :, None, :] - q.log()[:, None, :, :]
    div = (diff * logr).sum(-1).sum((-1, -2))
    return (lambda1 * ent + lambda2 * div).numpy()


def top_k(scores, k: int, generator: np.random.Generator | None = None) -> np.ndarray:
    """Positions of the ``k`` highest scores; ties broken at random with ``generator`` (seeded)."""
    s = np.asarray(scores, dtype=float)
    order = np.arange(len(s)) if generator is None else generator.permutation(len(s))
    ranked = order[np.argsort(-s[order], kind="stable")]
    return ranked[:int(k)]


# ----------------------------------------------------------------------------- model queries
def _batches(x: torch.Tensor, device, batch_size: int = 256):
    for i in range(0, len(x), batch_size):
        yield engine.normalize(x[i:i + batch_size].to(device))


def _probs_from_logits(logits: torch.Tensor, task: str) -> torch.Tensor:
    s = engine.scores_from_logits(logits.float(), task)
    if engine.is_multilabel(task):
        raise ValueError("active learning strategies here handle single-label tasks (binary/multi-class/ordinal)")
    return s


@torch.no_grad()
def predict_probs(model: nn.Module, x: torch.Tensor, task: str, device="auto") -> np.ndarray:
    """(N,K) class probabilities of uint8 images/volumes ``x`` (eval mode)."""
    return engine.predict(model, x, task, device=device, amp=False)


def _dropouts(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


@torch.no_grad()
def mc_dropout_probs(model: nn.Module, x: torch.Tensor, task: str, samples: int = 10, device="auto",
                     seed: int = 0) -> np.ndarray:
    """(T,N,K) probabilities from ``samples`` forward passes with dropout on (everything else in eval mode).

    When dropout sits only in the head (the registry's ``Head``), the features are computed once and
    the head is sampled ``T`` times — the same distribution at a fraction of the cost."""
    device = engine.get_device(device)
    drops = _dropouts(model)
    if not drops:
        raise ValueError("MC dropout needs a model with dropout > 0: models.create(name, ..., dropout=0.3)")
    model.eval().to(device)
    g = torch.Generator(device=device).manual_seed(int(seed))
    head_only = hasattr(model, "features") and hasattr(model, "head") and not _dropouts(model.features)
    out = []
    try:
        for m in drops:
            m.train()
        for xb in _batches(x, device):
            if head_only:
                f = model.features(xb)
                runs = [model.head(_seeded(f, g, t)) for t in range(samples)]
            else:
                runs = [model(_seeded(xb, g, t)) for t in range(samples)]
            out.append(torch.stack([_probs_from_logits(r, task) for r in runs]).cpu())
    finally:
        model.eval()
    return torch.cat(out, dim=1).numpy()


def _seeded(x, g, t):
    # dropout draws from the global RNG: reseed it from our generator so queries are reproducible
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=g.device)))
    return x


@torch.no_grad()
def embeddings(model: nn.Module, x: torch.Tensor, device="auto") -> np.ndarray:
    """(N,F) pooled features ``model.embed`` of uint8 images/volumes (eval mode)."""
    device = engine.get_device(device)
    model.eval().to(device)
    return torch.cat([model.embed(xb).float().cpu() for xb in _batches(x, device)]).numpy()


def dihedral(x: torch.Tensor, j: int) -> torch.Tensor:
    """The ``j``-th (0–7) element of the dihedral group on the last two axes: rotation by
    ``90°·(j mod 4)``, then a left-right flip for ``j ≥ 4`` (2D images and 3D volumes alike)."""
    y = torch.rot90(x, j % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if j % 8 >= 4 else y


def _augment_policy(augment, dims: int):
    """"dihedral" → built-in rotations/flips (returns None); "auto"/None → :mod:`mednb.augment`'s
    ``basic`` policy (flips, small affine, crops — AIFT's translated/scaled copies) when that module
    is importable, else dihedral; any other name → ``mednb.augment.get(name, dims=dims)``."""
    if augment == "dihedral":
        return None
    if callable(augment):
        return augment
    try:
        from . import augment as A  # optional: written by the augmentation notebook
    except ImportError:
        if augment in (None, "auto"):
            return None
        raise
    return A.get("basic" if augment in (None, "auto") else augment, dims=dims)


@torch.no_grad()
def augmented_probs(model: nn.Module, x: torch.Tensor, task: str, copies: int = 8, augment=None,
                    device="auto", seed: int = 0) -> np.ndarray:
    """(N,m,K) probabilities of ``m`` augmented copies of each sample (copy 0 is the original).

    augment: "auto"/None (:mod:`mednb.augment` ``basic`` if present, else dihedral), "dihedral"
    (rotations and flips, deterministic), a :mod:`mednb.augment` policy name, or a callable
    ``policy(x, masks, generator) -> (x, masks)`` on float [0,1] batches; seeded by ``seed``."""
    device = engine.get_device(device)
    model.eval().to(device)
    policy = _augment_policy(augment, x.ndim - 2)
    g = torch.Generator(device=device).manual_seed(int(seed))
    out = []
    for i in range(0, len(x), 128):
        xb = x[i:i + 128].to(device).float().div_(255.0)
        per = []
        for j in range(copies):
            if j == 0:
                xa = xb
            elif policy is None:
                xa = dihedral(xb, j)
            else:
                xa, _ = policy(xb.clone(), None, g)
            per.append(_probs_from_logits(model(engine.normalize(xa)), task).cpu())
        out.append(torch.stack(per, dim=1))
    return torch.cat(out).numpy()


# ----------------------------------------------------------------------------- strategies
# a strategy: fn(learner, candidates (global train indices), k, rng) -> chosen global indices
STRATEGIES: dict[str, Callable] = {}


def register(name: str):
    def deco(fn):
        STRATEGIES[name.lower()] = fn
        return fn
    return deco


def names() -> list[str]:
    return list(STRATEGIES)


def get(name: str) -> Callable:
    from .runtime import check_name
    return STRATEGIES[check_name(name, STRATEGIES, "strategy")]


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
    mc = mc_dropout_probs(learner.model, learner.splits.train.x[torch.as_tensor(cand)], learner.splits.task,
                          learner.mc_samples, learner.device, seed=learner.seed * 7919 + learner.round)
    return cand[top_k(bald(mc), k, rng)]


@register("coreset")
def _coreset(learner, cand, k, rng):
    lab = np.asarray(learner.labelled, dtype=np.int64)
    both = np.concatenate([lab, cand])
    emb = embeddings(learner.model, learner.splits.train.x[torch.as_tensor(both)], learner.device)
    picked = k_center_greedy(emb, np.arange(len(lab)), k)
    return both[picked]


@register("aift")
def _aift(learner, cand, k, rng):
    pr = augmented_probs(learner.model, learner.splits.train.x[torch.as_tensor(cand)], learner.splits.task,
                         learner.aift_copies, learner.aift_augment, learner.device,
                         seed=learner.seed * 7919 + learner.round)
    return cand[top_k(aift_scores(pr, learner.aift_alpha), k, rng)]


# ----------------------------------------------------------------------------- encoders
def load_encoder(model: nn.Module, init) -> nn.Module:
    """Copy pre-trained ``features.*`` weights into ``model`` (head untouched).

    init: None (nothing), a state dict, an ``nn.Module`` with ``features``, or a checkpoint path
    written by :func:`mednb.engine.save_checkpoint`."""
    if init is None:
        return model
    if isinstance(init, (str, Path)):
        init = torch.load(init, map_location="cpu", weights_only=True)["state_dict"]
    if isinstance(init, nn.Module):
        init = init.state_dict()
    feats = {k: v for k, v in init.items() if k.startswith("features.")}
    if not feats:
        raise ValueError("init has no 'features.*' weights to load")
    try:
        missing, unexpected = model.load_state_dict(feats, strict=False)
    except RuntimeError as e:  # shape mismatch (another width/depth or channel count)
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e))
        raise ValueError(f"encoder does not match the model (pre-trained with another model, width or number "
                         f"of channels?): {detail}") from e
    bad = [k for k in missing if k.startswith("features.")]
    if bad or unexpected:
        raise ValueError(f"encoder does not match the model: missing {bad[:3]}, unexpected {unexpected[:3]}")
    return model


PRETRAIN_SOURCES = ("none", "auto", "ssl", "indomain", "site")


def pretrained(splits: Splits, source: str = "auto", *, model: str = "cnn", epochs: int = 10,
               batch_size: int = 64, lr: float = 1e-3, device="auto", seed: int = 0,
               progress: bool = False, pool=None) -> tuple[dict | None, str]:
    """A pre-trained encoder for ``splits`` → ``(state_dict or None, description)``.

    source: ``"ssl"`` — self-supervised rotation pretext (:mod:`mednb.ssl`, notebook 04) on the pool
    images only (no labels), cached in ``data_root()/checkpoints/ssl``; ``"indomain"`` — notebook 03's
    supervised in-domain checkpoint (``transfer.indomain_for``: newest fitting one trained on another
    domain, never on the target's own labels; :class:`mednb.transfer.SourceUnavailable` if none);
    ``"site"`` — phantoms only:
    in-domain supervised weights from another scanner site (site 1), cached in
    ``data_root()/checkpoints/active``; ``"auto"`` — ssl when :mod:`mednb.ssl` is importable, else
    site for phantoms, else none; ``"none"``.
    """
    from . import models
    if source not in PRETRAIN_SOURCES:
        raise ValueError(f"unknown pretrain source {source!r}; valid: {', '.join(PRETRAIN_SOURCES)}")
    is_phantom = splits.name.startswith("phantom")
    if source == "auto":
        try:
            from . import ssl as _ssl  # noqa: F401
            source = "ssl" if hasattr(_ssl, "pretrain") else ("site" if is_phantom else "none")
        except ImportError:
            source = "site" if is_phantom else "none"
    if source == "none":
        return None, "none (from scratch)"
    net = models.create(model, splits.n_channels, splits.n_outputs, dims=splits.dims, size=splits.size)
    if source == "indomain":
        from . import transfer
        path = transfer.indomain_for(net, transfer.domain_spec(splits.name, (splits.meta or {}).get("site", 0)))
        transfer.load_body(net, path)
        info = transfer.checkpoint_info(path).get("recipe", {})
        return net.state_dict(), (f"in-domain supervised (notebook 03): {info.get('model')} trained with labels on "
                                  f"{info.get('source')} ({info.get('epochs')} epochs), {path.name}")
    if source == "ssl":
        from . import ssl
        x = splits.train.x if pool is None else splits.train.x[torch.as_tensor(np.asarray(pool))]
        res = ssl.pretrain("rotation", net, x, epochs=epochs, batch_size=batch_size, lr=lr, device=device,
                           seed=seed, cache=True, progress=progress, dataset=splits.name)
        return res.model.state_dict(), f"ssl rotation ({epochs} epochs on {len(x)} unlabelled pool images)"
    if not is_phantom:
        raise ValueError("source='site' needs a phantom dataset (another scanner site of the same phantom)")
    from . import data
    path = (data_root() / "checkpoints" / "active" /
            f"{splits.name}_site1_{model}_s{splits.size}_e{epochs}_seed{seed}.pt")
    if path.exists():
        engine.load_checkpoint(net, path)
    else:
        other = data.load(splits.name, splits.size, site=1, seed=seed + 101,
                          counts=(min(len(splits.train), 600), min(len(splits.val), 150), 10))
        engine.seed_everything(seed)
        engine.fit(net, other, epochs=epochs, lr=lr, batch_size=batch_size, device=device, seed=seed,
                   progress=progress, desc="in-domain encoder (site 1)")
        engine.save_checkpoint(net, path, {"source": "site1", "epochs": epochs})
    return net.state_dict(), f"in-domain supervised, phantom site 1 ({epochs} epochs)"


# ----------------------------------------------------------------------------- the loop
def load_data(name: str, size: int = 28, phantom_counts=None) -> Splits:
    """:func:`mednb.data.load`, with ``phantom_counts`` = (train, val, test) sizes used for phantoms only."""
    from . import data
    if data.check_name(name) in data.PHANTOMS and phantom_counts:
        return data.load(name, size, counts=tuple(int(c) for c in phantom_counts))
    return data.load(name, size)


def schedule(initial: int, query: int, rounds: int) -> list[int]:
    """Cumulative label counts: ``[initial, initial + query, …]`` (``rounds`` queries after the seed set)."""
    if initial < 1 or query < 1 or rounds < 0:
        raise ValueError(f"need initial >= 1, query >= 1, rounds >= 0; got {initial}, {query}, {rounds}")
    return [initial + r * query for r in range(rounds + 1)]


def _seed_set(y: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator, stratified: bool) -> np.ndarray:
    if not stratified:
        return pool[rng.permutation(len(pool))[:n]]
    classes = np.unique(y[pool])
    per = [pool[y[pool] == c] for c in classes]
    out = [p[rng.permutation(len(p))[:max(1, n // len(classes))]] for p in per]
    got = np.concatenate(out)[:n]
    rest = np.setdiff1d(pool, got)
    return np.concatenate([got, rest[rng.permutation(len(rest))[:n - len(got)]]])


class ActiveLearner:
    """State of one active-learning run over ``splits.train`` (a labelled list, the rest of the pool
    unlabelled). ``seed_set(n)`` → ``fit()`` → ``query(k)`` → ``add(idx, y)`` → ``fit()`` …

    pool: None (all of train), an int (a seeded random pool of that size) or train indices.
    warm_start: keep training the previous round's model instead of a fresh one.
    init: pre-trained encoder weights (see :func:`load_encoder`), loaded into every fresh model.
    min_steps: at least this many optimizer steps per fit (tiny labelled sets need more epochs).
    ``history``: one dict per fit — round, n_labels, test_auc, test_acc, val_auc, queried (indices),
    n_queried, strategy, seed, seconds.
    """

    def __init__(self, splits: Splits, strategy: str = "entropy", *, model: str = "cnn", dropout: float = 0.3,
                 model_kw: dict | None = None, init=None, pool=None, warm_start: bool = False, epochs: int = 10,
                 min_steps: int = 0, lr: float = 1e-3, batch_size: int = 32, seed: int = 0, device="auto",
                 mc_samples: int = 10, aift_copies: int = 8, aift_alpha: float = 0.5, aift_augment="auto",
                 fit_kw: dict | None = None, tag: str | None = None):
        self.strategy_name = str(strategy).lower()
        self.strategy = get(strategy)
        if engine.is_multilabel(splits.task):
            raise ValueError("multi-label sets are not supported by these strategies")
        self.model_name, self.dropout, self.model_kw, self.init = model, float(dropout), dict(model_kw or {}), init
        if self.strategy_name == "bald" and self.dropout <= 0:
            raise ValueError("strategy 'bald' needs dropout > 0 (MC dropout)")
        self.warm_start, self.epochs, self.min_steps = bool(warm_start), int(epochs), int(min_steps)
        self.lr, self.batch_size, self.seed = float(lr), int(batch_size), int(seed)
        self.device = engine.get_device(device)
        self.mc_samples, self.aift_copies, self.aift_alpha = int(mc_samples), int(aift_copies), float(aift_alpha)
        self.aift_augment, self.fit_kw, self.tag = aift_augment, dict(fit_kw or {}), tag
        self.rng = np.random.default_rng(self.seed)
        n = len(splits.train)
        if pool is None:
            self.pool = np.arange(n)
        elif isinstance(pool, (int, np.integer)):
            self.pool = np.sort(np.random.default_rng(10_000 + self.seed).permutation(n)[:int(pool)]) if 0 < pool < n \
                else np.arange(n)
        else:
            self.pool = np.unique(np.asarray(pool, dtype=np.int64))
        self._in_pool = np.zeros(n, bool)
        self._in_pool[self.pool] = True
        # the labels the annotator gave (start as the ground truth; only labelled rows are ever used)
        self.given = splits.train.y.clone()
        self.truth = splits.train.y[:, 0].numpy().copy()
        self.splits = splits
        self._view = dataclasses.replace(splits, train=Split(splits.train.x, self.given, splits.train.masks))
        self.labelled: list[int] = []
        self._pending: list[int] = []
        self.history: list[dict] = []
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
        from . import models
        kw = dict(self.model_kw)
        if self.dropout > 0:
            kw["dropout"] = self.dropout
        m = models.create(self.model_name, self.splits.n_channels, self.splits.n_outputs, dims=self.splits.dims,
                          size=self.splits.size, **kw)
        return load_encoder(m, self.init)

    def fit(self) -> dict:
        """Train on the labelled set (fresh model, or warm start), evaluate on test; append to ``history``."""
        if not self.labelled:
            raise ValueError("nothing labelled yet: call seed_set(n) or add(idx) first")
        t0 = time.perf_counter()
        s = self.seed * 1000 + self.round
        engine.seed_everything(s)
        if self.model is None or not self.warm_start:
            self.model = self.new_model()
        n = len(self.labelled)
        steps = math.ceil(n / self.batch_size)
        epochs = max(self.epochs, math.ceil(self.min_steps / steps))
        kw = dict(epochs=epochs, lr=self.lr, batch_size=self.batch_size, device=self.device, seed=s,
                  progress=False)
        kw.update(self.fit_kw)
        res = engine.fit(self.model, self._view, train_idx=torch.as_tensor(np.sort(self.labelled)), **kw)
        self.model = res.model
        test = engine.evaluate(self.model, self.splits.test, self.splits.task, self.device)
        row = {"round": self.round, "n_labels": n, "test_auc": test["auc"], "test_acc": test["acc"],
               "val_auc": res.best.get("val_auc", math.nan), "queried": list(self._pending),
               "n_queried": len(self._pending), "n_wrong_labels": int((self.given[self._pending, 0].numpy()
                                                                       != self.truth[self._pending]).sum()),
               "strategy": self.strategy_name, "seed": self.seed, "epochs": epochs,
               "seconds": time.perf_counter() - t0}
        if self.tag is not None:
            row["tag"] = self.tag
        self.history.append(row)
        self._pending = []
        self._probs_cache = None
        self.round += 1
        return row

    def probs(self, idx) -> np.ndarray:
        """(len(idx), K) current model probabilities of train samples ``idx``."""
        if self.model is None:
            raise ValueError("no model yet: fit() first")
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if self._probs_cache is None or self._probs_cache[0] != self.round:
            allp = np.full((len(self.splits.train), self.splits.n_outputs), np.nan, np.float32)
            allp[self.pool] = predict_probs(self.model, self.splits.train.x[torch.as_tensor(self.pool)],
                                            self.splits.task, self.device)
            self._probs_cache = (self.round, allp)
        out = self._probs_cache[1][idx]
        if np.isnan(out).any():  # outside the pool
            out = predict_probs(self.model, self.splits.train.x[torch.as_tensor(idx)], self.splits.task, self.device)
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
        """One round: query ``k``, label them with the ground truth, retrain."""
        self.add(self.query(k))
        return self.fit()

    def scores_table(self, idx) -> "pd.DataFrame":
        """How each strategy sees train samples ``idx`` (higher = asked first): the model's
        probabilities, least confidence, margin, entropy, BALD (if the model has dropout), core-set
        distance to the nearest labelled sample, and the AIFT score; plus the hidden truth."""
        import pandas as pd
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        x = self.splits.train.x[torch.as_tensor(idx)]
        p = self.probs(idx)
        cols = {"index": idx}
        for c in range(p.shape[1]):
            cols[f"p({str(self.splits.labels[c])[:14]})"] = p[:, c]
        cols.update(least_confidence=least_confidence(p), margin=margin(p), entropy=entropy(p))
        if _dropouts(self.model):
            cols["bald"] = bald(mc_dropout_probs(self.model, x, self.splits.task, self.mc_samples, self.device,
                                                 self.seed))
        lab = np.asarray(self.labelled, dtype=np.int64)
        if len(lab):
            e = torch.from_numpy(embeddings(self.model, torch.cat([x, self.splits.train.x[torch.as_tensor(lab)]]),
                                            self.device))
            cols["coreset"] = torch.cdist(e[:len(idx)], e[len(idx):]).min(1).values.numpy()
        cols["aift"] = aift_scores(augmented_probs(self.model, x, self.splits.task, self.aift_copies,
                                                   self.aift_augment, self.device, self.seed), self.aift_alpha)
        cols["truth"] = [str(self.splits.labels[int(t)]) for t in self.truth[idx]]
        return pd.DataFrame(cols)


def run(splits: Splits, strategy: str, budget, *, seed: int = 0, stratified: bool = False,
        progress: bool = False, **learner_kw) -> ActiveLearner:
    """Run one pool-based active-learning experiment.

    budget: cumulative label counts, e.g. ``schedule(20, 20, 5)`` = ``[20, 40, …, 120]``: a random
    seed set of ``budget[0]`` (stratified if asked), then one query round per further entry.
    Returns the :class:`ActiveLearner` (``.history``, ``.labelled``, ``.model``).
    """
    budget = [int(b) for b in budget]
    if not budget or budget[0] < 1 or any(b <= a for a, b in zip(budget, budget[1:])):
        raise ValueError(f"budget must be increasing label counts >= 1, got {budget}")
    learner = ActiveLearner(splits, strategy, seed=seed, **learner_kw)
    if budget[-1] > len(learner.pool):
        raise ValueError(f"budget {budget[-1]} exceeds the pool ({len(learner.pool)} samples)")
    from tqdm.auto import tqdm
    learner.seed_set(budget[0], stratified)
    learner.fit()
    for n in tqdm(budget[1:], desc=f"{strategy} seed {seed}", disable=not progress, leave=False):
        learner.step(n - learner.n_labels)
    return learner


def compare(splits: Splits, strategies, budget, seeds=(0,), *, progress: bool = True, **learner_kw):
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
        runs[(s, sd)] = run(splits, s, budget, seed=sd, **learner_kw)
    frame = pd.DataFrame([dict(row, dataset=splits.name) for lr in runs.values() for row in lr.history])
    return frame, runs


# ----------------------------------------------------------------------------- annotation cost
def mean_curve(frame, strategy: str, metric: str = "test_auc"):
    """``(n_labels, mean, sd, n_seeds)`` arrays of one strategy's curve in a :func:`compare` frame."""
    g = frame[frame["strategy"] == strategy].groupby("n_labels")[metric].agg(["mean", "std", "count"])
    g = g.sort_index()
    return g.index.to_numpy(float), g["mean"].to_numpy(float), g["std"].fillna(0).to_numpy(float), \
        g["count"].to_numpy(int)


def labels_needed(n_labels, values, target: float) -> float:
    """Labels at which a curve first reaches ``target``: linear interpolation between the last point
    below and the first point at/above it (the first point itself if it already reaches it); NaN when
    never reached."""
    n = np.asarray(n_labels, float)
    v = np.asarray(values, float)
    order = np.argsort(n)
    n, v = n[order], v[order]
    hit = np.nonzero(v >= target)[0]
    if len(hit) == 0:
        return math.nan
    i = int(hit[0])
    if i == 0:
        return float(n[0])
    n0, n1, v0, v1 = n[i - 1], n[i], v[i - 1], v[i]
    return float(n0 + (target - v0) * (n1 - n0) / (v1 - v0))


def labels_saved_vs_random(frame, strategy: str, metric: str = "test_auc", target: float | None = None,
                           baseline: str = "random") -> dict:
    """Fraction of labels saved by ``strategy`` vs ``baseline`` to reach ``target``.

    ``saved = 1 − n_strategy(target) / n_random(target)``, where ``n_s(target)`` is
    :func:`labels_needed` on the strategy's mean-over-seeds curve and ``target`` defaults to the
    baseline's mean ``metric`` at its full (largest) budget. 0.5 means half the labels (AIFT's
    claim: ≥ 0.5); negative means more labels than random; NaN when the strategy never reaches the
    target within the budget. Returns ``{"saved", "n_strategy", "n_random", "target"}``.
    """
    nr, vr, _, _ = mean_curve(frame, baseline, metric)
    if len(nr) == 0:
        raise ValueError(f"no {baseline!r} rows in the frame")
    if target is None:
        target = float(vr[-1])
    n_r = labels_needed(nr, vr, target)
    ns, vs, _, _ = mean_curve(frame, strategy, metric)
    n_s = labels_needed(ns, vs, target) if len(ns) else math.nan
    saved = 1 - n_s / n_r if (math.isfinite(n_s) and math.isfinite(n_r) and n_r > 0) else math.nan
    return {"saved": saved, "n_strategy": n_s, "n_random": n_r, "target": float(target)}


def cost_table(frame, metric: str = "test_auc", target: float | None = None, baseline: str = "random"):
    """One row per strategy: final mean ± sd, labels needed to reach the target, fraction saved."""
    import pandas as pd
    from .metrics import fmt
    rows = []
    last = frame["n_labels"].max()
    for s in frame["strategy"].unique():
        r = labels_saved_vs_random(frame, s, metric, target, baseline)
        fin = frame[(frame["strategy"] == s) & (frame["n_labels"] == last)][metric]
        rows.append({"strategy": s, f"{metric} @ {int(last)} labels": fmt(fin.tolist()),
                     "target": round(r["target"], 4),
                     "labels needed": "not reached" if not math.isfinite(r["n_strategy"]) else round(r["n_strategy"], 1),
                     "labels saved vs random": "not reached" if not math.isfinite(r["saved"]) else f"{r['saved']:+.0%}"})
    return pd.DataFrame(rows)


def queried_classes(frame, splits: Splits, skip_seed_set: bool = True):
    """Class histogram of the queried samples per strategy (summed over seeds and rounds) → DataFrame
    with one column per class (fractions) and the count ``n``."""
    import pandas as pd
    y = splits.train.y[:, 0].numpy()
    rows = []
    for s, g in frame.groupby("strategy", sort=False):
        idx = [i for _, r in g.iterrows() if not (skip_seed_set and r["round"] == 0) for i in r["queried"]]
        c = np.bincount(y[np.asarray(idx, dtype=np.int64)], minlength=splits.n_classes) if idx else \
            np.zeros(splits.n_classes, int)
        row = {"strategy": s, "n": int(c.sum())}
        row.update({splits.labels[i][:20]: c[i] / max(c.sum(), 1) for i in range(splits.n_classes)})
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- human in the loop
class LabelingPanel:
    """Human in the loop. ``propose()`` asks the strategy for the next ``k`` samples (shown with the
    model's probabilities), ``label(i, y)`` sets the label of proposed item ``i`` (0..k-1),
    ``use_ground_truth()`` fills every unlabelled item from the reference, ``retrain()`` adds the
    batch to the labelled set, retrains and updates the curve. ``widget`` wires ipywidgets buttons
    to these methods; displaying it never blocks (safe under papermill/nbval).
    """

    def __init__(self, learner: ActiveLearner, k: int = 8):
        self.learner, self.k = learner, int(k)
        self.batch: np.ndarray = np.zeros(0, np.int64)
        self.batch_probs: np.ndarray = np.zeros((0, learner.splits.n_outputs))
        self.answers: list[int | None] = []
        self._widget = None

    def propose(self) -> np.ndarray:
        self.batch = self.learner.query(self.k)
        self.batch_probs = self.learner.probs(self.batch)
        self.answers = [None] * len(self.batch)
        self._refresh()
        return self.batch

    def label(self, i: int, y: int) -> None:
        if not 0 <= int(i) < len(self.batch):
            raise IndexError(f"item {i} is not in the proposed batch of {len(self.batch)}")
        if not 0 <= int(y) < self.learner.splits.n_classes:
            raise ValueError(f"label must be in 0..{self.learner.splits.n_classes - 1}")
        self.answers[int(i)] = int(y)
        self._sync_toggle(int(i))

    def use_ground_truth(self) -> None:
        for i, idx in enumerate(self.batch):
            if self.answers[i] is None:
                self.answers[i] = int(self.learner.truth[idx])
                self._sync_toggle(i)

    @property
    def complete(self) -> bool:
        return len(self.batch) > 0 and all(a is not None for a in self.answers)

    def retrain(self) -> dict:
        if not self.complete:
            raise ValueError("label every proposed sample first (or click 'use ground truth')")
        self.learner.add(self.batch, self.answers)
        row = self.learner.fit()
        self.batch, self.answers = np.zeros(0, np.int64), []
        self._refresh()
        return row

    # -- widgets
    @property
    def widget(self):
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def curve(self) -> tuple[list[int], list[float]]:
        """(n_labels, test AUC) of every fit so far."""
        h = self.learner.history
        return [r["n_labels"] for r in h], [r["test_auc"] for r in h]

    def _build(self):
        import ipywidgets as W
        from matplotlib.figure import Figure
        self._out_curve = W.Output()
        self._status = W.HTML()
        self.buttons = {"propose": W.Button(description="Propose next batch", button_style="info"),
                        "ground_truth": W.Button(description="Use ground truth"),
                        "retrain": W.Button(description="Retrain", button_style="success")}
        for key, fn in (("propose", self.propose), ("ground_truth", self.use_ground_truth),
                        ("retrain", self.retrain)):
            self.buttons[key].on_click(lambda _, fn=fn: self._safe(fn))
        self._toggles: list = []
        self._items_box = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.curve_fig = Figure(figsize=(4, 2.6))
        self._widget = W.VBox([W.HBox(list(self.buttons.values())), self._status, self._items_box, self._out_curve])
        self._refresh()
        return self._widget

    def _safe(self, fn):
        try:
            fn()
        except ValueError as e:
            self._status.value = f"<b>{e}</b>"

    def _sync_toggle(self, i):
        if self._widget is not None and i < len(self._toggles):
            self._toggles[i].value = self.answers[i]

    @staticmethod
    def _png(img, scale: int = 3) -> bytes:
        import io
        from PIL import Image
        from .plot import to_display
        a = to_display(img)
        a = a if a.dtype == np.uint8 else (255 * (a - a.min()) / max(float(a.max() - a.min()), 1e-8)).astype(np.uint8)
        im = Image.fromarray(a)
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()

    def _refresh(self):
        if self._widget is None:
            return
        import ipywidgets as W
        sp, L = self.learner.splits, self.learner
        self._status.value = (f"{L.strategy_name}: {L.n_labels} labels, round {L.round}; "
                              f"{len(self.batch)} proposed" + (
                                  f"; last test AUC {L.history[-1]['test_auc']:.3f}" if L.history else ""))
        items, self._toggles = [], []
        for i, idx in enumerate(self.batch):
            probs = " ".join(f"{sp.labels[c][:6]} {p:.2f}" for c, p in enumerate(self.batch_probs[i]))
            t = W.ToggleButtons(options=[(str(sp.labels[c])[:10], c) for c in range(sp.n_classes)],
                                value=self.answers[i], style={"button_width": "70px"})
            t.observe(lambda ch, i=i: self.answers.__setitem__(i, ch["new"]), names="value")
            self._toggles.append(t)
            items.append(W.VBox([W.Image(value=self._png(sp.train.x[int(idx)]), format="png", width=84),
                                 W.HTML(f"<small>#{int(idx)}: {probs}</small>"), t]))
        self._items_box.children = items
        n, auc = self.curve()
        ax = self.curve_fig.axes[0] if self.curve_fig.axes else self.curve_fig.add_subplot()
        ax.clear()
        ax.plot(n, auc, marker="o")
        ax.set_xlabel("labels")
        ax.set_ylabel("test AUC")
        ax.grid(alpha=0.3)
        self.curve_fig.tight_layout()
        self._out_curve.clear_output(wait=True)
        if n:
            with self._out_curve:
                from IPython.display import display
                display(self.curve_fig)

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)
