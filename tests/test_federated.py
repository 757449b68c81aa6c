"""mednb.federated: simulated hospitals, Flower apps and strategies, AdaBN, the Deployment Runtime."""
from __future__ import annotations

import importlib
import json
import time

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict

from mednb import data, engine, models
from mednb.federated import adapt, apps, exchange, methods, scanners, sites, strategy

RECIPE = methods.LOCAL.replace(steps=3, lr=2e-3, batch_size=16)
SETUP = methods.Setup(RECIPE, rounds=2, model_kw={"width": 4})


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch):
    """Messages built outside a Flower runtime need a run/task identity, as the runtimes set one."""
    from flwr.supercore.task_identity import TaskIdentity
    for attr, value in (("_run_id", 1), ("_task_id", 1), ("_node_id", 0)):
        monkeypatch.setattr(TaskIdentity, attr, value)


@pytest.fixture(scope="module")
def site_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("fed")
    st = sites.build_sites("phantom2d", 2, 1.0, seed=0, counts=(48, 16, 24))
    st.save(root)
    return st, root


def _synthetic(n=(120, 30, 60), seed=0) -> data.Splits:
    """A binary 2D 'MedMNIST-like' set with random images (no file needed)."""
    g = torch.Generator().manual_seed(seed)
    split = lambda m: data.Split(torch.randint(0, 256, (m, 1, 28, 28), generator=g, dtype=torch.uint8),
                                 (torch.arange(m) % 2).view(-1, 1))
    return data.Splits("breastmnist", 28, "binary-class", {0: "malignant", 1: "normal, benign"}, 1, 2,
                       split(n[0]), split(n[1]), split(n[2]))


def _record(state: dict) -> ArrayRecord:
    return ArrayRecord({k: Array(v.numpy()) for k, v in state.items()})


# ----------------------------------------------------------------------------- sites
def test_sites_counts_reproducible_and_shift_only_on_its_site(monkeypatch):
    src = _synthetic()
    monkeypatch.setattr(data, "load", lambda *a, **k: src)
    a = sites.build_sites("breastmnist", 3, 0.8, seed=4)
    b = sites.build_sites("breastmnist", 3, 0.8, seed=4)
    c = sites.build_sites("breastmnist", 3, 0.8, seed=5)
    assert np.array_equal(a.shares, b.shares) and not np.array_equal(a.shares, c.shares)
    for sa, sb in zip(a.all, b.all):
        assert torch.equal(sa.train.x, sb.train.x) and torch.equal(sa.test.y, sb.test.y)
    for s in data.SPLITS:  # every image goes to exactly one site; the unseen site is disjoint from the others
        idx = [np.asarray(sp.meta["source_index"][s]) for sp in a.all]
        assert sum(len(i) for i in idx) == len(src.split(s))
        assert len(np.unique(np.concatenate(idx))) == len(src.split(s))
        assert not set(idx[-1]) & set(np.concatenate(idx[:-1]))
        assert len(a.unseen.split(s)) == pytest.approx(len(src.split(s)) / 4, abs=2)
    for sp in a.all:  # each site's images are its source images through its own scanner profile only
        i = sp.meta["source_index"]["train"]
        raw = src.train.x[i]
        noise_seed = 4 * 1000 + sp.meta["site"] * 10
        assert torch.equal(sp.train.x, scanners.apply_shift(raw, sp.meta["shift"], seed=noise_seed))
        assert torch.equal(sp.train.x, raw) == (sp.meta["shift"]["scanner"] == "reference")
        assert len(torch.unique(sp.val.y)) == 2 and len(torch.unique(sp.test.y)) == 2
    assert a.shifts[0]["scanner"] == "reference" and a.table().loc[3, "role"] == "unseen"


