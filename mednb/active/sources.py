"""Pre-trained encoders for the loop: where the first model's features come from.

AIFT (Zhou et al., CVPR 2017) starts from a pre-trained CNN. :func:`pretrained` returns encoder
weights from one of :data:`PRETRAIN_SOURCES`; :func:`load_encoder` copies the ``features.*`` part of
such weights into a fresh model (the head is left untouched).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .. import engine
from ..data import Splits
from ..runtime import checkpoint_dir

PRETRAIN_SOURCES = ("none", "auto", "ssl", "indomain", "site")


def load_encoder(model: nn.Module, init) -> nn.Module:
    """Copy pre-trained ``features.*`` weights into ``model`` (head untouched).

    init: None (nothing), a state dict, an ``nn.Module`` with ``features``, or a checkpoint path
    written by :func:`mednb.engine.save_checkpoint`."""
    if init is None:
        return model
    if isinstance(init, (str, Path)):
        init = torch.load(init, map_location="cpu", weights_only=True)["state_dict"]
    if isinstance(init, nn.Module):
        init = init.state_dict()
    feats = {k: v for k, v in init.items() if k.startswith("features.")}
    if not feats:
        raise ValueError("init has no 'features.*' weights to load")
    try:
        missing, unexpected = model.load_state_dict(feats, strict=False)
    except RuntimeError as e:  # shape mismatch (another width/depth or channel count)
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e))
        raise ValueError(f"encoder does not match the model (pre-trained with another model, width or number "
                         f"of channels?): {detail}") from e
    bad = [k for k in missing if k.startswith("features.")]
    if bad or unexpected:
        raise ValueError(f"encoder does not match the model: missing {bad[:3]}, unexpected {unexpected[:3]}")
    return model


def pretrained(splits: Splits, source: str = "auto", *, model: str = "cnn", epochs: int = 10,
               batch_size: int = 64, lr: float = 1e-3, device="auto", seed: int = 0,
               progress: bool = False, pool=None) -> tuple[dict | None, str]:
    """A pre-trained encoder for ``splits`` → ``(state_dict or None, description)``.

    source: ``"ssl"`` — self-supervised rotation pretext (:mod:`mednb.ssl`, notebook 04) on the pool
    images only (no labels), cached in ``checkpoint_dir("ssl")``; ``"indomain"`` — notebook 03's
    supervised in-domain checkpoint (``transfer.indomain_for``: newest fitting one trained on another
    domain, never on the target's own labels; :class:`mednb.transfer.SourceUnavailable` if none);
    ``"site"`` — phantoms only: in-domain supervised weights from another scanner site (site 1), cached
    in ``checkpoint_dir("active")``; ``"auto"`` — ssl; ``"none"``.
    epochs, batch_size, lr: the ssl pretext training (Adam + cosine, :func:`mednb.ssl.pretrain`) or
    the site model's supervised training (:func:`mednb.engine.fit` with a :class:`~mednb.engine.Recipe`
    of these values).
    """
    from .. import models
    if source not in PRETRAIN_SOURCES:
        raise ValueError(f"unknown pretrain source {source!r}; valid: {', '.join(PRETRAIN_SOURCES)}")
    if source == "none":
        return None, "none (from scratch)"
    net = models.create(model, splits.n_channels, splits.n_outputs, dims=splits.dims, size=splits.size)
    if source == "indomain":
        return _indomain(net, splits)
    if source in ("ssl", "auto"):
        x = splits.train.x if pool is None else splits.train.x[torch.as_tensor(np.asarray(pool))]
        return _ssl(net, splits.name, x, epochs, batch_size, lr, device, seed, progress)
    return _site(net, splits, model, engine.Recipe(epochs=epochs, lr=lr, batch_size=batch_size), device, seed,
                 progress)


def _indomain(net: nn.Module, splits: Splits) -> tuple[dict, str]:
    from .. import transfer
    path = transfer.indomain_for(net, transfer.domain_spec(splits.name, (splits.meta or {}).get("site", 0)))
    transfer.load_body(net, path)
    info = transfer.checkpoint_info(path).get("recipe", {})
    return net.state_dict(), (f"in-domain supervised (notebook 03): {info.get('model')} trained with labels on "
                              f"{info.get('source')} ({info.get('epochs')} epochs), {path.name}")


def _ssl(net: nn.Module, dataset: str, x: torch.Tensor, epochs: int, batch_size: int, lr: float, device, seed: int,
         progress: bool) -> tuple[dict, str]:
    from .. import ssl
    res = ssl.pretrain("rotation", net, x, epochs=epochs, batch_size=batch_size, lr=lr, device=device,
                       seed=seed, cache=True, progress=progress, dataset=dataset)
    return res.model.state_dict(), f"ssl rotation ({epochs} epochs on {len(x)} unlabelled pool images)"


def _site(net: nn.Module, splits: Splits, model: str, recipe: engine.Recipe, device, seed: int,
          progress: bool) -> tuple[dict, str]:
    if not splits.name.startswith("phantom"):
        raise ValueError("source='site' needs a phantom dataset (another scanner site of the same phantom)")
    from .. import data
    path = (checkpoint_dir("active") /
            f"{splits.name}_site1_{model}_s{splits.size}_e{recipe.epochs}_seed{seed}.pt")
    if path.exists():
        engine.load_checkpoint(net, path)
    else:
        other = data.load(splits.name, splits.size, site=1, seed=seed + 101,
                          counts=(min(len(splits.train), 600), min(len(splits.val), 150), 10))
        engine.seed_everything(seed)
        engine.fit(net, other, recipe, device=device, seed=seed, progress=progress,
                   desc="in-domain encoder (site 1)")
        engine.save_checkpoint(net, path, {"source": "site1", "epochs": recipe.epochs})
    return net.state_dict(), f"in-domain supervised, phantom site 1 ({recipe.epochs} epochs)"
