"""Segmentation for notebook 05: U-Net, wide U-Net and UNet++ (2D/3D), Dice + CE loss, Dice/IoU,
an image/mask-folder dataset (the ISBI 2012 EM membrane set) and the train/evaluate glue.

Models (registered in :mod:`mednb.models` by :mod:`.models`, architectures in :mod:`.unetpp`):
``unet`` (width, depth), ``wide_unet`` (width chosen so that its parameter count matches
``unetpp`` at the same width/depth, as the paper's wide U-Net: 35 vs 32 filters) and ``unetpp``
(width, depth, deep_supervision, mode "accurate"|"fast", prune_level 1..depth). Every model maps
(N,C,H,W) or (N,C,D,H,W) of any size to logits (N,K,...); a deeply supervised UNet++ in training
mode returns the list of its head logits, which :class:`DiceCELoss` averages.

``train(splits, "unetpp", RECIPE.replace(steps=320), model_kw=dict(deep_supervision=True), crop=64)``
trains through :func:`mednb.engine.fit` with the segmentation :data:`RECIPE` (a budget in optimizer
steps, cosine schedule, batch 8, best validation Dice kept) and scores the test split (``result.test``: pooled ``dice``/``iou``
of the foreground class and per-image arrays).

Submodules: :mod:`.models` (registry, wide-U-Net width matching), :mod:`.metrics` (loss, Dice/IoU,
prediction, evaluation, timing), :mod:`.data` (folder/EM/phantom loading, labelled subsets, crops),
:mod:`.training` (recipe, fit/train, restoration pre-training), :mod:`.experiments` (comparison,
label efficiency, pruning table; every arm of a comparison trains the same step budget), :mod:`.claims` (the
papers' claims, the goal verdict and the claims-ledger records, paired over seeds),
:mod:`.figures` (node grid, overlays, receptive field).
"""
from __future__ import annotations

from .. import knobs
from ..data import Split
from .claims import GOAL_IOU_GAIN, PAPER, claims, goal_verdict, iou_gain, paired_gain, record_claims
from .data import (DATASETS, EM_LICENCE, EM_NAME, EM_REPO, EM_URL, IMAGE_EXT, center_crop, em_dir, labelled_subset,
                   load, load_em, load_folder, random_crop)
from .experiments import CONFIGS, compare, convergence_table, label_efficiency, pruning_table, table
from .figures import node_grid, overlays, receptive_field
from .metrics import DiceCELoss, dice_iou, eval_fn, evaluate, inference_ms, predict
from .models import SEG_MODELS, create, param_count, wide_width
from .training import RECIPE, RESTORATION, fit, pretrain_restoration, repeat_index, train, train_policy
from .unetpp import UNet, UNetPlusPlus, pruned, widths

# Every arm of a comparison trains the same budget in optimizer steps: STEPS (2D architectures), STEPS_3D (3D
# architectures), STEPS_LABEL (label efficiency: 1, 3 or all labelled images, scratch or pre-trained). The student
# budgets equal the former epoch budgets' steps (EM: 128 crops an epoch at batch 8 = 16 steps × 10 epochs). EVALS:
# validation checks per run, EVALS_3D those of the 3D comparison (smoke 6 / 3 and student 10 / 6: the former
# per-epoch checks; 3D validation is the costly part of a short 3D run).
PROFILES = {
    "smoke": dict(DATA_2D="phantom2d", EM_DIR="", SIZE=28, COUNTS_2D=[64, 24, 32], COUNTS_3D=[16, 6, 8],
                  EM_SPLIT=[20, 4, 6], CROP=0, SAMPLES_PER_EPOCH=32, WIDTH=8, DEPTH=3, WIDTH_3D=4, DEPTH_3D=2,
                  STEPS=48, STEPS_3D=6, EVALS=6, EVALS_3D=3, BATCH_SIZE=8, LR=5e-3, AUGMENT="none", SEEDS=[0], N_LABELLED=[1, 3, 0],
                  STEPS_LABEL=16, VAL_LABELS="full", PRETRAIN_EPOCHS=2, DEVICE="auto"),
    "student": dict(DATA_2D="em", EM_DIR="", SIZE=28, COUNTS_2D=[600, 150, 300], COUNTS_3D=[64, 16, 32],
                    EM_SPLIT=[20, 4, 6], CROP=64, SAMPLES_PER_EPOCH=128, WIDTH=8, DEPTH=4, WIDTH_3D=8, DEPTH_3D=2,
                    STEPS=160, STEPS_3D=48, EVALS=10, EVALS_3D=6, BATCH_SIZE=8, LR=2e-3, AUGMENT="none", SEEDS=[0, 1],
                    N_LABELLED=[1, 3, 0], STEPS_LABEL=160, VAL_LABELS="full", PRETRAIN_EPOCHS=10, DEVICE="auto"),
    "full": dict(DATA_2D="em", EM_DIR="", SIZE=64, COUNTS_2D=[1200, 300, 600], COUNTS_3D=[400, 100, 200],
                 EM_SPLIT=[20, 4, 6], CROP=256, SAMPLES_PER_EPOCH=800, WIDTH=32, DEPTH=4, WIDTH_3D=16, DEPTH_3D=3,
                 STEPS=6000, STEPS_3D=2000, EVALS=10, EVALS_3D=10, BATCH_SIZE=8, LR=1e-3, AUGMENT="elastic", SEEDS=[0, 1, 2],
                 N_LABELLED=[1, 3, 0], STEPS_LABEL=4000, VAL_LABELS="full", PRETRAIN_EPOCHS=40, DEVICE="auto"),
}
# knobs valid only for a dataset or a registry (checked by mednb.params before anything runs);
# the 3D section segments phantom3d at SIZE whatever DATA_2D
CHECKS = {"DATA_2D": knobs.seg_dataset(2), "SIZE": knobs.size("DATA_2D", fixed=("phantom3d",)),
          "AUGMENT": knobs.policy(), "VAL_LABELS": knobs.val_labels()}

__all__ = ["PROFILES", "CHECKS", "RECIPE", "RESTORATION", "SEG_MODELS", "CONFIGS", "DATASETS", "PAPER", "GOAL_IOU_GAIN",
           "EM_NAME", "EM_URL", "EM_REPO", "EM_LICENCE", "IMAGE_EXT", "Split",
           "UNet", "UNetPlusPlus", "pruned", "widths", "create", "param_count", "wide_width",
           "DiceCELoss", "dice_iou", "predict", "evaluate", "eval_fn", "inference_ms",
           "load", "load_em", "load_folder", "em_dir", "labelled_subset", "random_crop", "center_crop",
           "train_policy", "repeat_index", "fit", "train", "pretrain_restoration",
           "compare", "table", "label_efficiency", "convergence_table", "pruning_table", "iou_gain", "paired_gain", "goal_verdict", "claims",
           "record_claims",
           "node_grid", "overlays", "receptive_field"]
