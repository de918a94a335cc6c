"""Pure figure builders: plain numbers/arrays in, `go.Figure` out. No Streamlit, no torch.

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

PALETTE = ["#4c6ef5", "#f76707", "#37b24d", "#ae3ec9", "#f03e3e", "#1098ad", "#fab005", "#868e96"]
# One colour per strategy / model on every chart of every page (see strategy_color).
STRATEGY_COLORS = {
    "saps": "#4c6ef5",
    "saps (smallest)": "#15aabf",
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
METRIC_LABELS = {
    "test_acc": "test accuracy",
    "retain_acc": "retain accuracy",
    "forget_acc": "forget accuracy (true labels)",
    "forget_acc_poisoned": "forget accuracy (poisoned labels)",
    "asr": "attack success rate",
    "mia_auc": "membership-inference AUC",
    "mia_tpr_at_1pct_fpr": "MIA TPR @ 1 % FPR",
    "mia_tpr_at_0p1pct_fpr": "MIA TPR @ 0.1 % FPR",
    "relearn_asr": "ASR after relearning",
    "dist_to_retrained": "distance to retrained",
}


def strategy_key(label: str) -> str:
    """The strategy / model a chart label names: "saps @ 2.0%" -> "saps", "saps_smallest" ->
    "saps (smallest)", "original θ*" -> "original", "retrained (target)" / "retrain" -> "retrained"."""
    key = str(label).strip().lower().split(" @ ")[0].strip()
    if key.startswith("original"):
        return "original"
    if key.startswith("retrain"):
        return "retrained"
    return key.replace("_smallest", " (smallest)")


def strategy_color(label: str) -> str:
    """The colour of a strategy or model label, the same in every figure (unknown labels get a
    stable colour from their name, never from their position in a figure)."""
    key = strategy_key(label)
    if key in STRATEGY_COLORS:
        return STRATEGY_COLORS[key]
    return _FALLBACK[zlib.crc32(key.encode()) % len(_FALLBACK)]


def _layout(fig: go.Figure, title: str | None = None, height: int | None = None) -> go.Figure:
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      template="plotly_white", height=height)  # fmt: skip
    return fig


# -- home ------------------------------------------------------------------------------------
PIPELINE = ["data", "forget set D_f", "train θ*", "diag H", "mask M", "masked update", "compare with retrain"]


def pipeline(highlight: int | None = None) -> go.Figure:
    """The SAPS pipeline as a row of boxes joined by arrows; `highlight` marks one step."""
    fig = go.Figure()
    n = len(PIPELINE)
    for i, label in enumerate(PIPELINE):
        color = PALETTE[1] if i == highlight else PALETTE[0]
        fig.add_shape(type="rect", x0=i, x1=i + 0.8, y0=0, y1=1, line=dict(color=color, width=2),
                      fillcolor="rgba(76,110,245,0.08)" if i != highlight else "rgba(247,103,7,0.12)")  # fmt: skip
        fig.add_annotation(x=i + 0.4, y=0.5, text=label.replace(" ", "<br>", 1), showarrow=False,
                           font=dict(size=13))  # fmt: skip
        if i < n - 1:
            fig.add_annotation(x=i + 1, y=0.5, ax=i + 0.8, ay=0.5, xref="x", yref="y", axref="x",
                               ayref="y", showarrow=True, arrowhead=3, arrowwidth=2, text="")  # fmt: skip
    fig.add_annotation(x=5.4, y=-0.25, text="θ ← θ* − τ · (M ⊙ G)", showarrow=False, font=dict(size=12))
    fig.add_annotation(x=3.4, y=-0.25, text="rank |H_ii|, keep top k", showarrow=False, font=dict(size=12))
    fig.update_xaxes(visible=False, range=[-0.1, n - 0.1])
    fig.update_yaxes(visible=False, range=[-0.5, 1.1])
    return _layout(fig, height=170)


# -- forget set ------------------------------------------------------------------------------
def image_grid(images: np.ndarray, titles: Sequence[str], *, cols: int = 8, title: str | None = None,
               highlight: Sequence[bool] | None = None) -> go.Figure:  # fmt: skip
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
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles)[:n], horizontal_spacing=0.01,
                        vertical_spacing=(0.2 if two_line else 0.08) / max(1, rows) + 0.02)  # fmt: skip
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        if img.shape[0] == 3:
            rgb = (np.clip(img.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
            trace = go.Image(z=rgb)
        else:
            trace = go.Heatmap(z=img[0][::-1], colorscale="gray_r", showscale=False, zmin=0, zmax=1,
                               hovertemplate="row %{y}, col %{x}: %{z:.2f}<extra></extra>")  # fmt: skip
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
    fig = go.Figure(go.Bar(x=[str(c) for c in classes], y=list(counts), marker_color=PALETTE[0],
                           hovertemplate="class %{x}: %{y} samples<extra></extra>"))  # fmt: skip
    fig.update_xaxes(title="true class", type="category")
    fig.update_yaxes(title="samples")
    return _layout(fig, title, 260)


def sample_picker(labels: Sequence[int], chosen: Sequence[bool], *, cols: int = 40) -> go.Figure:
    """Training samples as a grid of square markers (clickable in Streamlit), chosen ones in colour."""
    n = len(labels)
    idx = np.arange(n)
    chosen = np.asarray(chosen, dtype=bool)
    fig = go.Figure(go.Scatter(
        x=idx % cols, y=-(idx // cols), mode="markers", customdata=np.stack([idx, np.asarray(labels)], 1),
        marker=dict(symbol="square", size=9, color=np.where(chosen, PALETTE[1], "#dee2e6")),
        hovertemplate="sample %{customdata[0]} · class %{customdata[1]}<extra></extra>",
    ))  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, None, 12 * math.ceil(n / cols) + 40)


# -- training --------------------------------------------------------------------------------
def training_curves(histories: dict[str, list[dict]]) -> go.Figure:
    """Loss and training accuracy per epoch, one line per model (role -> History.epochs)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss", "training accuracy"])
    for role, epochs in histories.items():
        if not epochs:
            continue
        x = [e["epoch"] for e in epochs]
        color = strategy_color(role)
        fig.add_trace(go.Scatter(x=x, y=[e["loss"] for e in epochs], name=role, line=dict(color=color),
                                 legendgroup=role), row=1, col=1)  # fmt: skip
        fig.add_trace(go.Scatter(x=x, y=[e["accuracy"] for e in epochs], name=role, showlegend=False,
                                 line=dict(color=color), legendgroup=role), row=1, col=2)  # fmt: skip
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="mean cross-entropy", row=1, col=1)
    fig.update_yaxes(title="accuracy (%)", tickformat=".0%", row=1, col=2)
    return _layout(fig, None, 320)


