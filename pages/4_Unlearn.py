"""4 · Unlearn: masked updates per strategy, their curves, and before/after predictions."""

from __future__ import annotations

import streamlit as st

from core import config as core_config
from core import experiment
from ui import analysis, cache, choices, figures, jobs, state
from ui.analysis import tables

s = state.init("Unlearn")
store = cache.store()
result = state.shown_result(store)  # the run named in the URL (a shared link) or the session's
st.title("4 · Unlearn")
st.markdown(
    "Each strategy picks a mask M of the same budget; the update touches only those coordinates. "
    "G is the gradient difference between the corrected samples D̃_f and the samples as trained D_f "
    "(Warnecke et al.). First order takes *Steps* masked steps along G (one by default; the caption "
    "under the results says how many ran); second order solves with the curvature restricted to the "
    "mask; the other methods are described in the Method tooltip."
)
st.latex(
    r"\text{first order: } \theta_u = \theta^* - \tau\,(M\odot G) \qquad "
    r"\text{second order: } \theta_{u,M} = \theta^*_M - (H_{MM}+\lambda I)^{-1} G_M"
)

labels = choices.strategy_labels()
state.bind(
    st.multiselect,
    "strategies",
    "Strategies",
    options=list(labels),
    format_func=lambda k: labels.get(k, k),
    help="Each gets its own mask at the same budget (fixed masks ignore it).  \n" + choices.strategy_help(),
)
c1, c2, c3 = st.columns([2, 1, 1])
with c1:
    state.budget_slider("Log-spaced, 0.1 % … 100 % of all parameters.")
methods = choices.methods()
default = choices.default_method(state.scenario_params(s))
with c2:
    state.bind(
        st.selectbox,
        "method",
        "Method",
        options=["", *methods],
        format_func=lambda m: (
            methods.get(m, m) if m else f"scenario default: {methods.get(default, default)}"
        ),
        help=choices.describe("methods", list(methods)),
    )
with c3:
    counts = ", ".join(f"{label} {n}" for label, n in choices.step_counts().items())
    help_steps = f"Update steps of the methods that take steps; 0 = the method's default ({counts})."
    state.bind(st.number_input, "steps", "Steps", min_value=0, max_value=1000, step=5, help=help_steps)

help_go = (
    "Trains (or loads) θ* and the reference, computes what the masks need once, then one masked "
    "update per strategy; runs in the background."
)
if st.button("Unlearn with these strategies", type="primary", key="unlearn", **jobs.guard(help_go)):
    if not s["strategies"]:
        st.error("strategies: choose at least one strategy", icon="🚫")
    elif (cfg := state.checked_config(need_strategies=True)) is not None:
        jobs.start("unlearn", cache.experiment_job(cfg, str(store.root)), "the unlearning run")
jobs.show_estimate(cache.estimate_config(state.config(), store))
if (done := jobs.follow("unlearn")) is not None:
    st.session_state["result"] = result = done
    state.update(run=done.get("run_id") or 0, inspect=0)

if result:
    st.markdown(tables.run_caption(result))
    rows = result["strategies"]
    curves = [
        {**c, "curve": col}
        for c in analysis.strategy_series(result)
        if (col := figures.curve_columns(c["row"].get("curve")))
    ]
    if curves:
        st.subheader("Metrics over unlearning steps")
        keys = ("test_acc", "retain_acc", "forget_acc", "asr")
        fig = figures.unlearning_curves(curves, keys, reference=result.get("retrained"))
        st.plotly_chart(fig, width="stretch", key="curves")
        one_shot = " Strategies without a curve (one-shot methods) appear in the bars below only."
        st.caption(
            "Step 0 is θ*; dashed: the retrained model." + (one_shot if len(curves) < len(rows) else "")
        )
    st.subheader("Before / after")
    bars = figures.metric_bars(analysis.model_series(result), ["test_acc", "retain_acc", "forget_acc", "asr"])
    st.plotly_chart(bars, width="stretch", key="bars")
    for note in tables.warnings(result):
        st.warning(note, icon="⚠️")
    if rows:
        st.dataframe(analysis.display_rows(analysis.unlearn_table(result)), width="stretch", hide_index=True)

    # predictions on triggered images, before and after, for one strategy
    rcfg = core_config.normalize(result["config"])
    fs = cache.prepared(rcfg).forget_set
    if rows and "triggered_test" in fs.eval_sets:
        st.subheader("Predictions on triggered test images")
        s["inspect"] = min(max(0, s["inspect"]), len(rows) - 1)  # a link may name a row that is gone
        pick = state.bind(
            st.selectbox,
            "inspect",
            "Strategy to inspect",
            options=list(range(len(rows))),
            format_func=lambda i: rows[i]["label"],
            help="Re-runs this strategy's masked update (cached) and shows what θ* and the unlearned model predict.",
        )
        row = rows[pick]
        key = f"inspect:{experiment.model_key(rcfg, 'original')}:{row['label']}:{row['method']}"
        if st.button("Show predictions", key="predict", **jobs.guard("Runs in the background.")):
            jobs.start("inspect", cache.predictions_job(rcfg, row, str(store.root), key), "predictions")
        if (pred := jobs.follow("inspect")) is not None:
            st.session_state["inspect_result"] = {"key": key, **pred}
        pred = st.session_state.get("inspect_result")
        if pred and pred["key"] == key:
            titles = [f"{b}→{a}<br>true {t}" for b, a, t in zip(pred["before"], pred["after"], pred["true"])]
            still = [a == fs.target for a in pred["after"]]
            grid = figures.image_grid(pred["images"], titles, cols=8, highlight=still)
            st.plotly_chart(grid, width="stretch", key="pred_grid")
            st.caption(f"θ* prediction → unlearned prediction; red: still the backdoor target {fs.target}.")
    st.page_link("pages/5_Compare.py", label="Compare all metrics", icon=":material/leaderboard:")
else:
    st.info("No result yet in this session: choose strategies and press **Unlearn with these strategies**.")

state.sync_url()