def test_dirichlet_partition_and_phantom_sites(site_set):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 100)
    shares = sites.dirichlet_shares(3, 4, 0.3, rng)
    parts = sites.partition(labels, shares, rng)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(300))
    got = np.array([[np.sum(labels[p] == c) for p in parts] for c in range(3)]) / 100
    assert np.allclose(got, shares, atol=0.011)
    st, _ = site_set
    assert sum(len(sp.train) for sp in st.seen) == 48  # the K scanner pools cut by one set of shares
    assert [sp.meta["shift"]["scanner"] for sp in st.all] == ["phantom scanner 0", "phantom scanner 1",
                                                              "phantom scanner 2"]
    again = sites.build_sites("phantom2d", 2, 1.0, seed=0, counts=(48, 16, 24))
    assert all(torch.equal(x.train.x, y.train.x) for x, y in zip(st.all, again.all))


def test_bad_knobs_name_the_valid_choices():
    with pytest.raises(ValueError, match="K must be an int >= 2"):
        methods.check_plan(1, 1.0, ["fedavg"])
    with pytest.raises(ValueError, match="alpha must be a number > 0"):
        methods.check_plan(3, 0.0, ["fedavg"])
    with pytest.raises(ValueError, match="unknown method 'fedsgd'; valid: local, centralized, fedavg, fedprox, fedbn"):
        methods.check_plan(3, 1.0, ["fedavg", "fedsgd"])
    with pytest.raises(ValueError, match="K must be <= 3"):
        sites.build_sites("phantom2d", 4, 1.0)
    with pytest.raises(ValueError, match="fraction of sites per round must be in"):
        methods.Setup(RECIPE, fraction=0.0)
    with pytest.raises(ValueError, match="budget in optimizer steps per round"):
        methods.Setup(engine.Recipe(epochs=2))
    params = importlib.import_module("mednb.params")  # the module (mednb.params is also the notebook function)
    with pytest.raises(params.ParamError, match="FT_STEPS must be an int >= 1"):
        params.validate("09_multisite_federated", {"FT_STEPS": 0}, "smoke")


# ----------------------------------------------------------------------------- one budget in optimizer steps
def test_every_method_gets_the_same_total_of_optimizer_steps():
    """Local-only: the federation's steps per hospital; centralized: all hospitals' steps on the pooled data; with a
    fraction of the hospitals per round, the baselines get the total the drawn hospitals train."""
    setup = methods.setups_from({"MODEL": "cnn", "WIDTH": 4, "ROUNDS": 5, "STEPS": 8, "FRACTION": 1.0, "MU": 0.0,
                                 "DEVICE": "cpu", "BATCH_SIZE": 16, "LR": 1e-3}, ["phantom2d"])["phantom2d"]
    assert (setup.recipe.steps, setup.recipe.evals, setup.budget) == (8, 1, 40)
    assert setup.local_recipe(3).steps == 40 and setup.pooled_recipe(3).steps == 120
    part = methods.Setup(RECIPE.replace(steps=10), rounds=6, fraction=0.6)
    m = part.sites_per_round(5)
    assert m == 3 and part.pooled_recipe(5).steps == 6 * 10 * 3 and part.local_recipe(5).steps * 5 == 6 * 10 * 3


def test_baselines_train_the_budget_and_carry_its_steps(site_set):
    st, _ = site_set
    setup = methods.Setup(RECIPE, rounds=2, model_kw={"width": 4}, device="cpu")
    seen = []
    real = engine.fit
    def spy(*a, **k):
        res = real(*a, **k)
        seen.append((res.steps, res.n_train))
        return res
    import unittest.mock
    with unittest.mock.patch.object(methods.engine, "fit", spy):
        local, _ = methods.local_only(st, setup)
        central, _ = methods.centralized(st, setup)
    assert [s for s, _ in seen] == [6, 6, 12]  # each hospital 2 rounds × 3 steps; pooled: both hospitals' share
    assert len({n for _, n in seen[:2]}) == 2  # hospitals of different sizes, one budget
    assert set(local.steps) == set(central.steps) == {setup.budget}


