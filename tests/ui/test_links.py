"""Links that reproduce a view, Cancel, time estimates, labelled results, downloads, and why a
backdoor stayed: AppTest and the pure helpers behind them. Events (never sleeps) decide jobs."""

from __future__ import annotations

import json
import threading

import pytest

from core import config as core_config
from core import experiment
from core.store import RunStore
from tests.ui.conftest import app, assert_clean, wait_job
from tests.ui.test_pages import fake_result
from ui import cache, figures, jobs, state
from ui.analysis import tables


def _stored(method: str = "masked_finetune", steps: int | None = None, asr_step: float = 0.1):
    """A finished run in the test's store (fake numbers, real config), with its id."""
    settings = dict(state.DEFAULTS, strategies=["saps", "random", "all"], frac=0.05, method=method)
    cfg = core_config.normalize(state.build_config(settings))
    store = RunStore()
    run_id = store.start(cfg)
    result = fake_result(cfg)
    for i, row in enumerate(result["strategies"]):
        row["metrics"]["asr"] = asr_step * i
        row["steps"] = steps
        row["method_label"] = tables.choices.methods()[cfg["unlearning"]["method"]]
    result["run_id"] = run_id
    store.finish(run_id, result, 9.0)
    return run_id, result


def _charts(at) -> dict[str, str]:
    """{chart key: its figure JSON} of every plotly chart on the page."""
    return {c.proto.id.split("-")[-1]: c.proto.spec for c in at.get("plotly_chart")}


def _sidebar_text(at) -> str:
    return " ".join(c.value for c in at.sidebar.caption)


# -- 1 links that reproduce -----------------------------------------------------------------------
@pytest.mark.parametrize("page", ["pages/4_Unlearn.py", "pages/5_Compare.py"])
def test_unknown_run_id_is_a_clear_message_naming_the_id_and_the_way_out(page):
    at = app(page, run="4242")
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "Run 4242" in errors[0] and "Run history" in errors[0]
    assert "result" not in at.session_state  # no other run shown in its place
    assert at.query_params.get("run") in ("4242", ["4242"])  # the link is kept as given


@pytest.mark.parametrize("page", ["pages/4_Unlearn.py", "pages/5_Compare.py"])
def test_a_link_opened_in_a_fresh_session_shows_the_same_run_and_figures(page):
    run_id, result = _stored()
    first = app(page, run=str(run_id))
    assert_clean(first)
    second = app(page, run=str(run_id))  # another browser: empty session, same URL
    assert_clean(second)
    assert second.session_state["result"]["run_id"] == run_id
    assert _charts(second) == _charts(first) and len(_charts(first)) >= 1
    # the run's own settings are taken over, so the widgets and the sidebar describe it
    s = second.session_state["settings"]
    assert s["strategies"] == ["saps", "random", "all"] and s["frac"] == 0.05
    assert "5.0%" in _sidebar_text(second)
    labels = [r["label"] for r in result["strategies"]]
    if page.endswith("Compare.py"):
        assert list(second.dataframe[0].value["model"])[2:] == labels
    else:
        assert list(second.dataframe[0].value["strategy"]) == labels


def test_settings_named_in_the_link_win_over_the_runs_own():
    run_id, _ = _stored()
    at = app("pages/4_Unlearn.py", run=str(run_id), strategies="gradient")
    assert_clean(at)
    s = at.session_state["settings"]
    assert s["strategies"] == ["gradient"] and s["frac"] == 0.05  # from the link, from the run
    assert at.multiselect(key="w_strategies_unlearn").value == ["gradient"]


def test_after_unlearning_the_address_names_the_run(monkeypatch):
    def stored_fake(cfg, *, store=None, progress=None):
        result = fake_result(cfg)
        result["run_id"] = store.start(core_config.normalize(cfg))
        store.finish(result["run_id"], result, 1.0)
        return result

    monkeypatch.setattr(experiment, "run", stored_fake)
    at = app("pages/4_Unlearn.py", strategies="saps,random")
    at.button(key="unlearn").click().run()
    wait_job(at, lambda a: "result" in a.session_state)
    at.run()
    assert_clean(at)
    run_id = at.session_state["result"]["run_id"]
    assert at.query_params.get("run") in (str(run_id), [str(run_id)])
    again = app(
        "pages/4_Unlearn.py", **{k: v[-1] if isinstance(v, list) else v for k, v in at.query_params.items()}
    )
    assert_clean(again)
    assert _charts(again) == _charts(at)


