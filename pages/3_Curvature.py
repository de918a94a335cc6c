"""3 · Curvature: diag H at θ*, the selection it makes, and how estimators and strategies agree."""

from __future__ import annotations

import streamlit as st

from core import config as core_config
from core import experiment, selection
from core.errors import SapsError
from ui import analysis, cache, figures, jobs, state
from ui.analysis.curvature import ranking, selection_at

s = state.init("Curvature")
st.title("3 · Curvature")
st.markdown(
    "SAPS scores every parameter by the **diagonal of the Hessian** of the training loss at θ*: "
    "a large H_ii means the loss is sharp along that coordinate, a small one that it is flat. "
    "The mask M keeps the top-k fraction (or, switched, the smallest non-zero ones — exact zeros are "
    "dead units whose update would change nothing). Drag the budget: the threshold, the counts and "
    "the highlighted cells follow without recomputing the curvature."
)
st.latex(
    r"H_{ii} = \frac{\partial^2 L(\theta^*)}{\partial \theta_i^2},\qquad "
    r"M_i = \mathbb{1}\bigl[\,|H_{ii}| \ge t_k\,\bigr],\quad t_k = k\text{-th largest } |H_{jj}|"
)

c1, c2 = st.columns(2)
with c1:
    state.choose("curv", "Estimator", "estimators")
with c2:
    help_data = "full: the whole training set as trained; retain: D_r; forget: D_f; corrected: D̃_f."
    state.bind(st.selectbox, "curv_data", "Measured on", options=core_config.CURVATURE_DATA, help=help_data)

cfg = state.checked_config(strategies=False)
store = cache.store()
scores = None
if cfg is not None:
    if not cache.has_model(cfg, "original", store):
        st.info("Train the original model first.")
        st.page_link("pages/2_Train.py", label="Go to 2 · Train", icon=":material/model_training:")
    else:
        scores = cache.cached_curvature(cfg, store)
        if scores is None and not jobs.running("curvature"):
            jobs.show_estimate(cache.estimate_config(state.config(strategies=False), store, "curvature"))
            help_retry = "The last computation was cancelled or failed: start it again."
            retry = jobs.error("curvature") and st.button(
                "Compute diag H again", key="curv_retry", help=help_retry
            )
            if not jobs.error("curvature") or retry:  # starts by itself, and after Cancel on request
                jobs.start("curvature", cache.curvature_job(cfg, str(store.root)))
        if jobs.follow("curvature") is not None:
            st.rerun()


def strategy_overlap(cfg: dict, scores: dict, frac: float) -> None:
    """Jaccard overlap of every strategy's mask at the slider's budget (inside the fragment)."""
    st.markdown(
        f"**Do strategies agree?** Jaccard overlap |A∩B|/|A∪B| of their masks at **{frac:.1%}** "
        "(follows the budget slider)."
    )
    help_toggle = (
        "Builds every strategy's mask at this budget (gradient and Fisher need a pass over the data)."
    )
    if not st.toggle("Show strategy overlap", key="show_jaccard", help=help_toggle):
        return
    memo = st.session_state.setdefault("jaccard", {})
    key = (experiment.curvature_key(cfg), frac)
    try:
        if key not in memo:
            original, _ = cache.model(cfg, "original", store)
            masks = analysis.strategy_masks(cfg, cache.prepared(cfg), original, scores, frac, store)
            memo[key] = (selection.overlap_matrix(masks), list(masks))
        matrix, names = memo[key]
        left, right = st.columns([3, 2])
        fig = figures.matrix(matrix, names, title=f"Jaccard overlap of the masks at {frac:.1%}")
        left.plotly_chart(fig, width="stretch", key="jaccard")
        right.caption(
            "1 = the same parameters, 0 = disjoint. Random masks overlap by about "
            f"{frac / (2 - frac):.2f} by chance at this budget; fixed masks ignore it."
        )
    except SapsError as e:
        st.error(str(e))


@st.fragment
def selection_view(cfg: dict, scores: dict) -> None:
    """Budget slider and everything it drives; reruns alone when the slider moves. The ranking
    is computed once per model (cached): a budget change only reads its counts."""
    c1, c2, c3 = st.columns([3, 1, 1])
    with c1:
        frac = state.budget_slider("Log-spaced from 0.1 % to 100 % of all parameters (global top-k).")
    with c2:
        help_largest = (
            "On: the sharpest coordinates. Off: the flattest non-zero ones (exact zeros are dead units)."
        )
        largest = state.bind(st.toggle, "largest", "Largest |H_ii|", help=help_largest)
    key = f"ranking:{store.root}:{experiment.curvature_key(cfg)}:{largest}"
    rank = cache.shared(key, lambda: ranking(scores, largest, state.FRACTIONS))
    sel = selection_at(rank, frac)
    n, t = sel["n"], sel["threshold"]
    c3.metric(
        "selected parameters", f"{n:,}", help=f"out of {sel['total']:,}; exact count round(fraction × P)"
    )
    st.caption(sel["caption"])
    h1, h2 = st.columns(2)
    hist = figures.score_histogram(None, t, largest=largest, n_selected=n, binned=rank.hist)
    h1.plotly_chart(hist, width="stretch", key="hist")
    h2.plotly_chart(figures.layer_share(sel["rows"]), width="stretch", key="share")
    names = [k for k, v in scores.items() if v.dim() > 1] or list(scores)
    l1, l2 = st.columns([1, 3])
    help_layer = (
        "Conv weights as k×k filter tiles per (output, input) channel; dense weights as output × input."
    )
    name = l1.selectbox("Per-layer log₁₀ |diag H| of", names, key="heat_layer", help=help_layer)
    l2.caption("Parameters in the mask in colour, the others grey; hover a cell for its index.")
    heat = figures.layer_heatmap(name, scores[name].numpy(), sel["mask"][name], zrange=rank.zrange)
    st.plotly_chart(heat, width="stretch", key="heat")
    strategy_overlap(cfg, scores, frac)
    st.session_state["curv_selection"] = {
        "n_selected": n,
        "threshold": t,
        "fraction": frac,
        "largest": largest,
    }
    state.sync_query_only()


if scores is not None and cfg is not None:
    selection_view(cfg, scores)

    st.subheader("Do estimators agree?")
    e1, _ = st.columns(2)
    help_est = "Computes diag H with every estimator (store-cached) and ranks them against each other."
    if e1.button("Compare estimators", key="cmp_est", disabled=jobs.running("estimators"), help=help_est):
        jobs.start("estimators", cache.estimators_job(cfg, str(store.root)))
    with e1:
        if (est := jobs.follow("estimators")) is not None:
            st.session_state["estimators"] = est
    if est := st.session_state.get("estimators"):
        title = "Spearman rank correlation of the scores"
        fig = figures.matrix(est["matrix"], est["names"], title=title, zmin=-1, colorscale="RdBu")
        e1.plotly_chart(fig, width="stretch", key="est_matrix")

state.sync_url()
