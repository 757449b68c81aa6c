"""Paired verdicts over seeds, the claims ledger, the one-budget rule and claims.md of `mednb run`."""
from __future__ import annotations

import math

import pytest

from mednb import claims, runner
from conftest import write_notebook


def test_paired_interval_and_verdict_words():
    p = claims.paired({0: 0.83, 1: 0.82, 2: 0.84}, {0: 0.80, 1: 0.80, 2: 0.80})
    assert p.n == 3 and p.delta == pytest.approx(0.03) and p.sd == pytest.approx(0.01)
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2 df)
    assert (p.lo, p.hi) == (pytest.approx(0.03 - half), pytest.approx(0.03 + half))
    assert p.verdict == "better" and "95 % CI over 3 paired seeds; n=3: a wide interval" in str(p)
    assert claims.paired([0.70, 0.71, 0.69], [0.80, 0.83, 0.81]).verdict == "worse"
    assert claims.paired([0.70, 0.71], [0.80, 0.83]).verdict == "within noise"  # 2 seeds: t(0.975, 1) = 12.7
    assert claims.paired([0.80, 0.84, 0.78], [0.81, 0.79, 0.80]).verdict == "within noise"
    # lower is better (e.g. a loss or ECE): a negative difference is the better one
    assert claims.paired([0.10, 0.11, 0.12], [0.20, 0.22, 0.21], higher_is_better=False).verdict == "better"


def test_paired_uses_shared_seeds_and_says_when_there_is_no_interval():
    p = claims.paired({0: 0.9, 1: 0.8, 7: 0.5}, {1: 0.7, 2: 0.1})
    assert p.n == 1 and p.delta == pytest.approx(0.1) and math.isnan(p.lo) and p.verdict == "within noise"
    assert "n=1: no interval" in str(p)
    with pytest.raises(ValueError, match="nothing to pair"):
        claims.paired({0: 1.0}, {1: 1.0})
    with pytest.raises(ValueError, match="one value per seed"):
        claims.paired([1.0, 2.0], [1.0])


def test_claim_record_and_table():
    p = claims.paired([0.83, 0.82, 0.84], [0.80, 0.80, 0.80])
    rec = claims.claim("strong augmentation beats none at 10 % labels", p, comparison="policy_x_fraction",
                       steps=180, dataset="breastmnist", citation="Shorten & Khoshgoftaar 2019", paper="—")
    assert rec["verdict"] == "better" and rec["n"] == 3 and rec["budget"] == "180 steps"
    assert rec["delta"] == pytest.approx(0.03) and rec["ours"].startswith("Δ +0.030 [")
    other = claims.claim("UNet++ reaches the paper's IoU", 0.71, comparison="archs", steps="600 steps",
                         verdict="does not reproduce", n=1, paper="+3.9 IoU points")
    md = claims.markdown([{"notebook": "02_augmentation", **rec}, other])
    assert "| notebook | claim | citation | paper | ours | n | budget | verdict |" in md
    assert "| 02_augmentation | strong augmentation beats none" in md and "does not reproduce" in md
    assert "beats none at 10 % labels (breastmnist) |" in md  # the dataset, when the text does not name it
    assert claims.label({"claim": "AIFT beats random (breastmnist)", "dataset": "breastmnist"}).count("breastmnist") == 1
    with pytest.raises(ValueError, match="verdict"):
        claims.claim("no verdict", 0.5, comparison="c", steps=1)


def test_one_budget_of_a_comparisons_tables():
    import pandas as pd
    a, b = pd.DataFrame({"steps": [120, 120]}), pd.DataFrame({"steps": [120]})
    assert claims.one_budget(a, b) == 120
    assert claims.one_budget(None, pd.DataFrame()) is None and claims.one_budget(pd.DataFrame({"x": [1]})) is None
    with pytest.raises(ValueError, match="different budgets: \\[20, 120\\] steps"):
        claims.one_budget(a, pd.DataFrame({"steps": [20]}))


