"""The step-size rule of guarded trajectories (core.unlearning.stepsize) on two data sets of
different scale: the first Adam step moves the selected weights by AUTO_STEP of their norm,
whatever the input size, the model's width, the weights' magnitude or the size of D_f; and the
step count of masked_finetune follows |D_f ∪ D̃_f|, not the training set."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from core import unlearning
from core.errors import ConfigError
from core.scenarios import ForgetSet
from core.unlearning import stepsize


def label_flip(n: int, n_forget: int, shape: tuple[int, ...], n_classes: int, seed: int) -> ForgetSet:
    """Random inputs of `shape` with a flipped label on the first n_forget (D̃_f = D_f, true labels)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    y_true = torch.randint(n_classes, (n,), generator=g)
    idx = torch.arange(n_forget)
    y = y_true.clone()
    y[idx] = (y_true[idx] + 1) % n_classes
    return ForgetSet("label_flip", {}, x, y, y_true, idx, x[idx].clone(), y_true[idx].clone(), n_classes)


def tanh_net(d_in: int, width: int, n_classes: int, scale: float, seed: int) -> nn.Module:
    """A smooth net (no dead units: every selected weight gets a gradient), weights × scale."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, n_classes))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    return net


# two data sets of different scale: 40 tiny 2×2 inputs on a 6-unit net with small weights, and
# 600 28×28 inputs on a 64-unit net with 3× larger weights and 10 classes
SMALL = {"n": 40, "n_forget": 8, "shape": (1, 2, 2), "n_classes": 3, "width": 6, "scale": 0.5}
LARGE = {"n": 600, "n_forget": 60, "shape": (1, 28, 28), "n_classes": 10, "width": 64, "scale": 3.0}


def setup(case: dict, seed: int = 0) -> tuple[ForgetSet, nn.Module, dict]:
    fs = label_flip(case["n"], case["n_forget"], case["shape"], case["n_classes"], seed)
    d_in = math.prod(case["shape"])
    net = tanh_net(d_in, case["width"], case["n_classes"], case["scale"], seed)
    g = torch.Generator().manual_seed(seed + 1)
    mask = {n: torch.rand(p.shape, generator=g) < 0.3 for n, p in net.named_parameters()}
    return fs, net, mask


def masked_norm(theta: dict, mask: dict) -> float:
    return math.sqrt(sum(float((theta[n] * mask[n]).pow(2).sum()) for n in theta))


@pytest.mark.parametrize("case", [SMALL, LARGE], ids=["2x2-6-units", "28x28-64-units"])
def test_one_adam_step_moves_the_selected_weights_by_auto_step_of_their_norm(case):
    fs, net, mask = setup(case)
    theta = {n: p.detach().clone() for n, p in net.named_parameters()}
    # one step, a guard that always passes: the step is the rule's first step
    new, log = unlearning.unlearn(
        net, mask, fs, "masked_finetune", seed=0, steps=1, check_every=1, val_tolerance=1.0, retain_weight=0.0
    )
    moved = {n: p.detach() - theta[n] for n, p in new.named_parameters()}
    # independent: Adam's first step is lr·g/(|g| + ε) ≈ ±lr on every coordinate with a gradient, so
    # ‖Δθ_M‖ = lr·√|M| = AUTO_STEP·rms(θ*_M)·√|M| = AUTO_STEP·‖θ*_M‖
    rel = masked_norm(moved, mask) / masked_norm(theta, mask)
    assert rel == pytest.approx(stepsize.AUTO_STEP, rel=0.02)
    count = sum(int(m.sum()) for m in mask.values())
    assert log["lr"] == pytest.approx(stepsize.AUTO_STEP * masked_norm(theta, mask) / math.sqrt(count))
    # nothing outside the mask moved
    assert all(torch.equal(moved[n][~mask[n]], torch.zeros_like(moved[n][~mask[n]])) for n in moved)


def test_the_absolute_step_follows_the_weights_scale_the_relative_one_does_not():
    logs = {}
    for scale in (0.5, 5.0):
        fs, net, mask = setup({**SMALL, "scale": scale})
        _, logs[scale] = unlearning.unlearn(
            net, mask, fs, "masked_finetune", seed=0, steps=1, check_every=1, val_tolerance=1.0
        )
    assert logs[5.0]["lr"] == pytest.approx(10 * logs[0.5]["lr"])


@settings(max_examples=25, deadline=None)
@given(
    n_forget=st.integers(1, 400),
    forget_batch=st.integers(1, 128),
    epochs=st.floats(0.5, 16),
    relabelled=st.booleans(),
)
def test_auto_steps_are_passes_over_the_samples_to_fix(n_forget, forget_batch, epochs, relabelled):
    fs = label_flip(n_forget + 30, n_forget, (1, 2, 2), 3, 0)
    if not relabelled:  # D̃_f other inputs than D_f (as a backdoor's clean copies): both count
        fs.corrected_x = fs.corrected_x + 1.0
    net, _ = tanh_net(4, 4, 3, 1.0, 0), None
    mask = {n: torch.ones(p.shape, dtype=torch.bool) for n, p in net.named_parameters()}
    ctx = unlearning.context.build_context(
        net,
        mask,
        fs,
        {
            **unlearning.METHODS["masked_finetune"].defaults,
            "forget_batch": forget_batch,
            "forget_epochs": epochs,
        },
        0,
        torch.device("cpu"),
        mask_required=True,
    )
    # a label flip's D̃_f is D_f relabelled: its images count once; other corrected inputs add up
    n_fix = n_forget if relabelled else 2 * n_forget
    expected = max(1, math.ceil(epochs * n_fix / min(forget_batch, n_fix)))
    assert unlearning.rules.finetune_steps(ctx) == expected


def test_a_larger_forget_set_takes_proportionally_more_steps_a_larger_training_set_does_not():
    def steps(n: int, n_forget: int) -> int:
        fs = label_flip(n, n_forget, (1, 2, 2), 3, 0)
        net = tanh_net(4, 4, 3, 1.0, 0)
        mask = {k: torch.ones(p.shape, dtype=torch.bool) for k, p in net.named_parameters()}
        # a guard that always passes and nothing to stop early: every step is taken
        _, log = unlearning.unlearn(
            net, mask, fs, "masked_finetune", seed=0, val_tolerance=1.0, wrong_only=False, forget_batch=16
        )
        return log["steps"]

    f = unlearning.METHODS["masked_finetune"].defaults["forget_epochs"]
    # a label flip: D̃_f is the n_forget D_f images relabelled, so |D_f ∪ D̃_f| = n_forget
    assert steps(100, 8) == math.ceil(f * 8 / 8)
    assert steps(1000, 8) == steps(100, 8)
    assert steps(1000, 80) == math.ceil(f * 80 / 16)


def test_auto_steps_are_refused_for_a_method_without_forget_epochs():
    with pytest.raises(ConfigError, match="unlearning.steps"):
        unlearning.check_hparams({"steps": "auto"}, method="neggrad")
    unlearning.check_hparams({"steps": "auto"}, method="masked_finetune")


def test_the_guard_checks_five_times_along_an_auto_trajectory():
    assert stepsize.check_interval("auto", 150) == 30
    assert stepsize.check_interval("auto", 12) == 3
    assert stepsize.check_interval(7, 150) == 7


def _search_context(case: dict):
    from core.unlearning.context import build_context
    from core.unlearning.methods import METHODS

    fs, net, mask = setup(case)
    hp = {"device": None, **METHODS["first_order"].defaults}
    return build_context(net, mask, fs, hp, 0, torch.device("cpu"), mask_required=True)


def test_a_kept_step_that_forgets_nothing_more_than_theta_star_says_so():
    ctx = _search_context(SMALL)
    theta = {n: t.clone() for n, t in ctx.theta_star.items()}
    kept, info = stepsize.search(ctx, lambda tau: theta, (0.1, 1.0))  # every candidate is θ*
    assert kept is not None and "forgets no more of D_f than θ*" in info["note"]
    # a candidate that fixes D_f: no such note. θ_fix: θ* trained on D_f's corrected labels;
    # the guard is opened (tolerance 1) so the comparison is the forget score alone
    fixed = copy.deepcopy(ctx.original)
    opt = torch.optim.Adam(fixed.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(fixed(ctx.x_f), ctx.y_fix).backward()
        opt.step()
    target = dict(fixed.named_parameters())
    ctx.hp["val_tolerance"] = 1.0

    def fixing(tau: float) -> dict:
        return {n: t + tau * (target[n].detach() - t) for n, t in theta.items()}

    assert stepsize.forget_score(fixed, ctx, 0.0) > stepsize.forget_score(ctx.original, ctx, 0.0)
    kept, info = stepsize.search(ctx, fixing, (0.5, 1.0))
    assert kept is not None and "note" not in info
