"""Data shaping for the pages (no Streamlit): tables, CSV, chart series from result rows,
points from stored runs, every strategy's mask, the estimator comparison, index parsing.

A chart series is a dict {"label": legend text, "key": colour key, ...values}; labels come
from the result rows (built once by the engine), colour keys are the rows' strategy choice keys
(`ui.choices.strategy_key`: name, "_smallest" appended for a reversed ranking).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from core import config as core_config
from core import experiment, selection
from core.errors import SapsError
from ui import choices, figures

Scores = dict[str, torch.Tensor]
Series = dict[str, Any]
ORIGINAL = {"label": "original θ*", "key": "original"}
RETRAINED = {"label": "retrained", "key": "retrained"}
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


# -- series from a result ---------------------------------------------------------------------
def strategy_series(result: dict) -> list[Series]:
    """One series per strategy row: {"label", "key", "metrics", "row"}."""
    return [
        {"label": r["label"], "key": choices.strategy_key(r), "metrics": r["metrics"], "row": r}
        for r in result["strategies"]
    ]


def model_series(result: dict) -> list[Series]:
    """θ*, the retrained model (when there is one) and every strategy, as series with "metrics"."""
    refs = [{**ORIGINAL, "metrics": result["original"]}]
    if result.get("retrained"):
        refs.append({**RETRAINED, "metrics": result["retrained"]})
    return refs + strategy_series(result)


def forget_key(result: dict) -> str:
    """The forgetting axis: attack success for a backdoor, the flipped labels still predicted for
    a label flip, plain accuracy on D_f for a removal."""
    scenario = (result.get("config") or {}).get("scenario") or {}
    if result["original"].get("asr") is not None:
        return "asr"
    if scenario.get("kind") == "label_flip" or scenario.get("corruption") == "label":
        return "forget_acc_poisoned"
    return "forget_acc"


def relearn_title(result: dict) -> str:
    """What the relearning curve measures for this scenario (its y axis)."""
    return {
        "asr": "attack success rate (%)",
        "forget_acc_poisoned": "forget accuracy on the poisoned labels (%)",
        "forget_acc": "forget accuracy (%)",
    }[forget_key(result)]


def relearn_series(result: dict) -> list[Series]:
    """Relearning curves {"steps", "value"} of θ*, the retrained model and each strategy."""
    out = [{**s, "curve": s["metrics"].get("relearn_curve")} for s in model_series(result)]
    return [s for s in out if s["curve"]]


def cost_series(result: dict) -> list[Series]:
    """Per strategy: {"label", "key", "select", "update", "value": full seconds, "amortized"}."""
    return [
        {
            "label": r["label"],
            "key": choices.strategy_key(r),
            "select": r.get("seconds_select"),
            "update": r.get("seconds_update"),
            "value": r.get("seconds"),
            "amortized": r.get("seconds_amortized"),
        }
        for r in result["strategies"]
    ]


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


def forget_quality_series(result: dict, quality: dict) -> list[Series]:
    """Forget quality per strategy (deep evaluation output), coloured like the strategy rows."""
    keys = {r["label"]: choices.strategy_key(r) for r in result["strategies"]}
    return [
        {"label": lbl, "key": keys.get(lbl, lbl), "value": v} for lbl, v in quality["forget_quality"].items()
    ]


# -- tables ----------------------------------------------------------------------------------
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
            **{k: r["metrics"].get(k) for k in ("test_acc", "forget_acc", "asr")},
            "seconds": r.get("seconds"),
            "note": "; ".join(row_notes(r)),
        }
        for r in result["strategies"]
    ]


def history_table(runs: Iterable[dict]) -> list[dict]:
    """The run history as table rows."""
    out = []
    for r in runs:
        cfg = r.get("config") or {}
        out.append(
            {
                "id": r["id"],
                "created": r["created"],
                "status": r["status"],
                "dataset": cfg.get("dataset"),
                "scenario": (cfg.get("scenario") or {}).get("kind"),
                "method": (cfg.get("unlearning") or {}).get("method"),
                "strategies": len(cfg.get("strategies") or []),
                "seconds": r.get("seconds"),
                "error": r.get("error"),
            }
        )
    return out


def budget_points(result: dict, runs: Iterable[dict]) -> list[Series]:
    """Budgeted strategy points {"label", "key", "fraction", "metrics"} from this result and every
    stored run (`runs`: RunStore.list_runs rows) on the same trained models and method."""
    try:
        cfg = core_config.normalize(result["config"])
    except SapsError:
        return []
    key, method = experiment.model_key(cfg, "original"), cfg["unlearning"]["method"]
    seen, points = set(), []
    for res in [result, *(r.get("result") or {} for r in runs if r.get("status") == "done")]:
        try:
            rc = core_config.normalize(res.get("config") or {})
        except SapsError:
            continue
        if experiment.model_key(rc, "original") != key or rc["unlearning"]["method"] != method:
            continue
        for r in res.get("strategies", []):
            ident = (choices.strategy_key(r), r.get("fraction"), res.get("run_id"))
            if r.get("fraction") is None or ident in seen:
                continue
            seen.add(ident)
            unbudgeted = {k: v for k, v in r["strategy"].items() if k != "fraction"}
            label = selection.strategy_label(unbudgeted)  # the line's label; the x axis is the budget
            points.append(
                {
                    "label": label,
                    "key": choices.strategy_key(r),
                    "fraction": r["fraction"],
                    "metrics": r["metrics"],
                }
            )
    return points


# -- curvature page --------------------------------------------------------------------------
def flat(scores: Scores) -> np.ndarray:
    """All scores as one float64 vector (abs), in parameter order."""
    return np.concatenate([v.detach().abs().double().flatten().cpu().numpy() for v in scores.values()])


def threshold(scores: Scores, mask: dict[str, torch.Tensor], largest: bool) -> float | None:
    """The score at the selection boundary: the smallest chosen |H_ii| (largest=True) or the largest."""
    chosen = [scores[n].detach().abs()[m.bool()] for n, m in mask.items() if m.any()]
    if not chosen:
        return None
    v = torch.cat([c.flatten() for c in chosen])
    return float(v.min() if largest else v.max())


def n_selected(mask: dict[str, torch.Tensor]) -> int:
    return int(sum(int(m.sum()) for m in mask.values()))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (scipy's, with ties averaged); nan when a side is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def rank_matrix(vectors: dict[str, np.ndarray]) -> np.ndarray:
    """Pairwise Spearman correlations of named score vectors (same length)."""
    names = list(vectors)
    out = np.eye(len(names))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            out[i, j] = out[j, i] = spearman(vectors[names[i]], vectors[names[j]])
    return out


def strategy_masks(
    cfg: dict, prepared: Any, original: torch.nn.Module, scores: Scores, fraction: float, store: Any = None
) -> dict[str, dict[str, torch.Tensor]]:
    """Every strategy choice's mask at budget `fraction` (label -> mask), built by
    core.selection.mask_for with the run's live mask (computed once, store-cached)."""
    live = experiment.liveness(cfg, prepared, original, scores, store)[0]
    out = {}
    for entry in choices.strategies().values():
        out[selection.strategy_label(entry)] = selection.mask_for(
            entry,
            original,
            fraction=fraction if selection.STRATEGIES[entry["name"]].budgeted else None,
            scores=scores,
            forget_set=prepared.forget_set,
            seed=cfg["seed"],
            live=live,
        )
    return out


