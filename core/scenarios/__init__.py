"""Forget scenarios: which training samples carry something that must go, and their fix.

Registry `SCENARIOS` (name -> Scenario with label, description, options and defaults, whether it
is plain removal, its default unlearning method). `build(dataset, kind, seed=0, **params)`
returns a ForgetSet: the training set as the original model saw it (D = D_r ∪ D_f), the indices
of D_f, the corrected samples D̃_f (empty for plain removal), and extra evaluation sets
(triggered test images for a backdoor). Retraining on D_r ∪ D̃_f gives the gold-standard model
every unlearning method is compared with. A scenario's optional `seed` draws D_f; without it
the run's seed does, so M training seeds can share one fixed D_f.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError
from core.scenarios.forget_set import PATTERNS, POSITIONS, ForgetSet, Trigger, make_trigger
from core.scenarios.kinds import CORRUPTIONS, backdoor, forget_class, indices, label_flip, random_samples

__all__ = [
    "CORRUPTIONS",
    "PATTERNS",
    "POSITIONS",
    "SCENARIOS",
    "ForgetSet",
    "Scenario",
    "Trigger",
    "build",
    "default_method",
    "from_config",
    "is_removal",
    "make_trigger",
]


@dataclass(frozen=True)
class Scenario:
    """One forget scenario: `build(dataset, seed=, **params) -> ForgetSet`; `options`: the
    parameters it accepts with their defaults (None: derived or unset); `is_removal(params)`:
    D̃_f is empty (plain removal); `default_method(params)`: the unlearning method a config
    without `unlearning.method` runs."""

    name: str
    label: str
    description: str
    build: Callable[..., ForgetSet]
    options: dict[str, Any]
    is_removal: Callable[[dict], bool]
    default_method: Callable[[dict], str]


TRIGGER = {"patch": None, "position": "bottom-right", "value": 1.0, "pattern": "checker"}
# every scenario accepts "seed": the seed that draws D_f (default: the run's seed)
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="backdoor",
            label="Backdoor",
            description="a trigger stamped on training images relabelled to a target class",
            build=backdoor,
            options={"size": 60, "fraction": None, "target": 0, **TRIGGER, "correct": "all", "seed": None},
            is_removal=lambda p: False,
            default_method=lambda p: "masked_finetune",
        ),
        Scenario(
            name="label_flip",
            label="Label flip",
            description="training labels flipped s → C−1−s (or to one class; or only one source class's)",
            build=label_flip,
            options={"size": 100, "fraction": None, "to": None, "source": None, "seed": None},
            is_removal=lambda p: False,
            default_method=lambda p: "masked_finetune",
        ),
        Scenario(
            name="random_samples",
            label="Random samples",
            description="plain removal of random training samples",
            build=random_samples,
            options={"size": 100, "fraction": None, "seed": None},
            is_removal=lambda p: True,
            default_method=lambda p: "neggrad",
        ),
        Scenario(
            name="class",
            label="Whole class",
            description="plain removal of every training sample of one class",
            build=forget_class,
            options={"class": 0, "seed": None},
            is_removal=lambda p: True,
            default_method=lambda p: "neggrad",
        ),
        Scenario(
            name="indices",
            label="Chosen samples",
            description="chosen training samples removed, relabelled or backdoored",
            build=indices,
            options={
                "indices": None,
                "corruption": "remove",
                "to": None,
                "target": 0,
                **TRIGGER,
                "seed": None,
            },
            is_removal=lambda p: p.get("corruption", "remove") == "remove",
            default_method=lambda p: (
                "neggrad" if p.get("corruption", "remove") == "remove" else "masked_finetune"
            ),
        ),
    )
}


def build(dataset, kind: str = "backdoor", *, seed: int = 0, **params) -> ForgetSet:
    """Build the forget scenario `kind` on `dataset`; all randomness comes from `seed`."""
    entry = _entry(kind)
    unknown = set(params) - set(entry.options)
    if unknown:
        allowed = sorted(entry.options)
        raise ConfigError(
            f"scenario.{sorted(unknown)[0]}", f"not a parameter of {kind!r}; allowed: {allowed}"
        )
    return entry.build(dataset, seed=seed, **params)


def from_config(dataset, scenario: dict, seed: int) -> ForgetSet:
    """The ForgetSet of a config's "scenario" section. D_f is drawn from the section's `seed`
    when given (not None), else from `seed`, the run's."""
    params = dict(scenario)
    kind, own_seed = params.pop("kind", "backdoor"), params.pop("seed", None)
    return build(dataset, kind, seed=seed if own_seed is None else _check_seed(own_seed), **params)


def is_removal(scenario: dict) -> bool:
    """True when the scenario section describes plain removal (D̃_f empty)."""
    params = {k: v for k, v in scenario.items() if k != "kind"}
    return _entry(scenario.get("kind")).is_removal(params)


def default_method(scenario: dict) -> str:
    """The unlearning method a config without `unlearning.method` runs on this scenario."""
    params = {k: v for k, v in scenario.items() if k != "kind"}
    return _entry(scenario.get("kind")).default_method(params)


def _entry(kind: Any) -> Scenario:
    if kind not in SCENARIOS:
        raise ConfigError("scenario.kind", f"unknown scenario {kind!r}; choose one of {sorted(SCENARIOS)}")
    return SCENARIOS[kind]


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ConfigError("scenario.seed", f"must be an integer 0..2147483647, got {seed!r}")
    return seed
