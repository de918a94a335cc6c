"""The statistics and the generated reading of benchmarks/saps_claims.py (pure functions, no training)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from benchmarks import claims_report as cr
from benchmarks import claims_stats as cs


def test_bootstrap_of_constant_differences_has_zero_width():
    lo, hi = cs.bootstrap_ci([0.3] * 10)
    assert lo == hi == pytest.approx(0.3)


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small = rng.normal(2.0, 1.0, size=10)
    large = rng.normal(2.0, 1.0, size=400)
    lo_s, hi_s = cs.bootstrap_ci(small)
    lo_l, hi_l = cs.bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s
    assert lo_l < 2.0 < hi_l
    # the standard error of a mean of 400 draws of sd 1 is 0.05: the 95 % width ≈ 4 × 0.05
    assert hi_l - lo_l == pytest.approx(3.92 * large.std(ddof=1) / math.sqrt(400), rel=0.1)
    assert hi_l - lo_l < hi_s - lo_s


def test_bootstrap_is_seeded():
    x = [0.1, 0.5, -0.2, 0.9, 0.3]
    assert cs.bootstrap_ci(x, seed=3) == cs.bootstrap_ci(x, seed=3)


def test_wilcoxon_matches_scipy_and_the_exact_distribution():
    d = [0.5, -0.1, 0.3, 0.8, 0.2, -0.4, 0.6]
    assert cs.wilcoxon_p(d) == pytest.approx(stats.wilcoxon(d).pvalue)
    # five positive differences: the exact two-sided p is 2 / 2**5 (all signs +, or all −)
    assert cs.wilcoxon_p([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2 / 32)
    assert cs.smallest_p(5) == pytest.approx(2 / 32)
    assert cs.wilcoxon_p([0.0, 0.0, 0.0]) == 1.0
    assert cs.wilcoxon_p([]) is None


def test_pair_uses_only_seeds_both_sides_have():
    a = {0: 1.0, 1: 2.0, 2: None, 3: float("nan"), 4: 5.0}
    b = {0: 0.5, 1: 1.0, 2: 1.0, 3: 1.0}
    assert cs.pair(a, b) == ([0, 1], [0.5, 1.0])


def test_compare_verdicts_follow_direction_and_significance():
    seeds = range(10)
    base = {s: 0.1 * s for s in seeds}
    ahead = {s: v + 0.2 + 0.01 * s for s, v in base.items()}
    higher = cs.compare(ahead, base, better="higher")
    assert higher["verdict"] == "better" and higher["n"] == 10
    assert higher["lo"] > 0 and higher["p"] < 0.05
    # for a measure where lower is better (cost, relearn gap) the same numbers are worse
    assert cs.compare(ahead, base, better="lower")["verdict"] == "worse"
    noisy = {s: v + (0.3 if s % 2 else -0.3) for s, v in base.items()}
    assert cs.compare(noisy, base)["verdict"] == "not significant"
    assert cs.compare({}, base)["verdict"] == "no data"
    # five pairs all ahead: p = 0.0625 can never pass 0.05, and the text says why
    five = cs.compare({s: 1.0 + s for s in range(5)}, {s: 0.0 for s in range(5)})
    assert five["verdict"] == "not significant"
    assert "no p below 0.05 is possible" in cs.verdict_text(five)


def test_sentences_follow_the_numbers():
    base = {s: 0.0 for s in range(10)}
    ahead = cs.compare({s: 0.2 + 0.01 * s for s in range(10)}, base)
    text = cs.sentence("SAPS (largest, full)", "random", "at 2 %", ahead)
    assert text.startswith("SAPS (largest, full) − random at 2 %: +0.25 [")
    assert text.endswith(": ahead") and "n = 10" in text and "p = 0.002" in text
    behind = cs.compare(base, {s: 0.2 + 0.01 * s for s in range(10)})
    assert cs.sentence("a", "b", "", behind).endswith(": behind")
    assert "−0.25" in cs.sentence("a", "b", "", behind)
    flat = cs.compare({s: (-1) ** s * 0.1 for s in range(10)}, base)
    assert cs.sentence("a", "b", "", flat).endswith(": not significant")
    cost = cs.compare(base, {s: 0.2 + 0.01 * s for s in range(10)}, better="lower")
    assert cs.sentence("a", "b", "", cost, words=("cheaper", "dearer")).endswith(": cheaper")


def test_split_is_disjoint_and_covers_the_seeds():
    sel, ev = cs.split_seeds(range(10))
    assert len(sel) == len(ev) == 5
    assert set(sel).isdisjoint(ev) and set(sel) | set(ev) == set(range(10))
    sel5, ev5 = cs.split_seeds([4, 3, 2, 1, 0])
    assert len(sel5) == 2 and len(ev5) == 3
    assert cs.split_seeds(range(10)) == (sel, ev)


def test_choice_never_reads_evaluation_seeds():
    sel, ev = cs.split_seeds(range(10))
    table = {
        # best on the selection seeds
        "a": {"removal": {s: 0.6 for s in range(10)}, "drop": {s: 0.0 for s in range(10)}},
        # far better on the evaluation seeds only: must not be chosen
        "b": {
            "removal": {s: (0.5 if s in sel else 100.0) for s in range(10)},
            "drop": {s: 0.0 for s in range(10)},
        },
        # best everywhere but over the test-accuracy limit on the selection seeds
        "c": {"removal": {s: 0.9 for s in range(10)}, "drop": {s: 0.05 for s in range(10)}},
        # missing a selection seed: not a candidate
        "d": {"removal": {s: 0.95 for s in range(10) if s != sel[0]}, "drop": {s: 0.0 for s in range(10)}},
    }
    assert cs.choose_best(table, sel, "removal", limits={"drop": 0.02}) == "a"
    # the choice is a function of the selection seeds alone: changing evaluation values changes nothing
    for cid in table:
        for s in ev:
            table[cid]["removal"][s] = -1e9
    assert cs.choose_best(table, sel, "removal", limits={"drop": 0.02}) == "a"
    assert cs.choose_best(table, sel, "removal", better="lower", limits={"drop": 0.02}) == "b"
    assert cs.choose_best(table, sel, "removal", allowed=lambda c: c != "a", limits={"drop": 0.02}) == "b"


def test_fdr_matches_benjamini_hochberg_by_hand():
    q = cs.fdr([0.01, None, 0.04, 0.03])
    # sorted p 0.01, 0.03, 0.04 (m = 3): q = min over the tail of p·m/rank -> 0.03, 0.04, 0.04
    assert q[1] is None
    assert q[0] == pytest.approx(0.03) and q[3] == pytest.approx(0.04) and q[2] == pytest.approx(0.04)


def test_summary_reads_only_the_given_seeds():
    v = {0: 1.0, 1: 3.0, 2: 100.0, 3: None}
    s = cs.summary(v, [0, 1, 3])
    assert s["n"] == 2 and s["mean"] == 2.0 and s["std"] == pytest.approx(math.sqrt(2))


# ---------------------------------------------------------------------------------------------
# the report built from synthetic cells: its sentences must follow the numbers


def _records(seeds=range(10), fractions=(0.01, 0.05), method="masked_finetune"):
    """SAPS (paper's reading) clearly ahead of random at 1 %, level with it at 5 %; magnitude far ahead."""
    out = []
    for s in seeds:
        noise = 0.01 * ((s * 7) % 5)
        for f in fractions:
            vals = {
                cr.PAPER_FAMILY: 0.5 + noise,
                "random": (0.2 if f == 0.01 else 0.5 + (0.05 if s % 2 else -0.05)) + noise,
                "magnitude": 0.9 + noise,
            }
            for fam, v in vals.items():
                label = "SAPS (largest diag H), full data" if fam.startswith("saps") else fam
                out.append(
                    {
                        "seed": s,
                        "id": f"{fam}@{f:g}/{method}",
                        "family": fam,
                        "label": label,
                        "strategy": fam,
                        "fraction": f,
                        "method": method,
                        "backdoor_removal": v,
                        "relearn_gap": 0.5,
                        "test_acc_drop": 0.0,
                        "retrain_ratio": 0.2 if fam.startswith("saps") else 0.05,
                        "unchanged": float(fam == "random" and f == 0.05),
                        "relearn_curve": [0.0, 0.5],
                        "relearn_steps": [0, 20],
                        "full_cost": True,
                    }
                )
    return out


def test_report_sentences_follow_synthetic_numbers():
    recs = _records()
    an = cr.analyze(recs, main="backdoor_removal", expected=len(recs) + 6, references={})
    assert an["missing"] == 6 and an["cells"] == len(recs)
    at = {(p["baseline"], p["fraction"], p["measure"]): p for p in an["paired"]}
    assert at[("random", 0.01, "backdoor_removal")]["verdict"] == "better"
    assert at[("random", 0.05, "backdoor_removal")]["verdict"] == "not significant"
    assert at[("magnitude", 0.01, "backdoor_removal")]["verdict"] == "worse"
    # SAPS costs 0.2 of retraining, the baselines 0.05: dearer at every budget
    assert at[("random", 0.01, "retrain_ratio")]["verdict"] == "worse"
    text = "\n".join(cr.reading("digits-backdoor", an, "masked_finetune"))
    assert "(6 missing)" in text
    assert (
        "vs random (masked_finetune, backdoor removal): ahead at 1 %; behind at none; not significant at 5 %"
        in text
    )
    assert "vs magnitude (masked_finetune, backdoor removal): ahead at none; behind at 1 %, 5 %" in text
    # the chosen configuration is magnitude, and its numbers come from the evaluation seeds
    best = an["split"]["tiers"]["any cost"]["best"]
    assert best["id"].startswith("magnitude@")
    assert best["evaluation"]["backdoor_removal"]["n"] == len(an["split"]["evaluation_seeds"])
    # the cost limit (≤ 10 % of retraining) rules SAPS out of the cheap tier
    assert an["split"]["tiers"]["≤ 10 % of retraining"]["saps"] is None
    table = "\n".join(cr.paper_table(an, "masked_finetune"))
    assert "**ahead**" in table and "**behind**" in table
    assert "returned θ* unchanged" in text and "masked_finetune 10 of 60" in text
    # a label with bars stays one table cell
    bars = [{**r, "label": "magnitude |θ|"} if r["family"] == "magnitude" else r for r in recs]
    rows = cr.config_table(
        cr.analyze(bars, main="backdoor_removal", expected=0, references={}), "masked_finetune"
    )

    def bars_in(row):
        return len(re.findall(r"(?<!\\)\|", row))

    assert [bars_in(r) for r in rows if "magnitude" in r] == [bars_in(rows[0])] * 2


def test_report_says_when_costs_leave_out_selection():
    recs = [{**r, "full_cost": False} for r in _records(seeds=range(6))]
    an = cr.analyze(recs, main="backdoor_removal", expected=len(recs), references={})
    assert not an["full_cost"]
    assert any("leave out selection" in s for s in cr.reading("x", an, "masked_finetune"))


# ---------------------------------------------------------------------------------------------
# the grid: valid configs, the cell count it promises, one configuration id per cell


def test_grid_configs_are_valid_and_ids_unique():
    from benchmarks import saps_claims as sc

    for name, scen in sc.SCENARIOS.items():
        specs = [s for cfg in sc.sweep_configs(name, 3) for s in sc.cell_specs(cfg)]
        fr, grid, extra = len(scen["fractions"]), len(scen["grid"]), len(scen["extra"])
        # grid methods: 12 SAPS readings (3 curvature data × global/per layer × largest/smallest)
        # and 4 baselines at every budget, 2 fixed masks; extra methods: 2 readings + 4 baselines
        assert len(specs) == grid * (16 * fr + 2) + extra * (6 * fr + 2)
        ids = [sc.describe(s)["id"] for s in specs]
        assert len(set(ids)) == len(ids)
        assert {s["seed"] for s in specs} == {3}
        if scen["target_by_seed"]:
            assert {s["scenario"]["target"] for s in specs} == {3}
        data = {sc.describe(s)["family"].split(":")[-1] for s in specs if s["strategy"]["name"] == "saps"}
        assert data == {"full", "forget", "corrected"}


def test_flatten_reads_full_cost_and_amortized_ratio():
    from benchmarks import saps_claims as sc

    spec = sc.cell_specs(sc.sweep_configs("digits-backdoor", 0)[0])[0]
    row = {
        "metrics": {
            "backdoor_removal": 0.5,
            "relearn_gap": 0.2,
            "relearn_curve": {"steps": [0, 20], "value": [0.1, 0.4]},
        },
        "seconds": 2.0,
        "seconds_select": 1.5,
        "seconds_update": 0.5,
        "seconds_amortized": 0.5,
        "seconds_select_parts": {"curvature": 1.4},
        "retrain_ratio": 0.2,
        "seconds_reference": {"retrain": 10.0},
    }
    rec = sc.flatten(spec, row)
    assert rec["full_cost"] and rec["backdoor_removal"] == 0.5 and rec["relearn_curve"] == [0.1, 0.4]
    assert rec["amortized_ratio"] == pytest.approx(0.05) and rec["curvature_ratio"] == pytest.approx(0.14)
    assert not sc.flatten(spec, {"metrics": {}, "seconds": 1.0})["full_cost"]


def test_json_file_parses_and_keeps_every_cell():
    from benchmarks import saps_claims as sc

    recs = _records(seeds=range(4))
    an = cr.analyze(recs, main="backdoor_removal", expected=len(recs), references={})
    data = json.loads(sc.json_text({"x": an, "y": an}, {"date": "d"}, {"x": recs, "y": recs}))
    x = data["scenarios"]["x"]
    assert len(x["cells"]) == len(recs) and len(x["paired"]) == len(an["paired"])
    assert x["labels"][cr.PAPER_FAMILY] == "SAPS (largest diag H), full data"
    assert x["cells"][0]["backdoor_removal"] == pytest.approx(recs[0]["backdoor_removal"], rel=1e-4)


def test_scale_config_is_valid_and_backdoors_one_percent_of_the_training_images():
    from benchmarks import scale
    from core import config as config_mod

    smoke = scale.config(scale.parse(["--smoke"]))
    assert smoke["train_size"] == 512 and smoke["train"]["epochs"] == 1
    assert smoke["scenario"]["size"] == 10 and smoke["curvature"]["samples"] == 128
    full = config_mod.normalize(scale.config(scale.parse(["--train-size", "50000", "--seed", "3"])))
    assert full["model"] == "resnet18" and full["scenario"]["size"] == 500 and full["scenario"]["target"] == 3
    assert "samples" not in full["curvature"]  # the exact diagonal over the whole training set


def _write_cifar_batches(folder, n: int = 10) -> None:
    """CIFAR-10's python pickles (5 training batches and a test batch of n random images each)."""
    import pickle

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, n).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch))


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["fashion-mnist", "cifar10"])
def test_scale_runs_end_to_end_on_the_cpu_with_small_inputs(dataset, tmp_path, monkeypatch):
    """benchmarks/scale.py's whole path — resnet18 on Fashion-MNIST, or on CIFAR-10 read from a
    folder (--root; tiny pickles written here): train, retrain, exact curvature on a subsample,
    masked unlearning, the summary and its JSON — on 40 images and two strategies (the relearning
    attack off: 20 Adam steps of resnet18 per model are most of a CPU run)."""
    from benchmarks import scale

    monkeypatch.setattr(
        scale, "STRATEGIES", [{"name": "saps", "fraction": 0.02, "largest": True}, {"name": "all"}]
    )
    out_path = tmp_path / "scale.json"
    args = ["--smoke", "--train-size", "40", "--test-size", "10", "--samples", "8", "--device", "cpu"]
    if dataset == "cifar10":
        _write_cifar_batches(tmp_path / "cifar")
        args += ["--dataset", "cifar10", "--root", str(tmp_path / "cifar")]
    out = scale.main([*args, "--no-relearn", "--store", str(tmp_path / "runs"), "--out", str(out_path)])
    saved = json.loads(out_path.read_text())
    assert saved["config"]["model"] == "resnet18" and saved["config"]["train_size"] == 40
    assert saved["config"]["dataset"] == dataset and f"on {dataset} (40 training images)" in saved["markdown"]
    assert saved["config"]["curvature"] == {
        **saved["config"]["curvature"],
        "samples": 8,
        "batch_size": 256,
    }
    s = saved["summary"]
    assert "CPU" in s["device"] and s["curvature_images"] == 8 and s["seconds"]["curvature"] > 0
    assert [r["label"] for r in s["strategies"]] == ["SAPS (largest diag H) @ 2 %", "all parameters"]
    assert all(r["retrain_ratio"] > 0 and r["relearn_gap"] is None for r in s["strategies"])
    assert out["markdown"] == saved["markdown"] and "| all parameters |" in saved["markdown"]


