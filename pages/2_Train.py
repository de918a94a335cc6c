"""2 · Train: the original model θ* and the retrained reference, cached by config."""

from __future__ import annotations

import streamlit as st

from ui import analysis, cache, figures, jobs, state

s = state.init("Train")
st.title("2 · Train")
st.markdown(
    "The **original** model θ* minimises the training loss on D_r ∪ D_f, damage included; the "
    "**retrained** reference does the same on D_r ∪ D̃_f and is what unlearning aims for. Both are "
    "stored as checkpoints keyed by everything that determines their weights (data, scenario, model, "
    "training settings, seed): revisiting, or another user with the same settings, loads them instantly."
)
st.latex(
    r"\theta^* = \arg\min_\theta \frac{1}{|D|}\sum_{(x,y)\in D_r\cup D_f} \ell\bigl(f(x;\theta), y\bigr)"
)

c1, c2, c3 = st.columns(3)
with c1:
    help_epochs = "Passes over the training data (optimizer, learning rate and batch size as in the config)."
    state.bind(st.number_input, "epochs", "Epochs", min_value=1, max_value=1000, step=5, help=help_epochs)
with c2:
    help_seed = "Initial weights, shuffling and the forget samples."
    state.bind(st.number_input, "seed", "Seed", min_value=0, max_value=2**31 - 1, step=1, help=help_seed)

cfg = state.checked_config(strategies=False)
if cfg is not None:
    store = cache.store()
    trained = cache.has_model(cfg, "original", store) and cache.has_model(cfg, "retrained", store)
    with c3:
        st.write("")
        guard = jobs.guard("Train θ* on D_r ∪ D_f and the reference on D_r ∪ D̃_f in the background.")
        label = "Train both models" if not trained else "Already trained (cached)"
        go = st.button(
            label, type="primary", key="train", **{**guard, "disabled": trained or guard["disabled"]}
        )
        if not trained:
            jobs.show_estimate(cache.estimate_config(state.config(strategies=False), store, "train"))
    if go:
        jobs.start("train", cache.train_job(cfg, str(store.root)))
    if jobs.follow("train") is not None:
        st.rerun()

    if trained:
        original, meta_o = cache.model(cfg, "original", store)
        _, meta_r = cache.model(cfg, "retrained", store)
        m_o = cache.model_metrics(cfg, "original", store)
        m_r = cache.model_metrics(cfg, "retrained", store)
        cols = st.columns(4)
        cols[0].metric("test accuracy θ*", f"{m_o['test_acc']:.1%}", help="Clean test images.")
        cols[1].metric("test accuracy retrained", f"{m_r['test_acc']:.1%}")
        if m_o.get("asr") is not None:
            help_asr = "Triggered non-target test images classified as the target class."
            cols[2].metric("attack success θ*", f"{m_o['asr']:.1%}", help=help_asr)
            cols[3].metric("attack success retrained", f"{m_r['asr']:.1%}")
        histories = [
            {**analysis.ORIGINAL, "history": meta_o.get("history")},
            {**analysis.RETRAINED, "history": meta_r.get("history")},
        ]
        st.plotly_chart(figures.training_curves(histories), width="stretch", key="curves")
        series = [{**analysis.ORIGINAL, "metrics": m_o}, {**analysis.RETRAINED, "metrics": m_r}]
        keys = ["test_acc", "retain_acc", "forget_acc", "forget_acc_poisoned", "asr"]
        bars = figures.metric_bars(series, keys, title="original vs retrained")
        st.plotly_chart(bars, width="stretch", key="bars")
        st.caption(
            f"Training took {meta_o.get('seconds', 0):.1f} s (original) and "
            f"{meta_r.get('seconds', 0):.1f} s (retrained); "
            f"{sum(p.numel() for p in original.parameters()):,} parameters."
        )
    elif not jobs.running("train"):
        st.info("Not trained yet for these settings: press **Train both models**.")

state.sync_url()
