"""Active learning: strategies, the pool loop, annotation-cost measures and the labelling panel."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from mednb import active, data, engine, models
from mednb.runtime import code_version

RECIPE = engine.Recipe(steps=2, evals=2, batch_size=16, lr=2e-3)
FAST = dict(model=active.ModelSpec("cnn", dropout=0.3), scoring=active.Scoring(mc_samples=3, aift_copies=3))


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return data.load("phantom2d", counts=(60, 24, 24), cache=False, seed=3)


# ----------------------------------------------------------------------------- scores
def test_uncertainty_scores_rank_constructed_tables():
    p = np.array([[0.50, 0.50, 0.00],   # a coin flip between two classes
                  [0.40, 0.30, 0.30],   # spread over three classes
                  [0.90, 0.05, 0.05],   # confident
                  [0.70, 0.20, 0.10]])
    assert list(np.argsort(-active.entropy(p))) == [1, 3, 0, 2]  # 70/20/10 beats the coin flip
    assert list(np.argsort(-active.least_confidence(p), kind="stable")) == [1, 0, 3, 2]
    assert list(np.argsort(-active.margin(p))) == [0, 1, 3, 2]  # the 50/50 case has margin 0
    np.testing.assert_allclose(active.entropy(p)[0], math.log(2), rtol=1e-6)
    np.testing.assert_allclose(active.least_confidence(p), [0.5, 0.6, 0.1, 0.3], atol=1e-9)
    np.testing.assert_allclose(active.margin(p), [0.0, -0.1, -0.85, -0.5], atol=1e-9)
    # a single sigmoid column is read as two classes
    np.testing.assert_allclose(active.entropy([[0.5], [1.0]]), [math.log(2), 0.0], atol=1e-9)


def test_bald_zero_when_mc_samples_agree_and_positive_when_they_disagree():
    p = np.array([[0.3, 0.7], [0.5, 0.5], [0.99, 0.01]])
    agree = np.stack([p] * 6)
    np.testing.assert_allclose(active.bald(agree), 0.0, atol=1e-9)
    disagree = np.stack([[[1.0, 0.0]], [[0.0, 1.0]]])  # two confident, opposite passes
    np.testing.assert_allclose(active.bald(disagree), [math.log(2)], atol=1e-6)
    with pytest.raises(ValueError, match="T,N,K"):
        active.bald(p)


def test_coreset_picks_the_farthest_point():
    pts = np.array([[0.0], [1.0], [2.0], [10.0], [9.5]])
    assert list(active.k_center_greedy(pts, [0], 1)) == [3]
    assert list(active.k_center_greedy(pts, [0], 2)) == [3, 2]  # after 10, the farthest from {0, 10} is 2
    assert list(active.k_center_greedy(pts, [0, 3], 1)) == [2]
    assert 0 not in active.k_center_greedy(pts, [0], 4)


def test_aift_scores_entropy_plus_diversity():
    same = np.array([[[0.5, 0.5]] * 4])                        # uncertain, copies agree
    sure = np.array([[[0.99, 0.01]] * 4])                      # confident, copies agree
    split = np.array([[[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.2, 0.8]]])  # copies disagree
    s_same = active.aift_scores(same, alpha=1.0)[0]
    np.testing.assert_allclose(s_same, 4 * math.log(2), rtol=1e-6)  # no diversity term
    assert active.aift_scores(sure, alpha=1.0)[0] < s_same
    assert active.aift_scores(split, alpha=1.0)[0] > active.aift_scores(split, alpha=1.0, lambda2=0.0)[0]
    # majority selection keeps the copies most confident in the majority class only
    assert active.aift_scores(split, alpha=0.25)[0] < active.aift_scores(split, alpha=1.0)[0]


def test_top_k_breaks_ties_reproducibly():
    s = np.zeros(10)
    a = active.top_k(s, 3, np.random.default_rng(5))
    b = active.top_k(s, 3, np.random.default_rng(5))
    assert list(a) == list(b) and len(set(a)) == 3
    assert list(active.top_k([0.1, 0.9, 0.5], 2)) == [1, 2]


def test_dihedral_copies_are_the_eight_symmetries():
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    outs = {tuple(active.dihedral(x, j).flatten().tolist()) for j in range(8)}
    assert len(outs) == 8
    assert torch.equal(active.dihedral(x, 0), x)
    v = torch.rand(2, 1, 4, 5, 5)
    assert active.dihedral(v, 5).shape == v.shape


def test_query_time_probabilities(tiny):
    """MC dropout passes differ from each other, are reproducible from the seed and average near the
    deterministic prediction; AIFT's copy 0 is the image itself and dihedral copies are rotations."""
    torch.manual_seed(0)
    net = models.create("cnn", 1, 4, dropout=0.5)
    x = tiny.train.x[:10]
    p = active.predict_probs(net, x, tiny.task, "cpu")
    mc = active.mc_dropout_probs(net, x, tiny.task, samples=8, device="cpu", seed=3)
    assert mc.shape == (8, 10, 4) and np.allclose(mc.sum(-1), 1, atol=1e-5)
    assert mc.std(0).max() > 1e-4                                         # dropout is on at query time
    np.testing.assert_array_equal(mc, active.mc_dropout_probs(net, x, tiny.task, 8, "cpu", seed=3))
    assert not net.training and np.allclose(active.predict_probs(net, x, tiny.task, "cpu"), p)  # left in eval
    with pytest.raises(ValueError, match="dropout > 0"):
        active.mc_dropout_probs(models.create("cnn", 1, 4), x, tiny.task, device="cpu")
    aug = active.augmented_probs(net, x, tiny.task, copies=4, augment="dihedral", device="cpu")
    assert aug.shape == (10, 4, 4)
    np.testing.assert_allclose(aug[:, 0], p, atol=1e-5)
    rot = active.predict_probs(net, torch.rot90(x, 1, dims=(-2, -1)), tiny.task, "cpu")
    np.testing.assert_allclose(aug[:, 1], rot, atol=1e-5)


