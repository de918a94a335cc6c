"""Every page through AppTest: widgets set, state and results asserted, heavy calls patched."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest

from core import config as core_config
from core import experiment, selection
from core.store import RunStore
from tests.ui.conftest import app, assert_clean, wait_job
from ui import cache, state

TINY = {"epochs": "3"}
CURVE = {"steps": [0, 1, 2, 5, 10, 20], "value": [0.9, 0.6, 0.5, 0.5, 0.6, 0.7]}
METRICS = {
    **dict.fromkeys(("test_acc", "retain_acc", "forget_acc", "forget_acc_poisoned", "asr", "mia_auc"), 0.5),
    "poison_fit_auc": 0.4,
    "relearn_curve": CURVE,
    "relearn_success": 0.7,
}


def fake_result(cfg, **_):
    """What core.experiment.run returns, without training (for pages that only show results)."""
    cfg = core_config.normalize(cfg)
    rows = []
    for i, s in enumerate(cfg["strategies"]):
        rows.append(
            {
                "name": s["name"],
                "label": selection.strategy_label(s),
                "fraction": s.get("fraction"),
                "largest": s.get("largest", True),
                "strategy": s,
                "method": cfg["unlearning"]["method"],
                "method_label": "Masked fine-tuning",
                "n_selected": 10 + i,
                "dead_selected": 0,
                "seconds_select": 0.1 * i,
                "seconds_update": 0.2,
                "seconds": 0.1 * i + 0.2,
                "seconds_amortized": 0.2,
                "retrain_ratio": (0.1 * i + 0.2) / 3.0,
                "log": {"changed": i != 1, "note": "guard: unchanged" if i == 1 else None},
                "metrics": {**METRICS, "asr": 0.1 * i},
            }
        )
    return {
        "config": cfg,
        "original": {**METRICS, "asr": 0.97, "test_acc": 0.98},
        "retrained": {**METRICS, "asr": 0.01, "poison_fit_auc": 0.02},
        "strategies": rows,
        "run_id": 1,
        "seconds": {"train": 3.0, "retrain": 3.0, "curvature": 1.0, "total": 9.0},
    }


def every_widget_has_help(at):
    for kind in (
        "selectbox",
        "number_input",
        "select_slider",
        "multiselect",
        "toggle",
        "button",
        "text_input",
    ):
        for w in at.get(kind):
            assert getattr(w, "help", None) or getattr(w.proto, "help", ""), f"{kind} {w.label!r} lacks help"


def train_tiny(cfg_settings: dict):
    """Train the tiny original and retrained models straight into the test's store."""
    cfg = core_config.normalize(state.build_config(cfg_settings, strategies=False))
    prepared = experiment.prepare(cfg)
    store = RunStore()
    for role in ("original", "retrained"):
        experiment.train_model(cfg, prepared, role, store=store)
    return cfg


# -- home ------------------------------------------------------------------------------------
def test_home_quick_choice_goes_to_the_url():
    at = app()
    assert_clean(at)
    every_widget_has_help(at)
    at.selectbox(key="w_model_home").set_value("mlp").run()
    assert at.session_state["settings"]["model"] == "mlp"
    assert at.query_params.get("model") in ("mlp", ["mlp"])


def test_home_demo_runs_in_background_and_lands_on_compare(monkeypatch):
    started, release = threading.Event(), threading.Event()

    def held_fake(cfg, *, store=None, progress=None):
        progress("train", 0.5, "training")
        started.set()
        release.wait(30)  # held until the test has looked at the running page
        return fake_result(cfg)

    monkeypatch.setattr(experiment, "run", held_fake)
    at = app()
    at.button(key="run_demo").click().run()
    assert started.wait(10)
    at.run()
    assert at.button(key="run_demo").disabled  # a second click cannot start a duplicate
    release.set()
    wait_job(at, lambda a: "result" in a.session_state)
    assert_clean(at)
    assert at.title[0].value == "5 · Compare"
    names = [(r["name"], r["largest"]) for r in at.session_state["result"]["strategies"]]
    assert names == [
        ("saps", True),
        ("saps", False),
        ("random", True),
        ("gradient", True),
        ("last_layer", True),
        ("all", True),
    ]


def test_home_train_only_shows_test_accuracy_and_attack_success():
    at = app(**TINY)
    at.button(key="train_only").click().run()
    wait_job(at, lambda a: len(a.metric) >= 4)
    assert_clean(at)
    values = {m.label: m.value for m in at.metric}
    assert float(values["test accuracy θ*"].rstrip("%")) > 0
    assert "attack success θ*" in values


