"""DeepCluster (Caron et al., "Deep clustering for unsupervised learning of visual features",
ECCV 2018): alternate (1) k-means on the current features of every unlabeled image (PCA-reduced,
whitened, L2-normalized) → pseudo-labels, and (2) an epoch of classification of those
pseudo-labels with a freshly initialized linear head. Clusters are recomputed each epoch. Empty
clusters are filled as in the paper: split the largest cluster with a perturbed copy of its
centroid. Batches are flipped at random, and the loss weighs clusters by inverse size (the paper
samples uniformly over clusters). k-means: faiss when installed, else scikit-learn.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..engine import normalize
from .base import Pretext, rand


def fill_empty_clusters(labels: np.ndarray, feats: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Give every empty cluster members by splitting the largest one (perturbed centroid copy;
    a random half when that split fails). labels: (N,) in [0, k); feats: (N, D). Needs N ≥ k."""
    labels = np.asarray(labels).copy()
    if len(labels) < k:
        raise ValueError(f"need at least k={k} points to fill {k} clusters, got {len(labels)}")
    rng = np.random.default_rng(seed)
    for c in range(k):
        counts = np.bincount(labels, minlength=k)
        if counts[c] > 0:
            continue
        big = int(np.argmax(counts))
        members = np.flatnonzero(labels == big)
        centre = feats[members].mean(0)
        eps = 1e-4 * rng.standard_normal(centre.shape) + 1e-4 * (feats[members] - centre).std(0)
        d_new = ((feats[members] - (centre + eps)) ** 2).sum(1)
        d_old = ((feats[members] - (centre - eps)) ** 2).sum(1)
        move = d_new < d_old
        if move.all() or not move.any():
            move = np.zeros(len(members), bool)
            move[rng.permutation(len(members))[: len(members) // 2]] = True
        labels[members[move]] = c
    return labels


def kmeans(feats: np.ndarray, k: int, seed: int = 0, n_iter: int = 20) -> np.ndarray:
    """Cluster (N, D) float32 features into k clusters → labels (N,) (may leave clusters empty)."""
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    try:
        import faiss  # optional
        km = faiss.Kmeans(feats.shape[1], k, niter=n_iter, seed=seed, verbose=False)
        km.train(feats)
        labels = km.index.search(feats, 1)[1].ravel()
    except ImportError:
        from sklearn.cluster import KMeans
        labels = KMeans(k, n_init=1, max_iter=n_iter, random_state=seed).fit_predict(feats)
    return labels.astype(np.int64)


def preprocess(feats: np.ndarray, dim: int = 32) -> np.ndarray:
    """PCA to ``dim`` components, whitening, L2 normalization (the paper uses 256 components)."""
    x = feats - feats.mean(0)
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    d = min(dim, vt.shape[0])
    x = x @ vt[:d].T / (s[:d] / np.sqrt(max(len(x) - 1, 1)) + 1e-5)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


class DeepCluster(Pretext):
    name, family, paper = "deepcluster", "clustering", "Caron et al., ECCV 2018"

    def __init__(self, model, in_channels, size, dims, k: int = 16, pca_dim: int = 32, kmeans_iter: int = 20):
        super().__init__(model, in_channels, size, dims)
        self.k, self.pca_dim, self.kmeans_iter = int(k), int(pca_dim), int(kmeans_iter)
        self.head = nn.Linear(self.feat_dim, self.k)
        self.labels = torch.zeros(0, dtype=torch.long)  # pseudo-labels of the unlabeled set (not saved)
        self.weights = torch.ones(self.k)
        self.assignments: list[np.ndarray] = []  # one per epoch (monitoring, tests)

    @torch.no_grad()
    def features_of(self, x_all: torch.Tensor, device, batch_size: int = 256) -> np.ndarray:
        was = self.training
        self.eval()
        out = [self.embed(x_all[i:i + batch_size].to(device).float() / 255).float().cpu()
               for i in range(0, len(x_all), batch_size)]
        self.train(was)
        return torch.cat(out).numpy()

    def start_epoch(self, x_all, device, generator, batch_size: int = 256):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        feats = preprocess(self.features_of(x_all, device, batch_size), self.pca_dim)
        raw = kmeans(feats, self.k, seed, self.kmeans_iter)
        labels = fill_empty_clusters(raw, feats, self.k, seed)
        info = {"empty_clusters": int(self.k - len(np.unique(raw)))}
        if self.assignments:
            from sklearn.metrics import normalized_mutual_info_score
            info["nmi_prev"] = float(normalized_mutual_info_score(self.assignments[-1], labels))
        self.assignments.append(labels)
        counts = np.bincount(labels, minlength=self.k)
        self.labels = torch.as_tensor(labels, device=device)
        self.weights = torch.as_tensor(len(labels) / (self.k * counts), dtype=torch.float32, device=device)
        # a fresh classifier each epoch: the cluster ids are arbitrary and change between epochs
        g = torch.Generator().manual_seed(seed)
        bound = 1 / self.feat_dim ** 0.5
        with torch.no_grad():
            self.head.weight.copy_(torch.rand(self.head.weight.shape, generator=g) * 2 * bound - bound)
            self.head.bias.zero_()
        return info

    def loss(self, x, idx, generator=None):
        if len(self.labels) == 0:
            raise RuntimeError("DeepCluster.start_epoch must run before loss (no pseudo-labels yet)")
        flip = (rand(len(x), generator, x.device) < 0.5).view((-1,) + (1,) * (x.ndim - 1))
        x = torch.where(flip, x.flip(-1), x)
        y = self.labels.to(x.device)[idx.to(x.device)]
        logits = self.head(self.embed(x))
        return F.cross_entropy(logits, y, weight=self.weights.to(x.device)), {
            "pretext_acc": float((logits.argmax(1) == y).float().mean())}
