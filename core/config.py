"""Run and sweep configs: defaults and validation at the edge.

`normalize(config)` returns a complete config (defaults filled in) or raises ConfigError
naming the first bad field and the allowed values. Allowed names and options come from the
registries (core.data.DATASETS, core.models.MODELS, core.scenarios.SCENARIOS,
core.curvature.ESTIMATORS, core.selection.STRATEGIES, core.unlearning.METHODS): adding an entry
there needs no edit here. Without `unlearning.method` the scenario's default method is written
into the normalized config. Checks that need the data (a class index out of range, an empty
retain set) happen when the scenario is built (`check_feasible`), still before anything is
trained or stored.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from core.errors import ConfigError

CURVATURE_DATA = ("full", "retain", "forget", "corrected")
# optional "curvature" keys, left out of the normalized config when null (so the cache keys of
# configs without them do not change): `samples`, the size of the seeded subsample of the
# curvature data (null: all of it; core.curvature.hessian_diagonal's `subsample`)
CURVATURE_OPTIONAL = ("samples",)
# optional "train" key, left out of the normalized config when "constant" (the old behaviour,
# so the cache keys of configs without it do not change): `schedule`, the learning rate over
# the training steps (constant, or cosine decay from lr to 0: core.training.scheduled_lr)
TRAIN_OPTIONAL = ("schedule",)
SCHEDULES = ("constant", "cosine")  # the one list: training, the retrain method and the CLI read it
DEVICES = ("auto", "cpu", "cuda", "mps")


def is_device_name(value: Any) -> bool:
    """auto, cpu, mps, cuda or cuda:N — what torch.device accepts of ours ("cpu:abc" is not)."""
    if not isinstance(value, str):
        return False
    kind, _, index = value.partition(":")
    return kind in DEVICES and (not index or (kind == "cuda" and index.isdigit()))


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
    # "method" defaults to the scenario's (core.scenarios.SCENARIOS[kind].default_method); every
    # other key to the method's own defaults (core.unlearning.METHODS[method].defaults)
    "unlearning": {},
    "retrain": True,
    "metrics": {"mia": True, "relearn": True},
}
SWEEP_KEYS = ("seeds", "fractions", "methods")


def _registry(name: str) -> dict:
    """A registry's entries by name, imported on use (the registries import torch)."""
    if name == "datasets":
        from core.data import DATASETS as reg
    elif name == "models":
        from core.models import MODELS as reg
    elif name == "scenarios":
        from core.scenarios import SCENARIOS as reg
    elif name == "estimators":
        from core.curvature import ESTIMATORS as reg
    elif name == "strategies":
        from core.selection import STRATEGIES as reg
    else:
        from core.unlearning import METHODS as reg
    return reg


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
    """One `strategies[i]` entry: a name or a dict. Keys: name, the budget keys
    (core.selection.BUDGET_KEYS) and the strategy's own options, whose defaults are filled in."""
    from core.selection import BUDGET_KEYS, check_fraction

    if isinstance(s, str):
        s = {"name": s}
    s = dict(_dict(s, field))
    strategies = _registry("strategies")
    entry = strategies[_choice(s.get("name"), tuple(strategies), f"{field}.name")]
    allowed = {"name"} | set(BUDGET_KEYS) | set(entry.options)
    for k in s:
        if k not in allowed:
            raise ConfigError(f"{field}.{k}", f"unknown key for {entry.name!r}; allowed: {sorted(allowed)}")
    given = [k for k in ("fraction", "quantile", "threshold") if s.get(k) is not None]
    if len(given) > 1:
        raise ConfigError(f"{field}.{given[1]}", f"give one budget, not {' and '.join(given)}")
    if given and not entry.budgeted:
        raise ConfigError(
            f"{field}.{given[0]}", f"{entry.name!r} selects a fixed set of parameters; it takes no budget"
        )
    if s.get("fraction") is not None:
        s["fraction"] = check_fraction(s["fraction"], f"{field}.fraction")
    for flag in ("largest", "per_layer", "include_zero"):
        if flag in s and not isinstance(s[flag], bool):
            raise ConfigError(f"{field}.{flag}", f"must be true or false, got {s[flag]!r}")
    if s.get("quantile") is not None:
        q = s["quantile"]
        if not _is_num(q) or not 0 <= q < 1:
            raise ConfigError(f"{field}.quantile", f"must be a number in [0, 1), got {q!r}")
    if s.get("threshold") is not None and not _is_num(s["threshold"]):
        raise ConfigError(f"{field}.threshold", f"must be a number, got {s['threshold']!r}")
    for k, default in entry.options.items():
        if k in s:
            _like(s[k], default, f"{field}.{k}")
        else:
            s[k] = default
    s.setdefault("largest", True)
    return s


