"""The Flower apps: one ``ClientApp`` (a hospital) and one ``ServerApp`` (the coordinator).

The same two objects run in Flower's Simulation Runtime (``flwr.simulation.run_simulation``: virtual
SuperNodes in Ray actors) and in its Deployment Runtime (a SuperLink and one SuperNode process per
hospital; :mod:`mednb.federated.deployment`).

ClientApp — a hospital knows only its own files: ``<data-dir>/<dataset>_seed<s>_site<i>.npz`` where
``site`` and ``data-dir`` come from the SuperNode's ``--node-config`` (Simulation: ``partition-id`` and
the run's data folder). ``train``: load the global arrays (plus, for FedBN, its own BN arrays kept in the
node's ``Context.state``), run :func:`mednb.engine.fit` on its training split (FedProx: with the proximal
term added to the loss), reply with the shared arrays and its number of training images. ``evaluate``:
test AUC/ACC on its own test split. ``query``: its site id; ``query.bn``: its BN arrays (FedBN's final
model for a new hospital averages them once, after training).

ServerApp — reads the plan (JSON: experiments, rounds, fraction of sites per round, μ, model), asks every
node for its site, then runs each experiment with a Flower strategy (:mod:`.strategy`) and writes its
per-round per-site history, traffic and final weights to the plan's ``out_dir``.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from .. import engine, models
from ..runtime import seed_everything
from . import exchange
from . import strategy as strategies
from .sites import load_site, site_file

FEDERATED = ("fedavg", "fedprox", "fedbn")
_SITES: dict[str, object] = {}  # per-process cache of a hospital's loaded files


# ----------------------------------------------------------------------------- shared helpers
def build_model(exp: dict) -> torch.nn.Module:
    m = exp["model"]
    return models.create(m["name"], m["in_channels"], m["num_classes"], dims=m["dims"], size=m["size"],
                         **m.get("kw", {}))


def initial_model(exp: dict) -> torch.nn.Module:
    """The weights every method of a run starts from: the registry model built under the run's seed
    (in a forked RNG, so the caller's random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(exp["seed"]))
        return build_model(exp)


def recipe_of(exp: dict) -> engine.Recipe:
    return engine.Recipe(**{k: tuple(v) if k == "milestones" else v for k, v in exp["recipe"].items()})


def _state_key(exp: dict) -> str:
    return "local-bn:" + exp["tag"]


def _no_validation(model, split) -> dict:
    """Local rounds keep the last weights (``select="last"``), so per-epoch validation is skipped."""
    return {}


def proximal_loss(model: torch.nn.Module, mu: float, base):
    """FedProx objective: ``base(logits, y) + μ/2 · ||w − w_global||²`` over the trainable parameters,
    with ``w_global`` the weights received this round (Li et al., MLSys 2020, eq. 2)."""
    anchors = [(p, p.detach().clone()) for p in model.parameters() if p.requires_grad]

    def loss(logits, y):
        return base(logits, y) + (float(mu) / 2) * sum((p - a).pow(2).sum() for p, a in anchors)
    return loss


# ----------------------------------------------------------------------------- ClientApp
def _my_site(context, defaults: dict, exp: dict):
    cfg = {**defaults, **{k: v for k, v in context.run_config.items() if v != ""}, **context.node_config}
    site = int(cfg["site"] if "site" in cfg else cfg["partition-id"])
    if not cfg.get("data-dir"):
        raise ValueError("this SuperNode has no data folder: start it with "
                         "--node-config 'site=<i> data-dir=\"<folder with its site files>\"'")
    path = str(Path(cfg["data-dir"]) / site_file(exp["dataset"], exp["seed"], site))
    if path not in _SITES:
        _SITES[path] = load_site(path)
    return site, _SITES[path]


def _prepare(msg: Message, context, defaults: dict):
    exp = json.loads(msg.content["config"]["experiment"])
    site, splits = _my_site(context, defaults, exp)
    if torch.device(engine.get_device(exp.get("device", "auto"))).type == "cpu" and exp.get("threads"):
        torch.set_num_threads(int(exp["threads"]))
    model = build_model(exp)
    local = context.state.array_records.get(_state_key(exp)) if exp["method"] == "fedbn" else None
    exchange.load(model, msg.content.array_records.get("arrays"), local)
    return exp, site, splits, model


def _train(msg: Message, context, defaults: dict) -> Message:
    exp, site, splits, model = _prepare(msg, context, defaults)
    rnd = int(msg.content["config"]["server-round"])
    seed = int(exp["seed"]) * 100_003 + rnd * 101 + site
    seed_everything(seed)
    loss_fn = None
    if exp["method"] == "fedprox":
        loss_fn = proximal_loss(model, msg.content["config"]["proximal-mu"], engine.loss_for(splits.task))
    res = engine.fit(model, splits, recipe_of(exp), loss_fn=loss_fn, eval_fn=_no_validation, seed=seed,
                     device=exp.get("device", "auto"), progress=False)
    local_bn = exp["method"] == "fedbn"
    if local_bn:
        context.state[_state_key(exp)] = exchange.to_record(res.model, exchange.bn_keys(res.model))
    arrays = exchange.to_record(res.model, exchange.shared_keys(res.model, local_bn))
    metrics = MetricRecord({"num-examples": res.n_train, "site": site,
                            "train-loss": float(res.history[-1]["train_loss"])})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


def _evaluate(msg: Message, context, defaults: dict) -> Message:
    exp, site, splits, model = _prepare(msg, context, defaults)
    r = engine.evaluate(model, splits.test, splits.task, exp.get("device", "auto"))
    metrics = MetricRecord({"num-examples": len(splits.test), "site": site, "auc": float(r["auc"]),
                            "acc": float(r["acc"])})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


def _query_site(msg: Message, context, defaults: dict) -> Message:
    cfg = {**defaults, **context.node_config}
    site = int(cfg["site"] if "site" in cfg else cfg["partition-id"])
    return Message(RecordDict({"metrics": MetricRecord({"site": site})}), reply_to=msg)


def _query_bn(msg: Message, context, defaults: dict) -> Message:
    exp, site, splits, model = _prepare(msg, context, defaults)
    arrays = exchange.to_record(model, exchange.bn_keys(model))
    n = MetricRecord({"num-examples": len(splits.train), "site": site})
    return Message(RecordDict({"arrays": arrays, "metrics": n}), reply_to=msg)


def client_app(defaults: dict | None = None) -> ClientApp:
    """A hospital's ``ClientApp``. defaults: config used when the run/node config lacks it (``data-dir``)."""
    defaults = dict(defaults or {})
    app = ClientApp()
    app.train()(partial(_train, defaults=defaults))
    app.evaluate()(partial(_evaluate, defaults=defaults))
    app.query()(partial(_query_site, defaults=defaults))
    app.query("bn")(partial(_query_bn, defaults=defaults))
    return app


# ----------------------------------------------------------------------------- ServerApp
def _send(grid, node_ids, message_type: str, content_fn, timeout: float) -> list[Message]:
    msgs = [Message(content_fn(), dst_node_id=n, message_type=message_type) for n in node_ids]
    replies = list(grid.send_and_receive(msgs, timeout=timeout))
    bad = [m for m in replies if m.has_error()]
    if bad or len(replies) < len(msgs):
        reason = bad[0].error.reason if bad else f"{len(msgs) - len(replies)} node(s) did not answer in {timeout:.0f} s"
        raise RuntimeError(f"{message_type} failed: {reason}")
    return replies


def discover(grid, k: int, timeout: float) -> dict[int, int]:
    """Wait for ``k`` SuperNodes and ask each for its site: ``{node_id: site}`` (sites must be 0..k-1)."""
    t0 = time.monotonic()
    while len(ids := list(grid.get_node_ids())) < k:
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"only {len(ids)} of {k} hospitals (SuperNodes) connected within {timeout:.0f} s")
        time.sleep(0.2)
    replies = _send(grid, ids, MessageType.QUERY, RecordDict, timeout)
    sites = {m.metadata.src_node_id: int(m.content["metrics"]["site"]) for m in replies}
    if sorted(sites.values()) != list(range(k)):
        raise RuntimeError(f"expected one SuperNode per site 0..{k - 1}, they reported sites {sorted(sites.values())}")
    return sites


