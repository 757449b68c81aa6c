"""Knob values of notebook 02 for each profile: ``smoke`` (phantoms, tiny runs), ``student`` (real
MedMNIST data, the small CNN), ``full`` (ResNet-18 models, longer budgets and more seeds); ``CHECKS``: the knobs
valid only for a dataset or a registry (checked by :mod:`mednb.params` before anything runs).

Budgets. Every arm of a comparison trains ``STEPS`` optimizer steps (3D: ``STEPS_3D``), whatever its label
fraction; ``STEPS`` equals what ``EPOCHS`` epochs give the full-label 2D arm (smoke: 400 phantoms / batch 16 ×
5; student: BreastMNIST's 546 / 64 × 20; full: 546 / 128 × 100), so the full-label arm trains as long as before
and the few-label arms catch up. ``EPOCHS`` only sets the equal-epochs arms of the budget demonstration (the
protocol that under-trains few-label arms). To pay for the full budget of every arm: student runs ``none``,
``basic``, ``strong`` (``elastic`` only in ``full``); smoke runs 10 % and 100 % of the labels (1 % only in
``student`` and ``full``) with ``none``, ``basic``, ``strong``."""
from .. import knobs

PROFILES = {
    "smoke": dict(DATASET="phantom2d", DATASET_3D="phantom3d", SIZE=28, MODEL="cnn", MODEL_3D="cnn_3d", WIDTH_3D=8,
                  STEPS=125, STEPS_3D=96, EVALS=5, VAL_LABELS="full", EPOCHS=5, DEMO_FRACTION=0.1,
                  BATCH_SIZE=16, BATCH_SIZE_3D=8, LR=3e-3, SEEDS=[0], SEEDS_3D=[0],
                  OFFLINE_SEEDS=[0], LABEL_FRACTIONS=[0.1, 1.0], POLICIES=["none", "basic", "strong"],
                  POLICIES_3D=["none", "basic"], STRENGTH=1.0, COUNTS=[400, 80, 200], COUNTS_3D=[128, 48, 64],
                  PHANTOM_CLASSES_3D=2, OFFLINE_COPIES=2, IMBALANCE_RATIO=0.1, THROUGHPUT_N=64, DEVICE="auto"),
    "student": dict(DATASET="breastmnist", DATASET_3D="adrenalmnist3d", SIZE=28, MODEL="cnn", MODEL_3D="cnn",
                    WIDTH_3D=16, STEPS=180, STEPS_3D=114, EVALS=12, VAL_LABELS="full", EPOCHS=20, DEMO_FRACTION=0.1,
                    BATCH_SIZE=64, BATCH_SIZE_3D=32, LR=1e-3, SEEDS=[0, 1, 2],
                    SEEDS_3D=[0], OFFLINE_SEEDS=[0], LABEL_FRACTIONS=[0.01, 0.1, 1.0],
                    POLICIES=["none", "basic", "strong"], POLICIES_3D=["none", "strong"], STRENGTH=1.0,
                    COUNTS=[1200, 300, 600], COUNTS_3D=[400, 100, 200], PHANTOM_CLASSES_3D=4, OFFLINE_COPIES=4,
                    IMBALANCE_RATIO=0.1, THROUGHPUT_N=512, DEVICE="auto"),
    "full": dict(DATASET="breastmnist", DATASET_3D="adrenalmnist3d", SIZE=28, MODEL="resnet18", MODEL_3D="resnet18_3d",
                 WIDTH_3D=0, STEPS=500, STEPS_3D=1900, EVALS=20, VAL_LABELS="full", EPOCHS=100, DEMO_FRACTION=0.1,
                 BATCH_SIZE=128, BATCH_SIZE_3D=32, LR=1e-3,
                 SEEDS=[0, 1, 2, 3, 4], SEEDS_3D=[0, 1, 2], OFFLINE_SEEDS=[0, 1, 2], LABEL_FRACTIONS=[0.01, 0.1, 1.0],
                 POLICIES=["none", "basic", "elastic", "strong"], POLICIES_3D=["none", "basic", "elastic", "strong"],
                 STRENGTH=1.0, COUNTS=[1200, 300, 600], COUNTS_3D=[400, 100, 200], PHANTOM_CLASSES_3D=4,
                 OFFLINE_COPIES=4, IMBALANCE_RATIO=0.1, THROUGHPUT_N=2048, DEVICE="auto"),
}
CHECKS = {"DATASET": knobs.dataset(2), "DATASET_3D": knobs.dataset(3), "SIZE": knobs.size("DATASET"),
          "MODEL": knobs.model(2), "MODEL_3D": knobs.model(3), "POLICIES": knobs.policy(),
          "POLICIES_3D": knobs.policy(), "PHANTOM_CLASSES_3D": knobs.phantom_classes(),
          "VAL_LABELS": knobs.val_labels()}
