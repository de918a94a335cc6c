"""Masked unlearning: update only the selected parameters M so the model forgets D_f.

    unlearn(model, mask, forget_set, method, *, seed, progress, monitor, monitor_every, **hparams)
        -> (new model in eval mode, log)

The input model θ* is never modified; coordinates outside the mask stay bit-identical
(θ = where(M, θ_new, θ*)). With G = Σ_{z̃∈D̃_f} ∇ℓ(z̃; θ*) − Σ_{z∈D_f} ∇ℓ(z; θ*) the rules
(`METHODS`, code in core.unlearning.rules) are:

    first_order         θ ← θ* − τ·(M ⊙ G)                                     (Warnecke et al.)
    second_order        θ_M ← θ*_M − τ·u,  (C_MM + λI) u = G_M solved by CG on the GGN
                        (default) or the Hessian with Levenberg–Marquardt damping; not applied
                        unless ‖(C_MM + λI) u − G_M‖ ≤ tol·‖G_M‖
    warnecke_iterative  rounds of first- or second-order steps on the D_f samples still
                        misclassified w.r.t. their corrected labels (both gradient terms)
    masked_finetune     masked Adam steps on the wrong corrected forget samples + a logit
                        anchor on a retain batch (no −∇ℓ(D_f) term by default)
    masked_sam          masked_finetune's loss, each step with ∇L(θ + ρ·g/‖g‖), g = M ⊙ ∇L
    finetune, neggrad   masked descent on D_r ∪ D̃_f / ascent on D_f with descent on D_r
    ssd                 Selective Synaptic Dampening (Foster et al.) inside the mask
    retrain             training from scratch on D_r ∪ D̃_f (the gold standard; no mask)

Step sizes (lr="auto") and the guard — validation accuracy on a split of D_r within
`val_tolerance` of θ*'s — live in core.unlearning.stepsize. When nothing passes, the result is
θ* unchanged with `guard_failed: true` and a `note`.

Layers (each imports only the ones below it): __init__ (unlearn) → methods (the registry) →
rules → stepsize, newton → steps, solvers → context.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from core.errors import ConfigError
from core.unlearning.context import Mask, Monitor, Progress, build_context, changed, check_finite, merge
from core.unlearning.methods import METHODS, Method, check_hparams, get_method

__all__ = ["METHODS", "Method", "check_hparams", "get_method", "unlearn"]


def unlearn(
    model: nn.Module,
    mask: Mask | None,
    forget_set: Any,
    method: str,
    *,
    seed: int = 0,
    progress: Progress = None,
    monitor: Monitor = None,
    monitor_every: int = 2,
    **hparams: Any,
) -> tuple[nn.Module, dict]:
    """Unlearn D_f from `model` with `method`, updating only the coordinates where `mask` is True.

    mask: {parameter name: BoolTensor of the parameter's shape}; forget_set: a
    core.scenarios.ForgetSet. hparams: the method's options (None: its default); options of
    other methods are ignored and listed in log["ignored"]. Returns (new model in eval mode,
    log) with keys method, n_selected, grad_evals (per-sample gradient evaluations; a curvature
    product counts 2), seconds, lr, steps, guard_failed, changed (any parameter differs from
    θ*), note (None, or why the model is unchanged), plus the method's own (second order:
    solver, curvature, iters, rel_residual, converged, damping, applied).

    monitor: model -> {name: value}, called by the multi-step methods at step 0 and every
    `monitor_every` steps (and the last); it never steers the update, so it may read the test or
    attack sets. The log then has "curve" = {"step": [...], name: [...]} (the kept trajectory)
    and "curve_seconds", which "seconds" excludes.
    Raises ConfigError (unknown method or option, a method that needs D̃_f on a removal
    scenario, an empty or misshapen mask) or NumericalError."""
    spec = get_method(method)
    check_hparams(hparams)
    if spec.needs_correction and forget_set.is_removal:
        raise ConfigError(
            "unlearning.method",
            f"{method!r} needs corrected samples D̃_f, and a removal scenario has none; "
            "choose a method that removes (e.g. 'neggrad', 'first_order', 'second_order')",
        )
    start = time.perf_counter()
    taken = {k: v for k, v in hparams.items() if k in spec.options and (v is not None or k == "scores")}
    hp = {"device": None, **spec.defaults, **taken}
    device = next(model.parameters()).device if hp["device"] is None else torch.device(hp["device"])
    ctx = build_context(model, mask, forget_set, hp, seed, device, mask_required=spec.uses_mask)
    if spec.needs_retain and not len(ctx.y_r):
        raise ConfigError("unlearning.method", f"{method!r} needs retain samples, and D_r is empty")
    ctx.monitor, ctx.monitor_every = monitor, max(1, int(monitor_every))
    theta, info = spec.run(ctx)
    new = theta if isinstance(theta, nn.Module) else merge(ctx, theta, masked=spec.uses_mask)
    check_finite(new, method)
    log = {
        "method": method,
        "n_selected": int(sum(int(m.sum()) for m in ctx.mask.values())),
        "grad_evals": ctx.grad_evals,
        "lr": None,
        "steps": None,
        "guard_failed": False,
        "note": None,
        **info,
        "changed": changed(ctx, new),
        "seconds": time.perf_counter() - start - ctx.monitor_seconds,
    }
    if not log["changed"] and log["note"] is None:
        log["note"] = "the update left every selected parameter at θ*"
    ignored = sorted(set(hparams) - spec.options - {"method"})
    if ignored:
        log["ignored"] = ignored
    if ctx.curve:
        log["curve"] = {k: [c.get(k) for c in ctx.curve] for k in ctx.curve[0]}
        log["curve_seconds"] = ctx.monitor_seconds
    return new.eval(), log
