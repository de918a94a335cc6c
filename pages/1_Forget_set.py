"""1 · Forget set: which training samples carry something that must go, and their fix."""

from __future__ import annotations

from functools import partial

import streamlit as st

from core import scenarios
from ui import analysis, cache, figures, state, upload

s = state.init("Forget set")
st.title("1 · Forget set")
st.markdown(
    "The original model θ* is trained on D = D_r ∪ D_f. The samples in **D_f** carried something "
    "wrong — a trigger patch with the label switched to a target class (backdoor), a flipped label, "
    "or they must simply go (removal). Their corrected versions form **D̃_f**; the gold standard is "
    "the model retrained on D_r ∪ D̃_f, and unlearning should get close to it without retraining."
)
st.latex(
    r"D = D_r \cup D_f \;\xrightarrow{\text{train}}\; \theta^*, \qquad "
    r"D_r \cup \tilde D_f \;\xrightarrow{\text{retrain}}\; \theta_{\text{ref}}"
)
number = partial(state.bind, st.number_input, min_value=0, step=1)

with st.expander("Data set", expanded=s["dataset"] != "digits"):
    c1, c2 = st.columns(2)
    with c1:
        state.choose("dataset", "Data set", "datasets", note="npz: upload your own file below.")
    with c2:
        help_root = (
            "Where the data set's files or an .npz live on the server; filled in when you upload an .npz."
        )
        state.bind(st.text_input, "root", "Folder or file (root)", help=help_root)
    help_npz = "x_train, y_train, x_test, y_test; images N×H×W or N×C×H×W, labels 0..K−1. Never unpickled."
    file = st.file_uploader("Upload a data set (.npz)", type=["npz"], key="npz_upload", help=help_npz)
    if file is not None:
        content = file.getvalue()
        arrays, found = upload.read_npz(content)
        found += upload.problems(arrays) if arrays or not found else []
        for problem in found:
            st.error(f"{file.name}: {problem}", icon="🚫")
        if not found:
            path = upload.save(content, cache.store().root)
            if s["dataset"] != "npz" or s["root"] != str(path):
                state.update(dataset="npz", root=str(path))
                st.rerun()
            shapes = ", ".join(f"{k} {tuple(arrays[k].shape)}" for k in upload.REQUIRED)
            st.success(f"Using {file.name}: {shapes}", icon="✅")

st.subheader("Scenario")
c1, c2, c3, c4 = st.columns(4)
with c1:
    kind = state.choose("scenario", "Scenario", "scenarios", note="Chosen samples: pick them below.")
with c2:
    number(
        "seed", "Seed", max_value=2**31 - 1, help="Picks D_f and the initial weights; same seed, same run."
    )
options = scenarios.SCENARIOS[kind].options
if "size" in options:
    with c3:
        number(
            "size", "Forget-set size |D_f|", min_value=1, max_value=100_000, help="Training samples in D_f."
        )
if "class" in options:
    with c3:
        number(
            "forget_class", "Class to forget", max_value=999, help="Every training sample of this class goes."
        )
if "corruption" in options:
    with c3:
        help_c = "remove: plain removal; label: flipped labels; backdoor: trigger + target label."
        state.bind(
            st.selectbox, "corruption", "What is wrong with them", options=scenarios.CORRUPTIONS, help=help_c
        )
if "target" in options:
    with c4:
        number("target", "Target class", max_value=999, help="Backdoor: triggered images get this label.")

cfg = state.checked_config(strategies=False)
if cfg is not None:
    ds, fs = cache.prepared(cfg).dataset, cache.prepared(cfg).forget_set
    summary = fs.summary()
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("training samples |D|", f"{summary['n_train']:,}")
    m2.metric("forget set |D_f|", f"{summary['n_forget']:,}")
    m3.metric("corrected |D̃_f|", f"{summary['n_corrected']:,}", help="0 means plain removal: D̃_f is empty.")
    m4.metric("image shape", "×".join(map(str, ds.shape)))

    st.subheader("Forget samples: as trained → as corrected")
    help_n = "The first samples of D_f as the model was trained on them (trigger visible) and as corrected."
    n_show = st.slider("Samples shown", 4, 32, 12, step=4, key="n_gallery", help=help_n)
    trained, corrected = analysis.gallery(fs, n_show)
    grid = figures.image_grid(*trained, cols=12, title="as trained (D_f)")
    st.plotly_chart(grid, width="stretch", key="gallery_trained")
    if corrected is not None:
        grid = figures.image_grid(*corrected, cols=12, title="as corrected (D̃_f)")
        st.plotly_chart(grid, width="stretch", key="gallery_corrected")
    else:
        st.caption("Plain removal: D̃_f is empty, the samples just go.")
    hist = figures.class_histogram(summary["forget_class_histogram"], ds.classes)
    st.plotly_chart(hist, width="stretch", key="class_hist")

    st.subheader("Pick or drop samples")
    st.markdown("Edit D_f by hand: the result is an `indices` scenario with the same kind of damage.")
    current = [int(i) for i in fs.forget_idx.tolist()]
    keep = st.multiselect(
        "Samples in D_f (remove one to drop it)",
        options=current,
        default=current,
        key=f"keep_{state.config_key_short(cfg)}",
        help="Training-sample indices of D_f; click × to drop a sample.",
    )
    n_train, shown = len(fs.y_train), min(len(fs.y_train), 1200)
    picker = figures.sample_picker(fs.y_true.tolist()[:shown], [i in set(keep) for i in range(shown)])
    picked = st.plotly_chart(
        picker, width="stretch", key="picker", on_select="rerun", selection_mode=("points", "box")
    )
    clicked = analysis.picked_indices(picked.selection.points if picked else [])
    help_add = f"Training-sample indices 0..{n_train - 1}; or click/box-select squares above."
    extra = st.text_input("Add samples (indices, comma separated)", key="extra_idx", help=help_add)
    added, problems = analysis.parse_indices(extra, n_train)
    for problem in problems:
        st.error(f"Add samples: {problem}")
    chosen = sorted(set(keep) | set(added) | set(clicked))
    st.caption(f"{len(chosen)} samples chosen ({len(clicked)} clicked, {len(added)} typed).")
    if st.button(
        "Use this selection",
        key="use_selection",
        disabled=chosen == sorted(current),
        help="Switch to the `indices` scenario with exactly these samples.",
    ):
        if not chosen:
            st.error("scenario.indices: the forget set is empty; keep or add at least one sample")
        else:
            state.update(scenario="indices", indices=chosen, corruption=analysis.corruption_of(s))
            st.rerun()

state.sync_url()
