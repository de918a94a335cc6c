"""The relearning curve tells a model that forgot the trigger from one that only hid it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core import experiment, metrics
from core.store import RunStore
from tests.conftest import small_config


def _backdoor(digits):
    from core import scenarios

    fs = scenarios.build(digits, "backdoor", seed=0, size=30, target=0)
    torch.manual_seed(0)
    return fs, nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def test_curve_is_one_attack_recorded_along_the_way(digits):
    fs, model = _backdoor(digits)
    before = [p.detach().clone() for p in model.parameters()]
    curve = metrics.relearn_curve(model, fs, samples=30, steps=20, lr=0.05)
    assert curve["steps"] == [0, 1, 2, 5, 10, 20]
    assert curve["value"][0] == metrics.attack_success_rate(model, fs)
    assert curve["value"][-1] > curve["value"][0]  # 30 poisoned samples at lr 0.05 implant the trigger
    # full-batch Adam is deterministic: a separate attack of k steps ends where the curve says
    for k, v in zip(curve["steps"][1:], curve["value"][1:]):
        assert metrics.relearn_curve(model, fs, samples=30, steps=k, lr=0.05)["value"][-1] == v
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before)), "the attack works on a copy"


def test_checkpoints_for_other_lengths():
    assert metrics.relearn.checkpoints(7) == [0, 1, 2, 5, 7]
    assert metrics.relearn.checkpoints(50) == [0, 1, 2, 5, 10, 20, 50]


def test_removal_success_is_forget_accuracy(digits):
    from core import scenarios

    fs = scenarios.build(digits, "random_samples", seed=0, size=30)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    curve = metrics.relearn_curve(model, fs, steps=0)
    with torch.no_grad():
        x, y = fs.forget
        acc = float((model(x).argmax(1) == y).float().mean())
    assert curve == {"steps": [0], "value": [pytest.approx(acc)]}


@pytest.mark.slow
def test_relearning_separates_retrained_from_original(tmp_path):
    cfg = experiment.config_mod.normalize(small_config())
    prepared = experiment.prepare(cfg)
    store = RunStore(tmp_path)
    original, _ = experiment.train_model(cfg, prepared, "original", store=store)
    retrained, _ = experiment.train_model(cfg, prepared, "retrained", store=store)
    fs = prepared.forget_set
    before = metrics.attack_success_rate(retrained, fs)
    after_retrained = metrics.relearn_curve(retrained, fs, seed=0)["value"][-1]
    after_original = metrics.relearn_curve(original, fs, seed=0)["value"][-1]
    assert after_original >= 0.9
    # the retrained model never learned the trigger: 10 poisoned samples among 90 clean ones
    # do not implant it in 20 small steps (a poisoned-only attack would give ~0.9 here)
    assert after_retrained <= 0.5 and after_retrained >= before
    poisoned_only = metrics.relearn_curve(retrained, fs, clean=0, seed=0)["value"][-1]
    assert poisoned_only > after_retrained
