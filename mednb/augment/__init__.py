"""Data augmentation for 2D images, masks and 3D volumes (notebook 02).

Named policies (:func:`get`, :func:`names`), each with a ``strength`` knob (0 = identity, 1 = the
defaults below, >1 = stronger)::

    none       nothing
    flip       left-right flip (p = 0.5·min(strength, 1))
    basic      flip + rotation (±15°) + shift (±10 %) + scale (±15 %) + random crop (zoom ≤ 1.25)
    intensity  gamma (×e^±0.4), contrast (×[0.7, 1.3] around the mean), brightness (±0.1), Gaussian noise (σ ≤ 0.05)
    elastic    elastic distortion (Simard, Steinkraus & Platt, ICDAR 2003: uniform random displacement
               field smoothed by a Gaussian of σ = 4 px, scaled by α = 34 px at 28 px; both scale with size)
    strong     basic + elastic + intensity

:func:`transform` gives each transform alone (``rotate``, ``shift``, ``scale``, ``crop``, ``gamma``,
``contrast``, ``brightness``, ``noise``, plus ``flip`` and ``elastic``) for galleries and the explorer.

A policy is called on float [0, 1] batches, (N,C,H,W) or (N,C,D,H,W), on any device::

    x, masks = policy(x, masks=None, generator=None)

Every sample gets its own random parameters, drawn on the CPU from ``generator`` (a
``torch.Generator``; the engine passes its seeded CPU generator) and then moved to the batch's
device; the bulk random fields (elastic displacement, Gaussian noise) are drawn directly on the
batch's device from a generator seeded from ``generator``. So a seed reproduces the augmentation
exactly on a given device (CPU and CUDA random streams differ, so the fields differ across devices).
Masks (uint8 or float, same spatial size) go through the same spatial transform with nearest
interpolation, so label values are preserved and the mask stays aligned with the image;
intensity transforms touch the image only. Online augmentation passes a policy to the engine:
``engine.fit(model, splits, recipe, augment=get("basic", dims=splits.dims))``.

What comes from libraries and what is hand-written, and why:

* kornia (batched, any device) supplies the pieces that take explicit per-sample parameters:
  rotation matrices and the intensity operations. ``kornia.augmentation`` itself draws its random
  parameters from torch's global RNG and takes no ``torch.Generator`` (kornia 0.9 documents that
  ``generator=`` is not supported), so seeded, engine-controlled reproducibility would need
  global-state juggling; the parameters are drawn here instead.
* Hand-written: the geometric composition (one sampling grid and one resampling per batch) and the
  elastic field, which kornia has for 2D only.

Files: :mod:`.policies` (Policy, registry, single transforms), :mod:`.geometry` (affine matrices,
resampling), :mod:`.elastic` (Gaussian-smoothed displacement fields), :mod:`.intensity`,
:mod:`.reference` (the per-sample torchvision v2 equivalent), :mod:`.trainsets` (offline copies,
imbalanced subsets), :mod:`.experiments` (the budget demonstration, label-fraction grid, offline vs online,
class imbalance: every arm of a comparison under one budget in optimizer steps), :mod:`.verdicts` (paired
verdicts over seeds, tables, records and claims), :mod:`.show` (gallery, explorer), :mod:`.measure` (mask
alignment, throughput), :mod:`.profiles` (notebook knobs).
"""
from __future__ import annotations

from .experiments import (BUDGETS, IMBALANCE_STRATEGIES, budget_demo, compare_offline_online, imbalance_experiment,
                          label_fraction_grid)
from .measure import mask_alignment, throughput
from .policies import DEFAULTS, GEOMETRIC, POLICIES, TRANSFORMS, Policy, get, named, names, transform, transforms
from .profiles import CHECKS, PROFILES
from .reference import torchvision_policy
from .show import convergence, explorer, gallery
from .trainsets import imbalanced_indices, nbytes, offline, offline_splits
from .verdicts import (budget_table, by_seed, claim_policy, describe_verdict, record_claims, record_rows, summary,
                       verdict)

__all__ = ["Policy", "POLICIES", "GEOMETRIC", "DEFAULTS", "TRANSFORMS", "PROFILES", "CHECKS", "IMBALANCE_STRATEGIES",
           "BUDGETS",
           "names", "get", "transforms", "transform", "named", "torchvision_policy",
           "offline", "offline_splits", "nbytes", "imbalanced_indices",
           "label_fraction_grid", "budget_demo", "compare_offline_online", "imbalance_experiment",
           "verdict", "describe_verdict", "summary", "budget_table", "by_seed", "record_rows", "record_claims",
           "claim_policy",
           "gallery", "explorer", "convergence", "mask_alignment", "throughput"]
