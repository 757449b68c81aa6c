"""Jigsaw puzzles (Noroozi & Favaro, "Unsupervised learning of visual representations by solving
jigsaw puzzles", ECCV 2016): cut the image into a ``grid``×``grid`` (3D: ×``grid``) set of tiles,
shuffle them with one permutation out of a fixed set, and classify which permutation was used.

Each tile goes through the shared encoder (a siamese "context-free network"); the pooled tile
features are concatenated in shuffled order and an MLP predicts the permutation index. Tiles are
cropped ``gap`` pixels smaller than their cell at a random offset, so the network cannot solve the
puzzle by matching edges. The permutation set is chosen greedily for maximal minimum Hamming
distance (the paper's algorithm), from all permutations when there are ≤ 400k of them, else from
``candidates`` random ones.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Pretext, randint


def validate_permutations(perms, n_tiles: int) -> np.ndarray:
    """Check a permutation set: (P, n_tiles) ints, every row a permutation of 0..n_tiles-1, rows distinct."""
    p = np.asarray(perms)
    if p.ndim != 2 or p.shape[1] != n_tiles or len(p) < 2:
        raise ValueError(f"permutations must be (P>=2, {n_tiles}), got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.integer):
        raise ValueError("permutations must be integers")
    if not (np.sort(p, axis=1) == np.arange(n_tiles)).all():
        raise ValueError(f"every row must be a permutation of 0..{n_tiles - 1}")
    if len(np.unique(p, axis=0)) != len(p):
        raise ValueError("permutations must be distinct")
    return p.astype(np.int64)


@lru_cache(maxsize=16)
def _max_hamming(n_tiles: int, n_perms: int, seed: int, candidates: int) -> tuple:
    if n_perms > math.factorial(n_tiles):
        raise ValueError(f"n_perms={n_perms} exceeds {n_tiles}! = {math.factorial(n_tiles)} permutations")
    rng = np.random.default_rng(seed)
    if math.factorial(n_tiles) <= 400_000:
        count = math.factorial(n_tiles)
        pool = np.fromiter(itertools.chain.from_iterable(itertools.permutations(range(n_tiles))), dtype=np.int8,
                           count=count * n_tiles).reshape(count, n_tiles)
    else:
        pool = np.unique(np.argsort(rng.random((candidates, n_tiles)), axis=1).astype(np.int8), axis=0)
        if len(pool) < n_perms:
            raise ValueError(f"only {len(pool)} candidate permutations for n_perms={n_perms}; raise candidates")
    first = int(rng.integers(len(pool)))
    chosen = [first]
    min_d = (pool != pool[first]).sum(1)
    for _ in range(n_perms - 1):
        j = int(np.argmax(min_d))  # largest distance to the set chosen so far
        chosen.append(j)
        min_d = np.minimum(min_d, (pool != pool[j]).sum(1))
    return tuple(map(tuple, pool[chosen].tolist()))


def permutation_set(n_tiles: int, n_perms: int, seed: int = 0, candidates: int = 20_000) -> np.ndarray:
    """(n_perms, n_tiles) permutations chosen greedily for maximal minimum Hamming distance."""
    return validate_permutations(np.array(_max_hamming(int(n_tiles), int(n_perms), int(seed), int(candidates))),
                                 n_tiles)


def min_hamming(perms) -> int:
    """Smallest Hamming distance between two rows of a permutation set."""
    p = np.asarray(perms)
    d = (p[:, None, :] != p[None, :, :]).sum(-1)
    return int(d[~np.eye(len(p), dtype=bool)].min())


def tiles(x: torch.Tensor, grid: int, gap: int = 1, generator=None) -> torch.Tensor:
    """Cut (N,C,*S) into grid**dims tiles in raster order → (N, T, C, *t), t = S//grid − gap,
    each tile cropped at a random offset inside its cell (one offset per tile position and batch)."""
    dims = x.ndim - 2
    s = min(x.shape[2:])
    cell = s // grid
    t = max(1, cell - gap)
    out = []
    for pos in itertools.product(range(grid), repeat=dims):
        off = randint(0, cell - t + 1, (dims,), generator, "cpu").tolist()
        sl = tuple(slice(p * cell + o, p * cell + o + t) for p, o in zip(pos, off))
        out.append(x[(slice(None), slice(None)) + sl])
    return torch.stack(out, 1)


class Jigsaw(Pretext):
    name, family, paper = "jigsaw", "predictive", "Noroozi & Favaro, ECCV 2016"

    def __init__(self, model, in_channels, size, dims, grid: int | None = None, n_perms: int | None = None,
                 gap: int = 1, perm_seed: int = 0, permutations=None, hidden: int = 256):
        super().__init__(model, in_channels, size, dims)
        self.grid = int(grid or (3 if dims == 2 else 2))
        self.n_tiles = self.grid ** dims
        self.gap = int(gap)
        if permutations is not None:
            perms = validate_permutations(permutations, self.n_tiles)
        else:
            perms = permutation_set(self.n_tiles, int(n_perms or min(64, math.factorial(self.n_tiles))), perm_seed)
        self.register_buffer("perms", torch.as_tensor(perms, dtype=torch.long))
        self.head = nn.Sequential(nn.Linear(self.n_tiles * self.feat_dim, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, len(perms)))

    def make_batch(self, x, generator=None):
        """→ (shuffled tiles (N, T, C, *t), permutation labels (N,)); position i holds tile perm[i]."""
        tl = tiles(x, self.grid, self.gap, generator)
        label = randint(0, len(self.perms), (len(x),), generator, x.device)
        order = self.perms[label]  # (N, T)
        shuffled = tl.gather(1, order.view(order.shape + (1,) * (tl.ndim - 2)).expand_as(tl))
        return shuffled, label

    def predict(self, tiles_nt):
        n, t = tiles_nt.shape[:2]
        f = self.embed(tiles_nt.flatten(0, 1)).view(n, t * self.feat_dim)
        return self.head(f)

    def loss(self, x, idx, generator=None):
        tl, label = self.make_batch(x, generator)
        logits = self.predict(tl)
        return F.cross_entropy(logits, label), {"pretext_acc": float((logits.argmax(1) == label).float().mean())}
