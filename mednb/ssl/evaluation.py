"""Evaluating pretrained encoders with few labels: linear probe and fine-tuning at label
fractions vs training from scratch, and a kNN accuracy monitor.

* :func:`linear_probe` — frozen ``features``; pooled embeddings of a stratified label subset
  (``data.label_subset``) → standardized → logistic regression (scikit-learn); test AUC/ACC.
* :func:`finetune` — a copy of the model with a fresh head trained end to end by
  :func:`mednb.engine.fit` on the label subset (model selected by validation AUC).
* :func:`compare` — both protocols × label fractions × seeds for several encoders plus ``scratch``
  (a randomly initialized model: frozen for ``linear``, trained for ``finetune``) → tidy records.
  Every fine-tuning arm, whatever its label fraction, trains under the same recipe: give it a step budget
  (``FINETUNE.replace(steps=N)``) so that a 10 % arm gets as many optimizer steps as the 100 % arm (Oliver et
  al., NeurIPS 2018). Pretraining is outside that budget (its cost is the pretext's own epochs).
* :func:`convergence_summary` — from validation histories of a step budget: where each arm's curve reaches its
  final level, i.e. whether the budget let the slowest arm converge (pretrained weights mainly converge
  faster: He, Girshick & Dollár, ICCV 2019; Raghu et al., NeurIPS 2019).
* :func:`knn_accuracy` — cosine k-nearest-neighbour accuracy of embeddings (cheap monitor).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn

from .. import metrics as M
from ..data import Splits, label_subset
from ..engine import Recipe, evaluate, fit, is_multilabel, normalize
from ..runtime import get_device, seed_everything

PROTOCOLS = ("linear", "finetune")
#: 2D maps of pooled features (scikit-learn)
EMBEDDINGS = ("pca", "tsne")
#: fine-tuning recipe of the evaluation protocol: Adam, cosine LR, best validation AUC (a comparison adds its
#: step budget: ``FINETUNE.replace(steps=N)``)
FINETUNE = Recipe(schedule="cosine")
#: how close (in the metric) to its final level a validation curve must come to count as converged
CONVERGED_TOL = 0.02


@torch.no_grad()
def embed(model: nn.Module, x_uint8: torch.Tensor, device="auto", batch_size: int = 256) -> np.ndarray:
    """Pooled ``features`` (N, F) of uint8 images/volumes, in eval mode."""
    device = get_device(device)
    was = model.training
    model.eval().to(device)
    out = []
    for i in range(0, len(x_uint8), batch_size):
        f = model.features(normalize(x_uint8[i:i + batch_size].to(device)))
        out.append(f.mean(dim=tuple(range(2, f.ndim))).float().cpu())
    model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def knn_accuracy(model: nn.Module, x_bank, y_bank, x_query, y_query, k: int = 10, device="auto") -> float:
    """Accuracy of a cosine-similarity majority vote among the k nearest bank embeddings."""
    fb = torch.nn.functional.normalize(torch.from_numpy(embed(model, x_bank, device)), dim=1)
    fq = torch.nn.functional.normalize(torch.from_numpy(embed(model, x_query, device)), dim=1)
    yb = torch.as_tensor(y_bank).reshape(len(fb), -1)[:, 0]
    yq = torch.as_tensor(y_query).reshape(len(fq), -1)[:, 0]
    k = min(k, len(fb))
    nn_idx = (fq @ fb.t()).topk(k, dim=1).indices
    votes = torch.zeros(len(fq), int(yb.max()) + 1).scatter_add_(1, yb[nn_idx], torch.ones(len(fq), k))
    return float((votes.argmax(1) == yq).float().mean())


def knn_monitor(splits: Splits, n_bank: int = 1000, n_query: int = 500, seed: int = 0):
    """``(x_bank, y_bank, x_query, y_query)`` for :func:`pretrain`'s ``knn``: labeled training images
    as the bank (used only to monitor, never to train), validation images as queries."""
    g = torch.Generator().manual_seed(seed)
    b = torch.randperm(len(splits.train), generator=g)[:n_bank]
    q = torch.randperm(len(splits.val), generator=g)[:n_query]
    return splits.train.x[b], splits.train.y[b], splits.val.x[q], splits.val.y[q]


def linear_probe(model: nn.Module, splits: Splits, *, label_fraction: float = 1.0, seed: int = 0,
                 device="auto", C: float = 1.0) -> dict:
    """Logistic regression on frozen pooled features → test ``{"auc", "acc", "balanced_acc", "n_train"}``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    idx = label_subset(splits.train.y, label_fraction, seed, splits.task)
    ftr = embed(model, splits.train.x[idx], device)
    fte = embed(model, splits.test.x, device)
    sc = StandardScaler().fit(ftr)
    ftr, fte = sc.transform(ftr), sc.transform(fte)
    ytr = splits.train.y[idx].numpy()
    k = splits.n_outputs
    if is_multilabel(splits.task):
        cols = []
        for j in range(k):
            if len(np.unique(ytr[:, j])) < 2:
                cols.append(np.full(len(fte), float(ytr[0, j])))
            else:
                lr = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(ftr, ytr[:, j])
                cols.append(lr.predict_proba(fte)[:, 1])
        scores = np.stack(cols, 1)
    else:
        lr = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(ftr, ytr[:, 0])
        scores = np.zeros((len(fte), k))
        scores[:, lr.classes_] = lr.predict_proba(fte)
    out = M.classification(splits.test.y.numpy(), scores, splits.task)
    out["n_train"] = int(len(idx))
    return out


