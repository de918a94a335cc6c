"""Run and sweep configs: defaults and validation at the edge.

`normalize(config)` returns a complete config (defaults filled in) or raises ConfigError
naming the first bad field and the allowed values. Checks that need the data (a class index
out of range, a forget set larger than the data) happen when the scenario is built, still
before anything is trained or stored.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from core.errors import ConfigError

DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "npz")
MODELS = ("mlp", "cnn", "resnet18")
SCENARIOS = ("backdoor", "label_flip", "random_samples", "class", "indices")
CURVATURE_METHODS = ("exact", "ggn", "hutchinson", "fisher", "empirical_fisher")
CURVATURE_DATA = ("full", "retain", "forget", "corrected")
STRATEGIES = ("saps", "random", "magnitude", "gradient", "fisher", "last_layer", "all")
METHODS = ("first_order", "second_order", "iterative", "finetune", "neggrad", "ssd", "retrain")
DEVICES = ("auto", "cpu", "cuda", "mps")

DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "root": None,
    "train_size": None,
    "test_size": None,
    "model": "cnn",
    "seed": 0,
    "device": "auto",
    "scenario": {"kind": "backdoor", "size": 60, "target": 0},
    "train": {"epochs": 30, "lr": 0.003, "batch_size": 64, "optimizer": "adam", "weight_decay": 0.0},
    "curvature": {"method": "exact", "data": "full", "batch_size": 256, "probes": 20},
    "strategies": [
        {"name": "saps", "fraction": 0.02, "largest": True},
        {"name": "random", "fraction": 0.02},
        {"name": "all"},
    ],
    # iterative: the only method that removes most of a backdoor in a few masked steps (PAPER.md,
    # benchmarks/results/saps_claims.md). 10 full-batch Adam steps on D_f ∪ D̃_f plus one fixed
    # retain batch, lr "auto" guarded on a validation split of D_r: ~0.7 removal at 2 % of the
    # parameters in ~5 % of the retraining time on digits (20 steps took ~15 % for similar removal)
    "unlearning": {"method": "iterative", "steps": 10, "lr": "auto"},
    "retrain": True,
    "metrics": {"mia": True, "relearn": True},
}
SWEEP_KEYS = ("seeds", "fractions", "methods")
STRATEGY_KEYS = {"name", "fraction", "largest", "per_layer", "include_zero", "signed",
                 "threshold", "quantile"}  # fmt: skip


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _choice(value: Any, allowed: tuple[str, ...], field: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(field, f"{value!r} is not allowed; choose one of {list(allowed)}")
    return value


def _pos_int(value: Any, field: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        hi = f"..{maximum}" if maximum is not None else " or more"
        raise ConfigError(field, f"must be an integer {minimum}{hi}, got {value!r}")
    return value


def _pos_num(value: Any, field: str) -> float:
    if not _is_num(value) or value <= 0:
        raise ConfigError(field, f"must be a positive number, got {value!r}")
    return float(value)


def check_fraction(value: Any, field: str = "fraction") -> float:
    """A budget fraction in (0, 1]."""
    if not _is_num(value) or not 0 < value <= 1:
        raise ConfigError(field, f"must be a number in (0, 1], got {value!r}")
    return float(value)


def _dict(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(field, f"must be an object, got {type(value).__name__}")
    return value


def _merge_section(cfg: dict, name: str, allowed: set[str] | None = None) -> dict:
    given = _dict(cfg.get(name, {}), name)
    out = {**DEFAULTS[name], **given}
    if allowed is not None:
        for k in given:
            if k not in allowed:
                raise ConfigError(f"{name}.{k}", f"unknown key; allowed: {sorted(allowed)}")
    return out


def normalize_strategy(s: Any, field: str) -> dict:
    if isinstance(s, str):
        s = {"name": s}
    s = dict(_dict(s, field))
    for k in s:
        if k not in STRATEGY_KEYS:
            raise ConfigError(f"{field}.{k}", f"unknown key; allowed: {sorted(STRATEGY_KEYS)}")
    _choice(s.get("name"), STRATEGIES, f"{field}.name")
    if s.get("fraction") is not None:
        s["fraction"] = check_fraction(s["fraction"], f"{field}.fraction")
    for flag in ("largest", "per_layer", "include_zero", "signed"):
        if flag in s and not isinstance(s[flag], bool):
            raise ConfigError(f"{field}.{flag}", f"must be true or false, got {s[flag]!r}")
    if s.get("quantile") is not None:
        q = s["quantile"]
        if not _is_num(q) or not 0 <= q < 1:
            raise ConfigError(f"{field}.quantile", f"must be a number in [0, 1), got {q!r}")
    if s.get("threshold") is not None and not _is_num(s["threshold"]):
        raise ConfigError(f"{field}.threshold", f"must be a number, got {s['threshold']!r}")
    s.setdefault("largest", True)
    return s


def normalize_unlearning(u: dict) -> dict:
    """The "unlearning" section: method and step budget here, every other hyper-parameter by
    the method registry that owns it (core.unlearning.check_hparams)."""
    from core.unlearning import check_hparams

    u = dict(u)
    _choice(u.get("method"), METHODS, "unlearning.method")
    u["steps"] = _pos_int(u.get("steps"), "unlearning.steps", maximum=100_000)
    check_hparams(u)
    return u


def normalize(config: Any, *, sweep: bool = False) -> dict:
    """Fill defaults into `config` and validate every field; raises ConfigError."""
    cfg = copy.deepcopy(_dict(config if config is not None else {}, "config"))
    allowed = set(DEFAULTS) | (set(SWEEP_KEYS) if sweep else set())
    for k in cfg:
        if k not in allowed:
            hint = " (sweep keys belong in a sweep config)" if k in SWEEP_KEYS else ""
            raise ConfigError(k, f"unknown key{hint}; allowed: {sorted(allowed)}")
    out: dict[str, Any] = {}
    out["dataset"] = _choice(cfg.get("dataset", DEFAULTS["dataset"]), DATASETS, "dataset")
    root = cfg.get("root")
    if root is not None and not isinstance(root, str):
        raise ConfigError("root", f"must be a folder or file path (string), got {root!r}")
    out["root"] = root
    for k in ("train_size", "test_size"):
        v = cfg.get(k)
        out[k] = None if v is None else _pos_int(v, k)
    out["model"] = _choice(cfg.get("model", DEFAULTS["model"]), MODELS, "model")
    out["seed"] = _pos_int(cfg.get("seed", 0), "seed", minimum=0, maximum=2**31 - 1)
    out["device"] = cfg.get("device", "auto")
    if not isinstance(out["device"], str) or out["device"].split(":")[0] not in DEVICES:
        raise ConfigError("device", f"{out['device']!r} is not allowed; choose one of {list(DEVICES)}")

    if "scenario" in cfg:
        sc = dict(_dict(cfg["scenario"], "scenario"))
        sc.setdefault("kind", "backdoor")
    else:
        sc = dict(DEFAULTS["scenario"])
    _choice(sc["kind"], SCENARIOS, "scenario.kind")
    out["scenario"] = sc

    tr = _merge_section(cfg, "train", set(DEFAULTS["train"]))
    tr["epochs"] = _pos_int(tr["epochs"], "train.epochs", maximum=10_000)
    tr["lr"] = _pos_num(tr["lr"], "train.lr")
    tr["batch_size"] = _pos_int(tr["batch_size"], "train.batch_size", maximum=1_000_000)
    _choice(tr["optimizer"], ("adam", "sgd"), "train.optimizer")
    if not _is_num(tr["weight_decay"]) or tr["weight_decay"] < 0:
        raise ConfigError("train.weight_decay", f"must be a number ≥ 0, got {tr['weight_decay']!r}")
    out["train"] = tr

    cv = _merge_section(cfg, "curvature", set(DEFAULTS["curvature"]))
    _choice(cv["method"], CURVATURE_METHODS, "curvature.method")
    _choice(cv["data"], CURVATURE_DATA, "curvature.data")
    cv["batch_size"] = _pos_int(cv["batch_size"], "curvature.batch_size", maximum=1_000_000)
    cv["probes"] = _pos_int(cv["probes"], "curvature.probes", maximum=100_000)
    out["curvature"] = cv

    strategies = cfg.get("strategies", DEFAULTS["strategies"])
    if not isinstance(strategies, list):
        raise ConfigError("strategies", 'must be a list of strategies, e.g. [{"name": "saps"}]')
    out["strategies"] = [normalize_strategy(s, f"strategies[{i}]") for i, s in enumerate(strategies)]

    out["unlearning"] = normalize_unlearning(
        {**DEFAULTS["unlearning"], **_dict(cfg.get("unlearning", {}), "unlearning")}
    )
    if not isinstance(cfg.get("retrain", True), bool):
        raise ConfigError("retrain", f"must be true or false, got {cfg['retrain']!r}")
    out["retrain"] = cfg.get("retrain", True)
    out["metrics"] = _merge_section(cfg, "metrics", set(DEFAULTS["metrics"]))
    for k, v in out["metrics"].items():
        if not isinstance(v, bool):
            raise ConfigError(f"metrics.{k}", f"must be true or false, got {v!r}")

    if sweep:
        out["seeds"] = cfg.get("seeds", [out["seed"]])
        if not isinstance(out["seeds"], list) or not out["seeds"]:
            raise ConfigError("seeds", "must be a non-empty list of integers")
        for i, s in enumerate(out["seeds"]):
            _pos_int(s, f"seeds[{i}]", minimum=0, maximum=2**31 - 1)
        fr = cfg.get("fractions")
        if fr is not None:
            if not isinstance(fr, list) or not fr:
                raise ConfigError("fractions", "must be a non-empty list of numbers in (0, 1]")
            fr = [check_fraction(f, f"fractions[{i}]") for i, f in enumerate(fr)]
        out["fractions"] = fr
        me = cfg.get("methods", [out["unlearning"]["method"]])
        if not isinstance(me, list) or not me:
            raise ConfigError("methods", f"must be a non-empty list of {list(METHODS)}")
        out["methods"] = [_choice(m, METHODS, f"methods[{i}]") for i, m in enumerate(me)]
    return out


def load_file(path: str | Path) -> dict:
    """Read a JSON config file; a missing or malformed file is a ConfigError on `--config`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError("--config", f"cannot read {path}: {e.strerror or e}") from e
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError("--config", f"{path} is not valid JSON (line {e.lineno}: {e.msg})") from e
    if not isinstance(cfg, dict):
        raise ConfigError("--config", f"{path} must hold a JSON object")
    return cfg
