"""What a hospital sends: the model state split into shared arrays and arrays that stay local.

FedAvg/FedProx share every learned array (all parameters and the batch-norm running statistics).
FedBN (Li et al., "FedBN: Federated learning on non-IID features via local batch normalization",
ICLR 2021) keeps every batch-norm array local — scale, shift, running mean and variance — so a site's
normalisation fits its own scanner. The integer ``num_batches_tracked`` counters are never sent (they
matter only for cumulative BN averaging and are not learned). Bytes are counted on the Flower
``ArrayRecord`` actually put in a message.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from flwr.app import Array, ArrayRecord

BN = nn.modules.batchnorm._BatchNorm
COUNTER = "num_batches_tracked"


def bn_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the batch-norm layers (weight, bias, running stats; no counters)."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, BN):
            out += [f"{name}.{k}" for k in m.state_dict() if k != COUNTER]
    return out


def running_stat_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the BN running statistics (mean, variance and the counter)."""
    return [f"{name}.{k}" for name, m in model.named_modules() if isinstance(m, BN)
            for k in ("running_mean", "running_var", COUNTER) if getattr(m, k, None) is not None]


def shared_keys(model: nn.Module, local_bn: bool) -> list[str]:
    """Keys a client sends: every state entry but counters, and without the BN arrays when ``local_bn``."""
    keep_local = set(bn_keys(model)) if local_bn else set()
    return [k for k in model.state_dict() if not k.endswith(COUNTER) and k not in keep_local]


def to_record(model: nn.Module, keys) -> ArrayRecord:
    """The named state entries of ``model`` as a Flower ``ArrayRecord`` (CPU numpy copies)."""
    state = model.state_dict()
    return ArrayRecord({k: Array(state[k].detach().cpu().numpy()) for k in keys})


def load(model: nn.Module, *records: ArrayRecord | None) -> nn.Module:
    """Copy the arrays of ``records`` (later ones win) into ``model``'s state in place.

    An unknown key or a shape mismatch raises; state entries no record names keep their values.
    """
    state = model.state_dict()
    for rec in records:
        for k, arr in (rec or {}).items():
            if k not in state:
                raise KeyError(f"array {k!r} is not part of the model ({type(model).__name__})")
            value = torch.from_numpy(arr.numpy())
            if value.shape != state[k].shape:
                raise ValueError(f"array {k!r} has shape {tuple(value.shape)}, "
                                 f"the model expects {tuple(state[k].shape)}")
            state[k].copy_(value)
    return model


def nbytes(record: ArrayRecord | None) -> int:
    """Bytes of a record as serialised in a message (array payloads plus key names)."""
    return 0 if record is None else int(record.count_bytes())


def state_of(record: ArrayRecord) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v.numpy()) for k, v in record.items()}
