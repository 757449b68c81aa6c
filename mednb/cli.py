"""The ``mednb`` command line.

::

    mednb run [NOTEBOOK ...] --profile {smoke,student,full} --out DIR [--resume] [-p NAME VALUE]...
    mednb data list | info NAME | fetch NAME [--size N] | verify
    mednb bench ...            (benchmarks, see ``mednb bench --help``)
    mednb report DIR           (a sweep folder's results.csv and leaderboard.md / .html)
    mednb book DIR --out SITE [--sweep SWEEP_DIR ...]   (a run folder as a static HTML site)
    mednb sweep SPEC --out DIR [--executor local|ray|slurm] ...   (see ``mednb sweep --help``)
    mednb cache [list | prune [--dry-run]]   (checkpoints and phantoms in the cache root)

User errors (a bad parameter, a missing or corrupt file, an unknown name) print one clear
message, no traceback, and exit with status 2; ``run`` and ``sweep`` exit 1 when a notebook or unit failed.
"""
from __future__ import annotations

import argparse
import os
import sys

from .params import PROFILES, ParamError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mednb", description="mednb: MedMNIST teaching-and-benchmarking workbook")
    sub = ap.add_subparsers(dest="cmd", metavar="{run,data,bench,report,sweep,book,cache}")
    sub.required = True

    r = sub.add_parser("run", help="execute notebooks with papermill and collect their results",
                       description="Execute notebooks (all, in order, by default) with papermill; write executed "
                                   "notebooks, metrics.jsonl, results.csv, report.md and env.json into --out.")
    r.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                   help="file stem (00_medmnist_tour), unique prefix (00) or path; default: all")
    r.add_argument("--profile", required=True, choices=PROFILES, help="smoke | student | full")
    r.add_argument("--out", required=True, metavar="DIR", help="results folder")
    r.add_argument("--resume", action="store_true", help="skip notebooks already completed in DIR")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="override a knob in every selected notebook that has it (Python literal or text)")
    r.add_argument("--notebooks-dir", metavar="D", help="where the notebooks are (default: the clone's notebooks/)")
    r.add_argument("--cell-timeout", type=int, default=None, metavar="S",
                   help="fail a notebook whose cell runs longer than S seconds")
    r.add_argument("--book", action="store_true",
                   help="at the end, build the static HTML site of the results into DIR/site (see mednb book)")

    d = sub.add_parser("data", help="list, describe, fetch and verify datasets")
    ds = d.add_subparsers(dest="data_cmd", metavar="{list,info,fetch,verify}")
    ds.required = True
    ds.add_parser("list", help="every dataset, with what is present in the data root")
    i = ds.add_parser("info", help="describe a dataset (offline)")
    i.add_argument("name")
    f = ds.add_parser("fetch", help="download a MedMNIST file (MD5-checked) or generate a phantom")
    f.add_argument("name")
    f.add_argument("--size", type=int, default=28, help="28 (default), 64, 128 or 224 (3D: 28, 64)")
    f.add_argument("--force", action="store_true", help="download again even when present")
    ds.add_parser("verify", help="check every MedMNIST file in the data root against its MD5")

    rp = sub.add_parser("report", help="a sweep folder's leaderboard (ours vs the MedMNIST v2 table)",
                        description="Aggregate every unit of a sweep folder into DIR/results.csv, DIR/leaderboard.md "
                                    "and DIR/leaderboard.html.")
    rp.add_argument("dir", metavar="DIR", help="the sweep folder (holds sweep.json and units/)")

    b = sub.add_parser("book", help="a run folder (and sweep folders) as a static HTML site, readable offline",
                       description="Build a static HTML site from a `mednb run` output folder: an index (curriculum, "
                                   "status, wall time, evidence of the run), one page per executed notebook with its "
                                   "outputs, the claims, and a leaderboard page with charts per sweep folder. "
                                   "Relative links only: open SITE/index.html from the file system or publish SITE "
                                   "on any static host.")
    b.add_argument("dir", metavar="DIR", help="the run folder (mednb run --out DIR)")
    b.add_argument("--out", required=True, metavar="SITE", help="the site folder (replaced atomically when it holds "
                                                                "an earlier book)")
    b.add_argument("--sweep", action="append", default=[], metavar="SWEEP_DIR",
                   help="a sweep folder to add a leaderboard page for (repeatable); the sweep notebook 10 "
                        "reported on is added when it still exists")
    b.add_argument("--no-auto-sweep", action="store_true", help="do not add the sweep notebook 10 reported on")

    from .sweep import command as sweep_command
    sw = sub.add_parser("sweep", help=sweep_command.HELP, description=sweep_command.DESCRIPTION)
    sweep_command.add_arguments(sw)

    c = sub.add_parser("cache", help="list the cache root, or prune what the installed mednb no longer reads",
                       description="The cache root holds checkpoints per mednb code version, phantom arrays per "
                                   "generator version and notebook 10's sweep folders. 'list' (default) shows each "
                                   "group and whether the installed mednb reads it; 'prune' deletes the stale "
                                   "checkpoints and phantoms (sweep folders are kept).")
    cs = c.add_subparsers(dest="cache_cmd", metavar="{list,prune}")
    cs.add_parser("list", help="every group of cache files: version, files, size, current or stale")
    pr = cs.add_parser("prune", help="delete checkpoints of other code versions, phantoms of other generators and "
                                     "temp files of writes interrupted over an hour ago")
    pr.add_argument("--dry-run", action="store_true", help="only say what would be deleted")

    sub.add_parser("bench", help="benchmarks (mednb.bench)", add_help=False, prefix_chars="\0").add_argument(
        "rest", nargs=argparse.REMAINDER)
    return ap


