"""The knob tables of notebook 09 (``smoke`` / ``student`` / ``full``), read by :func:`mednb.params`, and
``CHECKS``: the knobs valid only for a dataset or a registry (checked before anything runs).

STEPS (STEPS_3D): local optimizer steps of a hospital in one round; ROUNDS × STEPS is the budget of the methods
comparison (:mod:`.methods`). FT_STEPS: the optimizer steps of every few-label fine-tuning arm at the new hospital,
whatever its number of labels."""
from .. import knobs
from .adapt import MODES
from .methods import METHODS

PROFILES = {
    "smoke": dict(
        DATASETS=["phantom2d"], SIZE=28, SITES=3, ALPHA=1.0, PHANTOM_COUNTS=[300, 60, 120],
        METHODS=["local", "centralized", "fedavg", "fedprox", "fedbn"], MODEL="cnn", WIDTH=8, WIDTH_3D=8,
        ROUNDS=5, ROUNDS_3D=2, STEPS=8, STEPS_3D=4, BATCH_SIZE=32, LR=3e-3, FRACTION=1.0, MU=0.01,
        SEEDS=[0], N_LABELS=[5, 20], FT_MODES=["head", "all"], FT_STEPS=10, FT_LR=1e-3,
        DEPLOY=False, DEPLOY_ROUNDS=2, TOLERANCE=0.01, DEVICE="auto"),
    "student": dict(
        DATASETS=["breastmnist", "adrenalmnist3d"], SIZE=28, SITES=3, ALPHA=1.0, PHANTOM_COUNTS=[600, 150, 300],
        METHODS=["local", "centralized", "fedavg", "fedprox", "fedbn"], MODEL="cnn", WIDTH=16, WIDTH_3D=8,
        ROUNDS=15, ROUNDS_3D=10, STEPS=10, STEPS_3D=10, BATCH_SIZE=32, LR=1e-3, FRACTION=1.0, MU=0.01,
        SEEDS=[0, 1, 2], N_LABELS=[5, 20, 50], FT_MODES=["head", "all"], FT_STEPS=50, FT_LR=1e-3,
        DEPLOY=True, DEPLOY_ROUNDS=2, TOLERANCE=0.01, DEVICE="auto"),
    "full": dict(
        DATASETS=["pneumoniamnist", "breastmnist", "adrenalmnist3d"], SIZE=28, SITES=5, ALPHA=0.5,
        PHANTOM_COUNTS=[1200, 300, 600], METHODS=["local", "centralized", "fedavg", "fedprox", "fedbn"],
        MODEL="resnet18", WIDTH=32, WIDTH_3D=16, ROUNDS=50, ROUNDS_3D=30, STEPS=25, STEPS_3D=8, BATCH_SIZE=64,
        LR=1e-3, FRACTION=0.6, MU=0.01, SEEDS=[0, 1, 2, 3, 4], N_LABELS=[5, 20, 50], FT_MODES=["head", "all"],
        FT_STEPS=100, FT_LR=1e-3, DEPLOY=True, DEPLOY_ROUNDS=3, TOLERANCE=0.01, DEVICE="auto"),
}
CHECKS = {"DATASETS": knobs.dataset(), "SIZE": knobs.size("DATASETS"), "MODEL": knobs.model((2, 3)),
          "STEPS": knobs.steps(), "STEPS_3D": knobs.steps(), "FT_STEPS": knobs.steps(),
          "METHODS": knobs.registry(lambda: list(METHODS), "federated method"),
          "FT_MODES": knobs.registry(lambda: list(MODES), "fine-tuning mode")}
