"""Sweep specs: a small TOML file that names a notebook, a profile, fixed knobs and a grid.

::

    notebook = "01_baseline_medmnist"   # file stem, unique prefix ("01") or path of a notebook
    profile = "smoke"                   # smoke | student | full
    only_present = false                # true: drop units whose MedMNIST files are absent from the data root
    threads = 1                         # CPU threads each unit computes with (default 1), on every executor

    [fixed]                             # knobs every unit gets
    DATASET_3D = "none"
    COMPARE_MODELS = []

    [grid]                              # the Cartesian product of these lists; one unit per point
    DATASET = ["phantom2d"]
    MODEL = ["cnn"]
    seed = [0, 1]                       # the seed axis: each unit runs SEEDS = [seed]

    [tolerance]                         # stored in sweep.json before any unit runs (the leaderboard's verdict)
    abs = 0.02
    sd = 2

``threads`` fixes what a unit's numbers could otherwise take from the machine: torch's and the math
libraries' CPU threads (CPU float reductions depend on the thread count). It is the same on the local,
Ray and Slurm executors; their resources only decide how many units run at once. The default 1 makes
units identical everywhere and lets parallel units share a machine without oversubscribing it.

Optional: ``name`` (default: the file's stem), ``description``, and ``[paper]`` (free-form hints kept in
``sweep.json`` for the report). Several grids (``[[grid]]`` tables) give the union of their products,
e.g. the 2D and the 3D half of the MedMNIST v2 table. ``seed`` is the one lower-case axis:
``seed = [0, 1, 2]`` is the same as ``SEEDS = [[0], [1], [2]]`` (one training per unit), so seeds
parallelise like any other axis.

Specs ship in ``mednb/sweeps/NAME.toml`` (found by NAME); any other spec is given by its path. Every
value is checked against the notebook's knobs (name, type, vocabulary) here, and every unit against its
topic's ``CHECKS`` (:func:`mednb.params.validate`: dataset, size, model) when the spec is expanded —
all before anything runs; an error is one line that names the valid choices (:class:`ParamError`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..params import ParamError, check_value, resolve_profile

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SPECS_DIR = Path(__file__).resolve().parent.parent / "sweeps"
KEYS = ("name", "description", "notebook", "profile", "only_present", "threads", "fixed", "grid", "tolerance",
        "paper")
SEED_AXIS = "seed"
DEFAULT_THREADS = 1
MAX_THREADS = 256


@dataclass
class Spec:
    """A validated sweep spec. ``fixed`` and every axis hold checked, coerced values."""
    name: str
    notebook: str                     # file stem
    path: Path                        # the notebook file
    profile: str
    fixed: dict
    grids: list[dict]                 # each: axis name -> list of values (``seed`` axis kept as is)
    tolerance: dict = field(default_factory=dict)
    paper: dict = field(default_factory=dict)
    only_present: bool = False
    threads: int = DEFAULT_THREADS
    description: str = ""
    source: str = ""

    def resolved(self) -> dict:
        """The spec as stored in ``sweep.json`` (plain JSON types)."""
        return {"name": self.name, "description": self.description, "notebook": self.notebook,
                "profile": self.profile, "only_present": self.only_present, "threads": self.threads,
                "fixed": self.fixed, "grid": self.grids, "tolerance": self.tolerance, "paper": self.paper,
                "source": self.source}


def shipped() -> list[str]:
    """Names of the specs that ship with mednb (``mednb/sweeps/*.toml``)."""
    return sorted(p.stem for p in SPECS_DIR.glob("*.toml"))


def find(ref: str | Path) -> Path:
    """A spec file: an existing path, else a shipped spec by name."""
    p = Path(ref).expanduser()
    if p.is_file():
        return p.resolve()
    named = SPECS_DIR / f"{Path(str(ref)).stem}.toml"
    if str(ref).replace("_", "").isalnum() and named.is_file():
        return named
    raise ParamError(f"unknown sweep spec {str(ref)!r}; valid: {', '.join(shipped()) or '(none)'} "
                     "or the path of a .toml file")


def load(ref: str | Path, notebooks_dir: str | Path | None = None) -> Spec:
    """Read and validate a spec (see the module docstring); raises :class:`ParamError`."""
    path = find(ref)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ParamError(f"cannot read sweep spec {path}: {e}") from None
    return from_dict(raw, name=path.stem, source=str(path), notebooks_dir=notebooks_dir)


def from_dict(raw: dict, *, name: str, source: str = "", notebooks_dir: str | Path | None = None) -> Spec:
    """Validate a parsed spec. ``name``: used when the spec has no ``name`` key."""
    from .. import runner
    name = str(raw.get("name") or name)
    where = f"sweep spec {name}"
    unknown = [k for k in raw if k not in KEYS]
    if unknown:
        raise ParamError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(KEYS)}")
    threads = check_threads(raw.get("threads", DEFAULT_THREADS), where)
    for key in ("notebook", "profile"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ParamError(f"{where}: `{key}` is required (a string)")
    try:
        nb_path = runner.select([raw["notebook"]], notebooks_dir or runner.default_notebooks_dir())[0]
        profile = resolve_profile(raw["profile"])
    except ParamError as e:
        raise ParamError(f"{where}: {e}") from None
    check = _Checker(where, nb_path.stem, runner.notebook_knobs(nb_path))
    fixed = {k: check.value("[fixed]", k, v) for k, v in _table(raw, "fixed", where).items()}
    grids = check.grids(raw.get("grid"), fixed)
    only_present = raw.get("only_present", False)
    if not isinstance(only_present, bool):
        raise ParamError(f"{where}: only_present must be true or false, got {only_present!r}")
    return Spec(name=name, notebook=nb_path.stem, path=nb_path, profile=profile, fixed=fixed, grids=grids,
                tolerance=_tolerance(_table(raw, "tolerance", where), where), paper=_table(raw, "paper", where),
                only_present=only_present, threads=threads, description=str(raw.get("description", "")),
                source=source)


def check_threads(value, where: str = "sweep spec") -> int:
    """A spec's ``threads``: an int from 1 to :data:`MAX_THREADS`; raises :class:`ParamError`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise ParamError(f"{where}: threads must be an int from 1 to {MAX_THREADS} (the CPU threads each unit "
                         f"computes with; default {DEFAULT_THREADS}), got {value!r}")
    return value


def _table(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ParamError(f"{where}: [{key}] must be a table, got {type(value).__name__}")
    return value


def _tolerance(tol: dict, where: str) -> dict:
    """Numbers >= 0; the leaderboard's own check (valid keys) when :mod:`mednb.sweep.report` is installed."""
    try:
        from .report import check_tolerance
    except ImportError:
        check_tolerance = None
    for k, v in tol.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ParamError(f"{where}: [tolerance] {k} must be a number >= 0, got {v!r}")
    if check_tolerance is not None:
        try:
            check_tolerance(tol)
        except ValueError as e:
            raise ParamError(f"{where}: [tolerance] {e}") from None
    return dict(tol)


class _Checker:
    """Checks knob names and values of one notebook; errors name the spec and the table."""

    def __init__(self, where: str, stem: str, knobs: dict):
        from .. import runner
        self.where, self.stem, self.knobs, self._any = where, stem, knobs, runner._ANY

    def value(self, table: str, name: str, value):
        from ..runner import SHARED_TYPES
        if name not in self.knobs:
            raise ParamError(f"{self.where}: {table} unknown knob {name!r} for {self.stem}; "
                             f"valid: {', '.join(sorted(self.knobs))}")
        expected = self.knobs[name]
        if expected is self._any:
            expected = SHARED_TYPES.get(name, type(value))
        try:
            return check_value(name, value, expected)
        except ParamError as e:
            raise ParamError(f"{self.where}: {table} {e}") from None

    def grids(self, raw, fixed: dict) -> list[dict]:
        blocks = [raw] if isinstance(raw, dict) else raw
        if not blocks or not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise ParamError(f"{self.where}: [grid] is required: a table of lists (or [[grid]] tables); "
                             f"valid knobs: {', '.join(sorted(self.knobs))}, or `{SEED_AXIS}`")
        out = []
        for i, block in enumerate(blocks):
            table = "[grid]" if len(blocks) == 1 else f"[[grid]] #{i + 1}"
            if not block:
                raise ParamError(f"{self.where}: {table} is empty; give at least one axis (a list of values)")
            axes = {}
            for name, values in block.items():
                if not isinstance(values, list) or not values:
                    raise ParamError(f"{self.where}: {table} {name} must be a non-empty list of values, "
                                     f"got {values!r}")
                if name in fixed:
                    raise ParamError(f"{self.where}: {table} {name} is also in [fixed]; give it in one place")
                axes[name] = [self._seed(table, v) for v in values] if name == SEED_AXIS else \
                    [self.value(table, name, v) for v in values]
            if SEED_AXIS in axes and ("SEEDS" in axes or "SEEDS" in fixed):
                raise ParamError(f"{self.where}: {table} has both `{SEED_AXIS}` and SEEDS; use one")
            out.append(axes)
        return out

    def _seed(self, table: str, v):
        if "SEEDS" not in self.knobs:
            raise ParamError(f"{self.where}: {table} `{SEED_AXIS}` axis needs a SEEDS knob, which {self.stem} lacks")
        if isinstance(v, bool) or not isinstance(v, int):
            raise ParamError(f"{self.where}: {table} {SEED_AXIS} values must be ints, got {v!r}")
        return v