def metric_bars(
    rows: dict[str, dict[str, float | None]], keys: Sequence[str], *, title: str | None = None
) -> go.Figure:
    """Grouped bars: one group per metric, one bar per model/strategy (name -> METRICS)."""
    fig = go.Figure()
    for name, m in rows.items():
        ks = [k for k in keys if m.get(k) is not None]
        fig.add_trace(go.Bar(name=name, x=[METRIC_LABELS.get(k, k) for k in ks], y=[m[k] for k in ks],
                             marker_color=strategy_color(name),
                             hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>"))  # fmt: skip
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
    return oo // per_row, (oo % per_row) * i + ii, {"x": across + " (hover for indices)", "y": "output channels",
                                                    "per_row": per_row}  # fmt: skip


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
    return dict(tickvals=[p * (k + 1) + (k - 1) / 2 for p in pos], ticktext=[f"{label}{p}" for p in pos],
                showticklabels=True, ticks="", tickfont=dict(size=10))  # fmt: skip


def layer_heatmap(name: str, scores: np.ndarray, mask: np.ndarray | None = None, *,
                  zrange: tuple[float, float] | None = None) -> go.Figure:  # fmt: skip
    """log10 |diag H| of one parameter tensor; selected cells in colour, others in grey.

    Conv weights are drawn as a grid of k×k filter tiles (one per (output, input) channel pair,
    with gaps); dense weights as output unit × input unit; a bias as one row."""
    z, idx, info = layer_grid(log_scores(scores, floor=zrange[0] if zrange else None))
    zmin, zmax = zrange if zrange else (float(np.nanmin(z)), float(np.nanmax(z)))
    if info["conv"]:
        hover = ("out %{customdata[0]}, in %{customdata[1]}, kernel (%{customdata[2]}, %{customdata[3]})"
                 "<br>log₁₀|H_ii| = %{z:.2f}")  # fmt: skip
    elif np.ndim(scores) == 1:
        hover = "unit %{customdata[1]}<br>log₁₀|H_ii| = %{z:.2f}"
    else:
        hover = "out %{customdata[0]}, in %{customdata[1]}<br>log₁₀|H_ii| = %{z:.2f}"
    bar = dict(title=dict(text="log₁₀|H_ii|", side="right"), thickness=14)
    fig = go.Figure()
    if mask is None:
        fig.add_trace(go.Heatmap(z=z, customdata=idx, colorscale="Viridis", zmin=zmin, zmax=zmax, colorbar=bar,
                                 hoverongaps=False, hovertemplate=hover + "<extra></extra>"))  # fmt: skip
    else:
        m = layer_grid(np.asarray(mask, dtype=float))[0] > 0.5
        fig.add_trace(go.Heatmap(z=np.where(m, np.nan, z), customdata=idx, colorscale=[[0, "#dee2e6"], [1, "#868e96"]],
                                 zmin=zmin, zmax=zmax, showscale=False, hoverongaps=False, name="not selected",
                                 hovertemplate=hover + "<extra>not selected</extra>"))  # fmt: skip
        fig.add_trace(go.Heatmap(z=np.where(m, z, np.nan), customdata=idx, colorscale="Viridis", zmin=zmin,
                                 zmax=zmax, colorbar=bar, hoverongaps=False, name="selected",
                                 hovertemplate=hover + "<extra>selected</extra>"))  # fmt: skip
    rows, cols = z.shape
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", showgrid=False, zeroline=False,
                     title=info["y"], showticklabels=False)  # fmt: skip
    fig.update_xaxes(
        constrain="domain", showgrid=False, zeroline=False, title=info["x"], showticklabels=False
    )
    if info["conv"]:
        kh, kw = info["kh"], info["kw"]
        if "per_row" in info:
            per = info["per_row"]
            o = info["shape"][0]
            fig.update_yaxes(tickvals=[r * (kh + 1) + (kh - 1) / 2 for r in range(info["nr"])],
                             ticktext=[f"{r * per}–{min(o, (r + 1) * per) - 1}" for r in range(info["nr"])],
                             showticklabels=True, ticks="", tickfont=dict(size=10))  # fmt: skip
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


