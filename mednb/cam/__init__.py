"""Class activation maps: where is the network looking? (notebook 07).

``create(name, model, layer=None)`` builds a map method over one shared base (:mod:`.base`):

==============  ==============================================================================
 name            map (A = activations of the target layer, G = dy^c/dA)
==============  ==============================================================================
 gradcam         ReLU(sum_k mean(G^k) A^k)                     Selvaraju et al. 2017
 gradcam++       ReLU(sum_k alpha_k A^k), alpha from G², G³     Chattopadhyay et al. 2018
 hirescam        ReLU(sum_k G^k ⊙ A^k)                         Draelos & Carin 2020
 layercam        ReLU(sum_k ReLU(G^k) ⊙ A^k)                   Jiang et al. 2021
==============  ==============================================================================

``cam = create("gradcam", model, "features.block3"); maps = cam(x, target=None)`` gives
(N, *spatial) maps in [0, 1] for 2D (N,C,H,W) or 3D (N,C,D,H,W) batches. The contrast methods of
the sanity checks (``guided_backprop``, ``edge``) are created the same way.

Default layer (:func:`default_layer`): the shallowest stage at the coarsest grid that still has
≥ 7 cells per side — ``block2`` of ``cnn`` at 28 px (block2–4 are all 7×7; the deeper ones only
blur), ``layer3`` of the CIFAR-stem ResNets at 28 px (7×7; ``layer4`` is 4×4), ``layer4`` at
224 px. Chosen by measurement on phantom lesions; notebook 07 re-measures every stage.

Submodules: :mod:`.metrics` (pointing game, energy in mask, deletion/insertion),
:mod:`.sanity` (Adebayo et al. 2018 checks), :mod:`.evaluate` (cached training, localization
tables), :mod:`.show` (overlays, 3D slice viewer, the widget explorer).
"""
from __future__ import annotations

import torch.nn as nn

from .. import knobs
from .base import CAM, Explanation, default_layer, get_layer, stage_shapes, stages
from .gradcam import GradCAM
from .gradcampp import GradCAMPlusPlus
from .hirescam import HiResCAM
from .layercam import LayerCAM
from .sanity import CONTRASTS

REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Add a :class:`CAM` subclass to the registry under ``cls.name``."""
    REGISTRY[cls.name.lower()] = cls
    return cls


for _cls in (GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM):
    register(_cls)


def names(contrasts: bool = False) -> list[str]:
    """The CAM methods (and, with ``contrasts=True``, the sanity-check contrast methods)."""
    return list(REGISTRY) + (list(CONTRASTS) if contrasts else [])


def create(name: str, model: nn.Module, layer: str | None = None, *, size: int = 28):
    """A map method bound to ``model`` and ``layer`` (None → :func:`default_layer` for ``size`` px)."""
    key = str(name).lower()
    if key in REGISTRY:
        return REGISTRY[key](model, layer, size=size)
    if key in CONTRASTS:
        return CONTRASTS[key](model, layer)
    raise ValueError(f"unknown method {name!r}; valid: {', '.join(names(contrasts=True))}")


PROFILES = {
    "smoke": dict(
        DATASET="phantom2d", SIZE=28, MODEL="cnn", MODELS=["cnn"], EPOCHS=3, BATCH_SIZE=16, LR=5e-3,
        PHANTOM_COUNTS=[400, 100, 240], EPOCHS_3D=7, VOLUME_COUNTS=[200, 50, 40], PHANTOM_CLASSES_3D=2,
        RANDOM_LABEL_EPOCHS=4,
        N_EVAL=120, N_SANITY=24, DELETION_STEPS=10, SEEDS=[0], DEVICE="auto"),
    "student": dict(
        DATASET="breastmnist", SIZE=28, MODEL="cnn", MODELS=["cnn"], EPOCHS=10, BATCH_SIZE=64,
        LR=1e-3, PHANTOM_COUNTS=[1200, 300, 600], EPOCHS_3D=10, VOLUME_COUNTS=[400, 100, 200], PHANTOM_CLASSES_3D=4,
        RANDOM_LABEL_EPOCHS=20, N_EVAL=450, N_SANITY=64, DELETION_STEPS=20, SEEDS=[0, 1, 2], DEVICE="auto"),
    "full": dict(
        DATASET="breastmnist", SIZE=28, MODEL="cnn", MODELS=["cnn", "resnet18"], EPOCHS=30, BATCH_SIZE=128,
        LR=1e-3, PHANTOM_COUNTS=[4000, 1000, 2000], EPOCHS_3D=30, VOLUME_COUNTS=[1000, 200, 400], PHANTOM_CLASSES_3D=4,
        RANDOM_LABEL_EPOCHS=60, N_EVAL=1500, N_SANITY=128, DELETION_STEPS=40, SEEDS=[0, 1, 2, 3, 4],
        DEVICE="auto"),
}
# knobs valid only for a dataset or a registry (checked by mednb.params before anything runs);
# the localization sections train on phantom2d and phantom3d at SIZE whatever DATASET
CHECKS = {"DATASET": knobs.dataset(2), "SIZE": knobs.size("DATASET", fixed=("phantom2d", "phantom3d")),
          "MODEL": knobs.model(2), "MODELS": knobs.model(2), "PHANTOM_CLASSES_3D": knobs.phantom_classes()}

__all__ = ["CAM", "Explanation", "GradCAM", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "REGISTRY", "PROFILES", "CHECKS",
           "register", "names", "create", "default_layer", "get_layer", "stages", "stage_shapes"]
