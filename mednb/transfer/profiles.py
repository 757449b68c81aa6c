"""The knob tables of notebook 03 (``smoke`` / ``student`` / ``full``), read by :func:`mednb.params`, and
``CHECKS``: the knobs valid only for a dataset or a registry (checked before anything runs).

``STEPS`` is the one training budget, in optimizer steps, of every arm of the 2D comparisons (strategies ×
sources × label fractions, the Transfusion models, the domain-adaptation label counts); ``STEPS_3D`` that of the
2D → 3D comparison. Training the in-domain source (``SOURCE_EPOCHS``) is pretraining, outside the budget.
Student: 120 steps of 64 images are ~14 passes over all 546 BreastMNIST labels and ~140 over the 10 % subset,
past the point where scratch flattens at 10 % labels (75 steps, measured). What does not fit the student's
~20 min moved to ``full``: the 1 % fraction, the ``partial`` strategy and the second shift target. Smoke (≤ 60 s):
every arm of the 2D comparisons trains 60 steps of 16 (4 passes over the 240 phantoms at 100 %), without
``partial`` (its freezing is unit-tested) and with one shift target."""
from .. import knobs


def _open_fraction(name, value, values):
    """A fraction strictly between 0 and 1."""
    if not 0 < value < 1:
        raise ValueError(f"{name}: must be a fraction in (0, 1), got {value!r}")


PROFILES = {
    "smoke": dict(
        DATASET="phantom2d", SITE=2, SIZE=28, INPUT_SIZE=28, MODEL="cnn", STEM="imagenet",
        SOURCES=["none", "indomain"], SOURCE_DATASET="phantom2d", SOURCE_SITE=0, SOURCE_EPOCHS=3,
        PHANTOM_COUNTS=[240, 60, 120], STRATEGIES=["scratch", "linear_probe", "finetune", "two_stage"],
        LABEL_FRACTIONS=[0.1, 1.0], SEEDS=[0], STEPS=60, VAL_LABELS="full", BATCH_SIZE=16, LR=5e-3,
        BODY_LR_MULT=0.1, FREEZE_STAGES=2, HEAD_FRACTION=0.25,
        TRANSFUSION_MODELS=["cnn", "resnet18"], TRANSFUSION_SOURCE="indomain", TRANSFUSION_FRACTION=0.1,
        DATASET_3D="phantom3d", PHANTOM3D_COUNTS=[200, 32, 64], PHANTOM_CLASSES_3D=2, WIDTH_3D=8, STEPS_3D=90,
        LABEL_FRACTION_3D=1.0,
        SHIFT_SOURCE="phantom2d:0", SHIFT_TARGETS=["phantom2d:3"], TARGET_LABELS=[0, 16],
        EMBEDDING="pca", DEVICE="auto"),
    "student": dict(
        DATASET="breastmnist", SITE=0, SIZE=28, INPUT_SIZE=28, MODEL="cnn", STEM="imagenet",
        SOURCES=["none", "indomain", "ssl"], SOURCE_DATASET="phantom2d", SOURCE_SITE=0, SOURCE_EPOCHS=8,
        PHANTOM_COUNTS=[1200, 300, 600], STRATEGIES=["scratch", "linear_probe", "finetune", "two_stage"],
        LABEL_FRACTIONS=[0.1, 1.0], SEEDS=[0, 1, 2], STEPS=120, VAL_LABELS="full", BATCH_SIZE=64, LR=1e-3,  # 1 %: full
        BODY_LR_MULT=0.1, FREEZE_STAGES=2, HEAD_FRACTION=0.2,
        TRANSFUSION_MODELS=["cnn", "resnet18"], TRANSFUSION_SOURCE="indomain",  # ResNet-50: full
        TRANSFUSION_FRACTION=0.1,
        DATASET_3D="adrenalmnist3d", PHANTOM3D_COUNTS=[400, 100, 200], PHANTOM_CLASSES_3D=4, WIDTH_3D=16, STEPS_3D=100,
        LABEL_FRACTION_3D=0.25,
        SHIFT_SOURCE="phantom2d:0", SHIFT_TARGETS=["phantom2d:3"],  # one target: the gamma-distorted site
        TARGET_LABELS=[0, 8, 64], EMBEDDING="tsne", DEVICE="auto"),
    "full": dict(
        DATASET="breastmnist", SITE=0, SIZE=28, INPUT_SIZE=64, MODEL="cnn", STEM="imagenet",
        SOURCES=["none", "imagenet", "indomain", "ssl"], SOURCE_DATASET="organamnist", SOURCE_SITE=0,
        SOURCE_EPOCHS=30, PHANTOM_COUNTS=[1200, 300, 600],
        STRATEGIES=["scratch", "linear_probe", "finetune", "two_stage", "partial"],
        LABEL_FRACTIONS=[0.01, 0.1, 1.0], SEEDS=[0, 1, 2, 3, 4], STEPS=500, VAL_LABELS="full", BATCH_SIZE=128,
        LR=1e-3, BODY_LR_MULT=0.1, FREEZE_STAGES=2, HEAD_FRACTION=0.2,
        TRANSFUSION_MODELS=["cnn", "resnet18", "resnet50"], TRANSFUSION_SOURCE="imagenet",
        TRANSFUSION_FRACTION=1.0,
        DATASET_3D="adrenalmnist3d", PHANTOM3D_COUNTS=[400, 100, 200], PHANTOM_CLASSES_3D=4, WIDTH_3D=32, STEPS_3D=2000,
        LABEL_FRACTION_3D=1.0,
        SHIFT_SOURCE="organamnist", SHIFT_TARGETS=["organcmnist", "organsmnist"],
        TARGET_LABELS=[0, 10, 100, 1000], EMBEDDING="tsne", DEVICE="auto"),
}

CHECKS = {"DATASET": knobs.dataset(2), "SITE": knobs.site("DATASET"), "SOURCE_DATASET": knobs.dataset(2),
          "SOURCE_SITE": knobs.site("SOURCE_DATASET"), "DATASET_3D": knobs.dataset(3),
          "SHIFT_SOURCE": knobs.domain(2), "SHIFT_TARGETS": knobs.domain(2),
          "SIZE": knobs.size("DATASET", "SOURCE_DATASET", "DATASET_3D", "SHIFT_SOURCE", "SHIFT_TARGETS"),
          "MODEL": knobs.transfer_model(), "TRANSFUSION_MODELS": knobs.transfer_model(), "STEM": knobs.stem(),
          "SOURCES": knobs.transfer_source(), "TRANSFUSION_SOURCE": knobs.transfer_source(),
          "STRATEGIES": knobs.transfer_strategy(), "EMBEDDING": knobs.embedding(),
          "PHANTOM_CLASSES_3D": knobs.phantom_classes(), "VAL_LABELS": knobs.val_labels(), "STEPS": knobs.steps(),
          "STEPS_3D": knobs.steps(), "HEAD_FRACTION": _open_fraction}