def score_histogram(scores: np.ndarray, threshold: float | None, *, largest: bool = True,
                    n_selected: int | None = None, bins: int = 60) -> go.Figure:  # fmt: skip
    """Histogram of log10 |diag H| over all parameters with the selection threshold as a line."""
    a = np.abs(np.asarray(scores, dtype=float)).ravel()
    zero = int((a == 0).sum())
    logs = np.log10(a[a > 0]) if (a > 0).any() else np.zeros(0)
    fig = go.Figure(go.Histogram(x=logs, nbinsx=bins, marker_color=PALETTE[0], name="parameters",
                                 hovertemplate="log₁₀|H_ii| %{x}: %{y}<extra></extra>"))  # fmt: skip
    if threshold is not None and threshold > 0:
        t = math.log10(threshold)
        side = "≥" if largest else "≤"
        label = f"threshold {side} {threshold:.2e}" + (
            f" · {n_selected:,} selected" if n_selected is not None else ""
        )
        fig.add_vline(x=t, line=dict(color=PALETTE[4], width=3, dash="dash"), annotation_text=label,
                      annotation_position="top left" if largest else "top right",
                      annotation_bgcolor="rgba(255,255,255,0.85)", annotation_font=dict(size=11))  # fmt: skip
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
    fig = go.Figure(go.Bar(x=names, y=share, text=text, textposition="outside", marker_color=PALETTE[0],
                           name="selected", hovertemplate="%{x}: %{y:.1%}<extra></extra>"))  # fmt: skip
    dead = [(r.get("zero_score_selected") or 0) / max(1, r["numel"]) for r in rows]
    if any(dead):
        fig.add_trace(go.Bar(x=names, y=dead, marker_color=PALETTE[4], name="selected with H_ii = 0"))
    fig.update_yaxes(title="share selected (%)", tickformat=".0%", range=[0, max([*share, 0.01]) * 1.25])
    fig.update_xaxes(title="parameter tensor")
    fig.update_layout(barmode="overlay")
    return _layout(fig, None, 300)


