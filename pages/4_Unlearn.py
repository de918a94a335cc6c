"""4 · Unlearn: masked updates per strategy, their curves, and before/after predictions."""

from __future__ import annotations

import streamlit as st

from core import config as core_config
from core import experiment
from ui import analysis, cache, choices, figures, jobs, state

s = state.init("Unlearn")
st.title("4 · Unlearn")
st.markdown(
    "Each strategy picks a mask M of the same budget; the update touches only those coordinates. "
    "G is the gradient difference between the corrected samples D̃_f and the samples as trained D_f "
    "(Warnecke et al.). First order steps along G; second order solves with the curvature restricted "
    "to the mask; the other methods are described in the Method tooltip."
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

busy = jobs.running()
if st.button(
    "Unlearn with these strategies",
    type="primary",
    disabled=busy,
    key="unlearn",
    help="Trains (or loads) θ* and the reference, computes what the masks need once, then one "
    "masked update per strategy; runs in the background.",
):
    if not s["strategies"]:
        st.error("strategies: choose at least one strategy", icon="🚫")
    elif (cfg := state.checked_config(need_strategies=True)) is not None:
        jobs.start("unlearn", cache.experiment_job(cfg, str(cache.store().root)))
if (done := jobs.follow("unlearn")) is not None:
    st.session_state["result"] = done
    state.update(run=0)

result = st.session_state.get("result")
if result:
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
    for label, notes in analysis.flagged(result):
        st.warning(f"**{label}**: " + "; ".join(notes), icon="⚠️")
    if rows:
        st.dataframe(analysis.unlearn_table(result), width="stretch", hide_index=True)

    # predictions on triggered images, before and after, for one strategy
    rcfg = core_config.normalize(result["config"])
    fs = cache.prepared(rcfg).forget_set
    if rows and "triggered_test" in fs.eval_sets:
        st.subheader("Predictions on triggered test images")
        pick = st.selectbox(
            "Strategy to inspect",
            options=list(range(len(rows))),
            format_func=lambda i: rows[i]["label"],
            key="inspect",
            help="Re-runs this strategy's masked update (cached) and shows what θ* and the unlearned model predict.",
        )
        row = rows[pick]
        key = f"inspect:{experiment.model_key(rcfg, 'original')}:{row['label']}:{row['method']}"
        if st.button("Show predictions", key="predict", disabled=busy, help="Runs in the background."):
            jobs.start("inspect", cache.predictions_job(rcfg, row, str(cache.store().root), key))
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
