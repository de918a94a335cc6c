"""Flows that were broken in the dashboard, each checked where it broke: the Forget-set sample
picker (click, box-select, typed indices, an editable selection, the `indices` scenario from an
empty start) and the unlearning curve that must start at θ*'s metrics."""

from __future__ import annotations

import json

import pytest

from tests.ui.conftest import app, assert_clean
from ui import analysis

# What Streamlit 1.67 delivers for a click on square 7 of the picker: plotly's point, keys in
# snake_case, customdata of a numpy-built trace as a typed-array row, i.e. a JSON object.
CLICK = {
    "selection": {
        "points": [
            {
                "curve_number": 0,
                "point_number": 7,
                "point_index": 7,
                "x": 7,
                "y": 0,
                "customdata": {"0": 7, "1": 3},
                "marker_color": "#dee2e6",
                "marker_size": 9,
                "marker_symbol": "square",
            }
        ],
        "point_indices": [7],
        "box": [],
        "lasso": [],
    }
}
# A box over squares 40, 41 (second row) and 80.
BOX = {
    "selection": {
        "points": [
            {"curve_number": 0, "point_number": i, "point_index": i, "x": i % 40, "y": -(i // 40)}
            | {"customdata": {"0": i, "1": i % 10}}
            for i in (40, 41, 80)
        ],
        "point_indices": [40, 41, 80],
        "box": [{"xref": "x", "yref": "y", "x": [-0.5, 1.5], "y": [-0.5, -2.5]}],
        "lasso": [],
    }
}


def test_a_click_and_a_box_map_to_sample_indices():
    # the payload survives the JSON round trip the browser makes
    click, box = json.loads(json.dumps(CLICK)), json.loads(json.dumps(BOX))
    assert analysis.picked_indices(click, 1200) == [7]
    assert analysis.picked_indices(box, 1200) == [40, 41, 80]
    assert analysis.picked_indices(box["selection"], 1200) == [40, 41, 80]  # the selection alone
    assert analysis.picked_indices(box["selection"]["points"]) == [40, 41, 80]  # the points alone
    assert analysis.picked_indices(box, 60) == [40, 41]  # beyond the squares shown: ignored
    empty = {"selection": {"points": [], "point_indices": [], "box": [], "lasso": []}}
    assert analysis.picked_indices(empty) == []
    other_trace = {"points": [{"curve_number": 1, "point_index": 3}], "point_indices": []}
    assert analysis.picked_indices(other_trace) == []


def test_a_click_toggles_a_square_and_a_box_adds_its_squares():
    assert analysis.toggle([1, 5], [7]) == [1, 5, 7]
    assert analysis.toggle([1, 5, 7], [7]) == [1, 5]  # clicking a chosen square drops it
    assert analysis.toggle([1, 40], [40, 41, 80]) == [1, 40, 41, 80]  # a box adds
    assert analysis.toggle([1, 40, 41], [40, 41]) == [1]
    assert analysis.toggle([3], []) == [3]


def _chosen(at):
    (ms,) = [m for m in at.multiselect if str(m.key).startswith("keep_")]
    return ms


def test_a_typed_out_of_range_index_is_refused_at_once_naming_it():
    at = app("pages/1_Forget_set.py")
    before = list(_chosen(at).value)
    n_train = int({m.label: m.value for m in at.metric}["training samples |D|"].replace(",", ""))
    at.text_input(key="extra_idx").input(f"3, {n_train}, x").run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(f"{n_train} is outside 0..{n_train - 1}" in e for e in errors), errors
    assert any("'x' is not an integer" in e for e in errors), errors
    assert sorted(_chosen(at).value) == sorted(set(before) | {3})  # the good index is kept
    assert n_train not in _chosen(at).value
    at.button(key="use_selection").click().run()  # applied: the typed text and its errors go
    assert_clean(at)
    assert not any("not added" in e.value for e in at.error)
    assert at.text_input(key="extra_idx").value == ""


def test_the_selection_is_editable_and_becomes_the_forget_set():
    at = app("pages/1_Forget_set.py", size="10")
    ms = _chosen(at)
    first = list(ms.value)
    ms.unselect(first[0]).run()
    ms = _chosen(at)
    assert first[0] not in ms.value and len(ms.value) == 9
    at.text_input(key="extra_idx").input("0, 1").run()
    assert at.text_input(key="extra_idx").value == ""  # accepted input is cleared
    at.button(key="use_selection").click().run()
    assert_clean(at)
    s = at.session_state["settings"]
    assert s["scenario"] == "indices" and s["indices"] == sorted(set(first[1:]) | {0, 1})
    assert {m.label: m.value for m in at.metric}["forget set |D_f|"] == str(len(s["indices"]))


def test_the_indices_scenario_from_an_empty_start_keeps_the_picker():
    at = app("pages/1_Forget_set.py", scenario="indices")
    assert not at.exception
    assert not any("must be a non-empty list" in e.value for e in at.error), [e.value for e in at.error]
    assert any("pick samples" in i.value for i in at.info)
    assert _chosen(at).value == [] and at.button(key="use_selection").disabled
    at.text_input(key="extra_idx").input("5, 9, 12").run()
    assert _chosen(at).value == [5, 9, 12]
    at.button(key="use_selection").click().run()
    assert_clean(at)
    assert at.session_state["settings"]["indices"] == [5, 9, 12]
    assert {m.label: m.value for m in at.metric}["forget set |D_f|"] == "3"


@pytest.mark.parametrize("scenario", [{"kind": "backdoor", "size": 40, "target": 0}])
def test_the_unlearning_curve_starts_at_the_metrics_of_theta_star(scenario):
    """The curve's step-0 point is θ* evaluated on the same sets as the metrics shown above it."""
    from core import experiment

    cfg = {
        "model": "mlp",
        "scenario": scenario,
        "train": {"epochs": 5},
        "strategies": [{"name": "saps", "fraction": 0.05}],
        "unlearning": {"method": "masked_finetune", "steps": 4},
        "metrics": {"mia": False, "relearn": False},
    }
    result = experiment.run(cfg)
    (row,) = result["strategies"]
    curve, original = row["curve"], result["original"]
    assert curve["step"][0] == 0
    for key in ("test_acc", "retain_acc", "forget_acc", "asr"):
        assert curve[key][0] == pytest.approx(original[key], abs=1e-9), key


# -- the Curvature page's feel: rank once per model, a budget change only reads counts ---------
def _tiny_model_scores():
    import torch

    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Parameter(torch.zeros(4, 2, 3, 3))
            self.bias = torch.nn.Parameter(torch.zeros(4))
            self.fc = torch.nn.Parameter(torch.zeros(10, 36))

    scores = {
        "conv": torch.randn(4, 2, 3, 3).abs() * (torch.rand(4, 2, 3, 3) > 0.3),  # exact zeros
        "bias": torch.randn(4),
        "fc": torch.randn(10, 36).round(decimals=1),  # many ties
    }
    return Tiny(), scores


@pytest.mark.parametrize("largest", [True, False])
def test_the_ranking_selects_exactly_what_core_selection_selects(largest):
    import numpy as np

    from core import selection
    from ui.analysis.curvature import ranking, selection_at
    from ui.state import FRACTIONS

    model, scores = _tiny_model_scores()
    rank = ranking(scores, largest, FRACTIONS)
    for fraction in [*FRACTIONS, 0.3]:  # 0.3 is off the slider: counted on demand
        sel = selection_at(rank, fraction)
        mask = selection.mask_for(
            {"name": "saps", "largest": largest}, model, fraction=fraction, scores=scores
        )
        assert all(np.array_equal(sel["mask"][n], mask[n].numpy()) for n in mask), fraction
        assert sel["rows"] == selection.summary(mask, scores), fraction
        assert sel["n"] == sum(int(m.sum()) for m in mask.values())
        assert sel["threshold"] == analysis.threshold(scores, mask, largest)


def test_a_budget_change_on_the_curvature_page_does_not_rank_again(monkeypatch):
    from tests.ui.conftest import wait_job
    from tests.ui.test_pages import TINY, train_tiny
    from ui import state
    from ui.analysis import curvature

    train_tiny(dict(state.DEFAULTS, epochs=3))
    calls = []
    real = curvature.ranking
    monkeypatch.setattr(curvature, "ranking", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    at = app("pages/3_Curvature.py", **TINY)
    wait_job(at, lambda a: len(a.metric) == 1)
    assert calls == [True]
    for frac in (0.05, 0.001, 0.5):
        at.select_slider(key="w_frac_curvature").set_value(frac).run()
        assert at.metric[0].value == f"{round(frac * 13_706):,}"
    assert calls == [True]  # ranked once for the model, every budget read from it
    assert_clean(at)
    charts = [c.proto.id for c in at.get("plotly_chart")]
    assert sum("heat" in c for c in charts) == 1  # one layer's heatmap, chosen in a selectbox


def test_the_indices_scenario_with_data_that_cannot_load_is_a_message_not_a_traceback():
    from ui import cache

    at = app("pages/1_Forget_set.py", scenario="indices", dataset="mnist")  # no MNIST files here
    assert not at.exception
    assert any("pick samples" in i.value for i in at.info)
    settings = at.session_state["settings"]
    assert analysis.picker_config(settings, cache.prepared) is None
    cfg = analysis.picker_config({**settings, "dataset": "digits"}, cache.prepared)
    assert cfg["dataset"] == "digits" and cfg["strategies"] == []
