"""Pure figure builders: plain numbers/arrays in, `go.Figure` out. No Streamlit, no tensors;
metric labels and units come from core.metrics.METRICS_INFO.

Pages turn tensors into numpy arrays and call these; tests call them directly.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

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


def _layout(fig: go.Figure, title: str | None = None, height: int | None = None) -> go.Figure:
    fig.update_layout(
        title=title,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        template="plotly_white",
        height=height,
    )
    return fig


# -- home ------------------------------------------------------------------------------------
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
    return _layout(fig, height=170)


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
        return _layout(fig, title, 120)
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
    fig = _layout(fig, title, (118 if two_line else 95) * rows + 40)
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
    return _layout(fig, title, 260)


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
    return _layout(fig, None, 12 * math.ceil(n / cols) + 40)


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
    return _layout(fig, None, 320)


def metric_bars(series: Sequence[Series], keys: Sequence[str], *, title: str | None = None) -> go.Figure:
    """Grouped bars: one group per metric, one bar per model/strategy; series: {"label", "key",
    "metrics": METRICS}. Metrics that are None are left out (no bar, not 0)."""
    fig = go.Figure()
    for s in series:
        m = s["metrics"]
        ks = [k for k in keys if m.get(k) is not None]
        fig.add_trace(
            go.Bar(
                name=s["label"],
                x=[metric_label(k) for k in ks],
                y=[m[k] for k in ks],
                marker_color=color(s["key"]),
                hovertemplate="%{x}: %{y:.3f}<extra>" + s["label"] + "</extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.05], title="value (0–1)")
    fig.update_xaxes(title="metric")
    return _layout(fig, title, 340)


# -- curvature -------------------------------------------------------------------------------
def tile(values: np.ndarray) -> np.ndarray:
    """A parameter tensor as a 2-D picture: conv O×I×kh×kw -> (O·kh)×(I·kw) tiles of filters,
    dense O×I as is, a bias as one row."""
    v = np.asarray(values)
    if v.ndim == 4:
        o, i, kh, kw = v.shape
        return v.transpose(0, 2, 1, 3).reshape(o * kh, i * kw)
    if v.ndim == 1:
        return v[None, :]
    if v.ndim == 2:
        return v
    return v.reshape(v.shape[0], -1)


def log_scores(values: np.ndarray, floor: float | None = None) -> np.ndarray:
    """log10 |v|, with exact zeros mapped to `floor` (default: 1 below the smallest non-zero)."""
    a = np.abs(np.asarray(values, dtype=float))
    nz = a[a > 0]
    if floor is None:
        floor = (np.log10(nz.min()) - 1) if nz.size else -12.0
    out = np.full(a.shape, floor, dtype=float)
    out[a > 0] = np.log10(a[a > 0])
    return out


def filter_layout(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Where each k×k filter of a conv weight O×I×kh×kw goes: one tile per (output, input)
    channel pair, one empty cell between tiles. Returns (rows, cols) of tile positions, each
    O×I, and axis info. With several input channels the longer channel axis runs across; with
    one to three (the first layer) the output channels wrap, 8 per row of tiles."""
    o, i = shape[0], shape[1]
    oo, ii = np.meshgrid(np.arange(o), np.arange(i), indexing="ij")
    if i >= 4:
        if o >= i:
            return ii, oo, {"x": "output channel", "y": "input channel", "xs": "o", "ys": "i"}
        return oo, ii, {"x": "input channel", "y": "output channel", "xs": "i", "ys": "o"}
    per_row = min(o, 8)
    across = f"{per_row} output channels per row" + (f", {i} input channels each" if i > 1 else "")
    return (
        oo // per_row,
        (oo % per_row) * i + ii,
        {"x": across + " (hover for indices)", "y": "output channels", "per_row": per_row},
    )


