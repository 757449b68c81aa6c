"""The training experiments of notebook 02.

Every comparison trains all its arms — policies, label fractions, offline/online modes, imbalance strategies —
for the same number of optimizer steps (``Recipe(steps=N)``), whatever the size of each arm's training set: in
epochs, an arm with 10 % of the labels would get a tenth of the steps and the comparison would measure
under-training, not label efficiency (Oliver et al., NeurIPS 2018, "Realistic Evaluation of Deep Semi-Supervised
Learning Algorithms"). :func:`budget_demo` shows exactly that mistake: the same arms at equal epochs and at equal
steps. :func:`label_fraction_grid` (policy × label fraction × seed), :func:`compare_offline_online` and
:func:`imbalance_experiment` train through :func:`mednb.engine.train`; each row carries the arm's ``steps``.
Verdicts, tables and claims read from these DataFrames live in :mod:`.verdicts`.
"""
from __future__ import annotations

import itertools
import time

import torch
from tqdm.auto import tqdm

from .. import engine
from ..data import label_subset
from ..runtime import check_name
from .policies import get
from .trainsets import imbalanced_indices, nbytes, offline_splits

#: imbalance strategies -> engine.train keywords (an ``augment`` policy name is resolved with :func:`get`)
IMBALANCE_STRATEGIES = {
    "nothing": dict(),
    "weighted loss": dict(class_weight="balanced"),
    "oversample": dict(sampler="balanced"),
    "oversample + augment": dict(sampler="balanced", augment="basic"),
}
#: the two budgets of :func:`budget_demo`
BUDGETS = ("equal epochs", "equal steps")


def _runs(runs: list, desc: str, progress: bool):
    return tqdm(runs, total=len(runs), desc=desc, disable=not progress, leave=True)


def _step_recipe(recipe, what: str) -> engine.Recipe:
    """``recipe`` if it has a budget in optimizer steps; else a ValueError saying why one is needed."""
    if recipe is None or recipe.steps is None:
        raise ValueError(f"{what} compares arms with different numbers of training images: give them one budget in "
                         f"optimizer steps, recipe=engine.Recipe(steps=N) (got "
                         f"{'no recipe' if recipe is None else recipe.budget})")
    return recipe


def _grid_row(splits, model, strength, recipe, pol, frac, seed, res) -> dict:
    return dict(dataset=splits.name, model=str(model), strength=float(strength), recipe=repr(recipe), policy=pol,
                label_fraction=frac, seed=seed, n_train=res.n_train, steps=res.steps, n_val=res.n_val,
                best_step=res.best.get("step", res.best_epoch),
                test_auc=res.test["auc"], test_acc=res.test["acc"], test_balanced_acc=res.test["balanced_acc"],
                seconds=res.seconds, train_images_per_s=res.images_per_s, history=res.history)


def _reusable(df, splits, recipe, model, strength) -> dict:
    """Rows of an earlier DataFrame of :func:`label_fraction_grid` / :func:`budget_demo` trained with the same
    recipe (a step budget), model and strength on the same data, by ``(policy, label_fraction, seed)``: the same
    runs, not trained again."""
    if df is None or not len(df) or recipe is None or recipe.steps is None:
        return {}
    same = df[(df.recipe == repr(recipe)) & (df.dataset == splits.name) & (df.model == str(model))
              & (df.strength == float(strength))]
    if "budget" in same:
        same = same[same.budget == "equal steps"]
    cols = [c for c in same.columns if c not in ("budget", "full_label_steps")]
    return {(r["policy"], r["label_fraction"], r["seed"]): r for r in same[cols].to_dict("records")}


def label_fraction_grid(splits, policies, fractions, seeds, *, recipe: engine.Recipe | None = None,
                        model: str = "cnn", strength: float = 1.0, reuse=None, progress: bool = True, **fit_kw):
    """Test metrics for every (policy, label fraction, seed): a tidy DataFrame, one row per run, with the
    run's ``steps``, validation-set size ``n_val``, selected ``best_step``, ``train_images_per_s`` (training
    speed including the online augmentation) and validation ``history`` (for :func:`mednb.plot.convergence`).

    recipe: the training recipe; with more than one label fraction it must be a step budget
    (``engine.Recipe(steps=N)``), so that every arm trains the same number of steps. reuse: an earlier
    DataFrame of this function or of :func:`budget_demo` whose runs with the same recipe, model and strength
    are taken instead of trained again (same seed, same label subset: the same run; pass the same ``fit_kw``).
    fit_kw go to :func:`mednb.engine.train` (device, model_kw, …).
    """
    import pandas as pd
    fractions = list(fractions)
    if len(set(fractions)) > 1:
        recipe = _step_recipe(recipe, "a label-fraction grid")
    done = _reusable(reuse, splits, recipe, model, strength)
    runs = list(itertools.product(policies, fractions, seeds))
    rows = []
    for pol, frac, seed in _runs(runs, f"{splits.name}: policy × fraction × seed", progress):
        if (pol, frac, seed) in done:
            rows.append(dict(done[(pol, frac, seed)]))
            continue
        aug = get(pol, strength, dims=splits.dims)
        res = engine.train(splits, model, recipe, seed=seed, augment=aug, label_fraction=frac, progress=False,
                           **fit_kw)
        rows.append(_grid_row(splits, model, strength, recipe, pol, frac, seed, res))
    return pd.DataFrame(rows)


