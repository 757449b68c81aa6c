"""Fine-tuning strategies: freezing stages, discriminative learning rates, and one ``engine.fit`` per run.

A strategy is applied to a mednb ``Classifier`` (``features`` stages + ``head``) by :func:`prepare`,
which returns a :class:`Plan` (optimizer groups, callbacks, frozen stages); :func:`fit` trains it
with :func:`mednb.engine.fit` under an :class:`mednb.engine.Recipe`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch.nn as nn

from .. import engine
from ..data import Splits
from ..runtime import check_name

STRATEGIES = {
    "scratch": "random initialisation, every weight trained (the source is discarded)",
    "linear_probe": "frozen pretrained body as a feature extractor, new head trained",
    "finetune": "every weight trained, body at a smaller (discriminative) learning rate",
    "two_stage": "head only with the body frozen for the first part of training, then unfreeze and train all",
    "partial": "first freeze_stages stages frozen, the rest fine-tuned",
}


# the training recipe of transfer runs and in-domain sources unless the caller passes one: the engine's
# defaults (Adam, lr 1e-3, 10 epochs, LR x0.1 at 50 % and 75 %, selection by val AUC) at batch size 64.
# A comparison passes a step budget (RECIPE.replace(steps=N)): every arm then trains N optimizer steps.
RECIPE = engine.Recipe(batch_size=64)
#: two_stage under a step budget: the fraction of the steps trained with the body frozen (head only)
HEAD_FRACTION = 0.2


def check_strategy(name: str) -> str:
    """The registry key of a strategy; an unknown name is a ValueError listing :data:`STRATEGIES`."""
    return check_name(name, STRATEGIES, "strategy")


def stages(model: nn.Module) -> list[str]:
    """Names of the ``model.features`` stages that hold parameters, input to output."""
    return [n for n, m in model.features.named_children() if any(True for _ in m.parameters())]


def _bn_eval_hook(module, inputs):
    module.train(False)  # frozen BatchNorm: running statistics, no update


def freeze(model: nn.Module, names) -> list[str]:
    """Freeze ``features`` stages: ``"all"``, an int k (the first k of :func:`stages`) or names.

    Parameters get ``requires_grad=False``; BatchNorm layers in them stay in eval mode (running
    stats used and not updated) even under ``model.train()``. Returns the newly frozen names.
    """
    all_stages = stages(model)
    if names == "all":
        names = all_stages
    elif isinstance(names, int):
        if not 0 <= names <= len(all_stages):
            raise ValueError(f"can freeze 0..{len(all_stages)} stages of {all_stages}, got {names}")
        names = all_stages[:names]
    hooks = model.__dict__.setdefault("_mednb_frozen", {})
    done = []
    for name in names:
        if name not in all_stages:
            raise ValueError(f"unknown stage {name!r}; valid: {', '.join(all_stages)}")
        if name in hooks:
            continue
        stage = getattr(model.features, name)
        for p in stage.parameters():
            p.requires_grad_(False)
        hooks[name] = [m.register_forward_pre_hook(_bn_eval_hook) for m in stage.modules()
                       if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        done.append(name)
    return done


def unfreeze(model: nn.Module, names=None) -> list[str]:
    """Undo :func:`freeze` for ``names`` (default: every frozen stage). Returns the names."""
    hooks = model.__dict__.setdefault("_mednb_frozen", {})
    names = list(hooks) if names is None else list(names)
    for name in names:
        for h in hooks.pop(name, []):
            h.remove()
        for p in getattr(model.features, name).parameters():
            p.requires_grad_(True)
    return names


def frozen(model: nn.Module) -> list[str]:
    """Names of the frozen stages."""
    return list(model.__dict__.get("_mednb_frozen", {}))


def param_groups(model: nn.Module, lr: float, body_lr_mult: float = 0.1, layer_decay: float = 1.0,
                 only_trainable: bool = False) -> list[dict]:
    """Optimizer groups with discriminative learning rates.

    head: ``lr``; stage i of n (0 = input side): ``lr × body_lr_mult × layer_decay**(n−1−i)``.
    Frozen parameters are included (Adam/SGD skip parameters without gradients) unless
    ``only_trainable``, so that a later unfreeze trains them with their own rate.
    """
    names = stages(model)
    groups = []
    for i, name in enumerate(names):
        ps = [p for p in getattr(model.features, name).parameters() if p.requires_grad or not only_trainable]
        if ps:
            groups.append({"params": ps, "lr": lr * body_lr_mult * layer_decay ** (len(names) - 1 - i),
                           "name": name})
    head = [p for p in model.head.parameters() if p.requires_grad or not only_trainable]
    groups.append({"params": head, "lr": lr, "name": "head"})
    return groups


def reset_parameters(model: nn.Module) -> nn.Module:
    """Re-initialise every submodule that has ``reset_parameters`` (in place, uses torch's RNG)."""
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return model


@dataclass
class Plan:
    """What :func:`prepare` decided: optimizer groups, callbacks, frozen stages, and for ``two_stage`` when the
    body is unfrozen (``switch_epoch``: at the end of that epoch; ``switch_step``: at the first validation
    check of a step budget at or after that many steps)."""
    strategy: str
    param_groups: list
    callbacks: list
    frozen: list[str]
    switch_epoch: int | None = None
    switch_step: int | None = None
    events: list = field(default_factory=list)
    lrs: dict = field(default_factory=dict)

    def __post_init__(self):  # initial rates per group (the optimizer's scheduler mutates the groups)
        self.lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.param_groups)}