def test_unknown_strategy_lists_the_valid_ones(tiny):
    with pytest.raises(ValueError, match="unknown strategy 'oracle'; valid: random, least_confidence"):
        active.get("oracle")
    with pytest.raises(ValueError, match="coreset"):
        active.ActiveLearner(tiny, "Oracle")
    with pytest.raises(ValueError, match="dropout"):
        active.ActiveLearner(tiny, "bald", model=active.ModelSpec("cnn", dropout=0.0))


# ----------------------------------------------------------------------------- loop
@pytest.mark.parametrize("strategy", ["random", "least_confidence", "margin", "entropy", "bald", "coreset", "aift"])
def test_loop_never_requeries_and_respects_the_budget(tiny, strategy):
    pool = np.arange(0, 60, 2)  # every other train sample
    learner = active.run(tiny, strategy, [6, 10, 14], RECIPE, seed=1, pool=pool, device="cpu", **FAST)
    lab = learner.labelled
    assert len(lab) == len(set(lab)) == 14
    assert set(lab) <= set(pool.tolist())
    hist = learner.history
    assert [h["n_labels"] for h in hist] == [6, 10, 14]
    assert [h["round"] for h in hist] == [0, 1, 2]
    assert [h["n_queried"] for h in hist] == [6, 4, 4]
    queried = [i for h in hist for i in h["queried"]]
    assert sorted(queried) == sorted(lab)
    assert all(0.0 <= h["test_auc"] <= 1.0 for h in hist)
    assert set(learner.unlabelled.tolist()) == set(pool.tolist()) - set(lab)
    with pytest.raises(ValueError, match="already labelled"):
        learner.add([lab[0]])


def test_budget_larger_than_pool_and_bad_schedules_fail(tiny):
    with pytest.raises(ValueError, match="exceeds the pool"):
        active.run(tiny, "random", [5, 50], RECIPE, pool=20, device="cpu", **FAST)
    with pytest.raises(ValueError, match="increasing"):
        active.run(tiny, "random", [10, 10], RECIPE, device="cpu", **FAST)
    assert active.schedule(20, 10, 3) == [20, 30, 40, 50]


