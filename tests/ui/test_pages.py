"""Every page through AppTest: widgets set, state and results asserted, heavy calls patched."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest

from core import config as core_config
from core import experiment, selection
from core.store import RunStore
from tests.ui.conftest import app, assert_clean, wait_job
from ui import cache, jobs, state

TINY = {"epochs": "3"}
METRICS = dict.fromkeys(("test_acc", "retain_acc", "forget_acc", "forget_acc_poisoned", "asr", "mia_auc",
                         "relearn_asr", "dist_to_retrained"), 0.5)  # fmt: skip


def fake_result(cfg, **_):
    """What core.experiment.run returns, without training (for pages that only show results)."""
    cfg = core_config.normalize(cfg)
    rows = [{"name": s["name"], "fraction": s.get("fraction"), "largest": s.get("largest", True),
             "n_selected": 10 + i, "metrics": {**METRICS, "asr": 0.1 * i}, "seconds": 0.1 * (i + 1)}
            for i, s in enumerate(cfg["strategies"])]  # fmt: skip
    return {"config": cfg, "original": {**METRICS, "asr": 0.97, "test_acc": 0.98},
            "retrained": {**METRICS, "asr": 0.01}, "strategies": rows, "run_id": 1,
            "seconds": {"train": 3.0, "retrain": 3.0, "curvature": 1.0, "total": 9.0}}  # fmt: skip


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
    started = threading.Event()

    def slow_fake(cfg, *, store=None, progress=None):
        started.set()
        progress("train", 0.5, "training")
        time.sleep(0.5)
        return fake_result(cfg)

    monkeypatch.setattr(experiment, "run", slow_fake)
    at = app()
    at.button(key="run_demo").click().run()
    assert started.wait(5)
    assert at.button(key="run_demo").disabled  # a second click cannot start a duplicate
    wait_job(at, lambda a: "result" in a.session_state)
    assert_clean(at)
    assert at.title[0].value == "5 · Compare"
    labels = [r["name"] for r in at.session_state["result"]["strategies"]]
    assert labels == ["saps", "saps", "random", "gradient", "last_layer", "all"]


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
    good = _npz(x_train=rng.random((40, 8, 8)), y_train=np.arange(40) % 4,
                x_test=rng.random((12, 8, 8)), y_test=np.arange(12) % 4)  # fmt: skip
    at = app("pages/1_Forget_set.py", size="5")
    at.file_uploader(key="npz_upload").upload("mine.npz", good).run()
    assert not at.exception
    s = at.session_state["settings"]
    assert s["dataset"] == "npz" and s["root"].endswith(".npz")
    assert {m.label: m.value for m in at.metric}["training samples |D|"] == "40"

    bad = _npz(x_train=rng.random((40, 8, 8)), y_train=np.arange(40) % 4, x_test=rng.random((12, 8, 8)))
    at = app("pages/1_Forget_set.py")
    at.file_uploader(key="npz_upload").upload("bad.npz", bad).run()
    assert not at.exception
    assert any("y_test" in e.value for e in at.error)
    objects = _npz(x_train=np.array([{"a": 1}], dtype=object), y_train=np.arange(3), x_test=rng.random((3, 8, 8)),
                   y_test=np.arange(3))  # fmt: skip
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

    monkeypatch.setattr("core.curvature.hessian_diagonal", boom)
    at.select_slider(key="w_frac_curvature").set_value(0.1).run()
    assert at.metric[0].value == f"{round(0.1 * n_params):,}"
    assert at.query_params.get("frac") in ("0.1", ["0.1"])
    at.toggle(key="w_largest_curvature").set_value(False).run()
    assert_clean(at)
    assert at.session_state["curv_selection"]["largest"] is False
    assert "≤" in " ".join(c.value for c in at.caption)
    at.toggle(key="show_jaccard").set_value(True).run()
    assert_clean(at)
    assert (
        "jaccard" in [c.key for c in at.get("plotly_chart") if hasattr(c, "key")]
        or len(at.get("plotly_chart")) >= 8
    )


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
    mask = selection.build_mask("saps", model, fraction=0.005, scores=scores)
    assert at.metric[0].value == f"{sum(int(m.sum()) for m in mask.values()):,}"


# -- 4 unlearn -------------------------------------------------------------------------------
def test_unlearn_page_runs_strategies_and_shows_before_after(monkeypatch):
    monkeypatch.setattr(experiment, "run", lambda cfg, **k: fake_result(cfg))
    at = app("pages/4_Unlearn.py", strategies="saps,random", method="iterative")
    assert_clean(at)
    every_widget_has_help(at)
    at.button(key="unlearn").click().run()
    wait_job(at, lambda a: "result" in a.session_state)
    at.run()
    assert_clean(at)
    r = at.session_state["result"]
    assert [s["name"] for s in r["strategies"]] == ["saps", "random"]
    assert r["config"]["unlearning"]["method"] == "iterative"
    assert len(at.dataframe) == 1 and len(at.get("plotly_chart")) >= 1
    # no per-step curves in these rows: the before/after bars only
    assert "Metrics over unlearning steps" not in [h.value for h in at.subheader]


def test_unlearn_page_plots_step_curves_when_rows_carry_them(monkeypatch):
    def with_curves(cfg, **_):
        result = fake_result(cfg)
        for i, row in enumerate(result["strategies"]):
            row["curve"] = {"step": [0, 1, 2], "test_acc": [0.98, 0.97, 0.96], "retain_acc": [1.0, 0.99, 0.99],
                            "forget_acc": [0.0, 0.4, 0.6], "asr": [0.97, 0.5 - 0.1 * i, 0.1]}  # fmt: skip
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
def test_compare_loads_a_stored_run_from_the_url():
    store = RunStore()
    cfg = core_config.normalize(state.build_config(state.DEFAULTS))
    run_id = store.start(cfg)
    result = fake_result(cfg)
    result["run_id"] = run_id
    store.finish(run_id, result, 9.0)
    at = app("pages/5_Compare.py", run=str(run_id))
    assert_clean(at)
    every_widget_has_help(at)
    table = at.dataframe[0].value
    assert list(table["model"])[:2] == ["original θ*", "retrained (target)"]
    assert len(table) == 2 + 6
    assert len(at.get("download_button")) == 3
    assert len(at.get("plotly_chart")) >= 5
    at.button(key="load").click().run()
    assert_clean(at)
    assert at.session_state["settings"]["run"] == run_id


def test_compare_unknown_run_is_an_error():
    at = app("pages/5_Compare.py", run="999")
    assert not at.exception
    assert any("999" in e.value for e in at.error)


# -- jobs ------------------------------------------------------------------------------------
def test_job_records_progress_result_and_errors():
    from core.errors import ConfigError

    job = jobs.start_thread("x", lambda p: (p("s", 0.5, "half"), 42)[1])
    job.thread.join(5)
    assert job.done and job.result == 42 and job.error is None and job.fraction == 1.0

    def bad(p):
        raise ConfigError("fraction", "must be in (0, 1]")

    job = jobs.start_thread("y", bad)
    job.thread.join(5)
    assert job.done and job.error == "fraction: must be in (0, 1]"


@pytest.mark.parametrize("page", ["app.py", "pages/1_Forget_set.py", "pages/2_Train.py", "pages/3_Curvature.py",
                                  "pages/4_Unlearn.py", "pages/5_Compare.py"])  # fmt: skip
def test_every_page_renders_with_the_shared_menu(page):
    at = app(None if page == "app.py" else page)
    assert_clean(at)
    assert at.main.caption[-1].value == state.PAGE_END
    assert len(at.sidebar.get("page_link")) == len(state.PAGES)