def prepare(model: nn.Module, strategy: str, *, lr: float, body_lr_mult: float = 0.1, layer_decay: float = 1.0,
            freeze_stages: int = 2, head_epochs: int = 1, head_steps: int | None = None) -> Plan:
    """Apply a strategy to ``model`` in place and return the :class:`Plan` for ``engine.fit``.

    ``scratch`` re-initialises the model (seed torch first); ``two_stage`` returns a callback that
    unfreezes the body — after ``head_steps`` optimizer steps when given (a step budget: at the first
    validation check at or after that step), else at the end of epoch ``head_epochs`` — and logs it in
    ``plan.events``.
    """
    key = check_strategy(strategy)
    unfreeze(model)
    if key == "scratch":
        reset_parameters(model)
        return Plan(key, [{"params": list(model.parameters()), "lr": lr, "name": "all"}], [], [])
    if key == "linear_probe":
        fz = freeze(model, "all")
        return Plan(key, [{"params": list(model.head.parameters()), "lr": lr, "name": "head"}], [], fz)
    if key == "finetune":
        return Plan(key, param_groups(model, lr, body_lr_mult, layer_decay), [], [])
    if key == "partial":
        fz = freeze(model, int(freeze_stages))
        return Plan(key, param_groups(model, lr, body_lr_mult, layer_decay, only_trainable=True), [], fz)
    # two_stage
    if head_steps is None and head_epochs < 1:
        raise ValueError(f"two_stage needs head_epochs >= 1, got {head_epochs}")
    if head_steps is not None and int(head_steps) < 1:
        raise ValueError(f"two_stage needs head_steps >= 1, got {head_steps}")
    fz = freeze(model, "all")
    plan = Plan(key, param_groups(model, lr, body_lr_mult, layer_decay), [], fz,
                switch_epoch=None if head_steps is not None else int(head_epochs),
                switch_step=None if head_steps is None else int(head_steps))

    def switch(log: dict):
        if plan.events:
            return
        due = (log.get("step", 0) >= plan.switch_step) if plan.switch_step is not None \
            else log["epoch"] == plan.switch_epoch
        if due:
            unfreeze(model)
            plan.events.append({"epoch": log["epoch"], **({"step": log["step"]} if "step" in log else {}),
                                "event": "unfreeze", "stages": list(fz)})
    plan.callbacks.append(switch)
    return plan


def head_steps(recipe: engine.Recipe, head_fraction: float = HEAD_FRACTION) -> int:
    """``two_stage`` under a step budget: the optimizer steps trained with the body frozen — ``head_fraction`` of
    ``recipe.steps``, moved to the end of a validation period (the body is unfrozen after a check), and at
    least one period before the end so that the body is trained too. ValueError when the budget has fewer
    than two validation checks or ``head_fraction`` is not in (0, 1)."""
    if recipe.steps is None:
        raise ValueError("head_steps needs a step budget (Recipe(steps=N))")
    if not 0 < float(head_fraction) < 1:
        raise ValueError(f"head_fraction must be in (0, 1), got {head_fraction}")
    ends = list(itertools.accumulate(recipe.checks()))
    if len(ends) < 2:
        raise ValueError(f"two_stage needs at least 2 validation checks in the step budget, got evals={len(ends)}")
    want = float(head_fraction) * int(recipe.steps)
    return next((e for e in ends[:-1] if e >= want), ends[-2])


def fit(model: nn.Module, splits: Splits, strategy: str, recipe: engine.Recipe | None = None, *,
        body_lr_mult: float = 0.1, layer_decay: float = 1.0, freeze_stages: int = 2, head_epochs: int = 1,
        head_fraction: float = HEAD_FRACTION, callbacks=(), **fit_kw) -> engine.FitResult:
    """:func:`prepare` + :func:`mednb.engine.fit` under ``recipe`` (None → ``engine.Recipe()``; its ``lr``
    is the head's rate). ``fit_kw``: the other keywords of ``engine.fit`` (``train_idx``, ``device``, …).
    Returns the FitResult with ``.plan`` attached.

    ``two_stage``: under a step budget (``recipe.steps``) the body is frozen for ``head_fraction`` of the steps
    (:func:`head_steps`); under an epoch recipe for ``head_epochs`` epochs.
    Use a ``schedule`` that scales every group (multistep/cosine/constant): ``onecycle`` sets one
    max LR for all groups and would undo the discriminative rates.
    """
    recipe = engine.Recipe() if recipe is None else recipe
    key = check_strategy(strategy)
    hs = None
    if key == "two_stage":
        if recipe.steps is not None:
            hs = head_steps(recipe, head_fraction)
        elif head_epochs >= recipe.epochs:
            raise ValueError(f"two_stage needs epochs > head_epochs, got epochs={recipe.epochs}, "
                             f"head_epochs={head_epochs}")
    if recipe.schedule == "onecycle" and key not in ("scratch", "linear_probe"):
        raise ValueError("schedule='onecycle' overrides discriminative learning rates; use multistep or cosine")
    plan = prepare(model, key, lr=recipe.lr, body_lr_mult=body_lr_mult, layer_decay=layer_decay,
                   freeze_stages=freeze_stages, head_epochs=head_epochs, head_steps=hs)
    res = engine.fit(model, splits, recipe, param_groups=plan.param_groups,
                     callbacks=[*plan.callbacks, *callbacks], **fit_kw)
    res.plan = plan
    return res
