"""The training recipe: optimizer, schedule, budget, batch size, model selection and mixed precision.

:data:`PAPER` is the protocol of MedMNIST v2 (Yang et al., Scientific Data 2023): Adam, lr 1e-3,
batch 128 (3D: 32), 100 epochs, LR ×0.1 at 50 % and 75 % of training, the model of the epoch with
the best validation AUC. Shorter variants are ``PAPER.replace(epochs=...)``; a notebook maps its
knobs onto a recipe with :meth:`Recipe.from_knobs`.

A comparison between arms with different numbers of labels uses a budget in optimizer steps instead
(``Recipe(steps=N)``): every arm trains exactly N steps whatever its training-set size, is validated at
the same ``evals`` fractions of N, and can select on a validation subset proportional to its labels
(``val_labels="matched"``) — the protocol of Oliver et al. (NeurIPS 2018, "Realistic Evaluation of Deep
Semi-Supervised Learning Algorithms") and Lüth et al. (NeurIPS 2023, "Navigating the Pitfalls of Active
Learning Evaluation").
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..runtime import check_name

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("multistep", "cosine", "constant", "onecycle")
SELECT = ("val_auc", "val_acc", "val_loss", "last")
AMP = ("auto", "off", "bf16", "fp16")
VAL_LABELS = ("full", "matched")
#: evaluation checks of a step budget when ``evals`` is not given
DEFAULT_EVALS = 10
#: notebook knob -> Recipe field (see :meth:`Recipe.from_knobs`)
KNOBS = {"EPOCHS": "epochs", "STEPS": "steps", "EVALS": "evals", "LR": "lr", "BATCH_SIZE": "batch_size",
         "OPTIMIZER": "optimizer", "WEIGHT_DECAY": "weight_decay", "SCHEDULE": "schedule", "SELECT": "select",
         "PATIENCE": "patience", "AMP": "amp", "AUC_TOLERANCE": "auc_tolerance", "VAL_LABELS": "val_labels"}


@dataclass(frozen=True)
class Recipe:
    """How a model is trained. ``batch_size=None`` → the paper's 128 (2D) / 32 (3D).

    schedule: ``multistep`` (×``gamma`` at each fraction of ``milestones``) | ``cosine`` | ``constant`` |
    ``onecycle``. select: the epoch kept — best ``val_auc`` / ``val_acc`` / lowest ``val_loss`` / ``last``.
    patience: stop after that many epochs without improvement (None: never). amp: ``auto`` (see
    :func:`amp_dtype`) | ``off`` | ``bf16`` | ``fp16`` (with a gradient scaler).
    auc_tolerance (``select="val_auc"`` only): among the epochs whose validation AUC is within this of the
    best, keep the one with the lowest validation loss (0: the first epoch with the best AUC, the paper's rule).

    steps: the budget in optimizer steps (None: ``epochs`` passes over the training set). With a budget,
    batches are drawn from back-to-back shuffled passes (so a 5-image set still fills every batch), the
    schedule's milestones are fractions of ``steps``, and validation runs ``evals`` times (default
    :data:`DEFAULT_EVALS`) at equal fractions of ``steps``; selection and ``patience`` count those checks.
    val_labels: ``full`` selects on the whole validation split; ``matched`` on a stratified subset of
    ``val_ratio`` × the number of training labels (at least ``val_per_class`` per class, at most the split),
    as if the arm's labelled pool had been split into train and validation.
    """
    epochs: int = 10
    steps: int | None = None
    evals: int | None = None
    lr: float = 1e-3
    batch_size: int | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "multistep"
    milestones: tuple = (0.5, 0.75)
    gamma: float = 0.1
    select: str = "val_auc"
    patience: int | None = None
    amp: str = "auto"
    auc_tolerance: float = 0.0
    val_labels: str = "full"
    val_ratio: float = 0.25
    val_per_class: int = 5

    def __post_init__(self):
        for field, valid in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("select", SELECT), ("amp", AMP),
                             ("val_labels", VAL_LABELS)):
            object.__setattr__(self, field, check_name(getattr(self, field), valid, field))
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be ≥ 1, got {self.epochs}")
        if self.steps is not None and int(self.steps) < 1:
            raise ValueError(f"steps must be ≥ 1 or None, got {self.steps}")
        if self.evals is not None:
            if self.steps is None:
                raise ValueError("evals applies to a step budget: set steps=N too (with epochs, validation runs "
                                 "after every epoch)")
            if not 1 <= int(self.evals) <= int(self.steps):
                raise ValueError(f"evals must be in [1, steps={self.steps}], got {self.evals}")
        if not 0 < float(self.val_ratio) <= 10 or int(self.val_per_class) < 1:
            raise ValueError(f"val_ratio must be in (0, 10] and val_per_class ≥ 1, got {self.val_ratio}, "
                             f"{self.val_per_class}")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be ≥ 1 or None, got {self.batch_size}")
        object.__setattr__(self, "milestones", tuple(self.milestones))
        if not 0 <= float(self.auc_tolerance) < 1:
            raise ValueError(f"auc_tolerance must be in [0, 1), got {self.auc_tolerance}")

    def replace(self, **changes) -> "Recipe":
        """A validated copy with ``changes`` (unknown fields raise a TypeError naming the valid ones)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise TypeError(f"unknown Recipe field(s) {', '.join(sorted(unknown))}; valid: {valid}")
        return dataclasses.replace(self, **changes)

    def batch_for(self, dims: int) -> int:
        return int(self.batch_size or (32 if dims == 3 else 128))

    def checks(self) -> list[int]:
        """Optimizer steps trained before each validation check of a step budget (they sum to ``steps``)."""
        if self.steps is None:
            raise ValueError("checks() needs a step budget (Recipe(steps=N))")
        n, k = int(self.steps), min(int(self.evals or DEFAULT_EVALS), int(self.steps))
        ends = [round(n * (i + 1) / k) for i in range(k)]
        return [b - a for a, b in zip([0] + ends[:-1], ends)]

    @property
    def budget(self) -> str:
        """The training length in words: ``"180 steps"`` or ``"20 epochs"``."""
        return f"{self.steps} steps" if self.steps is not None else f"{self.epochs} epochs"

    @classmethod
    def from_knobs(cls, knobs, base: "Recipe | None" = None, suffix: str = "") -> "Recipe":
        """``base`` with the notebook knobs of :data:`KNOBS` that are set (``NAME + suffix`` first, e.g. EPOCHS_3D)."""
        get = knobs.get if hasattr(knobs, "get") else (lambda k, d=None: getattr(knobs, k, d))
        changes = {}
        for knob, field in KNOBS.items():
            value = get(knob + suffix, None) if suffix else None
            value = get(knob, None) if value is None else value
            if value is not None:
                changes[field] = value
        return (base or cls()).replace(**changes)


