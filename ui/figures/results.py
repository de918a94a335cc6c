"""Results across models and strategies: metric bars, unlearning curves, metric vs budget,
the utility/forgetting trade-off and relearning curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.figures.common import (
    FINE_KEYS,
    PERCENT_KEYS,
    REFERENCE_LABELS,
    Series,
    axis_title,
    color,
    layout,
    metric_label,
    percent_range,
    tick_format,
)


def metric_bars(series: Sequence[Series], keys: Sequence[str], *, title: str | None = None) -> go.Figure:
    """Grouped bars: one group per metric, one bar per model/strategy; series: {"label", "key",
    "metrics": METRICS}. Metrics that are None are left out (no bar, not 0)."""
    fig = go.Figure()
    pct = all(k in PERCENT_KEYS for k in keys)
    for s in series:
        m = s["metrics"]
        ks = [k for k in keys if m.get(k) is not None]
        fig.add_trace(
            go.Bar(
                name=s["label"],
                x=[metric_label(k) for k in ks],
                y=[m[k] for k in ks],
                marker_color=color(s["key"]),
                hovertemplate="%{x}: %{y:" + (".1%" if pct else ".3f") + "}<extra>" + s["label"] + "</extra>",
            )
        )
    fig.update_layout(barmode="group")
    if pct:  # shares drawn in %, like every other chart and table
        fig.update_yaxes(range=[0, 1.05], title="value (%)", tickformat=".0%")
    else:
        fig.update_yaxes(range=[0, 1.05], title="value (0–1)")
    fig.update_xaxes(title="metric")
    return layout(fig, title, 340)


def curve_columns(curve: Any) -> dict[str, list]:
    """A strategy's unlearning curve as {"step": [...], metric: [...]}; also accepts a list of
    per-step dicts. Anything else (or no usable values) -> {}."""
    if isinstance(curve, list) and all(isinstance(r, dict) for r in curve):
        keys = list(dict.fromkeys(k for r in curve for k in r))
        curve = {k: [r.get(k) for r in curve] for k in keys}
    if not isinstance(curve, dict):
        return {}
    out = {k: list(v) for k, v in curve.items() if isinstance(v, (list, tuple))}
    return out if any(any(x is not None for x in v) for k, v in out.items() if k != "step") else {}


def unlearning_curves(
    series: Sequence[Series],
    keys: Sequence[str] = ("test_acc", "asr"),
    *,
    reference: dict[str, float | None] | None = None,
) -> go.Figure:
    """Metric vs unlearning step, one panel per metric (2 per row), one line per strategy in its
    colour; series: {"label", "key", "curve": {"step": [...], metric: [...]}}; `reference` (the
    retrained model's METRICS) as a dashed line per panel."""
    keys = [k for k in keys if any(any(x is not None for x in (s["curve"].get(k) or [])) for s in series)]
    keys = keys or ["test_acc"]
    ncols = 1 if len(keys) == 1 else 2
    nrows = math.ceil(len(keys) / ncols)
    fig = make_subplots(
        rows=nrows,
        cols=ncols,
        subplot_titles=[metric_label(k) for k in keys],
        horizontal_spacing=0.16,
        vertical_spacing=0.18 if nrows > 1 else 0.1,
    )
    for s in series:
        name, c = s["label"], s["curve"]
        first = True
        for j, k in enumerate(keys):
            ys = c.get(k) or []
            if not any(y is not None for y in ys):
                continue
            steps = c.get("step") or list(range(len(ys)))
            fig.add_trace(
                go.Scatter(
                    x=steps[: len(ys)],
                    y=ys,
                    name=name,
                    legendgroup=name,
                    showlegend=first,
                    mode="lines+markers",
                    marker=dict(size=5),
                    line=dict(color=color(s["key"]), width=2),
                    connectgaps=True,
                    cliponaxis=False,
                    hovertemplate=f"{name}<br>step %{{x}}: %{{y:.1%}}<extra>{metric_label(k)}</extra>",
                ),
                row=j // ncols + 1,
                col=j % ncols + 1,
            )
            first = False
    for j, k in enumerate(keys):
        r, c = j // ncols + 1, j % ncols + 1
        ref = (reference or {}).get(k)
        if ref is not None:
            fig.add_hline(
                y=ref,
                row=r,
                col=c,
                line=dict(color=color("retrained"), width=1.5, dash="dash"),
                annotation_text=f"retrained {ref:.1%}",
                annotation_position="top right" if ref < 0.5 else "bottom right",
                annotation_font=dict(size=10),
            )
        # utility metrics move by a few points: their axis zooms in, inside 0–100 %; forgetting
        # spans 0–100 %
        zoom = k in FINE_KEYS
        values = [y for s in series for y in (s["curve"].get(k) or [])] + [ref]
        fig.update_yaxes(
            title="rate (%)" if k == "asr" else "accuracy (%)",
            tickformat=".1%" if zoom else ".0%",
            range=percent_range(values) if zoom else [-0.02, 1.05],
            row=r,
            col=c,
        )
        fig.update_xaxes(title="unlearning step", row=r, col=c)
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.04 + 0.04 * (nrows > 1), x=0))
    fig = layout(fig, None, 300 * nrows + 60)
    fig.update_layout(margin=dict(l=10, r=10, t=70, b=10))
    return fig