def test_after_the_demo_the_compare_address_names_the_run(monkeypatch):
    monkeypatch.setattr(experiment, "run", lambda cfg, **_: {**fake_result(cfg), "run_id": 7})
    at = app()
    at.button(key="run_demo").click().run()
    wait_job(at, lambda a: "result" in a.session_state)
    assert at.title[0].value == "5 · Compare"
    assert at.query_params.get("run") in ("7", ["7"])
    assert "Run #7" in " ".join(m.value for m in at.markdown)


def test_the_inspected_strategy_is_part_of_the_link():
    run_id, result = _stored()
    at = app("pages/4_Unlearn.py", run=str(run_id), inspect="2")
    assert_clean(at)
    assert at.selectbox(key="w_inspect_unlearn").value == 2
    at.selectbox(key="w_inspect_unlearn").set_value(1).run()
    assert at.query_params.get("inspect") in ("1", ["1"])
    gone = app("pages/4_Unlearn.py", run=str(run_id), inspect="9")  # a row the run does not have
    assert_clean(gone)
    assert gone.selectbox(key="w_inspect_unlearn").value == len(result["strategies"]) - 1


def test_a_deep_evaluation_is_stored_with_its_run_and_shown_by_the_link(monkeypatch):
    run_id, result = _stored()
    labels = [r["label"] for r in result["strategies"]]

    def fake_quality(cfg, models, store, progress):
        progress("models", 0.5, "seed 1 done")
        return {"models": models, "forget_quality": dict.fromkeys(labels, 0.25), "original": 0.01}

    monkeypatch.setattr("core.deep_eval.forget_quality_run", fake_quality)
    at = app("pages/5_Compare.py", run=str(run_id), deep_models="3")
    at.button(key="deep_eval").click().run()
    wait_job(at, lambda a: "deep_eval_result" in a.session_state)
    at.run()
    (row,) = RunStore().list_runs(kind="deep_eval")
    assert row["status"] == "done" and row["result"]["forget_quality"] == dict.fromkeys(labels, 0.25)
    fresh = app("pages/5_Compare.py", run=str(run_id), deep_models="3")  # another browser
    assert_clean(fresh)
    assert _charts(fresh)["forget_quality"] == _charts(at)["forget_quality"]
    other_m = app("pages/5_Compare.py", run=str(run_id), deep_models="4")  # not evaluated with M = 4
    assert "forget_quality" not in _charts(other_m)


# -- sidebar ------------------------------------------------------------------------------------
def test_sidebar_summary_follows_the_slider_in_the_same_run():
    at = app("pages/4_Unlearn.py")
    assert "2.0%" in _sidebar_text(at)
    at.select_slider(key="w_frac_unlearn").set_value(0.1).run()
    assert "10.0%" in _sidebar_text(at)  # not one interaction behind
    at.selectbox(key="w_method_unlearn").set_value("first_order").run()
    assert "First order" in _sidebar_text(at)


# -- 2 jobs: cancel, estimates, why buttons are disabled ----------------------------------------
def _held_unlearning(monkeypatch) -> tuple:
    """The Unlearn page with its job started and held after its first progress report: (the
    AppTest, the event that lets the job go on — and raise Cancelled if Cancel was pressed)."""
    started, release = threading.Event(), threading.Event()

    def held(cfg, *, store=None, progress=None):
        progress("train", 0.1, "epoch 1")
        started.set()
        release.wait(30)
        progress("train", 0.2, "epoch 2")  # raises Cancelled once Cancel was pressed
        return fake_result(cfg)

    monkeypatch.setattr(experiment, "run", held)
    at = app("pages/4_Unlearn.py")
    at.button(key="unlearn").click().run()
    assert started.wait(10)
    at.run()
    return at, release


def test_cancel_stops_the_unlearning_job_and_says_so(monkeypatch):
    at, release = _held_unlearning(monkeypatch)
    go = at.button(key="unlearn")
    assert go.disabled and "Disabled while the unlearning run runs" in go.help
    at.button(key="cancel_unlearn").click().run()
    release.set()
    wait_job(at, lambda a: any("cancelled" in i.value for i in a.info))
    assert_clean(at)
    assert "result" not in at.session_state and not at.button(key="unlearn").disabled


