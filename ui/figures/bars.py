"""One bar per strategy in its colour: any value, the cost (selection + update), the amortized
cost and the forget quality, with a dashed reference line (retraining, θ*)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from ui.figures.common import Series, color, layout


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
    return layout(fig, title, 340)


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
    return layout(fig, title, 360)


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


def restored_bars(series: Sequence[Series], *, n_test: int | None = None) -> go.Figure:
    """How much of the gap between θ* (0 %) and the retrained model (100 %) each strategy closed;
    series: strategy series {"label", "key", "metrics": METRICS + COMPARISONS}. Label flips and
    removals: Warnecke's % restored of test accuracy, 100·(acc − acc θ*)/(acc retrained − acc θ*)
    (`restored_pct`; `n_test`: the test images behind the gap, `restored_n_test`); a backdoor:
    the share of the attack success removed, 100·(ASR θ* − ASR)/(ASR θ* − ASR retrained)
    (`backdoor_removal`). Strategies without the value are left out."""
    if n_test is None:  # the gap is the same for every strategy of a run: read it off a row
        n_test = next(
            (s["metrics"].get("restored_n_test") for s in series if s["metrics"].get("restored_n_test")), None
        )
    pct = [{**s, "value": s["metrics"].get("restored_pct")} for s in series]
    removed = [{**s, "value": _times100(s["metrics"].get("backdoor_removal"))} for s in series]
    if any(s["value"] is not None for s in pct):
        gap = f" of a {n_test:,}-image gap" if n_test else ""
        title, y_title = f"% restored{gap} (θ* = 0 %, retrained = 100 %)", "test accuracy restored (%)"
    elif any(s["value"] is not None for s in removed):
        pct = removed
        title, y_title = "backdoor removed (θ* = 0 %, retrained = 100 %)", "attack success removed (%)"
    else:
        title = (
            "% restored: undefined — the retrained model is not more accurate than θ* (nothing to restore)"
        )
        y_title = "test accuracy restored (%)"
    fig = strategy_bars(
        pct, title=title, fmt=".0f", y_title=y_title, reference=100.0, reference_label="retrained"
    )
    values = [s["value"] for s in pct if s["value"] is not None]
    lo, hi = min([0.0, *values]), max([100.0, *values])
    fig.update_yaxes(range=[lo - 0.08 * (hi - lo), hi + 0.15 * (hi - lo)], ticksuffix=" %", rangemode=None)
    return fig.update_traces(texttemplate="%{y:.0f} %")


def _times100(v: float | None) -> float | None:
    return None if v is None else 100.0 * v