def test_label_flip_budgets_are_shares_of_the_retraining_steps_and_valid_options():
    from benchmarks import label_flip
    from core import unlearning

    train = {"epochs": 4, "batch_size": 100}
    assert label_flip.finetune_steps(0.5, 1000, train) == 20  # 0.5 × 4 epochs × 10 batches
    assert label_flip.finetune_steps(0.1, 1001, train) == 4  # the last partial batch is a step
    grid = label_flip.settings((0.1, 1.0), 1000, train)
    assert grid[0][:2] == ("masked_finetune", {})  # the default method untouched
    assert [g[1]["steps"] for g in grid[1:]] == [4, 40]
    for method, options, strategies, name in grid:
        unlearning.check_hparams(options, method=method)
        assert strategies and name
    assert grid[0][2] == label_flip.DEFAULT_STRATEGIES
    masks = label_flip.settings((0.1,), 1000, train, label_flip.STRATEGIES)[0][2]
    assert masks == label_flip.STRATEGIES and masks is not label_flip.STRATEGIES  # a copy
    assert any(m["name"] == "saps" for m in masks)


def test_label_flip_schedule_reaches_the_models_config_and_leaves_the_constant_keys():
    from benchmarks import label_flip
    from core import artifacts, config

    plain = config.normalize({**label_flip.scenario("constant"), "strategies": []})
    cos = config.normalize({**label_flip.scenario("cosine"), "strategies": []})
    assert plain == config.normalize({**label_flip.SCENARIO, "strategies": []})
    assert cos["train"]["schedule"] == "cosine" and "schedule" not in label_flip.SCENARIO["train"]
    assert artifacts.model_key(cos, "original") != artifacts.model_key(plain, "original")
    one = config.normalize({**label_flip.scenario("constant", source=5, to=7), "strategies": []})
    assert one["scenario"] == {**plain["scenario"], "source": 5, "to": 7}
    assert label_flip.scenario("constant", source=5)["scenario"]["source"] == 5
    assert "source" not in label_flip.SCENARIO["scenario"]  # the random flip untouched
    wide = config.normalize(
        {**label_flip.scenario("cosine", model="mlp_wide", epochs=40, lr=1e-3), "strategies": []}
    )
    assert (wide["model"], wide["train"]["epochs"], wide["train"]["lr"]) == ("mlp_wide", 40, 1e-3)
    assert wide["train"]["schedule"] == "cosine" and wide["scenario"] == plain["scenario"]
    assert label_flip.SCENARIO["model"] == "cnn" and label_flip.SCENARIO["train"]["epochs"] == 5
    assert artifacts.model_key(wide, "original") != artifacts.model_key(cos, "original")