def layer_grid(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A parameter tensor as a 2-D picture with NaN gaps between conv filters, the
    (out, in, kernel row, kernel col) index of every cell (NaN in gaps), and axis info."""
    v = np.asarray(values, dtype=float)
    if v.ndim == 4:
        o, i, kh, kw = v.shape
        tr, tc, info = filter_layout(v.shape)
        nr, nc = int(tr.max()) + 1, int(tc.max()) + 1
        z = np.full((nr * (kh + 1) - 1, nc * (kw + 1) - 1), np.nan)
        idx = np.full((*z.shape, 4), np.nan)
        kr, kc = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
        for a in range(o):
            for c in range(i):
                r0, c0 = tr[a, c] * (kh + 1), tc[a, c] * (kw + 1)
                z[r0 : r0 + kh, c0 : c0 + kw] = v[a, c]
                idx[r0 : r0 + kh, c0 : c0 + kw] = np.stack([kr * 0 + a, kr * 0 + c, kr, kc], -1)
        info.update(kh=kh, kw=kw, nr=nr, nc=nc, conv=True, shape=v.shape)
        return z, idx, info
    z = tile(v)
    rr, cc = np.meshgrid(np.arange(z.shape[0]), np.arange(z.shape[1]), indexing="ij")
    idx = np.stack([rr, cc, rr * 0, cc * 0], -1).astype(float)
    if v.ndim == 1:
        return z, idx, {"x": "unit", "y": "", "conv": False}
    return z, idx, {"x": "input unit", "y": "output unit", "conv": False}


def _tile_ticks(n: int, k: int, label: str) -> dict[str, Any]:
    """Ticks at the centres of n tiles of k cells (+1 gap), at most ~16 of them."""
    step = max(1, math.ceil(n / 16))
    pos = list(range(0, n, step))
    return dict(
        tickvals=[p * (k + 1) + (k - 1) / 2 for p in pos],
        ticktext=[f"{label}{p}" for p in pos],
        showticklabels=True,
        ticks="",
        tickfont=dict(size=10),
    )


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
    bar = dict(title=dict(text="log₁₀|H_ii|", side="right"), thickness=14)
    fig = go.Figure()
    if mask is None:
        fig.add_trace(
            go.Heatmap(
                z=z,
                customdata=idx,
                colorscale="Viridis",
                zmin=zmin,
                zmax=zmax,
                colorbar=bar,
                hoverongaps=False,
                hovertemplate=hover + "<extra></extra>",
            )
        )
    else:
        m = layer_grid(np.asarray(mask, dtype=float))[0] > 0.5
        fig.add_trace(
            go.Heatmap(
                z=np.where(m, np.nan, z),
                customdata=idx,
                colorscale=[[0, "#dee2e6"], [1, "#868e96"]],
                zmin=zmin,
                zmax=zmax,
                showscale=False,
                hoverongaps=False,
                name="not selected",
                hovertemplate=hover + "<extra>not selected</extra>",
            )
        )
        fig.add_trace(
            go.Heatmap(
                z=np.where(m, z, np.nan),
                customdata=idx,
                colorscale="Viridis",
                zmin=zmin,
                zmax=zmax,
                colorbar=bar,
                hoverongaps=False,
                name="selected",
                hovertemplate=hover + "<extra>selected</extra>",
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
            fig.update_xaxes(**_tile_ticks(info["nc"], kw, ""))
            fig.update_yaxes(**_tile_ticks(info["nr"], kh, ""))
        sub = f"{info['shape'][0]} × {info['shape'][1]} filters of {kh}×{kw}"
    else:
        fig.update_xaxes(showticklabels=True, tickfont=dict(size=10))
        fig.update_yaxes(showticklabels=np.ndim(scores) > 1, tickfont=dict(size=10))
        sub = "×".join(map(str, np.shape(scores)))
    height = int(min(600, max(170, 110 + 760 * rows / max(cols, 1))))
    fig = _layout(fig, f"{name} · {sub}", height)
    fig.update_layout(margin=dict(l=60, r=10, t=40, b=50), plot_bgcolor="white")
    return fig


def score_histogram(
    scores: np.ndarray,
    threshold: float | None,
    *,
    largest: bool = True,
    n_selected: int | None = None,
    bins: int = 60,
) -> go.Figure:
    """Histogram of log10 |diag H| over all parameters with the selection threshold as a line."""
    a = np.abs(np.asarray(scores, dtype=float)).ravel()
    zero = int((a == 0).sum())
    logs = np.log10(a[a > 0]) if (a > 0).any() else np.zeros(0)
    fig = go.Figure(
        go.Histogram(
            x=logs,
            nbinsx=bins,
            marker_color=PALETTE[0],
            name="parameters",
            hovertemplate="log₁₀|H_ii| %{x}: %{y}<extra></extra>",
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
    if logs.size:
        lo, hi = math.floor(logs.min()), math.ceil(logs.max())
        step = max(1, math.ceil((hi - lo) / 8))
        ticks = list(range(lo, hi + 1, step))
        fig.update_xaxes(tickvals=ticks, ticktext=[f"10<sup>{k}</sup>" for k in ticks])
    fig.update_xaxes(title=f"|diag H| (log scale; {zero:,} exact zeros not shown)")
    # counts on a log axis: one tick per power of ten (1, 10, 100, …), no minor labels
    fig.update_yaxes(
        title="parameters (log scale)", type="log", dtick=1, tickformat="d", minor=dict(showgrid=False)
    )
    fig.update_layout(bargap=0.05, showlegend=False)
    return _layout(fig, None, 300)


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
            hovertemplate="%{x}: %{y:.1%}<extra></extra>",
        )
    )
    dead = [(r.get("zero_score_selected") or 0) / max(1, r["numel"]) for r in rows]
    if any(dead):
        fig.add_trace(go.Bar(x=names, y=dead, marker_color=PALETTE[4], name="selected with H_ii = 0"))
    fig.update_yaxes(title="share selected (%)", tickformat=".0%", range=[0, max([*share, 0.01]) * 1.25])
    fig.update_xaxes(title="parameter tensor")
    fig.update_layout(barmode="overlay")
    return _layout(fig, None, 300)


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
    return _layout(fig, title, 120 + 45 * len(labels))


# -- metric labels (from core.metrics.METRICS_INFO) --------------------------------------------
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


# -- unlearning / comparison -----------------------------------------------------------------
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
                    hovertemplate=f"{name}<br>step %{{x}}: %{{y:.3f}}<extra>{metric_label(k)}</extra>",
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
        # utility metrics move by a few points: let their axis zoom in; forgetting spans 0–100 %
        zoom = k in FINE_KEYS
        fig.update_yaxes(
            title="rate" if k == "asr" else "accuracy",
            tickformat=".1%" if zoom else ".0%",
            range=None if zoom else [-0.02, 1.05],
            row=r,
            col=c,
        )
        fig.update_xaxes(title="unlearning step", row=r, col=c)
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.04 + 0.04 * (nrows > 1), x=0))
    fig = _layout(fig, None, 300 * nrows + 60)
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
    fig.update_xaxes(title="budget (% of parameters updated, log scale)", type="log", tickformat=".1%")
    fig.update_yaxes(title=axis_title(key), tickformat=tick_format(key))
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.28, x=0))
    fig = _layout(fig, metric_label(key), 380)
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
        fig.add_trace(go.Scatter(x=[m[x_key]], y=[m[y_key]], name=p["label"], mode="markers", marker=marker))
    fig.update_xaxes(title=axis_title(x_key) + " — lower = more forgotten", tickformat=tick_format(x_key))
    fig.update_yaxes(title=axis_title(y_key), tickformat=tick_format(y_key))
    return _layout(fig, "utility vs forgetting", 380)


def _reference_line(fig: go.Figure, value: float, label: str, key: str, fmt: str) -> None:
    fig.add_hline(
        y=value,
        line=dict(color=color(key), width=2, dash="dash"),
        annotation_text=f"{label}: {format(value, fmt)}",
        annotation_position="top left",
        annotation_font=dict(size=12),
        annotation_bgcolor="rgba(255,255,255,0.85)",
    )


def strategy_bars(
    series: Sequence[Series],
    *,
    title: str,
    fmt: str = ".3f",
    y_title: str | None = None,
    reference: float | None = None,
    reference_label: str = "retrained",
    reference_key: str = "retrained",
) -> go.Figure:
    """One bar per strategy in its own colour (series: {"label", "key", "value"}, None values
    left out); `reference` (e.g. retraining) as a labelled dashed line."""
    ok = [s for s in series if s.get("value") is not None]
    fig = go.Figure(
        go.Bar(
            x=[s["label"] for s in ok],
            y=[s["value"] for s in ok],
            name="strategies",
            showlegend=False,
            marker_color=[color(s["key"]) for s in ok],
            cliponaxis=False,
            text=[format(s["value"], fmt) for s in ok],
            textposition="outside",
            hovertemplate="%{x}: %{y:" + fmt + "}<extra></extra>",
        )
    )
    top = max([s["value"] for s in ok] + [reference or 0.0, 1e-9])
    if reference is not None:
        _reference_line(fig, reference, reference_label, reference_key, fmt)
    fig.update_yaxes(title=y_title, range=[0, top * 1.18], rangemode="tozero")
    fig.update_xaxes(title="strategy @ budget")
    return _layout(fig, title, 340)


def cost_bars(series: Sequence[Series], *, retrain_seconds: float | None, title: str) -> go.Figure:
    """Full cost per strategy as stacked bars in the strategy's colour: selection (hatched: the
    curvature, liveness, gradient passes its mask needs) below the update (solid); series:
    {"label", "key", "select", "update"} in seconds. Retraining is a dashed reference line."""
    x = [s["label"] for s in series]
    colors = [color(s["key"]) for s in series]
    fig = go.Figure()
    for part, pattern in (("select", "/"), ("update", "")):
        values = [s.get(part) or 0.0 for s in series]
        fig.add_trace(
            go.Bar(
                x=x,
                y=values,
                name="selection (hatched)" if part == "select" else "update (solid)",
                marker=dict(
                    color=colors,
                    pattern=dict(shape=pattern, fgcolor="white", solidity=0.45),
                    opacity=0.65 if part == "select" else 1.0,
                ),
                hovertemplate="%{x}: %{y:.2f} s<extra>"
                + ("selection" if part == "select" else "update")
                + "</extra>",
            )
        )
    totals = [(s.get("select") or 0.0) + (s.get("update") or 0.0) for s in series]
    fig.add_trace(
        go.Scatter(
            x=x,
            y=totals,
            mode="text",
            text=[f"{v:.2f} s" for v in totals],
            textposition="top center",
            showlegend=False,
            hoverinfo="skip",
        )
    )
    if retrain_seconds:
        _reference_line(fig, retrain_seconds, "retraining", "retrained", ".2f")
    top = max([*totals, retrain_seconds or 0.0, 1e-9])
    legend = dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1, traceorder="normal")
    fig.update_layout(barmode="stack", legend=legend)
    fig.update_yaxes(title="wall-clock seconds", range=[0, top * 1.2])
    fig.update_xaxes(title="strategy @ budget")
    return _layout(fig, title, 360)


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
    fig = _layout(fig, "relearning attack", 400)
    return fig


def amortized_bars(series: Sequence[Series], *, retrain_seconds: float | None) -> go.Figure:
    """Amortized cost per strategy (series: {"label", "key", "amortized"}): the shared curvature
    and liveness passes left out, as when one curvature serves several budgets."""
    return strategy_bars(
        [{**s, "value": s.get("amortized")} for s in series],
        title="amortized cost (shared curvature and liveness not counted)",
        fmt=".2f",
        y_title="wall-clock seconds",
        reference=retrain_seconds,
        reference_label="retraining",
    )


def forget_quality_bars(series: Sequence[Series], *, original: float, models: int) -> go.Figure:
    """Forget quality per strategy (series: {"label", "key", "value"}) with θ*'s as a dashed line,
    on its whole 0–1 scale (1 = indistinguishable from retraining)."""
    fig = strategy_bars(
        series,
        title=f"forget quality, M = {models} models per side",
        y_title="forget quality (0–1, retrained = best)",
        reference=original,
        reference_label="original θ*",
        reference_key="original",
    )
    return fig.update_yaxes(range=[0, 1.1])


def to_html(figs: dict[str, go.Figure], title: str = "SAPS comparison") -> str:
    """Every figure in one self-contained HTML page (plotly.js embedded once)."""
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs.values())]
    head = f"<html><head><meta charset='utf-8'><title>{title}</title></head><body>"
    return head + "".join(parts) + "</body></html>"
