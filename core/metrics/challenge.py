"""Forget quality of the NeurIPS 2023 machine unlearning challenge (Triantafillou et al. 2024).

For every forget example, M unlearned and M retrained models (independent seeds) each give one
logit-scaled confidence φ = log p_y − log(1 − p_y). An attacker who sees φ from one model must
tell which of the two distributions it came from; a decision rule with false-positive rate α
and false-negative rate β bounds the (ε, δ) of unlearning from below by

    ε ≥ max( log((1 − δ − α) / β), log((1 − δ − β) / α) ),      δ = 1e-5.

Per example, ε is the largest such bound over a family of threshold rules (capped at 50), and
the example earns points 2^−k for ε in bucket k = ⌊ε / 0.5⌋ while k < 2·⌈ln(M − 1)⌉ (with M
samples per side ε cannot be estimated beyond about ln(M − 1)), 0 beyond. Forget quality is the
mean of the points over the forget set: 1 = indistinguishable from retraining, 0 = separable.
"""

from __future__ import annotations

import math

import numpy as np

DELTA = 1e-5
EPSILON_CAP = 50.0
BUCKET_WIDTH = 0.5
THRESHOLDS_PER_UNIT = 100  # threshold grid resolution, per unit of φ
BUFFER = 2.0  # how far interval rules reach beyond the data, in units of φ


def _counts_at_or_above(sorted_x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return len(sorted_x) - np.searchsorted(sorted_x, t, side="left")


def _counts_inside(sorted_x: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    inside = np.searchsorted(sorted_x, right, side="right") - np.searchsorted(sorted_x, left, side="left")
    return np.maximum(inside, 0)  # left > right: an empty interval


def single_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(α, β) of the rules "φ ≥ t -> pos" for t on a grid of 100 points per unit spanning the
    values of both samples (pos: the distribution with the larger median)."""
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    t = np.linspace(lo, hi, math.ceil((hi - lo) * THRESHOLDS_PER_UNIT))
    fpr = _counts_at_or_above(np.sort(neg), t) / len(neg)
    fnr = 1.0 - _counts_at_or_above(np.sort(pos), t) / len(pos)
    return fpr, fnr


def double_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(α, β) of the rules "l ≤ φ ≤ r -> the peakier sample" (the one with the smaller range w).

    As in the challenge: r on a grid of 100 points per unit over [min + w − 2, max + 2] of the
    peakier sample, and for each r, l on a grid of 400 points over [r − w − 2, r − w + 2]
    (intervals about as wide as the peakier sample, ±2)."""
    if np.ptp(pos) >= np.ptp(neg):
        pos, neg = neg, pos
    width = float(np.ptp(pos))
    lo, hi = pos.min() + width - BUFFER, pos.max() + BUFFER
    right = np.linspace(lo, hi, math.ceil((hi - lo) * THRESHOLDS_PER_UNIT))
    n_left = math.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT)
    left = np.linspace(right - width - BUFFER, right - width + BUFFER, n_left, axis=1).ravel()
    right = np.repeat(right, n_left)
    fpr = _counts_inside(np.sort(neg), left, right) / len(neg)
    fnr = 1.0 - _counts_inside(np.sort(pos), left, right) / len(pos)
    return fpr, fnr


def rule_epsilons(fpr: np.ndarray, fnr: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """ε of each rule: max(log((1 − δ − α)/β), log((1 − δ − β)/α)), clipped below at 0.

    As in the challenge's code: α = β = 0 (perfect separation) gives +inf; a rule with exactly
    one of α, β zero is dropped (NaN: the sign of too few samples, not of a bound)."""
    eps = np.full(len(fpr), np.nan)
    both = (fpr == 0) & (fnr == 0)
    eps[both] = np.inf
    ok = (fpr > 0) & (fnr > 0)
    a, b = fpr[ok], fnr[ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        bounds = np.fmax(np.log(1 - delta - a) - np.log(b), np.log(1 - delta - b) - np.log(a))
    eps[ok] = np.clip(bounds, 0.0, None)
    return eps


def example_epsilon(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> float:
    """ε of the strongest single- or double-threshold rule between two samples of φ (M each).

    pos = the sample with the larger median. ε = cap when the smaller range is < 1 % of the
    larger (one distribution a near point mass: the grid may miss it, and it is an obvious
    tell); when both ranges are 0, ε = 0 for equal values and the cap otherwise. ε = 0 when
    every rule is dropped (no evidence; the challenge's code stops with an assertion there)."""
    if np.median(retrained) > np.median(unlearned):
        pos, neg = retrained, unlearned
    else:
        pos, neg = unlearned, retrained
    small, large = sorted((float(np.ptp(pos)), float(np.ptp(neg))))
    if large == 0:
        return 0.0 if pos[0] == neg[0] else EPSILON_CAP
    if small / large < 0.01:
        return EPSILON_CAP
    rates = [double_threshold_rates(pos, neg), single_threshold_rates(pos, neg)]
    eps = rule_epsilons(np.concatenate([r[0] for r in rates]), np.concatenate([r[1] for r in rates]), delta)
    if np.isnan(eps).all():
        return 0.0
    return float(min(np.nanmax(eps), EPSILON_CAP))


def epsilons(unlearned_confs: np.ndarray, retrained_confs: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """ε per forget example (shape n) from φ arrays [M, n] of the unlearned and retrained models."""
    u, r = _check(unlearned_confs, retrained_confs)
    return np.array([example_epsilon(u[:, i], r[:, i], delta) for i in range(u.shape[1])])


def epsilon_points(eps: np.ndarray, models: int) -> np.ndarray:
    """Points per example: 2^−k for ε in bucket k = ⌊ε / 0.5⌋ < 2·⌈ln(M − 1)⌉, else 0."""
    buckets = int(round(math.ceil(math.log(models - 1)) / BUCKET_WIDTH)) if models > 2 else 0
    k = np.floor(np.asarray(eps, dtype=float) / BUCKET_WIDTH)
    return np.where(k < buckets, 2.0 ** -np.minimum(k, buckets), 0.0)


def forget_quality(unlearned_confs: np.ndarray, retrained_confs: np.ndarray) -> float:
    """Mean points over the forget set (see the module docstring), in [0, 1].

    unlearned_confs, retrained_confs: φ of each forget example under each model, [M, n]
    (M ≥ 2 models per side, n examples), e.g. from `logit_scaled_confidence`.

    Implemented as the challenge's evaluation code (google-deepmind/unlearning_evaluation,
    metric.py): the same rule families and grids, δ, cap, range test and buckets; the rates come
    from sorted samples (searchsorted) instead of a models × thresholds comparison matrix, which
    gives the same counts. With M = 16 there are 6 buckets (ln 15 = 2.7 -> 3): ε < 0.5 earns 1,
    ε ≥ 3 earns 0."""
    u, r = _check(unlearned_confs, retrained_confs)
    return float(epsilon_points(epsilons(u, r), u.shape[0]).mean())


def _check(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u, r = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
    if u.ndim != 2 or u.shape != r.shape:
        raise ValueError(
            f"confidences must be two arrays [models, examples] of one shape, got {u.shape}, {r.shape}"
        )
    if u.shape[0] < 2 or u.shape[1] < 1:
        raise ValueError(f"need ≥ 2 models per side and ≥ 1 example, got {u.shape}")
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise ValueError("confidences must be finite")
    return u, r
