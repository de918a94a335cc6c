"""Config validation: defaults, and errors that name the bad field."""

from __future__ import annotations

import pytest

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
        ({"scenario": {"kind": "poison"}}, "scenario.kind"),
        ({"scenario": "backdoor"}, "scenario"),
        ({"curvature": {"method": "kfac"}}, "curvature.method"),
        ({"strategies": [{"name": "best"}]}, "strategies[0].name"),
        ({"strategies": [{"name": "saps", "fraction": 0}]}, "strategies[0].fraction"),
        ({"strategies": [{"name": "saps", "fraction": 1.5}]}, "strategies[0].fraction"),
        ({"strategies": [{"name": "saps", "largest": "yes"}]}, "strategies[0].largest"),
        ({"strategies": "saps"}, "strategies"),
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
    cfg = config.normalize({"seeds": [0, 1], "fractions": [0.01, 0.1], "methods": ["first_order"]},
                           sweep=True)  # fmt: skip
    assert cfg["seeds"] == [0, 1] and cfg["fractions"] == [0.01, 0.1]
    for bad, field in [({"seeds": []}, "seeds"), ({"fractions": [2]}, "fractions[0]"),
                       ({"methods": ["x"]}, "methods[0]")]:  # fmt: skip
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
