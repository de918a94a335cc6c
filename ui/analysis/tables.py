"""Tables and downloads for the pages: the results table and its CSV, the Unlearn page's short
table, the run history, honesty notes of a strategy row (and why a backdoor stayed), the
settings a result was made with, and the Compare page's headline, stored-run loading, sweep
config and download buttons."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from core.errors import SapsError
from ui import choices, figures
from ui.analysis.series import model_series

# Row fields shown beside the metrics in the results table.
ROW_COLUMNS = (
    "method_label",
    "n_selected",
    "dead_selected",
    "seconds_select",
    "seconds_update",
    "seconds",
    "seconds_amortized",
    "retrain_ratio",
)


def row_notes(row: dict) -> list[str]:
    """Why a strategy's model may not be what its name promises (from the method's log):
    guard failed, solver not converged, parameters unchanged, and the method's own note."""
    log = row.get("log") or {}
    notes = []
    if log.get("guard_failed"):
        notes.append("no step size passed the validation guard: θ* returned unchanged")
    if log.get("converged") is False:
        residual = log.get("rel_residual")
        res = f" (relative residual {residual:.2g})" if isinstance(residual, (int, float)) else ""
        notes.append(
            f"solver did not converge{res}" + ("; θ* unchanged" if log.get("applied") is False else "")
        )
    if log.get("changed") is False and not notes:
        notes.append("no parameter changed: θ* unchanged")
    if log.get("note") and log["note"] not in notes:
        notes.append(str(log["note"]))
    return notes


def flagged(result: dict) -> list[tuple[str, list[str]]]:
    """(label, notes) of every strategy row with an honesty note."""
    return [(r["label"], notes) for r in result["strategies"] if (notes := row_notes(r))]


def warnings(result: dict) -> list[str]:
    """The notes a result page shows above its figures: why every strategy kept the backdoor
    (when that happened), else each flagged strategy's honesty notes."""
    if why := backdoor_kept(result):
        return [why]
    return [f"**{label}**: " + "; ".join(notes) for label, notes in flagged(result)]


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def table(result: dict) -> list[dict]:
    """One row per model (θ*, retrained, each strategy): every scalar metric any of them has, the
    strategy's cost and selection counts, and its honesty notes."""
    series = model_series(result)
    keys = list(figures.METRIC_LABELS) + sorted(
        {k for s in series for k in s["metrics"]} - set(figures.METRIC_LABELS)
    )
    keys = [k for k in keys if any(_scalar(s["metrics"].get(k)) for s in series)]
    secs = result.get("seconds") or {}
    rows = []
    for s in series:
        row = s.get("row") or {}
        out = {"model": s["label"], **{k: s["metrics"].get(k) for k in keys}}
        if not row:
            out["seconds"] = secs.get("train" if s["key"] == "original" else "retrain")
        else:
            out.update({k: row.get(k) for k in ROW_COLUMNS})
            out["note"] = "; ".join(row_notes(row))
        rows.append(out)
    return rows


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def unlearn_table(result: dict) -> list[dict]:
    """The Unlearn page's short table: one row per strategy."""
    return [
        {
            "strategy": r["label"],
            "method": r.get("method_label") or r.get("method"),
            "selected": r.get("n_selected"),
            "steps": r.get("steps"),
            **{k: r["metrics"].get(k) for k in ("test_acc", "forget_acc", "asr")},
            "seconds": r.get("seconds"),
            "note": "; ".join(row_notes(r)),
        }
        for r in result["strategies"]
    ]


def _budgets(strategies: list[dict]) -> str:
    fractions = sorted({f for st_ in strategies if (f := st_.get("fraction")) is not None})
    return ", ".join(f"{f:.1%}" for f in fractions)


def made_with(cfg: dict) -> dict[str, str]:
    """The method, estimator and budget(s) a run was made with, as registry labels."""
    methods, estimators = choices.methods(), choices.labels("estimators")
    method = (cfg.get("unlearning") or {}).get("method") or ""
    curv = (cfg.get("curvature") or {}).get("method") or ""
    return {
        "method": methods.get(method, method),
        "estimator": estimators.get(curv, curv),
        "budget": _budgets(cfg.get("strategies") or []) or "—",
    }


def run_caption(result: dict) -> str:
    """One line under a result: its run id, data, and the method (with the steps it actually
    ran), estimator and budget it was made with."""
    cfg = result.get("config") or {}
    m = made_with(cfg)
    steps = sorted({r["steps"] for r in result["strategies"] if isinstance(r.get("steps"), int)})
    ran = f" ({'/'.join(map(str, steps))} step{'s' if steps != [1] else ''} run)" if steps else ""
    scenario = (cfg.get("scenario") or {}).get("kind", "?")
    return (
        f"Run #{result.get('run_id') or '—'} · {cfg.get('dataset')} · {cfg.get('model')} · {scenario} · "
        f"method **{m['method']}**{ran} · estimator **{m['estimator']}** · budget **{m['budget']}**"
    )