def test_label_flip_finetune_lr_is_a_third_of_the_training_lr():
    from benchmarks import label_flip

    assert label_flip.finetune_lr({"lr": 3e-3}) == pytest.approx(1e-3)
    assert label_flip.finetune_lr({}) == pytest.approx(1e-3)  # the config's default lr
    grid = label_flip.settings((0.1,), 1000, {"epochs": 4, "batch_size": 100, "lr": 6e-4})
    assert grid[1][1]["lr"] == pytest.approx(2e-4)


def test_label_flip_control_trains_a_copy_and_leaves_theta_star_alone():
    import torch
    from torch import nn

    from benchmarks import label_flip

    torch.manual_seed(0)
    original = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    before = [p.detach().clone() for p in original.parameters()]
    x, y = torch.rand(50, 1, 2, 2), torch.randint(3, (50,))
    train = {"batch_size": 16, "lr": 3e-3}
    trained = label_flip.continued_training(original, x, y, steps=5, seed=0, train=train)
    assert all(torch.equal(a, b) for a, b in zip(before, original.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(before, trained.parameters()))
    again = label_flip.continued_training(original, x, y, steps=5, seed=0, train=train)
    assert all(torch.equal(a, b) for a, b in zip(trained.parameters(), again.parameters()))  # seeded
    assert all(
        torch.equal(a, b)
        for a, b in zip(before, label_flip.continued_training(original, x, y, 0, 0, train).parameters())
    )


def _lf_result(seeds, restored, scenario=None):
    cells = [
        {
            "seed": s,
            "setting": "masked_finetune (defaults)",
            "label": "last layer",
            "restored_pct": r,
            "retrain_ratio": 0.05,
        }
        for s, r in zip(seeds, restored)
    ]
    facts = [
        {
            "seed": s,
            "test_acc_original": 0.88,
            "test_acc_retrained": 0.9,
            "gap": 0.02,
            "gap_test_images": 200,
            "test_acc_clean_other_seed": 0.9,
            "noise_floor": 0.001,
            "flipped_label_predicted_original": 0.4,
            "true_label_on_flipped_original": 0.5,
            "true_label_on_flipped_retrained": 0.99,
        }
        for s in seeds
    ]
    return {
        "benchmark": "label_flip",
        "created": "2026-11-29T00:00:00+00:00",
        "machine": "test",
        "scenario": scenario or {"model": "mlp_wide"},
        "budgets": [0.1],
        "masks": [{"name": "last_layer"}],
        "bar": 50.0,
        "facts": facts,
        "cells": cells,
    }


def test_label_flip_merge_pools_disjoint_seeds_and_recomputes_the_table(tmp_path):
    from benchmarks import label_flip

    a, b = _lf_result([0, 1, 2], [40.0, 60.0, 70.0]), _lf_result([3, 4], [55.0, 30.0])
    out = label_flip.merge([b, a], ["b.json", "a.json"])
    assert [f["seed"] for f in out["facts"]] == [0, 1, 2, 3, 4]
    (row,) = out["table"]
    assert row["seeds"] == 5 and row["at_bar"] == 3
    assert row["restored_pct"]["median"] == 55.0 and row["restored_pct"]["min"] == 30.0
    assert [m["file"] for m in out["merged_from"]] == ["b.json", "a.json"]
    assert "| last layer | 5 |" in out["markdown"]
    with pytest.raises(ValueError, match="'scenario' differs"):
        label_flip.merge([a, _lf_result([3], [50.0], {"model": "cnn"})], ["a.json", "c.json"])
    with pytest.raises(ValueError, match=r"seed\(s\) \[2\]"):
        label_flip.merge([a, _lf_result([2, 3], [50.0, 50.0])], ["a.json", "d.json"])
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    merged = label_flip.main(["--merge", str(pa), str(pb), "--out", str(tmp_path / "ab.json")])
    assert json.loads((tmp_path / "ab.json").read_text())["table"] == merged["table"]
    assert (tmp_path / "ab.md").read_text().startswith("| seed |")
    with pytest.raises(SystemExit) as e:
        label_flip.main(["--merge", str(pa)])  # no --out
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        label_flip.main(
            ["--merge", str(pa), str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.json")]
        )
    assert e.value.code == 2 and not (tmp_path / "x.json").exists()
