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
        found = found or upload.problems(arrays)
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
if "target" in options and (kind != "indices" or s["corruption"] == "backdoor"):
    with c4:
        number("target", "Target class", max_value=999, help="Backdoor: triggered images get this label.")
elif "to" in options and (kind != "indices" or s["corruption"] == "label"):
    with c4:
        help_to = "Every flipped label becomes this class; −1: the mirror map s → C−1−s (Warnecke et al.)."
        number("flip_to", "Flip to class", min_value=-1, max_value=999, help=help_to)
if "source" in options:
    help_src = (
        "Flip only this class's labels (systematic noise: a labeller calls every sandal a sneaker); "
        "−1: samples of any class (random noise)."
    )
    with st.columns(4)[2]:  # under the size: both say which samples are flipped
        number("flip_source", "Only class", min_value=-1, max_value=999, help=help_src)

if analysis.needs_pick(s):
    st.info("No sample picked yet: **pick samples** below (click or box-select squares, or type indices).")
    cfg, data_cfg = None, analysis.picker_config(s, cache.prepared)
else:
    cfg = data_cfg = state.checked_config(strategies=False)
if cfg is not None:
    ds, fs = cache.prepared(cfg).dataset, cache.prepared(cfg).forget_set
    summary = fs.summary()
    m = st.columns(4)
    m[0].metric("training samples |D|", f"{summary['n_train']:,}")
    m[1].metric("forget set |D_f|", f"{summary['n_forget']:,}")
    m[2].metric("corrected |D̃_f|", f"{summary['n_corrected']:,}", help="0 means plain removal: D̃_f is empty.")
    m[3].metric("image shape", "×".join(map(str, ds.shape)))

    st.subheader("Forget samples: as trained → as corrected")
    help_n = "The first samples of D_f as the model was trained on them (trigger visible) and as corrected."
    n_show = st.slider("Samples shown", 4, 32, 12, step=4, key="n_gallery", help=help_n)
    trained, corrected = analysis.gallery(fs, n_show)
    st.plotly_chart(figures.image_grid(*trained, cols=12, title="as trained (D_f)"), key="gallery_trained")
    if corrected is not None:
        grid = figures.image_grid(*corrected, cols=12, title="as corrected (D̃_f)")
        st.plotly_chart(grid, width="stretch", key="gallery_corrected")
    else:
        st.caption("Plain removal: D̃_f is empty, the samples just go.")
    st.plotly_chart(figures.class_histogram(summary["forget_class_histogram"], ds.classes), key="class_hist")

if data_cfg is not None:
    st.subheader("Pick or drop samples", help="The result is an `indices` scenario with the same damage.")
    labels = cache.prepared(data_cfg).dataset.y_train.tolist()
    current = [] if cfg is None else [int(i) for i in cache.prepared(cfg).forget_set.forget_idx.tolist()]
    n_train, shown, key = len(labels), min(len(labels), 1200), f"keep_{state.config_key_short(data_cfg)}"
    st.session_state.setdefault(key, current)

    def pick() -> None:  # a click toggles a square, a box adds every square in it
        picked = analysis.picked_indices(st.session_state["picker"], shown)
        st.session_state[key] = analysis.toggle(st.session_state[key], picked)

    def typed() -> None:  # every bad token refused at once, naming it; the good ones added
        added, st.session_state["typed_problems"] = analysis.parse_indices(
            st.session_state["extra_idx"], n_train
        )
        st.session_state[key] = sorted(set(st.session_state[key]) | set(added))
        if not st.session_state["typed_problems"]:
            st.session_state["extra_idx"] = ""

    chosen = st.session_state[key]
    picker = figures.sample_picker(labels[:shown], [i in set(chosen) for i in range(shown)])
    st.plotly_chart(picker, width="stretch", key="picker", on_select=pick, selection_mode=("points", "box"))
    help_add = (
        f"Training-sample indices 0..{n_train - 1}, comma separated; or click/box-select squares above."
    )
    st.text_input("Add samples (indices, comma separated)", key="extra_idx", on_change=typed, help=help_add)
    for problem in st.session_state.get("typed_problems", []):
        st.error(f"Add samples: {problem} — not added")
    chosen = st.multiselect(
        "Chosen samples (click × to drop one)",
        options=sorted(set(current) | set(st.session_state[key])),
        key=key,
        help="Training-sample indices of the new D_f: click × to drop a sample, or pick it again above.",
    )
    st.caption(f"{len(chosen)} samples chosen (D_f now: {len(current)}; the first {shown} shown above).")

    def clear_typed() -> None:  # the selection is applied: the typed text and its errors are done
        st.session_state["typed_problems"], st.session_state["extra_idx"] = [], ""

    if st.button(
        "Use this selection",
        key="use_selection",
        on_click=clear_typed,
        disabled=not chosen or sorted(chosen) == sorted(current),
        help="Switch to the `indices` scenario with exactly these samples (pick at least one).",
    ):
        state.update(scenario="indices", indices=sorted(chosen), corruption=analysis.corruption_of(s))
        st.rerun()

state.sync_url()
