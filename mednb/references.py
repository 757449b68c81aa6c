"""Published numbers shown beside ours (never in place of ours).

:data:`MEDMNIST_V2` — test AUC and ACC of the ResNet baselines of

    Jiancheng Yang, Rui Shi, Donglai Wei, Zequan Liu, Lin Zhao, Bilian Ke, Hanspeter Pfister,
    Bingbing Ni. "MedMNIST v2 — A large-scale lightweight benchmark for 2D and 3D biomedical image
    classification." Scientific Data 10, 41 (2023). doi:10.1038/s41597-022-01721-8

(the benchmark tables of the paper, also on https://medmnist.com). 2D rows: ResNet-18/50 trained
at 28 px or with the images resized to 224 px; 3D rows: ResNet-18/50 converted to volumes with
2.5D, 3D or ACS convolutions. Protocol: Adam 1e-3, batch 128 (3D: 32), 100 epochs, LR ×0.1 at
epochs 50 and 75, model selected by validation AUC; ACC of multi-label ChestMNIST is per-label.

Sizes: the paper has 2D rows at 28 px and "224" (the 28 px images resized to 224) and 3D rows at
28³ only; the larger MedMNIST+ files (2D 64/128/224 px, 3D 64³) appeared later without ResNet rows
under this protocol, so :func:`method_for` gives no paper row there rather than a borrowed one.

Provenance (:data:`VERIFIED`): the cells listed there were checked against public copies of the
tables found while writing this module (third-party transcriptions of the paper and the
MedMNIST/experiments material); the others are transcribed from the paper and not yet
independently re-checked.
"""
from __future__ import annotations

CITATION = ('Yang J, Shi R, Wei D, Liu Z, Zhao L, Ke B, Pfister H, Ni B. "MedMNIST v2 - A large-scale '
            'lightweight benchmark for 2D and 3D biomedical image classification". Scientific Data 10, 41 '
            '(2023). doi:10.1038/s41597-022-01721-8')

METHODS_2D = ("ResNet-18 (28)", "ResNet-18 (224)", "ResNet-50 (28)", "ResNet-50 (224)")
METHODS_3D = ("ResNet-18+2.5D", "ResNet-18+3D", "ResNet-18+ACS", "ResNet-50+2.5D", "ResNet-50+3D", "ResNet-50+ACS")

# dataset -> (AUC, ACC) per method, in METHODS_2D / METHODS_3D order
_2D = {
    "pathmnist":      [(0.983, 0.907), (0.989, 0.909), (0.990, 0.911), (0.989, 0.892)],
    "chestmnist":     [(0.768, 0.947), (0.773, 0.947), (0.769, 0.947), (0.773, 0.948)],
    "dermamnist":     [(0.917, 0.735), (0.920, 0.754), (0.913, 0.735), (0.912, 0.731)],
    "octmnist":       [(0.943, 0.743), (0.958, 0.763), (0.952, 0.762), (0.958, 0.776)],
    "pneumoniamnist": [(0.944, 0.854), (0.956, 0.864), (0.948, 0.854), (0.962, 0.884)],
    "retinamnist":    [(0.717, 0.524), (0.710, 0.493), (0.726, 0.528), (0.716, 0.511)],
    "breastmnist":    [(0.901, 0.863), (0.891, 0.833), (0.857, 0.812), (0.866, 0.842)],
    "bloodmnist":     [(0.998, 0.958), (0.998, 0.963), (0.997, 0.956), (0.997, 0.950)],
    "tissuemnist":    [(0.930, 0.676), (0.933, 0.681), (0.931, 0.680), (0.932, 0.680)],
    "organamnist":    [(0.997, 0.935), (0.998, 0.951), (0.997, 0.935), (0.998, 0.947)],
    "organcmnist":    [(0.992, 0.900), (0.994, 0.920), (0.992, 0.905), (0.993, 0.911)],
    "organsmnist":    [(0.972, 0.782), (0.974, 0.778), (0.972, 0.770), (0.975, 0.785)],
}
_3D = {
    "organmnist3d":    [(0.977, 0.788), (0.996, 0.907), (0.994, 0.900), (0.974, 0.769), (0.994, 0.883), (0.994, 0.889)],
    "nodulemnist3d":   [(0.838, 0.835), (0.863, 0.844), (0.873, 0.847), (0.835, 0.848), (0.875, 0.847), (0.886, 0.841)],
    "fracturemnist3d": [(0.587, 0.451), (0.712, 0.508), (0.714, 0.497), (0.552, 0.397), (0.725, 0.494), (0.750, 0.517)],
    "adrenalmnist3d":  [(0.718, 0.772), (0.827, 0.721), (0.839, 0.754), (0.732, 0.763), (0.828, 0.745), (0.828, 0.758)],
    "vesselmnist3d":   [(0.748, 0.846), (0.874, 0.877), (0.930, 0.928), (0.751, 0.877), (0.907, 0.918), (0.912, 0.858)],
    "synapsemnist3d":  [(0.634, 0.696), (0.820, 0.745), (0.705, 0.722), (0.669, 0.735), (0.851, 0.795), (0.719, 0.709)],
}

