"""Figure builders are pure: numbers in, go.Figure out (checked against hand-made inputs)."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from ui import figures


def test_tile_conv_dense_bias():
    conv = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    t = figures.tile(conv)
    assert t.shape == (4, 6)
    assert t[0, 2] == conv[0, 1, 0, 0] and t[3, 5] == conv[1, 2, 1, 1]
    assert figures.tile(np.ones((5, 7))).shape == (5, 7)
    assert figures.tile(np.ones(4)).shape == (1, 4)


def test_log_scores_maps_zero_below_smallest():
    out = figures.log_scores(np.array([0.0, 1e-3, 10.0]))
    assert np.allclose(out, [-4.0, -3.0, 1.0])


def test_layer_heatmap_shows_only_selected_in_colour():
    scores = np.array([[1.0, 2.0], [3.0, 0.0]])
    mask = np.array([[False, True], [True, False]])
    fig = figures.layer_heatmap("fc.weight", scores, mask)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    top = np.array(fig.data[1].z, dtype=float)
    assert np.isnan(top[0, 0]) and np.isnan(top[1, 1])
    assert np.isclose(top[0, 1], np.log10(2.0)) and np.isclose(top[1, 0], np.log10(3.0))


def test_score_histogram_threshold_line_and_zero_count():
    fig = figures.score_histogram(np.array([0.0, 0.0, 1e-2, 1.0, 10.0]), threshold=1.0, n_selected=2)
    assert sum(fig.data[0].y) == 3  # zeros are not on a log axis
    counts, edges, zeros = figures.log_histogram(np.array([0.0, 0.0, 1e-2, 1.0, 10.0]), bins=3)
    assert counts.tolist() == [1, 0, 2] and zeros == 2  # log10 of the scores: -2, 0, 1
    assert np.allclose(edges, [-2, -1, 0, 1])
    again = figures.score_histogram(None, threshold=1.0, binned=(counts, edges, zeros))
    assert list(again.data[0].y) == [1, 0, 2] and np.allclose(again.data[0].x, [-1.5, -0.5, 0.5])
    assert "2 exact zeros" in fig.layout.xaxis.title.text
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.dtick == 1  # 1, 10, 100: no 2, 5 clutter
    line = [s for s in fig.layout.shapes if s.type == "line"][0]
    assert line.x0 == 0.0
    assert "2 selected" in fig.layout.annotations[0].text


def _s(label, key, **values):
    return {"label": label, "key": key, **values}


def test_comparison_figures():
    pts = [
        _s("SAPS @ 2 %", "saps", metrics={"asr": 0.3, "test_acc": 0.95}),
        _s("all parameters", "all", metrics={"asr": None, "test_acc": 0.9}),
    ]
    fig = figures.tradeoff(
        pts, original={"asr": 0.97, "test_acc": 0.98}, retrained={"asr": 0.01, "test_acc": 0.97}
    )
    assert [t.name for t in fig.data] == ["SAPS @ 2 %", "original θ*", "retrained (target)"]
    budget = figures.metric_vs_budget(
        [
            _s("SAPS", "saps", fraction=0.1, metrics={"asr": 0.2}),
            _s("SAPS", "saps", fraction=0.01, metrics={"asr": 0.5}),
        ],
        "asr",
        reference=0.0,
    )
    assert list(budget.data[0].x) == [0.01, 0.1] and list(budget.data[0].y) == [0.5, 0.2]
    bars = figures.metric_bars([_s("m", "saps", metrics={"test_acc": 0.9, "asr": None})], ["test_acc", "asr"])
    assert list(bars.data[0].y) == [0.9]
    curves = figures.unlearning_curves([_s("s", "saps", curve={"step": [0, 1], "asr": [0.9, 0.1]})], ("asr",))
    assert list(curves.data[0].y) == [0.9, 0.1]


def test_full_cost_bars_stack_selection_under_update_with_retraining_dashed():
    series = [
        _s("SAPS @ 2 %", "saps", select=1.5, update=0.5),
        _s("all parameters", "all", select=0.0, update=2.0),
    ]
    fig = figures.cost_bars(series, retrain_seconds=10.0, title="full cost")
    select, update, totals = fig.data
    assert fig.layout.barmode == "stack"
    assert list(select.y) == [1.5, 0.0] and list(update.y) == [0.5, 2.0]
    assert select.marker.pattern.shape == "/" and not update.marker.pattern.shape
    assert list(totals.y) == [2.0, 2.0] and list(totals.text) == ["2.00 s", "2.00 s"]
    # one colour per strategy on both parts, the strategy's own
    assert (
        list(select.marker.color)
        == list(update.marker.color)
        == [figures.color("saps"), figures.color("all")]
    )
    line = fig.layout.shapes[0]
    assert (
        line.y0 == 10.0 and line.line.dash == "dash" and "retraining: 10.00" in fig.layout.annotations[0].text
    )
    amortized = figures.amortized_bars([_s("SAPS @ 2 %", "saps", amortized=0.4)], retrain_seconds=10.0)
    assert list(amortized.data[0].y) == [0.4] and "amortized" in amortized.layout.title.text


def test_relearn_curves_one_line_per_model_retrained_dashed():
    curve = {"steps": [0, 1, 2, 5, 10, 20], "value": [0.1, 0.2, 0.4, 0.6, 0.8, 0.9]}
    series = [
        _s("original θ*", "original", curve=curve),
        _s("retrained", "retrained", curve=curve),
        _s("SAPS @ 2 %", "saps", curve=curve),
        _s("no curve", "all", curve=None),
    ]
    fig = figures.relearn_curves(series, y_title="attack success rate (%)")
    assert [t.name for t in fig.data] == ["original θ*", "retrained", "SAPS @ 2 %"]
    assert [t.line.dash for t in fig.data] == ["solid", "dash", "solid"]
    assert list(fig.data[2].x) == curve["steps"] and list(fig.data[2].y) == curve["value"]
    assert (
        fig.layout.xaxis.title.text == "relearning steps"
        and fig.layout.yaxis.title.text == "attack success rate (%)"
    )


def test_forget_quality_bars_with_the_original_as_reference():
    fig = figures.forget_quality_bars([_s("SAPS @ 2 %", "saps", value=0.4)], original=0.05, models=16)
    assert list(fig.data[0].y) == [0.4] and "M = 16" in fig.layout.title.text
    assert list(fig.layout.yaxis.range) == [0, 1.1]  # the whole scale, also when every value is 0
    assert fig.layout.shapes[0].y0 == 0.05 and fig.layout.shapes[0].line.color == figures.color("original")


def test_images_and_misc():
    imgs = np.random.default_rng(0).random((5, 1, 8, 8))
    fig = figures.image_grid(imgs, [f"t{i}" for i in range(5)], cols=3)
    assert len(fig.data) == 5 and fig.layout.annotations[4].text == "t4"
    assert len(figures.image_grid(np.zeros((0, 1, 8, 8)), []).data) == 0
    assert list(figures.class_histogram([1, 2], ["a", "b"]).data[0].y) == [1, 2]
    assert len(figures.pipeline().layout.shapes) == len(figures.PIPELINE)
    picker = figures.sample_picker([0, 1, 2], [True, False, True], cols=2)
    assert list(picker.data[0].x) == [0, 1, 0]
    share = figures.layer_share(
        [{"name": "w", "numel": 10, "selected": 5, "share": 0.5, "zero_score_selected": 1}]
    )
    assert list(share.data[0].y) == [0.5] and list(share.data[1].y) == [0.1]


def _colors_by_name(fig: go.Figure) -> dict[str, str]:
    out = {}
    for t in fig.data:
        color = (t.marker.color if t.type == "bar" else None) or t.line.color or t.marker.color
        out[t.name] = color
    return out


def test_a_strategy_has_the_same_colour_in_every_figure():
    """Colours follow the key carried on rows, never the label text or the position in a figure."""
    m = {"test_acc": 0.9, "asr": 0.2}
    bars = figures.metric_bars(
        [
            _s("original θ*", "original", metrics=m),
            _s("retrained", "retrained", metrics=m),
            _s("SAPS", "saps", metrics=m),
            _s("random", "random", metrics=m),
        ],
        ["test_acc", "asr"],
    )
    trade = figures.tradeoff(
        [
            _s("random (live) @ 2 %", "random", metrics=m),
            _s("SAPS (largest diag H) @ 2 %", "saps", metrics=m),
        ],
        original=m,
        retrained=m,
    )
    a, b = _colors_by_name(bars), _colors_by_name(trade)
    assert a["SAPS"] == b["SAPS (largest diag H) @ 2 %"] == figures.STRATEGY_COLORS["saps"]
    assert a["random"] == b["random (live) @ 2 %"]
    assert a["original θ*"] == b["original θ*"] and a["retrained"] == b["retrained (target)"]
    curve = {"step": [0, 1], "asr": [1, 0]}
    curves = figures.unlearning_curves(
        [_s("G", "gradient", curve=curve), _s("S", "saps_smallest", curve=curve)], ("asr",)
    )
    budget = figures.metric_vs_budget(
        [
            _s("S2", "saps_smallest", fraction=0.1, metrics={"asr": 0.2}),
            _s("G2", "gradient", fraction=0.1, metrics={"asr": 0.5}),
        ],
        "asr",
    )
    c, d = _colors_by_name(curves), _colors_by_name(budget)
    assert c["G"] == d["G2"] == figures.color("gradient") and c["S"] == d["S2"] == figures.color(
        "saps_smallest"
    )
    assert figures.color("saps_smallest") != figures.color("saps")
    seconds = figures.strategy_bars([_s("g", "gradient", value=1.0), _s("s", "saps", value=2.0)], title="s")
    assert list(seconds.data[0].marker.color) == [c["G"], a["SAPS"]]
    # every named strategy has its own colour; an unknown key gets a stable one of its text
    assert len(set(figures.STRATEGY_COLORS.values())) == len(figures.STRATEGY_COLORS)
    assert figures.color("new_one") == figures.color("new_one") in figures.common._FALLBACK


def test_conv_weights_are_drawn_as_separate_filter_tiles():
    w = np.arange(4 * 5 * 2 * 3, dtype=float).reshape(4, 5, 2, 3) + 1  # O=4, I=5, 2×3 kernels
    z, idx, info = figures.layer_grid(w)
    # I=5 > O=4: output channels run down, input channels across; one empty cell between tiles
    assert z.shape == (4 * 3 - 1, 5 * 4 - 1) and info["y"] == "output channel"
    assert np.isnan(z[2, :]).all() and np.isnan(z[:, 3]).all()  # the gaps
    o, i, r, c = 2, 3, 1, 2
    cell = (o * 3 + r, i * 4 + c)
    assert z[cell] == w[o, i, r, c] and list(idx[cell]) == [o, i, r, c]
    # a first layer (one input channel) wraps 8 output channels per row of tiles
    z1, idx1, info1 = figures.layer_grid(np.ones((16, 1, 3, 3)))
    assert z1.shape == (2 * 4 - 1, 8 * 4 - 1) and info1["per_row"] == 8
    assert list(idx1[4, 4]) == [9, 0, 0, 0]  # second row of tiles, second tile: output channel 9
    # selected cells are in colour, the others in the grey trace, gaps in neither
    mask = np.zeros(w.shape, dtype=bool)
    mask[o, i, r, c] = True
    fig = figures.layer_heatmap("conv.weight", w, mask)
    grey, colour = (np.array(t.z, dtype=float) for t in fig.data)
    assert np.isfinite(colour).sum() == 1 and np.isclose(colour[cell], np.log10(w[o, i, r, c]))
    assert np.isnan(grey[cell]) and np.isfinite(grey).sum() == w.size - 1
    assert "4 × 5 filters of 2×3" in fig.layout.title.text


def test_unlearning_curves_per_metric_panel_with_the_retrained_level():
    rows = [{"step": 0, "test_acc": 0.98, "asr": 0.9}, {"step": 5, "test_acc": 0.97, "asr": 0.1}]
    assert figures.curve_columns(rows) == {"step": [0, 5], "test_acc": [0.98, 0.97], "asr": [0.9, 0.1]}
    assert figures.curve_columns(None) == {} and figures.curve_columns({"step": [0, 1]}) == {}
    curves = [
        _s("saps", "saps", curve=figures.curve_columns(rows)),
        _s("random", "random", curve={"step": [0, 5], "test_acc": [0.98, 0.9]}),
    ]
    fig = figures.unlearning_curves(curves, ("test_acc", "retain_acc", "asr"), reference={"asr": 0.02})
    # retain_acc has no values: two panels; one legend entry per strategy
    assert [a.text for a in fig.layout.annotations][:2] == ["test accuracy", "attack success rate"]
    assert [t.name for t in fig.data if t.showlegend] == ["saps", "random"]
    assert list(fig.data[1].x) == [0, 5] and list(fig.data[1].y) == [0.9, 0.1]
    line = [sh for sh in fig.layout.shapes if sh.line.dash == "dash"][0]
    assert line.y0 == 0.02 and any("retrained 2.0%" in (a.text or "") for a in fig.layout.annotations)
    assert fig.layout.xaxis.title.text == "unlearning step" and fig.layout.yaxis2.title.text == "rate (%)"


def test_retrained_references_are_labelled_and_axes_have_units():
    pts = [_s("SAPS", "saps", fraction=0.02, metrics={"relearn_success": 1.0})]
    fig = figures.metric_vs_budget(pts, "relearn_success", reference=0.94)
    ref = fig.data[-1]
    assert ref.line.dash == "dash" and ref.name == "retrained model, same relearning attack: 94.0%"
    assert (
        list(ref.y) == [0.94, 0.94] and fig.layout.yaxis.title.text == "attack success after relearning (%)"
    )
    assert "budget" in fig.layout.xaxis.title.text
    # one budget: one tick at it, never plotly's rounded log ticks around it ("2% 2% 3% 3%")
    assert list(fig.layout.xaxis.tickvals) == [0.02] and list(fig.layout.xaxis.ticktext) == ["2 %"]
    pts += [_s("SAPS", "saps", fraction=f, metrics={"relearn_success": 0.5}) for f in (0.005, 0.1)]
    fig = figures.metric_vs_budget(pts, "relearn_success")
    assert list(fig.layout.xaxis.ticktext) == ["0.5 %", "2 %", "10 %"]
    secs = figures.strategy_bars(
        [_s("SAPS @ 2 %", "saps", value=2.0), _s("all", "all", value=2.5)],
        title="t",
        fmt=".2f",
        y_title="wall-clock seconds",
        reference=13.6,
        reference_label="retraining",
    )
    line = secs.layout.shapes[0]
    assert line.y0 == 13.6 and line.line.dash == "dash"
    assert line.line.color == figures.color("retrained") not in list(secs.data[0].marker.color)
    assert secs.layout.annotations[0].text == "retraining: 13.60"
    assert secs.layout.yaxis.title.text == "wall-clock seconds" and secs.layout.yaxis.range[1] > 13.6
    trade = figures.tradeoff([], original={"asr": 0.9, "test_acc": 0.9})
    assert trade.layout.xaxis.title.text.startswith("attack success rate (%)")


def test_axis_titles_carry_the_units_of_core_metrics_info():
    assert figures.axis_title("asr") == "attack success rate (%)"
    assert figures.axis_title("poison_fit_auc") == "poison fit AUC (0–1)"
    assert figures.axis_title("kl_to_retrained") == "KL to retrained (nats)"
    assert figures.tick_format("test_acc") == ".1%" and figures.tick_format("mia_auc") is None


# -- cosmetics: axes in 0–100 %, readable ticks, titles not clipped, % restored ---------------
def test_a_single_retain_point_keeps_its_axis_inside_0_to_100_percent():
    series = [{"label": "SAPS", "key": "saps", "curve": {"step": [0], "retain_acc": [0.97], "asr": [0.9]}}]
    fig = figures.unlearning_curves(series, ("retain_acc", "asr"), reference={"retain_acc": 0.99})
    lo, hi = fig.layout.yaxis.range
    assert 0.0 <= lo < 0.97 < 0.99 < hi <= 1.0  # plotly's autorange made this 0–200 %
    points = [{"label": "SAPS", "key": "saps", "fraction": 0.02, "metrics": {"retain_acc": 0.97}}]
    lo, hi = figures.metric_vs_budget(points, "retain_acc", reference=0.99).layout.yaxis.range
    assert 0.0 <= lo < 0.97 and 0.99 < hi <= 1.0
    assert figures.percent_range([1.0, 1.0]) == [0.995, 1.0] and figures.percent_range([None]) is None


def _tick_labels(fmt: str, top: float) -> list[str]:
    """The labels d3 prints with format ".k%" for ticks at a "nice" step (1, 2 or 5 × 10^e) that
    puts 4–10 ticks on 0..top."""
    decimals = int(fmt[1:-1])
    e = math.floor(math.log10(top / 5))
    step = min(m * 10.0**e for m in (1, 2, 5, 10) if top / (m * 10.0**e) <= 10)
    return [f"{100 * step * i:.{decimals}f} %" for i in range(int(top / step) + 1)]


@pytest.mark.parametrize("fraction", [0.001, 0.002, 0.01, 0.2, 1.0])
def test_share_ticks_have_enough_decimals_to_differ(fraction):
    rows = [{"name": "w", "share": fraction, "selected": 1, "numel": 1000, "zero_score_selected": 0}]
    fig = figures.layer_share(rows)
    top = fig.layout.yaxis.range[1]
    labels = _tick_labels(fig.layout.yaxis.tickformat, top)
    assert len(set(labels)) == len(labels), labels  # never "0 %, 1 %, 1 %"
    assert top >= fraction


def test_training_curve_subplot_titles_have_room_above_the_plot():
    epochs = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.5 + e / 20} for e in range(1, 6)]
    fig = figures.training_curves([{"label": "original θ*", "key": "original", "history": epochs}])
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["loss", "training accuracy"]
    assert fig.layout.margin.t >= 40  # a 10 px top margin clipped them


def test_metric_bars_draw_shares_in_percent():
    series = [{"label": "θ*", "key": "original", "metrics": {"test_acc": 0.98, "asr": 0.95}}]
    fig = figures.metric_bars(series, ["test_acc", "asr"])
    assert fig.layout.yaxis.tickformat == ".0%" and "%" in fig.layout.yaxis.title.text


def test_restored_bars_show_warnecke_percent_restored_or_the_backdoor_removed():
    flip = [
        {"label": "SAPS @ 2 %", "key": "saps", "metrics": {"restored_pct": 80.0, "backdoor_removal": None}},
        {"label": "random @ 2 %", "key": "random", "metrics": {"restored_pct": -10.0}},
        {"label": "all", "key": "all", "metrics": {"restored_pct": None}},
    ]
    fig = figures.restored_bars(flip, n_test=36)
    (bar,) = [t for t in fig.data if t.type == "bar"]
    assert list(bar.x) == ["SAPS @ 2 %", "random @ 2 %"] and list(bar.y) == [80.0, -10.0]
    assert "% restored" in fig.layout.title.text and "36-image" in fig.layout.title.text
    lo, hi = fig.layout.yaxis.range
    assert lo < -10.0 and hi > 100.0  # the negative bar and the retrained line (100 %) both show
    assert any(s.y0 == 100.0 for s in fig.layout.shapes)
    backdoor = [
        {"label": "SAPS @ 2 %", "key": "saps", "metrics": {"restored_pct": None, "backdoor_removal": 0.5}}
    ]
    fig = figures.restored_bars(backdoor)
    assert list(fig.data[0].y) == [50.0] and "backdoor removed" in fig.layout.title.text
    undefined = [{"label": "SAPS @ 2 %", "key": "saps", "metrics": {"restored_pct": None}}]
    fig = figures.restored_bars(undefined)  # a removal whose retrained model is below θ*
    assert "undefined" in fig.layout.title.text and "backdoor" not in fig.layout.title.text
    assert not any(t.type == "bar" and len(t.y) for t in fig.data)


def test_tables_show_shares_in_percent_and_empty_cells_as_a_dash():
    from ui.analysis.series import display_rows

    rows = [
        {
            "model": "θ*",
            "test_acc": 0.9812,
            "restored_pct": 87.4,
            "n_selected": 12345,
            "note": "",
            "asr": None,
        }
    ]
    (shown,) = display_rows(rows)
    assert shown == {
        "model": "θ*",
        "test accuracy (%)": "98.1 %",
        "% restored": "87 %",
        "n_selected": "12,345",
        "note": "–",
        "attack success rate (%)": "–",
    }
