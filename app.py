"""SAPS workbench: home page and guided path. Run with `streamlit run app.py` (or `make run`)."""

from __future__ import annotations

import threading

import streamlit as st
import torch

from ui import analysis, cache, choices, figures, jobs, state
from ui.analysis.series import same_models

s = state.init("Home")
# the first torch optimizer imports torch's compiler stack (~1 s): once, while the reader reads
warm = threading.Thread(target=torch.optim.Adam, args=([torch.zeros(1, requires_grad=True)],), daemon=True)
cache.shared("warm:optimizer", warm.start)

st.title("SAPS workbench: machine unlearning by sharpness-aware parameter selection")
st.markdown(
    "A model trained on poisoned data — a backdoor trigger, flipped labels — should **unlearn** those "
    "samples: end up like a model retrained without the damage, at a fraction of the cost. **SAPS** "
    "changes only the parameters where the training loss is sharpest, ranked by the diagonal of the "
    "Hessian. Follow the six steps below: run the demo, then read each figure it produces."
)
st.plotly_chart(figures.pipeline(), width="stretch", config={"displayModeBar": False}, key="pipeline")


def step(n: int, title: str, page: str, text: str, formula: str, docs: str) -> None:
    """One numbered step: two sentences, its formula (once), its page, its docs/method.md section."""
    with st.expander(f"**{n} · {title}**", expanded=False):
        st.markdown(text)
        st.latex(formula)
        c1, c2 = st.columns(2)
        c1.page_link(page, label=f"Open the figure: {title}", icon=":material/arrow_forward:")
        with c2.popover("Method reference (docs/method.md)", icon=":material/menu_book:"):
            st.markdown(choices.method_section(docs))


step(
    1,
    "The setting: what must be forgotten",
    "pages/1_Forget_set.py",
    "θ* was trained on D = D_r ∪ D_f, where the forget samples D_f carry a trigger or a wrong label; "
    "D̃_f holds the same samples corrected. The gold standard is the model retrained on D_r ∪ D̃_f; "
    "page 1's gallery shows D_f as trained next to D̃_f.",
    r"D_r \cup D_f \xrightarrow{\text{train}} \theta^*,\qquad D_r \cup \tilde D_f \xrightarrow{\text{retrain}}"
    r" \theta_{\text{ref}}",
    "Setting",
)

with st.expander("**2 · Run the demo**", expanded=True):
    st.markdown("#### Quick choice")
    st.markdown(
        "Choose the data, then the demo trains θ* and the retrained reference, computes "
        "diag H and unlearns with six selection strategies at one budget. When it is done, it opens "
        "the comparison."
    )
    c1, c2, c3 = st.columns(3)
    with c1:
        state.choose("dataset", "Data set", "datasets", note="Page 1 · Forget set accepts an uploaded .npz.")
    with c2:
        state.choose("model", "Model", "models")
    with c3:
        state.choose("scenario", "Forget scenario", "scenarios")
    b1, b2, _ = st.columns([1, 1, 2])
    demo_labels = ", ".join(choices.strategy_labels()[k] for k in state.DEMO_STRATEGIES)
    help_demo = f"Unlearn with six strategies ({demo_labels}) at a {s['frac']:.1%} budget, then compare."
    demo = b1.button("Run the demo", type="primary", key="run_demo", **jobs.guard(help_demo))
    help_train = "Train θ* and the retrained reference (cached by config); their metrics show here."
    train = b2.button("Train only", key="train_only", **jobs.guard(help_train))
    demo_cfg = state.build_config({**s, "strategies": list(state.DEMO_STRATEGIES)})
    jobs.show_estimate(cache.estimate_config(demo_cfg, cache.store()), "the demo")
    if demo:
        state.update(strategies=list(state.DEMO_STRATEGIES))
        if (cfg := state.checked_config(need_strategies=True)) is not None:
            jobs.start("demo", cache.experiment_job(cfg, str(cache.store().root)), "the demo")
    if train and (cfg := state.checked_config(strategies=False)) is not None:
        jobs.start("train", cache.train_job(cfg, str(cache.store().root)), "training")
    if (done := jobs.follow("demo")) is not None:
        st.session_state["result"] = done
        state.update(run=done.get("run_id") or 0)
        state.sync_url()
        st.switch_page("pages/5_Compare.py")
    if (trained := jobs.follow("train")) is not None:
        st.session_state["train_result"] = trained

    # metrics only for the models the current choice would use (never digits under Fashion-MNIST)
    current = state.checked_config(strategies=False) if not analysis.needs_pick(s) else None
    candidates = (st.session_state.get("train_result"), st.session_state.get("result"))
    shown = next((r for r in candidates if same_models(r, current)), None)
    if shown:
        o, r = shown["original"], shown.get("retrained") or {}
        metrics = [("test accuracy θ*", o["test_acc"]), ("attack success θ*", o.get("asr"))]
        metrics += [
            ("test accuracy retrained", r.get("test_acc")),
            ("attack success retrained", r.get("asr")),
        ]
        for col, (label, v) in zip(st.columns(4), [(lbl, v) for lbl, v in metrics if v is not None]):
            col.metric(label, f"{v:.1%}")
        secs, data = shown["seconds"], shown["config"]["dataset"]
        st.caption(f"{data} · training {secs['train']:.1f} s · retraining {secs['retrain'] or 0:.1f} s")
    elif any(candidates):
        st.caption("No trained models for this choice yet: run the demo or train.")

