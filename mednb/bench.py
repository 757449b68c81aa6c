"""Benchmarks: training throughput of the device-resident path vs the reference DataLoader path.

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
    sub = parser.add_subparsers(dest="bench_cmd", metavar="{throughput}")
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


def run(args) -> int:
    if getattr(args, "bench_cmd", None) == "throughput":
        throughput(args)
        return 0
    raise ValueError(f"unknown benchmark {getattr(args, 'bench_cmd', None)!r}; valid: throughput")


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m mednb.bench", description=__doc__.splitlines()[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
