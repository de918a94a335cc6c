"""Where the forgetting happens: the analysis against independent computations, the figures'
traces, and the page through AppTest (a tiny real run, and an unknown run id)."""

from __future__ import annotations

import numpy as np
import pytest

from core import config as core_config
from core import experiment, inspect
from core.store import RunStore
from tests.ui.conftest import app, assert_clean, wait_job
from ui import analysis, figures, state
from ui.analysis import where


def synthetic(rng: np.random.Generator) -> dict:
    """An inspection whose strategy has θ*'s features and whose retrained model has θ*'s
    features rotated by an orthogonal Q (the same representation in other units)."""
    test, forget = rng.normal(size=(80, 6)) * [4, 2, 1, 1, 0.5, 0.1], rng.normal(size=(5, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    pred_t, pred_f = rng.integers(0, 3, 80), rng.integers(0, 3, 5)

    def model(label, key, share, cka, t, f):
        values = {"share": share, "change": [0.0, 0.1, 0.2], "cka": cka, "test": t, "forget": f}
        return {"label": label, "key": key, **values, "pred_test": pred_t, "pred_forget": pred_f}

    return {
        "key": "k",
        "layers": ["conv1", "fc1", "fc2"],
        "sizes": [100, 10, 1000],
        "n_test": 80,
        "n_forget": 5,
        "models": [
            model("original θ*", "original", None, [0.99, 0.8, 0.95], test, forget),
            model("retrained", "retrained", None, [1.0, 1.0, 1.0], test @ q, forget @ q),
            model("SAPS @ 2 %", "saps", [0.01, 0.3, 0.05], [0.99, 0.85, 0.95], test, forget),
        ],
    }


def test_projection_shares_thetas_axes_and_aligns_the_retrained_model():
    ins = synthetic(np.random.default_rng(0))
    o, u, r = where.where_projection(ins, "SAPS @ 2 %")
    (expected, expected_f), _ = inspect.pca_2d(ins["models"][0]["test"], ins["models"][0]["forget"])
    np.testing.assert_allclose(o["test"], expected, atol=1e-9)
    np.testing.assert_allclose(o["forget"], expected_f, atol=1e-9)
    np.testing.assert_allclose(u["test"], o["test"], atol=1e-9)  # same features, same axes
    # rotated features: own PCA + Procrustes lands on θ*'s picture
    np.testing.assert_allclose(r["test"], o["test"], atol=1e-6)
    np.testing.assert_allclose(r["forget"], o["forget"], atol=1e-6)
    assert [p["title"].split(" (")[0] for p in (o, u, r)] == ["original θ*", "SAPS @ 2 %", "retrained"]


def test_summary_names_the_least_similar_layer_and_the_strategys_top_layer():
    lines = where.where_summary(synthetic(np.random.default_rng(1)))
    assert "**fc1** (CKA 0.800)" in lines[0]
    # share (0.01, 0.3, 0.05) vs 1 − CKA (0.01, 0.2, 0.05): the same ranking -> +1
    # selected: 1 + 3 + 50 = 54 parameters, 50 of them in fc2 (93 %)
    assert lines[1] == (
        "SAPS @ 2 %: 93% of its 54 parameters in **fc2**, the largest share of a layer in **fc1** (30.0%); "
        "rank correlation of its shares with 1 − CKA: +1.00."
    )
    ins = synthetic(np.random.default_rng(1))
    ins["models"][2]["share"] = [1.0, 1.0, 1.0]
    assert where.where_summary(ins)[1] == (
        "SAPS @ 2 %: 90% of its 1,110 parameters in **fc2**, the same share of every layer (100.0%)."
    )


def test_layer_profile_draws_shares_for_strategies_and_leaves_zero_change_out():
    ins = synthetic(np.random.default_rng(2))
    fig = figures.layer_profile(where.where_layers(ins), ins["layers"])
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["SAPS @ 2 %"]
    assert list(bars[0].y) == [0.01, 0.3, 0.05]
    change = [t for t in fig.data if t.type == "scatter" and t.yaxis == "y2"]
    assert [t.name for t in change] == ["original θ*", "retrained", "SAPS @ 2 %"]
    assert list(change[0].y) == [None, 0.1, 0.2]  # 0 has no place on a log axis
    assert fig.layout.yaxis2.type == "log"
    cka = {t.name: list(t.y) for t in fig.data if t.yaxis == "y3"}
    assert cka["retrained"] == [1.0, 1.0, 1.0] and cka["original θ*"] == [0.99, 0.8, 0.95]


def test_feature_projection_colours_by_predicted_class_and_marks_forget_samples():
    ins = synthetic(np.random.default_rng(3))
    panels = where.where_projection(ins, "SAPS @ 2 %")
    fig = figures.feature_projection(panels)
    forget = [t for t in fig.data if t.marker.symbol == "diamond" and t.x[0] is not None]
    assert sum(len(t.x) for t in forget) == 3 * 5
    test_points = [t for t in fig.data if t.marker.symbol == "circle"]
    assert sum(len(t.x) for t in test_points) == 3 * 80
    for t in test_points:  # every point of a trace has the class its colour says
        cls = int(t.name.split()[-1])
        assert t.marker.color == figures.where.CLASS_COLORS[cls]
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert len(legend) == len(set(legend))  # one entry per class, plus the forget marker
    assert "forget sample (◆)" in legend


@pytest.fixture
def tiny_run():
    """A real 3-epoch digits run with SAPS and "all" at 2 %, stored."""
    settings = {**state.DEFAULTS, "epochs": 3, "strategies": ["saps", "all"]}
    cfg = core_config.normalize(state.build_config(settings))
    result = experiment.run(cfg, store=RunStore())
    return cfg, result


def test_inspect_run_matches_the_masks_and_the_models(tiny_run):
    cfg, result = tiny_run
    st_ = RunStore()
    ins = where.inspect_run(cfg, result["strategies"], st_, lambda *a: None, n_test=60)
    assert ins["layers"] == ["conv1", "conv2", "fc1", "fc2"]
    assert ins["sizes"] == [1 * 16 * 9 + 16, 16 * 32 * 9 + 32, 32 * 2 * 2 * 64 + 64, 64 * 10 + 10]
    by = {m["label"]: m for m in ins["models"]}
    assert by["original θ*"]["change"] == [0.0] * 4
    assert by["retrained"]["cka"] == pytest.approx([1.0] * 4)
    original = experiment.train_model(cfg, experiment.prepare(cfg), "original", store=st_)[0]
    sizes = {
        n: sum(p.numel() for k, p in original.named_parameters() if k.startswith(n + "."))
        for n in ins["layers"]
    }
    for row in result["strategies"]:
        m = by[row["label"]]
        assert round(sum(s * sizes[n] for s, n in zip(m["share"], ins["layers"]))) == row["n_selected"]
    assert by[result["strategies"][1]["label"]]["share"] == [1.0] * 4  # all parameters
    # the strategy's penultimate features are the rebuilt unlearned model's
    model, mask = where.unlearned(cfg, result["strategies"][0], st_, None)  # cached: no inputs needed
    assert int(sum(v.sum() for v in mask.values())) == result["strategies"][0]["n_selected"]
    x, x_f = where.samples(cfg, 60)
    feats, logits = inspect.penultimate(model, x)
    np.testing.assert_allclose(by[result["strategies"][0]["label"]]["test"], feats)
    assert list(by[result["strategies"][0]["label"]]["pred_test"]) == list(logits.argmax(1))
    n_forget = len(experiment.prepare(cfg).forget_set.forget_idx)
    assert len(x_f) == ins["n_forget"] == min(n_forget, where.FORGET_SAMPLES)


def test_where_page_renders_both_figures_for_a_stored_run(tiny_run):
    _, result = tiny_run
    at = app("pages/6_Where.py", run=str(result["run_id"]))
    wait_job(at, lambda a: len(a.get("plotly_chart")) >= 2, timeout_s=120)
    assert_clean(at)
    charts = [c.proto.id for c in at.get("plotly_chart")]
    assert any("layer_profile" in c for c in charts) and any("projection" in c for c in charts)
    assert any("θ* differs most" in m.value for m in at.markdown)
    labels = [r["label"] for r in result["strategies"]]
    assert at.selectbox(key="where_pick").options == labels
    at.selectbox(key="where_pick").set_value(labels[1]).run()
    assert_clean(at)
    assert at.main.caption[-1].value == state.PAGE_END
    assert len(at.sidebar.get("page_link")) == len(state.PAGES)


def test_where_page_without_a_result_and_with_an_unknown_run():
    at = app("pages/6_Where.py")
    assert not at.exception
    assert any("No result" in i.value for i in at.info)
    at = app("pages/6_Where.py", run="999")
    assert not at.exception
    assert any("999" in e.value for e in at.error)


def test_strategy_key_separates_strategies_and_budgets():
    cfg = core_config.normalize(state.build_config(state.DEFAULTS))
    rows = [
        {"strategy": s, "fraction": s.get("fraction"), "method": "masked_finetune"} for s in cfg["strategies"]
    ]
    keys = {where.strategy_key(cfg, r) for r in rows}
    assert len(keys) == len(rows)
    moved = {**rows[0], "fraction": 0.05}
    assert where.strategy_key(cfg, moved) != where.strategy_key(cfg, rows[0])
    assert analysis.where_key(cfg, rows) == where.where_key(cfg, rows)


def test_function_distance_draws_agreement_and_kl_of_every_model_with_a_value():
    series = [
        {"label": "original θ*", "key": "original", "metrics": {"agreement": 0.97, "kl_to_retrained": 0.06}},
        {"label": "retrained", "key": "retrained", "metrics": {"agreement": None, "kl_to_retrained": None}},
        {"label": "SAPS @ 2 %", "key": "saps", "metrics": {"agreement": 0.98, "kl_to_retrained": 0.03}},
    ]
    fig = figures.function_distance(series)
    agreement, kl = fig.data
    assert list(agreement.x) == ["original θ*", "SAPS @ 2 %"] and list(agreement.y) == [0.97, 0.98]
    assert list(kl.y) == [0.06, 0.03] and kl.xaxis == "x2"
    assert list(agreement.marker.color) == [figures.color("original"), figures.color("saps")]
    assert fig.layout.yaxis.range == (0.95, 1.0)
