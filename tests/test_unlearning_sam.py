"""masked_sam (sharpness-aware masked fine-tuning) against masked_finetune and a SAM step by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core import unlearning
from core.errors import ConfigError
from tests.test_unlearning import _pinned_case, flat, tiny_forget_set


@pytest.mark.parametrize("hparams", [{}, {"lr": 0.01, "steps": 6}, {"retain_fixed": False, "ascent": 0.5}])
def test_rho_zero_is_masked_finetune_bit_for_bit(hparams):
    fs, model, mask, _ = _pinned_case()
    ref, ref_log = unlearning.unlearn(model, mask, fs, "masked_finetune", seed=3, **hparams)
    sam, log = unlearning.unlearn(model, mask, fs, "masked_sam", seed=3, rho=0.0, **hparams)
    assert torch.equal(flat(sam), flat(ref)) and log["steps"] == ref_log["steps"] and log["rho"] == 0.0
    assert log["grad_evals"] > ref_log["grad_evals"]  # the second gradient of each step is counted


def test_only_masked_coordinates_move_and_rho_changes_the_trajectory():
    fs, model, mask, _ = _pinned_case()
    ref, _ = unlearning.unlearn(model, mask, fs, "masked_finetune", seed=3, lr=0.01, steps=6)
    sam, log = unlearning.unlearn(model, mask, fs, "masked_sam", seed=3, lr=0.01, steps=6, rho=0.5)
    assert log["changed"] and not torch.equal(flat(sam), flat(ref))
    for (name, before), after in zip(model.named_parameters(), sam.parameters()):
        outside = ~mask[name]
        assert torch.equal(before.detach()[outside], after.detach()[outside]), name
        assert not torch.equal(before.detach()[mask[name]], after.detach()[mask[name]]), name


def test_one_sam_step_equals_the_gradient_at_the_ascended_point_by_hand():
    """SGD, one step, no anchor: θ₁ = θ₀ − lr · M ⊙ ∇L(θ₀ + ρ g/‖g‖), g = M ⊙ ∇L(θ₀), with
    L(θ) = Σ_{wrong at θ₀} ℓ(x, corrected y) / |D_f ∪ D̃_f| over the D_f inputs and D̃_f."""
    fs = tiny_forget_set(n=60, n_forget=10)
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    mask = {
        n: torch.rand(p.shape, generator=torch.Generator().manual_seed(2)) < 0.6
        for n, p in model.named_parameters()
    }
    lr, rho = 0.3, 0.2
    new, log = unlearning.unlearn(
        model, mask, fs, "masked_sam", seed=0, lr=lr, steps=1, optimizer="sgd", retain_weight=0.0, rho=rho
    )
    x = torch.cat([fs.forget[0], fs.corrected[0]])
    y = torch.cat([fs.forget_true[1], fs.corrected[1]])
    w0, b0 = model[1].weight.detach(), model[1].bias.detach()
    m_w, m_b = mask["1.weight"], mask["1.bias"]
    wrong = (x.flatten(1) @ w0.T + b0).argmax(1) != y
    assert wrong.any() and not wrong.all()

    def grad(w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # ∂/∂W of Σ_wrong CE / n: (softmax − onehot)ᵀ x / n over the wrong rows
        xs = x.flatten(1)[wrong]
        r = ((xs @ w.T + b).softmax(1) - F.one_hot(y[wrong], 3).float()) / len(y)
        return r.T @ xs, r.sum(0)

    g_w, g_b = grad(w0, b0)
    g_w, g_b = g_w * m_w, g_b * m_b
    norm = torch.sqrt(g_w.pow(2).sum() + g_b.pow(2).sum())
    s_w, s_b = grad(w0 + rho * g_w / norm, b0 + rho * g_b / norm)
    assert torch.allclose(new[1].weight.detach(), w0 - lr * m_w * s_w, atol=1e-6)
    assert torch.allclose(new[1].bias.detach(), b0 - lr * m_b * s_b, atol=1e-6)
    plain = w0 - lr * g_w  # the step without the ascent is a different point
    assert (new[1].weight.detach() - plain).abs().max() > 1e-4
    assert log["steps"] == 1


def test_rho_is_checked_and_the_entry_is_registered():
    spec = unlearning.METHODS["masked_sam"]
    finetune = unlearning.METHODS["masked_finetune"]
    assert spec.defaults == {**finetune.defaults, "rho": 0.05} and spec.needs_correction and spec.multi_step
    assert spec.label and spec.description
    with pytest.raises(ConfigError, match="unlearning.rho"):
        unlearning.check_hparams({"rho": -0.1}, method="masked_sam")
    with pytest.raises(ConfigError, match="unlearning.rho"):
        unlearning.check_hparams({"rho": 0.1}, method="masked_finetune")