def metric_vs_budget(points: Sequence[Series], key: str, *, reference: float | None = None) -> go.Figure:
    """`key` vs fraction (log x), one line per strategy; points: {"label", "key", "fraction",
    "metrics"}. `reference` (the retrained model's value) is a dashed line with its own legend entry."""
    fig = go.Figure()
    by: dict[str, list[tuple[float, float]]] = {}
    labels: dict[str, str] = {}
    for p in points:
        v = (p.get("metrics") or {}).get(key)
        if v is None or p.get("fraction") is None:
            continue
        by.setdefault(p["key"], []).append((p["fraction"], v))
        labels[p["key"]] = p["label"]
    pct = key in PERCENT_KEYS
    for k, xy in by.items():
        xy.sort()
        name = labels[k]
        fig.add_trace(
            go.Scatter(
                x=[x for x, _ in xy],
                y=[y for _, y in xy],
                name=name,
                mode="lines+markers",
                line=dict(color=color(k)),
                cliponaxis=False,
                hovertemplate=f"{name} @ %{{x:.1%}}: %{{y:{'.1%' if pct else '.3f'}}}<extra></extra>",
            )
        )
    if reference is not None:
        label = REFERENCE_LABELS.get(key, "retrained model (target)")
        value = f"{reference:.1%}" if pct else f"{reference:.3f}"
        xs = [x for xy in by.values() for x, _ in xy] or [0.001, 1.0]
        fig.add_trace(
            go.Scatter(
                x=[min(xs) / 1.6, max(xs) * 1.6],
                y=[reference, reference],
                mode="lines",
                name=f"{label}: {value}",
                line=dict(color=color("retrained"), width=2, dash="dash"),
                hovertemplate=f"{label}: {value}<extra></extra>",
            )
        )
    xs = sorted({x for xy in by.values() for x, _ in xy}) or [0.001, 1.0]
    # ticks at the measured budgets only: plotly's own log ticks around one budget repeat a
    # rounded label ("2% 2% 3% 3%")
    fig.update_xaxes(
        title="budget (% of parameters updated, log scale)",
        type="log",
        tickvals=xs,
        ticktext=[f"{100 * x:g} %" for x in xs],
    )
    ys = [y for xy in by.values() for _, y in xy] + [reference]
    y_range = (percent_range(ys) if key in FINE_KEYS else [-0.02, 1.05]) if pct else None
    fig.update_yaxes(title=axis_title(key), tickformat=tick_format(key), range=y_range)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.28, x=0))
    fig = layout(fig, metric_label(key), 380)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
    return fig


def tradeoff(
    points: Sequence[Series],
    *,
    x_key: str = "asr",
    y_key: str = "test_acc",
    original: dict | None = None,
    retrained: dict | None = None,
) -> go.Figure:
    """Utility (y) vs forgetting (x) per strategy (points: {"label", "key", "metrics"}); θ* is a
    cross, the retrained model the target star."""
    fig = go.Figure()
    refs = [
        {"label": "original θ*", "key": "original", "metrics": original or {}, "symbol": "x", "size": 18},
        {
            "label": "retrained (target)",
            "key": "retrained",
            "metrics": retrained or {},
            "symbol": "star",
            "size": 18,
        },
    ]
    for p in [*points, *refs]:
        m = p["metrics"]
        if m.get(x_key) is None or m.get(y_key) is None:
            continue
        marker = dict(size=p.get("size", 13), symbol=p.get("symbol", "circle"), color=color(p["key"]))
        trace = go.Scatter(x=[m[x_key]], y=[m[y_key]], name=p["label"], mode="markers", marker=marker)
        fig.add_trace(trace.update(cliponaxis=False))
    xs = [p["metrics"].get(x_key) for p in [*points, *refs]]
    ys = [p["metrics"].get(y_key) for p in [*points, *refs]]
    fig.update_xaxes(
        title=axis_title(x_key) + "<br>lower = more forgotten",  # two lines: fits a half-width column
        tickformat=tick_format(x_key),
        range=([-0.02, 1.05] if x_key not in FINE_KEYS else percent_range(xs))
        if x_key in PERCENT_KEYS
        else None,
    )
    fig.update_yaxes(
        title=axis_title(y_key),
        tickformat=tick_format(y_key),
        range=percent_range(ys, pad=0.01) if y_key in PERCENT_KEYS else None,
    )
    return layout(fig, "utility vs forgetting", 380)


def relearn_curves(series: Sequence[Series], *, y_title: str) -> go.Figure:
    """Attack success vs relearning steps, one line per model (series: {"label", "key", "curve":
    {"steps": [...], "value": [...]}}); the retrained model (key "retrained") dashed."""
    fig = go.Figure()
    for s in series:
        curve = s.get("curve") or {}
        if not curve.get("value"):
            continue
        dash = "dash" if s["key"] == "retrained" else "solid"
        fig.add_trace(
            go.Scatter(
                x=curve["steps"],
                y=curve["value"],
                name=s["label"],
                mode="lines+markers",
                line=dict(color=color(s["key"]), width=2, dash=dash),
                hovertemplate=s["label"] + "<br>%{x} steps: %{y:.1%}<extra></extra>",
            )
        )
    fig.update_xaxes(title="relearning steps")
    fig.update_yaxes(title=y_title, tickformat=".0%", range=[-0.02, 1.05])
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25, x=0))
    fig = layout(fig, "relearning attack", 400)
    return fig
