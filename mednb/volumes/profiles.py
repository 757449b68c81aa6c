"""Notebook 08's profiles, knob checks and the one recipe every arm of its three comparisons trains.
"""
from __future__ import annotations

from .. import knobs
from ..engine.recipe import Recipe


CONVS = ("2.5d", "3d", "acs")
#: the 3D classifiers' default recipe: Adam 1e-3, a budget of 360 optimizer steps (about 10 epochs of
#: AdrenalMNIST3D's 1,188 training volumes), batch 32, multistep LR, best validation AUC over 10 checks
RECIPE = Recipe(steps=360, batch_size=32)
#: the three comparisons of notebook 08 (the ``comparison`` tag of their records)
COMPARISONS = ("convs", "genesis", "augment")

PROFILES = {
    "smoke": dict(DATASETS=["phantom3d"], SIZES=[28], CONVS=["2.5d", "3d", "acs"], BACKBONE="cnn", WIDTH=8,
                  STEPS=96, BATCH_SIZE=8, LR=2e-3, SEEDS=[0], PHANTOM_COUNTS=[128, 48, 64], PHANTOM_CLASSES=2,
                  LABEL_FRACTIONS=[0.5, 1.0], GENESIS_EPOCHS=1, AUGMENT="flip", FORCE_PRETRAIN=False,
                  MEASURE_MEMORY=False, DEVICE="auto", AUC_TOLERANCE=0.01, VAL_LABELS="full"),
    "student": dict(DATASETS=["adrenalmnist3d"], SIZES=[28], CONVS=["2.5d", "3d", "acs"], BACKBONE="cnn",
                    WIDTH=16, STEPS=360, BATCH_SIZE=32, LR=1e-3, SEEDS=[0, 1], PHANTOM_COUNTS=[400, 100, 200],
                    PHANTOM_CLASSES=4, LABEL_FRACTIONS=[0.1], GENESIS_EPOCHS=5, AUGMENT="basic",
                    FORCE_PRETRAIN=False, MEASURE_MEMORY=True, DEVICE="auto", AUC_TOLERANCE=0.01,
                    VAL_LABELS="full"),
    "full": dict(DATASETS=["organmnist3d", "nodulemnist3d", "adrenalmnist3d", "fracturemnist3d", "vesselmnist3d",
                           "synapsemnist3d"], SIZES=[28, 64], CONVS=["2.5d", "3d", "acs"], BACKBONE="resnet18",
                 WIDTH=64, STEPS=3800, BATCH_SIZE=32, LR=1e-3, SEEDS=[0, 1, 2], PHANTOM_COUNTS=[400, 100, 200],
                 PHANTOM_CLASSES=4, LABEL_FRACTIONS=[0.1, 1.0], GENESIS_EPOCHS=100, AUGMENT="basic",
                 FORCE_PRETRAIN=False, MEASURE_MEMORY=True, DEVICE="auto", AUC_TOLERANCE=0.0,
                 VAL_LABELS="full"),
}
# knobs valid only for a dataset or a registry (checked by mednb.params before anything runs)
CHECKS = {"DATASETS": knobs.dataset(3), "SIZES": knobs.size("DATASETS"), "CONVS": knobs.conv(),
          "BACKBONE": knobs.backbone("CONVS"), "AUGMENT": knobs.policy(), "PHANTOM_CLASSES": knobs.phantom_classes(),
          "STEPS": knobs.steps(), "VAL_LABELS": knobs.val_labels()}


def recipe_from(knobs_) -> Recipe:
    """The one recipe of every 3D model of notebook 08: :data:`RECIPE` with the notebook's knobs (STEPS, BATCH_SIZE,
    LR, AUC_TOLERANCE, VAL_LABELS). Every arm of the three comparisons trains it, so all share one budget."""
    r = Recipe.from_knobs(knobs_, RECIPE)
    if r.steps is None:
        raise ValueError("notebook 08 trains a budget in optimizer steps: set STEPS")
    return r