def history_table(runs: Iterable[dict]) -> list[dict]:
    """The run history as table rows, with the method, estimator and budgets of each run."""
    out = []
    for r in runs:
        cfg = r.get("config") or {}
        error = r.get("error") or ""
        out.append(
            {
                "id": r["id"],
                "created": r["created"],
                "status": "cancelled" if error.startswith("Cancelled") else r["status"],
                "dataset": cfg.get("dataset"),
                "scenario": (cfg.get("scenario") or {}).get("kind"),
                **made_with(cfg),
                "strategies": len(cfg.get("strategies") or []),
                "seconds": None if r.get("seconds") is None else round(r["seconds"], 1),
                "error": error,
            }
        )
    return out


def backdoor_kept(result: dict) -> str | None:
    """Why, when every strategy leaves the backdoor in place (attack success not even a quarter
    of the way from θ*'s down to the retrained model's), one sentence per strategy from its
    method log; None otherwise or without a backdoor."""
    o, ref, rows = result["original"], result.get("retrained") or {}, result["strategies"]
    if o.get("asr") is None or not rows:
        return None
    floor = ref.get("asr") if ref.get("asr") is not None else 0.0
    bar = floor + 0.75 * (o["asr"] - floor)
    if any((r["metrics"].get("asr") or 0.0) <= bar for r in rows):
        return None
    why = []
    for r in rows:
        log = r.get("log") or {}
        reasons = row_notes(r) or [
            f"the update ran ({log.get('steps') or r.get('steps') or '?'} step(s), "
            f"τ = {f'{lr:.3g}' if isinstance(lr := r.get('lr'), (int, float)) else '?'}) but moved too little"
        ]
        why.append(f"**{r['label']}**: " + "; ".join(reasons))
    method = rows[0].get("method")
    default = choices.default_method((result.get("config") or {}).get("scenario") or {"kind": "backdoor"})
    hint = (
        "more steps or a larger budget"
        if method == default
        else f"more steps, or the scenario's default method ({choices.methods().get(default, default)})"
    )
    return (
        f"Every strategy leaves the backdoor in place with {rows[0].get('method_label') or method}: "
        f"attack success stays above {bar:.0%} (θ* {o['asr']:.0%}, retrained {floor:.0%}).  \n"
        + "  \n".join(why)
        + f"  \nTry {hint}."
    )


def stored_result(store: Any, run_id: int) -> tuple[dict | None, str | None]:
    """(result, None) of a finished stored run, or (None, a message saying why there is none)."""
    try:
        row = store.get(int(run_id))
    except SapsError as e:
        return None, str(e)
    if row.get("result"):
        return row["result"], None
    return None, f"run {run_id}: {row['status']} ({row.get('error') or 'no result'})"


def headline(result: dict) -> list[tuple[str, str, str | None]]:
    """The Compare page's headline numbers as (label, value, help), filled left to right."""
    o, ref = result["original"], result.get("retrained") or {}
    out = [("test accuracy θ*", f"{o['test_acc']:.1%}", "Original model on clean test images.")]
    if o.get("asr") is not None:
        out.append(("attack success θ*", f"{o['asr']:.1%}", "Triggered test images → target class."))
    if ref.get("asr") is not None:
        out.append(("attack success retrained", f"{ref['asr']:.1%}", None))
    elif ref:
        out.append(("test accuracy retrained", f"{ref['test_acc']:.1%}", None))
    secs = result["seconds"]
    n = len(result["strategies"])
    out.append(("run", f"#{result.get('run_id') or '—'}", f"{n} strategies, {secs['total']:.1f} s in all"))
    return out


def sweep_config(base: dict, keys: list[str], fractions: tuple[float, ...]) -> dict:
    """`base` with every chosen budgeted strategy at each of `fractions` (one run, shared models)."""
    chosen = [k for k in keys if choices.budgeted(k)] or [next(iter(choices.strategies()))]
    return {**base, "strategies": [e for f in fractions for e in choices.strategy_entries(chosen, f)]}


def figures_html(figs: dict[str, Any], title: str = "SAPS comparison") -> str:
    """Every figure in one self-contained HTML page (plotly.js embedded once). Deterministic:
    each chart's div id is its key, so the same figures give the same bytes on every rerun and
    the download's file stays the same."""
    parts = [
        f.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"saps-{name}")
        for i, (name, f) in enumerate(figs.items())
    ]
    head = f"<html><head><meta charset='utf-8'><title>{title}</title></head><body>"
    return head + "".join(parts) + "</body></html>"


def downloads(result: dict, rows: list[dict], figs: dict[str, Any]) -> list[dict]:
    """The Compare page's download buttons as st.download_button keyword arguments: data
    computed now (never deferred), stable keys, and on_click="ignore" so a click does not
    rerun the page (a rerun would replace the files the other buttons point to)."""
    common = {"on_click": "ignore"}
    return [
        dict(
            label="Results as CSV",
            data=to_csv(rows),
            file_name="saps_results.csv",
            mime="text/csv",
            key="dl_csv",
            help="The table above, one row per model.",
            **common,
        ),
        dict(
            label="Results as JSON",
            data=json.dumps(result, indent=1, default=str),
            file_name="saps_result.json",
            mime="application/json",
            key="dl_json",
            help="The full result document (config included).",
            **common,
        ),
        dict(
            label="Figures as HTML",
            data=figures_html(figs),
            file_name="saps_figures.html",
            mime="text/html",
            key="dl_html",
            help="All charts of this page in one self-contained HTML file.",
            **common,
        ),
    ]