def test_history_is_reproducible_from_the_seed(tiny):
    kw = dict(recipe=RECIPE, pool=40, device="cpu", warm_start=True, **FAST)
    a = active.run(tiny, "entropy", [6, 10], seed=4, **kw).history
    b = active.run(tiny, "entropy", [6, 10], seed=4, **kw).history
    c = active.run(tiny, "entropy", [6, 10], seed=5, **kw).history
    for ha, hb in zip(a, b):
        assert ha["queried"] == hb["queried"]
        assert ha["test_auc"] == hb["test_auc"] and ha["val_auc"] == hb["val_auc"]
    assert a[0]["queried"] != c[0]["queried"]


def test_stratified_seed_set_covers_every_class(tiny):
    learner = active.ActiveLearner(tiny, "random", RECIPE, seed=0, device="cpu", **FAST)
    idx = learner.seed_set(8, stratified=True)
    assert len(set(idx.tolist())) == 8
    assert set(tiny.train.y[idx, 0].tolist()) == {0, 1, 2, 3}


def test_pool_indices():
    assert list(active.pool_indices(None, 5, 0)) == [0, 1, 2, 3, 4]
    a = active.pool_indices(20, 60, 3)
    assert len(a) == 20 and list(a) == sorted(set(a.tolist())) and list(a) == list(active.pool_indices(20, 60, 3))
    assert list(a) != list(active.pool_indices(20, 60, 4))
    assert len(active.pool_indices(0, 60, 3)) == 60 and len(active.pool_indices(60, 60, 3)) == 60
    assert list(active.pool_indices([5, 2, 5, 9], 60, 0)) == [2, 5, 9]


def test_learner_settings_fail_early(tiny):
    with pytest.raises(ValueError, match="dropout must be in"):
        active.ModelSpec("cnn", dropout=1.0)
    with pytest.raises(ValueError, match="aift_alpha"):
        active.Scoring(aift_alpha=0.0)
    with pytest.raises(ValueError, match="mc_samples"):
        active.Scoring(mc_samples=0)
    with pytest.raises(TypeError, match="engine.Recipe"):
        active.ActiveLearner(tiny, "entropy", {"epochs": 1})
    with pytest.raises(ValueError, match="put epochs, lr in the recipe"):
        active.ActiveLearner(tiny, "entropy", fit_kw={"lr": 1e-2, "epochs": 3})
    default = active.ActiveLearner(tiny)
    assert default.recipe == active.RECIPE == engine.Recipe(steps=100, lr=1e-3, batch_size=32)
    assert default.spec == active.ModelSpec("cnn", dropout=0.3) and default.scoring == active.Scoring()


def test_every_round_trains_the_step_budget_and_epoch_recipes_are_refused(tiny):
    with pytest.raises(ValueError, match="steps=N"):
        active.ActiveLearner(tiny, "random", engine.Recipe(epochs=3), device="cpu")
    with pytest.raises(TypeError, match="min_steps"):
        active.ActiveLearner(tiny, "random", RECIPE, min_steps=10, device="cpu")
    learner = active.run(tiny, "margin", [4, 8, 30], RECIPE.replace(steps=5, evals=5), pool=40, device="cpu", **FAST)
    assert [h["steps"] for h in learner.history] == [5, 5, 5]          # 4 labels or 30: the same steps
    assert [len(c) for c in learner.curves] == [5, 5, 5]               # one validation check per step here
    assert [c[-1]["step"] for c in learner.curves] == [5, 5, 5]
    assert all(h["n_val"] == len(tiny.val) for h in learner.history)   # val_labels="full"


def test_matched_validation_grows_with_the_labels(tiny):
    learner = active.run(tiny, "random", [4, 40], RECIPE.replace(val_labels="matched"), pool=50, device="cpu", **FAST)
    n_val = [h["n_val"] for h in learner.history]
    assert 5 * tiny.n_classes <= n_val[0] <= n_val[1] < len(tiny.val)   # ≥ 5 per class, 0.25 × the labels above


