"""Training memory of a 3D model: predicted before training and measured in a fresh process.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn

from .. import models
from ..runtime import get_device


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