def _like(value: Any, default: Any, field: str) -> None:
    """An option value of the same kind as its default (bool, number or string)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(field, f"must be true or false, got {value!r}")
    elif isinstance(default, (int, float)):
        if not _is_num(value):
            raise ConfigError(field, f"must be a number, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(field, f"must be a string, got {value!r}")


def normalize_unlearning(u: dict, scenario: dict, *, strict: bool = True) -> dict:
    """The "unlearning" section: the method (default: the scenario's), refused when it needs
    D̃_f on a removal scenario; every other key checked by the method registry
    (core.unlearning.check_hparams) against that method's options (`strict=False`, for a
    sweep's section shared by several methods: against any method's)."""
    from core.unlearning import check_hparams

    u = dict(u)
    if u.get("method") is None:
        u["method"] = _registry("scenarios")[scenario["kind"]].default_method(_params(scenario))
    check_method(u["method"], scenario, "unlearning.method")
    check_hparams(u, method=u["method"] if strict else None)
    return u


def check_method(method: Any, scenario: dict, field: str) -> str:
    """A method name from core.unlearning.METHODS that can run on `scenario`; ConfigError
    naming `field` otherwise (retired names say what replaced them)."""
    from core.unlearning import get_method

    entry = get_method(method, field)
    if entry.needs_correction and _registry("scenarios")[scenario["kind"]].is_removal(_params(scenario)):
        usable = [n for n, m in _registry("methods").items() if not m.needs_correction]
        raise ConfigError(
            field,
            f"{method!r} needs corrected samples D̃_f, which a removal scenario "
            f"({scenario['kind']!r}) does not have; choose one of {usable}",
        )
    return entry.name


def normalize_scenario(sc: dict) -> dict:
    """The "scenario" section: a known kind and only that kind's options (values are checked
    against the data when the scenario is built); `seed`, when given, an integer."""
    scenarios = _registry("scenarios")
    entry = scenarios[_choice(sc.get("kind"), tuple(scenarios), "scenario.kind")]
    for k in sc:
        if k != "kind" and k not in entry.options:
            raise ConfigError(
                f"scenario.{k}", f"not a parameter of {entry.name!r}; allowed: {sorted(entry.options)}"
            )
    if sc.get("seed") is not None:
        _pos_int(sc["seed"], "scenario.seed", minimum=0, maximum=2**31 - 1)
    return sc


def _params(scenario: dict) -> dict:
    return {k: v for k, v in scenario.items() if k != "kind"}


def normalize(config: Any, *, sweep: bool = False) -> dict:
    """Fill defaults into `config` and validate every field; raises ConfigError."""
    cfg = copy.deepcopy(_dict(config if config is not None else {}, "config"))
    allowed = set(DEFAULTS) | (set(SWEEP_KEYS) if sweep else set())
    for k in cfg:
        if k not in allowed:
            hint = " (sweep keys belong in a sweep config)" if k in SWEEP_KEYS else ""
            raise ConfigError(k, f"unknown key{hint}; allowed: {sorted(allowed)}")
    out: dict[str, Any] = {}
    out["dataset"] = _choice(cfg.get("dataset", DEFAULTS["dataset"]), tuple(_registry("datasets")), "dataset")
    root = cfg.get("root")
    if root is not None and not isinstance(root, str):
        raise ConfigError("root", f"must be a folder or file path (string), got {root!r}")
    out["root"] = root
    for k in ("train_size", "test_size"):
        v = cfg.get(k)
        out[k] = None if v is None else _pos_int(v, k)
    out["model"] = _choice(cfg.get("model", DEFAULTS["model"]), tuple(_registry("models")), "model")
    out["seed"] = _pos_int(cfg.get("seed", 0), "seed", minimum=0, maximum=2**31 - 1)
    out["device"] = cfg.get("device", "auto")
    if not is_device_name(out["device"]):
        raise ConfigError(
            "device", f"{out['device']!r} is not allowed; choose one of {list(DEVICES)} or cuda:N"
        )

    if "scenario" in cfg:
        sc = dict(_dict(cfg["scenario"], "scenario"))
        sc.setdefault("kind", "backdoor")
    else:
        sc = dict(DEFAULTS["scenario"])
    out["scenario"] = normalize_scenario(sc)

    tr = _merge_section(cfg, "train", set(DEFAULTS["train"]) | set(TRAIN_OPTIONAL))
    tr["epochs"] = _pos_int(tr["epochs"], "train.epochs", maximum=10_000)
    tr["lr"] = _pos_num(tr["lr"], "train.lr")
    tr["batch_size"] = _pos_int(tr["batch_size"], "train.batch_size", maximum=1_000_000)
    _choice(tr["optimizer"], ("adam", "sgd"), "train.optimizer")
    if not _is_num(tr["weight_decay"]) or tr["weight_decay"] < 0:
        raise ConfigError("train.weight_decay", f"must be a number ≥ 0, got {tr['weight_decay']!r}")
    if tr.get("schedule", "constant") == "constant":
        tr.pop("schedule", None)
    else:
        _choice(tr["schedule"], SCHEDULES, "train.schedule")
    out["train"] = tr

    estimators = _registry("estimators")
    given = _dict(cfg.get("curvature", {}), "curvature")
    entry = estimators[
        _choice(given.get("method", DEFAULTS["curvature"]["method"]), tuple(estimators), "curvature.method")
    ]
    own = set(entry.options)  # the estimator's own `curvature.<option>` keys
    cv = _merge_section(cfg, "curvature", set(DEFAULTS["curvature"]) | set(CURVATURE_OPTIONAL) | own)
    for key in sorted(own):  # like `samples`: absent unless set, so existing cache keys stay the same
        if cv.get(key) is None:
            cv.pop(key, None)
        elif _is_int(entry.options[key]):
            cv[key] = _pos_int(cv[key], f"curvature.{key}", maximum=100_000)
    _choice(cv["data"], CURVATURE_DATA, "curvature.data")
    if cv["data"] == "corrected" and _registry("scenarios")[sc["kind"]].is_removal(_params(sc)):
        raise ConfigError(
            "curvature.data",
            f"'corrected' (D̃_f) is empty for the removal scenario {sc['kind']!r}; "
            "choose 'full', 'retain' or 'forget'",
        )
    if cv["batch_size"] != "auto":  # "auto": chunks sized by the estimator from a memory budget
        cv["batch_size"] = _pos_int(cv["batch_size"], "curvature.batch_size", maximum=1_000_000)
    cv["probes"] = _pos_int(cv["probes"], "curvature.probes", maximum=100_000)
    if cv.get("samples") is None:  # absent from the normalized config: existing keys stay the same
        cv.pop("samples", None)
    else:
        cv["samples"] = _pos_int(cv["samples"], "curvature.samples", maximum=100_000_000)
    out["curvature"] = cv

    strategies = cfg.get("strategies", DEFAULTS["strategies"])
    if not isinstance(strategies, list):
        raise ConfigError("strategies", 'must be a list of strategies, e.g. [{"name": "saps"}]')
    out["strategies"] = [normalize_strategy(s, f"strategies[{i}]") for i, s in enumerate(strategies)]

    out["unlearning"] = normalize_unlearning(
        {**DEFAULTS["unlearning"], **_dict(cfg.get("unlearning", {}), "unlearning")}, sc, strict=not sweep
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
            from core.selection import check_fraction

            if not isinstance(fr, list) or not fr:
                raise ConfigError("fractions", "must be a non-empty list of numbers in (0, 1]")
            fr = [check_fraction(f, f"fractions[{i}]") for i, f in enumerate(fr)]
        out["fractions"] = fr
        me = cfg.get("methods", [out["unlearning"]["method"]])
        if not isinstance(me, list) or not me:
            raise ConfigError("methods", f"must be a non-empty list of {list(_registry('methods'))}")
        out["methods"] = [check_method(m, sc, f"methods[{i}]") for i, m in enumerate(me)]
    return out


def check_feasible(cfg: dict, forget_set: Any) -> None:
    """Checks that need the built scenario (core.scenarios.ForgetSet) of a normalized config,
    before anything is trained: a method that needs D_r (and, with lr "auto", its validation
    split) gets at least 2 retain samples; `curvature.data` is not empty. ConfigError naming the
    field that made the set empty (e.g. "scenario.fraction")."""
    n_retain = len(forget_set.retain_idx)
    size_field = _size_field(cfg["scenario"])
    methods = cfg.get("methods") or [cfg["unlearning"]["method"]]
    for method in methods:
        entry = _registry("methods")[method]
        guarded = (
            "val_fraction" in entry.defaults
            and cfg["unlearning"].get("lr", entry.defaults.get("lr")) == "auto"
        )
        if (entry.needs_retain or guarded) and n_retain < 2:
            why = "a retain set D_r" if entry.needs_retain else "a validation split of D_r for lr 'auto'"
            raise ConfigError(
                size_field,
                f"leaves {n_retain} retain sample(s), but {method!r} needs {why} "
                "(at least 2 samples); forget fewer samples",
            )
    if cfg["unlearning"].get("align"):
        from core.unlearning.rules import check_align_pairing

        check_align_pairing(len(forget_set.corrected_y), len(forget_set.forget_idx))
    data = cfg["curvature"]["data"]
    sizes = {
        "retain": n_retain,
        "forget": len(forget_set.forget_idx),
        "corrected": len(forget_set.corrected_y),
    }
    if cfg["strategies"] and sizes.get(data, 1) == 0:
        raise ConfigError("curvature.data", f"{data!r} is empty for this scenario; use 'full'")


def _size_field(scenario: dict) -> str:
    """The scenario field that decides how many samples D_f holds."""
    for key in ("fraction", "indices", "class"):
        if scenario.get(key) is not None:
            return f"scenario.{key}"
    return "scenario.size"


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
