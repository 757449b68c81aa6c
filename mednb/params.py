"""Notebook parameters and run profiles (``smoke`` / ``student`` / ``full``).

Mechanism. A notebook's ``parameters`` cell holds flat knobs whose stored value is ``None``
("take it from the profile") plus ``PROFILE = None``. Its setup cell calls
``P = mednb.params(globals(), topic.PROFILES)``, which

1. picks the profile: ``PROFILE`` if set, else ``$MEDNB_PROFILE``, else ``"student"``;
2. fills every knob still ``None`` from that profile's table, keeps any value a person or
   papermill set, and checks its type and vocabulary (dataset names, devices, fractions), then the
   values that are valid only for a dataset or a registry (the topic's ``CHECKS``, see :mod:`mednb.knobs`);
3. writes the resolved values back into the notebook's namespace, seeds everything with the
   first seed, and prints versions, device, seed, data root and the knob table.

``$MEDNB_THREADS`` (set by ``mednb sweep`` for each unit) fixes torch's CPU threads at that step.

So nbval in CI (``MEDNB_PROFILE=smoke``) runs the stored notebook at smoke size, a student who
opens it gets the ``student`` profile, and ``mednb run --profile full`` injects ``PROFILE="full"``
— no notebook is ever rewritten.

The ``smoke`` profile shows the machinery working: each notebook runs in at most 60 s on 2 CPU cores,
and every classifier trained on its full smoke training set ends at test AUC >= :data:`SMOKE_MIN_AUC`
(0.7) on the phantoms (chance: 0.5; notebook 09: averaged over its seen hospitals); notebook 05's 2D
segmenters reach Dice >= :data:`SMOKE_MIN_DICE` (an empty prediction scores 0).
``tests/test_smoke_learns.py`` trains them with the smoke values. The 3D classifiers of notebooks 02, 03,
07 and 08 train on two-class phantoms in the smoke profile (normal vs one round lesion: a few hundred volume
passes per model; the four classes need some 3,000, and at a few hundred end near chance for some seeds).
Notebook 01's 3D baseline keeps the four classes. At chance by design, and said so in the
notebooks: runs on 1 % of the labels (a handful of images), active-learning rounds on a few dozen labels, and
notebook 05's 3D segmenters (a few thousand lesion voxels in all: the smoke run checks their code only).
"""
from __future__ import annotations

import importlib
import os
import sys
from types import SimpleNamespace

import torch

PROFILES = ("smoke", "student", "full")
DEFAULT_PROFILE = "student"
SMOKE_MIN_AUC = 0.7   # test AUC every full-training-set classifier of the smoke profile reaches (module docstring)
SMOKE_MIN_DICE = 0.4  # test Dice of notebook 05's 2D segmenters in the smoke profile (empty prediction: 0)

# notebook stem -> module that holds its PROFILES table (NN_topic.ipynb <-> mednb/topic.py)
NOTEBOOK_MODULES = {
    "00_medmnist_tour": "mednb.tour",
    "01_baseline_medmnist": "mednb.baseline",
    "02_augmentation": "mednb.augment",
    "03_transfer_learning": "mednb.transfer",
    "04_self_supervised": "mednb.ssl",
    "05_unetpp_segmentation": "mednb.seg",
    "06_active_learning": "mednb.active",
    "07_gradcam": "mednb.cam",
    "08_3d_volumes": "mednb.volumes",
    "09_multisite_federated": "mednb.federated",
    "10_benchmark_leaderboard": "mednb.leaderboard",
}


SKIP_DATASET = "none"  # a dataset knob set to "none" skips the part of a notebook that uses it (notebook 01)


class ParamError(ValueError):
    """A bad knob value or name; the message is one line that names the valid choices."""


def set_threads(threads) -> None:
    """``torch.set_num_threads(threads)`` when given (``$MEDNB_THREADS``: a sweep unit's CPU share)."""
    if threads in (None, ""):
        return
    try:
        n = int(threads)
    except ValueError:
        n = 0
    if n < 1:
        raise ParamError(f"MEDNB_THREADS must be an int >= 1, got {threads!r}")
    torch.set_num_threads(n)


def resolve_profile(profile=None) -> str:
    p = profile if profile not in (None, "", "auto") else os.environ.get("MEDNB_PROFILE") or DEFAULT_PROFILE
    p = str(p).lower()
    if p not in PROFILES:
        raise ParamError(f"unknown profile {p!r}; valid profiles: {', '.join(PROFILES)}")
    return p


def knob_types(profiles: dict) -> dict[str, type]:
    """Expected Python type of each knob, taken from the ``student`` table."""
    table = profiles.get("student") or next(iter(profiles.values()))
    return {k: type(v) for k, v in table.items()}


def _type_name(t: type) -> str:
    return {list: "list", int: "int", float: "float", str: "str", bool: "bool", dict: "dict"}.get(t, t.__name__)


def check_value(name: str, value, expected: type):
    """Coerce/validate one knob value against its expected type; raise :class:`ParamError`."""
    if value is None:
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is list and isinstance(value, tuple):
        value = list(value)
    if expected is int and isinstance(value, bool):
        raise ParamError(f"{name} must be an int, got bool {value!r}")
    if not isinstance(value, expected):
        tn = _type_name(expected)
        raise ParamError(f"{name} must be {'an' if tn[0] in 'aeiou' else 'a'} {tn}, got {type(value).__name__} {value!r}")
    return _check_vocab(name, value)


