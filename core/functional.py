"""Low-level pieces shared by curvature, selection and unlearning (no other core import).

Parameters are handled as `dict[name, Tensor]` (torch.func style):

    eval_mode(model)                      context manager: eval mode inside, every submodule's
                                          previous mode restored after
    trainable(model)                      [(name, parameter)] of the parameters that require grad
    split_params(model)                   (trainable params detached, everything else: frozen
                                          params and buffers) for functional_call
    summed_loss(model, rest, x, y)        p ↦ Σ_i ℓ(f(x_i; p), y_i), ℓ = cross-entropy
    hvp(model, x, y, scale)               v ↦ scale · ∇²_θ Σ_i ℓ(x_i, y_i) · v  (forward-over-reverse)
    ggn_vp(model, x, y, scale)            v ↦ scale · Σ_i J_iᵀ H_i J_i v, H_i = diag(p_i) − p_i p_iᵀ
                                          (the generalized Gauss–Newton matrix: positive semi-definite)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp

Params = dict[str, Tensor]
LinearMap = Callable[[Params], Params]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode during the computation (BatchNorm uses running statistics, no dropout); every
    submodule's previous mode is restored afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs that require grad, in module order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def split_params(model: nn.Module) -> tuple[Params, Params]:
    """(trainable parameters, detached; frozen parameters and buffers) for `functional_call`."""
    params = {n: p.detach() for n, p in trainable(model)}
    rest = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    rest.update(dict(model.named_buffers()))
    return params, rest


def summed_loss(model: nn.Module, rest: Params, x: Tensor, y: Tensor) -> Callable[[Params], Tensor]:
    """p ↦ Σ_i cross-entropy(f(x_i; p), y_i) (a sum, not a mean)."""

    def loss(p: Params) -> Tensor:
        return F.cross_entropy(functional_call(model, (p, rest), (x,)), y, reduction="sum")

    return loss


def hvp(model: nn.Module, x: Tensor, y: Tensor, scale: float = 1.0) -> LinearMap:
    """v ↦ scale · ∇²Σ_i ℓ(x_i, y_i) v at the model's current weights, in eval mode.

    Forward-over-reverse (jvp of grad): one call costs about two backward passes over x."""
    params, rest = split_params(model)
    grad_fn = grad(summed_loss(model, rest, x, y))

    def apply(v: Params) -> Params:
        with eval_mode(model):
            out = jvp(grad_fn, (params,), (v,))[1]
        return {n: t * scale for n, t in out.items()}

    return apply


def ggn_vp(model: nn.Module, x: Tensor, y: Tensor, scale: float = 1.0) -> LinearMap:
    """v ↦ scale · Σ_i J_iᵀ H_i J_i v, the generalized Gauss–Newton product of the summed
    cross-entropy (J_i: Jacobian of the logits of x_i, H_i = diag(p_i) − p_i p_iᵀ the softmax
    Hessian). Positive semi-definite for any network; equal to the Hessian for networks that are
    piecewise linear in their parameters, up to the residual term Σ (∂ℓ/∂f) ∇²f.

    One forward-mode pass (J v) and one reverse pass (Jᵀ u) over x per call. `y` is unused by
    the GGN (it does not depend on the labels) and kept for a uniform signature with `hvp`."""
    del y
    params, rest = split_params(model)

    def logits(p: Params) -> Tensor:
        return functional_call(model, (p, rest), (x,))

    with eval_mode(model), torch.no_grad():
        prob = F.softmax(logits(params), dim=1)

    def apply(v: Params) -> Params:
        with eval_mode(model):
            _, jv = jvp(logits, (params,), (v,))  # N×C
            hjv = prob * jv - prob * (prob * jv).sum(1, keepdim=True)  # H_i (J_i v)
            _, pullback = vjp(logits, params)
            (out,) = pullback(hjv)
        return {n: t * scale for n, t in out.items()}

    return apply
