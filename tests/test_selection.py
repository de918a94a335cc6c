"""core.selection: exact counts, complements, strategies and reports (hypothesis properties)."""

from __future__ import annotations

import copy
import math
import types

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from core import models, selection
from core.errors import ConfigError

SHAPES = {"a.weight": (3, 4), "a.bias": (3,), "b.weight": (2, 5)}


@st.composite
def score_dicts(draw, distinct: bool = False):
    """Random scores over SHAPES; `distinct` makes every value unique (no ties)."""
    total = sum(math.prod(s) for s in SHAPES.values())
    elements = st.floats(-10, 10, allow_nan=False, width=32)
    values = draw(st.lists(elements, min_size=total, max_size=total, unique=distinct))
    flat, out = torch.tensor(values), {}
    for name, shape in SHAPES.items():
        out[name], flat = flat[: math.prod(shape)].reshape(shape), flat[math.prod(shape) :]
    return out


def count(mask: dict) -> int:
    return sum(int(m.sum()) for m in mask.values())


def numel(scores: dict) -> int:
    return sum(s.numel() for s in scores.values())


@pytest.fixture(scope="module")
def cnn():
    ds = types.SimpleNamespace(shape=(1, 8, 8), classes=list(range(10)))
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    return models.build("cnn", ds, seed=0), x, y


@settings(max_examples=60, deadline=None)
@given(score_dicts(), st.floats(0.001, 1.0), st.booleans())
def test_exact_global_count_and_shapes(scores, fraction, largest):
    mask = selection.select(scores, fraction, largest=largest)
    assert count(mask) == round(fraction * numel(scores))
    assert {n: m.shape for n, m in mask.items()} == {n: s.shape for n, s in scores.items()}
    assert all(m.dtype == torch.bool for m in mask.values())


@settings(max_examples=60, deadline=None)
@given(score_dicts(), st.floats(0.001, 1.0), st.booleans())
def test_exact_per_layer_counts(scores, fraction, largest):
    mask = selection.select(scores, fraction, largest=largest, per_layer=True)
    for name, m in mask.items():
        assert int(m.sum()) == round(fraction * scores[name].numel())


@settings(max_examples=60, deadline=None)
@given(score_dicts(distinct=True), st.integers(1, 25), st.booleans())
def test_largest_and_smallest_are_complements(scores, k, per_layer):
    total = numel(scores)
    k = min(k, total - 1)
    if per_layer:  # complements need round(f n) + round((1 - f) n) = n in every tensor
        fraction = 0.5
        if any(s.numel() % 2 for s in scores.values()):
            scores = {n: s for n, s in scores.items() if s.numel() % 2 == 0}
    else:
        fraction = k / total
    top = selection.select(scores, fraction, largest=True, per_layer=per_layer)
    bottom = selection.select(scores, 1 - fraction, largest=False, per_layer=per_layer)
    for name in scores:
        assert torch.equal(top[name], ~bottom[name])
    if not per_layer:  # and the top ones really are the largest
        chosen = torch.cat([scores[n][top[n]] for n in scores])
        rest = torch.cat([scores[n][~top[n]] for n in scores])
        assert chosen.min() > rest.max()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 30), st.integers(1, 39))
def test_ties_break_deterministically_and_complement(zeros, k):
    scores = {"w": torch.cat([torch.zeros(zeros), torch.ones(40 - zeros)])}
    first = selection.select(scores, k / 40)
    assert torch.equal(first["w"], selection.select(scores, k / 40)["w"])
    bottom = selection.select(scores, (40 - k) / 40, largest=False)
    assert torch.equal(first["w"], ~bottom["w"])


def test_smallest_skips_zero_scores_unless_asked(cnn):
    model, _, _ = cnn
    scores = {n: torch.zeros(p.shape) for n, p in model.named_parameters()}
    scores["fc2.weight"] = torch.arange(1.0, 641.0).reshape(10, 64)  # only 640 non-zero scores
    half = selection.build_mask("saps", model, fraction=0.01, largest=False, scores=scores)
    assert count(half) == round(0.01 * 13706)
    assert half["fc2.weight"].sum() == count(half)  # all from the non-zero tensor
    assert half["fc2.weight"].flatten()[: count(half)].all()  # and the smallest of them
    short = selection.build_mask("saps", model, fraction=0.5, largest=False, scores=scores)
    assert count(short) == 640  # fewer than round(0.5 P) non-zero: all non-zero, no error
    rows = selection.summary(short, scores)
    assert sum(r["zero_score_selected"] for r in rows) == 0
    zero_ok = selection.build_mask(
        "saps", model, fraction=0.5, largest=False, scores=scores, include_zero=True
    )
    assert count(zero_ok) == round(0.5 * 13706)
    assert sum(r["zero_score_selected"] for r in selection.summary(zero_ok, scores)) > 0


