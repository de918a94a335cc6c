"""The data side: the pipeline diagram, image galleries, the sample picker, class counts and
training curves."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.figures.common import PALETTE, Series, color, layout

PIPELINE = ["data", "forget set D_f", "train θ*", "diag H", "mask M", "masked update", "compare with retrain"]


def pipeline(highlight: int | None = None) -> go.Figure:
    """The SAPS pipeline as a row of boxes joined by arrows; `highlight` marks one step."""
    fig = go.Figure()
    n = len(PIPELINE)
    for i, label in enumerate(PIPELINE):
        color = PALETTE[1] if i == highlight else PALETTE[0]
        fig.add_shape(
            type="rect",
            x0=i,
            x1=i + 0.8,
            y0=0,
            y1=1,
            line=dict(color=color, width=2),
            fillcolor="rgba(76,110,245,0.08)" if i != highlight else "rgba(247,103,7,0.12)",
        )
        fig.add_annotation(
            x=i + 0.4, y=0.5, text=label.replace(" ", "<br>", 1), showarrow=False, font=dict(size=13)
        )
        if i < n - 1:
            fig.add_annotation(
                x=i + 1,
                y=0.5,
                ax=i + 0.8,
                ay=0.5,
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                showarrow=True,
                arrowhead=3,
                arrowwidth=2,
                text="",
            )
    fig.add_annotation(x=5.4, y=-0.25, text="θ ← θ* − τ · (M ⊙ G)", showarrow=False, font=dict(size=12))
    fig.add_annotation(x=3.4, y=-0.25, text="rank |H_ii|, keep top k", showarrow=False, font=dict(size=12))
    fig.update_xaxes(visible=False, range=[-0.1, n - 0.1])
    fig.update_yaxes(visible=False, range=[-0.5, 1.1])
    return layout(fig, height=170)


# -- forget set ------------------------------------------------------------------------------
def image_grid(
    images: np.ndarray,
    titles: Sequence[str],
    *,
    cols: int = 8,
    title: str | None = None,
    highlight: Sequence[bool] | None = None,
) -> go.Figure:
    """Images N×C×H×W (or N×H×W) in [0, 1] as a grid of small pictures with titles."""
    images = np.asarray(images, dtype=float)
    if images.ndim == 3:
        images = images[:, None]
    n = len(images)
    if n == 0:
        fig = go.Figure()
        fig.add_annotation(text="no images", showarrow=False)
        return layout(fig, title, 120)
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    two_line = any(
        "<br>" in str(t) for t in list(titles)[:n]
    )  # titles stacked so narrow tiles keep them apart
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=list(titles)[:n],
        horizontal_spacing=0.01,
        vertical_spacing=(0.2 if two_line else 0.08) / max(1, rows) + 0.02,
    )
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        if img.shape[0] == 3:
            rgb = (np.clip(img.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
            trace = go.Image(z=rgb)
        else:
            trace = go.Heatmap(
                z=img[0][::-1],
                colorscale="gray_r",
                showscale=False,
                zmin=0,
                zmax=1,
                hovertemplate="row %{y}, col %{x}: %{z:.2f}<extra></extra>",
            )
        fig.add_trace(trace, row=r + 1, col=c + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    for ann in fig.layout.annotations:
        ann.font = dict(size=11)
    if highlight is not None:
        for i, on in enumerate(highlight):
            if on and i < len(fig.layout.annotations):
                fig.layout.annotations[i].font = dict(size=11, color=PALETTE[4])
    fig = layout(fig, title, (118 if two_line else 95) * rows + 40)
    if two_line:
        fig.update_layout(margin=dict(t=(40 if title else 10) + 22))
    return fig


def class_histogram(
    counts: Sequence[int], classes: Sequence[str], *, title: str = "classes in D_f"
) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=[str(c) for c in classes],
            y=list(counts),
            marker_color=PALETTE[0],
            hovertemplate="class %{x}: %{y} samples<extra></extra>",
        )
    )
    fig.update_xaxes(title="true class", type="category")
    fig.update_yaxes(title="samples")
    return layout(fig, title, 260)


def sample_picker(labels: Sequence[int], chosen: Sequence[bool], *, cols: int = 40) -> go.Figure:
    """Training samples as a grid of square markers (clickable in Streamlit), chosen ones in colour."""
    n = len(labels)
    idx = np.arange(n)
    chosen = np.asarray(chosen, dtype=bool)
    fig = go.Figure(
        go.Scatter(
            x=idx % cols,
            y=-(idx // cols),
            mode="markers",
            customdata=np.stack([idx, np.asarray(labels)], 1),
            marker=dict(symbol="square", size=9, color=np.where(chosen, PALETTE[1], "#dee2e6")),
            hovertemplate="sample %{customdata[0]} · class %{customdata[1]}<extra></extra>",
        )
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return layout(fig, None, 12 * math.ceil(n / cols) + 40)


# -- training --------------------------------------------------------------------------------
def training_curves(series: Sequence[Series]) -> go.Figure:
    """Loss and training accuracy per epoch, one line per model; series: {"label", "key",
    "history": History.epochs}."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss", "training accuracy"])
    for s in series:
        epochs = s.get("history") or []
        if not epochs:
            continue
        x = [e["epoch"] for e in epochs]
        line = dict(color=color(s["key"]))
        for col, (field, legend) in enumerate((("loss", True), ("accuracy", False)), start=1):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[e[field] for e in epochs],
                    name=s["label"],
                    line=line,
                    legendgroup=s["label"],
                    showlegend=legend,
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="mean cross-entropy", row=1, col=1)
    fig.update_yaxes(title="accuracy (%)", tickformat=".0%", row=1, col=2)
    fig = layout(fig, None, 340)
    # the subplot titles sit above the plot area: leave them room (a 10 px margin clipped them)
    return fig.update_layout(margin=dict(t=50), legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
