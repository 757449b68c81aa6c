"""Notebook 08's three comparisons (convolutions, Models Genesis vs scratch, augmentation), every arm
at the recipe's one step budget.
"""
from __future__ import annotations

from .. import models
from ..engine.recipe import Recipe
from .memory import estimate_memory, measure_peak_memory
from .profiles import CONVS, RECIPE


def load_volumes(name: str, size: int, phantom_counts=None, seed: int = 0, phantom_classes: int | None = None):
    """``data.load`` for a 3D set; phantoms get ``counts=phantom_counts`` and ``n_classes=phantom_classes``
    (2–4, the first classes of :data:`mednb.phantoms.CLASSES`; None: all 4). Both are ignored for MedMNIST."""
    from .. import data
    if data.dims_of(name) != 3:
        raise ValueError(f"{name} is not a 3D dataset; 3D sets: "
                         f"{', '.join(n for n in data.names() if data.dims_of(n) == 3)}")
    kw = {}
    if name in data.PHANTOMS:
        kw = {"counts": phantom_counts, "seed": seed}
        if phantom_classes is not None:
            kw["n_classes"] = int(phantom_classes)
    return data.load(name, size, **kw)


def _warn_collapse(test: dict, splits, what: str) -> None:
    """Print a warning when a kept model predicts a single class on the test set (see metrics.collapse_warning)."""
    from ..metrics import collapse_warning
    warning = collapse_warning(test, splits.labels)
    if warning:
        print(f"WARNING {what}: {warning}")


def compare_convs(datasets, sizes, convs, seeds, recipe: Recipe = RECIPE, *, backbone="cnn", width=None,
                  phantom_counts=None, phantom_classes=None, measure_memory=True, device="auto", progress=True):
    """Train every (dataset, size, conv, seed) with ``recipe``; one tidy row per run (phantoms:
    ``phantom_counts`` and ``phantom_classes`` as in :func:`load_volumes`).

    Columns: dataset, size, conv, seed, steps (optimizer steps trained), test_auc, test_acc, params,
    sec_per_epoch (training time of one pass over the training set), est_memory (bytes, :func:`estimate_memory`),
    peak_memory (bytes, :func:`measure_peak_memory`, or NaN when ``measure_memory`` is False).
    ``attrs["histories"]``: ``{(dataset, size, conv, seed): validation history}``.
    """
    import pandas as pd
    from tqdm.auto import tqdm
    from .. import engine
    for c in convs:
        if c not in CONVS:
            raise ValueError(f"unknown conv {c!r}; valid: {', '.join(CONVS)}")
    rows, data_keys, histories = [], {}, {}
    kw = models.width_kw(backbone, width)
    jobs = [(d, s, c, sd) for d in datasets for s in sizes for c in convs for sd in seeds]
    bar = tqdm(jobs, desc="2.5D / 3D / ACS", disable=not progress)
    cache, mem = {}, {}
    for d, s, c, sd in bar:
        bar.set_postfix(dataset=d, size=s, conv=c, seed=sd)
        if (d, s) not in cache:
            sp = load_volumes(d, s, phantom_counts, phantom_classes=phantom_classes)
            cache = {(d, s): sp}
            data_keys[(sp.name, sp.size)] = _data_key(sp)
        sp = cache[(d, s)]
        res = engine.train(sp, f"{backbone}_{c}", recipe, seed=sd, model_kw=kw, device=device, progress=False)
        shape = tuple(sp.train.x.shape[1:])
        if (d, s, c) not in mem:
            bs = recipe.batch_for(3)
            est = estimate_memory(res.model.cpu(), shape, bs)["total"]
            peak = (measure_peak_memory(f"{backbone}_{c}", shape, bs, sp.n_outputs, device, **kw)["peak_bytes"]
                    if measure_memory else float("nan"))
            mem[(d, s, c)] = (est, peak)
        _warn_collapse(res.test, sp, f"{backbone}_{c} on {d} {s}³, seed {sd}")
        histories[(d, s, c, sd)] = res.history
        rows.append(dict(dataset=d, size=s, conv=c, seed=sd, steps=res.steps, test_auc=res.test["auc"],
                         test_acc=res.test["acc"],
                         params=models.count_parameters(res.model),
                         sec_per_epoch=res.n_train / max(res.images_per_s, 1e-9),
                         est_memory=mem[(d, s, c)][0], peak_memory=mem[(d, s, c)][1]))
    out = pd.DataFrame(rows)
    # what a later study needs to reuse these runs: the training setup, and the split sizes and classes of
    # the data
    out.attrs.update(setup=(recipe, backbone, width, str(device)), data=data_keys, histories=histories)
    return out