def test_saps_uses_absolute_or_signed_scores(cnn):
    model, _, _ = cnn
    scores = {n: torch.zeros(p.shape) for n, p in model.named_parameters()}
    scores["fc2.bias"] = torch.tensor([-9.0, 1, 2, 3, 4, 5, 6, 7, 8, 0.5])
    frac = 1 / 13706
    absolute = selection.build_mask("saps", model, fraction=frac, scores=scores)
    signed = selection.build_mask("saps", model, fraction=frac, scores=scores, signed=True)
    assert absolute["fc2.bias"][0] and not signed["fc2.bias"][0]
    assert signed["fc2.bias"][8]


def test_all_and_last_layer(cnn):
    model, _, _ = cnn
    everything = selection.build_mask("all", model)
    assert all(m.all() for m in everything.values())
    last = selection.build_mask("last_layer", model, fraction=0.01)  # fraction ignored
    assert {n for n, m in last.items() if m.all()} == {"fc2.weight", "fc2.bias"}
    assert count(last) == 650


def test_random_is_seeded_and_exact(cnn):
    model, _, _ = cnn
    a = selection.build_mask("random", model, fraction=0.1, seed=1)
    b = selection.build_mask("random", model, fraction=0.1, seed=1)
    c = selection.build_mask("random", model, fraction=0.1, seed=2)
    assert selection.jaccard(a, b) == 1.0 and selection.jaccard(a, c) < 0.5
    assert count(a) == round(0.1 * 13706)


def test_magnitude_gradient_fisher_rank_the_right_scores(cnn):
    model, x, y = cnn
    frac = 0.05
    magnitude = selection.build_mask("magnitude", model, fraction=frac)
    expected = selection.select({n: p.detach().abs() for n, p in model.named_parameters()}, frac)
    assert selection.jaccard(magnitude, expected) == 1.0

    xf, yf = x[:8], y[:8]
    gradient = selection.build_mask("gradient", model, fraction=frac, forget_inputs=xf, forget_targets=yf)
    loss = F.cross_entropy(model.eval()(xf), yf)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    by_hand = {n: g.abs() for (n, _), g in zip(model.named_parameters(), grads)}
    assert selection.jaccard(gradient, selection.select(by_hand, frac)) > 0.95  # float ties

    fisher = selection.build_mask(
        "fisher", model, fraction=frac, forget_inputs=xf, forget_targets=yf, inputs=x, targets=y
    )
    assert count(fisher) == round(frac * 13706)
    with pytest.raises(ConfigError, match="forget_inputs"):
        selection.build_mask("gradient", model, fraction=frac)


def test_quantile_and_threshold_budgets():
    model = torch.nn.Linear(10, 10)  # 110 parameters
    scores = {"weight": torch.arange(100.0).reshape(10, 10), "bias": torch.arange(100.0, 110.0)}
    top = selection.build_mask("saps", model, quantile=0.9, scores=scores)
    assert count(top) == 11 and top["bias"].all()
    low = selection.build_mask("saps", model, threshold=4.5, largest=False, scores=scores)
    assert count(low) == 4  # 1, 2, 3, 4: zero is excluded (dead)
    with pytest.raises(ConfigError, match="fraction"):
        selection.build_mask("saps", model, fraction=0.1, quantile=0.5, scores=scores)


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), float("inf"), "0.1", None, True])
def test_bad_fraction_is_refused(bad):
    scores = {"w": torch.rand(10)}
    with pytest.raises(ConfigError, match="fraction"):
        selection.select(scores, bad)


def test_unknown_strategy_and_missing_scores(cnn):
    model, _, _ = cnn
    with pytest.raises(ConfigError, match="strategy.*saps"):
        selection.build_mask("sharpest", model, fraction=0.1)
    with pytest.raises(ConfigError, match="scores"):
        selection.build_mask("saps", model, fraction=0.1)
    with pytest.raises(ConfigError, match="fraction"):
        selection.build_mask("random", model, fraction=float("nan"))
    assert set(selection.STRATEGIES) == {
        "saps",
        "random",
        "magnitude",
        "gradient",
        "fisher",
        "last_layer",
        "all",
    }


