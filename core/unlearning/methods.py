"""The method registry: each update rule with its label, description, options (with their
defaults and checks) and what it needs. Config validation, the CLI, the dashboard and the docs
read `METHODS`; adding a method is one entry here (plus its rule and test).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.config import SCHEDULES, is_device_name
from core.errors import ConfigError
from core.unlearning import rules

Check = Callable[[Any], bool]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(lo: int) -> tuple[Check, str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo), f"an integer ≥ {lo}"


def _choice(*allowed: Any) -> tuple[Check, str]:
    return (lambda v: v in allowed), f"one of {list(allowed)}"


POSITIVE = (lambda v: _num(v) and v > 0), "a positive number"
AUTO_OR_INT = (
    (lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)),
    "'auto' or an integer ≥ 1",
)
NON_NEGATIVE = (lambda v: _num(v) and v >= 0), "a finite number ≥ 0"
# one check per option name: the same key means the same thing in every method
CHECKS: dict[str, tuple[Check, str]] = {
    "lr": ((lambda v: v == "auto" or (_num(v) and v > 0)), "'auto' or a positive number"),
    "val_fraction": ((lambda v: _num(v) and 0 < v < 1), "a number in (0, 1)"),
    "val_tolerance": NON_NEGATIVE,
    "check_every": AUTO_OR_INT,
    "val_max": _int(20),
    "device": (is_device_name, "a device name: auto, cpu, cuda, cuda:N or mps"),
    "steps": AUTO_OR_INT,
    "forget_epochs": POSITIVE,
    "ascent": NON_NEGATIVE,
    "retain_batch": _int(1),
    "forget_batch": _int(1),
    "retain_weight": NON_NEGATIVE,
    "optimizer": _choice("sgd", "adam"),
    "retain_fixed": _choice(True, False),
    "wrong_only": _choice(True, False),
    "solver": _choice("cg", "lissa", "diagonal"),
    "curvature": _choice("ggn", "hessian"),
    "damping": POSITIVE,
    "damping_factor": ((lambda v: _num(v) and v > 1), "a number > 1"),
    "max_raises": _int(0),
    "cg_iters": _int(1),
    "tol": ((lambda v: _num(v) and 0 < v < 1), "a number in (0, 1)"),
    "hessian_samples": _int(1),
    "scores": ((lambda v: isinstance(v, dict)), "a dict of tensors"),
    "rounds": _int(1),
    "order": _choice(1, 2),
    "batch_size": _int(1),
    "alpha": NON_NEGATIVE,
    "dampening": POSITIVE,
    "epochs": _int(1),
    "train_lr": POSITIVE,
    "train_optimizer": _choice("adam", "sgd"),
    "train_weight_decay": NON_NEGATIVE,
    "train_schedule": _choice(*SCHEDULES),
    "rho": NON_NEGATIVE,
    "align": NON_NEGATIVE,
}
GUARDED = {"lr": "auto", "val_fraction": 0.2, "val_max": 1000, "val_tolerance": 0.01, "check_every": 5}
SOLVE = {
    "solver": "cg",
    "curvature": "ggn",
    "damping": 0.1,
    "damping_factor": 10.0,
    "max_raises": 8,
    "cg_iters": 100,
    "tol": 1e-3,
    "hessian_samples": 512,
}

# masked_finetune's defaults (masked_sam starts from the same). `steps: "auto"` is
# ceil(forget_epochs · |D_f ∪ D̃_f| / forget_batch): the work scales with what is forgotten, not
# with the training set; `check_every: "auto"` checks the guard 5 times along the trajectory.
FINETUNE = {
    **GUARDED,
    "steps": "auto",
    "forget_epochs": 8,
    "forget_batch": 64,
    "ascent": 0.0,
    "retain_batch": 64,
    "retain_weight": 0.1,
    "optimizer": "adam",
    "retain_fixed": False,
    "wrong_only": True,
    "check_every": "auto",
    "align": 0.0,
}


@dataclass(frozen=True)
class Method:
    """One update rule and what callers need to know about it."""

    name: str
    label: str
    description: str
    run: Callable[[Any], tuple[Any, dict]]  # Context -> (θ_new | trained module | None, log)
    defaults: dict[str, Any]  # every option it takes, with its default
    needs_correction: bool = False  # needs D̃_f: refused on a removal scenario
    needs_retain: bool = False  # cannot run with an empty D_r
    uses_mask: bool = True
    multi_step: bool = False  # a trajectory (the monitor's curve), not one step
    # bump when the rule's results change for the same options (a fixed bug, a new default rule):
    # stored sweep cells of an older revision are then recomputed, not reused (core.sweep.cell_key)
    revision: int = 1

    @property
    def options(self) -> frozenset[str]:
        return frozenset(self.defaults) | {"device"}

    @property
    def checks(self) -> dict[str, tuple[Check, str]]:
        return {k: CHECKS[k] for k in self.options}


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "first_order",
            "First order (Warnecke)",
            "θ ← θ* − τ·(M ⊙ G), τ guarded on a validation split of D_r.",
            rules.first_order,
            {
                **GUARDED,
                "steps": 1,
                "ascent": 1.0,
                "retain_batch": 128,
                "retain_weight": 0.1,
                "optimizer": "sgd",
            },
        ),
        Method(
            "second_order",
            "Second order (solved)",
            "θ_M ← θ*_M − τ·u with (C_MM + λI) u = G_M solved by CG on the GGN (or the damped "
            "Hessian); an unconverged solve is not applied.",
            rules.second_order,
            {**GUARDED, **SOLVE, "ascent": 1.0, "scores": None},
        ),
        Method(
            "warnecke_iterative",
            "Iterative (Warnecke)",
            "Rounds of first- or second-order steps on the forget samples still misclassified "
            "w.r.t. their corrected labels, with both gradient terms.",
            rules.warnecke_iterative,
            {**GUARDED, **SOLVE, "rounds": 10, "order": 1, "ascent": 1.0},
            needs_correction=True,
            multi_step=True,
        ),
        Method(
            "masked_finetune",
            "Masked fine-tuning",
            "Masked Adam steps on the forget samples still wrong w.r.t. their corrected labels, "
            "with a logit anchor on a retain batch.",
            rules.masked_finetune,
            FINETUNE,
            needs_correction=True,
            multi_step=True,
        ),
        Method(
            "masked_sam",
            "Masked SAM fine-tuning",
            "Masked fine-tuning's loss and trajectory, each step taken with the gradient at "
            "θ + ρ·g/‖g‖ (g: the masked gradient; sharpness-aware, Foret et al. 2021).",
            rules.masked_sam,
            {**FINETUNE, "rho": 0.05},
            needs_correction=True,
            multi_step=True,
        ),
        Method(
            "finetune",
            "Fine-tuning",
            "Masked descent on mini-batches of D_r ∪ D̃_f.",
            rules.finetune,
            {**GUARDED, "steps": 20, "batch_size": 128, "optimizer": "adam"},
            multi_step=True,
        ),
        Method(
            "neggrad",
            "NegGrad",
            "Masked ascent on D_f with descent on a D_r batch.",
            rules.neggrad,
            {**GUARDED, "steps": 20, "retain_batch": 128, "retain_weight": 1.0, "optimizer": "adam"},
            needs_retain=True,
            multi_step=True,
        ),
        Method(
            "ssd",
            "SSD (Foster et al.)",
            "Selective Synaptic Dampening inside the mask.",
            rules.ssd,
            {"alpha": 10.0, "dampening": 1.0},
        ),
        Method(
            "retrain",
            "Retrain (gold standard)",
            "Training from scratch on D_r ∪ D̃_f; ignores the mask.",
            rules.retrain,
            {
                "epochs": 30,
                "train_lr": 1e-3,
                "batch_size": 64,
                "train_optimizer": "adam",
                "train_weight_decay": 0.0,
                "train_schedule": "constant",
            },
            uses_mask=False,
        ),
    ]
}
ALL_OPTIONS = frozenset().union(*(m.options for m in METHODS.values()))
RENAMED = {
    "iterative": "'iterative' is gone: choose 'masked_finetune' (the former default: masked Adam steps on "
    "the wrong corrected forget samples with a retain anchor) or 'warnecke_iterative' (Warnecke's rounds "
    "of first- or second-order steps on the samples still misclassified)"
}


def get_method(name: Any, field: str = "unlearning.method") -> Method:
    """The registry entry; ConfigError naming `field` for an unknown or retired name."""
    if isinstance(name, str) and name in RENAMED:
        raise ConfigError(field, RENAMED[name])
    if not isinstance(name, str) or name not in METHODS:
        raise ConfigError(field, f"{name!r} is not allowed; choose one of {list(METHODS)}")
    return METHODS[name]


def check_hparams(hparams: dict, field: str = "unlearning", method: str | None = None) -> None:
    """Validate unlearning hyper-parameters; ConfigError naming `<field>.<key>`.

    Without `method` every key must be an option of some method (a sweep shares one section
    across methods); with it, an option of that method. None stands for the default."""
    if "method" in hparams:
        get_method(hparams["method"], f"{field}.method")
    spec = get_method(method, f"{field}.method") if method is not None else None
    allowed = spec.options if spec else ALL_OPTIONS
    for k, v in hparams.items():
        f = f"{field}.{k}"
        if k == "method":
            continue
        if k not in ALL_OPTIONS:
            raise ConfigError(f, f"unknown key; allowed: {sorted(allowed | {'method'})}")
        if spec is not None and k not in spec.options:
            raise ConfigError(
                f, f"not an option of method {spec.name!r}; its options: {sorted(spec.options)}"
            )
        ok, what = CHECKS[k]
        if v is not None and not ok(v):
            raise ConfigError(f, f"must be {what}, got {v!r}")
        if k == "steps" and v == "auto" and spec is not None and "forget_epochs" not in spec.options:
            raise ConfigError(f, f"'auto' needs forget_epochs, which {spec.name!r} has not; give a number")