def test_compare_forwards_the_recipe_to_every_fit(tiny, monkeypatch):
    calls = []
    real_fit = engine.fit

    def spy(model, splits, recipe=None, **kw):
        calls.append((recipe, kw))
        return real_fit(model, splits, recipe, **kw)

    monkeypatch.setattr(engine, "fit", spy)
    frame, runs = active.compare(tiny, ["random", "margin"], [6, 10], seeds=(0, 1), recipe=RECIPE, progress=False,
                                 pool=40, device="cpu", fit_kw={"class_weight": "balanced"}, **FAST)
    assert len(calls) == 8 and len(frame) == 8
    assert all(r == RECIPE for r, _ in calls)                        # 6 or 10 labels: the same step budget
    assert all(kw["class_weight"] == "balanced" and kw["progress"] is False for _, kw in calls)
    seeds = sorted({kw["seed"] for _, kw in calls})
    assert seeds == [0, 1, 1000, 1001]                               # seed * 1000 + round
    for (s, sd), learner in runs.items():
        assert [h["steps"] for h in learner.history] == [RECIPE.steps] * 2
    for sd in (0, 1):                                                # paired: one cold-start set per seed
        assert runs[("random", sd)].history[0]["queried"] == runs[("margin", sd)].history[0]["queried"]


def test_scores_table_matches_the_score_functions(tiny):
    learner = active.ActiveLearner(tiny, "entropy", RECIPE, seed=0, pool=40, device="cpu", **FAST)
    learner.seed_set(8)
    learner.fit()
    idx = learner.unlabelled[:5]
    table = learner.scores_table(idx)
    assert list(table["index"]) == list(idx) and len(table) == 5
    p = learner.probs(idx)
    np.testing.assert_allclose(table["margin"], active.margin(p))
    np.testing.assert_allclose(table["entropy"], active.entropy(p))
    assert {"bald", "coreset", "aift", "truth"} <= set(table.columns)
    assert (table["bald"] >= 0).all() and (table["coreset"] > 0).all()
    assert list(table["truth"]) == [tiny.labels[int(t)] for t in tiny.train.y[idx, 0]]


def test_load_encoder_copies_features_not_head():
    src = models.create("cnn", 1, 4)
    dst = models.create("cnn", 1, 2, dropout=0.3)
    active.load_encoder(dst, src.state_dict())
    for k, v in src.state_dict().items():
        if k.startswith("features."):
            assert torch.equal(dst.state_dict()[k], v)
    assert dst.head.fc.out_features == 2
    with pytest.raises(ValueError, match="no 'features"):
        active.load_encoder(dst, {"head.fc.weight": torch.zeros(2, 128)})
    with pytest.raises(ValueError, match="does not match"):
        active.load_encoder(models.create("cnn", 1, 2, width=8), src.state_dict())


def test_pretrained_sources(tiny):
    assert active.pretrained(tiny, "none") == (None, "none (from scratch)")
    with pytest.raises(ValueError, match="unknown pretrain source 'imagenet'; valid: none, auto, ssl, indomain, site"):
        active.pretrained(tiny, "imagenet")


def test_indomain_source_loads_notebook03_weights_from_another_domain_only(tiny, data_root):
    from mednb import transfer
    with pytest.raises(transfer.SourceUnavailable, match="run notebook 03"):
        active.pretrained(tiny, "indomain")
    kw = dict(counts=(24, 8, 8), device="cpu", progress=False)
    one = engine.Recipe(epochs=1, batch_size=8)
    same = transfer.indomain_checkpoint("cnn", "phantom2d:0", one, **kw)  # the target's own domain: would leak labels
    with pytest.raises(transfer.SourceUnavailable, match="other than 'phantom2d:0'"):
        active.pretrained(tiny, "indomain")
    other = transfer.indomain_checkpoint("cnn", "phantom2d:2", one, seed=1, **kw)
    transfer.indomain_checkpoint("cnn", "phantom2d:1", one, model_kw={"width": 8}, **kw)  # newest, but does not fit
    assert same.parent == other.parent == data_root / "checkpoints" / "transfer" / code_version()
    state, desc = active.pretrained(tiny, "indomain")
    assert "phantom2d:2" in desc and other.name in desc
    src = torch.load(other, map_location="cpu", weights_only=True)["state_dict"]
    feats = [k for k in src if k.startswith("features.")]
    assert feats and all(torch.equal(state[k], src[k]) for k in feats)
    net = active.load_encoder(models.create("cnn", 1, tiny.n_outputs, dropout=0.3), state)
    assert all(torch.equal(net.state_dict()[k], src[k]) for k in feats)