def test_jaccard_and_summary_by_hand():
    a = {"w": torch.tensor([True, True, False, False]), "b": torch.tensor([True])}
    b = {"w": torch.tensor([True, False, True, False]), "b": torch.tensor([True])}
    assert selection.jaccard(a, b) == pytest.approx(2 / 4)
    empty = {"w": torch.zeros(4, dtype=torch.bool), "b": torch.zeros(1, dtype=torch.bool)}
    assert selection.jaccard(empty, empty) == 1.0
    scores = {"w": torch.tensor([0.0, 1.0, 0.0, 2.0]), "b": torch.tensor([0.0])}
    rows = selection.summary(a, scores)
    assert rows[0] == {
        "name": "w",
        "numel": 4,
        "selected": 2,
        "share": 0.5,
        "zero_score": 2,
        "zero_score_selected": 1,
    }
    assert rows[1]["zero_score_selected"] == 1
    assert selection.summary(a)[0]["zero_score_selected"] is None


def _forget_set(x, y, n_forget=8):
    return types.SimpleNamespace(forget=(x[:n_forget], y[:n_forget]), x_train=x, y_train=y)


def per_sample_squared_grads(model, x, y) -> dict:
    """(1/N) Σ_n (∇θ ℓ(x_n, y_n))² by a plain loop over samples, in float64."""
    model = copy.deepcopy(model).double().eval()
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for xn, yn in zip(x.double(), y):
        grads = torch.autograd.grad(F.cross_entropy(model(xn[None]), yn[None]), list(model.parameters()))
        for (n, _), g in zip(model.named_parameters(), grads):
            total[n] += g.square()
    return {n: t / len(x) for n, t in total.items()}


def test_fisher_ranks_by_the_forget_over_full_fisher_ratio(cnn):
    model, x, y = cnn
    frac = 0.05
    mask = selection.mask_for({"name": "fisher"}, model, fraction=frac, forget_set=_forget_set(x, y))
    forget, full = per_sample_squared_grads(model, x[:8], y[:8]), per_sample_squared_grads(model, x, y)
    ratio = torch.cat([(forget[n] / (full[n] + 1e-12)).flatten() for n in mask])
    chosen = torch.cat([mask[n].flatten() for n in mask])
    assert int(chosen.sum()) == round(frac * 13706)
    # every chosen parameter's ratio is at least every unchosen one's (up to float32 rounding)
    assert ratio[chosen].min() >= ratio[~chosen].max() * (1 - 1e-4)


@pytest.fixture(scope="module")
def dead_mlp():
    """An MLP on 8×8 inputs whose first 100 hidden units never fire: their weights are dead."""
    ds = types.SimpleNamespace(shape=(1, 8, 8), classes=list(range(10)))
    model = models.build("mlp", ds, seed=0)
    with torch.no_grad():
        model.fc1.bias[:100] = -1e3
    torch.manual_seed(1)
    return model, torch.rand(40, 1, 8, 8), torch.randint(0, 10, (40,))


def test_live_mask_is_the_nonzero_gradient_set(dead_mlp):
    model, x, y = dead_mlp
    live = selection.live_mask(model, x, y)
    by_hand = {n: g != 0 for n, g in per_sample_squared_grads(model, x, y).items()}
    assert all(torch.equal(live[n], by_hand[n]) for n in by_hand)
    assert not live["fc1.weight"][:100].any() and live["fc1.weight"][100:].any()
    scores = {n: torch.where(m, 1.0, 0.0) for n, m in by_hand.items()}
    from_scores = selection.live_mask(model, x, y, scores=scores)
    assert all(torch.equal(from_scores[n], by_hand[n]) for n in by_hand)


def test_random_draws_among_live_parameters_unless_told_otherwise(dead_mlp):
    model, x, y = dead_mlp
    fs, total = _forget_set(x, y), models.count_parameters(model)
    live = selection.live_mask(model, x, y)
    n_dead = total - sum(int(m.sum()) for m in live.values())
    assert n_dead > total / 2  # 100 of 128 units: most of fc1 and fc2 is dead
    drawn = selection.mask_for({"name": "random", "fraction": 0.2}, model, forget_set=fs, seed=3)
    assert count(drawn) == round(0.2 * total) and selection.dead_selected(drawn, live) == 0
    given = selection.mask_for({"name": "random", "fraction": 0.2}, model, live=live, seed=3)
    assert selection.jaccard(drawn, given) == 1.0
    uniform = selection.mask_for({"name": "random", "live": False}, model, fraction=0.2, seed=3)
    assert count(uniform) == round(0.2 * total)
    # uniform picks land on dead parameters in proportion (a hypergeometric draw: ± a few %)
    assert selection.dead_selected(uniform, live) / count(uniform) == pytest.approx(n_dead / total, abs=0.05)
    assert torch.equal(
        uniform["fc3.weight"], selection.build_mask("random", model, fraction=0.2, seed=3)["fc3.weight"]
    )
    everything = selection.mask_for({"name": "random", "fraction": 1.0}, model, live=live)
    assert all(torch.equal(everything[n], live[n]) for n in live)  # fewer live than k: all live


