"""5 · Compare: every strategy against the original and the retrained model; run history."""

from __future__ import annotations

import streamlit as st

from ui import analysis, cache, figures, jobs, state
from ui.analysis import tables

s = state.init("Compare")
st.title("5 · Compare")
st.markdown(
    "A good unlearning method lands next to the **retrained** model: attack success and membership "
    "inference down to its level, test accuracy kept, and the damage should not come back after a few "
    "fine-tuning steps (relearning attack) — at a fraction of the retraining time, *selection included*. "
    "Warnecke's *% restored* measures how much of the accuracy lost to poisoning came back."
)
st.latex(
    r"\%\,\text{restored} = \frac{\mathrm{acc}_{\text{after}} - \mathrm{acc}_{\text{before}}}"
    r"{\mathrm{acc}_{\text{clean}} - \mathrm{acc}_{\text{before}}},\qquad "
    r"\text{cost} = t_{\text{select}} + t_{\text{update}}"
)

store = cache.store()
result = state.shown_result(store)  # the run named in the URL (a shared link) or the session's
figs: dict = {}
if result:
    st.markdown(tables.run_caption(result))
    for col, (label, value, help_) in zip(st.columns(4), analysis.headline(result)):
        col.metric(label, value, help=help_)
    for note in tables.warnings(result):
        st.warning(note, icon="⚠️")
    o, ref, models = result["original"], result.get("retrained") or {}, analysis.model_series(result)
    strategies = analysis.strategy_series(result)
    x_key = analysis.forget_key(result)
    figs["tradeoff"] = figures.tradeoff(strategies, x_key=x_key, original=o, retrained=ref)
    figs["privacy"] = figures.metric_bars(
        models, ["poison_fit_auc", "mia_auc"], title="poison fit and membership"
    )
    c1, c2 = st.columns(2)
    c1.plotly_chart(figs["tradeoff"], width="stretch", key="tradeoff")
    c2.plotly_chart(figs["privacy"], width="stretch", key="privacy")
    c2.caption(
        "**Poison fit AUC**: D_f as trained (trigger, poisoned label) vs test images, loss-threshold AUC: "
        "lower = forgotten, retrained ≈ 0. **MIA AUC**: membership attack, members (D̃_f, or D_f for a "
        "removal) vs test images on the logit-scaled confidence: 0.5 = the attacker cannot tell."
    )
    costs, retrain = analysis.cost_series(result), result["seconds"].get("retrain")
    figs["seconds"] = figures.cost_bars(costs, retrain_seconds=retrain, title="full cost per strategy")
    figs["amortized"] = figures.amortized_bars(costs, retrain_seconds=retrain)
    c3, c4 = st.columns(2)
    c3.plotly_chart(figs["seconds"], width="stretch", key="seconds")
    c3.caption("Selection (hatched) is everything the mask needs: diag H, the liveness pass, gradients.")
    c4.plotly_chart(figs["amortized"], width="stretch", key="amortized")
    c4.caption("Amortized: one curvature shared by several budgets or strategies, counted once per run.")
    c5, c6 = st.columns(2)
    figs["relearn"] = figures.relearn_curves(
        analysis.relearn_series(result), y_title=analysis.relearn_title(result)
    )
    c5.plotly_chart(figs["relearn"], width="stretch", key="relearn")
    c5.caption("Relearning attack: a few fine-tuning steps on the damaged samples; retrained dashed.")
    with c6:
        st.markdown(
            "**Deep evaluation**: forget quality over M models per side (higher = closer to retraining)."
        )
        help_m = "Models trained with different seeds on the same D_f, unlearned and retrained (digits: 16)."
        state.bind(st.number_input, "deep_models", "Models M", min_value=2, max_value=64, help=help_m)
        help_deep = "Trains M originals and M retrained models and unlearns each (background job; minutes)."
        if st.button("Deep evaluation", key="deep_eval", **jobs.guard(help_deep)):
            fn = cache.deep_eval_job(
                result["config"], str(store.root), s["deep_models"], result.get("run_id")
            )
            jobs.start("deep_eval", fn, "the deep evaluation")
        jobs.show_estimate(cache.estimate_config(result["config"], store, "deep_eval", s["deep_models"]))
        if (fq := jobs.follow("deep_eval")) is not None:
            st.session_state["deep_eval_result"] = {"run": result.get("run_id"), **fq}
        fq = st.session_state.get("deep_eval_result")
        if not (fq and fq["run"] == result.get("run_id") and fq.get("models") == s["deep_models"]):
            fq = cache.stored_deep_eval(store, result.get("run_id"), s["deep_models"])  # a shared link
        if fq:
            fq_series = analysis.forget_quality_series(result, fq)
            figs["forget_quality"] = figures.forget_quality_bars(
                fq_series, original=fq["original"], models=fq["models"]
            )
            st.plotly_chart(figs["forget_quality"], width="stretch", key="forget_quality")

    figs["restored"] = figures.restored_bars(strategies)
    figs["function"] = figures.function_distance(models)
    c7, c8 = st.columns(2)
    c7.plotly_chart(figs["restored"], width="stretch", key="restored")
    c8.plotly_chart(figs["function"], width="stretch", key="function")
    c8.caption("What the models predict, not their weights. Layer by layer: page 6 · Where.")
    st.subheader("Versus budget")
    points = analysis.budget_points(result, store.list_runs(kind="run", limit=200))
    keys = [
        k
        for k in (x_key, "mia_auc", "relearn_success", "test_acc")
        if any(p["metrics"].get(k) is not None for p in points)
    ]
    grid = st.columns(2)
    for i, k in enumerate(keys if points else []):
        figs[f"budget_{k}"] = figures.metric_vs_budget(points, k, reference=ref.get(k))
        grid[i % 2].plotly_chart(figs[f"budget_{k}"], width="stretch", key=f"budget_{k}")
    st.caption(
        "Points come from every stored run on the same trained models and method; add budgets with a sweep."
    )
    help_sweep = "One run with every chosen budgeted strategy at four budgets (models and curvature reused)."
    sweep = analysis.sweep_config(state.config(), s["strategies"], (0.005, 0.02, 0.1, 0.5))
    if st.button("Sweep budgets (0.5 %, 2 %, 10 %, 50 %)", key="sweep", **jobs.guard(help_sweep)):
        jobs.start("sweep", cache.experiment_job(sweep, str(store.root)), "the budget sweep")
    jobs.show_estimate(cache.estimate_config(sweep, store))
    if jobs.follow("sweep") is not None:
        st.rerun()

    st.subheader("Table")
    rows = analysis.table(result)
    st.dataframe(analysis.display_rows(rows), width="stretch", hide_index=True)
    for col, button in zip(st.columns(3), tables.downloads(result, rows, figs)):
        col.download_button(**button)
