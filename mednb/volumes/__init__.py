"""3D-specific helpers for notebook 08: projections, memory estimates and the 2.5D / 3D / ACS study.

Files: ``profiles`` (PROFILES, CHECKS, RECIPE, recipe_from), ``views`` (mip, conv_model), ``memory``,
``experiments`` (the three comparisons), ``verdicts`` (convergence, verdicts, claims, records).

* :func:`mip` — maximum-intensity projection of (C,D,H,W) or (D,H,W) volumes along an axis.
* :func:`estimate_memory` — training memory predicted *before* training: parameters, gradients,
  optimizer state and the activations kept for backward (counted with forward hooks on a
  1-sample "meta" tensor, so nothing is allocated).
* :func:`measure_peak_memory` — the measured peak: ``torch.cuda.max_memory_allocated`` on CUDA; on
  CPU the growth of the peak resident set (``ru_maxrss``) of a fresh subprocess over one
  training step.
* :func:`conv_model` — the same 2D design converted three ways (``models.to_3d``): ``2.5d``
  (per-slice 1×k×k kernels), ``3d`` (k×k×k, I3D-inflated), ``acs`` (axial/coronal/sagittal
  2D kernels; Yang et al., IEEE JBHI 2021), as in MedMNIST v2's 3D rows.
* :func:`compare_convs`, :func:`genesis_vs_scratch`, :func:`augment_on_off` — the notebook's three comparisons.
  Every arm of every comparison (each convolution, initialisation, label fraction and augmentation) trains the
  same budget of optimizer steps (``Recipe(steps=N)``), so an arm with fewer labels is not also an arm with
  less training (Oliver et al., NeurIPS 2018); :func:`verdicts` pairs the arms over seeds
  (:func:`mednb.claims.paired`) and :func:`record_results` tags every record with its comparison and budget.
"""
from .experiments import (_data_key, _reused, _warn_collapse, augment_on_off, compare_convs,  # noqa: F401
                          genesis_vs_scratch, load_volumes, with_paper)
from .memory import _ADAM_STATES, _MEASURE_SNIPPET, estimate_memory, fmt_bytes, measure_peak_memory  # noqa: F401
from .profiles import CHECKS, COMPARISONS, CONVS, PROFILES, RECIPE, recipe_from  # noqa: F401
from .verdicts import _by_seed, convergence, record_claims, record_results, results, verdicts  # noqa: F401
from .views import AXES, conv_model, mip, plot_mip  # noqa: F401