# ----------------------------------------------------------------------------- annotation cost
def _frame(curves):
    return pd.DataFrame([{"strategy": s, "seed": seed, "n_labels": n, "test_auc": v}
                         for s, per_seed in curves.items() for seed, vals in enumerate(per_seed)
                         for n, v in zip([10, 20, 30, 40], vals)])


def test_labels_saved_vs_random_on_constructed_curves():
    f = _frame({"random": [[0.6, 0.7, 0.8, 0.9]],
                "fast": [[0.7, 0.8, 0.9, 0.95]],          # reaches 0.9 at 30 labels
                "interp": [[0.6, 0.85, 0.95, 0.95]],      # crosses 0.9 half-way between 20 and 30
                "never": [[0.5, 0.6, 0.7, 0.8]],
                "slow_start": [[0.95, 0.95, 0.95, 0.95]]})
    r = active.labels_saved_vs_random(f, "fast")
    assert r["target"] == pytest.approx(0.9) and r["n_random"] == pytest.approx(40)
    assert r["n_strategy"] == pytest.approx(30) and r["saved"] == pytest.approx(0.25)
    assert active.labels_saved_vs_random(f, "interp")["saved"] == pytest.approx(1 - 25 / 40)
    assert math.isnan(active.labels_saved_vs_random(f, "never")["saved"])
    assert active.labels_saved_vs_random(f, "slow_start")["saved"] == pytest.approx(0.75)
    assert active.labels_saved_vs_random(f, "random")["saved"] == pytest.approx(0.0)
    assert active.labels_saved_vs_random(f, "fast", target=0.8)["saved"] == pytest.approx(1 - 20 / 30)
    table = active.cost_table(f)
    assert table.set_index("strategy").loc["never", "labels saved vs random"] == "not reached"


def test_labels_saved_uses_the_mean_over_seeds():
    f = _frame({"random": [[0.6, 0.7, 0.8, 0.9], [0.6, 0.7, 0.8, 0.7]],   # mean final 0.8
                "al": [[0.8, 0.9, 0.9, 0.9], [0.6, 0.7, 0.9, 0.9]]})     # mean 0.7, 0.8, ...
    r = active.labels_saved_vs_random(f, "al")
    assert r["target"] == pytest.approx(0.8)
    assert r["n_random"] == pytest.approx(30) and r["n_strategy"] == pytest.approx(20)
    assert r["saved"] == pytest.approx(1 / 3)
    assert active.labels_needed([10, 20], [0.5, 0.7], 0.6) == pytest.approx(15)


def test_queried_classes_histogram(tiny):
    f = pd.DataFrame([{"strategy": "a", "round": 0, "queried": [0, 1]},
                      {"strategy": "a", "round": 1, "queried": [2, 3, 4]}])
    h = active.queried_classes(f, tiny)
    assert int(h.loc[0, "n"]) == 3
    y = tiny.train.y[[2, 3, 4], 0].numpy()
    assert h.loc[0, tiny.labels[int(y[0])]] == pytest.approx((y == y[0]).mean())


# ----------------------------------------------------------------------------- human in the loop
def test_labeling_panel_callbacks_update_state(tiny):
    learner = active.ActiveLearner(tiny, "margin", RECIPE, seed=2, pool=40, device="cpu", **FAST)
    learner.seed_set(6)
    learner.fit()
    panel = active.LabelingPanel(learner, k=4)
    box = panel.widget  # built, never waits
    assert box is not None and len(panel._items_box.children) == 0
    panel.buttons["propose"].click()
    batch = panel.batch.copy()
    assert len(batch) == 4 and not set(batch) & set(learner.labelled)
    assert panel.batch_probs.shape == (4, 4) and len(panel._items_box.children) == 4
    np.testing.assert_allclose(panel.batch_probs.sum(1), 1, atol=1e-5)
    truth0 = int(learner.truth[batch[0]])
    wrong = (truth0 + 1) % 4
    panel.label(0, wrong)                        # the student disagrees with the reference
    assert panel._toggles[0].value == wrong
    panel._toggles[1].value = 2                  # a click on a toggle button
    assert panel.answers[1] == 2
    panel.buttons["retrain"].click()             # incomplete: refused, state unchanged
    assert learner.n_labels == 6 and "label every" in panel._status.value
    panel.buttons["ground_truth"].click()
    assert panel.answers[0] == wrong and panel.answers[2] == int(learner.truth[batch[2]])
    panel.buttons["retrain"].click()
    assert learner.n_labels == 10 and len(learner.history) == 2
    assert int(learner.given[batch[0], 0]) == wrong
    assert learner.history[-1]["n_wrong_labels"] == int(wrong != truth0) + int(2 != learner.truth[batch[1]])
    assert len(panel.batch) == 0 and panel.curve()[0] == [6, 10]
    assert list(panel.curve_fig.axes[0].lines[0].get_xdata()) == [6, 10]
    with pytest.raises(IndexError):
        panel.label(0, 1)


