"""The curvature page: per-layer heatmaps of log10 |diag H| with the mask, the score histogram
with its threshold, the share selected per tensor, and labelled square matrices."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ui.figures.common import PALETTE, layout, percent_format
from ui.figures.grids import layer_grid, log_scores, tile_ticks


def layer_heatmap(
    name: str,
    scores: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    zrange: tuple[float, float] | None = None,
) -> go.Figure:
    """log10 |diag H| of one parameter tensor; selected cells in colour, others in grey.

    Conv weights are drawn as a grid of k×k filter tiles (one per (output, input) channel pair,
    with gaps); dense weights as output unit × input unit; a bias as one row."""
    z, idx, info = layer_grid(log_scores(scores, floor=zrange[0] if zrange else None))
    zmin, zmax = zrange if zrange else (float(np.nanmin(z)), float(np.nanmax(z)))
    if info["conv"]:
        hover = (
            "out %{customdata[0]}, in %{customdata[1]}, kernel (%{customdata[2]}, %{customdata[3]})"
            "<br>log₁₀|H_ii| = %{z:.2f}"
        )
    elif np.ndim(scores) == 1:
        hover = "unit %{customdata[1]}<br>log₁₀|H_ii| = %{z:.2f}"
    else:
        hover = "out %{customdata[0]}, in %{customdata[1]}<br>log₁₀|H_ii| = %{z:.2f}"
    cells = dict(customdata=idx, zmin=zmin, zmax=zmax, hoverongaps=False)
    fig = go.Figure()
    selected, part = z, None
    if mask is not None:
        m = layer_grid(np.asarray(mask, dtype=float))[0] > 0.5
        grey = [[0, "#dee2e6"], [1, "#868e96"]]
        fig.add_trace(
            go.Heatmap(
                z=np.where(m, np.nan, z),
                colorscale=grey,
                showscale=False,
                name="not selected",
                hovertemplate=hover + "<extra>not selected</extra>",
                **cells,
            )
        )
        selected, part = np.where(m, z, np.nan), "selected"
    extra = f"<extra>{part or ''}</extra>"
    bar = dict(title=dict(text="log₁₀|H_ii|", side="right"), thickness=14)
    fig.add_trace(
        go.Heatmap(
            z=selected, colorscale="Viridis", colorbar=bar, name=part, hovertemplate=hover + extra, **cells
        )
    )
    rows, cols = z.shape
    fig.update_yaxes(
        autorange="reversed",
        scaleanchor="x",
        constrain="domain",
        showgrid=False,
        zeroline=False,
        title=info["y"],
        showticklabels=False,
    )
    fig.update_xaxes(
        constrain="domain", showgrid=False, zeroline=False, title=info["x"], showticklabels=False
    )
    if info["conv"]:
        kh, kw = info["kh"], info["kw"]
        if "per_row" in info:
            per = info["per_row"]
            o = info["shape"][0]
            fig.update_yaxes(
                tickvals=[r * (kh + 1) + (kh - 1) / 2 for r in range(info["nr"])],
                ticktext=[f"{r * per}–{min(o, (r + 1) * per) - 1}" for r in range(info["nr"])],
                showticklabels=True,
                ticks="",
                tickfont=dict(size=10),
            )
        else:
            fig.update_xaxes(**tile_ticks(info["nc"], kw, ""))
            fig.update_yaxes(**tile_ticks(info["nr"], kh, ""))
        sub = f"{info['shape'][0]} × {info['shape'][1]} filters of {kh}×{kw}"
    else:
        fig.update_xaxes(showticklabels=True, tickfont=dict(size=10))
        fig.update_yaxes(showticklabels=np.ndim(scores) > 1, tickfont=dict(size=10))
        sub = "×".join(map(str, np.shape(scores)))
    height = int(min(600, max(170, 110 + 760 * rows / max(cols, 1))))
    fig = layout(fig, f"{name} · {sub}", height)
    fig.update_layout(margin=dict(l=60, r=10, t=40, b=50), plot_bgcolor="white")
    return fig


def log_histogram(scores: np.ndarray, bins: int = 60) -> tuple[np.ndarray, np.ndarray, int]:
    """(counts, bin edges, exact zeros) of log10 |scores| over the non-zero scores."""
    a = np.abs(np.asarray(scores, dtype=float)).ravel()
    nonzero = a[a > 0]
    if not nonzero.size:
        return np.zeros(0, dtype=np.int64), np.zeros(1), int(a.size)
    counts, edges = np.histogram(np.log10(nonzero), bins=bins)
    return counts, edges, int(a.size - nonzero.size)


def score_histogram(
    scores: np.ndarray | None,
    threshold: float | None,
    *,
    largest: bool = True,
    n_selected: int | None = None,
    bins: int = 60,
    binned: tuple[np.ndarray, np.ndarray, int] | None = None,
) -> go.Figure:
    """Histogram of log10 |diag H| over all parameters with the selection threshold as a line.
    `binned`: (counts, edges, zeros) from log_histogram, computed once per model, so a budget
    change redraws only the line (the raw scores never travel to the browser)."""
    counts, edges, zero = binned if binned is not None else log_histogram(scores, bins)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(
        go.Bar(
            x=centers,
            y=counts,
            width=np.diff(edges),
            marker_color=PALETTE[0],
            name="parameters",
            customdata=np.stack([10.0 ** edges[:-1], 10.0 ** edges[1:]], 1) if len(counts) else None,
            hovertemplate="|H_ii| %{customdata[0]:.1e}–%{customdata[1]:.1e}: %{y:,}<extra></extra>",
        )
    )
    if threshold is not None and threshold > 0:
        t = math.log10(threshold)
        side = "≥" if largest else "≤"
        label = f"threshold {side} {threshold:.2e}" + (
            f" · {n_selected:,} selected" if n_selected is not None else ""
        )
        fig.add_vline(
            x=t,
            line=dict(color=PALETTE[4], width=3, dash="dash"),
            annotation_text=label,
            annotation_position="top left" if largest else "top right",
            annotation_bgcolor="rgba(255,255,255,0.85)",
            annotation_font=dict(size=11),
        )
    # x is log10 |H_ii|; label the ticks as powers of ten, at most ~8 of them
    if len(counts):
        lo, hi = math.floor(edges[0]), math.ceil(edges[-1])
        step = max(1, math.ceil((hi - lo) / 8))
        ticks = list(range(lo, hi + 1, step))
        fig.update_xaxes(tickvals=ticks, ticktext=[f"10<sup>{k}</sup>" for k in ticks])
    fig.update_xaxes(title=f"|diag H| (log scale; {zero:,} exact zeros not shown)")
    # counts on a log axis: one tick per power of ten (1, 10, 100, …), no minor labels
    fig.update_yaxes(
        title="parameters (log scale)", type="log", dtick=1, tickformat="d", minor=dict(showgrid=False)
    )
    fig.update_layout(bargap=0.0, showlegend=False)
    return layout(fig, None, 300)


def layer_share(rows: Sequence[dict[str, Any]]) -> go.Figure:
    """Share of each tensor selected (core.selection.summary rows), dead picks marked."""
    names = [r["name"] for r in rows]
    share = [r["share"] for r in rows]
    text = [f"{r['selected']:,}/{r['numel']:,}" for r in rows]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=share,
            text=text,
            textposition="outside",
            marker_color=PALETTE[0],
            name="selected",
            hovertemplate="%{x}: %{y:.2%}<extra></extra>",
        )
    )
    dead = [(r.get("zero_score_selected") or 0) / max(1, r["numel"]) for r in rows]
    if any(dead):
        fig.add_trace(go.Bar(x=names, y=dead, marker_color=PALETTE[4], name="selected with H_ii = 0"))
    top = max([*share, 1e-4]) * 1.25
    fig.update_yaxes(title="share selected (%)", tickformat=percent_format(top), range=[0, top])
    fig.update_xaxes(title="parameter tensor")
    fig.update_layout(barmode="overlay")
    return layout(fig, None, 300)


def matrix(
    values: np.ndarray,
    labels: Sequence[str],
    *,
    title: str,
    zmin: float = 0.0,
    zmax: float = 1.0,
    colorscale: str = "Blues",
) -> go.Figure:
    """A labelled square matrix with its values written in the cells (Jaccard, rank correlation)."""
    v = np.asarray(values, dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=v,
            x=list(labels),
            y=list(labels),
            zmin=zmin,
            zmax=zmax,
            colorscale=colorscale,
            text=np.vectorize(lambda t: "" if np.isnan(t) else f"{t:.2f}")(v),
            texttemplate="%{text}",
            hovertemplate="%{y} × %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return layout(fig, title, 120 + 45 * len(labels))