# ----------------------------------------------------------------------------- data
def data_list() -> int:
    from . import data
    from .cache import phantom_generator
    from medmnist import INFO
    root = data.data_root()
    print(f"data root: {root}")
    print(f"{'name':<16} {'dims':>4}  {'task':<26} {'classes':>7}  {'sizes':<16} present")
    for key in data.names():
        sizes = data.valid_sizes(key)
        if key in data.PHANTOMS:
            task, k = "multi-class", 4
            found = (data.cache_root() / "phantoms").glob(f"{key}_*_g{phantom_generator()}.npz")
            cached = sorted({int(p.name.split("_")[1]) for p in found})
            present = "built-in" + (f" (cached {','.join(map(str, cached))})" if cached else "")
        else:
            task, k = INFO[key]["task"], len(INFO[key]["label"])
            have = [s for s in sizes if (root / data.filename(key, s)).exists()]
            present = ",".join(map(str, have)) if have else "absent"
        print(f"{key:<16} {data.dims_of(key):>3}D  {task:<26} {k:>7}  {','.join(map(str, sizes)):<16} {present}")
    return 0


def data_info(name: str) -> int:
    from . import data
    print(data.info_card(name))
    return 0


def data_fetch(name: str, size: int, force: bool) -> int:
    from . import data
    key = data.check_name(name)
    if key in data.PHANTOMS:
        s = data.load(key, size)
        print(f"{key} is built in: generated and cached at {s.path}")
        return 0
    path = data.fetch(key, size, force=force)
    print(f"OK {path} (md5 {data.md5sum(path)})")
    return 0


def data_verify() -> int:
    from . import data
    root = data.data_root()
    rows = data.verify(root)
    if not rows:
        print(f"no MedMNIST files in {root}")
        return 0
    for fn, status, detail in rows:
        print(f"{status:<8} {fn:<30} {detail}")
    bad = sum(s != "OK" for _, s, _ in rows)
    print(f"{len(rows) - bad}/{len(rows)} files OK in {root}" + (f"; {bad} CORRUPT (delete and fetch again)" if bad else ""))
    return 1 if bad else 0


# ----------------------------------------------------------------------------- cache
def cache_list() -> int:
    from . import cache
    from .runtime import cache_root, code_version
    rows = cache.entries()
    print(f"cache root: {cache_root()} (code version {code_version()}, phantom generator {cache.phantom_generator()})")
    if not rows:
        print("empty")
        return 0
    print(f"{'what':<36} {'version':<12} {'files':>6} {'size':>9}  state")
    for e in rows:
        state = f"stale: {e.why}" if e.stale else "kept (results)" if e.why == "results" else "current"
        print(f"{e.what:<36} {e.version or '-':<12} {e.n_files:>6} {cache.human(e.nbytes):>9}  {state}")
    stale = [e for e in rows if e.stale]
    if stale:
        print(f"{cache.human(sum(e.nbytes for e in stale))} stale: `mednb cache prune` deletes it")
    return 0


def cache_prune(dry_run: bool) -> int:
    from . import cache
    stale = cache.prune(dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for e in stale:
        print(f"{verb} {e.what} {e.version or '-'} ({e.why}): {e.n_files} files, {cache.human(e.nbytes)}")
    print(f"{verb} {cache.human(sum(e.nbytes for e in stale))} in {len(stale)} stale groups" if stale
          else "nothing stale in the cache root")
    return 0


# ----------------------------------------------------------------------------- bench
def bench(rest: list[str]) -> int:
    try:
        from . import bench as _bench
    except ImportError as e:
        raise ParamError(f"mednb bench is not available in this install ({e})") from None
    bp = argparse.ArgumentParser(prog="mednb bench", description=(_bench.__doc__ or "").strip().splitlines()[0]
                                 if _bench.__doc__ else None)
    _bench.add_arguments(bp)
    return int(_bench.run(bp.parse_args(rest)) or 0)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    from .data import DataError
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # inside the try: a reader that closed the pipe early is handled below
        return code
    except (ParamError, DataError, ValueError) as e:
        print(f"mednb: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mednb: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()


def _dispatch(args) -> int:
    """Run the parsed subcommand; returns its exit status."""
    if args.cmd == "run":
        from . import runner
        return runner.run(args.notebooks, profile=args.profile, out=args.out, resume=args.resume,
                          overrides=args.parameter, notebooks_dir=args.notebooks_dir,
                          cell_timeout=args.cell_timeout, book=args.book)
    if args.cmd == "data":
        if args.data_cmd == "list":
            return data_list()
        if args.data_cmd == "info":
            return data_info(args.name)
        if args.data_cmd == "fetch":
            return data_fetch(args.name, args.size, args.force)
        return data_verify()
    if args.cmd == "bench":
        return bench(args.rest)
    if args.cmd == "cache":
        return cache_prune(args.dry_run) if args.cache_cmd == "prune" else cache_list()
    if args.cmd == "sweep":
        from .sweep import command as sweep_command
        return sweep_command.run(args)
    if args.cmd == "book":
        from .book import build
        build(args.dir, args.out, args.sweep, auto_sweeps=not args.no_auto_sweep)
        return 0
    if args.cmd == "report":
        from .sweep.report import write_report
        print(f"wrote {write_report(args.dir)} (+ leaderboard.html, results.csv)")
        return 0
    return 2


def _closed_pipe() -> int:
    """The reader of stdout went away (`mednb data list | head`): exit quietly as SIGPIPE would (141)."""
    try:  # point stdout at /dev/null so that the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return 141


if __name__ == "__main__":
    sys.exit(main())
