"""5 · Compare: every strategy against the original and the retrained model; run history."""

from __future__ import annotations

import csv
import io
import json

import streamlit as st

from core import config as core_config
from core import experiment
from core.errors import SapsError
from ui import cache, figures, jobs, state

s = state.init("Compare")
st.title("5 · Compare")
st.markdown(
    "A good unlearning method lands next to the **retrained** model: attack success and membership "
    "inference down to its level, test accuracy kept, and the backdoor should not come back after a "
    "few fine-tuning steps on poisoned data (relearning attack) — at a fraction of the retraining time. "
    "Warnecke's *% restored* measures how much of the accuracy lost to poisoning came back."
)
st.latex(r"\%\,\text{restored} = \frac{\mathrm{acc}_{\text{after}} - \mathrm{acc}_{\text{before}}}"
         r"{\mathrm{acc}_{\text{clean}} - \mathrm{acc}_{\text{before}}},\qquad "
         r"\mathrm{AUC}_{\text{MIA}} = P\bigl(\ell(z_f) < \ell(z_{\text{test}})\bigr)")  # fmt: skip

store = cache.store()
# A shared link names a stored run: load it once per session.
if s["run"] and (st.session_state.get("result") or {}).get("run_id") != s["run"]:
    try:
        row = store.get(int(s["run"]))
        if row.get("result"):
            st.session_state["result"] = row["result"]
        else:
            st.error(f"run {s['run']}: {row['status']} ({row.get('error') or 'no result'})")
    except SapsError as e:
        st.error(str(e))

result = st.session_state.get("result")
METRIC_KEYS = ("test_acc", "retain_acc", "forget_acc", "forget_acc_poisoned", "asr", "mia_auc",
               "relearn_asr", "dist_to_retrained")  # fmt: skip


def strategy_label(r: dict) -> str:
    name = r["name"] + ("" if r.get("largest", True) else " (smallest)")
    return f"{name} @ {r['fraction']:.1%}" if r.get("fraction") is not None else name


def table(result: dict) -> list[dict]:
    extra = sorted({k for r in result.get("strategies", []) for k in r["metrics"]} - set(METRIC_KEYS))
    keys = [*METRIC_KEYS, *extra]
    rows = [{"model": "original θ*", **{k: result["original"].get(k) for k in keys},
             "seconds": result["seconds"].get("train")}]  # fmt: skip
    if result.get("retrained"):
        rows.append({"model": "retrained (target)", **{k: result["retrained"].get(k) for k in keys},
                     "seconds": result["seconds"].get("retrain")})  # fmt: skip
    for r in result.get("strategies", []):
        rows.append({"model": strategy_label(r), **{k: r["metrics"].get(k) for k in keys},
                     "n_selected": r.get("n_selected"), "seconds": r.get("seconds")})  # fmt: skip
    return rows


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def budget_points(result: dict) -> list[dict]:
    """(strategy, fraction, metrics) from this result and every stored run on the same models."""
    try:
        cfg = core_config.normalize(result["config"])
    except SapsError:
        return []
    key, method = experiment.model_key(cfg, "original"), cfg["unlearning"]["method"]
    seen, points = set(), []
    runs = [{"result": result}] + [r for r in store.list_runs(kind="run", limit=200) if r["status"] == "done"]
    for run in runs:
        res = run.get("result") or {}
        try:
            rc = core_config.normalize(res.get("config") or {})
        except SapsError:
            continue
        if experiment.model_key(rc, "original") != key or rc["unlearning"]["method"] != method:
            continue
        for r in res.get("strategies", []):
            name = r["name"] + ("" if r.get("largest", True) else " (smallest)")
            ident = (name, r.get("fraction"), res.get("run_id"))
            if r.get("fraction") is None or ident in seen:
                continue
            seen.add(ident)
            points.append({"strategy": name, "fraction": r["fraction"], "metrics": r["metrics"]})
    return points