def test_a_reload_while_a_job_runs_follows_it_again_and_only_with_its_token(monkeypatch):
    """A reload is a new session: with the job's token from the URL it gets the progress bar and
    Cancel back (the job goes on); a session without the token sees no job and may start one."""
    at, release = _held_unlearning(monkeypatch)
    token = at.query_params.get("job")
    token = token[-1] if isinstance(token, list) else token
    assert token and jobs.find(token) is not None
    other = app("pages/4_Unlearn.py")  # another user, or a link without the token
    assert not other.button(key="unlearn").disabled
    with pytest.raises(KeyError):
        other.button(key="cancel_unlearn")
    reloaded = app("pages/4_Unlearn.py", job=token)
    assert reloaded.button(key="unlearn").disabled
    reloaded.button(key="cancel_unlearn").click().run()
    release.set()
    wait_job(reloaded, lambda a: any("cancelled" in i.value for i in a.info))
    assert_clean(reloaded)
    assert jobs.find(token) is None  # collected: the table forgets it
    assert "job" not in reloaded.query_params


def test_the_unlearn_button_has_a_time_estimate_and_warns_when_slow(monkeypatch):
    at = app("pages/4_Unlearn.py")
    assert_clean(at)
    assert any(c.value.startswith("about ") for c in at.caption)
    monkeypatch.setattr(jobs, "seconds_per_epoch", lambda *a: 10.0)
    at = app("pages/4_Unlearn.py")
    # 2 models × 30 epochs, curvature ≈ 3 epochs, 6 strategies × (overhead + 0.3 epochs): 657 s
    expected = jobs.format_estimate(2 * 30 * 10 + 3 * 10 + 6 * (cache.STRATEGY_OVERHEAD_S + 3))
    assert expected == "about 11 min"
    assert any(expected in w.value and "cancel" in w.value for w in at.warning)


def test_estimate_from_the_measured_epoch_time():
    bench = json.loads(jobs.TRAIN_BENCHMARK.read_text())["rows"]
    row = next(r for r in bench if (r["dataset"], r["model"]) == ("digits", "cnn"))
    assert jobs.seconds_per_epoch("digits", "cnn", row["n_train"], row["parameters"]) == pytest.approx(
        row["seconds_per_epoch"]
    )
    assert jobs.seconds_per_epoch("digits", "cnn", 2 * row["n_train"], row["parameters"]) == pytest.approx(
        2 * row["seconds_per_epoch"]
    )
    cfg = core_config.normalize(state.build_config(dict(state.DEFAULTS, strategies=["saps"])))
    n = len(cache.prepared(cfg).dataset.y_train)
    epoch = jobs.seconds_per_epoch("digits", "cnn", n, cache.n_parameters(cfg))
    store = RunStore()
    train_only = cache.estimate(cfg, store, "train")
    assert train_only == pytest.approx(2 * cfg["train"]["epochs"] * epoch)
    curvature = 3 * epoch
    assert cache.estimate(cfg, store, "run") == pytest.approx(
        train_only + curvature + cache.STRATEGY_OVERHEAD_S + 0.3 * epoch
    )
    assert jobs.format_estimate(42) == "about 42 s" and jobs.format_estimate(600) == "about 10 min"


def test_a_cancelled_run_leaves_no_done_row_in_the_store():
    cfg = state.build_config(dict(state.DEFAULTS, epochs=3, strategies=["saps"]))
    store = RunStore()

    def cancel_at_retraining(stage, fraction, message):
        if stage == "retrain":
            raise jobs.Cancelled("the run cancelled by the user")

    with pytest.raises(jobs.Cancelled):
        experiment.run(cfg, store=store, progress=cancel_at_retraining)
    rows = store.list_runs(kind="run")
    assert len(rows) == 1 and rows[0]["status"] == "failed" and rows[0]["result"] is None
    assert rows[0]["error"].startswith("Cancelled")
    assert tables.history_table(rows)[0]["status"] == "cancelled"


# -- results labelled with their settings ------------------------------------------------------
def test_results_and_history_show_method_estimator_and_budget():
    run_id, result = _stored(method="first_order", steps=5)
    caption = tables.run_caption(result)
    assert f"Run #{run_id}" in caption and "First order (Warnecke)" in caption and "5 steps run" in caption
    assert "budget **5.0%**" in caption and "estimator **" in caption
    (row,) = tables.history_table(RunStore().list_runs(kind="run"))
    assert row["method"] == "First order (Warnecke)" and row["budget"] == "5.0%"
    assert row["seconds"] == 9.0  # rounded to 0.1 s for reading (stored 9.0)
    assert row["estimator"] == tables.choices.labels("estimators")[result["config"]["curvature"]["method"]]
    at = app("pages/5_Compare.py", run=str(run_id))
    assert_clean(at)
    assert "First order (Warnecke)" in list(at.dataframe[-1].value["method"])


