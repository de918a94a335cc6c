"""Chart series from a result (and from stored runs): a series is a dict {"label": legend text,
"key": colour key, ...values}; labels come from the result rows (built once by the engine),
colour keys are the rows' strategy choice keys (`ui.choices.strategy_key`: name, "_smallest"
appended for a reversed ranking)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from core import config as core_config
from core import experiment, selection
from core.errors import SapsError
from ui import choices

Series = dict[str, Any]
ORIGINAL = {"label": "original θ*", "key": "original"}
RETRAINED = {"label": "retrained", "key": "retrained"}


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


def forget_quality_series(result: dict, quality: dict) -> list[Series]:
    """Forget quality per strategy (deep evaluation output), coloured like the strategy rows."""
    keys = {r["label"]: choices.strategy_key(r) for r in result["strategies"]}
    return [
        {"label": lbl, "key": keys.get(lbl, lbl), "value": v} for lbl, v in quality["forget_quality"].items()
    ]


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


def display_rows(rows: list[dict]) -> list[dict]:
    """A table (list of row dicts) as the dashboard shows it, in the charts' units: shares in %
    ("98.0 %"), `restored_pct` in % ("87 %"), counts with thousands separators, other numbers to
    3 significant digits, empty cells (None, NaN) as "–"; metric columns titled like the chart
    axes ("test accuracy (%)"). CSV downloads keep the raw numbers (ui.analysis.tables)."""
    from ui import figures

    def cell(key: str, v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)) or v == "":
            return "–"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, (int, float)) and key in figures.PERCENT_KEYS:
            return f"{100 * v:.1f} %"
        if isinstance(v, (int, float)) and key == "restored_pct":
            return f"{v:.0f} %"
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    def title(key: str) -> str:
        if key == "restored_pct":
            return figures.metric_label(key)
        return figures.axis_title(key) if key in figures.METRIC_LABELS else key

    return [{title(k): cell(k, v) for k, v in r.items()} for r in rows]


def same_models(result: dict | None, cfg: dict | None) -> bool:
    """Whether `result` (a run's output) was made with the trained models that config `cfg`
    (normalized) would use: same data set, scenario, model, training and seed. Home shows a
    result's metrics only then (switching to Fashion-MNIST hides the digits numbers)."""
    if not result or cfg is None:
        return False
    try:
        made = core_config.normalize(result.get("config") or {})
    except SapsError:
        return False
    return experiment.model_key(made, "original") == experiment.model_key(cfg, "original")