def _check_vocab(name: str, value):
    from . import data
    from .runtime import get_device
    try:
        if name == "DATASET" or name.endswith("_DATASET") or name.startswith("DATASET_"):
            if value != SKIP_DATASET:
                data.check_name(value)
        elif name == "DATASETS":
            for v in value:
                data.check_name(v)
        elif name == "DEVICE":
            get_device(value)
        elif name == "SEEDS":
            if not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
                raise ValueError(f"SEEDS must be a non-empty list of ints, got {value!r}")
        elif name == "LABEL_FRACTIONS":
            if not value or not all(isinstance(f, (int, float)) and 0 < f <= 1 for f in value):
                raise ValueError(f"LABEL_FRACTIONS must be a non-empty list of numbers in (0, 1], got {value!r}")
        elif name in ("EPOCHS", "BATCH_SIZE") and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value!r}")
        elif name == "LR" and value <= 0:
            raise ValueError(f"LR must be > 0, got {value!r}")
    except ValueError as e:
        raise ParamError(str(e)) from None
    return value


def resolve(values: dict, profiles: dict, profile=None) -> tuple[str, dict]:
    """Resolve knob values against a PROFILES table; returns ``(profile, resolved)``."""
    prof = resolve_profile(profile)
    missing = [p for p in PROFILES if p not in profiles]
    if missing:
        raise ParamError(f"PROFILES table lacks profile(s) {missing}")
    types = knob_types(profiles)
    table = profiles[prof]
    out = {}
    for k, t in types.items():
        v = values.get(k)
        out[k] = check_value(k, table[k] if v is None else v, t)
    return prof, out


def apply_checks(checks: dict, values: dict) -> None:
    """Run each ``CHECKS`` validator (:mod:`mednb.knobs`) on its resolved knob; :class:`ParamError` (one line)."""
    for name, check in checks.items():
        if values.get(name) is None:
            continue
        try:
            check(name, values[name], values)
        except ValueError as e:
            raise ParamError(str(e).splitlines()[0]) from None


def checks_for(profiles: dict) -> dict:
    """The ``CHECKS`` declared beside this very PROFILES table (looked up among the loaded topic
    modules of :data:`NOTEBOOK_MODULES`); ``{}`` for a table of no topic module."""
    for name in NOTEBOOK_MODULES.values():
        module = sys.modules.get(name)
        if module is not None and getattr(module, "PROFILES", None) is profiles:
            return getattr(module, "CHECKS", {})
    return {}


def validate(stem: str, values: dict, profile=None) -> dict:
    """Resolve notebook ``stem``'s knobs (``values`` over its ``profile`` table; types and vocabulary
    as :func:`resolve`) and apply its topic's ``CHECKS``: every knob whose validity depends on the
    dataset or a registry. Raises :class:`ParamError` with one line naming the valid choices; returns
    the resolved values. ``mednb run`` calls it for each notebook before any kernel starts."""
    module = _topic_module(stem)
    _, resolved = resolve(values, module.PROFILES, profile)
    try:
        apply_checks(getattr(module, "CHECKS", {}), resolved)
    except ParamError as e:
        raise ParamError(f"{e} (in {stem})") from None
    return resolved


def params(ns: dict, profiles: dict, *, show: bool = True) -> SimpleNamespace:
    """Resolve a notebook's knobs in place (see module docstring). Returns a namespace with the
    resolved knobs plus ``profile``, ``device`` (torch.device), ``seed`` and ``generator``."""
    from .runtime import get_device, seed_everything, versions, device_name
    from .data import cache_root, data_root
    prof, resolved = resolve(ns, profiles, ns.get("PROFILE"))
    apply_checks(checks_for(profiles), resolved)
    set_threads(os.environ.get("MEDNB_THREADS"))
    ns.update(resolved)
    ns["PROFILE"] = prof
    device = get_device(resolved.get("DEVICE", "auto"))
    seeds = resolved.get("SEEDS") or [0]
    gen = seed_everything(seeds[0])
    out = SimpleNamespace(profile=prof, device=device, seed=seeds[0], generator=gen, values=dict(resolved),
                          **resolved)
    if show:
        v = versions()
        print(f"mednb {v['mednb']} | torch {v['torch']} | torchvision {v['torchvision']} | "
              f"medmnist {v['medmnist']} | python {v['python']}")
        print(f"device: {device} ({device_name(device)}) | seed: {seeds[0]} | profile: {prof}")
        print(f"data root: {data_root()} | cache: {cache_root()}")
        width = max((len(k) for k in resolved), default=0)
        for k, val in resolved.items():
            print(f"  {k:<{width}} = {val!r}")
        try:
            from IPython import get_ipython
            from IPython.display import display
            from .recording import PARAMS_MIME
            if get_ipython() is not None:
                display({PARAMS_MIME: {"profile": prof, "device": str(device), "device_name": device_name(device),
                                       **resolved},
                         "text/plain": ""}, raw=True)
        except ImportError:
            pass
    return out


def _topic_module(stem: str):
    if stem not in NOTEBOOK_MODULES:
        raise ParamError(f"unknown notebook {stem!r}; valid: {', '.join(NOTEBOOK_MODULES)}")
    return importlib.import_module(NOTEBOOK_MODULES[stem])


def notebook_profiles(stem: str) -> dict:
    """The PROFILES table of a notebook, found through :data:`NOTEBOOK_MODULES`."""
    return _topic_module(stem).PROFILES