def test_finetuning_trains_one_budget_whatever_the_labels(site_set):
    st, _ = site_set
    model = models.create("cnn", 1, 2, width=4)
    rec = adapt.FINETUNE.replace(steps=4, evals=2)
    out = {}
    for n in (2, 8):
        hist = []
        adapt.finetune(model, st.unseen, n, "all", rec, seed=0, device="cpu", history=hist)
        out[n] = hist
    assert [e["step"] for e in out[2]] == [e["step"] for e in out[8]] == [2, 4]
    assert all("val_auc" in e for e in out[2])
    with pytest.raises(ValueError, match="budget in optimizer steps"):
        adapt.finetune(model, st.unseen, 2, "all", engine.Recipe(epochs=3), device="cpu")


def test_claims_are_paired_over_seeds_and_records_carry_comparison_and_steps():
    import pandas as pd
    from mednb import claims as ledger, recording
    from mednb.federated import study
    rows = []
    for seed, (loc, avg) in enumerate([(0.70, 0.80), (0.72, 0.79), (0.69, 0.83)]):
        for method, v in (("local", loc), ("fedavg", avg), ("centralized", avg + 0.01), ("fedbn", avg)):
            rows += [{"dataset": "phantom2d", "seed": seed, "method": method, "site": i, "round": 2, "alpha": 1.0,
                      "test_auc": v, "test_acc": 0.5} for i in range(2)]
    final = pd.DataFrame(rows)
    unseen = pd.DataFrame([{"dataset": "phantom2d", "seed": s, "method": m, "adabn": a, "test_auc": 0.6 + 0.01 * s,
                            "test_acc": 0.5} for s in range(3) for m in ("fedavg", "fedbn") for a in (False, True)])
    adapted = pd.DataFrame([{"dataset": "phantom2d", "seed": s, "method": "fedavg", "stage": st_, "n_labels": n,
                             "mode": mode, "unseen_auc": 0.6 + 0.05 * (st_ != "federated"), "unseen_acc": 0.5,
                             "seen_auc": 0.8, "seen_worst": 0.7, "forgetting": 0.0,
                             "steps": 4 if st_ == "finetune" else 0, "history": None}
                            for s in range(3) for st_, n, mode in (("federated", 0, "-"), ("adabn", 0, "-"),
                                                                    ("finetune", 5, "head"))])
    table = study.claims(final, unseen, adapted)
    first = table.iloc[0]
    assert first.claim == "FedAvg vs local-only, mean site AUC" and first.verdict == "better"
    assert first.paired == ledger.paired([0.80, 0.79, 0.83], [0.70, 0.72, 0.69])
    assert set(table.verdict) <= {"better", "worse", "within noise", "measured"}
    setup = methods.Setup(RECIPE, rounds=2)
    budgets = study.budgets({"phantom2d": setup}, adapt.FINETUNE.replace(steps=4))
    assert budgets == {("phantom2d", "methods"): 6, ("phantom2d", "adaptation"): 4}
    assert len(study.record_claims(table, budgets)) == int(table.paired.notna().sum())
    comm = pd.DataFrame([{"dataset": "phantom2d", "method": "fedavg", "bytes_per_round": 10.0}])
    before = len(recording.recorded())
    n = study.record_results(final, unseen, adapted, comm, {"phantom2d": setup})
    recs = recording.recorded()[before:]
    assert len(recs) == n
    steps = {}
    for r in recs:
        steps.setdefault((r["comparison"], r["dataset"]), set()).add(r["steps"])
    assert steps == {("methods", "phantom2d"): {6}, ("adaptation", "phantom2d"): {4}}


# ----------------------------------------------------------------------------- Flower apps and strategies
class _Grid:
    def __init__(self, ids):
        self.ids = list(ids)

    def get_node_ids(self):
        return self.ids