def test_dead_selected_by_hand():
    mask = {"w": torch.tensor([True, True, False]), "b": torch.tensor([True])}
    live = {"w": torch.tensor([True, False, False]), "b": torch.tensor([False])}
    assert selection.dead_selected(mask, live) == 2


def test_mask_for_reads_the_strategy_dict(cnn):
    model, x, y = cnn
    scores = {
        n: torch.randn(p.shape, generator=torch.Generator().manual_seed(0))
        for n, p in model.named_parameters()
    }
    cfg = {"name": "saps", "fraction": 0.03, "largest": False, "per_layer": True, "signed": True}
    expected = selection.build_mask(
        "saps", model, fraction=0.03, largest=False, per_layer=True, signed=True, scores=scores
    )
    assert selection.jaccard(selection.mask_for(cfg, model, scores=scores), expected) == 1.0
    swept = selection.mask_for(cfg, model, fraction=0.1, scores=scores)  # a sweep budget wins
    assert count(swept) == sum(round(0.1 * p.numel()) for p in model.parameters())
    top = selection.mask_for({"name": "saps", "quantile": 0.99}, model, scores=scores)
    assert count(top) == count(selection.build_mask("saps", model, quantile=0.99, scores=scores))
    assert count(selection.mask_for({"name": "all"}, model, fraction=0.1)) == 13706
    with pytest.raises(ConfigError, match="needs a fraction"):
        selection.mask_for({"name": "magnitude"}, model)
    with pytest.raises(ConfigError) as e:
        selection.build_mask("magnitude", model, fraction=0.1, signed=True)
    assert e.value.field == "strategy.signed"


def test_strategy_labels():
    label = selection.strategy_label
    assert label({"name": "saps"}, 0.02) == "SAPS (largest diag H) @ 2 %"
    assert label({"name": "saps", "largest": False, "fraction": 0.005}) == "SAPS (smallest diag H) @ 0.5 %"
    assert label({"name": "saps", "signed": True}, 0.1) == "SAPS (largest signed diag H) @ 10 %"
    assert label({"name": "random"}, 0.02) == "random (live) @ 2 %"
    assert label({"name": "random", "live": False}, 0.02) == "random (uniform) @ 2 %"
    assert label({"name": "magnitude", "largest": False, "per_layer": True}, 0.05) == (
        "magnitude |θ| (smallest), per layer @ 5 %"
    )
    assert label({"name": "gradient", "quantile": 0.9}) == "SalUn |∇L_forget| ≥ q0.9"
    assert label({"name": "all"}, 0.02) == "all parameters"
    assert label({"name": "last_layer"}) == "last layer"


def test_registry_metadata():
    for name, entry in selection.STRATEGIES.items():
        assert entry.name == name and entry.label and entry.description
        assert entry.needs <= selection.NEEDS
        assert (entry.score is None) != (entry.fixed is None)
    assert {n for n, e in selection.STRATEGIES.items() if not e.budgeted} == {"all", "last_layer"}
    assert selection.STRATEGIES["saps"].needs == {"curvature"}
    assert selection.STRATEGIES["random"].options == {"live": True}


def test_a_toy_strategy_is_one_registry_entry(cnn, monkeypatch):
    model, _, _ = cnn
    toy = selection.Strategy(
        name="toy",
        label="toy (bias first)",
        description="biases outrank weights",
        score=lambda m, r: {
            n: torch.full(p.shape, r.options["bias_score"] if n.endswith("bias") else 0.0)
            for n, p in m.named_parameters()
        },
        options={"bias_score": 1.0},
    )
    monkeypatch.setitem(selection.STRATEGIES, "toy", toy)
    mask = selection.mask_for({"name": "toy", "fraction": 122 / 13706}, model)
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith("bias"))
    assert biases == 122 and all(m.all() == n.endswith("bias") for n, m in mask.items())
    assert selection.strategy_label({"name": "toy"}, 0.01) == "toy (bias first) @ 1 %"


def test_overlap_matrix_by_hand():
    a = {"w": torch.tensor([True, True, False, False])}
    b = {"w": torch.tensor([True, False, True, False])}
    c = {"w": torch.tensor([False, False, False, True])}
    out = selection.overlap_matrix({"a": a, "b": b, "c": c})
    assert out.shape == (3, 3)
    assert out.tolist() == [[1.0, 1 / 3, 0.0], [1 / 3, 1.0, 0.0], [0.0, 0.0, 1.0]]
