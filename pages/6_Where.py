"""6 · Where: which layers the strategies change, and where the forget samples move."""

from __future__ import annotations

import streamlit as st

from core import config as core_config
from ui import analysis, cache, figures, jobs, state

s = state.init("Where")
st.title("6 · Where the forgetting happens")
st.markdown(
    "Compare answers *how much*; this page answers *where*. Per layer: the share of its parameters "
    "each strategy selects, how far its weights moved from θ*, and how similar the layer's activations "
    "on test images are to the retrained model's (linear CKA, Kornblith et al. 2019: 1 = the same "
    "representation up to rotation and scale). Does a strategy pick the layers where θ* and the "
    "retrained model differ?"
)
st.latex(
    r"\mathrm{CKA}(X, Y) = \frac{\lVert Y^\top X\rVert_F^2}{\lVert X^\top X\rVert_F\,\lVert Y^\top Y\rVert_F},"
    r"\qquad \text{relative change}_l = \frac{\lVert \theta_l - \theta^*_l\rVert}{\lVert \theta^*_l\rVert}"
)

store = cache.store()
result = state.shown_result(store)  # the run named in the URL (a shared link) or the session's
rows = (result or {}).get("strategies") or []
if not rows:
    st.info(
        "No result with strategies in this session yet: press **Run the demo** on the home page, "
        "unlearn on page 4, or load a stored run on page 5."
    )
    state.sync_url()
    st.stop()

cfg = core_config.normalize(result["config"])
key = analysis.where_key(cfg, rows)
if (done := jobs.follow("where")) is not None:
    st.session_state["where_result"] = done
shown = st.session_state.get("where_result")
if (shown or {}).get("key") != key and not jobs.running("where"):
    help_retry = "Rebuild this run's models and measure them again."
    if not jobs.error("where") or st.button("Try again", key="where_retry", help=help_retry):
        # each strategy's unlearned model is recomputed from the run's config (cached per strategy)
        jobs.start("where", analysis.where_job(cfg, rows, str(store.root)), "the layer inspection")
if (shown or {}).get("key") != key:
    st.caption("Rebuilding θ*, the retrained model and every strategy's unlearned model of this run…")
    state.sync_url()
    st.stop()

st.subheader("Per layer")
fig = figures.layer_profile(analysis.where_layers(shown), shown["layers"])
st.plotly_chart(fig, width="stretch", key="layer_profile")
st.caption(
    f"Layers are the modules with parameters, in forward order; activations are their outputs on "
    f"{shown['n_test']} test images (a seeded sample), flattened. θ* changes nothing (left out of the "
    "log panel); the retrained model (dashed) shows how far separately trained weights lie, and has CKA 1 "
    "with itself. The unlearned models are recomputed from the run's config."
)
for line in analysis.where_summary(shown):
    st.markdown(f"- {line}")

st.subheader("The forget samples in feature space")
labels = analysis.where_strategies(shown)
pick = st.selectbox(
    "Strategy",
    options=labels,
    key="where_pick",
    help="The unlearned model drawn between θ* and the retrained model.",
)
panels = analysis.where_projection(shown, pick)
proj = figures.feature_projection(panels)
st.plotly_chart(proj, width="stretch", key="projection")
st.caption(
    f"PCA of the penultimate features (the input of the last linear layer) of {shown['n_test']} test "
    f"images (dots) and {shown['n_forget']} forget samples as trained (◆), coloured by the model's "
    "predicted class. θ* and the strategy share θ*'s axes: the strategy is θ* after a masked update, "
    "so a point that moved has moved. The retrained model's units are not θ*'s: it gets its own PCA, "
    "rotated onto θ*'s picture of the same test images (orthogonal Procrustes)."
)
st.page_link("pages/5_Compare.py", label="Back to all metrics", icon=":material/leaderboard:")
state.sync_url()