# -- 4 why the backdoor stayed --------------------------------------------------------------------
def test_when_every_strategy_keeps_the_backdoor_the_page_says_why():
    run_id, result = _stored(method="first_order", steps=5, asr_step=0.0)
    for row in result["strategies"]:
        row["metrics"]["asr"] = 0.9  # θ* 0.97, retrained 0.01: a quarter of the way down is 0.73
    result["strategies"][0]["log"] = {"guard_failed": True, "changed": False}
    result["strategies"][2]["lr"] = 1 / 300
    RunStore().finish(run_id, result, 1.0)
    why = tables.backdoor_kept(result)
    assert why is not None and "above 73%" in why and "First order" in why
    assert "the scenario's default method (Masked fine-tuning)" in why
    default = [{**r, "method": "masked_finetune"} for r in result["strategies"]]
    kept = tables.backdoor_kept({**result, "strategies": default})
    assert "more steps or a larger budget." in kept and "(Masked fine-tuning)" not in kept
    assert "no step size passed the validation guard" in why and "5 step(s), τ = 0.00333)" in why
    for page in ("pages/4_Unlearn.py", "pages/5_Compare.py"):
        at = app(page, run=str(run_id))
        assert_clean(at)
        assert any("Every strategy leaves the backdoor in place" in w.value for w in at.warning), page
    result["strategies"][2]["metrics"]["asr"] = 0.72  # one strategy below the bar: nothing to explain
    assert tables.backdoor_kept(result) is None
    notes = tables.warnings(result)  # back to the per-strategy notes (row 1 of fake_result changed nothing)
    assert (
        notes[0]
        == "**SAPS (largest diag H) @ 5 %**: no step size passed the validation guard: θ* returned unchanged"
    )
    assert len(notes) == 2 and notes[1].startswith("**random (live) @ 5 %**: no parameter changed")


# -- 3 downloads ---------------------------------------------------------------------------------
def test_downloads_are_eager_stable_and_do_not_rerun():
    _, result = _stored()
    figs = {"a": figures.metric_bars(tables.model_series(result), ["test_acc"]), "b": figures.pipeline()}
    rows = tables.table(result)
    one, two = tables.downloads(result, rows, figs), tables.downloads(result, rows, figs)
    assert [b["data"] for b in one] == [b["data"] for b in two]  # same bytes on every rerun
    assert [b["key"] for b in one] == ["dl_csv", "dl_json", "dl_html"]
    assert all(b["on_click"] == "ignore" and isinstance(b["data"], str) for b in one)
    html = one[2]["data"]
    assert html.count("<script") >= 2 and 'id="saps-a"' in html and 'id="saps-b"' in html


def test_estimate_falls_back_to_the_same_model_then_to_the_slowest_rate(monkeypatch, tmp_path):
    rows = [
        {"dataset": "digits", "model": "mlp", "n_train": 100, "parameters": 10, "seconds_per_epoch": 1.0},
        {"dataset": "digits", "model": "cnn", "n_train": 100, "parameters": 10, "seconds_per_epoch": 5.0},
        {
            "dataset": "fashion-mnist",
            "model": "cnn",
            "n_train": 100,
            "parameters": 10,
            "seconds_per_epoch": 3.0,
        },
    ]
    bench = tmp_path / "train.json"
    bench.write_text(json.dumps({"rows": rows}))
    monkeypatch.setattr(jobs, "TRAIN_BENCHMARK", bench)
    assert jobs.seconds_per_epoch("fashion-mnist", "cnn", 200, 10) == pytest.approx(6.0)  # its own row
    assert jobs.seconds_per_epoch("fashion-mnist", "mlp", 200, 10) == pytest.approx(2.0)  # mlp on digits
    assert jobs.seconds_per_epoch("cifar10", "resnet18", 100, 10) == pytest.approx(5.0)  # the slowest
    bench.write_text("not json")
    assert jobs.seconds_per_epoch("digits", "cnn", 100, 10) == pytest.approx(4e-9 * 1000)
