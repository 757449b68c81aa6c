"""Notebook 06's run profiles (``smoke`` / ``student`` / ``full``), the knobs valid only for a dataset or a
registry (``CHECKS``, checked by :mod:`mednb.params` before anything runs) and the AIFT paper's headline claim."""
from .. import knobs


PROFILES = {
    "smoke": dict(DATASET="phantom2d", VOLUME_DATASET="phantom3d", SIZE=28, MODEL="cnn",
                  STRATEGIES=["random", "entropy", "bald", "coreset", "aift"], VOLUME_STRATEGIES=["random", "entropy"],
                  PHANTOM_COUNTS=[240, 100, 200], VOLUME_PHANTOM_COUNTS=[120, 40, 80],
                  POOL=0, INITIAL=16, QUERY=16, ROUNDS=1, VOLUME_ROUNDS=1,
                  STEPS=8, STEPS_3D=3, VAL_LABELS="matched", BATCH_SIZE=32, LR=2e-3, DROPOUT=0.3, MC_SAMPLES=6,
                  AIFT_COPIES=4, PRETRAIN="auto", PRETRAIN_EPOCHS=1, SEEDS=[0], VOLUME_SEEDS=[0], DEVICE="auto"),
    # BreastMNIST has two classes, where margin and entropy rank the pool exactly as least confidence does:
    # the student profile runs that ranking once (section 2 shows the three scores on two images).
    # every round of every strategy trains STEPS optimizer steps (120: the validation AUC of a 20-label BreastMNIST
    # cnn has flattened by ~80 steps); to stay within 20 min on a 2-core CPU at that budget, BALD, core-set and the
    # rounds beyond 100 labels (2D) / 60 volumes (3D) run in the full profile only.
    "student": dict(DATASET="breastmnist", VOLUME_DATASET="adrenalmnist3d", SIZE=28, MODEL="cnn",
                    STRATEGIES=["random", "least_confidence", "aift"],
                    VOLUME_STRATEGIES=["random", "entropy"],
                    PHANTOM_COUNTS=[1200, 300, 600], VOLUME_PHANTOM_COUNTS=[400, 100, 200], POOL=0, INITIAL=20,
                    QUERY=20, ROUNDS=4, VOLUME_ROUNDS=2,
                    STEPS=120, STEPS_3D=40, VAL_LABELS="matched", BATCH_SIZE=32, LR=1e-3, DROPOUT=0.3,
                    MC_SAMPLES=10, AIFT_COPIES=8, PRETRAIN="auto", PRETRAIN_EPOCHS=10, SEEDS=[0, 1, 2],
                    VOLUME_SEEDS=[0, 1], DEVICE="auto"),
    "full": dict(DATASET="bloodmnist", VOLUME_DATASET="adrenalmnist3d", SIZE=28, MODEL="resnet18",
                 STRATEGIES=["random", "least_confidence", "margin", "entropy", "bald", "coreset", "aift"],
                 VOLUME_STRATEGIES=["random", "least_confidence", "margin", "entropy", "bald", "coreset", "aift"],
                 PHANTOM_COUNTS=[1200, 300, 600], VOLUME_PHANTOM_COUNTS=[400, 100, 200], POOL=0, INITIAL=100, QUERY=100, ROUNDS=10, VOLUME_ROUNDS=8,
                 STEPS=600, STEPS_3D=450, VAL_LABELS="matched", BATCH_SIZE=64, LR=1e-3, DROPOUT=0.3,
                 MC_SAMPLES=20, AIFT_COPIES=8, PRETRAIN="auto", PRETRAIN_EPOCHS=50, SEEDS=[0, 1, 2, 3, 4],
                 VOLUME_SEEDS=[0, 1, 2], DEVICE="auto"),
}

CHECKS = {"DATASET": knobs.dataset(2), "VOLUME_DATASET": knobs.dataset(3),
          "VAL_LABELS": knobs.val_labels(), "STEPS": knobs.steps(), "STEPS_3D": knobs.steps(),
          "SIZE": knobs.size("DATASET", "VOLUME_DATASET"), "MODEL": knobs.model((2, 3)),
          "STRATEGIES": knobs.strategy(), "VOLUME_STRATEGIES": knobs.strategy(), "PRETRAIN": knobs.pretrain_source()}


# Zhou, Shin, Zhang, Gurudu, Gotway, Liang. "Fine-tuning convolutional neural networks for biomedical
# image analysis: actively and incrementally". CVPR 2017, pp. 7340-7349 (abstract: "cut the annotation
# cost by at least half" compared with random selection / full training). Shown beside ours, never in place.
AIFT_PAPER = {"labels_saved_vs_random": 0.5, "claim": "annotation cost cut by at least half vs random selection",
              "citation": "Zhou et al., CVPR 2017 (AIFT)"}