step(
    3,
    "Training curves",
    "pages/2_Train.py",
    "Both models minimise the mean cross-entropy L(θ) over their training data; the Train page plots "
    "the loss and the training accuracy per epoch. θ* also fits the poison (attack success near "
    "100 %), the retrained model does not.",
    r"L(\theta) = \frac{1}{N}\sum_{n=1}^{N} \ell\bigl(f(x_n;\theta), y_n\bigr)",
    "1. Scores",
)
step(
    4,
    "Curvature: diag H and the mask",
    "pages/3_Curvature.py",
    "The histogram shows |H_ii| of every parameter at θ* with the threshold of the budget; the "
    "heatmap shows which weights of a layer the mask keeps. Move the budget slider: the mask M keeps "
    "the k = round(f·P) largest (or smallest non-zero) values.",
    r"H_{ii} = \frac{\partial^2 L(\theta^*)}{\partial\theta_i^2},\qquad "
    r"M_i = \mathbb{1}\bigl[\,|H_{ii}| \text{ among the } k \text{ largest}\,\bigr]",
    "2. Selection",
)
step(
    5,
    "The masked update",
    "pages/4_Unlearn.py",
    "Warnecke's gradient difference G points from the poisoned samples to their corrections; every "
    "rule changes only the coordinates where M is true (one step below; the demo's default for "
    f"corrections is *{choices.methods().get('masked_finetune', 'masked fine-tuning')}*, masked steps). "
    "The Unlearn page's curves start at θ*'s metrics (step 0) and end at the unlearned model.",
    r"G = \sum_{\tilde z\in\tilde D_f}\nabla_\theta \ell(\tilde z;\theta^*) - \sum_{z\in D_f}\nabla_\theta "
    r"\ell(z;\theta^*),\qquad \theta = \theta^* - \tau\,(M \odot G)",
    "3. Unlearning",
)
step(
    6,
    "Compare with retraining",
    "pages/5_Compare.py",
    "The comparison puts every strategy between θ* (0 %) and the retrained model (100 %): for a "
    "backdoor the share of the attack success removed, for flipped labels Warnecke's % restored of "
    "test accuracy. The cost bars charge each strategy everything its mask needs, next to retraining.",
    r"\text{backdoor removal} = \frac{\mathrm{ASR}_{\theta^*} - \mathrm{ASR}}"
    r"{\mathrm{ASR}_{\theta^*} - \mathrm{ASR}_{\text{retrained}}},\qquad"
    r"\%\,\text{restored} = 100\,\frac{\mathrm{acc} - \mathrm{acc}_{\theta^*}}"
    r"{\mathrm{acc}_{\text{retrained}} - \mathrm{acc}_{\theta^*}}",
    "4. Metrics",
)
state.sync_url()
