"""Masks from scores: exact budgets on a total order, liveness, overlap and per-tensor reports.

Scores and masks are {parameter name: tensor of the parameter's shape}; masks are CPU BoolTensors.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from core.errors import ConfigError, NumericalError
from core.functional import trainable

Scores = dict[str, Tensor]
Masks = dict[str, Tensor]


def select(
    scores: Scores,
    fraction: float,
    *,
    largest: bool = True,
    per_layer: bool = False,
    include_zero: bool = True,
) -> Masks:
    """Masks choosing exactly round(fraction × numel) entries by score (global or per tensor).

    Scores are ranked as given (take abs first if wanted). With include_zero=False and
    largest=False, exact zeros are ineligible and fewer may be chosen.
    """
    fraction = check_fraction(fraction)
    return rank(scores, largest, per_layer, include_zero, fraction=fraction)


def check_fraction(fraction: Any, field: str = "fraction") -> float:
    """A finite number in (0, 1], else ConfigError naming `field`."""
    ok = isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
    if not ok or not math.isfinite(fraction) or not 0 < fraction <= 1:
        raise ConfigError(field, f"must be a number in (0, 1], got {fraction!r}")
    return float(fraction)


def rank(
    scores: Scores,
    largest: bool,
    per_layer: bool,
    include_zero: bool,
    *,
    eligible: Masks | None = None,
    fraction: float | None = None,
    quantile: float | None = None,
    threshold: float | None = None,
) -> Masks:
    names = list(scores)
    for name in names:
        if torch.isnan(scores[name]).any():
            raise NumericalError(f"selection: NaN scores in {name!r}")
    masks: Masks = {}
    for group in [[n] for n in names] if per_layer else [names]:
        flat = torch.cat([scores[n].detach().reshape(-1).double().cpu() for n in group])
        ok = torch.ones_like(flat, dtype=torch.bool)
        if eligible is not None:
            ok = torch.cat([eligible[n].reshape(-1).bool().cpu() for n in group])
        if not include_zero and not largest:  # dead parameters: an update there changes nothing
            ok &= flat != 0
        chosen = _choose(flat, ok, largest, fraction, quantile, threshold)
        for name, part in zip(group, chosen.split([scores[n].numel() for n in group])):
            masks[name] = part.reshape(scores[name].shape)
    return masks


def _choose(flat: Tensor, eligible: Tensor, largest: bool, fraction, quantile, threshold) -> Tensor:
    """Boolean vector over `flat`: the budget's share of the eligible entries."""
    candidates = eligible.nonzero().squeeze(1)
    # total order (score, index): stable sort of candidates, which are in index order
    order = candidates[torch.sort(flat[candidates], stable=True).indices]
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    if fraction is not None:
        k = min(round(fraction * flat.numel()), len(order))
        chosen[order[len(order) - k :] if largest else order[:k]] = True
        return chosen
    if quantile is not None:
        if len(order) == 0:
            return chosen
        ranked = flat[order]  # linear interpolation between order statistics, as torch.quantile
        position = quantile * (len(order) - 1)
        low, high = ranked[math.floor(position)], ranked[math.ceil(position)]
        threshold = (low + (high - low) * (position - math.floor(position))).item()
    values = flat[candidates]
    chosen[candidates] = values >= threshold if largest else values <= threshold
    return chosen


# ---------------------------------------------------------------------------------------------
# liveness


def live_mask(model: nn.Module, inputs: Tensor, targets: Tensor, *, scores: Scores | None = None) -> Masks:
    """True where a parameter is live: diag H ≠ 0 when `scores` (diag H on the FULL training
    data, the same inputs) are given, otherwise empirical Fisher (1/N) Σ_n (∇θ ℓ(x_n, y_n))² ≠ 0,
    i.e. a non-zero gradient on some training sample. CPU BoolTensors of the parameters' shapes."""
    if scores is None:
        from core.curvature import hessian_diagonal

        scores = hessian_diagonal(model, inputs, targets, "empirical_fisher")
    check_keys(scores, model, "scores")
    return {n: scores[n].detach().cpu() != 0 for n, _ in trainable(model)}


def dead_selected(mask: Masks, live: Masks) -> int:
    """Number of selected parameters that are not live: Σ (M ∧ ¬live)."""
    return int(sum(int((m.bool().cpu() & ~live[n].bool().cpu()).sum()) for n, m in mask.items()))


# ---------------------------------------------------------------------------------------------
# reporting


def jaccard(mask_a: Masks, mask_b: Masks) -> float:
    """|A ∩ B| / |A ∪ B| over all parameters (1.0 when both are empty)."""
    if set(mask_a) != set(mask_b):
        raise ConfigError("mask", "masks cover different parameters")
    inter = union = 0
    for name, a in mask_a.items():
        b = mask_b[name]
        if a.shape != b.shape:
            raise ConfigError("mask", f"{name!r}: shapes {tuple(a.shape)} and {tuple(b.shape)}")
        a, b = a.bool().cpu(), b.bool().cpu()
        inter += int((a & b).sum())
        union += int((a | b).sum())
    return 1.0 if union == 0 else inter / union


def overlap_matrix(masks: dict[str, Masks]) -> np.ndarray:
    """Pairwise Jaccard of named masks: an L×L array in the order of `masks`, ones on the diagonal."""
    names = list(masks)
    out = np.eye(len(names))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            out[i, j] = out[j, i] = jaccard(masks[a], masks[names[j]])
    return out


def summary(mask: Masks, scores: Scores | None = None) -> list[dict]:
    """Per tensor: name, numel, selected, share (selected / numel), zero_score (count of exact
    zero scores) and zero_score_selected (selected with score exactly 0); the last two are
    None without scores."""
    rows = []
    for name, m in mask.items():
        m = m.bool().cpu()
        row = {"name": name, "numel": m.numel(), "selected": int(m.sum())}
        row["share"] = row["selected"] / max(1, row["numel"])
        row["zero_score"] = row["zero_score_selected"] = None
        if scores is not None:
            zero = scores[name].detach().cpu() == 0
            row["zero_score"] = int(zero.sum())
            row["zero_score_selected"] = int((zero & m).sum())
        rows.append(row)
    return rows


def check_keys(scores: Scores, model: nn.Module, field: str) -> None:
    for name, p in trainable(model):
        if name not in scores or tuple(scores[name].shape) != tuple(p.shape):
            raise ConfigError(field, f"missing or misshapen entry for parameter {name!r}")
