"""3D-specific helpers for notebook 08: projections, memory estimates and the 2.5D / 3D / ACS study.

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
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn

from . import claims, knobs, models
from .engine.recipe import VAL_LABELS, Recipe
from .runtime import get_device

CONVS = ("2.5d", "3d", "acs")
#: the 3D classifiers' default recipe: Adam 1e-3, a budget of 360 optimizer steps (about 10 epochs of
#: AdrenalMNIST3D's 1,188 training volumes), batch 32, multistep LR, best validation AUC over 10 checks
RECIPE = Recipe(steps=360, batch_size=32)
#: the three comparisons of notebook 08 (the ``comparison`` tag of their records)
COMPARISONS = ("convs", "genesis", "augment")
AXES = {"axial": 0, "coronal": 1, "sagittal": 2}

PROFILES = {
    "smoke": dict(DATASETS=["phantom3d"], SIZES=[28], CONVS=["2.5d", "3d", "acs"], BACKBONE="cnn", WIDTH=8,
                  STEPS=96, BATCH_SIZE=8, LR=2e-3, SEEDS=[0], PHANTOM_COUNTS=[128, 48, 64], PHANTOM_CLASSES=2,
                  LABEL_FRACTIONS=[0.5, 1.0], GENESIS_EPOCHS=1, AUGMENT="flip", FORCE_PRETRAIN=False,
                  MEASURE_MEMORY=False, DEVICE="auto", AUC_TOLERANCE=0.01, VAL_LABELS="full"),
    "student": dict(DATASETS=["adrenalmnist3d"], SIZES=[28], CONVS=["2.5d", "3d", "acs"], BACKBONE="cnn",
                    WIDTH=16, STEPS=360, BATCH_SIZE=32, LR=1e-3, SEEDS=[0, 1], PHANTOM_COUNTS=[400, 100, 200],
                    PHANTOM_CLASSES=4, LABEL_FRACTIONS=[0.1], GENESIS_EPOCHS=5, AUGMENT="basic",
                    FORCE_PRETRAIN=False, MEASURE_MEMORY=True, DEVICE="auto", AUC_TOLERANCE=0.01,
                    VAL_LABELS="full"),
    "full": dict(DATASETS=["organmnist3d", "nodulemnist3d", "adrenalmnist3d", "fracturemnist3d", "vesselmnist3d",
                           "synapsemnist3d"], SIZES=[28, 64], CONVS=["2.5d", "3d", "acs"], BACKBONE="resnet18",
                 WIDTH=64, STEPS=3800, BATCH_SIZE=32, LR=1e-3, SEEDS=[0, 1, 2], PHANTOM_COUNTS=[400, 100, 200],
                 PHANTOM_CLASSES=4, LABEL_FRACTIONS=[0.1, 1.0], GENESIS_EPOCHS=100, AUGMENT="basic",
                 FORCE_PRETRAIN=False, MEASURE_MEMORY=True, DEVICE="auto", AUC_TOLERANCE=0.0,
                 VAL_LABELS="full"),
}
# knobs valid only for a dataset or a registry (checked by mednb.params before anything runs)
CHECKS = {"DATASETS": knobs.dataset(3), "SIZES": knobs.size("DATASETS"), "CONVS": knobs.conv(),
          "BACKBONE": knobs.backbone("CONVS"), "AUGMENT": knobs.policy(), "PHANTOM_CLASSES": knobs.phantom_classes(),
          "STEPS": lambda name, value, values: _check_steps(name, value),
          "VAL_LABELS": knobs.registry(lambda: list(VAL_LABELS), "validation-label rule")}


def _check_steps(name, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1 (optimizer steps of every arm), got {value!r}")


def recipe_from(knobs_) -> Recipe:
    """The one recipe of every 3D model of notebook 08: :data:`RECIPE` with the notebook's knobs (STEPS, BATCH_SIZE,
    LR, AUC_TOLERANCE, VAL_LABELS). Every arm of the three comparisons trains it, so all share one budget."""
    r = Recipe.from_knobs(knobs_, RECIPE)
    if r.steps is None:
        raise ValueError("notebook 08 trains a budget in optimizer steps: set STEPS")
    return r


def mip(volume, axis: str | int = "axial") -> torch.Tensor:
    """Maximum-intensity projection. volume: (C,D,H,W) or (D,H,W); axis: axial/coronal/sagittal or 0–2.

    Returns (C,H,W)-like (or 2D) projections of the same dtype.
    """
    v = torch.as_tensor(volume)
    if isinstance(axis, str):
        if axis not in AXES:
            raise ValueError(f"unknown axis {axis!r}; valid: {', '.join(AXES)}")
        axis = AXES[axis]
    if v.ndim not in (3, 4):
        raise ValueError(f"volume must be (C,D,H,W) or (D,H,W), got shape {tuple(v.shape)}")
    return v.amax(dim=axis + (v.ndim - 3))


def plot_mip(volume, mask=None, title: str | None = None):
    """The three MIPs of a volume side by side (mask MIPs as red contours)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.7))
    for ax, name in zip(axes, AXES):
        p = mip(volume, name)
        ax.imshow((p[0] if p.ndim == 3 else p).float(), cmap="gray")
        if mask is not None:
            m = mip(mask, name)
            m = m[0] if m.ndim == 3 else m
            if m.any():
                ax.contour(m.float(), levels=[0.5], colors="r", linewidths=0.7)
        ax.set_title(f"MIP {name}", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def conv_model(conv: str, in_channels: int, num_classes: int, size: int = 28, backbone: str = "cnn",
               width: int | None = None) -> nn.Module:
    """``backbone`` (``cnn``, ``resnet18``, ``resnet50``) as a 2.5D, 3D or ACS volume classifier."""
    if conv not in CONVS:
        raise ValueError(f"unknown conv {conv!r}; valid: {', '.join(CONVS)}")
    kw = models.width_kw(backbone, width)
    return models.create(f"{backbone}_{conv}", in_channels, num_classes, dims=3, size=size, **kw)


# ----------------------------------------------------------------------------- memory
_ADAM_STATES = {"adam": 2, "adamw": 2, "sgd": 1, "none": 0}


def estimate_memory(model: nn.Module, input_shape, batch_size: int, optimizer: str = "adam",
                    training: bool = True, bytes_per_value: int = 4) -> dict:
    """Predict training memory in bytes before training. input_shape: (C,D,H,W) or (C,H,W).

    parameters + gradients + optimizer state (Adam: 2 per parameter) + activations: the outputs of
    every leaf module for ``batch_size`` samples (what autograd keeps for backward), measured with
    hooks on a meta-device copy. Returns a dict of components and ``total``.
    """
    if optimizer not in _ADAM_STATES:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: {', '.join(_ADAM_STATES)}")
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    import copy
    meta = copy.deepcopy(model).to("meta")
    acts = [0]

    def hook(mod, inp, out):
        if isinstance(out, torch.Tensor):  # ACS also keeps its three per-plane outputs before concatenating
            acts[0] += out.numel() * (2 if isinstance(mod, models.ACSConv) else 1)

    handles = [m.register_forward_hook(hook) for m in meta.modules()
               if not list(m.children()) or isinstance(m, models.ACSConv)]
    with torch.no_grad():
        meta.train(training)
        meta(torch.empty((1, *input_shape), device="meta"))
    for h in handles:
        h.remove()
    b = bytes_per_value
    out = {"parameters": n_params * b,
           "gradients": n_train * b if training else 0,
           "optimizer": n_train * b * _ADAM_STATES[optimizer] if training else 0,
           "activations": acts[0] * batch_size * b * (1 if training else 0) or 0,
           "input": int(np.prod(input_shape)) * batch_size * b}
    if not training:  # inference keeps only the largest live activations; count one layer's worth
        out["activations"] = 0
    out["total"] = sum(out.values())
    return out


_MEASURE_SNIPPET = r"""
import json, resource, sys, torch
from mednb import models
a = json.loads(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(1)
m = models.create(a["name"], a["in_channels"], a["num_classes"], dims=a["dims"], size=a["size"], **a["kw"])
opt = torch.optim.Adam(m.parameters(), 1e-3)
x = torch.randn(a["batch_size"], *a["input_shape"])
y = torch.zeros(a["batch_size"], dtype=torch.long)
small = torch.randn(1, *a["input_shape"])
loss = m(small).sum(); loss.backward(); opt.step(); opt.zero_grad()   # warm up allocator, create optimizer state
del loss
def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
try:   # reset the kernel's peak-RSS mark (Linux >= 4.0) so earlier peaks (imports) do not hide this step
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base, how = status("VmRSS:"), "hwm"
except OSError:
    base, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "maxrss"
loss = torch.nn.functional.cross_entropy(m(x), y); loss.backward(); opt.step()
peak = status("VmHWM:") if how == "hwm" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"delta_bytes": max(peak - base, 0), "base_bytes": base, "how": how}))
"""


def measure_peak_memory(name: str, input_shape, batch_size: int, num_classes: int = 2, device="auto",
                        **model_kw) -> dict:
    """Measured peak memory of one Adam training step of registry model ``name`` (bytes).

    CUDA: ``torch.cuda.max_memory_allocated`` in-process (model + optimizer + step). CPU: a fresh
    subprocess; the increase of its peak RSS during one step of ``batch_size`` samples (after a
    1-sample warm-up step that creates parameters, gradients and optimizer state) — i.e. the step's
    activations and workspace. Returns ``{"peak_bytes", "method"}``.
    """
    device = get_device(device)
    dims = len(input_shape) - 1
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        m = models.create(name, input_shape[0], num_classes, dims=dims, size=input_shape[-1], **model_kw).to(device)
        opt = torch.optim.Adam(m.parameters(), 1e-3)
        x = torch.randn(batch_size, *input_shape, device=device)
        y = torch.zeros(batch_size, dtype=torch.long, device=device)
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
        peak = torch.cuda.max_memory_allocated(device) - before
        del m, opt, x
        return {"peak_bytes": int(peak), "method": "cuda.max_memory_allocated (model+grads+Adam+activations)"}
    args = dict(name=name, in_channels=input_shape[0], num_classes=num_classes, dims=dims,
                size=input_shape[-1], kw=model_kw, batch_size=batch_size, input_shape=list(input_shape))
    out = subprocess.run([sys.executable, "-c", _MEASURE_SNIPPET, json.dumps(args)], capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {out.stderr.strip().splitlines()[-1:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {"peak_bytes": int(res["delta_bytes"]), "method": "CPU peak-RSS growth over one step (activations)"}


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


# ----------------------------------------------------------------------------- experiments
def load_volumes(name: str, size: int, phantom_counts=None, seed: int = 0, phantom_classes: int | None = None):
    """``data.load`` for a 3D set; phantoms get ``counts=phantom_counts`` and ``n_classes=phantom_classes``
    (2–4, the first classes of :data:`mednb.phantoms.CLASSES`; None: all 4). Both are ignored for MedMNIST."""
    from . import data
    if data.dims_of(name) != 3:
        raise ValueError(f"{name} is not a 3D dataset; 3D sets: "
                         f"{', '.join(n for n in data.names() if data.dims_of(n) == 3)}")
    kw = {}
    if name in data.PHANTOMS:
        kw = {"counts": phantom_counts, "seed": seed}
        if phantom_classes is not None:
            kw["n_classes"] = int(phantom_classes)
    return data.load(name, size, **kw)


def _warn_collapse(test: dict, splits, what: str) -> None:
    """Print a warning when a kept model predicts a single class on the test set (see metrics.collapse_warning)."""
    from .metrics import collapse_warning
    warning = collapse_warning(test, splits.labels)
    if warning:
        print(f"WARNING {what}: {warning}")


def compare_convs(datasets, sizes, convs, seeds, recipe: Recipe = RECIPE, *, backbone="cnn", width=None,
                  phantom_counts=None, phantom_classes=None, measure_memory=True, device="auto", progress=True):
    """Train every (dataset, size, conv, seed) with ``recipe``; one tidy row per run (phantoms:
    ``phantom_counts`` and ``phantom_classes`` as in :func:`load_volumes`).

    Columns: dataset, size, conv, seed, steps (optimizer steps trained), test_auc, test_acc, params,
    sec_per_epoch (training time of one pass over the training set), est_memory (bytes, :func:`estimate_memory`),
    peak_memory (bytes, :func:`measure_peak_memory`, or NaN when ``measure_memory`` is False).
    ``attrs["histories"]``: ``{(dataset, size, conv, seed): validation history}``.
    """
    import pandas as pd
    from tqdm.auto import tqdm
    from . import engine
    for c in convs:
        if c not in CONVS:
            raise ValueError(f"unknown conv {c!r}; valid: {', '.join(CONVS)}")
    rows, data_keys, histories = [], {}, {}
    kw = models.width_kw(backbone, width)
    jobs = [(d, s, c, sd) for d in datasets for s in sizes for c in convs for sd in seeds]
    bar = tqdm(jobs, desc="2.5D / 3D / ACS", disable=not progress)
    cache, mem = {}, {}
    for d, s, c, sd in bar:
        bar.set_postfix(dataset=d, size=s, conv=c, seed=sd)
        if (d, s) not in cache:
            sp = load_volumes(d, s, phantom_counts, phantom_classes=phantom_classes)
            cache = {(d, s): sp}
            data_keys[(sp.name, sp.size)] = _data_key(sp)
        sp = cache[(d, s)]
        res = engine.train(sp, f"{backbone}_{c}", recipe, seed=sd, model_kw=kw, device=device, progress=False)
        shape = tuple(sp.train.x.shape[1:])
        if (d, s, c) not in mem:
            bs = recipe.batch_for(3)
            est = estimate_memory(res.model.cpu(), shape, bs)["total"]
            peak = (measure_peak_memory(f"{backbone}_{c}", shape, bs, sp.n_outputs, device, **kw)["peak_bytes"]
                    if measure_memory else float("nan"))
            mem[(d, s, c)] = (est, peak)
        _warn_collapse(res.test, sp, f"{backbone}_{c} on {d} {s}³, seed {sd}")
        histories[(d, s, c, sd)] = res.history
        rows.append(dict(dataset=d, size=s, conv=c, seed=sd, steps=res.steps, test_auc=res.test["auc"],
                         test_acc=res.test["acc"],
                         params=models.count_parameters(res.model),
                         sec_per_epoch=res.n_train / max(res.images_per_s, 1e-9),
                         est_memory=mem[(d, s, c)][0], peak_memory=mem[(d, s, c)][1]))
    out = pd.DataFrame(rows)
    # what a later study needs to reuse these runs: the training setup, and the split sizes and classes of
    # the data
    out.attrs.update(setup=(recipe, backbone, width, str(device)), data=data_keys, histories=histories)
    return out


def _data_key(splits) -> tuple[int, int, int, int]:
    """What tells same-named data apart: the sizes of train/val/test and the number of classes."""
    return len(splits.train.y), len(splits.val.y), len(splits.test.y), int(splits.n_outputs)


def _reused(runs, splits, recipe, backbone, width, device, conv, seed):
    """The (test_auc, test_acc, steps, history) of the same training in ``runs`` (a :func:`compare_convs` table
    trained with the same recipe — so the same budget of steps —, backbone, width and device on data of the same
    splits and classes: seeded alike, so the numbers are the ones a rerun would give), or None."""
    if (runs is None or runs.attrs.get("setup") != (recipe, backbone, width, str(device))
            or runs.attrs.get("data", {}).get((splits.name, splits.size)) != _data_key(splits)):
        return None
    hit = runs[(runs.dataset == splits.name) & (runs["size"] == splits.size) & (runs.conv == conv)
               & (runs.seed == seed)]
    if not len(hit) or (recipe.steps is not None and int(hit.steps.iloc[0]) != int(recipe.steps)):
        return None
    history = runs.attrs.get("histories", {}).get((splits.name, splits.size, conv, seed))
    return float(hit.test_auc.iloc[0]), float(hit.test_acc.iloc[0]), int(hit.steps.iloc[0]), history


def with_paper(df, backbone_rows=("ResNet-18", "ResNet-50")):
    """Summarize :func:`compare_convs` rows (mean ± sd over seeds) beside MedMNIST v2's 3D rows."""
    import pandas as pd
    from . import metrics, references
    out = []
    for (d, s, c), g in df.groupby(["dataset", "size", "conv"], sort=False):
        row = {"dataset": d, "size": s, "conv": c, "ours AUC": metrics.fmt(g["test_auc"]),
               "ours ACC": metrics.fmt(g["test_acc"]), "params": int(g["params"].iloc[0]),
               "s/epoch": f"{g['sec_per_epoch'].mean():.1f}"}
        for b in backbone_rows:
            ref = references.lookup(d, f"{b}+{c.upper() if c != '2.5d' else '2.5D'}") if references.has(d) else None
            row[f"paper {b} AUC/ACC"] = f"{ref['auc']:.3f} / {ref['acc']:.3f}" if ref else "–"
        out.append(row)
    return pd.DataFrame(out)


def genesis_vs_scratch(splits, recipe: Recipe = RECIPE, *, conv="3d", fractions=(0.1, 1.0), seeds=(0,),
                       backbone="cnn", width=None, genesis_epochs=10, force_pretrain=False, device="auto",
                       progress=True, reuse=None):
    """Models Genesis 3D pre-training (``mednb.ssl``, on the unlabeled training volumes, with the recipe's
    batch size and LR) → fine-tune with ``recipe``, vs training from scratch, at each label fraction and
    seed. Every arm trains the recipe's budget of ``steps`` whatever its number of labels. ``reuse``: a
    :func:`compare_convs` table whose same-seed, same-recipe ``conv`` runs stand in for scratch at 100 % labels
    (the identical training, not repeated). Returns (rows DataFrame, pretrain result); the rows' ``attrs
    ["histories"]`` hold ``{(init, label_fraction, seed): validation history}`` (:func:`mednb.plot.convergence`)."""
    import pandas as pd
    from tqdm.auto import tqdm
    from . import engine, ssl
    from .runtime import seed_everything
    kw = models.width_kw(backbone, width)
    name = f"{backbone}_{conv}"
    seed_everything(seeds[0])
    base = models.create(name, splits.n_channels, splits.n_outputs, dims=3, size=splits.size, **kw)
    pre = ssl.pretrain("genesis", base, splits.train.x, epochs=genesis_epochs, batch_size=recipe.batch_for(3),
                       lr=recipe.lr,
                       device=device, seed=seeds[0], force=force_pretrain, progress=progress,
                       dataset=f"{splits.name}_{splits.size}")
    state = {k: v.detach().cpu().clone() for k, v in pre.model.features.state_dict().items()}
    rows, histories = [], {}
    for init, f, sd in tqdm([(i, f, s) for i in ("scratch", "genesis") for f in fractions for s in seeds],
                            desc="Genesis vs scratch", disable=not progress):
        scratch_all = (init, f) == ("scratch", 1.0)
        done = _reused(reuse, splits, recipe, backbone, width, device, conv, sd) if scratch_all else None
        if done:
            histories[(init, f, sd)] = done[3]
            rows.append(dict(init=init, label_fraction=f, seed=sd, steps=done[2], test_auc=done[0], test_acc=done[1],
                             n_labels=len(splits.train.y)))
            continue
        seed_everything(sd)
        m = models.create(name, splits.n_channels, splits.n_outputs, dims=3, size=splits.size, **kw)
        if init == "genesis":
            m.features.load_state_dict(state)
        res = engine.fit(m, splits, recipe, label_fraction=f, seed=sd, device=device, progress=False)
        test = engine.evaluate(res.model, splits.test, splits.task, device)
        _warn_collapse(test, splits, f"{init} at {f:.0%} labels, seed {sd}")
        histories[(init, f, sd)] = res.history
        rows.append(dict(init=init, label_fraction=f, seed=sd, steps=res.steps, test_auc=test["auc"],
                         test_acc=test["acc"], n_labels=res.n_train))
    out = pd.DataFrame(rows)
    out.attrs["histories"] = histories
    return out, pre


def augment_on_off(splits, recipe: Recipe = RECIPE, *, policy="flip", conv="3d", seeds=(0,), backbone="cnn",
                   width=None, device="auto", progress=True, reuse=None):
    """The same 3D model trained with ``recipe``, with and without ``mednb.augment`` policy ``policy``;
    one row per run (both arms train the recipe's budget of steps). ``reuse``: a :func:`compare_convs` table
    whose same-seed, same-recipe runs stand in for the runs without augmentation."""
    import pandas as pd
    from tqdm.auto import tqdm
    from . import augment, engine
    kw = models.width_kw(backbone, width)
    rows = []
    for aug, sd in tqdm([(a, s) for a in ("none", policy) for s in seeds], desc="3D augmentation",
                        disable=not progress):
        done = _reused(reuse, splits, recipe, backbone, width, device, conv, sd) if aug == "none" else None
        if done:
            rows.append(dict(augment=aug, seed=sd, steps=done[2], test_auc=done[0], test_acc=done[1]))
            continue
        res = engine.train(splits, f"{backbone}_{conv}", recipe, seed=sd, model_kw=kw, device=device,
                           augment=None if aug == "none" else augment.get(aug, dims=3), progress=False)
        _warn_collapse(res.test, splits, f"augment {aug}, seed {sd}")
        rows.append(dict(augment=aug, seed=sd, steps=res.steps, test_auc=res.test["auc"], test_acc=res.test["acc"]))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- convergence, verdicts, records
def convergence(genesis_runs, fraction: float | None = None) -> dict:
    """``{label: [history per seed]}`` of scratch and Genesis at ``fraction`` (default: the lowest label fraction
    run), for :func:`mednb.plot.convergence`: validation AUC against optimizer steps."""
    hist = genesis_runs.attrs.get("histories", {})
    f = min(genesis_runs.label_fraction) if fraction is None else fraction
    return {f"{init} at {f:.0%} labels": [h for (i, lf, _), h in sorted(hist.items(), key=lambda kv: kv[0][2])
                                          if i == init and lf == f and h]
            for init in ("scratch", "genesis")}


def _by_seed(df, metric: str = "test_auc") -> dict:
    return {int(r.seed): float(getattr(r, metric)) for r in df.itertuples()}


def _budget(*tables) -> int:
    """The one budget in steps of the rows of ``tables``; an error when two arms trained different budgets."""
    steps = sorted({int(x) for t in tables for x in t["steps"]})
    if len(steps) != 1:
        raise ValueError(f"the arms of one comparison must train one budget of steps, got {steps}")
    return steps[0]


def verdicts(runs, genesis_runs, aug_runs, policy: str) -> list[dict]:
    """The notebook's claims, each a paired difference over seeds (:func:`mednb.claims.paired`): per (dataset,
    size), 3D − 2.5D and ACS − 2.5D; Genesis − scratch at each label fraction; ``policy`` − no augmentation.
    One dict per claim: comparison, dataset, text, paired, steps, citation."""
    out = []
    for (d, s), g in runs.groupby(["dataset", "size"], sort=False):
        by = {c: _by_seed(gc) for c, gc in g.groupby("conv")}
        for c in ("3d", "acs"):
            if c in by and "2.5d" in by:
                out.append(dict(comparison="convs", dataset=d, text=f"{c.upper()} beats 2.5D convolutions ({s}³)",
                                paired=claims.paired(by[c], by["2.5d"]), steps=_budget(g),
                                citation="Yang et al., Sci. Data 2023 (MedMNIST v2); "
                                         "Yang et al., IEEE JBHI 2021 (ACS)"))
    d = runs.dataset.iloc[0] if len(runs) else None
    for f, g in genesis_runs.groupby("label_fraction"):
        sc, ge = g[g.init == "scratch"], g[g.init == "genesis"]
        if len(sc) and len(ge):
            out.append(dict(comparison="genesis", dataset=d,
                            text=f"Models Genesis pre-training beats scratch at {f:.0%} labels",
                            paired=claims.paired(_by_seed(ge), _by_seed(sc)), steps=_budget(genesis_runs),
                            citation="Zhou et al., MICCAI 2019 / MedIA 2021 (Models Genesis)"))
    on, off = aug_runs[aug_runs.augment == policy], aug_runs[aug_runs.augment == "none"]
    if len(on) and len(off):
        out.append(dict(comparison="augment", dataset=d, text=f"3D augmentation {policy!r} beats none",
                        paired=claims.paired(_by_seed(on), _by_seed(off)), steps=_budget(aug_runs),
                        citation="Shorten & Khoshgoftaar, J. Big Data 2019"))
    return out


def record_claims(found: list[dict]) -> list[dict]:
    """Record each of :func:`verdicts`' claims with :func:`mednb.claims.claim` (shown as one line each)."""
    return [claims.claim(v["text"], v["paired"], comparison=v["comparison"], steps=v["steps"], dataset=v["dataset"],
                         citation=v["citation"]) for v in found]


def results(runs, genesis_runs, aug_runs, dataset: str, size: int, backbone: str) -> list[tuple[str, float, dict]]:
    """``(metric, value, tags)`` of every run of the three comparisons, each tagged ``comparison`` and ``steps`` (its
    budget) besides conv, size, dataset and seed: what the notebook passes to :func:`mednb.record`."""
    out = []
    for r in runs.to_dict("records"):
        tags = dict(comparison="convs", steps=int(r["steps"]), conv=r["conv"], size=r["size"], dataset=r["dataset"],
                    seed=r["seed"])
        out += [(m, r[m], {**tags, "model": backbone}) for m in ("test_auc", "test_acc")]
        out.append(("sec_per_epoch", r["sec_per_epoch"], tags))
    for r in genesis_runs.to_dict("records"):
        out.append(("test_auc", r["test_auc"], dict(comparison="genesis", steps=int(r["steps"]), conv="3d", size=size,
                                                    dataset=dataset, seed=r["seed"], init=r["init"],
                                                    label_fraction=r["label_fraction"])))
    for r in aug_runs.to_dict("records"):
        out.append(("test_auc", r["test_auc"], dict(comparison="augment", steps=int(r["steps"]), conv="3d", size=size,
                                                    dataset=dataset, seed=r["seed"], augment=r["augment"])))
    return out


def record_results(runs, genesis_runs, aug_runs, dataset: str, size: int, backbone: str) -> int:
    """:func:`mednb.record` every entry of :func:`results`; returns the number of records."""
    from .recording import record
    found = results(runs, genesis_runs, aug_runs, dataset, size, backbone)
    for name, value, tags in found:
        record(name, value, **tags)
    return len(found)
