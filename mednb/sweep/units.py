"""Units: the grid points of a spec, each one papermill execution of the spec's notebook.

A unit's folder is ``<slug>-<hash>``: ``hash`` is the first 8 hex digits of the SHA-256 of the canonical
JSON of (notebook stem, profile, parameters) — stable across runs, machines and the order of keys in
the spec — and ``slug`` is readable (``01-breastmnist-28-cnn-s0``: notebook number, then the values of
the grid axes, ``s<seed>``; ``none`` and empty lists left out).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..params import NOTEBOOK_MODULES, SKIP_DATASET, ParamError, validate
from .spec import SEED_AXIS, Spec

DATASET_KNOBS = re.compile(r"^(DATASET|DATASET_\w+|\w+_DATASET)$")


@dataclass(frozen=True)
class Unit:
    notebook: str        # file stem
    path: str            # the notebook file (the same path on every worker: a shared file system)
    profile: str
    params: dict         # every injected knob but PROFILE (a seed axis becomes SEEDS = [seed])
    hash: str
    slug: str

    @property
    def name(self) -> str:
        """The unit's folder name under ``DIR/units``."""
        return f"{self.slug}-{self.hash}"

    def record(self) -> dict:
        """The content of ``unit.json``."""
        return {"notebook": self.notebook, "profile": self.profile, "params": self.params,
                "hash": self.hash, "slug": self.slug}


def unit_hash(notebook: str, profile: str, params: dict) -> str:
    blob = json.dumps({"notebook": notebook, "profile": profile, "params": params}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def _part(value) -> str:
    if isinstance(value, list):
        value = "+".join(_part(v) for v in value)
    return re.sub(r"[^a-z0-9.+]+", "_", str(value).lower()).strip("_")


def slug(notebook: str, point: dict) -> str:
    """``NN-value-value-s<seed>`` from the grid axes of one point (at most 60 characters)."""
    parts = [notebook.split("_")[0]]
    for axis, value in point.items():
        if value == SKIP_DATASET or value == []:
            continue
        parts.append(f"s{value}" if axis == SEED_AXIS else _part(value))
    return "-".join(p for p in parts if p)[:60].rstrip("-_")


def expand(spec: Spec) -> list[Unit]:
    """Every unit of the spec, in grid order, without duplicates, each checked by its topic's ``CHECKS``."""
    units, seen = [], set()
    for axes in spec.grids:
        names = list(axes)
        for values in itertools.product(*(axes[n] for n in names)):
            point = dict(zip(names, values))
            params = dict(spec.fixed)
            for k, v in point.items():
                if k == SEED_AXIS:
                    params["SEEDS"] = [v]
                else:
                    params[k] = v
            params = dict(sorted(params.items()))
            h = unit_hash(spec.notebook, spec.profile, params)
            if h in seen:
                continue
            seen.add(h)
            units.append(Unit(spec.notebook, str(spec.path), spec.profile, params, h, slug(spec.notebook, point)))
    if spec.notebook in NOTEBOOK_MODULES:
        for u in units:
            try:
                validate(spec.notebook, u.params, spec.profile)
            except ParamError as e:
                raise ParamError(f"sweep spec {spec.name}: unit {u.slug}: {e}") from None
    return units


def knobs_of(spec: Spec, unit: Unit) -> dict:
    """The unit's knobs over its profile's table (registered notebooks), i.e. what its notebook will use."""
    from ..params import notebook_profiles
    table = notebook_profiles(spec.notebook)[spec.profile] if spec.notebook in NOTEBOOK_MODULES else {}
    return {**table, **unit.params}


def datasets_of(spec: Spec, unit: Unit) -> list[tuple[str, int]]:
    """The (dataset, size) pairs a unit loads (``none`` left out): its own values, else the profile's."""
    knobs = knobs_of(spec, unit)
    size = knobs.get("SIZE") or 28
    names = []
    for knob, value in knobs.items():
        if knob == "DATASETS" and isinstance(value, list):
            names += value
        elif DATASET_KNOBS.match(knob) and isinstance(value, str):
            names.append(value)
    return [(n, int(size)) for n in names if n != SKIP_DATASET]


def present(spec: Spec, units: list[Unit], root: Path | None = None) -> tuple[list[Unit], list[str]]:
    """Split units into those whose MedMNIST files are all in the data root and the missing file names."""
    from .. import data
    root = Path(root) if root is not None else data.data_root()
    keep, missing = [], set()
    for u in units:
        absent = [data.filename(n, s) for n, s in datasets_of(spec, u)
                  if n not in data.PHANTOMS and not (root / data.filename(n, s)).is_file()]
        missing.update(absent)
        if not absent:
            keep.append(u)
    return keep, sorted(missing)