# The data table: one row per (dataset, method).
MEDMNIST_V2: list[dict] = [
    {"dataset": ds, "dims": dims, "method": m, "auc": auc, "acc": acc}
    for table, methods, dims in ((_2D, METHODS_2D, 2), (_3D, METHODS_3D, 3))
    for ds, cells in table.items() for m, (auc, acc) in zip(methods, cells)
]

# (dataset, method) cells cross-checked against public copies while writing this module.
VERIFIED = {
    *((ds, "ResNet-50 (224)") for ds in _2D), *((ds, "ResNet-50+3D") for ds in _3D),
    *((ds, m) for ds in ("pathmnist", "octmnist", "tissuemnist", "organamnist", "pneumoniamnist") for m in METHODS_2D),
    ("chestmnist", "ResNet-18 (28)"), ("chestmnist", "ResNet-18 (224)"), ("breastmnist", "ResNet-18 (28)"),
    ("bloodmnist", "ResNet-18 (28)"), ("organcmnist", "ResNet-18 (224)"),
    ("organmnist3d", "ResNet-18+3D"), ("adrenalmnist3d", "ResNet-18+3D"), ("adrenalmnist3d", "ResNet-18+ACS"),
}


def datasets() -> list[str]:
    return list(_2D) + list(_3D)


def methods(dims: int | None = None) -> list[str]:
    return list(METHODS_2D if dims == 2 else METHODS_3D if dims == 3 else METHODS_2D + METHODS_3D)


def has(dataset: str) -> bool:
    return str(dataset).lower() in _2D or str(dataset).lower() in _3D


def lookup(dataset: str, method: str) -> dict:
    """``{"dataset", "dims", "method", "auc", "acc"}`` for one cell of the paper's tables.

    dataset: a MedMNIST name (e.g. ``breastmnist``); method: one of :func:`methods`.
    """
    ds = str(dataset).lower()
    if not has(ds):
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(datasets())}")
    for row in MEDMNIST_V2:
        if row["dataset"] == ds and row["method"] == method:
            return dict(row, citation=CITATION)
    valid = METHODS_2D if ds in _2D else METHODS_3D
    raise ValueError(f"unknown method {method!r} for {ds}; valid: {', '.join(valid)}")


def rows(dataset: str) -> list[dict]:
    """Every ResNet row of the paper for one dataset."""
    ds = str(dataset).lower()
    if not has(ds):
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(datasets())}")
    return [dict(r) for r in MEDMNIST_V2 if r["dataset"] == ds]


def best(dataset: str, size: int | None = None, by: str = "auc") -> dict:
    """The paper's best ResNet row on ``dataset`` by ``by`` (2D: restricted to ``size`` px if given)."""
    cand = rows(dataset)
    if size is not None and cand[0]["dims"] == 2:
        cand = [r for r in cand if r["method"].endswith(f"({size})")] or cand
    return max(cand, key=lambda r: r[by])


def table(dims: int | None = None):
    """The table as a pandas DataFrame (rows: datasets; columns: ``method AUC`` / ``method ACC``)."""
    import pandas as pd
    df = pd.DataFrame([r for r in MEDMNIST_V2 if dims is None or r["dims"] == dims])
    wide = df.pivot_table(index="dataset", columns="method", values=["auc", "acc"], sort=False)
    wide.columns = [f"{m} {k.upper()}" for k, m in wide.columns]
    order = [f"{m} {k}" for m in methods(dims) for k in ("AUC", "ACC") if f"{m} {k}" in wide.columns]
    return wide[order]


SIZES = {2: (28, 224), 3: (28,)}  # image side (px) of the paper's rows, by dims
_CONV = {"2.5d": "2.5D", "3d": "3D", "acs": "ACS"}


def method_for(model: str, dims: int, size: int) -> tuple[str | None, str]:
    """The paper row a registry model is compared with at ``dims``/``size``, and a note saying how.

    ResNets map to their own row (``resnet18`` → ``ResNet-18 (28)``; 3D ``resnet50_acs`` →
    ``ResNet-50+ACS``; a plain ``resnet18`` on volumes is the paper's 3D conversion). Any other model
    (e.g. ``cnn``, ``cnn_acs``) is compared with the paper's ResNet-18 at the same size and conversion,
    and the note says so. ``(None, reason)`` when the paper has no row at that size.
    """
    model, dims, size = str(model).lower(), int(dims), int(size)
    if dims not in SIZES:
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    if size not in SIZES[dims]:
        have = " and ".join(f"{s}{'³' if dims == 3 else ' px'}" for s in SIZES[dims])
        return None, f"MedMNIST v2 has {dims}D rows at {have} only"
    depth = "50" if model.startswith("resnet50") else "18"
    own = model.startswith(("resnet18", "resnet50"))
    if dims == 2:
        method = f"ResNet-{depth} ({size})"
        note = "" if own else f"{model} vs the paper's ResNet-18"
        if size == 224:
            note = "; ".join(n for n in (note, "paper: 28 px images resized to 224") if n)
        return method, note
    conv = _CONV.get(model.rsplit("_", 1)[-1], "3D") if "_" in model else "3D"
    method = f"ResNet-{depth}+{conv}"
    return method, "" if own else f"{model} vs the paper's {method}"
