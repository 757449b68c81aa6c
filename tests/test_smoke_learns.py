"""The smoke profile learns: each notebook's classifiers, trained on their full smoke training set with the
smoke profile's values and the notebook's own calls, end at test AUC >= ``mednb.params.SMOKE_MIN_AUC`` on the
phantoms (chance: 0.5; notebook 09's models averaged over its seen hospitals), and notebook 05's 2D
segmenters at Dice >= ``SMOKE_MIN_DICE`` (an empty prediction scores 0). The runs that stay at chance by
design (1 % labels, active-learning rounds, notebook 05's 3D segmenters) are named in ``mednb.params`` and in
the notebooks' text, and are not checked here.
The 3D cases are marked ``slow`` (about 10–25 s each on one CPU core)."""
from __future__ import annotations

import importlib
import tempfile
from pathlib import Path

import pytest

params = importlib.import_module("mednb.params")  # the module (mednb.params is also the notebook function)


@pytest.fixture(scope="module", autouse=True)
def _shared_root(tmp_path_factory):
    """One data/cache root for the module: phantoms are generated once and shared by the cases."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDNB_DATA", str(tmp_path_factory.mktemp("smoke_data")))
        mp.setenv("MEDNB_CACHE_IN_DATA", "1")
        mp.delenv("MEDNB_CACHE", raising=False)
        yield


@pytest.fixture(autouse=True)
def _keep_shared_root(monkeypatch):
    monkeypatch.setenv("MEDNB_CACHE_IN_DATA", "1")  # conftest's per-test fixture points caches at MEDNB_DATA too


def smoke(stem: str) -> dict:
    return params.validate(stem, {}, "smoke")


def _aucs(records) -> dict:
    return {f"{r['model']}": r["value"] for r in records if r["metric"] == "test_auc"}


# ----------------------------------------------------------------------------- the notebooks' calls
def nb01(which: str) -> dict:
    from mednb import baseline, engine
    P = smoke("01_baseline_medmnist")
    if which == "3d":
        splits = baseline.load(P["DATASET_3D"], P["SIZE"], P["N_TRAIN_3D"])
        jobs = [(P["MODEL_3D"], engine.Recipe.from_knobs(P, engine.PAPER, suffix="_3D"))]
    else:
        splits = baseline.load(P["DATASET"], P["SIZE"], P["N_TRAIN"])
        recipe = engine.Recipe.from_knobs(P, engine.PAPER)
        jobs = [(P["MODEL"], recipe)] if which == "2d" else \
            [(m, recipe.replace(epochs=P["COMPARE_EPOCHS"])) for m in P["COMPARE_MODELS"]]
    out = {}
    for model, recipe in jobs:
        recs, _ = baseline.run_seeds(splits, model, P["SEEDS"][:1], recipe, device="cpu", progress=False)
        out.update(_aucs(recs))
    return out


def nb02() -> dict:
    from mednb import augment, data, engine
    P = smoke("02_augmentation")
    splits = data.load(P["DATASET"], P["SIZE"], counts=P["COUNTS"])
    grid = augment.label_fraction_grid(splits, P["POLICIES"], [1.0], P["SEEDS"][:1], recipe=engine.Recipe.from_knobs(P),
                                       model=P["MODEL"], strength=P["STRENGTH"], device="cpu", progress=False)
    return {f"{P['MODEL']} {r.policy}": r.test_auc for r in grid.itertuples()}


def nb02_3d() -> dict:
    from mednb import augment, data, engine, models
    P = smoke("02_augmentation")
    sp3 = data.load(P["DATASET_3D"], min(P["SIZE"], 64), counts=P["COUNTS_3D"], n_classes=P["PHANTOM_CLASSES_3D"])
    recipe3 = engine.Recipe.from_knobs(P, suffix="_3D")  # STEPS_3D, BATCH_SIZE_3D
    grid = augment.label_fraction_grid(sp3, P["POLICIES_3D"], [1.0], P["SEEDS_3D"][:1], recipe=recipe3,
                                       model=P["MODEL_3D"], model_kw=models.width_kw(P["MODEL_3D"], P["WIDTH_3D"]),
                                       strength=P["STRENGTH"], device="cpu", progress=False)
    return {f"{P['MODEL_3D']} {r.policy}": r.test_auc for r in grid.itertuples()}


def nb03(which: str) -> dict:
    from mednb import engine, transfer
    P = smoke("03_transfer_learning")
    recipe = engine.Recipe.from_knobs(P, transfer.RECIPE)  # STEPS: one budget for every arm
    fit = dict(body_lr_mult=P["BODY_LR_MULT"], freeze_stages=P["FREEZE_STAGES"], head_fraction=P["HEAD_FRACTION"],
               stem=P["STEM"], input_size=P["INPUT_SIZE"], device="cpu")
    source = transfer.domain_spec(P["SOURCE_DATASET"], P["SOURCE_SITE"])
    source_recipe = recipe.replace(steps=None, epochs=P["SOURCE_EPOCHS"], val_labels="full")
    if which == "3d":
        ckpt = transfer.indomain_checkpoint("cnn", source, source_recipe, size=P["SIZE"], counts=P["PHANTOM_COUNTS"],
                                            stem=P["STEM"], input_size=P["INPUT_SIZE"], device="cpu", progress=False,
                                            model_kw={"width": P["WIDTH_3D"]})
        vol = transfer.load_domain(P["DATASET_3D"], P["SIZE"], P["PHANTOM3D_COUNTS"], n_classes=P["PHANTOM_CLASSES_3D"])
        recipe3 = recipe.replace(steps=P["STEPS_3D"], batch_size=min(P["BATCH_SIZE"], 16))
        return {f"cnn_3d {strategy}": transfer.run(vol, "cnn", src, strategy, recipe3, checkpoint=ckpt,
                                                   model_kw={"width": P["WIDTH_3D"]},
                                                   label_fraction=P["LABEL_FRACTION_3D"], **fit).test["auc"]
                for strategy, src in (("scratch", "none"), ("finetune", "indomain"))}
    ckpt = transfer.indomain_checkpoint(P["MODEL"], source, source_recipe, size=P["SIZE"], counts=P["PHANTOM_COUNTS"],
                                        stem=P["STEM"], input_size=P["INPUT_SIZE"], device="cpu", progress=False)
    out = {f"{P['MODEL']} source {source}": transfer.checkpoint_info(ckpt)["test_auc"]}
    target = transfer.load_domain(transfer.domain_spec(P["DATASET"], P["SITE"]), P["SIZE"], P["PHANTOM_COUNTS"])
    for strategy in P["STRATEGIES"]:
        src = "none" if strategy == "scratch" else "indomain"
        res = transfer.run(target, P["MODEL"], src, strategy, recipe, label_fraction=1.0, seed=P["SEEDS"][0],
                           checkpoint=None if src == "none" else ckpt, **fit)
        out[f"{P['MODEL']} {strategy}"] = res.test["auc"]
    return out


def nb04(which: str = "2d") -> dict:
    from mednb import data, models, ssl
    P = smoke("04_self_supervised")
    if which == "3d":  # the notebook's section 5 calls
        s3 = data.load(P["DATASET_3D"], P["SIZE"], counts=P["PHANTOM_COUNTS_3D"])
        x3 = s3.train.x if P["N_UNLABELED_3D"] == 0 else s3.train.x[:P["N_UNLABELED_3D"]]
        bs = max(2, P["BATCH_SIZE"] // 4)
        g3 = ssl.pretrain("genesis", models.create(P["MODEL_3D"], s3.n_channels, s3.n_outputs, dims=3, size=P["SIZE"]),
                          x3, epochs=P["PRETRAIN_EPOCHS_3D"], batch_size=bs, lr=P["LR"], device="cpu",
                          seed=P["SEEDS"][0], progress=False, dataset=P["DATASET_3D"])
        recs = ssl.compare({"genesis": g3.model}, s3, model_name=P["MODEL_3D"], fractions=[1.0], seeds=P["SEEDS_3D"][:1],
                           protocols=["finetune"], progress=False, device="cpu",
                           recipe=ssl.finetune_recipe(P, "_3D"))
        return {f"3d {r['method']} {r['protocol']}": r["test_auc"] for r in recs}
    splits = data.load(P["DATASET"], P["SIZE"], counts=P["PHANTOM_COUNTS"])
    x = splits.train.x if P["N_UNLABELED"] == 0 else splits.train.x[:P["N_UNLABELED"]]
    pretrained = {}
    for m in P["METHODS"]:
        model = models.create(P["MODEL"], splits.n_channels, splits.n_outputs, size=P["SIZE"])
        pretrained[m] = ssl.pretrain(m, model, x, epochs=P["PRETRAIN_EPOCHS"], batch_size=P["BATCH_SIZE"], lr=P["LR"],
                                     device="cpu", seed=P["SEEDS"][0], progress=False, dataset=P["DATASET"]).model
    recs = ssl.compare(pretrained, splits, model_name=P["MODEL"], fractions=[1.0], seeds=P["SEEDS"][:1],
                       protocols=P["PROTOCOLS"], progress=False, device="cpu",
                       recipe=ssl.finetune_recipe(P))
    return {f"{r['method']} {r['protocol']}": r["test_auc"] for r in recs}


def nb05() -> dict:
    from mednb import engine, seg
    P = smoke("05_unetpp_segmentation")
    d2 = seg.load(P["DATA_2D"], P["SIZE"], counts=P["COUNTS_2D"], seed=P["SEEDS"][0])
    runs, _ = seg.compare(d2, P["SEEDS"][:1], engine.Recipe.from_knobs(P, seg.RECIPE), width=P["WIDTH"],
                          depth=P["DEPTH"], device="cpu", progress=False, crop=P["CROP"],
                          samples_per_epoch=P["SAMPLES_PER_EPOCH"], augment=P["AUGMENT"], val_crop=0)
    return {r.label: r.dice for r in runs.itertuples()}


def nb08() -> dict:
    """Every model of notebook 08 trained on all labels: the three convolutions, Genesis fine-tuned at 100 %
    and the augmented run (scratch at 100 % and "none" are the conv comparison's 3d run, reused)."""
    from mednb import volumes
    P = smoke("08_3d_volumes")
    d, s = P["DATASETS"][0], P["SIZES"][0]
    vol = volumes.load_volumes(d, s, P["PHANTOM_COUNTS"], phantom_classes=P["PHANTOM_CLASSES"])
    recipe = volumes.recipe_from(P)  # STEPS, BATCH_SIZE, LR, AUC_TOLERANCE, VAL_LABELS: one budget for every arm
    kw = dict(backbone=P["BACKBONE"], width=P["WIDTH"], device="cpu", progress=False)
    runs = volumes.compare_convs([d], [s], P["CONVS"], P["SEEDS"][:1], recipe, phantom_counts=P["PHANTOM_COUNTS"],
                                 phantom_classes=P["PHANTOM_CLASSES"], measure_memory=False, **kw)
    genesis, _ = volumes.genesis_vs_scratch(vol, recipe, conv="3d", fractions=[1.0], seeds=P["SEEDS"][:1],
                                            genesis_epochs=P["GENESIS_EPOCHS"], reuse=runs, **kw)
    aug = volumes.augment_on_off(vol, recipe, policy=P["AUGMENT"], conv="3d", seeds=P["SEEDS"][:1], reuse=runs,
                                 **kw)
    out = {f"{P['BACKBONE']}_{r.conv}": r.test_auc for r in runs.itertuples()}
    out.update({f"3d {r.init}": r.test_auc for r in genesis.itertuples()})
    out.update({f"3d augment {r.augment}": r.test_auc for r in aug.itertuples()})
    return out


def nb07(which: str) -> dict:
    from mednb import data
    from mednb.cam import evaluate as ev
    P = smoke("07_gradcam")
    recipe = ev.RECIPE.replace(epochs=P["EPOCHS"], batch_size=P["BATCH_SIZE"], lr=P["LR"])
    if which == "3d":
        vols = data.load("phantom3d", P["SIZE"], counts=P["VOLUME_COUNTS"], n_classes=P["PHANTOM_CLASSES_3D"])
        _, info = ev.trained(vols, "cnn", recipe.replace(epochs=P["EPOCHS_3D"], batch_size=16), seed=P["SEEDS"][0],
                             device="cpu", cache=False, progress=False)
        return {"cnn 3d": info["test"]["auc"]}
    phantoms = data.load("phantom2d", P["SIZE"], counts=P["PHANTOM_COUNTS"])
    return {m: ev.trained(phantoms, m, recipe, seed=P["SEEDS"][0], device="cpu", cache=False, progress=False)[1]
            ["test"]["auc"] for m in dict.fromkeys(P["MODELS"] + [P["MODEL"]])}


def nb09() -> dict:
    """Notebook 09's models on its seen hospitals: local-only (each on its own site), centralized, and the
    federated ones (Flower's Simulation Runtime); per method, the mean over the seen sites of the test AUC
    (the notebook's "mean site AUC"; a site's own test split holds a few dozen images of a skewed case mix)."""
    from mednb import federated as fed
    P = smoke("09_multisite_federated")
    methods = fed.check_plan(P["SITES"], P["ALPHA"], P["METHODS"])
    setups = fed.setups_from({**P, "DEVICE": "cpu"}, P["DATASETS"])
    site_sets = fed.build_all(P["DATASETS"], P["SEEDS"][:1], P["SITES"], P["ALPHA"], P["SIZE"], P["PHANTOM_COUNTS"])
    base, _ = fed.baselines(site_sets, setups, methods)
    with tempfile.TemporaryDirectory(prefix="mednb-09-") as work:  # site files and plans, as the notebook
        res = fed.simulate(list(site_sets.values()), [m for m in methods if m in fed.FEDERATED], setups,
                           Path(work) / "simulation")
    final = fed.final_table(base, res)
    return {f"{d} {m} mean site": g.mean() for (d, m), g in final.groupby(["dataset", "method"])["test_auc"]}


slow = pytest.mark.slow
CASES = [
    pytest.param(lambda: nb01("2d"), params.SMOKE_MIN_AUC, id="01_baseline_medmnist-MODEL"),
    pytest.param(lambda: nb01("compare"), params.SMOKE_MIN_AUC, id="01_baseline_medmnist-COMPARE_MODELS"),
    pytest.param(lambda: nb01("3d"), params.SMOKE_MIN_AUC, id="01_baseline_medmnist-MODEL_3D", marks=slow),
    pytest.param(nb02, params.SMOKE_MIN_AUC, id="02_augmentation-MODEL-POLICIES", marks=slow),
    pytest.param(nb02_3d, params.SMOKE_MIN_AUC, id="02_augmentation-MODEL_3D-POLICIES_3D", marks=slow),
    pytest.param(lambda: nb03("2d"), params.SMOKE_MIN_AUC, id="03_transfer_learning-MODEL-STRATEGIES", marks=slow),
    pytest.param(lambda: nb03("3d"), params.SMOKE_MIN_AUC, id="03_transfer_learning-inflated_3d", marks=slow),
    pytest.param(nb04, params.SMOKE_MIN_AUC, id="04_self_supervised-MODEL-METHODS", marks=slow),
    pytest.param(lambda: nb04("3d"), params.SMOKE_MIN_AUC, id="04_self_supervised-genesis_3d", marks=slow),
    pytest.param(nb05, params.SMOKE_MIN_DICE, id="05_unetpp_segmentation-2d", marks=slow),
    pytest.param(lambda: nb07("2d"), params.SMOKE_MIN_AUC, id="07_gradcam-MODELS"),
    pytest.param(lambda: nb07("3d"), params.SMOKE_MIN_AUC, id="07_gradcam-cnn_3d", marks=slow),
    pytest.param(nb08, params.SMOKE_MIN_AUC, id="08_3d_volumes-CONVS-genesis-AUGMENT", marks=slow),
    pytest.param(nb09, params.SMOKE_MIN_AUC, id="09_multisite_federated-METHODS-mean_site", marks=slow),
]


@pytest.mark.parametrize("run,threshold", CASES)
def test_smoke_classifiers_end_above_chance(run, threshold):
    scores = run()
    assert scores
    low = {k: round(v, 3) for k, v in scores.items() if not v >= threshold}
    assert not low, f"below {threshold} in the smoke profile: {low} (all: { {k: round(v, 3) for k, v in scores.items()} })"
