"""masked_finetune's `align` term (penultimate features of D_f pulled to θ*'s features of their
D̃_f twins) against a step computed by hand, and what it does to a trained backdoor's features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core import unlearning
from core.errors import ConfigError
from core.scenarios import ForgetSet
from tests.test_unlearning import flat, small_net


def paired_forget_set(n: int = 50, n_forget: int = 10, seed: int = 0) -> ForgetSet:
    """A backdoor-like set on 1×2×2 inputs: D_f = n_forget inputs with a 'trigger' (+0.8 on one
    pixel) labelled 0; D̃_f = the same inputs without it, with their true labels (paired by row)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 2, 2, generator=g)
    y_true = torch.randint(1, 3, (n,), generator=g)
    idx = torch.arange(n_forget)
    clean = x[idx].clone()
    x[idx, 0, 0, 0] += 0.8
    y = y_true.clone()
    y[idx] = 0
    return ForgetSet("backdoor", {}, x, y, y_true, idx, clean, y_true[idx].clone(), 3)


def test_one_aligned_sgd_step_equals_the_gradient_by_hand():
    """SGD, one step on all samples, no anchor: θ₁ = θ₀ − lr · M ⊙ ∇L(θ₀) with
    L = Σ ℓ(D_f inputs and D̃_f, corrected labels)/|D_f ∪ D̃_f|
        + align · mean_f ‖φ(x_f; θ) − φ(x̃_f; θ₀)‖² / mean_f ‖φ(x̃_f; θ₀)‖²,
    φ = relu(W₁x + b₁), the input of the last Linear."""
    fs = paired_forget_set()
    model = small_net(seed=5)
    mask = {
        n: torch.rand(p.shape, generator=torch.Generator().manual_seed(2)) < 0.7
        for n, p in model.named_parameters()
    }
    lr, align = 0.3, 2.0
    common = dict(
        seed=0, lr=lr, steps=1, optimizer="sgd", retain_weight=0.0, wrong_only=False, forget_batch=10**6
    )
    new, log = unlearning.unlearn(model, mask, fs, "masked_finetune", align=align, **common)
    plain, _ = unlearning.unlearn(model, mask, fs, "masked_finetune", **common)

    w1, b1, w2, b2 = (p.detach().clone().requires_grad_(True) for p in model.parameters())
    x_f, x_c = fs.forget[0].flatten(1), fs.corrected[0].flatten(1)
    x = torch.cat([x_f, x_c])
    y = torch.cat([fs.forget_true[1], fs.corrected[1]])
    with torch.no_grad():
        twin = torch.relu(x_c @ w1.T + b1)
    ce = F.cross_entropy(torch.relu(x @ w1.T + b1) @ w2.T + b2, y, reduction="sum") / len(y)
    gap = (torch.relu(x_f @ w1.T + b1) - twin).pow(2).sum(1).mean() / twin.pow(2).sum(1).mean()
    grads = torch.autograd.grad(ce + align * gap, [w1, b1, w2, b2])
    for (name, p0), g, p1 in zip(model.named_parameters(), grads, new.parameters()):
        assert torch.allclose(p1.detach(), p0.detach() - lr * mask[name] * g, atol=1e-6), name
    assert not torch.equal(flat(new), flat(plain)) and log["steps"] == 1


def test_align_zero_is_the_default_and_align_is_checked():
    fs = paired_forget_set()
    model = small_net(seed=1)
    mask = {n: torch.ones(p.shape, dtype=torch.bool) for n, p in model.named_parameters()}
    a, _ = unlearning.unlearn(model, mask, fs, "masked_finetune", seed=3, lr=0.01, steps=4)
    b, _ = unlearning.unlearn(model, mask, fs, "masked_finetune", seed=3, lr=0.01, steps=4, align=0.0)
    assert torch.equal(flat(a), flat(b))
    assert unlearning.METHODS["masked_finetune"].defaults["align"] == 0.0
    assert unlearning.METHODS["masked_sam"].defaults["align"] == 0.0
    with pytest.raises(ConfigError, match="unlearning.align"):
        unlearning.check_hparams({"align": -1.0}, method="masked_finetune")
    with pytest.raises(ConfigError, match="unlearning.align"):
        unlearning.check_hparams({"align": 1.0}, method="neggrad")


def test_align_brings_the_triggered_features_to_the_clean_ones():
    """On the paired set, many aligned steps leave the D_f features closer to θ*'s features of
    the clean twins than the same steps without the term."""
    fs = paired_forget_set(n=80, n_forget=16, seed=1)
    model = small_net(seed=2)
    mask = {n: torch.ones(p.shape, dtype=torch.bool) for n, p in model.named_parameters()}
    common = dict(seed=0, lr=0.05, steps=40, val_tolerance=1.0, retain_weight=0.0, wrong_only=False)

    def feature_gap(m) -> float:
        with torch.no_grad():
            twin = torch.relu(model[1](fs.corrected[0].flatten(1)))
            return float((torch.relu(m[1](fs.forget[0].flatten(1))) - twin).pow(2).sum(1).mean())

    aligned, _ = unlearning.unlearn(model, mask, fs, "masked_finetune", align=10.0, **common)
    plain, _ = unlearning.unlearn(model, mask, fs, "masked_finetune", **common)
    assert feature_gap(aligned) < 0.5 * feature_gap(plain)


def test_align_is_refused_where_it_cannot_apply():
    fs = paired_forget_set()
    mask_of = lambda m: {n: torch.ones(p.shape, dtype=torch.bool) for n, p in m.named_parameters()}  # noqa: E731
    # D̃_f not paired one to one with D_f
    fewer = ForgetSet(
        "backdoor",
        {},
        fs.x_train,
        fs.y_train,
        fs.y_true,
        fs.forget_idx,
        fs.corrected_x[:5],
        fs.corrected_y[:5],
        3,
    )
    model = small_net(seed=1)
    with pytest.raises(ConfigError, match="unlearning.align") as e:
        unlearning.unlearn(model, mask_of(model), fewer, "masked_finetune", seed=0, steps=1, align=1.0)
    assert "5 corrected vs 10 forget" in str(e.value)
    # a model without a linear head has no penultimate features to align
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 2), torch.nn.Flatten())
    with pytest.raises(ConfigError, match="unlearning.align"):
        unlearning.unlearn(conv, mask_of(conv), fs, "masked_finetune", seed=0, steps=1, align=1.0)
    unlearning.unlearn(conv, mask_of(conv), fs, "masked_finetune", seed=0, steps=1)  # fine without align


def test_masked_sam_at_rho_zero_is_aligned_masked_finetune_bit_for_bit():
    fs = paired_forget_set()
    model = small_net(seed=3)
    mask = {n: torch.ones(p.shape, dtype=torch.bool) for n, p in model.named_parameters()}
    common = dict(seed=1, lr=0.02, steps=5, align=3.0)
    ref, _ = unlearning.unlearn(model, mask, fs, "masked_finetune", **common)
    sam, _ = unlearning.unlearn(model, mask, fs, "masked_sam", rho=0.0, **common)
    plain, _ = unlearning.unlearn(model, mask, fs, "masked_sam", rho=0.0, seed=1, lr=0.02, steps=5)
    assert torch.equal(flat(sam), flat(ref)) and not torch.equal(flat(sam), flat(plain))
