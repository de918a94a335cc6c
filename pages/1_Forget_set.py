"""1 · Forget set: which training samples carry something that must go, and their fix."""

from __future__ import annotations

import streamlit as st

from core import config as core_config
from core import scenarios
from ui import cache, figures, state, upload

s = state.init("Forget set")
st.title("1 · Forget set")
st.markdown(
    "The original model θ* is trained on D = D_r ∪ D_f. The samples in **D_f** carried something "
    "wrong — a trigger patch with the label switched to a target class (backdoor), a flipped label, "
    "or they must simply go (removal). Their corrected versions form **D̃_f**; the gold standard is "
    "the model retrained on D_r ∪ D̃_f, and unlearning should get close to it without retraining."
)
st.latex(r"D = D_r \cup D_f \;\xrightarrow{\text{train}}\; \theta^*, \qquad "
         r"D_r \cup \tilde D_f \;\xrightarrow{\text{retrain}}\; \theta_{\text{ref}}")  # fmt: skip

# -- data set, with the optional upload (issue 7) --------------------------------------------
with st.expander("Data set", expanded=s["dataset"] != "digits"):
    c1, c2 = st.columns(2)
    with c1:
        state.bind(st.selectbox, "dataset", "Data set", options=list(core_config.DATASETS),
                   help="digits is bundled; fashion-mnist needs the Debian package dataset-fashion-mnist; "
                        "mnist/cifar10 need a local folder (root); npz: upload your own file below.")  # fmt: skip
    with c2:
        state.bind(st.text_input, "root", "Folder or file (root)",
                   help="Where mnist/cifar10/fashion-mnist files or an .npz live on the server. "
                        "Filled in for you when you upload an .npz.")  # fmt: skip
    file = st.file_uploader("Upload a data set (.npz)", type=["npz"], key="npz_upload",
                            help="An .npz with x_train, y_train, x_test, y_test; images N×H×W or "
                                 "N×C×H×W (C = 1 or 3), integer labels 0..K−1. Never unpickled.")  # fmt: skip
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

# -- scenario --------------------------------------------------------------------------------
st.subheader("Scenario")
kinds = list(core_config.SCENARIOS)
c1, c2, c3, c4 = st.columns(4)
with c1:
    kind = state.bind(st.selectbox, "scenario", "Scenario", options=kinds,
                      help="backdoor: stamp a trigger and relabel to the target; label_flip: s → C−1−s; "
                           "random_samples: remove random samples; class: remove a whole class; "
                           "indices: the samples you pick below.")  # fmt: skip
with c2:
    state.bind(st.number_input, "seed", "Seed", min_value=0, max_value=2**31 - 1, step=1,
               help="Picks the forget samples and the initial weights; same seed, same run.")  # fmt: skip
if kind in ("backdoor", "label_flip", "random_samples"):
    with c3:
        state.bind(st.number_input, "size", "Forget-set size |D_f|", min_value=1, max_value=100_000, step=10,
                   help="Number of training samples in D_f.")  # fmt: skip
if kind in ("backdoor", "indices"):
    with c4:
        state.bind(st.number_input, "target", "Target class", min_value=0, max_value=999, step=1,
                   help="Backdoor: triggered images are labelled with this class.")  # fmt: skip
if kind == "class":
    with c3:
        state.bind(st.number_input, "forget_class", "Class to forget", min_value=0, max_value=999, step=1,
                   help="Every training sample of this class is removed.")  # fmt: skip
if kind == "indices":
    with c3:
        state.bind(st.selectbox, "corruption", "What is wrong with them", options=list(scenarios.CORRUPTIONS),
                   help="remove: plain removal; label: flipped labels; backdoor: trigger + target label.")  # fmt: skip

cfg = state.checked_config(strategies=False)
if cfg is not None:
    prepared = cache.prepared(cfg)
    ds, fs = prepared.dataset, prepared.forget_set
    summary = fs.summary()
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("training samples |D|", f"{summary['n_train']:,}")
    m2.metric("forget set |D_f|", f"{summary['n_forget']:,}")
    m3.metric("corrected |D̃_f|", f"{summary['n_corrected']:,}",
              help="0 means plain removal: D̃_f is empty.")  # fmt: skip
    m4.metric("image shape", "×".join(map(str, ds.shape)))

    st.subheader("Forget samples: as trained → as corrected")
    n_show = st.slider("Samples shown", 4, 32, 12, step=4, key="n_gallery",
                       help="The first samples of D_f: top row as the model was trained on them "
                            "(trigger visible), bottom row as corrected in D̃_f.")  # fmt: skip
    idx = fs.forget_idx[:n_show]
    x_tr, y_tr = fs.x_train[idx].numpy(), fs.y_train[idx].tolist()
    titles = [f"#{int(i)}<br>y={y}" for i, y in zip(idx.tolist(), y_tr)]
    st.plotly_chart(figures.image_grid(x_tr, titles, cols=12, title="as trained (D_f)"), width="stretch",
                    key="gallery_trained")  # fmt: skip
    if not fs.is_removal:
        k = min(n_show, len(fs.corrected_y))
        titles = [f"#{int(i)}<br>y={y}" for i, y in zip(idx[:k].tolist(), fs.corrected_y[:k].tolist())]
        st.plotly_chart(figures.image_grid(fs.corrected_x[:k].numpy(), titles, cols=12,
                                           title="as corrected (D̃_f)"), width="stretch", key="gallery_corrected")  # fmt: skip
    else:
        st.caption("Plain removal: D̃_f is empty, the samples just go.")
    st.plotly_chart(figures.class_histogram(summary["forget_class_histogram"], ds.classes), width="stretch",
                    key="class_hist")  # fmt: skip

    st.subheader("Pick or drop samples")
    st.markdown("Edit D_f by hand: the result is an `indices` scenario with the same kind of damage.")
    current = [int(i) for i in fs.forget_idx.tolist()]
    keep = st.multiselect("Samples in D_f (remove one to drop it)", options=current, default=current,
                          key=f"keep_{state.config_key_short(cfg)}",
                          help="Training-sample indices of D_f; click × to drop a sample.")  # fmt: skip
    n_train = len(fs.y_train)
    picked = st.plotly_chart(figures.sample_picker(fs.y_true.tolist()[:1200], [i in set(keep) for i in range(min(n_train, 1200))]),
                             width="stretch", key="picker", on_select="rerun", selection_mode=("points", "box"))  # fmt: skip
    clicked = sorted(
        {int(p["customdata"][0]) for p in (picked.selection.points if picked else []) if "customdata" in p}
    )
    extra = st.text_input("Add samples (indices, comma separated)", key="extra_idx",
                          help=f"Training-sample indices 0..{n_train - 1}; or click/box-select squares above.")  # fmt: skip
    try:
        added = [int(t) for t in extra.replace(" ", "").split(",") if t]
    except ValueError:
        added = []
        st.error("Add samples: use integers separated by commas, e.g. 3, 17, 42")
    chosen = sorted(set(keep) | set(added) | set(clicked))
    st.caption(f"{len(chosen)} samples chosen ({len(clicked)} clicked, {len(added)} typed).")
    corruption = {"backdoor": "backdoor", "label_flip": "label"}.get(
        kind, s["corruption"] if kind == "indices" else "remove"
    )
    if st.button("Use this selection", key="use_selection", disabled=chosen == sorted(current),
                 help="Switch to the `indices` scenario with exactly these samples."):  # fmt: skip
        if not chosen:
            st.error("scenario.indices: the forget set is empty; keep or add at least one sample")
        else:
            state.update(scenario="indices", indices=chosen, corruption=corruption)
            st.rerun()

state.sync_url()
