"""Config validation: defaults, and errors that name the bad field."""

from __future__ import annotations

import pytest
import torch

from core import config
from core.errors import ConfigError


def test_defaults_make_the_digits_demo():
    cfg = config.normalize({})
    assert cfg["dataset"] == "digits" and cfg["model"] == "cnn"
    assert cfg["scenario"]["kind"] == "backdoor" and cfg["train"]["epochs"] > 0
    assert config.normalize(cfg) == cfg, "normalize is idempotent"


def test_partial_sections_keep_defaults():
    cfg = config.normalize({"train": {"epochs": 3}, "scenario": {"kind": "label_flip", "size": 10}})
    assert cfg["train"]["lr"] == config.DEFAULTS["train"]["lr"] and cfg["train"]["epochs"] == 3
    assert cfg["scenario"] == {"kind": "label_flip", "size": 10}


@pytest.mark.parametrize(
    "cfg, field",
    [
        ({"dataset": "imagenet"}, "dataset"),
        ({"model": "vgg"}, "model"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"device": "tpu"}, "device"),
        ({"colour": "red"}, "colour"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"train": {"lr": -0.1}}, "train.lr"),
        ({"train": {"lr": float("nan")}}, "train.lr"),
        ({"train": {"momentum": 0.9}}, "train.momentum"),
        ({"train": {"schedule": "step"}}, "train.schedule"),
        ({"train": {"schedule": 1}}, "train.schedule"),
        ({"scenario": {"kind": "poison"}}, "scenario.kind"),
        ({"scenario": "backdoor"}, "scenario"),
        ({"curvature": {"method": "kfac"}}, "curvature.method"),
        ({"strategies": [{"name": "best"}]}, "strategies[0].name"),
        ({"strategies": [{"name": "saps", "fraction": 0}]}, "strategies[0].fraction"),
        ({"strategies": [{"name": "saps", "fraction": 1.5}]}, "strategies[0].fraction"),
        ({"strategies": [{"name": "saps", "largest": "yes"}]}, "strategies[0].largest"),
        ({"strategies": "saps"}, "strategies"),
        ({"strategies": [{"name": "all", "fraction": 0.1}]}, "strategies[0].fraction"),
        ({"strategies": ["saps", {"name": "last_layer", "quantile": 0.5}]}, "strategies[1].quantile"),
        ({"unlearning": {"method": "magic"}}, "unlearning.method"),
        ({"unlearning": {"lr": 0}}, "unlearning.lr"),
        ({"unlearning": {"lr": -1}}, "unlearning.lr"),
        ({"retrain": "yes"}, "retrain"),
        ({"seeds": [0, 1]}, "seeds"),
    ],
)
def test_bad_values_name_the_field(cfg, field):
    with pytest.raises(ConfigError) as e:
        config.normalize(cfg)
    assert e.value.field == field
    assert field.split(".")[-1].split("[")[0] in str(e.value)


def test_sweep_lists():
    cfg = config.normalize(
        {"seeds": [0, 1], "fractions": [0.01, 0.1], "methods": ["first_order"]}, sweep=True
    )
    assert cfg["seeds"] == [0, 1] and cfg["fractions"] == [0.01, 0.1]
    removal = {"scenario": {"kind": "class"}}
    for bad, field in [
        ({"seeds": []}, "seeds"),
        ({"fractions": [2]}, "fractions[0]"),
        ({"methods": ["x"]}, "methods[0]"),
        ({**removal, "methods": ["neggrad", "masked_finetune"]}, "methods[1]"),
    ]:
        with pytest.raises(ConfigError) as e:
            config.normalize(bad, sweep=True)
        assert e.value.field == field


def test_load_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        config.load_file(tmp_path / "nope.json")
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        config.load_file(p)
    p.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        config.load_file(p)


@pytest.mark.parametrize(
    "scenario, method",
    [
        ({"kind": "backdoor"}, "masked_finetune"),
        ({"kind": "label_flip", "size": 20}, "masked_finetune"),
        ({"kind": "random_samples"}, "neggrad"),
        ({"kind": "class", "class": 2}, "neggrad"),
        ({"kind": "indices", "indices": [3]}, "neggrad"),
        ({"kind": "indices", "indices": [3], "corruption": "label"}, "masked_finetune"),
    ],
)
def test_the_scenario_names_the_default_method(scenario, method):
    cfg = config.normalize({"scenario": scenario})
    assert cfg["unlearning"]["method"] == method
    assert config.normalize(cfg) == cfg
    chosen = config.normalize({"scenario": scenario, "unlearning": {"method": "finetune"}})
    assert chosen["unlearning"]["method"] == "finetune"