def _data_key(splits) -> tuple[int, int, int, int]:
    """What tells same-named data apart: the sizes of train/val/test and the number of classes."""
    return len(splits.train.y), len(splits.val.y), len(splits.test.y), int(splits.n_outputs)


def _reused(runs, splits, recipe, backbone, width, device, conv, seed):
    """The (test_auc, test_acc, steps, history) of the same training in ``runs`` (a :func:`compare_convs` table
    trained with the same recipe — so the same budget of steps —, backbone, width and device on data of the same
    splits and classes: seeded alike, so the numbers are the ones a rerun would give), or None."""
    if (runs is None or runs.attrs.get("setup") != (recipe, backbone, width, str(device))
            or runs.attrs.get("data", {}).get((splits.name, splits.size)) != _data_key(splits)):
        return None
    hit = runs[(runs.dataset == splits.name) & (runs["size"] == splits.size) & (runs.conv == conv)
               & (runs.seed == seed)]
    if not len(hit) or (recipe.steps is not None and int(hit.steps.iloc[0]) != int(recipe.steps)):
        return None
    history = runs.attrs.get("histories", {}).get((splits.name, splits.size, conv, seed))
    return float(hit.test_auc.iloc[0]), float(hit.test_acc.iloc[0]), int(hit.steps.iloc[0]), history


def with_paper(df, backbone_rows=("ResNet-18", "ResNet-50")):
    """Summarize :func:`compare_convs` rows (mean ± sd over seeds) beside MedMNIST v2's 3D rows."""
    import pandas as pd
    from .. import metrics, references
    out = []
    for (d, s, c), g in df.groupby(["dataset", "size", "conv"], sort=False):
        row = {"dataset": d, "size": s, "conv": c, "ours AUC": metrics.fmt(g["test_auc"]),
               "ours ACC": metrics.fmt(g["test_acc"]), "params": int(g["params"].iloc[0]),
               "s/epoch": f"{g['sec_per_epoch'].mean():.1f}"}
        for b in backbone_rows:
            ref = references.lookup(d, f"{b}+{c.upper() if c != '2.5d' else '2.5D'}") if references.has(d) else None
            row[f"paper {b} AUC/ACC"] = f"{ref['auc']:.3f} / {ref['acc']:.3f}" if ref else "–"
        out.append(row)
    return pd.DataFrame(out)