def budget_demo(splits, policies, fraction: float, seeds, *, recipe: engine.Recipe, epochs: int, model: str = "cnn",
                strength: float = 1.0, reuse=None, progress: bool = True, **fit_kw):
    """How a comparison can mislead: the same arms (``policies`` at ``fraction`` of the labels) trained for
    ``epochs`` passes over their labelled subset — few labels, few steps — and for the step budget
    ``recipe.steps`` that a full-label arm gets.

    reuse: a :func:`label_fraction_grid` DataFrame whose runs with the same recipe are taken for the equal-steps
    arms (same seed, same label subset: the same run). Returns one row per (budget, policy, seed) with the arm's
    own ``steps`` — this comparison alone has two budgets — plus, for reference, ``full_label_steps``: the steps
    ``epochs`` epochs give a full-label arm.
    """
    import pandas as pd
    recipe = _step_recipe(recipe, "the budget demonstration")
    by_epochs = recipe.replace(steps=None, evals=None, epochs=int(epochs))
    done = _reusable(reuse, splits, recipe, model, strength)
    full_steps = int(epochs) * -(-len(splits.train) // recipe.batch_for(splits.dims))
    runs = [(b, p, s) for b in BUDGETS for p in policies for s in seeds]
    rows = []
    for budget, pol, seed in _runs(runs, f"{splits.name}: equal epochs vs equal steps", progress):
        if budget == "equal steps" and (pol, fraction, seed) in done:
            row = dict(done[(pol, fraction, seed)])
        else:
            rec = by_epochs if budget == "equal epochs" else recipe
            res = engine.train(splits, model, rec, seed=seed, augment=get(pol, strength, dims=splits.dims),
                               label_fraction=fraction, progress=False, **fit_kw)
            row = _grid_row(splits, model, strength, rec, pol, fraction, seed, res)
        rows.append(dict(row, budget=budget, full_label_steps=full_steps))
    return pd.DataFrame(rows)


def compare_offline_online(splits, policy: str = "basic", copies: int = 4, seeds=(0,), *,
                           recipe: engine.Recipe | None = None, label_fraction: float = 1.0, model: str = "cnn",
                           strength: float = 1.0, progress: bool = True, **fit_kw):
    """Offline (train set enlarged ×(copies+1) beforehand) vs online (per mini-batch) vs none.

    One budget: every mode trains ``recipe.steps`` optimizer steps of full batches (a step budget is required),
    so each sees the same number of images however large its stored training set is.
    Returns one row per (mode, seed): train-set bytes, preparation and training seconds, steps, test AUC/ACC.
    """
    import pandas as pd
    recipe = _step_recipe(recipe, "offline vs online augmentation")
    aug = get(policy, strength, dims=splits.dims)
    rows = []
    runs = [(m, s) for s in seeds for m in ("none", "online", "offline")]
    for mode, seed in _runs(runs, f"{splits.name}: offline vs online", progress):
        t0 = time.perf_counter()
        if mode == "offline":
            sp, a, frac = offline_splits(splits, aug, copies, label_fraction, seed), None, 1.0
        else:
            sp, a, frac = splits, (aug if mode == "online" else None), label_fraction
        prep = time.perf_counter() - t0
        train_bytes = nbytes(sp.train) if mode == "offline" else nbytes(
            splits.train.subset(label_subset(splits.train.y, label_fraction, seed, splits.task)))
        res = engine.train(sp, model, recipe, seed=seed, augment=a, label_fraction=frac, progress=False, **fit_kw)
        rows.append(dict(dataset=splits.name, mode=mode, policy=policy if mode != "none" else "none", seed=seed,
                         n_train=res.n_train, steps=res.steps, images_seen=res.steps * recipe.batch_for(splits.dims),
                         train_bytes=train_bytes, prep_s=prep, train_s=res.seconds,
                         test_auc=res.test["auc"], test_acc=res.test["acc"]))
    return pd.DataFrame(rows)


def imbalance_experiment(splits, ratio: float = 0.1, seeds=(0,), strategies=tuple(IMBALANCE_STRATEGIES), *,
                         recipe: engine.Recipe | None = None, model: str = "cnn", minority: int | None = None,
                         progress: bool = True, **fit_kw):
    """Class imbalance: train on a subset where the minority class has ``ratio`` × the majority's
    samples, with each strategy of :data:`IMBALANCE_STRATEGIES` (all with ``recipe``'s budget); test AUC and
    balanced accuracy on the untouched test split. One row per (strategy, seed), with the run's ``steps``."""
    import pandas as pd
    strategies = [check_name(s, IMBALANCE_STRATEGIES, "imbalance strategy") for s in strategies]
    rows = []
    runs = [(st, s) for s in seeds for st in strategies]
    for strat, seed in _runs(runs, f"{splits.name}: imbalance", progress):
        idx = imbalanced_indices(splits.train.y, ratio, seed, minority)
        kw = dict(IMBALANCE_STRATEGIES[strat])
        if "augment" in kw:
            kw["augment"] = get(kw["augment"], dims=splits.dims)
        res = engine.train(splits, model, recipe, seed=seed, train_idx=idx, progress=False, **kw, **fit_kw)
        counts = torch.bincount(splits.train.y[idx, 0], minlength=splits.n_classes).tolist()
        rows.append(dict(dataset=splits.name, strategy=strat, seed=seed, train_counts=str(counts), steps=res.steps,
                         test_auc=res.test["auc"], test_balanced_acc=res.test["balanced_acc"],
                         test_acc=res.test["acc"]))
    return pd.DataFrame(rows)