def test_methods_needing_corrected_samples_are_refused_on_removal():
    from core.unlearning import METHODS

    needing = [n for n, m in METHODS.items() if m.needs_correction]
    usable = [n for n, m in METHODS.items() if not m.needs_correction]
    assert "masked_finetune" in needing and "neggrad" in usable
    for method in needing:
        with pytest.raises(ConfigError) as e:
            config.normalize({"scenario": {"kind": "random_samples"}, "unlearning": {"method": method}})
        assert e.value.field == "unlearning.method" and str(usable) in e.value.message
        config.normalize({"scenario": {"kind": "backdoor"}, "unlearning": {"method": method}})


def test_the_retired_iterative_name_points_to_its_successors():
    with pytest.raises(ConfigError) as e:
        config.normalize({"unlearning": {"method": "iterative"}})
    assert e.value.field == "unlearning.method"
    assert "masked_finetune" in e.value.message and "warnecke_iterative" in e.value.message


def test_method_options_are_the_methods_own():
    with pytest.raises(ConfigError) as e:
        config.normalize({"unlearning": {"method": "ssd", "steps": 5}})
    assert e.value.field == "unlearning.steps"
    sweep = {"methods": ["ssd", "neggrad"], "unlearning": {"steps": 5}}
    assert config.normalize(sweep, sweep=True)["unlearning"]["steps"] == 5  # shared by a sweep


def test_corrected_curvature_data_is_refused_for_removal():
    with pytest.raises(ConfigError) as e:
        config.normalize({"scenario": {"kind": "class"}, "curvature": {"data": "corrected"}})
    assert e.value.field == "curvature.data" and "'full'" in e.value.message
    assert config.normalize({"curvature": {"data": "corrected"}})["curvature"]["data"] == "corrected"


@pytest.mark.parametrize(
    "scenario, field",
    [
        ({"kind": "backdoor", "class": 3}, "scenario.class"),
        ({"kind": "class", "size": 3}, "scenario.size"),
        ({"kind": "random_samples", "seed": -1}, "scenario.seed"),
        ({"kind": "random_samples", "seed": "7"}, "scenario.seed"),
    ],
)
def test_scenario_keys_are_checked_at_normalize_time(scenario, field):
    with pytest.raises(ConfigError) as e:
        config.normalize({"scenario": scenario})
    assert e.value.field == field


def test_scenario_seed_is_kept():
    cfg = config.normalize({"scenario": {"kind": "random_samples", "size": 10, "seed": 7}})
    assert cfg["scenario"]["seed"] == 7


def test_empty_retain_set_is_refused_before_training(digits):
    from core import scenarios

    cfg = config.normalize(
        {"scenario": {"kind": "label_flip", "fraction": 1.0}, "unlearning": {"method": "neggrad"}}
    )
    forget_set = scenarios.from_config(digits, cfg["scenario"], cfg["seed"])
    assert len(forget_set.retain_idx) == 0  # every digit label changes under s -> 9 - s
    with pytest.raises(ConfigError) as e:
        config.check_feasible(cfg, forget_set)
    assert e.value.field == "scenario.fraction" and "neggrad" in e.value.message
    ok = config.normalize(
        {"scenario": {"kind": "label_flip", "fraction": 0.5}, "unlearning": {"method": "neggrad"}}
    )
    config.check_feasible(ok, scenarios.from_config(digits, ok["scenario"], ok["seed"]))
    retain_curvature = config.normalize(
        {
            "scenario": {"kind": "label_flip", "fraction": 1.0},
            "curvature": {"data": "retain"},
            "unlearning": {"method": "ssd"},
        }
    )
    with pytest.raises(ConfigError) as e:
        config.check_feasible(retain_curvature, forget_set)
    assert e.value.field == "curvature.data"


