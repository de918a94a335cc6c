"""The update rules. Each takes the Context and returns (θ_new or None, log); None means θ* is
kept unchanged (the log's `note` says why). The caller writes θ = where(M, θ_new, θ*).

G = Σ_{z̃∈D̃_f} ∇ℓ(z̃) − ascent·Σ_{z∈D_f} ∇ℓ(z) comes from core.unlearning.steps.forget_gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.curvature import hessian_diagonal
from core.errors import ConfigError
from core.functional import eval_mode
from core.inspect import forward_features
from core.training import train
from core.unlearning.context import Context, Params, load, params_of
from core.unlearning.newton import newton_direction
from core.unlearning.steps import (
    anchor_logits,
    anchor_loss,
    fixed_retain,
    forget_gradient,
    forget_loss,
    retain_batch,
    wrong_on_forget,
)
from core.unlearning.stepsize import NEWTON_GRID, descend, first_order_grid, search

Result = tuple[Params | nn.Module | None, dict[str, Any]]


def first_order(ctx: Context) -> Result:
    """θ ← θ* − τ·(M ⊙ G) (Warnecke et al.), τ from the guarded search. `steps` > 1: that many
    optimizer steps on G/|D_f| at the current θ, plus the retain anchor in every step."""
    if ctx.hp["steps"] > 1:
        return _first_order_steps(ctx)
    theta, M = ctx.theta_star, ctx.mask
    G = forget_gradient(ctx.original, ctx, ctx.hp["ascent"])

    def step(tau: float) -> Params:
        return {n: theta[n] - tau * M[n] * G[n] for n in theta}

    grid = first_order_grid(ctx, {n: M[n] * G[n] for n in G}) if ctx.hp["lr"] == "auto" else ()
    new, info = search(ctx, step, grid)
    return new, {**info, "steps": int(new is not None)}


def _first_order_steps(ctx: Context) -> Result:
    gen = torch.Generator().manual_seed(ctx.seed)
    anchor = anchor_logits(ctx) if ctx.hp["retain_weight"] else None
    per_sample = 1.0 / max(1, len(ctx.y_f))  # G/|D_f|: the step size scale of the other multi-step rules

    def loss_fn(m: nn.Module, step: int) -> Tensor:
        loss = forget_loss(m, ctx, ctx.hp["ascent"]) * per_sample
        return loss + anchor_loss(m, ctx, anchor, gen) if anchor is not None else loss

    return descend(ctx, loss_fn, ctx.hp["steps"], ctx.hp["optimizer"])


def second_order(ctx: Context) -> Result:
    """θ_M ← θ*_M − τ·u with (C_MM + λI) u = G_M solved (core.unlearning.newton); a direction that
    did not converge is not applied."""
    M = ctx.mask
    G = forget_gradient(ctx.original, ctx, ctx.hp["ascent"])
    u, info = newton_direction(ctx, ctx.original, {n: M[n] * G[n] for n in G})
    if not info["converged"]:
        return None, {**info, "applied": False, "lr": None, "steps": 0}
    theta = ctx.theta_star
    new, found = search(
        ctx,
        lambda tau: {n: theta[n] - tau * u[n] for n in theta},
        NEWTON_GRID if ctx.hp["lr"] == "auto" else (),
    )
    return new, {**info, **found, "applied": new is not None, "steps": int(new is not None)}


def warnecke_iterative(ctx: Context) -> Result:
    """Warnecke's iterative variant: up to `rounds` rounds of θ ← θ − τ·d at the current θ, with
    d = M ⊙ G_wrong (order 1) or (C_MM + λI)⁻¹ G_wrong (order 2), G_wrong computed over the D_f
    samples still misclassified w.r.t. their corrected labels (both terms, see forget_loss);
    τ guarded on the validation split each round (the largest τ among equally good ones).
    Stops when none is wrong, when a round's guard or solve fails (the rounds before it are
    kept, `stopped_by` says why), or after `rounds`."""
    hp = ctx.hp
    model = ctx.working_copy()
    ctx.record(model, 0)
    trace: list[dict] = []
    solves: list[dict] = []
    stop: dict[str, Any] = {}
    for r in range(hp["rounds"]):
        wrong = wrong_on_forget(model, ctx)
        if not wrong.any():
            stop = {"note": "every forget sample has its corrected label"}
            break
        G = forget_gradient(model, ctx, hp["ascent"], wrong)
        d = {n: ctx.mask[n] * G[n] for n in G}
        if hp["order"] == 2:
            d, solve = newton_direction(ctx, model, d)
            solves.append(solve)
            if not solve["converged"]:
                stop = solve
                break
        theta = params_of(model)
        grid = () if hp["lr"] != "auto" else NEWTON_GRID if hp["order"] == 2 else first_order_grid(ctx, d)
        new, found = search(
            ctx, lambda tau, t=theta, d=d: {n: t[n] - tau * d[n] for n in t}, grid, ties="largest"
        )
        if new is None:
            stop = found
            break
        load(model, new)
        trace.append({"round": r + 1, "wrong": int(wrong.sum()), "lr": found["lr"]})
        ctx.record(model, r + 1)
        if ctx.progress is not None:
            ctx.progress(r + 1, hp["rounds"], "unlearning round")
    log: dict[str, Any] = {
        "order": hp["order"],
        "rounds": len(trace),
        "steps": len(trace),
        "round_trace": trace,
        "wrong_left": int(wrong_on_forget(model, ctx).sum()),
        "lr": trace[-1]["lr"] if trace else None,
    }
    if solves:  # the second-order keys summarize every round's solve
        log.update(
            solver=hp["solver"],
            curvature=hp["curvature"],
            iters=sum(s["iters"] for s in solves),
            rel_residual=max(s["rel_residual"] for s in solves),
            damping=solves[-1]["damping"],
            converged=all(s["converged"] for s in solves),
            applied=bool(trace),
        )
    if trace:
        return params_of(model), {**log, "stopped_by": stop.get("note")}
    return None, {**log, "guard_failed": stop.get("guard_failed", False), "note": stop.get("note")}


def masked_finetune(ctx: Context) -> Result:
    """Masked fine-tuning on the forget samples still wrong w.r.t. their corrected labels
    (`steps` optimizer steps, Adam by default, each on a batch of `forget_batch` of the samples
    to fix — all of them when fewer), lr guarded on the validation split:

        loss = Σ ℓ(wrong samples of the batch, corrected labels) / |batch|
               − ascent · mean ℓ(wrong D_f inputs of the batch, poisoned labels)   (ascent 0 by default)
               + retain_weight · mean ‖f(x; θ) − f(x; θ*)‖² on the step's D_r batch (a fresh one
                 each step; one fixed batch with retain_fixed)
               + align · mean ‖φ(x_f; θ) − φ(x̃_f; θ*)‖² / mean ‖φ(x̃_f; θ*)‖²   (align 0 by default)

    φ: the penultimate features (the input of the last nn.Linear); x̃_f: the D̃_f twin of a D_f
    input (a backdoor's clean image): `align` pulls what the network sees in a triggered image
    to what θ* saw in the clean one — representation-level unlearning, in the spirit of RMU (Li et
    al. 2024) and of backdoor feature alignment, meant to erase the trigger's feature rather than
    its link to the target. Stops when every forget sample is right (full batches, no `align`). One forward
    pass per step: the forget samples and the retain batch go through the model together,
    "wrong" is read off the same logits."""
    batch, wrong_of, loss_at, forward = _finetune_objective(ctx)

    def loss_fn(m: nn.Module, step: int) -> Tensor | None:
        x, target = batch()
        out = forward(m, x)
        wrong = wrong_of(out[0])
        return None if wrong is None else loss_at(out, wrong, target)

    return descend(ctx, loss_fn, finetune_steps(ctx), ctx.hp["optimizer"])


def finetune_steps(ctx: Context) -> int:
    """`steps`, or with "auto" ceil(forget_epochs · |D_f ∪ D̃_f| / forget_batch): so many passes
    over the samples to fix (at least 1 step)."""
    if ctx.hp["steps"] != "auto":
        return int(ctx.hp["steps"])
    n_fix = len(fix_set(ctx)[1])
    per_step = min(ctx.hp["forget_batch"], max(1, n_fix))
    return max(1, math.ceil(ctx.hp["forget_epochs"] * n_fix / per_step))


def fix_set(ctx: Context) -> tuple[Tensor, Tensor, Tensor]:
    """(inputs, the labels the model should give, the labels as trained) of D_f ∪ D̃_f, D_f first.

    On a label flip D̃_f is D_f relabelled (the same inputs, y_c = y_fix): the union is D_f once
    with its corrected labels, not the same images twice (which would double the auto step count
    and nothing else: the loss is a mean)."""
    same = (
        ctx.x_c.shape == ctx.x_f.shape and torch.equal(ctx.x_c, ctx.x_f) and torch.equal(ctx.y_c, ctx.y_fix)
    )
    if same:
        return ctx.x_f, ctx.y_fix, ctx.y_f
    return (
        torch.cat([ctx.x_f, ctx.x_c]),
        torch.cat([ctx.y_fix, ctx.y_c]),
        torch.cat([ctx.y_f, ctx.y_c]),  # D_f's labels as trained (for the ascent term)
    )


Batch = Callable[[], tuple[Tensor, Tensor | None]]
Output = tuple[Tensor, Tensor | None]  # (logits, penultimate features or None)


def check_align_pairing(n_corrected: int, n_forget: int) -> None:
    """`align` pulls each D_f input toward its D̃_f twin: ConfigError naming unlearning.align when
    D̃_f is not paired one to one with a non-empty D_f. Checked before training (config) and by
    the rule itself (direct callers of core.unlearning.unlearn)."""
    if n_corrected != n_forget or n_forget == 0:
        raise ConfigError(
            "unlearning.align",
            f"needs D̃_f paired one to one with D_f ({n_corrected} corrected vs {n_forget} forget "
            "samples here); set align to 0",
        )


def twin_features(ctx: Context) -> Tensor:
    """θ*'s penultimate features of the D̃_f twin of every D_f input (F×d). ConfigError naming
    unlearning.align when D̃_f is not paired with D_f one to one or the model has no nn.Linear
    head: the term is refused, never dropped silently."""
    check_align_pairing(len(ctx.y_c), len(ctx.y_f))
    try:
        with torch.no_grad(), eval_mode(ctx.original):
            _, feats = forward_features(ctx.original, ctx.x_c)
    except ValueError as e:  # no nn.Linear head
        raise ConfigError("unlearning.align", f"needs the penultimate features: {e}") from None
    ctx.grad_evals += len(ctx.y_c)
    return feats.detach()


def _finetune_objective(
    ctx: Context,
) -> tuple[
    Batch,
    Callable[[Tensor], Tensor | None],
    Callable[[Output, Tensor, Tensor | None], Tensor],
    Callable[[nn.Module, Tensor], Output],
]:
    """The pieces of masked_finetune's loss, so masked_sam evaluates the very same function at a
    second point: `batch()` -> (inputs: the step's forget samples — all of D_f and D̃_f, or a
    seeded batch of `forget_batch` of them — and the step's retain batch; θ*'s logits on that
    retain batch or None), `forward(model, inputs)` -> (logits, penultimate features when
    `align` is on), `wrong_of(logits)` -> the samples the loss covers (None: all of the step's
    forget samples are right, stop; counts the forward pass in grad_evals),
    `loss_at(output, wrong, target)`. They refer to the latest `batch()`."""
    hp = ctx.hp
    x_fix, y_fix, y_trained = fix_set(ctx)
    n_fix, n_f = len(y_fix), len(ctx.y_f)
    align = float(hp.get("align") or 0.0)
    twins = twin_features(ctx) if align else None
    twin_scale = float(twins.pow(2).sum(1).mean().clamp_min(1e-12)) if twins is not None else 1.0
    gen = torch.Generator().manual_seed(ctx.seed)
    anchored = bool(hp["retain_weight"]) and len(ctx.y_r) > 0
    fixed = fixed_retain(ctx, gen) if anchored and hp["retain_fixed"] else None
    per_step = hp.get("forget_batch")
    subsample = per_step is not None and per_step < n_fix
    step = {"i": torch.arange(n_fix, device=ctx.device)}  # the forget samples of the latest batch

    def batch() -> tuple[Tensor, Tensor | None]:
        if subsample:
            step["i"] = torch.randperm(n_fix, generator=gen)[:per_step].to(ctx.device)
        x = x_fix[step["i"]] if subsample else x_fix
        if not anchored:
            return x, None
        if fixed is not None:
            idx, target = fixed
        else:  # a fresh batch each step, with θ*'s logits on it (one forward of the batch)
            idx = retain_batch(ctx, gen, hp["retain_batch"])
            with torch.no_grad(), eval_mode(ctx.original):
                target = ctx.original(ctx.x_r[idx])
        return torch.cat([x, ctx.x_r[idx]]), target

    def forward(m: nn.Module, x: Tensor) -> Output:
        return (m(x), None) if twins is None else forward_features(m, x)

    def wrong_of(logits: Tensor) -> Tensor | None:
        i = step["i"]
        wrong = logits[: len(i)].detach().argmax(1) != y_fix[i]
        ctx.grad_evals += len(logits)
        if not wrong.any() and not subsample and twins is None:
            return None  # every forget sample is right: nothing left to fix
        return wrong if hp["wrong_only"] else torch.ones_like(wrong)

    def loss_at(out: Output, wrong: Tensor, target: Tensor | None) -> Tensor:
        i = step["i"]
        logits, feats = out
        out_f, y = logits[: len(i)], y_fix[i]
        # a mean over all the step's samples (right ones add little): over the wrong ones alone
        # it grows as they get fewer and overshoots
        loss = F.cross_entropy(out_f[wrong], y[wrong], reduction="sum") / len(i)
        w_f = wrong & (i < n_f)  # wrong D_f inputs
        if hp["ascent"] and w_f.any():
            loss = loss - hp["ascent"] * F.cross_entropy(out_f[w_f], y_trained[i][w_f])
        if target is not None:
            loss = loss + hp["retain_weight"] * (logits[len(i) :] - target).pow(2).sum(1).mean()
        is_f = i < n_f  # the step's D_f inputs: each has its twin in D̃_f
        if feats is not None and is_f.any():
            gap = (feats[: len(i)][is_f] - twins[i[is_f]]).pow(2).sum(1).mean() / twin_scale
            loss = loss + align * gap
        return loss

    return batch, wrong_of, loss_at, forward


def masked_sam(ctx: Context) -> Result:
    """Masked sharpness-aware fine-tuning (SAM, Foret et al. 2021) on masked_finetune's loss L
    (same samples, anchor, defaults and guarded trajectory). Each step, at the current θ:

        g = M ⊙ ∇L(θ),   ε = ρ · g / ‖g‖            (ε = 0 when g = 0; ‖ε‖ = ρ, inside M)
        g_SAM = ∇L(θ + ε)                            (same samples, same "wrong" set, same batch)
        θ ← optimizer step with M ⊙ g_SAM            (θ itself, not θ + ε, is updated)

    so the update minimizes max_{‖ε‖ ≤ ρ, ε ⊂ M} L(θ + ε) to first order: a flat minimum in the
    selected coordinates, which a few relearning steps should find harder to leave. ρ = 0 is
    masked_finetune bit for bit (twice the gradient evaluations)."""
    rho = float(ctx.hp["rho"])
    batch, wrong_of, loss_at, forward = _finetune_objective(ctx)

    def loss_fn(m: nn.Module, step: int) -> Tensor | None:
        x, target = batch()
        out = forward(m, x)
        wrong = wrong_of(out[0])
        if wrong is None:
            return None
        names = [n for n, _ in m.named_parameters()]
        params = [p for _, p in m.named_parameters()]
        grads = torch.autograd.grad(loss_at(out, wrong, target), params, allow_unused=True)
        g = [torch.zeros_like(p) if d is None else d * ctx.mask[n] for n, p, d in zip(names, params, grads)]
        norm = torch.sqrt(sum(d.pow(2).sum() for d in g))
        scale = rho / norm if float(norm) > 0 else norm * 0
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, d in zip(params, g):
                p.add_(d * scale)
        try:
            out_sam = forward(m, x)
            ctx.grad_evals += len(out_sam[0])
            loss = loss_at(out_sam, wrong, target)
            g_sam = torch.autograd.grad(loss, params, allow_unused=True)
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
        # a loss whose value is L(θ + ε) and whose gradient at θ is ∇L(θ + ε) exactly
        surrogate = sum((p * d).sum() for p, d in zip(params, g_sam) if d is not None)
        return loss.detach() + (surrogate - surrogate.detach())

    new, info = descend(ctx, loss_fn, finetune_steps(ctx), ctx.hp["optimizer"])
    return new, {**info, "rho": rho}


def finetune(ctx: Context) -> Result:
    """Masked descent on mini-batches of D_r ∪ D̃_f (mean cross-entropy) for `steps` steps."""
    hp = ctx.hp
    x = torch.cat([ctx.x_r, ctx.x_c])
    y = torch.cat([ctx.y_r, ctx.y_c])
    gen = torch.Generator().manual_seed(ctx.seed)

    def loss_fn(m: nn.Module, step: int) -> Tensor:
        idx = torch.randint(len(y), (min(hp["batch_size"], len(y)),), generator=gen).to(ctx.device)
        ctx.grad_evals += len(idx)
        return F.cross_entropy(m(x[idx]), y[idx])

    return descend(ctx, loss_fn, hp["steps"], hp["optimizer"])


def neggrad(ctx: Context) -> Result:
    """Masked ascent on D_f (as trained) with descent on a D_r batch:
    loss = −mean ℓ(D_f) + retain_weight · mean ℓ(D_r batch)."""
    hp = ctx.hp
    gen = torch.Generator().manual_seed(ctx.seed)

    def loss_fn(m: nn.Module, step: int) -> Tensor:
        idx = retain_batch(ctx, gen, hp["retain_batch"])
        ctx.grad_evals += len(idx) + len(ctx.y_f)
        retain = F.cross_entropy(m(ctx.x_r[idx]), ctx.y_r[idx])
        return -F.cross_entropy(m(ctx.x_f), ctx.y_f) + hp["retain_weight"] * retain

    return descend(ctx, loss_fn, hp["steps"], hp["optimizer"])


def ssd(ctx: Context) -> Result:
    """Selective Synaptic Dampening (Foster et al.) inside the mask: with F_f, F_D the empirical
    Fisher diagonals on D_f and D, where F_f > α·F_D: θ_i ← θ*_i · min(λ·F_D,i / F_f,i, 1)."""
    fs = ctx.forget_set
    f_forget = hessian_diagonal(ctx.original, ctx.x_f, ctx.y_f, "empirical_fisher")
    f_full = hessian_diagonal(
        ctx.original, fs.x_train.to(ctx.device), fs.y_train.to(ctx.device), "empirical_fisher"
    )
    ctx.grad_evals += len(ctx.y_f) + len(fs.y_train)
    alpha, lam = ctx.hp["alpha"], ctx.hp["dampening"]
    theta, dampened = {}, 0
    for n, t in ctx.theta_star.items():
        ff, fd = f_forget[n].to(t.device), f_full[n].to(t.device)
        hit = (ff > alpha * fd) & ctx.mask[n]
        theta[n] = t * torch.where(hit, (lam * fd / ff.clamp_min(1e-30)).clamp(max=1.0), torch.ones_like(t))
        dampened += int(hit.sum())
    return theta, {"alpha": alpha, "dampening": lam, "n_dampened": dampened, "lr": None}


def retrain(ctx: Context) -> Result:
    """A fresh model of the same architecture trained on D_r ∪ D̃_f (the gold standard; no mask).
    Returns the trained module itself (its buffers, e.g. BatchNorm statistics, are new too)."""
    hp, fs = ctx.hp, ctx.forget_set
    model = ctx.working_copy()
    torch.manual_seed(ctx.seed)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "reset_parameters") and m is not model:
                m.reset_parameters()
    x, y = fs.retrain_data()
    if not len(y):
        raise ConfigError("scenario", "nothing left to retrain on: D_r ∪ D̃_f is empty")
    hist = train(
        model,
        x,
        y,
        epochs=hp["epochs"],
        lr=hp["train_lr"],
        batch_size=hp["batch_size"],
        seed=ctx.seed,
        device=ctx.device,
        optimizer=hp["train_optimizer"],
        weight_decay=hp["train_weight_decay"],
        schedule=hp["train_schedule"],
    )
    ctx.grad_evals += hp["epochs"] * len(y)
    return model, {"epochs": hp["epochs"], "lr": hp["train_lr"], "train_seconds": hist.seconds}
