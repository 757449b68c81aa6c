"""Pure score functions of the strategies (higher score = queried first).

Uncertainty: :func:`least_confidence`, :func:`margin`, :func:`entropy`; disagreement between MC
dropout passes: :func:`bald` (Houlsby et al. 2011; Gal, Islam & Ghahramani, ICML 2017); diversity:
:func:`k_center_greedy` (core-set, Sener & Savarese, ICLR 2018); both over augmented copies:
:func:`aift_scores` (Zhou et al., CVPR 2017). :func:`top_k` ranks with seeded tie-breaking.
"""
from __future__ import annotations

import math

import numpy as np
import torch


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