def matrix(values: np.ndarray, labels: Sequence[str], *, title: str, zmin: float = 0.0, zmax: float = 1.0,
           colorscale: str = "Blues") -> go.Figure:  # fmt: skip
    """A labelled square matrix with its values written in the cells (Jaccard, rank correlation)."""
    v = np.asarray(values, dtype=float)
    fig = go.Figure(go.Heatmap(z=v, x=list(labels), y=list(labels), zmin=zmin, zmax=zmax, colorscale=colorscale,
                               text=np.vectorize(lambda t: "" if np.isnan(t) else f"{t:.2f}")(v),
                               texttemplate="%{text}", hovertemplate="%{y} × %{x}: %{z:.3f}<extra></extra>"))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, 120 + 45 * len(labels))


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
    curves: dict[str, dict[str, list[float]]],
    keys: Sequence[str] = ("test_acc", "asr"),
    *,
    reference: dict[str, float | None] | None = None,
) -> go.Figure:
    """Metric vs unlearning step, one panel per metric (2 per row), one line per strategy in its
    colour; curve = {"step": [...], key: [...]}; `reference` (the retrained model's METRICS) as
    a dashed line per panel."""
    keys = [k for k in keys if any(any(x is not None for x in (c.get(k) or [])) for c in curves.values())]
    keys = keys or ["test_acc"]
    ncols = 1 if len(keys) == 1 else 2
    nrows = math.ceil(len(keys) / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[METRIC_LABELS.get(k, k) for k in keys],
                        horizontal_spacing=0.16, vertical_spacing=0.18 if nrows > 1 else 0.1)  # fmt: skip
    for name, c in curves.items():
        color = strategy_color(name)
        first = True
        for j, k in enumerate(keys):
            ys = c.get(k) or []
            if not any(y is not None for y in ys):
                continue
            steps = c.get("step") or list(range(len(ys)))
            fig.add_trace(go.Scatter(x=steps[: len(ys)], y=ys, name=name, legendgroup=name, showlegend=first,
                                     mode="lines+markers", marker=dict(size=5), line=dict(color=color, width=2),
                                     connectgaps=True,
                                     hovertemplate=f"{name}<br>step %{{x}}: %{{y:.3f}}<extra>{METRIC_LABELS.get(k, k)}</extra>"),
                          row=j // ncols + 1, col=j % ncols + 1)  # fmt: skip
            first = False
    for j, k in enumerate(keys):
        r, c = j // ncols + 1, j % ncols + 1
        ref = (reference or {}).get(k)
        if ref is not None:
            fig.add_hline(y=ref, row=r, col=c, line=dict(color=strategy_color("retrained"), width=1.5, dash="dash"),
                          annotation_text=f"retrained {ref:.1%}",
                          annotation_position="top right" if ref < 0.5 else "bottom right",
                          annotation_font=dict(size=10))  # fmt: skip
        # utility metrics move by a few points: let their axis zoom in; forgetting spans 0–100 %
        zoom = k in ("test_acc", "retain_acc")
        fig.update_yaxes(title="rate" if k in ("asr", "relearn_asr") else "accuracy", tickformat=".1%" if zoom else ".0%",
                         range=None if zoom else [-0.02, 1.05], row=r, col=c)  # fmt: skip
        fig.update_xaxes(title="unlearning step", row=r, col=c)
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.04 + 0.04 * (nrows > 1), x=0))
    fig = _layout(fig, None, 300 * nrows + 60)
    fig.update_layout(margin=dict(l=10, r=10, t=70, b=10))
    return fig


# Metrics that are shares of samples (drawn as %), and what the others are measured in.
PERCENT_KEYS = {"test_acc", "retain_acc", "forget_acc", "forget_acc_poisoned", "asr", "relearn_asr",
                "mia_tpr_at_1pct_fpr", "mia_tpr_at_0p1pct_fpr"}  # fmt: skip
AXIS_TITLES = {"mia_auc": "MIA AUC (0.5 = chance)", "dist_to_retrained": "relative distance ‖Δθ‖/‖θ_ref‖"}
FINE_KEYS = {"test_acc", "retain_acc"}  # utility moves by fractions of a percent: one decimal
REFERENCE_LABELS = {"relearn_asr": "retrained model, same relearning attack"}


def axis_title(key: str) -> str:
    """Axis title of a metric with its unit: "attack success rate (%)", "MIA AUC (0.5 = chance)"."""
    if key in AXIS_TITLES:
        return AXIS_TITLES[key]
    return METRIC_LABELS.get(key, key) + (" (%)" if key in PERCENT_KEYS else "")


def tick_format(key: str) -> str | None:
    return (".1%" if key in FINE_KEYS else ".0%") if key in PERCENT_KEYS else None