PAPER = Recipe(epochs=100)
#: the paper's protocol with near-ties in validation AUC broken by validation loss. On a small validation set
#: (BreastMNIST: 78 images, AdrenalMNIST3D: 98) the best-AUC epoch is often an early one whose 0.5-threshold
#: predictions have collapsed towards one class; ``mednb bench selection`` measures the rules (BENCHMARKS.md).
STABLE = PAPER.replace(auc_tolerance=0.01)


def amp_dtype(mode: str, device: torch.device, capability: tuple[int, int] | None = None) -> torch.dtype | None:
    """The autocast dtype for ``mode`` on ``device`` (None: full float32).

    ``auto``: bfloat16 on GPUs that support it natively (compute capability ≥ 8.0: A100, H100, RTX 30xx+),
    float16 with a gradient scaler on older GPUs (T4 and V100 have no native bfloat16), none on CPU/MPS.
    ``capability`` overrides the queried compute capability.
    """
    mode = check_name(mode, AMP, "amp")
    if mode == "off":
        return None
    if mode in ("bf16", "fp16"):
        return torch.bfloat16 if mode == "bf16" else torch.float16
    if device.type != "cuda":
        return None
    major, _ = capability or torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def optimizer(recipe: Recipe, params) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    cls = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def scheduler(recipe: Recipe, opt, steps_per_epoch: int):
    """A per-step LR scheduler, or None for ``constant``. Milestones are fractions of the epochs, or of the
    step budget when the recipe has one."""
    if recipe.steps is not None:
        total = int(recipe.steps)
        ms = sorted({max(1, int(round(m * total))) for m in recipe.milestones})
    else:
        total = max(1, recipe.epochs * steps_per_epoch)
        ms = sorted({max(1, int(round(m * recipe.epochs))) * steps_per_epoch for m in recipe.milestones})
    if recipe.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, ms, recipe.gamma)
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=total)
    return None


def selection_score(recipe: Recipe, log: dict) -> float:
    """Higher is better: the validation metric of ``recipe.select`` (loss negated; NaN → −inf)."""
    if recipe.select == "last":
        return log["epoch"]
    score = -log.get("val_loss", math.nan) if recipe.select == "val_loss" else log.get(recipe.select, math.nan)
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return -math.inf
    return score