if result:
    if result.get("note"):
        st.warning(result["note"])
    o, ref = result["original"], result.get("retrained") or {}
    rows = result.get("strategies", [])
    # forgetting axis: attack success for a backdoor, the flipped labels still predicted for a
    # label flip, plain accuracy on D_f for a removal
    kind = ((result.get("config") or {}).get("scenario") or {}).get("kind")
    corruption = ((result.get("config") or {}).get("scenario") or {}).get("corruption")
    if o.get("asr") is not None:
        forget_key = "asr"
    elif kind == "label_flip" or (kind == "indices" and corruption == "label"):
        forget_key = "forget_acc_poisoned"
    else:
        forget_key = "forget_acc"
    cols = iter(st.columns(4))  # filled left to right: no gap where a metric does not apply
    next(cols).metric("test accuracy θ*", f"{o['test_acc']:.1%}", help="Original model on clean test images.")
    if o.get("asr") is not None:
        next(cols).metric(
            "attack success θ*", f"{o['asr']:.1%}", help="Triggered test images → target class."
        )
    if ref:
        next(cols).metric("attack success retrained" if ref.get("asr") is not None else "test accuracy retrained",
                          f"{ref.get('asr') if ref.get('asr') is not None else ref['test_acc']:.1%}")  # fmt: skip
    next(cols).metric("run", f"#{result.get('run_id', '—')}", help=f"{len(rows)} strategies, "
                      f"{result['seconds']['total']:.1f} s in all")  # fmt: skip

    figs: dict[str, object] = {}
    pts = [{"label": strategy_label(r), "metrics": r["metrics"]} for r in rows]
    figs["tradeoff"] = figures.tradeoff(pts, x_key=forget_key, original=o, retrained=ref)
    c1, c2 = st.columns(2)
    c1.plotly_chart(figs["tradeoff"], width="stretch", key="tradeoff")
    labels = [strategy_label(r) for r in rows]
    figs["distance"] = figures.strategy_bars(labels, [r["metrics"].get("dist_to_retrained") for r in rows],
                                             title="distance to the retrained weights (lower is closer)",
                                             y_title=figures.axis_title("dist_to_retrained"), fmt=".3f")  # fmt: skip
    c2.plotly_chart(figs["distance"], width="stretch", key="distance")
    c3, c4 = st.columns(2)
    secs = result["seconds"]
    figs["seconds"] = figures.strategy_bars(labels, [r.get("seconds") for r in rows], fmt=".2f",
                                            title="time per strategy vs retraining from scratch",
                                            y_title="wall-clock seconds", reference=secs.get("retrain"),
                                            reference_label="retraining")  # fmt: skip
    c3.plotly_chart(figs["seconds"], width="stretch", key="seconds")
    c3.caption(f"A strategy's time covers its selection and update; diag H is computed once per model "
               f"({secs.get('curvature') or 0:.2f} s) and shared by every strategy.")  # fmt: skip
    figs["metrics"] = figures.metric_bars({"original θ*": o, **({"retrained": ref} if ref else {}),
                                           **{lbl: r["metrics"] for lbl, r in zip(labels, rows)}},
                                          ["asr", "mia_auc", "relearn_asr", "test_acc"], title="per strategy")  # fmt: skip
    c4.plotly_chart(figs["metrics"], width="stretch", key="metric_bars")

    st.subheader("Versus budget")
    points = budget_points(result)
    keys = [
        k
        for k in ("asr", "mia_auc", "relearn_asr", "test_acc")
        if any(p["metrics"].get(k) is not None for p in points)
    ]
    if points and keys:
        grid = st.columns(2)
        for i, k in enumerate(keys):
            figs[f"budget_{k}"] = figures.metric_vs_budget(points, k, reference=ref.get(k))
            grid[i % 2].plotly_chart(figs[f"budget_{k}"], width="stretch", key=f"budget_{k}")
    st.caption("Points come from every stored run on the same trained models and method; add budgets with "
               "a sweep.")  # fmt: skip
    if st.button("Sweep budgets (0.5 %, 2 %, 10 %, 50 %)", key="sweep", disabled=jobs.running(),
                 help="One run with every chosen budgeted strategy at four budgets (models and curvature "
                      "are reused); the points join the charts above."):  # fmt: skip
        base = state.config()
        chosen = [k for k in s["strategies"] if k not in state.UNBUDGETED] or ["saps"]
        base["strategies"] = [e for f in (0.005, 0.02, 0.1, 0.5) for e in state.strategy_entries(chosen, f)]
        jobs.start("sweep", cache.experiment_job(base, str(store.root)))
    jobs.poll("sweep")
    jobs.show_error("sweep")
    if jobs.take("sweep") is not None:
        st.rerun()

    st.subheader("Table")
    rows_t = table(result)
    st.dataframe(rows_t, width="stretch", hide_index=True)
    d1, d2, d3 = st.columns(3)
    d1.download_button("Results as CSV", to_csv(rows_t), file_name="saps_results.csv", mime="text/csv",
                       key="dl_csv", help="The table above, one row per model.")  # fmt: skip
    d2.download_button("Results as JSON", json.dumps(result, indent=1, default=str), file_name="saps_result.json",
                       mime="application/json", key="dl_json", help="The full result document (config included).")  # fmt: skip

    def figures_html(figs=figs) -> str:
        parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs.values())]
        return (
            "<html><head><meta charset='utf-8'><title>SAPS comparison</title></head><body>"
            + "".join(parts)
            + "</body></html>"
        )

    d3.download_button("Figures as HTML", figures_html, file_name="saps_figures.html", mime="text/html",
                       key="dl_html", help="All charts of this page in one self-contained HTML file.")  # fmt: skip
else:
    st.info("No result in this session yet: press **Run the demo** on the home page, or unlearn on page 4, "
            "or load a stored run below.")  # fmt: skip

st.subheader("Run history")
history = store.list_runs(kind="run", limit=50)
if history:
    st.dataframe([{"id": r["id"], "created": r["created"], "status": r["status"],
                   "dataset": (r.get("config") or {}).get("dataset"),
                   "scenario": ((r.get("config") or {}).get("scenario") or {}).get("kind"),
                   "strategies": len((r.get("config") or {}).get("strategies") or []),
                   "seconds": r.get("seconds"), "error": r.get("error")} for r in history],
                 width="stretch", hide_index=True)  # fmt: skip
    h1, h2, h3 = st.columns([2, 1, 1])
    run_id = h1.selectbox("Run", options=[r["id"] for r in history], key="history_pick",
                          help="A run from the store (shared by every user of this server).")  # fmt: skip
    chosen = next(r for r in history if r["id"] == run_id)
    if h2.button("Load", key="load", disabled=chosen["status"] != "done",
                 help="Show this run here and take over its settings (the URL then links to it)."):  # fmt: skip
        st.session_state["result"] = chosen["result"]
        state.update(**state.settings_from_config(chosen.get("config") or {}), run=int(run_id))
        st.rerun()
    if h3.button("Re-run", key="rerun", disabled=jobs.running(),
                 help="Run this config again (trained models are reused from the store)."):  # fmt: skip
        state.update(**state.settings_from_config(chosen.get("config") or {}), run=0)
        jobs.start("rerun", cache.experiment_job(chosen.get("config") or {}, str(store.root)))
    jobs.poll("rerun")
    jobs.show_error("rerun")
    redone = jobs.take("rerun")
    if redone is not None:
        st.session_state["result"] = redone
        st.rerun()
else:
    st.caption("The run store is empty.")

state.sync_url()
