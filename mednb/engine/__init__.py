"""Training and evaluation for every MedMNIST task type, with the data resident on the device.

``fit(model, splits, recipe)`` trains with device-resident uint8 tensors: each epoch is a shuffled
index permutation, each batch an index slice, and conversion, per-sample augmentation and
normalization run batched on the device (the airbench approach). A split that does not fit in
free GPU memory stays in pinned host memory and its batches are copied asynchronously.
``loader="reference"`` trains through a torch ``DataLoader`` with per-sample PIL/torchvision
transforms, as the MedMNIST experiments code does, for comparison.

How to train is a :class:`Recipe`; :data:`PAPER` is the MedMNIST v2 protocol (Yang et al., Scientific
Data 2023). Files: ``recipe`` (Recipe, AMP choice, optimizer/scheduler), ``evaluation`` (losses,
predict, evaluate), ``staging`` (device placement, reference loader), ``loop`` (fit, train).
"""
from ..runtime import get_device, seed_everything  # noqa: F401  (part of the engine's namespace)
from .evaluation import (MEAN, STD, class_weights, evaluate, is_multilabel, loss_for, matched_val_idx,  # noqa: F401
                         normalize, predict, scores_from_logits)
from .loop import LOADERS, FitResult, StopTraining, fit, load_checkpoint, save_checkpoint, train  # noqa: F401
from .recipe import (AMP, DEFAULT_EVALS, OPTIMIZERS, PAPER, SCHEDULES, SELECT, STABLE, VAL_LABELS, Recipe,  # noqa: F401
                     amp_dtype)
from .staging import ReferenceDataset, Staged, placement, split_nbytes, stage  # noqa: F401