def metric_vs_budget(
    points: Sequence[dict[str, Any]], key: str, *, reference: float | None = None
) -> go.Figure:
    """`key` vs fraction (log x), one line per strategy; points: {"strategy", "fraction", "metrics"}.
    `reference` (the retrained model's value) is a dashed line with its own legend entry."""
    fig = go.Figure()
    by: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        v = (p.get("metrics") or {}).get(key)
        if v is None or p.get("fraction") is None:
            continue
        by.setdefault(p["strategy"], []).append((p["fraction"], v))
    pct = key in PERCENT_KEYS
    for name, xy in sorted(by.items()):
        xy.sort()
        fig.add_trace(go.Scatter(x=[x for x, _ in xy], y=[y for _, y in xy], name=name, mode="lines+markers",
                                 line=dict(color=strategy_color(name)),
                                 hovertemplate=f"{name} @ %{{x:.1%}}: %{{y:{'.1%' if pct else '.3f'}}}<extra></extra>"))  # fmt: skip
    if reference is not None:
        label = REFERENCE_LABELS.get(key, "retrained model (target)")
        value = f"{reference:.1%}" if pct else f"{reference:.3f}"
        xs = [x for xy in by.values() for x, _ in xy] or [0.001, 1.0]
        fig.add_trace(go.Scatter(x=[min(xs) / 1.6, max(xs) * 1.6], y=[reference, reference], mode="lines",
                                 name=f"{label}: {value}", line=dict(color=strategy_color("retrained"), width=2,
                                 dash="dash"), hovertemplate=f"{label}: {value}<extra></extra>"))  # fmt: skip
    fig.update_xaxes(title="budget (% of parameters updated, log scale)", type="log", tickformat=".1%")
    fig.update_yaxes(title=axis_title(key), tickformat=tick_format(key))
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.28, x=0))
    fig = _layout(fig, METRIC_LABELS.get(key, key), 380)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
    return fig


def tradeoff(points: Sequence[dict[str, Any]], *, x_key: str = "asr", y_key: str = "test_acc",
             original: dict | None = None, retrained: dict | None = None) -> go.Figure:  # fmt: skip
    """Utility (y) vs forgetting (x) per strategy; the retrained model is the target point."""
    fig = go.Figure()
    for p in points:
        m = p["metrics"]
        if m.get(x_key) is None or m.get(y_key) is None:
            continue
        fig.add_trace(go.Scatter(x=[m[x_key]], y=[m[y_key]], name=p["label"], mode="markers",
                                 marker=dict(size=13, color=strategy_color(p["label"]))))  # fmt: skip
    for name, m, symbol in (("original θ*", original, "x"), ("retrained (target)", retrained, "star")):
        color = strategy_color(name)
        if m and m.get(x_key) is not None and m.get(y_key) is not None:
            fig.add_trace(go.Scatter(x=[m[x_key]], y=[m[y_key]], name=name, mode="markers",
                                     marker=dict(size=18, symbol=symbol, color=color)))  # fmt: skip
    fig.update_xaxes(title=axis_title(x_key) + " — lower = more forgotten", tickformat=tick_format(x_key))
    fig.update_yaxes(title=axis_title(y_key), tickformat=tick_format(y_key))
    return _layout(fig, "utility vs forgetting", 380)


def strategy_bars(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    fmt: str = ".3f",
    y_title: str | None = None,
    reference: float | None = None,
    reference_label: str = "retrained",
) -> go.Figure:
    """One bar per strategy in its own colour; `reference` (e.g. retraining) as a labelled dashed line."""
    ok = [(lbl, v) for lbl, v in zip(labels, values) if v is not None]
    fig = go.Figure(go.Bar(x=[lbl for lbl, _ in ok], y=[v for _, v in ok], name="strategies", showlegend=False,
                           marker_color=[strategy_color(lbl) for lbl, _ in ok], cliponaxis=False,
                           text=[format(v, fmt) for _, v in ok], textposition="outside",
                           hovertemplate="%{x}: %{y:" + fmt + "}<extra></extra>"))  # fmt: skip
    top = max([v for _, v in ok] + [reference or 0.0, 1e-9])
    if reference is not None:
        fig.add_hline(y=reference, line=dict(color=strategy_color(reference_label), width=2, dash="dash"),
                      annotation_text=f"{reference_label}: {format(reference, fmt)}", annotation_position="top left",
                      annotation_font=dict(size=12), annotation_bgcolor="rgba(255,255,255,0.85)")  # fmt: skip
    fig.update_yaxes(title=y_title, range=[0, top * 1.18], rangemode="tozero")
    fig.update_xaxes(title="strategy @ budget")
    return _layout(fig, title, 340)
