"""SAPS workbench: home page. Run with `streamlit run app.py` (or `make run`)."""

from __future__ import annotations

import streamlit as st

from core import config as core_config
from ui import cache, figures, jobs, state

s = state.init("Home")

st.title("SAPS workbench: machine unlearning by sharpness-aware parameter selection")
st.markdown(
    "A model trained on poisoned data — a backdoor trigger, flipped labels — should **unlearn** "
    "those samples: end up like a model retrained without the damage, but at a fraction of the cost. "
    "Warnecke et al. do this with one update step computed from the gradient difference between the "
    "poisoned samples and their corrected versions. **SAPS** updates only the parameters where the "
    "training loss is sharpest, ranked by the diagonal of the Hessian. "
    "This workbench lets you build the forget set, train, look at the curvature, unlearn with "
    "several selection strategies and compare them with retraining, side by side."
)
st.latex(r"\theta_u = \theta^* - \tau\,\bigl(M \odot G\bigr),\quad "
         r"G = \sum_{\tilde z \in \tilde D_f}\nabla_\theta \ell(\tilde z;\theta^*) - \sum_{z\in D_f}\nabla_\theta \ell(z;\theta^*),"
         r"\quad M_i = 1 \iff |H_{ii}| \text{ among the top } k")  # fmt: skip
st.plotly_chart(figures.pipeline(), width="stretch", config={"displayModeBar": False}, key="pipeline")

st.subheader("Quick choice")
c1, c2, c3 = st.columns(3)
with c1:
    state.bind(st.selectbox, "dataset", "Data set", options=list(core_config.DATASETS),
               help="digits ships with scikit-learn (1,347 training images of 8×8); the others need "
                    "local files (page 1 · Forget set accepts an uploaded .npz).")  # fmt: skip
with c2:
    state.bind(st.selectbox, "model", "Model", options=list(core_config.MODELS),
               help="cnn: 2 conv blocks + dense (13.7k parameters on digits); mlp: two ReLU layers; "
                    "resnet18: 11M parameters, slow on a CPU.")  # fmt: skip
with c3:
    state.bind(st.selectbox, "scenario", "Forget scenario", options=[k for k in core_config.SCENARIOS],
               help="backdoor: a trigger patch relabels images to a target class; label_flip: labels "
                    "s→9−s; random_samples/class: plain removal; indices: samples you pick on page 1.")  # fmt: skip

busy = jobs.running()
b1, b2, _ = st.columns([1, 1, 2])
demo = b1.button(
    "Run the demo", type="primary", disabled=busy, key="run_demo",
                 help="Train θ*, retrain the reference, compute diag H and unlearn with six strategies "
                      f"({', '.join(state.DEMO_STRATEGIES)}) at a {s['frac']:.1%} budget; then open the "
                      "comparison. Digits on 2 CPU cores: about 20 s.")  # fmt: skip
train = b2.button(
    "Train only", disabled=busy, key="train_only",
                  help="Train the original model and the retrained reference (cached by config) and show "
                       "their test accuracy and attack success rate.")  # fmt: skip

if demo:
    state.update(strategies=list(state.DEMO_STRATEGIES))
    cfg = state.checked_config(need_strategies=True)
    if cfg is not None:
        jobs.start("demo", cache.experiment_job(cfg, str(cache.store().root)))
if train:
    cfg = state.checked_config(strategies=False)
    if cfg is not None:
        jobs.start("train", cache.train_job(cfg, str(cache.store().root)))

jobs.poll("demo")
jobs.poll("train")
jobs.show_error("demo")
jobs.show_error("train")

done = jobs.take("demo")
if done is not None:
    st.session_state["result"] = done
    state.update(run=0)
    state.sync_url()
    st.switch_page("pages/5_Compare.py")
trained = jobs.take("train")
if trained is not None:
    st.session_state["train_result"] = trained

shown = st.session_state.get("train_result") or st.session_state.get("result")
if shown:
    st.subheader("Trained models")
    cols = st.columns(4)
    o, r = shown["original"], shown.get("retrained") or {}
    cols[0].metric(
        "test accuracy θ*",
        f"{o['test_acc']:.1%}",
        help="Accuracy of the original model on clean test images.",
    )
    if o.get("asr") is not None:
        cols[1].metric("attack success θ*", f"{o['asr']:.1%}",
                       help="Share of triggered non-target test images classified as the target class.")  # fmt: skip
    if r:
        cols[2].metric("test accuracy retrained", f"{r['test_acc']:.1%}")
        if r.get("asr") is not None:
            cols[3].metric("attack success retrained", f"{r['asr']:.1%}")
    secs = shown["seconds"]
    st.caption(f"training {secs['train']:.1f} s · retraining {secs['retrain'] or 0:.1f} s · total "
               f"{secs['total']:.1f} s (cached models load instantly)")  # fmt: skip

st.divider()
st.markdown("Step by step: **1 · Forget set** → **2 · Train** → **3 · Curvature** → **4 · Unlearn** → "
            "**5 · Compare** (menu on the left). Every control has a tooltip; the URL keeps your settings.")  # fmt: skip
state.sync_url()
