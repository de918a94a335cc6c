"""Parameter tensors as 2-D pictures: conv filters as tiles with gaps, dense weights as
output × input, biases as one row; log-scaled scores."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


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


def tile_ticks(n: int, k: int, label: str) -> dict[str, Any]:
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