def genesis_vs_scratch(splits, recipe: Recipe = RECIPE, *, conv="3d", fractions=(0.1, 1.0), seeds=(0,),
                       backbone="cnn", width=None, genesis_epochs=10, force_pretrain=False, device="auto",
                       progress=True, reuse=None):
    """Models Genesis 3D pre-training (``mednb.ssl``, on the unlabeled training volumes, with the recipe's
    batch size and LR) → fine-tune with ``recipe``, vs training from scratch, at each label fraction and
    seed. Every arm trains the recipe's budget of ``steps`` whatever its number of labels. ``reuse``: a
    :func:`compare_convs` table whose same-seed, same-recipe ``conv`` runs stand in for scratch at 100 % labels
    (the identical training, not repeated). Returns (rows DataFrame, pretrain result); the rows' ``attrs
    ["histories"]`` hold ``{(init, label_fraction, seed): validation history}`` (:func:`mednb.plot.convergence`)."""
    import pandas as pd
    from tqdm.auto import tqdm
    from .. import engine, ssl
    from ..runtime import seed_everything
    kw = models.width_kw(backbone, width)
    name = f"{backbone}_{conv}"
    seed_everything(seeds[0])
    base = models.create(name, splits.n_channels, splits.n_outputs, dims=3, size=splits.size, **kw)
    pre = ssl.pretrain("genesis", base, splits.train.x, epochs=genesis_epochs, batch_size=recipe.batch_for(3),
                       lr=recipe.lr,
                       device=device, seed=seeds[0], force=force_pretrain, progress=progress,
                       dataset=f"{splits.name}_{splits.size}")
    state = {k: v.detach().cpu().clone() for k, v in pre.model.features.state_dict().items()}
    rows, histories = [], {}
    for init, f, sd in tqdm([(i, f, s) for i in ("scratch", "genesis") for f in fractions for s in seeds],
                            desc="Genesis vs scratch", disable=not progress):
        scratch_all = (init, f) == ("scratch", 1.0)
        done = _reused(reuse, splits, recipe, backbone, width, device, conv, sd) if scratch_all else None
        if done:
            histories[(init, f, sd)] = done[3]
            rows.append(dict(init=init, label_fraction=f, seed=sd, steps=done[2], test_auc=done[0], test_acc=done[1],
                             n_labels=len(splits.train.y)))
            continue
        seed_everything(sd)
        m = models.create(name, splits.n_channels, splits.n_outputs, dims=3, size=splits.size, **kw)
        if init == "genesis":
            m.features.load_state_dict(state)
        res = engine.fit(m, splits, recipe, label_fraction=f, seed=sd, device=device, progress=False)
        test = engine.evaluate(res.model, splits.test, splits.task, device)
        _warn_collapse(test, splits, f"{init} at {f:.0%} labels, seed {sd}")
        histories[(init, f, sd)] = res.history
        rows.append(dict(init=init, label_fraction=f, seed=sd, steps=res.steps, test_auc=test["auc"],
                         test_acc=test["acc"], n_labels=res.n_train))
    out = pd.DataFrame(rows)
    out.attrs["histories"] = histories
    return out, pre


def augment_on_off(splits, recipe: Recipe = RECIPE, *, policy="flip", conv="3d", seeds=(0,), backbone="cnn",
                   width=None, device="auto", progress=True, reuse=None):
    """The same 3D model trained with ``recipe``, with and without ``mednb.augment`` policy ``policy``;
    one row per run (both arms train the recipe's budget of steps). ``reuse``: a :func:`compare_convs` table
    whose same-seed, same-recipe runs stand in for the runs without augmentation."""
    import pandas as pd
    from tqdm.auto import tqdm
    from .. import augment, engine
    kw = models.width_kw(backbone, width)
    rows = []
    for aug, sd in tqdm([(a, s) for a in ("none", policy) for s in seeds], desc="3D augmentation",
                        disable=not progress):
        done = _reused(reuse, splits, recipe, backbone, width, device, conv, sd) if aug == "none" else None
        if done:
            rows.append(dict(augment=aug, seed=sd, steps=done[2], test_auc=done[0], test_acc=done[1]))
            continue
        res = engine.train(splits, f"{backbone}_{conv}", recipe, seed=sd, model_kw=kw, device=device,
                           augment=None if aug == "none" else augment.get(aug, dims=3), progress=False)
        _warn_collapse(res.test, splits, f"augment {aug}, seed {sd}")
        rows.append(dict(augment=aug, seed=sd, steps=res.steps, test_auc=res.test["auc"], test_acc=res.test["acc"]))
    return pd.DataFrame(rows)


