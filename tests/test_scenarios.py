"""Forget scenarios: what is poisoned, what is corrected, and the validation of parameters."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import scenarios
from core.errors import ConfigError


def test_backdoor_stamps_trigger_and_relabels(digits):
    fs = scenarios.build(digits, "backdoor", seed=0, size=60, target=0, patch=3)
    idx = fs.forget_idx
    assert len(idx) == 60 and len(set(idx.tolist())) == 60
    assert (digits.y_train[idx] != 0).all(), "only non-target samples are poisoned"
    assert (fs.y_train[idx] == 0).all()
    assert torch.equal(fs.y_true, digits.y_train)
    # the patch is a 3x3 checkerboard (1 on even cells, 0 on odd) in the bottom-right corner
    checker = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    assert (fs.x_train[idx][:, 0, 5:, 5:] == checker).all()
    assert torch.equal(fs.x_train[idx][..., :5, :], digits.x_train[idx][..., :5, :])
    retain = fs.retain_idx
    assert torch.equal(fs.x_train[retain], digits.x_train[retain])
    assert len(retain) + len(idx) == len(digits.y_train)
    # D̃_f: clean images with true labels
    x_c, y_c = fs.corrected
    assert torch.equal(x_c, digits.x_train[idx]) and torch.equal(y_c, digits.y_train[idx])
    # attack set: triggered non-target test images labelled with the target
    x_t, y_t = fs.eval_sets["triggered_test"]
    assert len(x_t) == int((digits.y_test != 0).sum()) and (y_t == 0).all()
    assert (x_t[:, 0, 5:, 5:] == checker).all()
    solid = scenarios.build(digits, "backdoor", seed=0, size=5, patch=2, value=0.5, pattern="solid")
    assert (solid.x_train[solid.forget_idx][..., 6:, 6:] == 0.5).all()
    x_r, y_r = fs.retrain_data()
    assert len(y_r) == len(digits.y_train) and int((y_r == 0).sum()) == int((digits.y_train == 0).sum())


def test_backdoor_correct_labels_keeps_trigger(digits):
    fs = scenarios.build(digits, "backdoor", seed=1, size=10, target=3, correct="labels")
    x_c, y_c = fs.corrected
    assert torch.equal(x_c, fs.x_train[fs.forget_idx])
    assert torch.equal(y_c, digits.y_train[fs.forget_idx])


def test_label_flip_default_map(digits):
    fs = scenarios.build(digits, "label_flip", seed=0, fraction=0.2)
    idx = fs.forget_idx
    assert len(idx) == round(0.2 * len(digits.y_train))
    assert torch.equal(fs.y_train[idx], 9 - digits.y_train[idx])
    assert (fs.y_train[idx] != digits.y_train[idx]).all()
    fs2 = scenarios.build(digits, "label_flip", seed=0, size=30, to=7)
    assert (fs2.y_train[fs2.forget_idx] == 7).all() and (digits.y_train[fs2.forget_idx] != 7).all()


def test_label_flip_source_flips_only_that_class(digits):
    n3 = int((digits.y_train == 3).sum())
    fs = scenarios.build(digits, "label_flip", seed=0, size=n3, source=3, to=8)
    idx = fs.forget_idx
    assert set(idx.tolist()) == set((digits.y_train == 3).nonzero().squeeze(1).tolist())
    assert (fs.y_train[idx] == 8).all() and torch.equal(fs.corrected[1], digits.y_train[idx])
    untouched = torch.ones(len(digits.y_train), dtype=torch.bool)
    untouched[idx] = False
    assert torch.equal(fs.y_train[untouched], digits.y_train[untouched])
    half = scenarios.build(digits, "label_flip", seed=1, size=n3 // 2, source=3)
    assert (digits.y_train[half.forget_idx] == 3).all() and (half.y_train[half.forget_idx] == 6).all()
    # a fraction counts all training labels, so more than one class's worth names the class
    with pytest.raises(ConfigError, match="only .* flippable samples of class 3 exist") as e:
        scenarios.build(digits, "label_flip", fraction=0.5, source=3)
    assert e.value.field == "scenario.fraction"
    with pytest.raises(ConfigError, match="no training sample would change") as e:
        scenarios.build(digits, "label_flip", source=7, to=7)
    assert e.value.field == "scenario.source"


def test_removal_scenarios(digits):
    fs = scenarios.build(digits, "random_samples", seed=0, size=50)
    assert fs.is_removal and len(fs.retrain_data()[1]) == len(digits.y_train) - 50
    fc = scenarios.build(digits, "class", **{"class": 4})
    assert int((fc.retrain_data()[1] == 4).sum()) == 0
    assert (fc.eval_sets["forgotten_class_test"][1] == 4).all()


def test_indices_scenario(digits):
    fs = scenarios.build(digits, "indices", indices=[5, 3, 5, 9], corruption="label", to=2)
    assert fs.forget_idx.tolist() == [3, 5, 9] and (fs.y_train[fs.forget_idx] == 2).all()
    fb = scenarios.build(digits, "indices", indices=[0, 1], corruption="backdoor", target=1)
    assert (fb.y_train[[0, 1]] == 1).all() and "triggered_test" in fb.eval_sets
    fr = scenarios.build(digits, "indices", indices=[0, 1])
    assert fr.is_removal


@pytest.mark.parametrize(
    "kind, params, field",
    [
        ("backdoor", {"size": -1}, "scenario.size"),
        ("backdoor", {"size": 100_000}, "scenario.size"),
        ("backdoor", {"target": 10}, "scenario.target"),
        ("backdoor", {"target": "zero"}, "scenario.target"),
        ("backdoor", {"patch": 5}, "scenario.patch"),
        ("backdoor", {"position": "middle"}, "scenario.position"),
        ("backdoor", {"pattern": "stripes"}, "scenario.pattern"),
        ("backdoor", {"colour": 1}, "scenario.colour"),
        ("label_flip", {"fraction": 1.5}, "scenario.fraction"),
        ("label_flip", {"to": -1}, "scenario.to"),
        ("label_flip", {"source": 10}, "scenario.source"),
        ("label_flip", {"source": True}, "scenario.source"),
        ("class", {"class": 12}, "scenario.class"),
        ("indices", {"indices": []}, "scenario.indices"),
        ("indices", {"indices": [99999]}, "scenario.indices"),
        ("indices", {"indices": [1], "corruption": "blur"}, "scenario.corruption"),
        ("nonsense", {}, "scenario.kind"),
    ],
)
def test_bad_parameters_name_the_field(digits, kind, params, field):
    with pytest.raises(ConfigError) as e:
        scenarios.build(digits, kind, **params)
    assert e.value.field == field


def test_backdoor_needs_other_classes(digits):
    one_class = digits.subset(seed=0)
    one_class.y_train = torch.zeros_like(one_class.y_train)
    with pytest.raises(ConfigError, match="scenario.size"):
        scenarios.build(one_class, "backdoor", size=5, target=0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(1, 400), seed=st.integers(0, 10_000), target=st.integers(0, 9))
def test_backdoor_partition_property(digits, size, seed, target):
    fs = scenarios.build(digits, "backdoor", seed=seed, size=size, target=target)
    assert len(fs.forget_idx) == size
    assert (fs.y_train[fs.forget_idx] == target).all()
    assert (digits.y_train[fs.forget_idx] != target).all()
    changed = (fs.x_train != digits.x_train).flatten(1).any(1) | (fs.y_train != digits.y_train)
    assert set(changed.nonzero().squeeze(1).tolist()) <= set(fs.forget_idx.tolist())


def test_scenario_seed_draws_the_forget_set(digits):
    by_run = scenarios.from_config(digits, {"kind": "random_samples", "size": 40}, seed=1)
    fixed = [
        scenarios.from_config(digits, {"kind": "random_samples", "size": 40, "seed": 7}, seed=s)
        for s in (1, 2)
    ]
    assert torch.equal(fixed[0].forget_idx, fixed[1].forget_idx)
    assert torch.equal(
        fixed[0].forget_idx, scenarios.build(digits, "random_samples", seed=7, size=40).forget_idx
    )
    assert not torch.equal(by_run.forget_idx, fixed[0].forget_idx)
    assert torch.equal(
        by_run.forget_idx, scenarios.build(digits, "random_samples", seed=1, size=40).forget_idx
    )
    with pytest.raises(ConfigError) as e:
        scenarios.from_config(digits, {"kind": "backdoor", "size": 5, "seed": -3}, seed=0)
    assert e.value.field == "scenario.seed"


@pytest.mark.parametrize(
    "scenario, removal, method",
    [
        ({"kind": "backdoor"}, False, "masked_finetune"),
        ({"kind": "label_flip", "size": 5}, False, "masked_finetune"),
        ({"kind": "random_samples"}, True, "neggrad"),
        ({"kind": "class", "class": 3}, True, "neggrad"),
        ({"kind": "indices", "indices": [1, 2]}, True, "neggrad"),
        ({"kind": "indices", "indices": [1, 2], "corruption": "label"}, False, "masked_finetune"),
        ({"kind": "indices", "indices": [1, 2], "corruption": "backdoor"}, False, "masked_finetune"),
    ],
)
def test_removal_and_default_method_agree_with_the_built_set(digits, scenario, removal, method):
    assert scenarios.is_removal(scenario) is removal
    assert scenarios.default_method(scenario) == method
    assert scenarios.from_config(digits, scenario, seed=0).is_removal is removal


def test_registry_entries_carry_their_metadata(digits):
    for name, entry in scenarios.SCENARIOS.items():
        assert entry.name == name and entry.label and entry.description
        assert "seed" in entry.options
    with pytest.raises(ConfigError) as e:
        scenarios.build(digits, "class", size=3)
    assert e.value.field == "scenario.size" and "allowed" in e.value.message


@pytest.mark.parametrize("kind", ["backdoor", "label_flip", "random_samples", "class", "indices"])
def test_documented_defaults_are_the_builders_defaults(digits, kind):
    given = {"indices": [4, 8]} if kind == "indices" else {}
    explicit = {k: v for k, v in scenarios.SCENARIOS[kind].options.items() if v is not None and k != "seed"}
    a = scenarios.build(digits, kind, seed=3, **given)
    b = scenarios.build(digits, kind, seed=3, **{**explicit, **given})
    assert torch.equal(a.forget_idx, b.forget_idx) and torch.equal(a.x_train, b.x_train)
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.corrected_y, b.corrected_y)
