"""What every update rule works on: θ* (read-only), the mask M, and D split into its parts.

`Context` keeps the input model's weights θ* twice, both never written: `original` (a module,
for forward passes and curvature products at θ*) and `theta_star` (a dict of tensors). A rule
works on a `working_copy()` and returns the weights it proposes; `merge` writes
θ = where(M, θ_new, θ*) into a fresh copy, so coordinates outside the mask keep θ*'s bits.

Data (all on the context's device):

    x_f, y_f     D_f as trained (inputs, poisoned labels)               F samples
    y_fix        the corrected labels of the D_f inputs                 F
    x_c, y_c     D̃_f, the corrected samples (empty for plain removal)   F' ≤ F
    x_r, y_r     the part of D_r the updates may use
    x_val, y_val a validation split of D_r (`val_fraction`): read only by the step-size
                 guards in core.unlearning.stepsize, never by an update
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from core.errors import ConfigError, NumericalError
from core.functional import eval_mode

Params = dict[str, Tensor]
Mask = dict[str, Tensor]
Progress = Callable[[int, int, str], None] | None
Monitor = Callable[[nn.Module], dict[str, float | None]] | None


@dataclass
class Context:
    """θ*, the mask, the data parts, the hyper-parameters and the run's counters."""

    original: nn.Module  # θ* as a module (eval mode); never written
    theta_star: Params  # θ* as detached tensors; never written
    mask: Mask  # {name: BoolTensor of the parameter's shape}
    forget_set: Any  # core.scenarios.ForgetSet
    hp: dict[str, Any]  # the method's hyper-parameters (defaults filled in); read-only
    seed: int
    device: torch.device
    progress: Progress = None
    x_f: Tensor = None
    y_f: Tensor = None
    y_fix: Tensor = None
    x_c: Tensor = None
    y_c: Tensor = None
    x_r: Tensor = None
    y_r: Tensor = None
    x_val: Tensor = None
    y_val: Tensor = None
    grad_evals: int = 0  # per-sample gradient evaluations (a curvature product counts 2)
    monitor: Monitor = None  # display-only evaluation along a trajectory; never steers it
    monitor_every: int = 1
    monitor_seconds: float = 0.0
    curve: list[dict] = field(default_factory=list)

    def working_copy(self) -> nn.Module:
        """A fresh module holding θ*, for a rule to update."""
        return copy.deepcopy(self.original)

    def record(self, model: nn.Module, step: int) -> None:
        """Append monitor(model) at `step` to the curve; its time is kept out of the method's."""
        if self.monitor is None:
            return
        start = time.perf_counter()
        with torch.no_grad(), eval_mode(model):
            self.curve.append({"step": step, **self.monitor(model)})
        self.monitor_seconds += time.perf_counter() - start


def build_context(
    model: nn.Module,
    mask: Mask | None,
    forget_set: Any,
    hp: dict,
    seed: int,
    device: torch.device,
    *,
    mask_required: bool,
) -> Context:
    """Copy θ* to `device`, check the mask, and split D_r into update and validation parts
    (a seeded permutation; the validation part has max(20, min(val_max, val_fraction·|D_r|))
    samples)."""
    original = copy.deepcopy(model).to(device).eval()
    theta_star = {n: p.detach().clone() for n, p in original.named_parameters()}
    mask = check_mask(original, mask, device, required=mask_required)
    ctx = Context(original, theta_star, mask, forget_set, hp, int(seed), device)
    x_f, y_f = forget_set.forget
    _, y_fix = forget_set.forget_true
    x_c, y_c = forget_set.corrected
    x_r, y_r = forget_set.retain
    perm = torch.randperm(len(y_r), generator=torch.Generator().manual_seed(int(seed)))
    n_val = max(20, min(hp.get("val_max", 2000), round(hp.get("val_fraction", 0.2) * len(y_r))))
    n_val = min(len(y_r) - 1, n_val) if len(y_r) > 1 else 0
    val, upd = perm[:n_val], perm[n_val:]
    ctx.x_f, ctx.y_f, ctx.y_fix = x_f.to(device), y_f.to(device), y_fix.to(device)
    ctx.x_c, ctx.y_c = x_c.to(device), y_c.to(device)
    ctx.x_r, ctx.y_r = x_r[upd].to(device), y_r[upd].to(device)
    ctx.x_val, ctx.y_val = x_r[val].to(device), y_r[val].to(device)
    return ctx


def check_mask(model: nn.Module, mask: Mask | None, device: torch.device, *, required: bool) -> Mask:
    """One boolean tensor per parameter (missing names: all False); ConfigError("mask", ...) on a
    wrong shape, an unknown name, or (when `required`) a mask that selects nothing."""
    out = {}
    for name, p in model.named_parameters():
        m = mask.get(name) if mask is not None else None
        if m is None:
            m = torch.zeros(p.shape, dtype=torch.bool)
        if tuple(m.shape) != tuple(p.shape):
            raise ConfigError(
                "mask", f"{name!r}: shape {tuple(m.shape)} differs from the parameter's {tuple(p.shape)}"
            )
        out[name] = m.to(device=device, dtype=torch.bool)
    if mask is not None and set(mask) - set(out):
        raise ConfigError("mask", f"unknown parameter names {sorted(set(mask) - set(out))[:3]}")
    if required and not any(bool(m.any()) for m in out.values()):
        raise ConfigError("mask", "the mask selects no parameter; raise the fraction")
    return out


def params_of(model: nn.Module) -> Params:
    """The module's current weights as detached copies."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def load(model: nn.Module, theta: Params) -> nn.Module:
    """Write `theta` into the module's parameters (in place) and return the module."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(theta[n])
    return model


def merge(ctx: Context, theta: Params | None, *, masked: bool = True) -> nn.Module:
    """A fresh module with θ = where(M, θ_new, θ*) (θ* itself when `theta` is None; θ_new
    everywhere when not `masked`, as for retraining)."""
    if theta is None:
        return ctx.working_copy()
    if masked:
        theta = {n: torch.where(ctx.mask[n], theta[n], ctx.theta_star[n]) for n in ctx.theta_star}
    return load(ctx.working_copy(), theta)


def changed(ctx: Context, model: nn.Module) -> bool:
    """Whether any parameter of `model` differs from θ*."""
    return any(not torch.equal(p.detach(), ctx.theta_star[n]) for n, p in model.named_parameters())


def check_finite(model: nn.Module, method: str) -> None:
    """NumericalError naming the first parameter with a NaN or an infinity."""
    for n, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise NumericalError(
                f"unlearning ({method}) produced non-finite values in {n}; "
                "lower unlearning.lr or raise unlearning.damping"
            )


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Fraction of `x` the model labels `y` (nan for no samples), in eval mode."""
    if len(y) == 0:
        return float("nan")
    with eval_mode(model):
        return float((model(x).argmax(1) == y).float().mean())