def test_budget_rule_flags_unequal_steps_and_missing_tags():
    ok = [{"metric": "test_auc", "comparison": "policies", "steps": 180, "dataset": "d", "label_fraction": f}
          for f in (0.1, 1.0)]
    assert claims.budget_problems(ok) == []
    bad = ok + [{"metric": "test_auc", "comparison": "policies", "steps": 20, "dataset": "d"},
                {"metric": "val_auc", "comparison": "sources", "dataset": "d"}]
    problems = claims.budget_problems(bad)
    assert len(problems) == 2 and "no steps tag" in problems[0] and "different budgets (180, 20 steps)" in problems[1]
    demo = [{"metric": "test_auc", "comparison": "budget_demo", "steps": s, "dataset": "d"} for s in (20, 180)]
    assert claims.budget_problems(demo) == []  # a demonstration of unequal budgets says so in its name
    other_data = ok + [{"metric": "test_auc", "comparison": "policies", "steps": 40, "dataset": "e"}]
    assert claims.budget_problems(other_data) == []  # one budget per comparison and dataset


def test_mednb_run_writes_claims_md_and_flags_unequal_budgets(tmp_path):
    nbs = tmp_path / "nbs"
    write_notebook(nbs / "00_fair.ipynb", {}, [
        "import mednb\nfrom mednb import claims\n"
        "a, b = {0: 0.83, 1: 0.82}, {0: 0.80, 1: 0.81}\n"
        "for s in a:\n"
        "    mednb.record('test_auc', a[s], comparison='policies', steps=60, seed=s, policy='strong')\n"
        "    mednb.record('test_auc', b[s], comparison='policies', steps=60, seed=s, policy='none')\n"
        "claims.claim('strong beats none', claims.paired(a, b), comparison='policies', steps=60)"])
    write_notebook(nbs / "01_unfair.ipynb", {}, [
        "import mednb\nmednb.record('test_auc', 0.7, comparison='fractions', steps=20, label_fraction=0.1)\n"
        "mednb.record('test_auc', 0.9, comparison='fractions', steps=180, label_fraction=1.0)"])
    out = tmp_path / "out"
    assert runner.run([], profile="smoke", out=out, notebooks_dir=nbs, log=lambda *_: None) == 0
    md = (out / "claims.md").read_text()
    assert "| 00_fair | strong beats none |" in md and "| 60 steps |" in md
    assert "01_unfair · comparison 'fractions': arms trained with different budgets (180, 20 steps)" in md
    assert "## Unequal training budgets" in (out / "report.md").read_text()
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert "comparison" in header and "steps" in header


def test_sweep_report_collects_the_claims_of_its_units(tmp_path):
    import json

    import nbformat

    from mednb.sweep import report
    for name, steps in (("02-aaaa", (60, 60)), ("02-bbbb", (20, 180))):
        d = tmp_path / "sw" / "units" / name
        d.mkdir(parents=True)
        (d / "unit.json").write_text(json.dumps({"notebook": "02_augmentation.ipynb", "params": {}, "profile": "smoke"}))
        (d / "status.json").write_text(json.dumps({"status": "ok", "seconds": 1.0}))
        (d / "metrics.jsonl").write_text("".join(
            json.dumps({"metric": "test_auc", "value": 0.8, "comparison": "policies", "steps": s, "seed": 0}) + "\n"
            for s in steps))
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("claims.claim(...)")
        rec = {"claim": f"strong beats none ({name})", "ours": "Δ +0.030", "n": 3, "budget": f"{steps[0]} steps",
               "verdict": "better", "comparison": "policies"}
        cell.outputs = [nbformat.v4.new_output("display_data", data={claims.MIME: rec, "text/plain": "claim"})]
        nb.cells = [cell]
        nbformat.write(nb, d / "02_augmentation.ipynb")
    report.write_report(tmp_path / "sw")
    md = (tmp_path / "sw" / "claims.md").read_text()
    assert "| 02-aaaa | strong beats none (02-aaaa) |" in md and "| 02-bbbb |" in md
    assert "02-bbbb · comparison 'policies': arms trained with different budgets (180, 20 steps)" in md
    assert "02-aaaa · comparison" not in md
