"""3 · Curvature: diag H at θ*, the selection it makes, and how estimators and strategies agree."""

from __future__ import annotations

import streamlit as st

from core import config as core_config
from core import selection
from core.errors import SapsError
from ui import analysis, cache, figures, jobs, state

s = state.init("Curvature")
st.title("3 · Curvature")
st.markdown(
    "SAPS scores every parameter by the **diagonal of the Hessian** of the training loss at θ*: "
    "a large H_ii means the loss is sharp along that coordinate, a small one that it is flat. "
    "The mask M keeps the top-k fraction (or, switched, the smallest non-zero ones — exact zeros are "
    "dead units whose update would change nothing). Drag the budget: the threshold, the counts and "
    "the highlighted cells follow without recomputing the curvature."
)
st.latex(r"H_{ii} = \frac{\partial^2 L(\theta^*)}{\partial \theta_i^2},\qquad "
         r"M_i = \mathbb{1}\bigl[\,|H_{ii}| \ge t_k\,\bigr],\quad t_k = k\text{-th largest } |H_{jj}|")  # fmt: skip

c1, c2 = st.columns(2)
with c1:
    state.bind(st.selectbox, "curv", "Estimator", options=list(core_config.CURVATURE_METHODS),
               help="exact: the true diagonal (= GGN for ReLU nets); hutchinson: random probes z ⊙ Hz; "
                    "fisher: Monte-Carlo Fisher; empirical_fisher: mean squared per-sample gradients.")  # fmt: skip
with c2:
    state.bind(st.selectbox, "curv_data", "Measured on", options=list(core_config.CURVATURE_DATA),
               help="full: the whole training set as trained (the learned model's loss); retain: D_r; "
                    "forget: D_f; corrected: D̃_f.")  # fmt: skip

cfg = state.checked_config(strategies=False)
store = cache.store()
scores = None
if cfg is not None:
    if not cache.has_model(cfg, "original", store):
        st.info("Train the original model first.")
        st.page_link("pages/2_Train.py", label="Go to 2 · Train", icon=":material/model_training:")
    else:
        scores = cache.cached_curvature(cfg, store)
        if scores is None and not jobs.running("curvature") and not jobs.error("curvature"):
            path = str(store.root)
            jobs.start("curvature", lambda progress, cfg=cfg: cache.curvature(
                cfg, cache.store_for(path),
                progress=lambda done, total: progress("curvature", done / max(total, 1), f"diag H: {done}/{total} samples")))  # fmt: skip
        jobs.poll("curvature")
        jobs.show_error("curvature")
        if jobs.take("curvature") is not None:
            st.rerun()


def strategy_overlap(cfg: dict, scores: dict, frac: float) -> None:
    """Jaccard overlap of every strategy's mask at the slider's budget (inside the fragment)."""
    st.markdown(f"**Do strategies agree?** Jaccard overlap |A∩B|/|A∪B| of their masks at **{frac:.1%}** "
                "(follows the budget slider).")  # fmt: skip
    if not st.toggle("Show strategy overlap", key="show_jaccard",
                     help="Builds the mask of every strategy at the current budget (gradient and Fisher "
                          "need a pass over the data; each budget is computed once per session)."):  # fmt: skip
        return
    memo = st.session_state.setdefault("jaccard", {})
    key = (cache.curvature_key(cfg), frac)
    try:
        if key not in memo:
            original, _ = cache.model(cfg, "original", store)
            fs = cache.prepared(cfg).forget_set
            x_f, y_f = fs.forget
            masks = {}
            for name, entry in state.STRATEGY_CHOICES.items():
                masks[name] = selection.build_mask(
                    entry["name"], original, fraction=frac, largest=entry.get("largest", True),
                    scores=scores, forget_inputs=x_f, forget_targets=y_f, inputs=fs.x_train,
                    targets=fs.y_train, seed=cfg["seed"])  # fmt: skip
            memo[key] = (analysis.overlap_matrix(masks), list(masks))
        matrix, names = memo[key]
        left, right = st.columns([3, 2])
        left.plotly_chart(figures.matrix(matrix, names, title=f"Jaccard overlap of the masks at {frac:.1%}"),
                          width="stretch", key="jaccard")  # fmt: skip
        right.caption("1 = the same parameters, 0 = disjoint. Random masks overlap by about "
                      f"{frac / (2 - frac):.2f} by chance at this budget; last_layer and all ignore it.")  # fmt: skip
    except SapsError as e:
        st.error(str(e))


