"""The home page's guided path: six numbered steps, two sentences each, every formula once and
as the code computes it, the method reference from the repository, metrics that follow the
chosen data."""

from __future__ import annotations

import re

import pytest
import torch

from tests.ui.conftest import app, assert_clean
from tests.ui.test_pages import fake_result
from ui import choices


def _steps(at):
    return [e for e in at.expander if re.match(r"\*\*\d · ", e.label)]


def test_six_numbered_steps_each_explained_in_two_sentences():
    at = app()
    assert_clean(at)
    steps = _steps(at)
    assert [int(e.label[2]) for e in steps] == [1, 2, 3, 4, 5, 6]
    assert "Run the demo" in steps[1].label and steps[1].proto.expanded  # the demo step opens first
    for e in steps:
        text = next(m.value for m in e.markdown if not m.value.startswith("#"))
        sentences = [x for x in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9θ])", text.strip()) if x]
        assert len(sentences) == 2, (e.label, sentences)
    assert "http" not in " ".join(m.value for m in at.markdown)  # nothing outside the repository


def test_every_formula_is_shown_once():
    at = app()
    formulas = [x.value for x in at.latex]
    assert len(formulas) == len(set(formulas)) == 5
    text = " ".join(formulas)
    for piece in (
        r"\theta^* - \tau\,(M \odot G)",
        r"H_{ii} = \frac",
        r"G = \sum",
        r"\text{backdoor removal}",
        r"\%\,\text{restored}",
    ):
        assert text.count(piece) == 1, piece


def test_each_step_shows_its_section_of_the_method_reference():
    at = app()
    shown = " ".join(m.value for m in at.markdown)
    for heading in ("Setting", "1. Scores", "2. Selection", "3. Unlearning", "4. Metrics"):
        section = choices.method_section(heading)
        assert len(section) > 200 and section[:80] in shown, heading
    assert choices.method_section("no such heading") == ""


def test_home_metrics_follow_the_chosen_data_set():
    at = app()
    at.session_state["train_result"] = fake_result({"dataset": "digits"})
    at.run()
    labels = {m.label for m in at.metric}
    assert "test accuracy θ*" in labels
    at.selectbox(key="w_dataset_home").set_value("fashion-mnist").run()
    assert_clean(at)
    assert not at.metric  # the digits numbers are hidden for Fashion-MNIST
    assert any("No trained models for this choice yet" in c.value for c in at.caption)
    at.selectbox(key="w_dataset_home").set_value("digits").run()
    assert "test accuracy θ*" in {m.label for m in at.metric}


# -- the formulas as the code computes them ----------------------------------------------------
def test_g_and_the_masked_step_are_what_first_order_computes():
    """θ = θ* − τ (M ⊙ G), G = Σ_{z̃∈D̃_f} ∇ℓ(z̃; θ*) − Σ_{z∈D_f} ∇ℓ(z; θ*), summed cross-entropy."""
    import torch.nn.functional as F

    from core import config as core_config
    from core import experiment, models, unlearning

    cfg = core_config.normalize({"model": "mlp", "scenario": {"kind": "label_flip", "size": 12}})
    p = experiment.prepare(cfg)
    fs = p.forget_set
    model = models.build("mlp", p.dataset, seed=0)
    mask = {
        n: torch.rand(q.shape, generator=torch.Generator().manual_seed(1)) < 0.3
        for n, q in model.named_parameters()
    }
    tau = 1e-3
    new, log = unlearning.unlearn(model, mask, fs, "first_order", seed=0, lr=tau, steps=1, val_tolerance=1.0)
    params = dict(model.named_parameters())
    model.eval()
    (x_c, y_c), (x_f, y_f) = fs.corrected, fs.forget
    loss = F.cross_entropy(model(x_c), y_c, reduction="sum") - F.cross_entropy(
        model(x_f), y_f, reduction="sum"
    )
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    for n, q in new.named_parameters():
        expected = params[n].detach() - tau * mask[n] * grads[n]
        assert torch.allclose(q.detach(), expected, atol=1e-6), n
    assert log["changed"]


def test_backdoor_removal_and_percent_restored_are_what_compare_computes():
    from core import metrics

    original, retrained = {"asr": 0.95, "test_acc": 0.90}, {"asr": 0.05, "test_acc": 0.96}
    m = metrics.compare({"asr": 0.32, "test_acc": 0.93}, original, retrained, n_test=400)
    assert m["backdoor_removal"] == pytest.approx((0.95 - 0.32) / (0.95 - 0.05))
    flip_o, flip_r = {"asr": None, "test_acc": 0.80}, {"asr": None, "test_acc": 0.90}
    m = metrics.compare({"asr": None, "test_acc": 0.87}, flip_o, flip_r, n_test=400)
    assert m["restored_pct"] == pytest.approx(100 * (0.87 - 0.80) / (0.90 - 0.80))