def test_bad_url_value_is_a_warning_not_a_crash():
    at = app(seed="abc")
    assert not at.exception
    assert any("seed" in w.value for w in at.warning)


# -- 1 forget set ----------------------------------------------------------------------------
def test_forget_set_scenario_and_pick_drop():
    at = app("pages/1_Forget_set.py")
    assert_clean(at)
    every_widget_has_help(at)
    assert {m.label: m.value for m in at.metric}["forget set |D_f|"] == "60"
    at.number_input(key="w_size_forget_set").set_value(30).run()
    assert {m.label: m.value for m in at.metric}["forget set |D_f|"] == "30"
    keep = [ms for ms in at.multiselect if ms.key.startswith("keep_")][0]
    dropped = keep.value[:5]
    for i in dropped:
        keep.unselect(i)
    at.run()
    at.text_input(key="extra_idx").input("0, 1").run()
    at.button(key="use_selection").click().run()
    assert_clean(at)
    s = at.session_state["settings"]
    assert s["scenario"] == "indices" and s["corruption"] == "backdoor"
    assert len(s["indices"]) == 30 - 5 + 2 and not set(dropped) & set(s["indices"])
    assert {m.label: m.value for m in at.metric}["forget set |D_f|"] == "27"


def test_forget_set_label_flip_of_one_class():
    at = app("pages/1_Forget_set.py", scenario="label_flip", size="20", flip_source="3", flip_to="8")
    assert not at.exception and not at.error
    labels = {w.label for w in at.number_input}
    assert {"Flip to class", "Only class"} <= labels and "Target class" not in labels
    assert {m.label: m.value for m in at.metric}["forget set |D_f|"] == "20"
    at.number_input(key="w_flip_source_forget_set").set_value(12).run()
    assert any("scenario.source" in e.value for e in at.error)


def test_forget_set_bad_target_names_the_field():
    at = app("pages/1_Forget_set.py", target="42")
    assert not at.exception
    assert any("scenario.target" in e.value for e in at.error)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_forget_set_upload_valid_and_invalid_npz(tmp_path):
    rng = np.random.default_rng(0)
    good = _npz(
        x_train=rng.random((40, 8, 8)),
        y_train=np.arange(40) % 4,
        x_test=rng.random((12, 8, 8)),
        y_test=np.arange(12) % 4,
    )
    at = app("pages/1_Forget_set.py", size="5")
    at.file_uploader(key="npz_upload").upload("mine.npz", good).run()
    assert not at.exception
    s = at.session_state["settings"]
    assert s["dataset"] == "npz" and s["root"].endswith(".npz")
    assert {m.label: m.value for m in at.metric}["training samples |D|"] == "40"
    # the link names the upload by its digest (never a path) and reproduces it in a new session
    digest = at.query_params.get("upload")
    digest = digest[-1] if isinstance(digest, list) else digest
    assert digest and digest in s["root"] and "root" not in at.query_params
    fresh = app("pages/1_Forget_set.py", dataset="npz", upload=digest, size="5")
    assert_clean(fresh)
    assert {m.label: m.value for m in fresh.metric}["training samples |D|"] == "40"
    gone = app(dataset="npz", upload="0" * 16)  # warnings show on the first page the link opens
    assert any("upload='0000000000000000' ignored" in w.value for w in gone.warning)

    bad = _npz(x_train=rng.random((40, 8, 8)), y_train=np.arange(40) % 4, x_test=rng.random((12, 8, 8)))
    at = app("pages/1_Forget_set.py")
    at.file_uploader(key="npz_upload").upload("bad.npz", bad).run()
    assert not at.exception
    assert any("y_test" in e.value for e in at.error)
    objects = _npz(
        x_train=np.array([{"a": 1}], dtype=object),
        y_train=np.arange(3),
        x_test=rng.random((3, 8, 8)),
        y_test=np.arange(3),
    )
    at = app("pages/1_Forget_set.py")
    at.file_uploader(key="npz_upload").upload("obj.npz", objects).run()
    assert not at.exception
    assert any("x_train" in e.value for e in at.error)


# -- 2 train ---------------------------------------------------------------------------------
def test_train_page_trains_in_background_then_loads_from_cache():
    at = app("pages/2_Train.py", **TINY)
    assert_clean(at)
    every_widget_has_help(at)
    assert at.button(key="train").label == "Train both models"
    at.button(key="train").click().run()
    wait_job(at, lambda a: len(a.metric) == 4)
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 2
    at2 = app("pages/2_Train.py", **TINY)  # another session: same config, loaded from the store
    assert at2.button(key="train").disabled and len(at2.metric) == 4


