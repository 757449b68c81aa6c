"""Feature embeddings of a trained model: pooled features (:func:`mednb.ssl.evaluation.embed`), their 2D
projection, class separability, and the scatter figure."""
from __future__ import annotations

import math

import numpy as np

from ..ssl.evaluation import EMBEDDINGS, embed

__all__ = ["embed", "embedding_2d", "separability", "plot_embeddings"]


def embedding_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, F) → (N, 2) with scikit-learn ``pca`` or ``tsne`` (features standardised first)."""
    f = (features - features.mean(0)) / (features.std(0) + 1e-6)
    if method == "pca":
        from sklearn.decomposition import PCA
        return PCA(2, random_state=seed).fit_transform(f)
    if method == "tsne":
        from sklearn.manifold import TSNE
        return TSNE(2, random_state=seed, init="pca", perplexity=min(30.0, max(5.0, (len(f) - 1) / 4))).fit_transform(f)
    raise ValueError(f"unknown embedding method {method!r}; valid: {', '.join(EMBEDDINGS)}")


def separability(features: np.ndarray, y) -> float:
    """Silhouette score (cosine) of the class labels in feature space: −1…1, higher = better separated."""
    from sklearn.metrics import silhouette_score
    y = np.asarray(y).reshape(len(y), -1)[:, 0]
    if len(np.unique(y)) < 2:
        return math.nan
    return float(silhouette_score(features, y, metric="cosine"))


def plot_embeddings(panels: dict, y, class_names: dict | None = None, size: float = 3.2):
    """One scatter per ``{title: (N,2) array}``, coloured by class. Returns the Figure."""
    import matplotlib.pyplot as plt
    y = np.asarray(y).reshape(len(y), -1)[:, 0]
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), squeeze=False)
    for ax, (title, z) in zip(axes[0], panels.items()):
        for c in np.unique(y):
            m = y == c
            ax.scatter(z[m, 0], z[m, 1], s=6, alpha=0.7, label=str((class_names or {}).get(int(c), c))[:14])
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    return fig