@st.fragment
def selection_view(cfg: dict, scores: dict) -> None:
    """Budget slider and everything it drives; reruns alone when the slider moves."""
    original, _ = cache.model(cfg, "original", store)
    c1, c2, c3 = st.columns([3, 1, 1])
    with c1:
        frac = state.bind(st.select_slider, "frac", "Budget: fraction of parameters updated", options=state.FRACTIONS,
                          format_func=lambda f: f"{f:.1%}",
                          help="Log-spaced from 0.1 % to 100 % of all parameters (global top-k).")  # fmt: skip
    with c2:
        largest = state.bind(st.toggle, "largest", "Largest |H_ii|",
                             help="On: the sharpest coordinates (the abstract's choice). Off: the flattest "
                                  "non-zero ones (exact zeros are dead units and are never chosen).")  # fmt: skip
    mask = selection.build_mask("saps", original, fraction=frac, largest=largest, scores=scores)
    n = analysis.n_selected(mask)
    t = analysis.threshold(scores, mask, largest)
    rows = selection.summary(mask, scores)
    total = sum(r["numel"] for r in rows)
    with c3:
        st.metric("selected parameters", f"{n:,}", help=f"out of {total:,}; exact count round(fraction × P)")
    dead = sum(r["zero_score"] or 0 for r in rows)
    st.caption(f"threshold |H_ii| {'≥' if largest else '≤'} {t:.3e} · {dead:,} of {total:,} parameters have "
               "H_ii = 0 exactly (dead units)." if t is not None else "nothing selected")  # fmt: skip
    h1, h2 = st.columns(2)
    h1.plotly_chart(figures.score_histogram(analysis.flat(scores), t, largest=largest, n_selected=n),
                    width="stretch", key="hist")  # fmt: skip
    h2.plotly_chart(figures.layer_share(rows), width="stretch", key="share")
    st.markdown("**Per-layer log₁₀ |diag H|**: conv weights as a grid of k×k filters, one tile per "
                "(output, input) channel pair; dense weights as output × input unit. Parameters in the mask in "
                "colour, the others grey; hover a cell for its index.")  # fmt: skip
    all_logs = figures.log_scores(analysis.flat(scores))
    zrange = (float(all_logs.min()), float(all_logs.max()))
    names = [k for k, v in scores.items() if v.dim() > 1] or list(scores)
    tabs = st.tabs(names)
    for tab, name in zip(tabs, names):
        with tab:
            st.plotly_chart(figures.layer_heatmap(name, scores[name].numpy(), mask[name].numpy(), zrange=zrange),
                            width="stretch", key=f"heat_{name}")  # fmt: skip
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
    with e1:
        st.markdown(
            "**Estimators**: Spearman rank correlation of the scores (exact vs Hutchinson vs Fisher)."
        )
        if st.button("Compare estimators", key="cmp_est", disabled=jobs.running("estimators"),
                     help="Computes diag H with exact, hutchinson, fisher and empirical_fisher (cached)."):  # fmt: skip
            path = str(store.root)

            def compare(progress, cfg=cfg):
                vectors = {}
                methods = ("exact", "hutchinson", "fisher", "empirical_fisher")
                for i, m in enumerate(methods):
                    progress("estimators", i / len(methods), f"{m}…")
                    c = {**cfg, "curvature": {**cfg["curvature"], "method": m}}
                    vectors[m] = analysis.flat(cache.curvature(c, cache.store_for(path)))
                return {"names": list(vectors), "matrix": analysis.rank_matrix(vectors).tolist()}

            jobs.start("estimators", compare)
        jobs.poll("estimators")
        jobs.show_error("estimators")
        est = jobs.take("estimators")
        if est is not None:
            st.session_state["estimators"] = est
        est = st.session_state.get("estimators")
        if est:
            st.plotly_chart(figures.matrix(est["matrix"], est["names"], title="rank correlation", zmin=-1,
                                           colorscale="RdBu"), width="stretch", key="est_matrix")  # fmt: skip

state.sync_url()
