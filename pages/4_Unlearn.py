"""4 · Unlearn: masked updates per strategy, their curves, and before/after predictions."""

from __future__ import annotations

import streamlit as st

from core import config as core_config
from ui import cache, figures, jobs, state

s = state.init("Unlearn")
st.title("4 · Unlearn")
st.markdown(
    "Each strategy picks a mask M of the same budget; the update touches only those coordinates. "
    "G is the gradient difference between the corrected samples D̃_f and the samples as trained D_f "
    "(Warnecke et al.). First order takes a step along G; second order solves with the Hessian "
    "restricted to the mask; iterative repeats small masked steps on the samples still wrong."
)
st.latex(r"\text{first order: } \theta_u = \theta^* - \tau\,(M\odot G) \qquad "
         r"\text{second order: } \theta_{u,M} = \theta^*_M - (H_{MM}+\lambda I)^{-1} G_M")  # fmt: skip

labels = state.STRATEGY_LABELS
state.bind(st.multiselect, "strategies", "Strategies", options=list(state.STRATEGY_CHOICES),
           format_func=lambda k: labels[k],
           help="Each gets its own mask at the same budget (last layer and all ignore the budget).")  # fmt: skip
c1, c2, c3 = st.columns([2, 1, 1])
with c1:
    state.bind(st.select_slider, "frac", "Budget: fraction of parameters updated", options=state.FRACTIONS,
               format_func=lambda f: f"{f:.1%}", help="Log-spaced, 0.1 % … 100 % of all parameters.")  # fmt: skip
with c2:
    methods = [m for m in core_config.METHODS if m != "retrain"]
    state.bind(st.selectbox, "method", "Method", options=methods,
               help="first_order: one Warnecke step (default); second_order: masked Newton step by CG; "
                    "iterative: repeated small steps (removes backdoors best); finetune, neggrad, ssd.")  # fmt: skip
with c3:
    state.bind(st.number_input, "steps", "Steps", min_value=1, max_value=1000, step=5,
               help="Update steps of the multi-step methods (iterative, finetune, neggrad).")  # fmt: skip

busy = jobs.running()
if st.button("Unlearn with these strategies", type="primary", disabled=busy, key="unlearn",
             help="Trains (or loads) θ* and the reference, computes diag H once, then one masked "
                  "update per strategy; runs in the background."):  # fmt: skip
    if not s["strategies"]:
        st.error("strategies: choose at least one strategy", icon="🚫")
    else:
        cfg = state.checked_config(need_strategies=True)
        if cfg is not None:
            jobs.start("unlearn", cache.experiment_job(cfg, str(cache.store().root)))
jobs.poll("unlearn")
jobs.show_error("unlearn")
done = jobs.take("unlearn")
if done is not None:
    st.session_state["result"] = done
    state.update(run=0)

result = st.session_state.get("result")
if result:
    if result.get("note"):
        st.warning(result["note"])
    rows = result.get("strategies") or []
    labels_of = [f"{r['name']}{'' if r.get('largest', True) else ' (smallest)'}" for r in rows]
    # Per-step curves when the engine records them (row["curve"]); before/after bars always.
    curves = {lbl: c for lbl, r in zip(labels_of, rows) if (c := figures.curve_columns(r.get("curve")))}
    if curves:
        st.subheader("Metrics over unlearning steps")
        st.plotly_chart(figures.unlearning_curves(curves, ("test_acc", "retain_acc", "forget_acc", "asr"),
                                                  reference=result.get("retrained")),
                        width="stretch", key="curves")  # fmt: skip
        st.caption("Step 0 is θ*; dashed: the retrained model. Strategies without a curve (one-shot "
                   "methods) appear in the bars below only." if len(curves) < len(rows) else
                   "Step 0 is θ*; dashed: the retrained model.")  # fmt: skip
    st.subheader("Before / after")
    bars = {"original θ*": result["original"]}
    if result.get("retrained"):
        bars["retrained"] = result["retrained"]
    bars.update({lbl: r["metrics"] for lbl, r in zip(labels_of, rows)})
    st.plotly_chart(figures.metric_bars(bars, ["test_acc", "retain_acc", "forget_acc", "asr"]), width="stretch",
                    key="bars")  # fmt: skip
    if rows:
        st.dataframe([{"strategy": lbl, "fraction": r.get("fraction"), "selected": r.get("n_selected"),
                       **{k: r["metrics"].get(k) for k in ("test_acc", "forget_acc", "asr")},
                       "seconds": r.get("seconds")} for lbl, r in zip(labels_of, rows)],
                     width="stretch", hide_index=True)  # fmt: skip

    # predictions on triggered images, before and after, for one strategy
    cfg = state.checked_config(need_strategies=False)
    fs = cache.prepared(cfg).forget_set if cfg else None
    if fs is not None and rows and "triggered_test" in fs.eval_sets:
        st.subheader("Predictions on triggered test images")
        pick = st.selectbox("Strategy to inspect", options=list(range(len(rows))), format_func=lambda i: labels_of[i],
                            key="inspect", help="Re-runs this strategy's masked update (cached) and shows "
                                                "what θ* and the unlearned model predict.")  # fmt: skip
        row = rows[pick]
        rcfg = core_config.normalize(result["config"])
        key = f"inspect:{cache.curvature_key(rcfg)}:{row['name']}:{row.get('fraction')}:{row.get('largest')}"
        store_path = str(cache.store().root)
        if st.button("Show predictions", key="predict", disabled=busy):
            jobs.start("inspect", lambda p, rcfg=rcfg, row=row, key=key: cache.shared(
                key, lambda: cache.predictions(rcfg, row, cache.store_for(store_path), p)))  # fmt: skip
        jobs.poll("inspect")
        jobs.show_error("inspect")
        pred = jobs.take("inspect")
        if pred is not None:
            st.session_state["inspect_result"] = {"key": key, **pred}
        pred = st.session_state.get("inspect_result")
        if pred and pred["key"] == key:
            titles = [f"{b}→{a}<br>true {t}" for b, a, t in zip(pred["before"], pred["after"], pred["true"])]
            st.plotly_chart(figures.image_grid(pred["images"], titles, cols=8,
                                               highlight=[a == fs.target for a in pred["after"]]),
                            width="stretch", key="pred_grid")  # fmt: skip
            st.caption(f"θ* prediction → unlearned prediction; red: still the backdoor target {fs.target}.")
    st.page_link("pages/5_Compare.py", label="Compare all metrics", icon=":material/leaderboard:")
else:
    st.info("No result yet in this session: choose strategies and press **Unlearn with these strategies**.")

state.sync_url()