def _final_bn(grid, sites: dict, exp: dict, timeout: float) -> tuple[ArrayRecord, int]:
    """FedBN: every site's BN arrays, averaged once by training-set size (for a hospital without its own)."""
    content = lambda: RecordDict({"config": ConfigRecord({"experiment": json.dumps(exp)})})
    replies = sorted(_send(grid, list(sites), f"{MessageType.QUERY}.bn", content, timeout),
                     key=lambda m: sites[m.metadata.src_node_id])
    return (aggregate_arrayrecords([m.content for m in replies], "num-examples"),
            sum(exchange.nbytes(m.content.array_records.get("arrays")) for m in replies))


def run_experiment(grid, sites: dict, plan: dict, exp: dict, on_round=None) -> dict:
    """One federated training run of ``exp`` (method, dataset, seed, rounds, model, recipe, …).

    Writes ``<out_dir>/<tag>/model.pt`` (the final global model; FedBN: shared weights + the sites' averaged BN
    arrays) and ``history.json`` (per-round per-site test AUC/ACC, bytes per round); returns the history.
    """
    model = initial_model(exp)
    local_bn = exp["method"] == "fedbn"
    initial = exchange.to_record(model, exchange.shared_keys(model, local_bn))
    rounds = int(exp["rounds"])
    strat = strategies.make(exp["method"], exp.get("mu", 0.0)).track(
        sites, exp["seed"], rounds, exp.get("fraction", 1.0), exp.get("eval_every", 1))
    strat.on_round = on_round
    t0 = time.perf_counter()
    result = strat.start(grid=grid, initial_arrays=initial, num_rounds=rounds, timeout=plan["timeout"],
                         train_config=ConfigRecord({"experiment": json.dumps(exp)}),
                         evaluate_config=ConfigRecord({"experiment": json.dumps(exp)}))
    exchange.load(model, result.arrays)
    bn_bytes = 0
    if local_bn:
        bn, bn_bytes = _final_bn(grid, sites, exp, plan["timeout"])
        exchange.load(model, bn)
    out = Path(plan["out_dir"]) / exp["tag"]
    history = {"tag": exp["tag"], "method": exp["method"], "dataset": exp["dataset"], "seed": exp["seed"],
               "rounds": rounds, "evaluations": strat.evaluations, "traffic": strat.traffic,
               "bytes_final_bn": bn_bytes, "seconds": time.perf_counter() - t0}
    engine.save_checkpoint(model, out / "model.pt", {"tag": exp["tag"]})
    write_json(out / "history.json", history)
    return history


def write_json(path: Path, obj) -> None:
    """Atomic JSON write (a temporary file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _main(grid, context, defaults: dict) -> None:
    from tqdm.auto import tqdm
    cfg = {**defaults, **{k: v for k, v in context.run_config.items() if v != ""}}
    plan = json.loads(Path(cfg["plan"]).read_text())
    t0 = time.perf_counter()
    sites = discover(grid, int(plan["k"]), plan["timeout"])
    bar = tqdm(total=sum(int(e["rounds"]) for e in plan["experiments"]), desc="federated rounds", unit="round",
               disable=not plan.get("progress", False))
    for exp in plan["experiments"]:
        bar.set_postfix_str(exp["tag"])
        run_experiment(grid, sites, plan, exp, on_round=lambda: bar.update(1))
    bar.close()
    write_json(Path(plan["out_dir"]) / "done.json", {"experiments": [e["tag"] for e in plan["experiments"]],
                                                      "seconds": time.perf_counter() - t0})


def server_app(defaults: dict | None = None) -> ServerApp:
    """The coordinator's ``ServerApp``. defaults: config used when the run config lacks it (``plan``)."""
    defaults = dict(defaults or {})
    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        _main(grid, context, defaults)
    return app
