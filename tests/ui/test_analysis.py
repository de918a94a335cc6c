"""ui.analysis: the tables, series and masks the pages show, checked against hand-made cases."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch

from core import config as core_config
from core import experiment, selection
from core.store import RunStore
from ui import analysis, state

CURVE = {"steps": [0, 1, 2, 5, 10, 20], "value": [0.1, 0.3, 0.5, 0.7, 0.8, 0.9]}


def row(name, fraction, *, largest=True, log=None, **metrics):
    strategy = {"name": name, "largest": largest, **({"fraction": fraction} if fraction else {})}
    return {
        "name": name,
        "largest": largest,
        "fraction": fraction,
        "strategy": strategy,
        "label": selection.strategy_label(strategy, fraction),
        "method": "masked_finetune",
        "method_label": "Masked fine-tuning",
        "n_selected": 5,
        "dead_selected": 0,
        "seconds_select": 1.0,
        "seconds_update": 0.5,
        "seconds": 1.5,
        "seconds_amortized": 0.6,
        "retrain_ratio": 0.15,
        "log": log or {},
        "metrics": {"test_acc": 0.9, "asr": 0.2, "relearn_curve": CURVE, **metrics},
    }


def result(rows, *, scenario=None, config=None):
    cfg = config or {"scenario": scenario or {"kind": "backdoor"}}
    return {
        "config": cfg,
        "run_id": 3,
        "original": {"test_acc": 0.98, "asr": 0.97, "relearn_curve": CURVE},
        "retrained": {"test_acc": 0.97, "asr": 0.01, "relearn_curve": None},
        "seconds": {"train": 3.0, "retrain": 10.0, "curvature": 1.0, "total": 20.0},
        "strategies": rows,
    }


def test_series_carry_row_labels_and_stable_colour_keys():
    res = result([row("saps", 0.02), row("saps", 0.02, largest=False), row("all", None)])
    series = analysis.model_series(res)
    assert [s["label"] for s in series] == [
        "original θ*",
        "retrained",
        "SAPS (largest diag H) @ 2 %",
        "SAPS (smallest diag H) @ 2 %",
        "all parameters",
    ]
    assert [s["key"] for s in series] == ["original", "retrained", "saps", "saps_smallest", "all"]
    # the relearning curves: the retrained model has none here, so it is left out
    assert [s["key"] for s in analysis.relearn_series(res)] == ["original", "saps", "saps_smallest", "all"]
    costs = analysis.cost_series(res)
    assert costs[0] == {
        "label": series[2]["label"],
        "key": "saps",
        "select": 1.0,
        "update": 0.5,
        "value": 1.5,
        "amortized": 0.6,
    }


@pytest.mark.parametrize(
    ("scenario", "key"),
    [
        ({"kind": "label_flip"}, "forget_acc_poisoned"),
        ({"kind": "indices", "corruption": "label"}, "forget_acc_poisoned"),
        ({"kind": "random_samples"}, "forget_acc"),
        ({"kind": "class"}, "forget_acc"),
    ],
)
def test_forgetting_axis_per_scenario(scenario, key):
    res = result([], scenario=scenario)
    res["original"]["asr"] = None
    assert analysis.forget_key(res) == key
    assert analysis.forget_key(result([])) == "asr"


def test_honesty_notes_from_the_method_log():
    guard = {
        "guard_failed": True,
        "changed": False,
        "note": "no step size kept validation accuracy within 0.01",
    }
    assert analysis.row_notes(row("saps", 0.02, log=guard)) == [
        "no step size passed the validation guard: θ* returned unchanged",
        "no step size kept validation accuracy within 0.01",
    ]
    solve = {"converged": False, "applied": False, "rel_residual": 0.26, "changed": False}
    assert analysis.row_notes(row("saps", 0.02, log=solve)) == [
        "solver did not converge (relative residual 0.26); θ* unchanged"
    ]
    assert analysis.row_notes(row("all", None, log={"changed": False})) == [
        "no parameter changed: θ* unchanged"
    ]
    assert analysis.row_notes(row("all", None, log={"changed": True, "converged": True})) == []
    res = result([row("saps", 0.02, log=guard), row("all", None, log={"changed": True})])
    assert [label for label, _ in analysis.flagged(res)] == ["SAPS (largest diag H) @ 2 %"]


def test_table_and_csv_have_one_row_per_model_and_every_scalar_metric():
    res = result([row("saps", 0.02, mia_auc=0.6, log={"changed": False}), row("all", None)])
    rows = analysis.table(res)
    assert [r["model"] for r in rows] == [
        "original θ*",
        "retrained",
        "SAPS (largest diag H) @ 2 %",
        "all parameters",
    ]
    assert rows[0]["seconds"] == 3.0 and rows[1]["seconds"] == 10.0
    assert rows[2]["mia_auc"] == 0.6 and rows[3]["mia_auc"] is None and rows[0]["mia_auc"] is None
    assert "relearn_curve" not in rows[2]  # curves are charts, not cells
    assert rows[2]["note"] == "no parameter changed: θ* unchanged" and rows[3]["note"] == ""
    assert rows[2]["seconds"] == 1.5 and rows[2]["retrain_ratio"] == 0.15
    back = list(csv.DictReader(io.StringIO(analysis.to_csv(rows))))
    assert len(back) == 4 and back[2]["mia_auc"] == "0.6" and back[2]["model"] == rows[2]["model"]


def test_budget_points_join_stored_runs_on_the_same_models_and_method():
    cfg = core_config.normalize(state.build_config(state.DEFAULTS))
    here = result([row("saps", 0.02), row("all", None)], config=cfg)
    other_budget = result([row("saps", 0.1), row("saps", 0.1, largest=False)], config=cfg)
    other_budget["run_id"] = 4
    other_method = result(
        [row("saps", 0.5)], config={**cfg, "unlearning": {**cfg["unlearning"], "method": "neggrad"}}
    )
    runs = [
        {"status": "done", "result": other_budget},
        {"status": "done", "result": other_method},
        {"status": "failed", "result": None},
    ]
    points = analysis.budget_points(here, runs)
    assert sorted((p["key"], p["fraction"]) for p in points) == [
        ("saps", 0.02),
        ("saps", 0.1),
        ("saps_smallest", 0.1),
    ]
    assert {p["label"] for p in points} == {"SAPS (largest diag H)", "SAPS (smallest diag H)"}


def test_parse_indices_reports_every_bad_token():
    assert analysis.parse_indices("3, x, 99, 5, 3,, -1", 50) == (
        [3, 5],
        ["'x' is not an integer", "99 is outside 0..49", "-1 is outside 0..49"],
    )
    assert analysis.parse_indices("", 10) == ([], [])
    assert analysis.picked_indices([{"point_index": 7, "x": 1}, {"point_index": 2}, {"x": 0}]) == [2, 7]


def test_threshold_and_counts_agree_with_a_hand_made_mask():
    scores = {"a": torch.tensor([0.1, -5.0, 2.0]), "b": torch.tensor([[3.0, 0.0]])}
    mask = {"a": torch.tensor([False, True, False]), "b": torch.tensor([[True, False]])}
    assert analysis.n_selected(mask) == 2
    assert analysis.threshold(scores, mask, largest=True) == 3.0
    assert analysis.threshold(scores, mask, largest=False) == 5.0
    assert np.allclose(analysis.flat(scores), [0.1, 5.0, 2.0, 3.0, 0.0])
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert np.allclose(
        analysis.rank_matrix({"x": a, "y": a**3, "z": -a}), [[1, 1, -1], [1, 1, -1], [-1, -1, 1]]
    )


def test_saps_selection_counts_threshold_and_dead_units_by_hand():
    model = torch.nn.Linear(3, 2)  # weight 2×3 and bias 2: 8 parameters
    scores = {
        "weight": torch.tensor([[4.0, 0.0, 1.0], [0.5, 3.0, 0.0]]),
        "bias": torch.tensor([2.0, 0.25]),
    }
    top = analysis.saps_selection(model, scores, 0.25, largest=True)  # round(0.25 · 8) = 2
    assert top["n"] == 2 and top["total"] == 8 and top["dead"] == 2
    assert top["mask"]["weight"].tolist() == [[True, False, False], [False, True, False]]
    assert top["threshold"] == 3.0
    assert [r["selected"] for r in top["rows"]] == [2, 0]
    assert top["caption"].startswith("threshold |H_ii| ≥ 3.000e+00 · 2 of 8")
    flat = analysis.saps_selection(model, scores, 0.25, largest=False)  # flattest non-zero ones
    assert flat["threshold"] == 0.5 and flat["mask"]["bias"].tolist() == [False, True]


def test_estimator_agreement_ranks_every_registered_estimator():
    from core.curvature import ESTIMATORS

    base = torch.arange(1.0, 7.0)
    seen = []

    def scores_of(cfg):
        seen.append(cfg["curvature"]["method"])
        return {"w": -base if cfg["curvature"]["method"] == "fisher" else base**2}

    cfg = {"curvature": {"method": "exact", "data": "full"}}
    out = analysis.estimator_agreement(cfg, scores_of, lambda *a: None)
    assert seen == list(ESTIMATORS) and out["names"] == [e.label for e in ESTIMATORS.values()]
    # |scores| rank the same way for every estimator here (abs of −base is base)
    assert np.allclose(out["matrix"], np.ones((len(ESTIMATORS), len(ESTIMATORS))))


def test_every_strategy_mask_at_a_budget(tmp_path):
    cfg = core_config.normalize(state.build_config(dict(state.DEFAULTS, epochs=1)))
    prepared = experiment.prepare(cfg)
    model, _ = experiment.train_model(cfg, prepared, "original")
    scores = {
        n: torch.randn(p.shape, generator=torch.Generator().manual_seed(1))
        for n, p in model.named_parameters()
    }
    masks = analysis.strategy_masks(cfg, prepared, model, scores, 0.05, RunStore(tmp_path))
    total = sum(p.numel() for p in model.parameters())
    assert analysis.n_selected(masks["all parameters"]) == total
    assert analysis.n_selected(masks["magnitude |θ|"]) == round(0.05 * total)
    # SAPS = the top 5 % of |scores|, computed here independently
    flat = torch.cat([s.abs().flatten() for s in scores.values()])
    top = set(torch.topk(flat, round(0.05 * total)).indices.tolist())
    chosen = (
        torch.cat([m.flatten() for m in masks["SAPS (largest diag H)"].values()]).nonzero().flatten().tolist()
    )
    assert set(chosen) == top


def test_stored_result_headline_and_sweep(tmp_path):
    store = RunStore(tmp_path)
    res = result([row("saps", 0.02)])
    run_id = store.start({"dataset": "digits"})
    store.finish(run_id, res, 1.0)
    assert analysis.stored_result(store, run_id) == (res, None)
    missing, problem = analysis.stored_result(store, 999)
    assert missing is None and "999" in problem
    head = analysis.headline(res)
    assert [h[0] for h in head] == [
        "test accuracy θ*",
        "attack success θ*",
        "attack success retrained",
        "run",
    ]
    assert head[1][1] == "97.0%" and head[3][1] == "#3"
    sweep = analysis.sweep_config({"seed": 1}, ["saps", "all", "random"], (0.01, 0.1))
    assert [(s["name"], s["fraction"]) for s in sweep["strategies"]] == [
        ("saps", 0.01),
        ("random", 0.01),
        ("saps", 0.1),
        ("random", 0.1),
    ]
