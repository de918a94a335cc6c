"""Step sizes and the guard: the one place that decides what the unlearner may look at.

With lr="auto" a step size is judged on two things only: the validation split of D_r
(ctx.x_val, held out of every update; never the test set, the attack sets or the retrained
model) and the D_f inputs with their corrected labels (what the unlearner is asked to fix).
The guard: validation accuracy stays within `val_tolerance` of θ*'s.

    search    one-shot rules: θ(τ) for τ in an ascending grid; the candidate that is right on
              the most D_f inputs (removal: forget accuracy closest to validation accuracy)
              among those that pass the guard
    descend   multi-step rules: one trajectory from AUTO_START, checked every `check_every`
              steps; the latest checkpoint that passed is kept, and when none past θ* did the
              run restarts with lr / AUTO_BACKOFF (at most MAX_REWINDS times)

When nothing passes, both return None: the caller keeps θ* unchanged and logs
`guard_failed: true` with a note, never the smallest failing step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from core.errors import NumericalError
from core.unlearning.context import Context, Params, accuracy, load, params_of
from core.unlearning.steps import LossFn, masked_steps, optimizer

# τ grid for a solved second-order step u (θ* − τ·u; τ = 1 is the Newton step)
NEWTON_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)
# τ grid for a first-order step, as fractions of ‖θ*_M‖ / ‖M ⊙ G‖ (see first_order_grid)
FIRST_ORDER_RATIOS = (0.001, 0.003, 0.01, 0.03, 0.1)
# the relative move of the selected weights per step of a guarded trajectory (see trust_lr)
AUTO_STEP = 0.05
AUTO_BACKOFF = 3.0  # a rewind divides the step size by this
MAX_REWINDS = 3
GUARD_CHECKS = 5  # checks along a trajectory with check_every="auto"


def guard_note(ctx: Context, val0: float) -> str:
    return f"no step size kept validation accuracy within {ctx.hp['val_tolerance']} of θ*'s ({val0:.3f})"


def forget_score(model: nn.Module, ctx: Context, val_acc: float) -> float:
    """Higher is better forgetting: accuracy on the D_f inputs w.r.t. the corrected labels; for
    plain removal −|forget accuracy − validation accuracy| (an unseen sample's accuracy)."""
    if ctx.forget_set.is_removal:
        return -abs(accuracy(model, ctx.x_f, ctx.y_f) - val_acc)
    return accuracy(model, ctx.x_f, ctx.y_fix)


def first_order_grid(ctx: Context, direction: Params) -> tuple[float, ...]:
    """τ such that one step θ* − τ·d moves θ*_M by 0.1 %–10 % of ‖θ*_M‖ (d = M ⊙ G is a sum over
    D_f, so its scale varies with |D_f| and the model)."""
    d_norm = math.sqrt(sum(float(d.pow(2).sum()) for d in direction.values()))
    t_norm = math.sqrt(sum(float((ctx.theta_star[n] * ctx.mask[n]).pow(2).sum()) for n in direction)) or 1.0
    if d_norm == 0:
        return (1e-3,)
    return tuple(r * t_norm / d_norm for r in FIRST_ORDER_RATIOS)


def search(
    ctx: Context, candidate: Callable[[float], Params], grid: tuple[float, ...], *, ties: str = "smallest"
) -> tuple[Params | None, dict[str, Any]]:
    """The step size of a one-shot step θ(τ) = candidate(τ).

    Fixed lr: θ(lr), no guard. lr="auto": `grid` in ascending order; keep the best forget score
    among the candidates that pass the guard (on a tie the smallest τ, or with ties="largest"
    the largest: a round of an iterative rule makes progress); stop at the first that fails after one passed,
    that forgets perfectly, or that diverges. The guard's reference is θ*'s validation accuracy,
    whatever the candidate starts from. Returns (θ or None when nothing passed, log)."""
    if ctx.hp["lr"] != "auto":
        lr = float(ctx.hp["lr"])
        return candidate(lr), {"lr": lr, "lr_auto": False}
    probe = ctx.working_copy()
    val0 = accuracy(ctx.original, ctx.x_val, ctx.y_val)
    tried: list[dict] = []
    best: tuple[float, float, Params] | None = None
    for lr in grid:
        theta = candidate(lr)
        if not all(torch.isfinite(t).all() for t in theta.values()):
            tried.append({"lr": lr, "diverged": True, "ok": False})
            break  # larger steps would diverge too
        load(probe, theta)
        val = accuracy(probe, ctx.x_val, ctx.y_val)
        score = forget_score(probe, ctx, val)
        ok = math.isnan(val0) or val >= val0 - ctx.hp["val_tolerance"] - 1e-9
        tried.append({"lr": lr, "val_acc": val, "forget_score": score, "ok": ok})
        if ok and (best is None or score > best[0] + 1e-9 or (ties == "largest" and score >= best[0] - 1e-9)):
            best = (score, lr, theta)
        if (not ok and best is not None) or (ok and score >= 1.0):
            break
    info = {"lr_auto": True, "lr_tried": tried, "val_acc_original": val0}
    if best is None:
        return None, {**info, "lr": None, "guard_failed": True, "note": guard_note(ctx, val0)}
    if best[0] <= forget_score(ctx.original, ctx, val0) + 1e-9:
        # the guard let only steps through that forget nothing more than θ*: say so, keep the step
        info["note"] = (
            f"the kept step size ({best[1]:.3g}) forgets no more of D_f than θ* "
            "(larger ones failed the guard or forgot no more)"
        )
    return best[2], {**info, "lr": best[1]}


def trust_lr(ctx: Context) -> float:
    """The step size of a guarded trajectory: a trust region relative to the selected weights.

    Adam moves every coordinate by about lr per step, so lr = AUTO_STEP · rms(θ*_M) moves the
    selected weights by AUTO_STEP times their root-mean-square: ‖Δθ_M‖ ≈ AUTO_STEP · ‖θ*_M‖ per
    step, whatever the model, the data set's size or the mask's size. SGD gets the same lr (its
    step is lr·g, so there the relative move also depends on the gradient's scale). No selected
    weight, or all zero: AUTO_STEP itself."""
    sq = sum(float((ctx.theta_star[n] * ctx.mask[n]).pow(2).sum()) for n in ctx.theta_star)
    count = sum(int(m.sum()) for m in ctx.mask.values())
    return AUTO_STEP * math.sqrt(sq / count) if count and sq > 0 else AUTO_STEP


def check_interval(check_every: int | str, steps: int) -> int:
    """Steps between two guard checks: `check_every`, or with "auto" a fifth of the run."""
    return math.ceil(steps / GUARD_CHECKS) if check_every == "auto" else int(check_every)


def descend(ctx: Context, loss_fn: LossFn, steps: int, optimizer_name: str) -> tuple[Params | None, dict]:
    """Masked optimizer steps on loss_fn from θ*; returns (θ of the kept point or None, log).

    Fixed lr: `steps` steps, no guard. lr="auto": the step size starts at trust_lr (a relative
    move of the selected weights); every `check_every` steps validation accuracy is measured
    and the point kept if it passes the guard; the run returns the latest kept point (a dip
    mid-way often recovers, so it does not stop the run). When no point past θ* passed, the
    run starts again from θ* with lr / AUTO_BACKOFF (at most MAX_REWINDS times). A run that
    ends before `steps` because of the guard says so (`stopped_by: "guard"` and a note)."""
    hp = ctx.hp
    model = ctx.working_copy()
    ctx.record(model, 0)
    nothing = {"note": "nothing to update: the loss had nothing left to fix at θ*"}
    if hp["lr"] != "auto":
        lr = float(hp["lr"])
        done = masked_steps(
            model, ctx, loss_fn, steps, optimizer(optimizer_name, list(model.parameters()), lr), total=steps
        )
        record_last(model, ctx, done)
        info = {"lr": lr, "lr_auto": False, "steps": done}
        return (params_of(model), info) if done else (None, {**info, **nothing})
    lr = trust_lr(ctx)
    val0 = accuracy(ctx.original, ctx.x_val, ctx.y_val)
    tol = hp["val_tolerance"]
    every = max(1, min(check_interval(hp["check_every"], steps), steps))
    good = (0, params_of(model))  # the latest checkpoint that passed the guard
    done, rewinds, trace, fixed = 0, 0, [], False
    opt = optimizer(optimizer_name, list(model.parameters()), lr)
    while done < steps:
        chunk = min(every, steps - done)
        try:
            taken = masked_steps(
                model,
                ctx,
                lambda m, i, d=done: loss_fn(m, d + i),
                chunk,
                opt,
                offset=done,
                total=steps,
            )
            finite = all(torch.isfinite(p).all() for p in model.parameters())
        except NumericalError:  # diverged
            taken, finite = chunk, False
        if done == 0 and taken == 0 and finite:
            break  # nothing to fix at θ*
        done += taken
        fixed = taken < chunk and finite  # the loss said stop: nothing left to fix
        val = accuracy(model, ctx.x_val, ctx.y_val) if finite and len(ctx.y_val) else float("nan")
        ctx.grad_evals += len(ctx.y_val)
        trace.append({"step": done, "lr": lr, "val_acc": val})
        if finite and (val != val or val >= val0 - tol - 1e-9):
            good = (done, params_of(model))
        if finite and not fixed and done < steps:
            continue  # a dip in the middle may recover: judge at the end
        if good[0] > 0 or rewinds >= MAX_REWINDS:
            break
        rewinds += 1  # nothing past θ* passed: start again with smaller steps
        lr /= AUTO_BACKOFF
        done = 0
        load(model, good[1])
        ctx.curve = ctx.curve[:1]
        opt = optimizer(optimizer_name, list(model.parameters()), lr)
    ended = done
    if good[0] != done:  # the end did not pass: go back to the latest checkpoint that did
        done = good[0]
        load(model, good[1])
        ctx.curve = [c for c in ctx.curve if c["step"] <= done]
    record_last(model, ctx, done)
    stopped_by = (
        "fixed" if fixed and done == ended else "guard" if 0 < done < steps and done != ended else None
    )
    info = {
        "lr": lr,
        "lr_auto": True,
        "steps": done,
        "rewinds": rewinds,
        "stopped_by": stopped_by,
        "val_acc_original": val0,
        "val_trace": trace,
    }
    if stopped_by == "guard":
        info["note"] = (
            f"the guard kept step {done} of {ended}: validation accuracy left the tolerance ({tol}) after it"
        )
    if done:
        return params_of(model), info
    if not trace:
        return None, {**info, **nothing}
    return None, {**info, "guard_failed": True, "note": guard_note(ctx, val0)}


def record_last(model: nn.Module, ctx: Context, done: int) -> None:
    """The curve ends where the trajectory ended (an early stop or the last rewind)."""
    if ctx.monitor is not None and (not ctx.curve or ctx.curve[-1]["step"] != done):
        ctx.curve = [c for c in ctx.curve if c["step"] < done]
        ctx.record(model, done)