def reset_head(model: nn.Module, n_outputs: int, seed: int = 0) -> nn.Module:
    """A deep copy of a ``Classifier`` with a freshly initialized ``head`` of ``n_outputs`` units."""
    from ..models import Head
    m = copy.deepcopy(model)
    torch.manual_seed(seed)
    m.head = Head(m.head.fc.in_features, n_outputs, m.head.drop.p)
    return m


def finetune(model: nn.Module, splits: Splits, recipe: Recipe = FINETUNE, *, label_fraction: float = 1.0,
             seed: int = 0, device="auto", reset: bool = True, **fit_kw) -> dict:
    """Train all layers (fresh head when ``reset``) on a label subset with ``recipe`` → test metrics +
    ``n_train``, ``steps`` (optimizer steps trained) and ``history`` (the validation log)."""
    seed_everything(seed)
    m = reset_head(model, splits.n_outputs, seed) if reset else copy.deepcopy(model)
    fit_kw.setdefault("progress", False)
    res = fit(m, splits, recipe, label_fraction=label_fraction, seed=seed, device=device, **fit_kw)
    out = evaluate(res.model, splits.test, splits.task, device)
    out.update(n_train=res.n_train, steps=res.steps, history=res.history)
    return out


def compare(encoders: dict, splits: Splits, *, model_name: str, fractions=(0.01, 0.1, 1.0), seeds=(0,),
            protocols=PROTOCOLS, recipe: Recipe = FINETUNE, device="auto", progress: bool = True,
            model_kw: dict | None = None, histories: dict | None = None) -> list[dict]:
    """Evaluate ``{method: pretrained model}`` and ``scratch`` (``models.create(model_name)`` seeded
    per seed) with each protocol, label fraction and seed → records ``{method, protocol,
    label_fraction, seed, test_auc, test_acc, n_train, steps}``.

    Every ``finetune`` arm trains under the one ``recipe`` (``steps``: its optimizer steps; ``linear`` records
    carry ``steps=0``: a logistic regression solved to convergence, no gradient budget). ``histories``: a dict
    filled with ``{(method, fraction, seed): validation history}`` of the ``finetune`` runs."""
    from tqdm.auto import tqdm
    from ..models import create
    for p in protocols:
        if p not in PROTOCOLS:
            raise ValueError(f"unknown protocol {p!r}; valid: {', '.join(PROTOCOLS)}")
    jobs = [(m, p, f, s) for m in ["scratch", *encoders] for p in protocols for f in fractions for s in seeds]
    recs = []
    for m, p, f, s in tqdm(jobs, desc="evaluate", disable=not progress):
        if m == "scratch":
            seed_everything(s)
            model = create(model_name, splits.n_channels, splits.n_outputs, dims=splits.dims, size=splits.size,
                           **(model_kw or {}))
        else:
            model = encoders[m]
        if p == "linear":
            r = linear_probe(model, splits, label_fraction=f, seed=s, device=device)
        else:
            r = finetune(model, splits, recipe, label_fraction=f, seed=s, device=device)
            if histories is not None:
                histories[(m, float(f), int(s))] = r["history"]
        recs.append(dict(method=m, protocol=p, label_fraction=float(f), seed=int(s), test_auc=r["auc"],
                         test_acc=r["acc"], n_train=r["n_train"], steps=int(r.get("steps", 0))))
    return recs


