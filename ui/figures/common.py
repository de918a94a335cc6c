"""Shared by every figure: the colours of strategies and models, the layout, the metric labels
and units (from core.metrics.METRICS_INFO), and the export of figures as one HTML page."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from core.metrics import METRICS_INFO

PALETTE = ["#4c6ef5", "#f76707", "#37b24d", "#ae3ec9", "#f03e3e", "#1098ad", "#fab005", "#868e96"]
# One colour per strategy / model on every chart of every page, keyed by the result row's strategy
# choice key (ui.choices.strategy_key, never parsed from a label); an unlisted key gets a stable colour.
STRATEGY_COLORS = {
    "saps": "#4c6ef5",
    "saps_smallest": "#15aabf",
    "random": "#f59f00",
    "magnitude": "#ae3ec9",
    "gradient": "#37b24d",
    "fisher": "#e64980",
    "last_layer": "#f76707",
    "all": "#868e96",
    "original": "#c92a2a",
    "retrained": "#212529",
}
_FALLBACK = ["#5c7cfa", "#82c91e", "#be4bdb", "#fd7e14", "#20c997", "#fa5252", "#7950f2", "#a61e4d"]
# A series of a chart: {"label": legend text, "key": colour key, ...the values it draws}.
Series = dict[str, Any]


def color(key: str) -> str:
    """The colour of a strategy or model key, the same in every figure (an unknown key gets a
    stable colour from its text, never from its position in a figure)."""
    if key in STRATEGY_COLORS:
        return STRATEGY_COLORS[key]
    return _FALLBACK[zlib.crc32(key.encode()) % len(_FALLBACK)]


def layout(fig: go.Figure, title: str | None = None, height: int | None = None) -> go.Figure:
    fig.update_layout(
        title=title,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        template="plotly_white",
        height=height,
    )
    return fig


METRIC_LABELS = {k: v["label"] for k, v in METRICS_INFO.items()}
# Metrics that are shares of samples (drawn as %), and the units of the others.
PERCENT_KEYS = {k for k, v in METRICS_INFO.items() if v["unit"] == "fraction"}
UNIT_TEXT = {"auc": "0–1", "nats": "nats", "ratio": "ratio", "count": "count", "percent": "%"}
FINE_KEYS = {"test_acc", "retain_acc"}  # utility moves by fractions of a percent: one decimal
REFERENCE_LABELS = {"relearn_success": "retrained model, same relearning attack"}


def metric_label(key: str) -> str:
    return METRIC_LABELS.get(key, key)


def axis_title(key: str) -> str:
    """Axis title of a metric with its unit: "attack success rate (%)", "membership AUC (0–1, …)"."""
    if key in PERCENT_KEYS:
        return metric_label(key) + " (%)"
    unit = METRICS_INFO.get(key, {}).get("unit")
    return metric_label(key) + (f" ({UNIT_TEXT[unit]})" if unit in UNIT_TEXT else "")


def tick_format(key: str) -> str | None:
    return (".1%" if key in FINE_KEYS else ".0%") if key in PERCENT_KEYS else None


def percent_format(top: float, ticks: int = 5) -> str:
    """A d3 percent tick format with enough decimals for an axis from 0 to `top` (a share) with
    about `ticks` ticks: 1.0 -> ".0%", 0.0125 -> ".1%" (0.2 %, 0.4 %, …; never 0 %, 1 %, 1 %)."""
    step = max(float(top), 1e-12) / ticks * 100  # in percentage points
    return f".{max(0, -math.floor(math.log10(step)))}%"


def percent_range(values: Sequence[float | None], *, pad: float = 0.005) -> list[float] | None:
    """A y range for shares that zooms on `values` yet stays inside 0–100 %: [max(0, lo − p),
    min(1, hi + p)] with p = max(pad, 10 % of the spread); None without a value. (Plotly's own
    autorange puts one point at 97 % on a 0–200 % axis.)"""
    vs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vs:
        return None
    lo, hi = min(vs), max(vs)
    p = max(pad, 0.1 * (hi - lo))
    return [max(0.0, lo - p), min(1.0, hi + p)]


def to_html(figs: dict[str, go.Figure], title: str = "SAPS comparison") -> str:
    """Every figure in one self-contained HTML page (plotly.js embedded once)."""
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs.values())]
    head = f"<html><head><meta charset='utf-8'><title>{title}</title></head><body>"
    return head + "".join(parts) + "</body></html>"
