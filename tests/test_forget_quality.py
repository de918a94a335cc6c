"""Forget quality (NeurIPS 2023 unlearning challenge) on hand-made confidence sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core import metrics
from core.metrics import challenge as fq


def test_logit_scaled_confidence_matches_probabilities_and_stays_finite():
    torch.manual_seed(0)
    logits = torch.randn(50, 4, dtype=torch.float64) * 3
    y = torch.randint(4, (50,))
    p = torch.softmax(logits, 1)[torch.arange(50), y].numpy()
    assert np.allclose(metrics.logit_scaled_confidence(logits, y), np.log(p) - np.log1p(-p), rtol=1e-10)
    # logit gaps where p_y rounds to 1 or 0 in float64: z_y − log Σ_{j≠y} e^{z_j} by hand
    extreme = torch.tensor([[900.0, 0.0, 0.0], [0.0, 800.0, 0.0]])
    out = metrics.logit_scaled_confidence(extreme, torch.tensor([0, 0]))
    assert out == pytest.approx([900.0 - math.log(2.0), -800.0])


def test_separated_identical_and_half_and_half():
    rng = np.random.default_rng(0)
    m, n = 16, 6
    a = rng.normal(size=(m, n))
    assert metrics.forget_quality(a, a + 10.0) == 0.0  # separable: ε = cap, no points
    assert metrics.forget_quality(a, a.copy()) == 1.0  # the very same samples: no rule beats chance
    half = np.concatenate([a[:, :3] + 10.0, a[:, 3:]], axis=1)
    assert metrics.forget_quality(a, half) == pytest.approx(0.5)
    # two independent draws from ONE distribution: 16 samples per side let a best-of-many
    # threshold test look better than chance (median ε ≈ 1.6, bucket 3 -> 1/8 points)
    same = metrics.forget_quality(rng.normal(size=(m, 200)), rng.normal(size=(m, 200)))
    assert 0.1 < same < 0.3


def test_hand_case_interleaved_samples():
    """Unlearned 0, 1, …, 15 and retrained 0.5, 1.5, …, 15.5: the best single threshold t ∈ (1, 1.5]
    leaves α = 14/16 and β = 1/16, so ε = log((1 − δ − 14/16) / (1/16)) = log(2 − 16δ) (no interval
    about as wide as the samples does better): bucket 1, half a point."""
    u = np.arange(16.0)
    r = u + 0.5
    eps = fq.example_epsilon(u, r)
    assert eps == pytest.approx(math.log(2 - 16 * fq.DELTA), rel=1e-9)
    assert metrics.forget_quality(u[:, None], r[:, None]) == 0.5


def test_peaky_distribution_gets_the_cap():
    rng = np.random.default_rng(1)
    r = rng.normal(size=16)
    u = np.median(r) + 1e-4 * rng.normal(size=16)  # range < 1 % of the retrained one's
    assert fq.example_epsilon(u, r) == fq.EPSILON_CAP
    assert fq.example_epsilon(np.ones(4), np.ones(4)) == 0.0
    assert fq.example_epsilon(np.ones(4), np.full(4, 2.0)) == fq.EPSILON_CAP


def test_rates_match_direct_comparisons():
    """The sorted-sample counts equal the challenge's models × thresholds comparison matrices."""
    rng = np.random.default_rng(2)
    pos, neg = rng.normal(1.0, 1.0, 16), rng.normal(0.0, 2.0, 16)
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    t = np.linspace(lo, hi, math.ceil((hi - lo) * 100))
    fpr, fnr = fq.single_threshold_rates(pos, neg)
    assert np.array_equal(fpr, (neg[:, None] >= t).mean(0))
    assert np.array_equal(fnr, (pos[:, None] < t).mean(0))
    # double threshold: the peakier sample (pos here) is predicted inside [l, r]
    w = np.ptp(pos)
    lo, hi = pos.min() + w - 2, pos.max() + 2
    right = np.linspace(lo, hi, math.ceil((hi - lo) * 100))
    left = np.concatenate([np.linspace(r - w - 2, r - w + 2, 400) for r in right])
    right = np.repeat(right, 400)
    fpr, fnr = fq.double_threshold_rates(pos, neg)
    inside = lambda x: ((left <= x[:, None]) & (x[:, None] <= right)).mean(0)  # noqa: E731
    assert np.allclose(fpr, inside(neg), atol=1e-12) and np.allclose(fnr, 1 - inside(pos), atol=1e-12)


def test_points_per_bucket():
    # M = 16: buckets of 0.5 up to ⌈ln 15⌉ = 3
    eps = np.array([0.0, 0.49, 0.5, 1.2, 2.99, 3.0, 50.0])
    assert fq.epsilon_points(eps, 16).tolist() == [1, 1, 0.5, 0.25, 1 / 32, 0, 0]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        metrics.forget_quality(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="≥ 2 models"):
        metrics.forget_quality(np.zeros((1, 3)), np.zeros((1, 3)))


samples = st.integers(3, 12).flatmap(
    lambda m: st.tuples(
        st.lists(st.lists(st.floats(-20, 20), min_size=m, max_size=m), min_size=1, max_size=3),
        st.lists(st.lists(st.floats(-20, 20), min_size=m, max_size=m), min_size=1, max_size=3),
    )
)


@settings(max_examples=25, deadline=None)
@given(samples)
def test_properties(pair):
    cols = min(len(pair[0]), len(pair[1]))
    u, r = np.array(pair[0][:cols]).T, np.array(pair[1][:cols]).T
    score = metrics.forget_quality(u, r)
    assert 0.0 <= score <= 1.0
    assert metrics.forget_quality(u, u.copy()) == 1.0
    # roles are set by the medians: swapping the arguments changes nothing when they differ
    if all(np.median(u[:, i]) != np.median(r[:, i]) for i in range(cols)):
        assert metrics.forget_quality(r, u) == score
    # a shift beyond both ranges separates every example
    assert metrics.forget_quality(u, r - r.min() + u.max() + 1.0) == 0.0