def paired_vs(df, a: str, b: str = "scratch", fraction: float = 0.1, fraction_b: float | None = None):
    """:func:`mednb.claims.paired` of method ``a`` at ``fraction`` against method ``b`` at ``fraction_b``
    (default: the same fraction), test AUC paired on the seeds both have. ``df``: records of :func:`compare` of
    one protocol (a DataFrame or a list of dicts)."""
    from ..claims import paired
    rows = df.to_dict("records") if hasattr(df, "to_dict") else list(df)
    fb = fraction if fraction_b is None else fraction_b

    def arm(method, f):
        return {int(r["seed"]): r["test_auc"] for r in rows
                if r["method"] == method and abs(float(r["label_fraction"]) - float(f)) < 1e-9}
    return paired(arm(a, fraction), arm(b, fb))


def convergence_summary(runs: dict, key: str = "val_auc", tol: float = CONVERGED_TOL) -> str:
    """Whether a step budget let each arm converge, read from its validation curves.

    runs: ``{label: [history, ...]}`` (histories of runs with a step budget, e.g. one per seed; the curve is their
    mean). An arm's final level is the mean of its last quarter of checks; it *converged* at the first check from
    which the curve stays within ``tol`` of that level, and the budget is long enough for it when that happens by
    three quarters of the steps. Returns one line per arm and a last line that names the faster arm.
    """
    import math
    lines, reached = [], {}
    for label, hs in runs.items():
        hs = [h for h in ([hs] if hs and isinstance(hs[0], dict) else list(hs)) if h and "step" in h[0]]
        if not hs:
            raise ValueError(f"{label!r}: convergence_summary needs histories trained with a step budget")
        n = min(len(h) for h in hs)
        steps = [e["step"] for e in hs[0][:n]]
        curve = np.nanmean(np.array([[e.get(key, np.nan) for e in h[:n]] for h in hs], dtype=float), 0)
        final = float(np.nanmean(curve[-max(1, math.ceil(n / 4)):]))
        ok = np.abs(curve - final) <= tol
        i = n - 1
        while i > 0 and ok[i - 1]:
            i -= 1
        reached[label] = steps[i]
        done = steps[i] <= 0.75 * steps[-1]
        lines.append(f"{label}: final {key} {final:.3f} (mean of {len(hs)} run(s)); within {tol} of it from step "
                     f"{steps[i]} of {steps[-1]} → " + ("converged within the budget" if done else
                                                        "still moving late: the budget may be too short"))
    if len(reached) >= 2:
        order = sorted(reached, key=reached.get)
        if reached[order[0]] < reached[order[-1]]:
            lines.append(f"{order[0]} settles first (step {reached[order[0]]} vs {reached[order[-1]]} for "
                         f"{order[-1]}): at a budget shorter than that, the comparison measures speed of "
                         f"convergence, not the final level")
        else:
            lines.append("the arms settle at the same check")
    return "\n".join(lines)


def embedding_2d(model: nn.Module, x_uint8, method: str = "pca", seed: int = 0, device="auto") -> np.ndarray:
    """2D map (N, 2) of pooled embeddings: ``pca`` or ``tsne`` (scikit-learn)."""
    f = embed(model, x_uint8, device)
    f = (f - f.mean(0)) / (f.std(0) + 1e-6)
    if method == "pca":
        from sklearn.decomposition import PCA
        return PCA(2, random_state=seed).fit_transform(f)
    if method == "tsne":
        from sklearn.manifold import TSNE
        return TSNE(2, random_state=seed, init="pca", perplexity=min(30, max(5, len(f) // 4))).fit_transform(f)
    raise ValueError(f"unknown embedding method {method!r}; valid: {', '.join(EMBEDDINGS)}")
