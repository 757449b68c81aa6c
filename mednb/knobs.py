"""Knob values that are valid only for a dataset or a registry, checked before any notebook code runs.

A topic module declares, beside its ``PROFILES`` table, ``CHECKS = {KNOB: validator, ...}`` built from
the validators below; :func:`mednb.params.validate` (``mednb run``, before any kernel starts) and
:func:`mednb.params.params` (a notebook's setup cell) apply them to the resolved knobs (profile table +
overrides). A validator is ``check(name, value, values)``: ``values`` are all resolved knobs (for checks
that depend on another knob, such as a size that must exist for the chosen dataset). It raises
``ValueError`` with one line that names the valid choices, read from the registries themselves
(:func:`mednb.data.names` / :func:`~mednb.data.valid_sizes`, :func:`mednb.models.names`,
:func:`mednb.augment.names`, :func:`mednb.ssl.names`, :func:`mednb.active.names`, ...). A list-valued
knob is checked element by element.
"""
from __future__ import annotations

import importlib

from typing import Callable, Mapping

Validator = Callable[[str, object, Mapping], None]


def _each(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _join(items) -> str:
    return ", ".join(map(str, items)) or "(none)"


def registry(names: Callable[[], list], what: str) -> Validator:
    """Each value must be one of ``names()`` (compared lower-cased, as the registries do)."""
    def check(name, value, values):
        valid = list(names())
        for v in _each(value):
            if str(v).lower() not in valid:
                raise ValueError(f"{name}: unknown {what} {v!r}; valid: {_join(valid)}")
    return check


# ----------------------------------------------------------------------------- datasets and sizes
def datasets_of(dims: int) -> list[str]:
    """Every dataset name (MedMNIST + phantoms) with ``dims`` 2 or 3."""
    from . import data
    return [n for n in data.names() if data.dims_of(n) == dims]


def dataset(dims: int | None = None, skip: bool = False) -> Validator:
    """A dataset name of :func:`mednb.data.names` with ``dims`` (2 or 3; None: either);
    ``skip``: the notebook also accepts ``"none"`` (skip the part that uses it)."""
    from .params import SKIP_DATASET

    def check(name, value, values):
        from . import data
        for v in _each(value):
            if skip and v == SKIP_DATASET:
                continue
            key = str(v).lower()
            valid = datasets_of(dims) if dims else data.names()
            if key not in valid:
                extra = f' or "{SKIP_DATASET}"' if skip else ""
                raise ValueError(f"{name}: {v!r} is not a {f'{dims}D ' if dims else ''}dataset; "
                                 f"valid: {_join(valid)}{extra}")
    return check


def phantom_classes() -> Validator:
    """A phantom class count: 2 .. len(:data:`mednb.phantoms.CLASSES`) (the first classes: 2 = normal vs round
    lesion). Applies to the phantoms only; a MedMNIST set keeps its own classes."""
    def check(name, value, values):
        from . import phantoms
        valid = list(range(2, len(phantoms.CLASSES) + 1))
        if value not in valid:
            raise ValueError(f"{name}: {value!r} phantom classes; valid: {_join(valid)} (the first classes of "
                             f"{', '.join(phantoms.CLASSES.values())})")
    return check


def _parse_domain(spec) -> tuple[str, str]:
    name, _, site = str(spec).partition(":")
    return name.lower(), site


def domain(dims: int = 2) -> Validator:
    """A domain ``name[:site]`` of :mod:`mednb.transfer`: a ``dims``-D dataset; a site (one of
    :data:`mednb.phantoms.SITES`) only after a phantom name."""
    base = dataset(dims)

    def check(name, value, values):
        from . import data, phantoms
        for v in _each(value):
            key, site = _parse_domain(v)
            base(name, key, values)
            if not site:
                continue
            if key not in data.PHANTOMS:
                raise ValueError(f"{name}: {v!r} has a site, but sites exist for phantoms only "
                                 f"({_join(data.PHANTOMS)}); write the plain name")
            if not site.isdigit() or int(site) not in phantoms.SITES:
                raise ValueError(f"{name}: unknown scanner site in {v!r}; valid sites: {_join(phantoms.SITES)}")
    return check


def site(dataset_knob: str) -> Validator:
    """A phantom scanner site (:data:`mednb.phantoms.SITES`) when ``dataset_knob`` is a phantom (else unused)."""
    def check(name, value, values):
        from . import data, phantoms
        if str(values.get(dataset_knob)).lower() in data.PHANTOMS and value not in phantoms.SITES:
            raise ValueError(f"{name}: unknown scanner site {value!r} of {values[dataset_knob]}; "
                             f"valid sites: {_join(phantoms.SITES)}")
    return check


def _named_datasets(values: Mapping, knobs, fixed) -> list[str]:
    """The dataset names held by ``knobs`` (lists expanded, ``name:site`` domains reduced to the name),
    plus ``fixed``; values that are no dataset (``"none"``, ``"em"``) are left to their own checks."""
    from . import data
    known = set(data.names())
    out = []
    for k in knobs:
        for v in _each(values.get(k)):
            key = _parse_domain(v)[0]
            if key in known and key not in out:
                out.append(key)
    return out + [f for f in fixed if f not in out]


def size(*dataset_knobs: str, fixed=()) -> Validator:
    """An image side (or a list of them) available for every dataset named by ``dataset_knobs``
    and for the datasets in ``fixed`` that the notebook always loads (:func:`mednb.data.valid_sizes`)."""
    def check(name, value, values):
        from . import data
        sets = _named_datasets(values, dataset_knobs, fixed)
        for s in _each(value):
            for d in sets:
                if s not in data.valid_sizes(d):
                    common = sorted(set.intersection(*(set(data.valid_sizes(x)) for x in sets)))
                    raise ValueError(f"{name}: {s!r} px is not available for {d}; valid sizes for "
                                     f"{_join(sets)}: {_join(common)}")
    return check


# ----------------------------------------------------------------------------- models
def classifiers(dims) -> list[str]:
    """Registered classifiers (:func:`mednb.models.names` less the segmentation networks) that build
    for ``dims``: 2, 3, or ``(2, 3)`` for a knob used with 2D and 3D data. The converted names
    (``*_3d``, ``*_2.5d``, ``*_acs``: :data:`mednb.models.CONV_MODES`) are volume models only."""
    from . import models, seg
    converted = tuple(f"_{m}" for m in models.CONV_MODES)
    both = set(dims) if isinstance(dims, (tuple, list, set)) else {dims}
    return [n for n in models.names() if n not in seg.SEG_MODELS and (both == {3} or not n.endswith(converted))]


def model(dims) -> Validator:
    """A classifier of :func:`classifiers` for ``dims``."""
    what = "classifier for 2D and 3D data" if isinstance(dims, (tuple, list)) else f"{dims}D classifier"
    return registry(lambda: classifiers(dims), what)


def backbone(conv_knob: str) -> Validator:
    """A 2D design that :mod:`mednb.models` registers converted by every convolution type in ``conv_knob``
    (``f"{backbone}_{conv}"``, as :func:`mednb.volumes.conv_model` builds it)."""
    def check(name, value, values):
        from . import models
        registered = set(models.names())
        convs = [str(c).lower() for c in _each(values.get(conv_knob) or models.CONV_MODES)]
        valid = [b for b in classifiers(2) if all(f"{b}_{c}" in registered for c in convs)]
        if str(value).lower() not in valid:
            raise ValueError(f"{name}: unknown backbone {value!r} for {conv_knob}={convs}; valid: {_join(valid)}")
    return check


def _lazy(module: str, attr: str, what: str) -> Validator:
    """A registry check whose valid names are ``mednb.<module>.<attr>`` (a collection, or a function returning
    one), imported on first use so that importing this module loads no topic."""
    def names():
        obj = getattr(importlib.import_module(f"mednb.{module}"), attr)
        return list(obj() if callable(obj) else obj)
    return registry(names, what)


def transfer_model() -> Validator:
    """A model that :mod:`mednb.transfer` builds in 2D and inflates to 3D (:data:`mednb.transfer.networks.MODELS`)."""
    return _lazy("transfer.networks", "MODELS", "transfer model")


def stem() -> Validator:
    """A ResNet stem of :data:`mednb.models.STEMS`."""
    return _lazy("models", "STEMS", "ResNet stem")


def conv() -> Validator:
    """A 2D → 3D convolution type of :data:`mednb.volumes.CONVS` (what :func:`~mednb.volumes.conv_model` builds)."""
    return _lazy("volumes", "CONVS", "convolution type")


# ----------------------------------------------------------------------------- training recipes
def steps() -> Validator:
    """A training budget in optimizer steps (:attr:`mednb.engine.Recipe.steps`): an int >= 1."""
    def check(name, value, values):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: a budget in optimizer steps — {name} must be an int >= 1, got {value!r}")
    return check


def val_labels() -> Validator:
    """A validation-label rule of :data:`mednb.engine.VAL_LABELS` (``full`` | ``matched``: see
    :class:`mednb.engine.Recipe`)."""
    return _lazy("engine", "VAL_LABELS", "validation-label rule")


# ----------------------------------------------------------------------------- topic registries
def policy() -> Validator:
    """An augmentation policy of :func:`mednb.augment.names`."""
    return _lazy("augment", "names", "augmentation policy")


def ssl_method() -> Validator:
    """A pretext method of :func:`mednb.ssl.names`."""
    return _lazy("ssl", "names", "ssl method")


def ssl_protocol() -> Validator:
    """An evaluation protocol of :data:`mednb.ssl.PROTOCOLS`."""
    return _lazy("ssl", "PROTOCOLS", "evaluation protocol")


def embedding() -> Validator:
    """A 2D feature embedding of :data:`mednb.ssl.evaluation.EMBEDDINGS`."""
    return _lazy("ssl.evaluation", "EMBEDDINGS", "embedding method")


def strategy() -> Validator:
    """An active-learning strategy of :func:`mednb.active.names`."""
    return _lazy("active", "names", "active-learning strategy")


def pretrain_source() -> Validator:
    """A pre-trained encoder source of :data:`mednb.active.PRETRAIN_SOURCES`."""
    return _lazy("active", "PRETRAIN_SOURCES", "pretrain source")


def transfer_strategy() -> Validator:
    """A fine-tuning strategy of :data:`mednb.transfer.STRATEGIES`."""
    return _lazy("transfer", "STRATEGIES", "transfer strategy")


def transfer_source() -> Validator:
    """A weight source of :data:`mednb.transfer.SOURCES`."""
    return _lazy("transfer", "SOURCES", "weight source")


def seg_dataset(dims: int = 2) -> Validator:
    """A segmentation set of :data:`mednb.seg.DATASETS` with ``dims`` (phantoms by their dims; the EM
    membrane slices are 2D)."""
    def names():
        from . import data, seg
        return [d for d in seg.DATASETS if (data.dims_of(d) if d in data.PHANTOMS else 2) == dims]
    return registry(names, f"{dims}D segmentation dataset")


# ----------------------------------------------------------------------------- sweeps
def sweep_spec() -> Validator:
    """A shipped sweep spec (:func:`mednb.sweep.spec.shipped`) or the path of a spec file."""
    def check(name, value, values):
        from .sweep.spec import find
        try:
            find(value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return check


def executor() -> Validator:
    """A sweep executor of :data:`mednb.sweep.executors.EXECUTORS`."""
    def names():
        from .sweep.executors import EXECUTORS
        return list(EXECUTORS)
    return registry(names, "executor")
