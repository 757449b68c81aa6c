"""Transfer learning (notebook 03): what to transfer (sources), how (strategies), when it helps.

Strategies (``STRATEGIES``), applied to a mednb ``Classifier`` (``features`` stages + ``head``):

* ``scratch`` — every weight re-initialised and trained (the source is discarded): the baseline.
* ``linear_probe`` — the body is a frozen feature extractor; only the new head is trained.
* ``finetune`` — every weight trained, the body with a smaller learning rate (discriminative LRs,
  Howard & Ruder, ULMFiT, ACL 2018): ``lr × body_lr_mult × layer_decay**(depth from the top)``.
* ``two_stage`` — the head alone with the body frozen for ``head_fraction`` of a step budget (an epoch
  recipe: ``head_epochs`` epochs), then the body is unfrozen and everything is trained (discriminative LRs)
  — one ``engine.fit`` call, switched by a callback at a validation check.
* ``partial`` — the first ``freeze_stages`` parameterised stages of ``model.features`` are frozen,
  the rest fine-tuned (discriminative LRs).

Frozen means ``requires_grad=False`` for the stage's parameters AND its BatchNorm layers kept in
eval mode (a forward pre-hook), so neither weights nor running statistics move while frozen.

Sources (``SOURCES``): ``none`` (random init); ``imagenet`` (torchvision's ``IMAGENET1K_V1``
ResNet weights through the weights API: read from the torch hub cache
``$TORCH_HOME/hub/checkpoints`` when present, else downloaded; offline without the file →
:class:`WeightsNotFound` with the numbered fix); ``indomain`` (a mednb model trained with labels
on another MedMNIST set or phantom site, saved with ``engine.save_checkpoint`` under
``cache_root()/checkpoints/transfer/<code version>/`` and reloaded); ``ssl`` (a checkpoint of notebook 04 in
:func:`mednb.ssl.checkpoint_dir`; :class:`SourceUnavailable` when there is none).

Input adaptation, stated once:

* grey → RGB: the ImageNet conv1 kernel is summed over its RGB input channels for 1-channel
  input, i.e. the model sees the grey image replicated to RGB. ImageNet's per-channel
  normalisation is folded into conv1 (and bn1's running mean), so on mednb's (x−0.5)/0.5 input the
  converted stem computes exactly what the ImageNet stem computes on the ImageNet-normalised RGB
  replica (exact away from the zero-padded border; tested).
* 28 px: ResNets use the torchvision (ImageNet) stem — 7×7 stride-2 conv + max-pool — so the
  pretrained conv1 transfers unchanged; at 28 px that leaves 7×7 maps after the stem (1×1 at
  layer4). ``input_size`` > data size upsamples inside the model (bilinear/trilinear ``resize``
  stage) — the full profile feeds 64 px. The CIFAR stem (3×3, no pool) has no ImageNet weights.
* 2D → 3D: the 2D model is built and loaded, then :func:`mednb.models.to_3d` inflates it
  (I3D, Carreira & Zisserman, CVPR 2017: each 2D kernel repeated k times along depth and divided
  by k), so a volume constant along depth gives the 2D response on every slice away from the
  depth border (zero padding along depth changes the border slices; tested on interior slices).

Training: :func:`fit`, :func:`run`, :func:`indomain_checkpoint` and :func:`domain_adaptation` take an
:class:`mednb.engine.Recipe` (budget, lr, batch size, schedule, selection, …) and pass it to ``engine.fit``
unchanged; :data:`RECIPE` (the engine's defaults at batch size 64) is used when none is given. A comparison gives
all its arms one step budget (``RECIPE.replace(steps=N)``): every strategy, source, model and label fraction
trains N optimizer steps (Oliver et al., NeurIPS 2018), so that a gain measures the transferred weights, not
extra training; pretrained weights mainly converge faster (He, Girshick & Dollár, ICCV 2019; Raghu et al.,
NeurIPS 2019), which :func:`convergence_summary` reads from the validation curves. The strategy's own knobs
(``body_lr_mult``, ``layer_decay``, ``freeze_stages``, ``head_fraction``/``head_epochs``) stay keywords.

Submodules: :mod:`.strategies` (freezing, discriminative rates, :func:`prepare`, :func:`fit`),
:mod:`.networks` (2D models, ``resize`` stage, :func:`load_body`), :mod:`.imagenet` (torchvision weights),
:mod:`.sources` (in-domain source training, checkpoint search), :mod:`.domain` (``name[:site]`` domains,
label budgets), :mod:`.runner` (:func:`build`, :func:`run`, :func:`domain_adaptation`), :mod:`.embeddings`
(feature projections and separability), :mod:`.profiles` (notebook 03's knob tables).
"""
from __future__ import annotations

from .domain import domain_spec, label_budget, load_domain, parse_domain
from .embeddings import embed, embedding_2d, plot_embeddings, separability
from .imagenet import (IMAGENET, WeightsNotFound, imagenet_file, imagenet_state_dict, imagenet_to_mednb,
                       imagenet_weights)
from .networks import Resize, body_state, create2d, load_body
from .profiles import CHECKS, PROFILES
from .runner import build, domain_adaptation, run
from .sources import (SOURCES, SourceUnavailable, check_source, checkpoint_info, indomain_checkpoint, indomain_dir,
                      indomain_for, ssl_checkpoint)
from .strategies import (HEAD_FRACTION, RECIPE, STRATEGIES, Plan, check_strategy, fit, freeze, frozen, head_steps,
                         param_groups, prepare, reset_parameters, stages, unfreeze)
from ..ssl.evaluation import convergence_summary

__all__ = ["PROFILES", "CHECKS", "STRATEGIES", "SOURCES", "IMAGENET", "RECIPE", "WeightsNotFound", "SourceUnavailable",
           "check_strategy", "check_source", "stages", "freeze", "unfreeze", "frozen", "param_groups", "prepare",
           "fit", "Plan", "head_steps", "HEAD_FRACTION", "convergence_summary", "reset_parameters", "Resize",
           "create2d", "load_body", "body_state",
           "imagenet_weights", "imagenet_file", "imagenet_state_dict", "imagenet_to_mednb", "domain_spec",
           "parse_domain", "load_domain", "label_budget", "indomain_checkpoint", "indomain_dir", "indomain_for",
           "checkpoint_info", "ssl_checkpoint", "build", "run", "domain_adaptation", "embed", "embedding_2d",
           "separability", "plot_embeddings"]