else:
    st.info(
        "No result in this session yet: press **Run the demo** on the home page, unlearn on page 4, or load a stored run below."
    )

st.subheader("Run history")
history = store.list_runs(kind="run", limit=50)
if history:
    st.dataframe(tables.history_table(history), width="stretch", hide_index=True)
    h1, h2, h3 = st.columns([2, 1, 1])
    help_run = "A run from the store (shared by every user of this server)."
    run_id = h1.selectbox("Run", options=[r["id"] for r in history], key="history_pick", help=help_run)
    chosen = next(r for r in history if r["id"] == run_id)
    help_load = "Show this run here and take over its settings (the URL then links to it)."
    if h2.button("Load", key="load", disabled=chosen["status"] != "done", help=help_load):
        st.session_state["result"] = chosen["result"]
        state.update(**state.settings_from_config(chosen.get("config") or {}), run=int(run_id))
        st.rerun()
    help_rerun = "Run this config again (trained models are reused from the store)."
    if h3.button("Re-run", key="rerun", **jobs.guard(help_rerun)):
        state.update(**state.settings_from_config(chosen.get("config") or {}), run=0)
        jobs.start("rerun", cache.experiment_job(chosen.get("config") or {}, str(store.root)), "the re-run")
    if (redone := jobs.follow("rerun")) is not None:
        st.session_state["result"] = redone
        state.update(run=redone.get("run_id") or 0)
        st.rerun()
else:
    st.caption("The run store is empty.")

state.sync_url()