# ----------------------------------------------------------------------------- paired verdicts, validation size
def test_paired_at_and_best_strategy_on_constructed_frames():
    f = _frame({"random": [[.6, .7, .8, .9], [.6, .71, .8, .9], [.6, .69, .8, .9]],
                "aift": [[.6, .8, .85, .9], [.6, .82, .85, .9], [.6, .79, .86, .9]],
                "bald": [[.6, .75, .8, .9], [.6, .7, .8, .9], [.6, .72, .8, .9]]})
    p = active.paired_at(f, "aift", "random", 20)
    assert p.n == 3 and p.delta == pytest.approx(0.1033, abs=1e-3) and p.verdict == "better"
    assert active.paired_at(f, "aift", "random").verdict == "within noise"   # 40 labels: no difference
    assert active.best_strategy(f, 20) == "aift"
    with pytest.raises(ValueError, match="valid: random, aift, bald"):
        active.paired_at(f, "coreset", "random", 20)
    with pytest.raises(ValueError, match="no strategy other than"):
        active.best_strategy(f[f.strategy == "random"], 20)


def test_val_labels_effect_reruns_the_other_setting_only(tiny, monkeypatch):
    frame, _ = active.compare(tiny, ["entropy", "random"], [4, 8], seeds=(0, 1), recipe=RECIPE, progress=False,
                              pool=40, device="cpu", **FAST)
    calls = []
    real = active.verdicts.compare

    def spy(splits, strategies, budget, seeds, recipe, **kw):
        calls.append(recipe.val_labels)
        return real(splits, strategies, budget, seeds, recipe, **kw)

    monkeypatch.setattr(active.verdicts, "compare", spy)
    runs, table = active.val_labels_effect(tiny, ["entropy", "random"], [4, 8], (0, 1), RECIPE, frame=frame,
                                           pool=40, device="cpu", **FAST)
    assert calls == ["matched"]                                        # "full" reused from the frame
    assert set(runs.val_labels) == {"full", "matched"} and len(runs) == 16
    assert set(runs.steps) == {RECIPE.steps}                           # one budget for both settings
    full, matched = (table[table.val_labels == v] for v in ("full", "matched"))
    assert (matched.n_val.to_numpy() < full.n_val.to_numpy()).all()
    assert list(table.val_labels) == ["full", "matched", "matched − full"] * 2
    assert set(full.verdict) <= {"better", "worse", "within noise"}
    with pytest.raises(ValueError, match="two strategies"):
        active.val_labels_effect(tiny, ["random"], [4], (0,), RECIPE)


def test_profiles_use_one_step_budget_and_check_val_labels():
    import importlib
    params = importlib.import_module("mednb.params")
    for name, prof in active.PROFILES.items():
        assert not {"EPOCHS", "MIN_STEPS", "VOLUME_EPOCHS"} & set(prof), name
        assert prof["STEPS"] >= 1 and prof["STEPS_3D"] >= 1 and prof["VAL_LABELS"] in engine.VAL_LABELS
        r = engine.Recipe.from_knobs(prof, active.RECIPE)
        assert r.steps == prof["STEPS"] and r.val_labels == prof["VAL_LABELS"]
        assert engine.Recipe.from_knobs(prof, active.RECIPE, suffix="_3D").steps == prof["STEPS_3D"]
    with pytest.raises(params.ParamError, match="valid: full, matched"):
        params.validate("06_active_learning", {"VAL_LABELS": "half"}, "smoke")
    with pytest.raises(params.ParamError, match="STEPS must be"):
        params.validate("06_active_learning", {"STEPS": 0}, "smoke")