# -- 3 curvature -----------------------------------------------------------------------------
def test_curvature_slider_changes_count_without_recomputing(monkeypatch):
    train_tiny(dict(state.DEFAULTS, epochs=3))
    at = app("pages/3_Curvature.py", **TINY)
    wait_job(at, lambda a: len(a.metric) == 1)
    assert_clean(at)
    every_widget_has_help(at)
    n_params = 13_706
    assert at.metric[0].value == f"{round(0.02 * n_params):,}"

    def boom(*a, **k):
        raise AssertionError("curvature recomputed")

    import core.curvature

    exact = core.curvature.hessian_diagonal
    monkeypatch.setattr(core.curvature, "hessian_diagonal", boom)
    at.select_slider(key="w_frac_curvature").set_value(0.1).run()
    assert at.metric[0].value == f"{round(0.1 * n_params):,}"
    assert at.query_params.get("frac") in ("0.1", ["0.1"])
    at.toggle(key="w_largest_curvature").set_value(False).run()
    assert_clean(at)
    assert at.session_state["curv_selection"]["largest"] is False
    assert "≤" in " ".join(c.value for c in at.caption)
    # the overlap panel builds the Fisher strategy's mask: a legitimate pass over the data
    monkeypatch.setattr(core.curvature, "hessian_diagonal", exact)
    at.toggle(key="show_jaccard").set_value(True).run()
    assert_clean(at)
    assert any(c.proto.id.endswith("-jaccard") for c in at.get("plotly_chart"))


def test_curvature_without_model_points_to_training():
    at = app("pages/3_Curvature.py", **TINY)
    assert_clean(at)
    assert any("Train the original model first" in i.value for i in at.info)


def test_curvature_count_matches_core_selection():
    cfg = train_tiny(dict(state.DEFAULTS, epochs=3))
    at = app("pages/3_Curvature.py", frac="0.005", **TINY)
    wait_job(at, lambda a: len(a.metric) == 1)
    scores = cache.cached_curvature(cfg, cache.store())
    model, _ = cache.model(cfg, "original", cache.store())
    mask = selection.mask_for({"name": "saps"}, model, fraction=0.005, scores=scores)
    assert at.metric[0].value == f"{sum(int(m.sum()) for m in mask.values()):,}"


# -- 4 unlearn -------------------------------------------------------------------------------
def test_unlearn_page_runs_strategies_and_shows_before_after(monkeypatch):
    monkeypatch.setattr(experiment, "run", lambda cfg, **k: fake_result(cfg))
    at = app("pages/4_Unlearn.py", strategies="saps,random", method="masked_finetune")
    assert_clean(at)
    every_widget_has_help(at)
    at.button(key="unlearn").click().run()
    wait_job(at, lambda a: "result" in a.session_state)
    at.run()
    assert_clean(at)
    r = at.session_state["result"]
    assert [s["name"] for s in r["strategies"]] == ["saps", "random"]
    assert r["config"]["unlearning"]["method"] == "masked_finetune"
    assert len(at.dataframe) == 1 and len(at.get("plotly_chart")) >= 1
    # no per-step curves in these rows: the before/after bars only
    assert "Metrics over unlearning steps" not in [h.value for h in at.subheader]


def test_unlearn_page_plots_step_curves_when_rows_carry_them(monkeypatch):
    def with_curves(cfg, **_):
        result = fake_result(cfg)
        for i, row in enumerate(result["strategies"]):
            row["curve"] = {
                "step": [0, 1, 2],
                "test_acc": [0.98, 0.97, 0.96],
                "retain_acc": [1.0, 0.99, 0.99],
                "forget_acc": [0.0, 0.4, 0.6],
                "asr": [0.97, 0.5 - 0.1 * i, 0.1],
            }
        return result

    monkeypatch.setattr(experiment, "run", with_curves)
    at = app("pages/4_Unlearn.py", strategies="saps,random")
    at.button(key="unlearn").click().run()
    wait_job(at, lambda a: "result" in a.session_state)
    at.run()
    assert_clean(at)
    assert "Metrics over unlearning steps" in [h.value for h in at.subheader]
    assert "Before / after" in [h.value for h in at.subheader]  # the bars stay


def test_unlearn_without_strategy_is_an_error():
    at = app("pages/4_Unlearn.py")
    at.multiselect(key="w_strategies_unlearn").set_value([]).run()
    at.button(key="unlearn").click().run()
    assert not at.exception
    assert any("strategies" in e.value for e in at.error)


