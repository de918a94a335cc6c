"""The shared pieces of every update rule: the forget gradient G, the retain anchor, masked
optimizer steps.

    G = Σ_{z̃∈D̃_f} ∇ℓ(z̃; θ) − ascent · Σ_{z∈D_f} ∇ℓ(z; θ)      (Warnecke et al.; ℓ = cross-entropy)

is computed here and nowhere else (`forget_loss` is the loss whose gradient is G;
`forget_gradient` returns G as a dict). Restricted to `wrong`, both sums run over the D_f
samples still misclassified w.r.t. their corrected labels (and their corrections).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.errors import NumericalError
from core.functional import eval_mode
from core.unlearning.context import Context, Params

LossFn = Callable[[nn.Module, int], Tensor | None]


def forget_loss(model: nn.Module, ctx: Context, ascent: float = 1.0, wrong: Tensor | None = None) -> Tensor:
    """Σ_{z̃∈D̃_f} ℓ(z̃) − ascent · Σ_{z∈D_f} ℓ(z) (summed cross-entropy), a scalar.

    wrong: BoolTensor [F] selecting D_f samples; D̃_f is then restricted to the same samples
    when it pairs with D_f (F' = F), else to the corrected samples the model gets wrong."""
    x_f, y_f, x_c, y_c = ctx.x_f, ctx.y_f, ctx.x_c, ctx.y_c
    if wrong is not None:
        if len(y_c) == len(y_f):
            keep_c = wrong
        else:
            with torch.no_grad():
                keep_c = model(x_c).argmax(1) != y_c
        x_f, y_f, x_c, y_c = x_f[wrong], y_f[wrong], x_c[keep_c], y_c[keep_c]
    loss = torch.zeros((), device=ctx.device)
    if len(y_c):
        loss = loss + F.cross_entropy(model(x_c), y_c, reduction="sum")
    if ascent and len(y_f):
        loss = loss - ascent * F.cross_entropy(model(x_f), y_f, reduction="sum")
    ctx.grad_evals += len(y_c) + len(y_f)
    return loss


def forget_gradient(
    model: nn.Module, ctx: Context, ascent: float = 1.0, wrong: Tensor | None = None
) -> Params:
    """G at the module's current weights (eval mode), {name: tensor of the parameter's shape}."""
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    with eval_mode(model):
        loss = forget_loss(model, ctx, ascent, wrong)
        if not loss.requires_grad:
            return {n: torch.zeros_like(p) for n, p in zip(names, params)}
        return dict(zip(names, torch.autograd.grad(loss, params)))


@torch.no_grad()
def wrong_on_forget(model: nn.Module, ctx: Context) -> Tensor:
    """BoolTensor [F]: the D_f inputs the model does not give their corrected label."""
    with eval_mode(model):
        return model(ctx.x_f).argmax(1) != ctx.y_fix


# -- the retain anchor: retain_weight · mean_i ‖f(x_i; θ) − f(x_i; θ*)‖² over a D_r batch


@torch.no_grad()
def anchor_logits(ctx: Context) -> Tensor | None:
    """θ*'s logits on the whole update part of D_r (the anchor's target); None when it is empty."""
    if not len(ctx.y_r):
        return None
    with eval_mode(ctx.original):
        return ctx.original(ctx.x_r)


def retain_batch(ctx: Context, gen: torch.Generator, size: int) -> Tensor:
    """Indices of a batch of min(size, |D_r|) update samples, drawn with replacement."""
    return torch.randint(len(ctx.y_r), (min(size, len(ctx.y_r)),), generator=gen).to(ctx.device)


@torch.no_grad()
def fixed_retain(ctx: Context, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """One D_r batch for every step, with θ*'s logits on it (a forward of `retain_batch`
    samples instead of the whole retain set)."""
    idx = torch.randperm(len(ctx.y_r), generator=gen)[: ctx.hp["retain_batch"]].to(ctx.device)
    with eval_mode(ctx.original):
        return idx, ctx.original(ctx.x_r[idx])


def anchor_loss(model: nn.Module, ctx: Context, anchor: Tensor, gen: torch.Generator) -> Tensor:
    """retain_weight · mean_i ‖f(x_i; θ) − f(x_i; θ*)‖² over a random D_r batch."""
    idx = retain_batch(ctx, gen, ctx.hp["retain_batch"])
    ctx.grad_evals += len(idx)
    return ctx.hp["retain_weight"] * (model(ctx.x_r[idx]) - anchor[idx]).pow(2).sum(1).mean()


# -- masked optimizer steps

CURVE_POINTS = 30


def optimizer(name: str, params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr) if name == "adam" else torch.optim.SGD(params, lr=lr)


def masked_steps(
    model: nn.Module,
    ctx: Context,
    loss_fn: LossFn,
    steps: int,
    opt: torch.optim.Optimizer,
    *,
    offset: int = 0,
    total: int | None = None,
) -> int:
    """Run `steps` optimizer steps on loss_fn(model, step) with the gradient multiplied by M
    before each step (so Adam's moments stay zero outside the mask).

    loss_fn returns None to stop early. Returns the number of steps taken. `offset`: steps
    already taken on this trajectory (the monitor's step numbers); `total`: its length."""
    params = [p for _, p in model.named_parameters()]
    masks = [ctx.mask[n] for n, _ in model.named_parameters()]
    # at most CURVE_POINTS monitored points (+ the last): each is a forward pass over thousands of
    # evaluation images, display only, so a long trajectory is sampled more sparsely
    every = max(ctx.monitor_every, math.ceil((total or 0) / CURVE_POINTS))
    done = 0
    with eval_mode(model):
        for step in range(steps):
            loss = loss_fn(model, step)
            if loss is None:
                break
            if not torch.isfinite(loss):
                raise NumericalError(
                    f"unlearning loss became {float(loss.detach())} at step {step + 1}; lower unlearning.lr"
                )
            opt.zero_grad(set_to_none=False)
            loss.backward()
            for p, m in zip(params, masks):
                p.grad.mul_(m)
            opt.step()
            done += 1
            at = offset + done
            if total is not None and (at % every == 0 or at == total):
                ctx.record(model, at)
            if ctx.progress is not None:
                ctx.progress(step + 1, steps, "unlearning step")
    return done
