"""Benchmarks: ``throughput`` (device-resident path vs reference DataLoader path), ``selection`` (which epoch
to keep on a small validation set), ``overhead`` (a papermill sweep unit vs the same training in-process) and
``gpu`` (a one-minute check of the AMP paths, both loaders and same-seed determinism on any GPU).

``mednb bench throughput [--device auto|cpu|cuda] [--model NAME] [--dataset NAME] [--repeats N]``
trains the same model on the same data with ``engine.fit(loader="device")`` (uint8 split on the
device, index-slice batches, batched normalization) and ``engine.fit(loader="reference")`` (a
torch DataLoader with per-sample PIL → ToTensor → Normalize, as the MedMNIST experiments code),
alternating the two for ``--repeats`` rounds after one warm-up each. It prints training images/s
of every round (validation excluded), the medians, device and versions, and as its last line
``ratio device/reference: X.XX`` (median over median). Also ``python -m mednb.bench throughput``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = parser.add_subparsers(dest="bench_cmd", metavar="{throughput,selection,overhead,gpu}")
    sub.required = True
    t = sub.add_parser("throughput", help="training images/s: device path vs reference path",
                       description=__doc__.strip().splitlines()[0])
    t.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    t.add_argument("--model", default="resnet18", help="registry model name (default resnet18)")
    t.add_argument("--dataset", default="phantom2d",
                   help="dataset name (default phantom2d: built in, works offline; e.g. breastmnist, pathmnist)")
    t.add_argument("--size", type=int, default=28, help="image size (default 28)")
    t.add_argument("--n-train", type=int, default=0, metavar="N",
                   help="use the first N training images (0 = all; phantoms are generated with N)")
    t.add_argument("--epochs", type=int, default=1, help="epochs per timed round (default 1)")
    t.add_argument("--batch-size", type=int, default=None, help="default: the paper's (128; 3D: 32)")
    t.add_argument("--repeats", type=int, default=3, help="timed rounds per path (default 3)")
    t.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference path (default 0)")
    t.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                   help="mixed precision (auto: bf16 on GPUs with native bf16, fp16 + gradient scaler on older "
                        "GPUs, off on CPU; on: as auto on CUDA, bf16 on CPU)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model (both paths)")
    t.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("selection", help="which epoch to keep: model-selection rules on the same training runs",
                       description=selection.__doc__.strip().splitlines()[0])
    s.add_argument("--dataset", default="phantom2d", help="dataset name (e.g. breastmnist, adrenalmnist3d)")
    s.add_argument("--model", default="cnn", help="registry model name (default cnn)")
    s.add_argument("--size", type=int, default=28)
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--batch-size", type=int, default=None, help="default: the paper's (128; 3D: 32)")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--device", default="auto")
    o = sub.add_parser("overhead", help="what a papermill unit costs beyond its training",
                       description=overhead.__doc__.strip().splitlines()[0])
    o.add_argument("--profile", default="smoke", help="notebook 01 profile of the unit (default smoke)")
    o.add_argument("--dataset", default="phantom2d", help="the unit's 2D dataset (default phantom2d)")
    o.add_argument("--repeats", type=int, default=3, help="rounds, each one unit and one in-process run")
    g = sub.add_parser("gpu", help="a one-minute check of the GPU paths: AMP modes, loaders, determinism",
                       description=gpu.__doc__.strip().splitlines()[0])
    g.add_argument("--device", default="auto", help="auto (default), cuda, cuda:N or cpu")
    g.add_argument("--n-train", type=int, default=2000, help="phantom2d training images (default 2000)")
    return parser


def _load(args):
    from . import data
    if args.dataset in data.PHANTOMS:
        n = args.n_train or 1000
        return data.load(args.dataset, args.size, counts=(n, 16, 16), seed=args.seed, cache=False)
    splits = data.load(args.dataset, args.size)
    if args.n_train and args.n_train < len(splits.train):
        splits.train = splits.train.subset(range(args.n_train))
    return splits


def throughput(args) -> dict:
    """Run the benchmark; returns ``{"device": [...], "reference": [...], "ratio", "env"}`` (images/s)."""
    from . import engine, models
    from .runtime import env_info, get_device, seed_everything
    device = get_device(args.device)
    splits = _load(args)
    amp = {"on": "auto" if device.type == "cuda" else "bf16"}.get(args.amp, args.amp)
    no_val = lambda model, split: {}  # noqa: E731 — time training only

    def one(loader: str, epochs: int) -> float:
        seed_everything(args.seed)
        model = models.create(args.model, splits.n_channels, splits.n_outputs, dims=splits.dims, size=splits.size)
        recipe = engine.Recipe(epochs=epochs, batch_size=args.batch_size, select="last", amp=amp)
        res = engine.fit(model, splits, recipe, device=device, compile=args.compile, loader=loader,
                         num_workers=args.workers, eval_fn=no_val, seed=args.seed, progress=False)
        if device.type == "cuda":
            import torch
            torch.cuda.synchronize(device)
        return res.images_per_s

    env = env_info(device)
    v = env["versions"]
    print(f"mednb bench throughput | {time.strftime('%Y-%m-%d %H:%M:%S %Z')} | commit {env['commit']}")
    print(f"device: {device} ({env['device_name']}) | torch {v['torch']} | torchvision {v['torchvision']} | "
          f"python {v['python']} | cpu threads {env['cpu_threads']}")
    print(f"model {args.model} | data {splits.name} {splits.size}px {splits.dims}D, {len(splits.train)} train images "
          f"| batch {args.batch_size or ('paper default')} | epochs/round {args.epochs} | repeats {args.repeats} "
          f"| amp {args.amp} | compile {args.compile} | reference workers {args.workers}")
    sys.stdout.flush()
    for loader in ("device", "reference"):  # warm-up (allocator, cudnn autotune, compile)
        one(loader, 1)
    out = {"device": [], "reference": []}
    for r in range(args.repeats):
        for loader in ("device", "reference"):  # alternate so that contention hits both alike
            ips = one(loader, args.epochs)
            out[loader].append(ips)
            print(f"  round {r + 1}: {loader:<9} {ips:10.1f} images/s", flush=True)
    med = {k: statistics.median(vs) for k, vs in out.items()}
    for k in ("device", "reference"):
        vs = out[k]
        sd = statistics.stdev(vs) if len(vs) > 1 else 0.0
        print(f"{k:<9} median {med[k]:10.1f} images/s (mean {statistics.fmean(vs):.1f} ± {sd:.1f}, n={len(vs)})")
    out["ratio"] = med["device"] / med["reference"]
    out["env"] = env
    print(f"ratio device/reference: {out['ratio']:.2f}")
    return out


def selection(args) -> dict:
    """Model selection on a noisy validation set: each rule applied to the same per-seed training runs.

    Every epoch of one training run per seed (the paper's recipe with ``--epochs``) is scored on validation
    and on test; the rules then pick an epoch from the validation columns only: ``val_auc`` (the paper's),
    ``val_auc, skip collapsed`` (epochs whose validation predictions all fall in one class are never kept),
    ``val_auc, ties by val_loss`` (within 0.01 of the best AUC, lowest loss), ``val_loss``, ``last``. Prints
    test AUC/ACC mean ± sd per rule and how many selected models predict a single class on test.
    """
    import numpy as np
    from . import data, engine
    from . import metrics as M
    from .runtime import env_info
    splits = data.load(args.dataset, args.size)
    recipe = engine.PAPER.replace(epochs=args.epochs, batch_size=args.batch_size)

    def scored(model, split):
        val = engine.evaluate(model, split, splits.task, args.device, return_scores=True)
        test = engine.evaluate(model, splits.test, splits.task, args.device, return_scores=True)
        return {"val_auc": val["auc"], "val_acc": val["acc"], "val_loss": val["loss"],
                "val_classes": len(np.unique(val["y_score"].argmax(1))), "test_auc": test["auc"],
                "test_acc": test["acc"], "test_classes": len(np.unique(test["y_score"].argmax(1)))}
    rules = {"val_auc": lambda h: _best(h, "val_auc"),
             "val_auc, skip collapsed": lambda h: _best([r for r in h if r["val_classes"] > 1] or h, "val_auc"),
             "val_auc, ties by val_loss": lambda h: min((r for r in h if r["val_auc"] >= max(x["val_auc"] for x in h)
                                                         - 0.01), key=lambda r: r["val_loss"]),
             "val_loss": lambda h: min(h, key=lambda r: r["val_loss"]), "last": lambda h: h[-1]}
    picked = {k: [] for k in rules}
    for seed in args.seeds:
        res = engine.train(splits, args.model, recipe, seed=seed, device=args.device, eval_fn=scored,
                           evaluate_test=False, desc=f"{args.model} {splits.name} seed {seed}")
        for k, rule in rules.items():
            picked[k].append(rule(res.history))
    env = env_info(args.device)
    print(f"mednb bench selection | {time.strftime('%Y-%m-%d %H:%M:%S %Z')} | commit {env['commit']} | "
          f"{env['device_name']} | torch {env['versions']['torch']}")
    print(f"{args.model} on {splits.name} {splits.size}px | {args.epochs} epochs | seeds {args.seeds} | "
          f"val n={len(splits.val)}, test n={len(splits.test)}")
    for k, rows in picked.items():
        single = sum(r["test_classes"] == 1 for r in rows)
        print(f"  {k:<26} test AUC {M.fmt([r['test_auc'] for r in rows])}  ACC {M.fmt([r['test_acc'] for r in rows])}"
              f"  epochs {[r['epoch'] for r in rows]}  single-class on test: {single}/{len(rows)}")
    return picked


def overhead(args) -> dict:
    """The cost of one sweep unit beyond its training: a papermill execution of notebook 01 with one 2D
    training (``DATASET_3D="none"``, ``COMPARE_MODELS=[]``, one seed) vs the same data loading and
    ``engine.train`` called in this process, alternated ``--repeats`` times after one warm-up of each."""
    import tempfile
    from pathlib import Path
    from . import baseline, engine
    from .execution import execute_quietly
    from .runner import default_notebooks_dir
    from .runtime import env_info
    knobs = {**baseline.PROFILES[args.profile], "DATASET": args.dataset, "DATASET_3D": "none",
             "COMPARE_MODELS": [], "SEEDS": [0]}
    nb = default_notebooks_dir() / "01_baseline_medmnist.ipynb"
    params = {"PROFILE": args.profile, "DATASET": args.dataset, "DATASET_3D": "none", "COMPARE_MODELS": [],
              "SEEDS": [0]}

    def unit() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            st = execute_quietly(nb, Path(tmp), params, None, None)
            if st["status"] != "ok":
                raise RuntimeError(f"the unit failed: {st.get('error')}")
            return time.perf_counter() - t0

    def in_process() -> float:
        t0 = time.perf_counter()
        splits = baseline.load(args.dataset, knobs["SIZE"], knobs["N_TRAIN"])
        engine.train(splits, knobs["MODEL"], engine.Recipe.from_knobs(knobs, engine.PAPER), seed=0, progress=False)
        return time.perf_counter() - t0
    unit(), in_process()  # warm-up: caches, imports
    runs = {"unit": [], "in-process": []}
    for _ in range(args.repeats):
        runs["unit"].append(unit())
        runs["in-process"].append(in_process())
    env = env_info("auto")
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"mednb bench overhead | {time.strftime('%Y-%m-%d %H:%M:%S %Z')} | commit {env['commit']} | "
          f"{env['device_name']} | torch {env['versions']['torch']}")
    print(f"notebook 01 unit, profile {args.profile}, {args.dataset}, {knobs['MODEL']}, {knobs['EPOCHS']} epochs, "
          f"n={args.repeats}")
    for k, v in runs.items():
        print(f"  {k:<10} median {med[k]:6.1f} s  ({', '.join(f'{x:.1f}' for x in v)})")
    print(f"overhead per unit: {med['unit'] - med['in-process']:.1f} s")
    return runs


def gpu(args) -> list[dict]:
    """GPU smoke check: one epoch of the ``cnn`` on phantom2d for each mixed-precision path the device has
    (off; bf16 where native, compute capability ≥ 8.0; fp16 with a gradient scaler), on the device-resident
    and the reference DataLoader path, each twice with the same seed (determinism), and the 3D ``cnn`` once
    with ``amp="auto"``. Prints one line per run and the figures for BENCHMARKS.md; exits non-zero on a NaN
    loss. Under a minute on any GPU."""
    import math
    import torch
    from . import data, engine, models
    from .runtime import env_info, get_device, seed_everything
    device = get_device(args.device)
    sp2 = data.load("phantom2d", 28, counts=(args.n_train, 64, 64), cache=False)
    sp3 = data.load("phantom3d", 28, counts=(max(args.n_train // 10, 16), 16, 16), cache=False)
    modes = ["off", "fp16"] + (["bf16"] if device.type != "cuda" or torch.cuda.is_bf16_supported() else [])
    env = env_info(device)
    cap = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    print(f"mednb bench gpu | {time.strftime('%Y-%m-%d %H:%M:%S %Z')} | commit {env['commit']} | "
          f"{env['device_name']} (capability {cap}) | torch {env['versions']['torch']} | CUDA {env['cuda']} | "
          f"amp auto → {engine.amp_dtype('auto', device)}")
    rows = []
    for sp, amp, loader in [*((sp2, m, ld) for m in modes for ld in ("device", "reference")), (sp3, "auto", "device")]:
        runs = []
        for _ in range(2 if sp is sp2 else 1):
            seed_everything(0)
            model = models.create("cnn", sp.n_channels, sp.n_outputs, dims=sp.dims)
            res = engine.fit(model, sp, engine.Recipe(epochs=1, amp=amp), device=device, loader=loader,
                             seed=0, progress=False)
            runs.append(res)
        same = len(runs) == 1 or all(torch.equal(a, b) for a, b in zip(runs[0].model.state_dict().values(),
                                                                      runs[1].model.state_dict().values()))
        r = runs[0].history[0]
        row = dict(data=f"{sp.name} {sp.dims}D", amp=amp, loader=loader, train_loss=r["train_loss"],
                   val_auc=r["val_auc"], images_per_s=runs[0].images_per_s, deterministic=same)
        rows.append(row)
        print(f"  {row['data']:<14} amp {amp:<4} {loader:<9} loss {row['train_loss']:.4f}  val AUC "
              f"{row['val_auc']:.3f}  {row['images_per_s']:8.0f} img/s  same-seed identical: {same}")
    bad = [r for r in rows if not math.isfinite(r["train_loss"])]
    if bad:
        where = ", ".join(f"{r['amp']}/{r['loader']}" for r in bad)
        raise RuntimeError(f"NaN/inf training loss on: {where}")
    return rows


def _best(history, key):
    return max(history, key=lambda r: r[key])  # the first epoch with the highest value, as fit keeps it


def run(args) -> int:
    cmd = getattr(args, "bench_cmd", None)
    benches = {"throughput": throughput, "selection": selection, "overhead": overhead, "gpu": gpu}
    if cmd in benches:
        benches[cmd](args)
        return 0
    raise ValueError(f"unknown benchmark {cmd!r}; valid: {', '.join(benches)}")


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m mednb.bench", description=__doc__.splitlines()[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