# -- 5 compare -------------------------------------------------------------------------------
def _stored_run():
    store = RunStore()
    cfg = core_config.normalize(state.build_config(state.DEFAULTS))
    run_id = store.start(cfg)
    result = fake_result(cfg)
    result["run_id"] = run_id
    store.finish(run_id, result, 9.0)
    return run_id, result


def test_compare_loads_a_stored_run_from_the_url():
    run_id, result = _stored_run()
    at = app("pages/5_Compare.py", run=str(run_id))
    assert_clean(at)
    every_widget_has_help(at)
    table = at.dataframe[0].value
    assert list(table["model"])[:2] == ["original θ*", "retrained"]
    assert list(table["model"])[2:] == [r["label"] for r in result["strategies"]]
    assert len(at.get("download_button")) == 3
    at.button(key="load").click().run()
    assert_clean(at)
    assert at.session_state["settings"]["run"] == run_id


def test_compare_shows_full_costs_relearning_privacy_and_honesty_notes():
    run_id, result = _stored_run()
    at = app("pages/5_Compare.py", run=str(run_id))
    assert_clean(at)
    charts = {c.proto.id for c in at.get("plotly_chart")}
    for key in ("tradeoff", "privacy", "seconds", "amortized", "relearn", "restored", "function"):
        assert any(key in c for c in charts), key
    # the row whose method changed nothing carries a visible note, in a warning and in the table
    flagged = result["strategies"][1]["label"]
    assert any(flagged in w.value and "θ* unchanged" in w.value for w in at.warning)
    notes = dict(zip(at.dataframe[0].value["model"], at.dataframe[0].value["note"]))
    assert "guard: unchanged" in notes[flagged] and notes[result["strategies"][0]["label"]] == "–"
    captions = " ".join(c.value for c in at.caption)
    assert "Poison fit AUC" in captions and "lower = forgotten, retrained ≈ 0" in captions
    assert "members" in captions and "test images" in captions


def test_compare_deep_evaluation_runs_in_the_background_with_the_chosen_m(monkeypatch):
    run_id, result = _stored_run()
    calls = []

    def fake_quality(cfg, models, store, progress):
        calls.append(models)
        progress("models", 0.5, "model 1 of 2")
        labels = (
            [r["label"] for r in cfg["strategies"]]
            if cfg["strategies"] and "label" in cfg["strategies"][0]
            else None
        )
        rows = labels or [r["label"] for r in result["strategies"]]
        return {
            "models": models,
            "forget_quality": {lbl: 0.1 * i for i, lbl in enumerate(rows)},
            "original": 0.01,
        }

    monkeypatch.setattr("core.deep_eval.forget_quality_run", fake_quality)
    at = app("pages/5_Compare.py", run=str(run_id), deep_models="3")
    assert at.number_input(key="w_deep_models_compare").value == 3
    at.button(key="deep_eval").click().run()
    wait_job(at, lambda a: "deep_eval_result" in a.session_state)
    at.run()
    assert_clean(at)
    assert calls == [3]
    assert any("forget_quality" in (c.proto.id or "") for c in at.get("plotly_chart"))


def test_compare_unknown_run_is_an_error():
    at = app("pages/5_Compare.py", run="999")
    assert not at.exception
    assert any("999" in e.value for e in at.error)


# -- jobs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "page",
    [
        "app.py",
        "pages/1_Forget_set.py",
        "pages/2_Train.py",
        "pages/3_Curvature.py",
        "pages/4_Unlearn.py",
        "pages/5_Compare.py",
    ],
)
def test_every_page_renders_with_the_shared_menu(page):
    at = app(None if page == "app.py" else page)
    assert_clean(at)
    assert at.main.caption[-1].value == state.PAGE_END
    assert len(at.sidebar.get("page_link")) == len(state.PAGES)


def test_curvature_after_cancel_offers_a_restart_and_an_estimate():
    """After Cancel the curvature does not restart by itself; a button starts it again."""
    train_tiny(dict(state.DEFAULTS, epochs=3))
    from streamlit.testing.v1 import AppTest

    from tests.ui.conftest import APP

    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(TINY)
    at.run()
    at.session_state["failed"] = {"curvature": "Cancelled: by the user"}
    at.switch_page("pages/3_Curvature.py")
    at.query_params.update(TINY)
    at.run()
    assert not at.exception
    running = at.session_state["jobs"] if "jobs" in at.session_state else {}
    assert len(at.metric) == 0 and not any(j.thread.is_alive() for j in running.values())
    assert any("on this machine" in c.value for c in at.caption)
    at.button(key="curv_retry").click().run()
    wait_job(at, lambda a: len(a.metric) == 1)
    assert_clean(at)