def _reply(node, arrays, n, mtype=MessageType.TRAIN):
    ins = Message(RecordDict(), dst_node_id=node, message_type=mtype)
    return Message(RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": n})}), reply_to=ins)


def _aggregate(replies, nodes):
    strat = strategy.make("fedavg").track({n: i for i, n in enumerate(nodes)}, seed=0, rounds=1)
    strat.configure_train(1, ArrayRecord(), ConfigRecord(), _Grid(nodes))
    arrays, _ = strat.aggregate_train(1, replies)
    return strat, exchange.state_of(arrays)


def test_fedavg_of_identical_clients_is_their_model_and_weights_by_sample_count():
    model = models.create("cnn", 1, 2, width=4)
    rec = exchange.to_record(model, exchange.shared_keys(model, local_bn=False))
    nodes = [11, 7, 5]
    strat, avg = _aggregate([_reply(n, rec, m) for n, m in zip(nodes, (10, 30, 60))], nodes)
    for k, v in exchange.state_of(rec).items():
        assert torch.allclose(avg[k], v, atol=1e-6)
    assert strat.traffic[0]["bytes_up"] == 3 * exchange.nbytes(rec)
    recs = [_record({"w": torch.full((3,), v)}) for v in (1.0, 2.0, 4.0)]
    _, avg = _aggregate([_reply(n, r, m) for n, r, m in zip(nodes, recs, (10, 30, 60))], nodes)
    assert torch.allclose(avg["w"], torch.full((3,), (10 * 1 + 30 * 2 + 60 * 4) / 100.0))


def _exp(method, mu=0.0, seed=0):
    st = sites.build_sites("phantom2d", 2, 1.0, seed=seed, counts=(48, 16, 24))
    setup = methods.Setup(RECIPE, rounds=2, mu=mu, model_kw={"width": 4})
    return st, methods.experiment(st, method, setup, threads=None)  # threads=None: keep this process's threads


def _train_msg(exp, arrays, rnd, node, mu=None):
    cfg = {"experiment": json.dumps(exp), "server-round": rnd}
    if mu is not None:
        cfg["proximal-mu"] = mu
    return Message(RecordDict({"arrays": arrays, "config": ConfigRecord(cfg)}), dst_node_id=node,
                   message_type=MessageType.TRAIN)


def _ctx(node, site, folder):
    return Context(run_id=1, node_id=node, node_config={"site": site, "data-dir": str(folder)}, state=RecordDict(),
                   run_config={})


def test_fedbn_keeps_each_sites_bn_out_of_aggregation(site_set):
    _, folder = site_set
    st, exp = _exp("fedbn")
    app = apps.client_app()
    model = apps.initial_model(exp)
    bn = set(exchange.bn_keys(model))
    initial = exchange.to_record(model, exchange.shared_keys(model, local_bn=True))
    ctxs = {n: _ctx(n, i, folder) for i, n in enumerate((21, 22))}
    replies = [app(_train_msg(exp, initial, 1, n), c) for n, c in ctxs.items()]
    assert all(not bn & set(r.content["arrays"]) for r in replies)  # BN arrays never leave a site
    local = {n: exchange.state_of(c.state[f"local-bn:{exp['tag']}"]) for n, c in ctxs.items()}
    assert set(local[21]) == bn and any(not torch.equal(local[21][k], local[22][k]) for k in bn)
    _, avg = _aggregate(replies, list(ctxs))
    assert not bn & set(avg)
    for n, c in ctxs.items():  # next round: shared weights from the server, BN from the site itself
        msg = _train_msg(exp, _record(avg), 2, n)
        _, _, _, m = apps._prepare(msg, c, {})
        state = m.state_dict()
        assert all(torch.equal(state[k], local[n][k]) for k in bn)
        assert all(torch.equal(state[k], avg[k]) for k in avg)


def test_fedprox_with_mu_zero_equals_fedavg(site_set):
    _, folder = site_set
    _, avg_exp = _exp("fedavg")
    _, prox_exp = _exp("fedprox")
    model = apps.initial_model(avg_exp)
    initial = exchange.to_record(model, exchange.shared_keys(model, local_bn=False))
    app = apps.client_app()
    out = {}
    for name, exp, mu in (("fedavg", avg_exp, None), ("prox0", prox_exp, 0.0), ("prox10", prox_exp, 10.0)):
        r = app(_train_msg(exp, initial, 1, 31, mu), _ctx(31, 0, folder))
        out[name] = exchange.state_of(r.content["arrays"])
    assert all(torch.equal(out["fedavg"][k], out["prox0"][k]) for k in out["fedavg"])
    w0 = exchange.state_of(initial)
    dist = lambda s: sum(float((s[k] - w0[k]).pow(2).sum()) for k in s if "running" not in k)
    assert dist(out["prox10"]) < dist(out["fedavg"])  # the proximal term pulls towards the global weights


def test_adabn_changes_only_bn_running_statistics(site_set):
    st, _ = site_set
    model = models.create("cnn", 1, 2, width=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapted = adapt.adabn(model, st.unseen.train.x, batch_size=16, device="cpu")
    stats = set(exchange.running_stat_keys(model))
    after = adapted.state_dict()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input model is untouched
    for k, v in after.items():
        assert torch.equal(before[k], v) == (k not in stats), k
    assert not adapted.training
    x = st.unseen.train.x
    first = adapted.features.block1[1]
    feats = adapted.features.block1[0](engine.normalize(x))
    assert torch.allclose(first.running_mean, feats.mean((0, 2, 3)), atol=1e-4)
    idx = adapt.pick_labels(st.unseen.train.y, 5, seed=0)
    assert len(idx) == 5 and sorted(np.bincount(st.unseen.train.y[idx, 0].numpy()).tolist()) == [2, 3]


# ----------------------------------------------------------------------------- Deployment Runtime
DEPLOY_TOLERANCE = 0.01  # test AUC per site, same seed and rounds (on CPU the two runtimes agree exactly)


def _leftovers(home) -> list:
    import psutil
    out = []
    for q in psutil.process_iter():
        try:
            if q.environ().get("FLWR_HOME") == str(home):
                out.append(q)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return out


def test_deployment_runtime_on_loopback_matches_the_simulation(tmp_path):
    from mednb.federated import deployment, simulation, study
    st = sites.build_sites("phantom2d", 2, 1.0, seed=1, counts=(48, 16, 24))
    setup = methods.Setup(RECIPE, rounds=2, eval_every=2, model_kw={"width": 4})
    sim = simulation.simulate([st], ["fedbn"], setup, tmp_path / "sim", cpus=2)  # FedBN: a stateful client
    t0 = time.monotonic()
    dep = deployment.deploy([st], ["fedbn"], setup, tmp_path / "dep", timeout=600)
    assert time.monotonic() - t0 < 600
    cmp = study.compare_runtimes(sim, dep, DEPLOY_TOLERANCE)
    assert len(cmp) == 2 and cmp["within_tolerance"].all(), cmp
    a, b = sim.model("phantom2d", 1, "fedbn").state_dict(), dep.model("phantom2d", 1, "fedbn").state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    ports = [dep.runtime["superlink_port"], *dep.runtime["supernode_ports"]]
    assert len(set(ports)) == 3 and not _leftovers(dep.runtime["flwr_home"])
    assert not any(deployment.port_open(p) for p in ports)


def test_deployment_runtime_is_bounded_in_time_and_cleans_up(tmp_path):
    from mednb.federated import deployment
    st = sites.build_sites("phantom2d", 2, 1.0, seed=1, counts=(48, 16, 24))
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within 3 s"):
        deployment.deploy([st], ["fedavg"], SETUP, tmp_path, timeout=3)
    assert time.monotonic() - t0 < 60
    assert not _leftovers(tmp_path / "flwr-home")