def test_strategy_options_come_from_the_registry():
    cfg = config.normalize({"strategies": ["random", {"name": "saps", "signed": True, "fraction": 0.1}]})
    assert cfg["strategies"][0] == {"name": "random", "live": True, "largest": True}
    assert cfg["strategies"][1]["signed"] is True
    for bad, field in [
        ({"name": "random", "signed": True}, "strategies[0].signed"),
        ({"name": "saps", "live": False}, "strategies[0].live"),
        ({"name": "random", "live": "no"}, "strategies[0].live"),
        ({"name": "saps", "quantile": 1.0}, "strategies[0].quantile"),
    ]:
        with pytest.raises(ConfigError) as e:
            config.normalize({"strategies": [bad]})
        assert e.value.field == field


def test_a_toy_strategy_with_one_registry_entry_is_accepted(monkeypatch):
    from core import selection

    toy = selection.Strategy(
        name="toy",
        label="toy",
        description="ranks by a constant",
        score=lambda model, request: {n: torch.ones(p.shape) for n, p in model.named_parameters()},
        options={"spread": 0.5},
    )
    monkeypatch.setitem(selection.STRATEGIES, "toy", toy)
    cfg = config.normalize({"strategies": [{"name": "toy", "fraction": 0.1}]})
    assert cfg["strategies"] == [{"name": "toy", "fraction": 0.1, "spread": 0.5, "largest": True}]
    with pytest.raises(ConfigError) as e:
        config.normalize({"strategies": [{"name": "toy", "spread": "wide"}]})
    assert e.value.field == "strategies[0].spread"


def test_registries_decide_the_allowed_names(monkeypatch):
    from core import data, models

    monkeypatch.setitem(data.DATASETS, "toyset", data.DATASETS["digits"])
    monkeypatch.setitem(models.MODELS, "toynet", models.MODELS["mlp"])
    cfg = config.normalize({"dataset": "toyset", "model": "toynet"})
    assert (cfg["dataset"], cfg["model"]) == ("toyset", "toynet")


def test_curvature_samples_is_optional_checked_and_keys_the_curvature_cache():
    from core import artifacts

    plain = config.normalize({})
    assert "samples" not in plain["curvature"]  # absent unless given: existing keys unchanged
    assert config.normalize({"curvature": {"samples": None}}) == plain
    sub = config.normalize({"curvature": {"samples": 256}})
    assert sub["curvature"]["samples"] == 256 and config.normalize(sub) == sub
    assert artifacts.curvature_key(sub) != artifacts.curvature_key(plain)
    assert artifacts.curvature_key(sub) != artifacts.curvature_key(
        config.normalize({"curvature": {"samples": 128}})
    )
    assert artifacts.model_key(sub, "original") == artifacts.model_key(plain, "original")
    for bad in (0, -3, 1.5, "all", True):
        with pytest.raises(ConfigError) as e:
            config.normalize({"curvature": {"samples": bad}})
        assert e.value.field == "curvature.samples"


def test_train_schedule_is_optional_and_keys_the_trained_models():
    from core import artifacts

    plain = config.normalize({})
    assert "schedule" not in plain["train"]  # "constant" is the old behaviour: keys unchanged
    assert config.normalize({"train": {"schedule": "constant"}}) == plain
    cos = config.normalize({"train": {"schedule": "cosine"}})
    assert cos["train"]["schedule"] == "cosine" and config.normalize(cos) == cos
    for role in ("original", "retrained"):
        assert artifacts.model_key(cos, role) != artifacts.model_key(plain, role)


def test_a_new_estimator_is_accepted_from_its_registry_entry():
    cfg = config.normalize({"curvature": {"method": "ggn_mc"}})
    assert cfg["curvature"]["method"] == "ggn_mc"


def test_align_needs_corrected_samples_paired_with_the_forget_set_before_training(digits):
    import dataclasses

    from core import scenarios

    cfg = config.normalize({"scenario": {"kind": "backdoor", "size": 20}, "unlearning": {"align": 1.0}})
    forget_set = scenarios.from_config(digits, cfg["scenario"], cfg["seed"])
    config.check_feasible(cfg, forget_set)  # a backdoor: each D_f image has its clean twin
    unpaired = dataclasses.replace(
        forget_set, corrected_x=forget_set.corrected_x[:7], corrected_y=forget_set.corrected_y[:7]
    )
    with pytest.raises(ConfigError) as e:
        config.check_feasible(cfg, unpaired)
    assert e.value.field == "unlearning.align" and "7 corrected vs 20 forget" in e.value.message
    config.check_feasible(config.normalize({**cfg, "unlearning": {"align": 0.0}}), unpaired)
