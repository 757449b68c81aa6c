"""The knob tables of notebook 03 (``smoke`` / ``student`` / ``full``), read by :func:`mednb.params`, and
``CHECKS``: the knobs valid only for a dataset or a registry (checked before anything runs)."""
from .. import knobs

PROFILES = {
    "smoke": dict(
        DATASET="phantom2d", SITE=2, SIZE=28, INPUT_SIZE=28, MODEL="cnn", STEM="imagenet",
        SOURCES=["none", "indomain"], SOURCE_DATASET="phantom2d", SOURCE_SITE=0, SOURCE_EPOCHS=3,
        PHANTOM_COUNTS=[240, 60, 120], STRATEGIES=["scratch", "linear_probe", "finetune", "two_stage", "partial"],
        LABEL_FRACTIONS=[0.01, 0.1, 1.0], SEEDS=[0], EPOCHS=4, MIN_STEPS=4, BATCH_SIZE=16, LR=5e-3,
        BODY_LR_MULT=0.1, FREEZE_STAGES=2, HEAD_EPOCHS=1,
        TRANSFUSION_MODELS=["cnn", "resnet18"], TRANSFUSION_SOURCE="indomain", TRANSFUSION_FRACTION=0.1,
        DATASET_3D="phantom3d", PHANTOM3D_COUNTS=[200, 32, 64], PHANTOM_CLASSES_3D=2, WIDTH_3D=8, EPOCHS_3D=7,
        LABEL_FRACTION_3D=1.0,
        SHIFT_SOURCE="phantom2d:0", SHIFT_TARGETS=["phantom2d:1", "phantom2d:3"], TARGET_LABELS=[0, 16],
        EMBEDDING="pca", DEVICE="auto"),
    "student": dict(
        DATASET="breastmnist", SITE=0, SIZE=28, INPUT_SIZE=28, MODEL="cnn", STEM="imagenet",
        SOURCES=["none", "indomain", "ssl"], SOURCE_DATASET="phantom2d", SOURCE_SITE=0, SOURCE_EPOCHS=8,
        PHANTOM_COUNTS=[1200, 300, 600], STRATEGIES=["scratch", "linear_probe", "finetune", "two_stage", "partial"],
        LABEL_FRACTIONS=[0.01, 0.1, 1.0], SEEDS=[0, 1, 2], EPOCHS=15, MIN_STEPS=60, BATCH_SIZE=64, LR=1e-3,
        BODY_LR_MULT=0.1, FREEZE_STAGES=2, HEAD_EPOCHS=3,
        TRANSFUSION_MODELS=["cnn", "resnet18"], TRANSFUSION_SOURCE="indomain",  # ResNet-50: full
        TRANSFUSION_FRACTION=0.1,
        DATASET_3D="adrenalmnist3d", PHANTOM3D_COUNTS=[400, 100, 200], PHANTOM_CLASSES_3D=4, WIDTH_3D=16, EPOCHS_3D=6,
        LABEL_FRACTION_3D=0.25,
        SHIFT_SOURCE="phantom2d:0", SHIFT_TARGETS=["phantom2d:1", "phantom2d:3"],
        TARGET_LABELS=[0, 8, 64], EMBEDDING="tsne", DEVICE="auto"),
    "full": dict(
        DATASET="breastmnist", SITE=0, SIZE=28, INPUT_SIZE=64, MODEL="cnn", STEM="imagenet",
        SOURCES=["none", "imagenet", "indomain", "ssl"], SOURCE_DATASET="organamnist", SOURCE_SITE=0,
        SOURCE_EPOCHS=30, PHANTOM_COUNTS=[1200, 300, 600],
        STRATEGIES=["scratch", "linear_probe", "finetune", "two_stage", "partial"],
        LABEL_FRACTIONS=[0.01, 0.1, 1.0], SEEDS=[0, 1, 2, 3, 4], EPOCHS=50, MIN_STEPS=300, BATCH_SIZE=128,
        LR=1e-3, BODY_LR_MULT=0.1, FREEZE_STAGES=2, HEAD_EPOCHS=10,
        TRANSFUSION_MODELS=["cnn", "resnet18", "resnet50"], TRANSFUSION_SOURCE="imagenet",
        TRANSFUSION_FRACTION=1.0,
        DATASET_3D="adrenalmnist3d", PHANTOM3D_COUNTS=[400, 100, 200], PHANTOM_CLASSES_3D=4, WIDTH_3D=32, EPOCHS_3D=50,
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
          "PHANTOM_CLASSES_3D": knobs.phantom_classes()}
