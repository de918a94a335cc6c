"""Figure builders are pure: numbers in, go.Figure out (checked against hand-made inputs)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from ui import analysis, figures


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
    assert len(fig.data[0].x) == 3  # zeros are not on a log axis
    assert "2 exact zeros" in fig.layout.xaxis.title.text
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.dtick == 1  # 1, 10, 100: no 2, 5 clutter
    line = [s for s in fig.layout.shapes if s.type == "line"][0]
    assert line.x0 == 0.0
    assert "2 selected" in fig.layout.annotations[0].text


def test_threshold_and_counts_agree_with_a_hand_made_mask():
    scores = {"a": torch.tensor([0.1, -5.0, 2.0]), "b": torch.tensor([[3.0, 0.0]])}
    mask = {"a": torch.tensor([False, True, False]), "b": torch.tensor([[True, False]])}
    assert analysis.n_selected(mask) == 2
    assert analysis.threshold(scores, mask, largest=True) == 3.0
    assert analysis.threshold(scores, mask, largest=False) == 5.0
    assert np.allclose(analysis.flat(scores), [0.1, 5.0, 2.0, 3.0, 0.0])


def test_rank_and_overlap_matrices():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    m = analysis.rank_matrix({"x": a, "y": a**3, "z": -a})
    assert np.allclose(m, [[1, 1, -1], [1, 1, -1], [-1, -1, 1]])
    masks = {"p": {"w": torch.tensor([1, 1, 0, 0], dtype=torch.bool)},
             "q": {"w": torch.tensor([0, 1, 1, 0], dtype=torch.bool)}}  # fmt: skip
    assert np.allclose(analysis.overlap_matrix(masks), [[1, 1 / 3], [1 / 3, 1]])


def test_comparison_figures():
    pts = [{"label": "saps", "metrics": {"asr": 0.3, "test_acc": 0.95}},
           {"label": "all", "metrics": {"asr": None, "test_acc": 0.9}}]  # fmt: skip
    fig = figures.tradeoff(
        pts, original={"asr": 0.97, "test_acc": 0.98}, retrained={"asr": 0.01, "test_acc": 0.97}
    )
    assert [t.name for t in fig.data] == ["saps", "original θ*", "retrained (target)"]
    budget = figures.metric_vs_budget(
        [{"strategy": "saps", "fraction": 0.1, "metrics": {"asr": 0.2}},
         {"strategy": "saps", "fraction": 0.01, "metrics": {"asr": 0.5}}], "asr", reference=0.0)  # fmt: skip
    assert list(budget.data[0].x) == [0.01, 0.1] and list(budget.data[0].y) == [0.5, 0.2]
    bars = figures.metric_bars({"m": {"test_acc": 0.9, "asr": None}}, ["test_acc", "asr"])
    assert list(bars.data[0].y) == [0.9]
    curves = figures.unlearning_curves({"s": {"step": [0, 1], "asr": [0.9, 0.1]}}, ("asr",))
    assert list(curves.data[0].y) == [0.9, 0.1]


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
    m = {"test_acc": 0.9, "asr": 0.2}
    # different orders and label spellings in two figures of two pages
    bars = figures.metric_bars({"original θ*": m, "retrained": m, "saps": m, "random": m, "all": m},
                               ["test_acc", "asr"])  # fmt: skip
    trade = figures.tradeoff([{"label": "all", "metrics": m}, {"label": "random @ 2.0%", "metrics": m},
                              {"label": "saps @ 2.0%", "metrics": m}], original=m, retrained=m)  # fmt: skip
    a, b = _colors_by_name(bars), _colors_by_name(trade)
    assert a["saps"] == b["saps @ 2.0%"] == figures.STRATEGY_COLORS["saps"]
    assert a["random"] == b["random @ 2.0%"] and a["all"] == b["all"]
    assert a["original θ*"] == b["original θ*"] and a["retrained"] == b["retrained (target)"]
    curves = figures.unlearning_curves({"gradient": {"step": [0, 1], "asr": [1, 0]},
                                        "saps (smallest)": {"step": [0, 1], "asr": [1, 0]}}, ("asr",))  # fmt: skip
    budget = figures.metric_vs_budget([{"strategy": "saps (smallest)", "fraction": 0.1, "metrics": {"asr": 0.2}},
                                       {"strategy": "gradient", "fraction": 0.1, "metrics": {"asr": 0.5}}], "asr")  # fmt: skip
    c, d = _colors_by_name(curves), _colors_by_name(budget)
    assert c["gradient"] == d["gradient"] and c["saps (smallest)"] == d["saps (smallest)"]
    assert figures.strategy_color("saps_smallest") == c["saps (smallest)"]
    seconds = figures.strategy_bars(["gradient @ 2.0%", "saps @ 2.0%"], [1.0, 2.0], title="s")
    assert list(seconds.data[0].marker.color) == [c["gradient"], a["saps"]]
    # every named strategy has its own colour; an unknown label gets a stable one
    assert len(set(figures.STRATEGY_COLORS.values())) == len(figures.STRATEGY_COLORS)
    assert figures.strategy_color("new_one") == figures.strategy_color("new_one @ 5%")


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
    curves = {"saps": figures.curve_columns(rows), "random": {"step": [0, 5], "test_acc": [0.98, 0.9]}}
    fig = figures.unlearning_curves(curves, ("test_acc", "retain_acc", "asr"), reference={"asr": 0.02})
    # retain_acc has no values: two panels; one legend entry per strategy
    assert [a.text for a in fig.layout.annotations][:2] == ["test accuracy", "attack success rate"]
    assert [t.name for t in fig.data if t.showlegend] == ["saps", "random"]
    assert list(fig.data[1].x) == [0, 5] and list(fig.data[1].y) == [0.9, 0.1]
    line = [sh for sh in fig.layout.shapes if sh.line.dash == "dash"][0]
    assert line.y0 == 0.02 and any("retrained 2.0%" in (a.text or "") for a in fig.layout.annotations)
    assert fig.layout.xaxis.title.text == "unlearning step" and fig.layout.yaxis2.title.text == "rate"


def test_retrained_references_are_labelled_and_axes_have_units():
    pts = [{"strategy": "saps", "fraction": 0.02, "metrics": {"relearn_asr": 1.0}}]
    fig = figures.metric_vs_budget(pts, "relearn_asr", reference=0.94)
    ref = fig.data[-1]
    assert ref.line.dash == "dash" and ref.name == "retrained model, same relearning attack: 94.0%"
    assert list(ref.y) == [0.94, 0.94] and fig.layout.yaxis.title.text == "ASR after relearning (%)"
    assert "budget" in fig.layout.xaxis.title.text
    secs = figures.strategy_bars(["saps @ 2.0%", "all"], [2.0, 2.5], title="t", fmt=".2f",
                                 y_title="wall-clock seconds", reference=13.6, reference_label="retraining")  # fmt: skip
    line = secs.layout.shapes[0]
    assert line.y0 == 13.6 and line.line.dash == "dash"
    assert line.line.color == figures.strategy_color("retrained") not in list(secs.data[0].marker.color)
    assert secs.layout.annotations[0].text == "retraining: 13.60"
    assert secs.layout.yaxis.title.text == "wall-clock seconds" and secs.layout.yaxis.range[1] > 13.6
    trade = figures.tradeoff([], original={"asr": 0.9, "test_acc": 0.9})
    assert trade.layout.xaxis.title.text.startswith("attack success rate (%)")


def test_metric_labels_name_keys_the_engine_emits():
    """Every labelled metric is one core.metrics.evaluate returns (a typo drops the label)."""
    from core import metrics

    emitted = set(metrics.METRIC_KEYS) | set(metrics.EXTRA_KEYS)
    extra = {"backdoor_removal", "restored_pct", "test_acc_drop", "seconds", "retrain_ratio"}
    assert set(figures.METRIC_LABELS) <= emitted | extra
    assert figures.PERCENT_KEYS <= emitted | extra
