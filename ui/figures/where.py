"""Where the forgetting happens: one per-layer profile of every model (share selected, relative
weight change, CKA to the retrained model) and the forget samples in a 2-D feature projection."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.figures.common import Series, color, layout

CLASS_COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
PROFILE_ROWS = (
    ("share", "share of the layer's parameters selected (%)"),
    ("change", "relative weight change ‖Δθ_l‖ / ‖θ*_l‖ (log)"),
    ("cka", "linear CKA of the layer's test activations to the retrained model"),
)


def layer_profile(series: Sequence[Series], layers: Sequence[str]) -> go.Figure:
    """Three panels over the layers (x, in forward order): share selected (bars per strategy),
    relative weight change vs θ* (log y; zeros left out) and CKA to the retrained model (lines).
    series: {"label", "key", "share": [..] | None, "change": [..], "cka": [..]} per model."""
    fig = make_subplots(
        rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.09, subplot_titles=[t for _, t in PROFILE_ROWS]
    )
    x = list(layers)
    for s in series:
        name, c = s["label"], color(s["key"])
        reference = s["key"] == "retrained"
        first = True
        for row, (k, _) in enumerate(PROFILE_ROWS, start=1):
            values = s.get(k)
            if values is None:
                continue
            ys = [v if (k != "change" or v > 0) and np.isfinite(v) else None for v in values]
            if k == "share":
                trace = go.Bar(
                    x=x, y=ys, marker_color=c, hovertemplate="%{x}: %{y:.2%}<extra>" + name + "</extra>"
                )
            else:
                dash = "dash" if reference else "solid"
                trace = go.Scatter(
                    x=x,
                    y=ys,
                    mode="lines+markers",
                    line=dict(color=c, width=2, dash=dash),
                    marker=dict(size=7),
                    hovertemplate="%{x}: %{y:.4g}<extra>" + name + "</extra>",
                )
            trace.update(name=name, legendgroup=name, showlegend=first)
            fig.add_trace(trace, row=row, col=1)
            first = False
    fig.update_yaxes(title="selected", tickformat=".0%", row=1, col=1)
    fig.update_yaxes(title="‖Δθ‖/‖θ*‖", type="log", exponentformat="power", row=2, col=1)
    fig.update_yaxes(title="CKA (1 = same)", row=3, col=1)  # differences are small: autorange
    fig.update_xaxes(title="layer (forward order)", row=3, col=1)
    fig.update_layout(barmode="group", legend=dict(orientation="h", yanchor="bottom", y=1.06, x=0))
    fig.update_annotations(font_size=13)
    fig = layout(fig, None, 820)
    fig.update_layout(margin=dict(l=10, r=10, t=90, b=10))
    return fig


def feature_projection(panels: Sequence[dict], *, title: str | None = None) -> go.Figure:
    """Side-by-side 2-D projections; panel: {"title", "test": n×2, "forget": m×2, "pred_test",
    "pred_forget"}. Test images are small dots, forget samples large diamonds outlined in black,
    both coloured by the model's predicted class (one legend entry per class)."""
    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=[p["title"] for p in panels], horizontal_spacing=0.05
    )
    seen: set[int] = set()
    for j, p in enumerate(panels, start=1):
        for kind, size, symbol in (("test", 5, "circle"), ("forget", 10, "diamond")):
            pts, pred = np.asarray(p[kind]), np.asarray(p[f"pred_{kind}"], dtype=int)
            if not len(pts):
                continue
            for cls in np.unique(pred):
                at = pred == cls
                fig.add_trace(
                    go.Scatter(
                        x=pts[at, 0],
                        y=pts[at, 1],
                        mode="markers",
                        name=f"predicted {cls}",
                        legendgroup=f"class {cls}",
                        showlegend=kind == "test" and int(cls) not in seen,
                        marker=dict(
                            size=size,
                            symbol=symbol,
                            color=CLASS_COLORS[int(cls) % len(CLASS_COLORS)],
                            opacity=0.45 if kind == "test" else 0.95,
                            line=dict(color="black", width=1.2) if kind == "forget" else dict(width=0),
                        ),
                        hovertemplate=f"{kind} sample, predicted {cls}<extra></extra>",
                    ),
                    row=1,
                    col=j,
                )
                if kind == "test":
                    seen.add(int(cls))
        fig.update_xaxes(title="PC 1", showticklabels=False, row=1, col=j)
        fig.update_yaxes(title="PC 2" if j == 1 else None, showticklabels=False, row=1, col=j)
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            name="forget sample (◆)",
            marker=dict(size=10, symbol="diamond", color="white", line=dict(color="black", width=1.2)),
        )
    )
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.1, x=0))
    fig.update_annotations(font_size=13)
    fig = layout(fig, title, 460)
    fig.update_layout(margin=dict(l=10, r=10, t=100, b=10))
    return fig


FUNCTION_KEYS = (
    ("agreement", "agreement with retrained (%)"),
    ("kl_to_retrained", "KL(p_retrained ‖ p) (nats)"),
)


def function_distance(series: Sequence[Series]) -> go.Figure:
    """Distance to the retrained model in function space, two panels: prediction agreement on
    the test set and mean KL(p_retrained ‖ p_model); one bar per model (series: {"label", "key",
    "metrics"}), models without the value (the retrained model itself) left out."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[t for _, t in FUNCTION_KEYS], horizontal_spacing=0.2)
    for col, (k, _) in enumerate(FUNCTION_KEYS, start=1):
        shown = [s for s in series if s["metrics"].get(k) is not None]
        fig.add_trace(
            go.Bar(
                x=[s["label"] for s in shown],
                y=[s["metrics"][k] for s in shown],
                marker_color=[color(s["key"]) for s in shown],
                showlegend=False,
                hovertemplate="%{x}: %{y:" + (".2%" if k == "agreement" else ".4f") + "}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    values = [s["metrics"]["agreement"] for s in series if s["metrics"].get("agreement") is not None]
    low = min(values, default=0.9)
    fig.update_yaxes(tickformat=".1%", range=[max(0.0, low - 0.02), 1.0], title="agreement", row=1, col=1)
    fig.update_yaxes(title="KL (nats)", rangemode="tozero", row=1, col=2)
    fig.update_xaxes(tickangle=-30)
    fig.update_annotations(font_size=13)
    return layout(fig, "function-space distance to the retrained model", 380)
