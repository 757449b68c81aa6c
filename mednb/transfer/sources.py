"""Where transferred weights come from: the in-domain source trained once with labels on another domain,
and the search for a checkpoint (in-domain or notebook 04's SSL) whose ``features`` fit a model."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
import torch.nn as nn

from .. import engine, ssl
from ..runtime import check_name, checkpoint_dir, seed_everything
from .domain import load_domain, parse_domain
from .networks import body_state, create2d
from .strategies import RECIPE

SOURCES = {
    "none": "random initialisation",
    "imagenet": "torchvision IMAGENET1K_V1 weights (ResNets; torch hub cache or download)",
    "indomain": "a mednb model trained with labels on another medical set / phantom site",
    "ssl": "a self-supervised checkpoint of notebook 04 (in mednb.ssl.checkpoint_dir())",
}


def indomain_dir() -> Path:
    """The folder of the in-domain source checkpoints: ``cache_root()/checkpoints/transfer/<code version>/``."""
    return checkpoint_dir("transfer")


class SourceUnavailable(RuntimeError):
    """An optional source (e.g. ``ssl``) has nothing to load; callers may skip it."""


def check_source(name: str) -> str:
    """The registry key of a source; an unknown name is a ValueError listing :data:`SOURCES`."""
    return check_name(name, SOURCES, "source")


def _recipe_record(model: str, source: str, size: int, splits, recipe: engine.Recipe, seed: int, stem: str,
                   input_size: int | None, model_kw: dict | None) -> dict:
    """What an in-domain source was trained with (stored in the checkpoint, hashed into its file name):
    model, data, seed, epochs/lr/batch size, and every other recipe field that differs from :data:`RECIPE`."""
    rec = dict(model=str(model), source=str(source), size=int(size), n=[len(splits.train), len(splits.val)],
               epochs=int(recipe.epochs), lr=float(recipe.lr),
               batch_size=None if recipe.batch_size is None else int(recipe.batch_size), seed=int(seed),
               stem=str(stem), input_size=int(input_size or size),
               model_kw={k: model_kw[k] for k in sorted(model_kw or {})})
    for f in dataclasses.fields(recipe):
        if f.name not in rec and getattr(recipe, f.name) != getattr(RECIPE, f.name):
            rec[f.name] = getattr(recipe, f.name)
    return rec


def indomain_checkpoint(model: str, source: str, recipe: engine.Recipe | None = None, *, size: int = 28,
                        counts=None, seed: int = 0, stem: str = "imagenet", input_size: int | None = None,
                        model_kw: dict | None = None, device="auto", progress: bool = True,
                        force: bool = False) -> Path:
    """Train (once) a 2D ``model`` with labels on ``source`` (``name[:site]``) under ``recipe`` (None →
    :data:`RECIPE`) and save it with ``engine.save_checkpoint`` under :func:`indomain_dir`;
    returns the path.

    The checkpoint's extras hold the recipe and the source's val/test AUC. Cached by recipe.
    """
    recipe = RECIPE if recipe is None else recipe
    splits = load_domain(source, size, counts, seed=seed)
    if splits.dims != 2:
        raise ValueError(f"in-domain sources are 2D (3D targets inflate them); {source!r} is 3D")
    rec = _recipe_record(model, source, size, splits, recipe, seed, stem, input_size, model_kw)
    key = hashlib.sha1(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:10]
    tag = str(source).replace(":", "-site")
    path = indomain_dir() / f"{model}_{tag}_{size}_{key}.pt"
    if path.exists() and not force:
        return path
    seed_everything(seed)
    net = create2d(model, splits.n_channels, splits.n_outputs, size, stem=stem, input_size=input_size,
                   **(model_kw or {}))
    res = engine.fit(net, splits, recipe, device=device, seed=seed, progress=progress,
                     desc=f"source {model} on {source}")
    test = engine.evaluate(res.model, splits.test, splits.task, device)
    engine.save_checkpoint(res.model, path, {"recipe": rec, "val_auc": float(res.metric("val_auc")),
                                             "test_auc": float(test["auc"]), "in_channels": splits.n_channels,
                                             "n_outputs": splits.n_outputs, "task": splits.task})
    return path


def checkpoint_info(path: str | Path) -> dict:
    """The extras stored with a checkpoint (recipe, source AUCs, …), without the weights."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v for k, v in ckpt.items() if k != "state_dict"}


def _fits(t, shape) -> bool:
    """Same shape, or a conv weight that differs only in input channels (adapted on load)."""
    if t is None:
        return False
    return t.shape == shape or (t.ndim == len(shape) >= 4 and t.shape[0] == shape[0] and t.shape[2:] == shape[2:])


def _fitting(files, model: nn.Module, what: str, hint: str, accept=None) -> Path:
    """First of ``files`` (checkpoint paths) whose ``features`` fit ``model`` and, when given, whose loaded
    checkpoint dict passes ``accept``; else :class:`SourceUnavailable` ("no {what} for {model} {hint}")."""
    own = {k: v.shape for k, v in model.state_dict().items() if k.startswith("features.")}
    for f in files:
        try:
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
            body = body_state(ckpt["state_dict"])
        except Exception:  # unreadable or foreign file: not a candidate
            continue
        if accept is not None and not accept(ckpt):
            continue
        if body and all(_fits(body.get(k), s) for k, s in own.items() if not k.endswith("num_batches_tracked")):
            return f
    name = getattr(model, "mednb_name", type(model).__name__)
    raise SourceUnavailable(f"no {what} for {name} {hint}")


def _newest(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.exists() else []


def ssl_checkpoint(model: nn.Module, dataset: str | None = None) -> Path:
    """The newest notebook-04 checkpoint in :func:`mednb.ssl.checkpoint_dir` whose ``features`` fit
    ``model`` (preferring file names that contain ``dataset``); :class:`SourceUnavailable` if none."""
    folder = ssl.checkpoint_dir()
    files = _newest(folder)
    if dataset:
        files.sort(key=lambda p: f"_{dataset}_" not in p.name)  # stable: matching names first
    return _fitting(files, model, "SSL checkpoint",
                    f"in {folder} — run notebook 04 (ssl.pretrain) first; skipping the 'ssl' source")


def indomain_for(model: nn.Module, target: str) -> Path:
    """The newest notebook-03 in-domain checkpoint (:func:`indomain_checkpoint`, in
    :func:`indomain_dir`) whose ``features`` fit ``model`` and whose labelled source is
    another domain than ``target`` (``name[:site]``; a source trained on the target's own labels would
    leak them). :class:`SourceUnavailable` when there is none."""
    folder = indomain_dir()
    tgt = parse_domain(target)

    def other_domain(ckpt: dict) -> bool:
        src = (ckpt.get("recipe") or {}).get("source")
        return src is not None and parse_domain(src) != tgt

    return _fitting(_newest(folder), model, "in-domain checkpoint",
                    f"from a domain other than {target!r} in {folder} — run notebook 03 "
                    f"(transfer.indomain_checkpoint) first, or use another source", accept=other_domain)