def estimator_agreement(
    cfg: dict, scores_of: Callable[[dict], Scores], progress: Callable[[str, float, str], None]
) -> dict:
    """diag H by every estimator of core.curvature.ESTIMATORS (`scores_of(cfg)` computes or loads
    one) and their pairwise Spearman rank correlations: {"names": [label, ...], "matrix": [[...]]}."""
    from core.curvature import ESTIMATORS

    vectors = {}
    for i, (name, est) in enumerate(ESTIMATORS.items()):
        progress("estimators", i / len(ESTIMATORS), f"{est.label}…")
        vectors[est.label] = flat(scores_of({**cfg, "curvature": {**cfg["curvature"], "method": name}}))
    return {"names": list(vectors), "matrix": rank_matrix(vectors).tolist()}


# -- forget set page -------------------------------------------------------------------------
def parse_indices(text: str, n_train: int) -> tuple[list[int], list[str]]:
    """Training-sample indices typed as "3, 17, 42" -> (valid indices, problems): a token that
    is not an integer or is outside 0..n_train−1 is reported, never silently kept."""
    good, problems = [], []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        try:
            i = int(token)
        except ValueError:
            problems.append(f"{token!r} is not an integer")
            continue
        if not 0 <= i < n_train:
            problems.append(f"{i} is outside 0..{n_train - 1}")
            continue
        good.append(i)
    return sorted(set(good)), problems


def picked_indices(points: Iterable[dict]) -> list[int]:
    """Training-sample indices of the squares clicked or box-selected in the sample picker (its
    one trace draws sample i as point i)."""
    return sorted({int(p["point_index"]) for p in points if "point_index" in p})


def gallery(forget_set: Any, n: int) -> tuple[tuple, tuple | None]:
    """The first `n` samples of D_f as (images, titles) as trained, and as corrected (None for a
    removal, where D̃_f is empty)."""
    idx = forget_set.forget_idx[:n]
    ids = idx.tolist()
    trained = (
        forget_set.x_train[idx].numpy(),
        [f"#{i}<br>y={y}" for i, y in zip(ids, forget_set.y_train[idx].tolist())],
    )
    if forget_set.is_removal:
        return trained, None
    k = min(n, len(forget_set.corrected_y))
    titles = [f"#{i}<br>y={y}" for i, y in zip(ids[:k], forget_set.corrected_y[:k].tolist())]
    return trained, (forget_set.corrected_x[:k].numpy(), titles)


def corruption_of(settings: dict) -> str:
    """The damage of the current scenario as an `indices` corruption (for "use this selection")."""
    kind = settings["scenario"]
    if kind == "indices":
        return settings["corruption"]
    return {"backdoor": "backdoor", "label_flip": "label"}.get(kind, "remove")


# -- compare page ----------------------------------------------------------------------------
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


def downloads(result: dict, rows: list[dict], html: str) -> list[dict]:
    """The Compare page's download buttons as st.download_button keyword arguments."""
    return [
        dict(
            label="Results as CSV",
            data=to_csv(rows),
            file_name="saps_results.csv",
            mime="text/csv",
            key="dl_csv",
            help="The table above, one row per model.",
        ),
        dict(
            label="Results as JSON",
            data=json.dumps(result, indent=1, default=str),
            file_name="saps_result.json",
            mime="application/json",
            key="dl_json",
            help="The full result document (config included).",
        ),
        dict(
            label="Figures as HTML",
            data=html,
            file_name="saps_figures.html",
            mime="text/html",
            key="dl_html",
            help="All charts of this page in one self-contained HTML file.",
        ),
    ]
