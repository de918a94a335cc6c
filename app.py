"""SAPS workbench: home page. Run with `streamlit run app.py` (or `make run`)."""

from __future__ import annotations

import streamlit as st

from ui import cache, choices, figures, jobs, state

s = state.init("Home")

st.title("SAPS workbench: machine unlearning by sharpness-aware parameter selection")
st.markdown(
    "A model trained on poisoned data — a backdoor trigger, flipped labels — should **unlearn** "
    "those samples: end up like a model retrained without the damage, but at a fraction of the cost. "
    "Warnecke et al. do this with an update computed from the gradient difference between the "
    "poisoned samples and their corrected versions. **SAPS** updates only the parameters where the "
    "training loss is sharpest, ranked by the diagonal of the Hessian. "
    "This workbench lets you build the forget set, train, look at the curvature, unlearn with "
    "several selection strategies and compare them with retraining, side by side."
)
st.latex(
    r"\theta_u = \theta^* - \tau\,\bigl(M \odot G\bigr),\quad "
    r"G = \sum_{\tilde z \in \tilde D_f}\nabla_\theta \ell(\tilde z;\theta^*) - \sum_{z\in D_f}\nabla_\theta \ell(z;\theta^*),"
    r"\quad M_i = 1 \iff |H_{ii}| \text{ among the top } k"
)
st.plotly_chart(figures.pipeline(), width="stretch", config={"displayModeBar": False}, key="pipeline")

st.subheader("Quick choice")
c1, c2, c3 = st.columns(3)
with c1:
    state.choose("dataset", "Data set", "datasets", note="Page 1 · Forget set accepts an uploaded .npz.")
with c2:
    state.choose("model", "Model", "models")
with c3:
    state.choose("scenario", "Forget scenario", "scenarios")

busy = jobs.running()
b1, b2, _ = st.columns([1, 1, 2])
demo_labels = ", ".join(choices.strategy_labels()[k] for k in state.DEMO_STRATEGIES)
demo = b1.button(
    "Run the demo",
    type="primary",
    disabled=busy,
    key="run_demo",
    help=f"Train θ*, retrain the reference, compute diag H and unlearn with six strategies ({demo_labels}) "
    f"at a {s['frac']:.1%} budget; then open the comparison. Digits on 2 CPU cores: about 20 s.",
)
train = b2.button(
    "Train only",
    disabled=busy,
    key="train_only",
    help="Train the original model and the retrained reference (cached by config) and show "
    "their test accuracy and attack success rate.",
)
if demo:
    state.update(strategies=list(state.DEMO_STRATEGIES))
    cfg = state.checked_config(need_strategies=True)
    if cfg is not None:
        jobs.start("demo", cache.experiment_job(cfg, str(cache.store().root)))
if train:
    cfg = state.checked_config(strategies=False)
    if cfg is not None:
        jobs.start("train", cache.train_job(cfg, str(cache.store().root)))

if (done := jobs.follow("demo")) is not None:
    st.session_state["result"] = done
    state.update(run=0)
    state.sync_url()
    st.switch_page("pages/5_Compare.py")
if (trained := jobs.follow("train")) is not None:
    st.session_state["train_result"] = trained

shown = st.session_state.get("train_result") or st.session_state.get("result")
if shown:
    st.subheader("Trained models")
    cols = iter(st.columns(4))
    o, r = shown["original"], shown.get("retrained") or {}
    next(cols).metric("test accuracy θ*", f"{o['test_acc']:.1%}", help="Original model on clean test images.")
    if o.get("asr") is not None:
        help_asr = "Share of triggered non-target test images classified as the target class."
        next(cols).metric("attack success θ*", f"{o['asr']:.1%}", help=help_asr)
    if r:
        next(cols).metric("test accuracy retrained", f"{r['test_acc']:.1%}")
        if r.get("asr") is not None:
            next(cols).metric("attack success retrained", f"{r['asr']:.1%}")
    secs = shown["seconds"]
    st.caption(
        f"training {secs['train']:.1f} s · retraining {secs['retrain'] or 0:.1f} s · total "
        f"{secs['total']:.1f} s (cached models load instantly)"
    )

st.divider()
st.markdown(
    "Step by step: **1 · Forget set** → **2 · Train** → **3 · Curvature** → **4 · Unlearn** → "
    "**5 · Compare** (menu on the left). Every control has a tooltip; the URL keeps your settings."
)
state.sync_url()
