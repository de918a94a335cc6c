"""The second-order direction u: (C_MM + λI) u = G_M, C the curvature of the SUMMED training
loss on D (the same scale as G), restricted to the mask M.

    curvature "ggn"      C = Σ_i J_iᵀ H_i J_i, the generalized Gauss–Newton matrix: positive
                         semi-definite, so C_MM + λI is positive definite and CG applies (the
                         choice of influence-function work for non-convex networks)
    curvature "hessian"  C = ∇²Σ ℓ; indefinite away from a minimum, so λ is raised
                         Levenberg–Marquardt style (×`damping_factor`) and the solve restarted
                         whenever CG meets non-positive curvature (at most `max_raises` times)

solver "cg" (conjugate gradients), "lissa" (the LiSSA series, its scale from a power iteration
on the same masked product) or "diagonal" (u = G / (diag C + λ), from the given `scores` or the
exact Hessian diagonal). Every answer reports rel_residual and converged (≤ `tol`); a
direction that did not converge is returned with converged False and must not be applied.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from core.curvature import hessian_diagonal
from core.functional import ggn_vp, hvp, trainable
from core.unlearning.context import Context, Params
from core.unlearning.solvers import (
    LinearMap,
    Solve,
    damped,
    diagonal_solve,
    lissa,
    masked,
    power_iteration,
    relative_residual,
    solve_damped,
)


def curvature_data(ctx: Context) -> tuple[Tensor, Tensor, float]:
    """D as trained, or a seeded subsample of `hessian_samples`, and the factor scaling its sum
    to the sum over D."""
    fs = ctx.forget_set
    x, y = fs.x_train, fs.y_train
    n = ctx.hp["hessian_samples"]
    if n is not None and n < len(y):
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(ctx.seed))[:n]
        return x[idx].to(ctx.device), y[idx].to(ctx.device), len(y) / n
    return x.to(ctx.device), y.to(ctx.device), 1.0


def curvature_product(ctx: Context, model: nn.Module, x: Tensor, y: Tensor, scale: float) -> LinearMap:
    """v ↦ M ⊙ C (M ⊙ v) at the module's current weights (C: ctx.hp["curvature"]), counted in
    grad_evals as two passes over x per product."""
    product = (ggn_vp if ctx.hp["curvature"] == "ggn" else hvp)(model, x, y, scale)
    mask = {n: ctx.mask[n] for n, _ in trainable(model)}
    inner = masked(product, mask)

    def counted(v: Params) -> Params:
        ctx.grad_evals += 2 * len(y)
        return inner(v)

    return counted


def newton_direction(ctx: Context, model: nn.Module, g: Params) -> tuple[Params, dict[str, Any]]:
    """u with (C_MM + λI) u = G_M at the module's weights; g must already be masked.

    Returns (u, log) with log keys solver, curvature, iters, rel_residual, converged, damping
    (the final λ), damping_raises, hessian_samples, and note when not converged."""
    hp = ctx.hp
    names = [n for n, _ in trainable(model)]
    g = {n: g[n] for n in names}
    x, y, scale = curvature_data(ctx)
    product = curvature_product(ctx, model, x, y, scale)
    lam = float(hp["damping"])
    info: dict[str, Any] = {"solver": hp["solver"], "curvature": hp["curvature"], "hessian_samples": len(y)}
    if hp["solver"] == "cg":
        res = solve_damped(
            product,
            g,
            lam,
            iters=hp["cg_iters"],
            tol=hp["tol"],
            raise_damping=hp["curvature"] == "hessian",
            factor=hp["damping_factor"],
            max_raises=hp["max_raises"],
        )
    elif hp["solver"] == "lissa":
        start = {
            n: torch.randn(t.shape, generator=torch.Generator().manual_seed(ctx.seed)).to(t)
            for n, t in g.items()
        }
        system = damped(product, lam)
        top = power_iteration(system, {n: start[n] * ctx.mask[n] for n in names})
        res = lissa(system, g, hp["cg_iters"], 1.1 * top, tol=hp["tol"])
        res = Solve(res.u, res.iters, res.rel_residual, res.converged, lam)
    else:
        res = diagonal_solve(g, _diagonal(ctx, model, x, y, scale, names), lam, tol=hp["tol"])
        # how far the diagonal answer is from solving the full masked system (for the reader)
        info["rel_residual_curvature"] = relative_residual(damped(product, lam), res.u, g)
    info.update(
        iters=res.iters,
        rel_residual=res.rel_residual,
        converged=res.converged,
        damping=res.damping,
        damping_raises=res.restarts,
    )
    if not res.converged:
        why = (
            "met non-positive curvature"
            if res.negative_curvature
            else f"stopped after {res.iters} iterations"
        )
        info["note"] = (
            f"{hp['solver']} did not converge ({why}; ‖A u − G‖/‖G‖ = {res.rel_residual:.3g} > "
            f"tol {hp['tol']}), so it was not applied; raise unlearning.cg_iters or unlearning.damping"
        )
    u = {n: res.u[n] * ctx.mask[n] if n in res.u else torch.zeros_like(t) for n, t in ctx.theta_star.items()}
    return u, info


def _diagonal(ctx: Context, model: nn.Module, x: Tensor, y: Tensor, scale: float, names: list[str]) -> Params:
    """diag C of the summed loss: from `scores` (given for the MEAN loss over the N training
    samples) or the exact Hessian diagonal on the curvature data."""
    scores = ctx.hp.get("scores")
    if scores is not None:
        n_train = len(ctx.forget_set.y_train)
        return {n: scores[n].to(ctx.theta_star[n]) * n_train for n in names}
    diag = hessian_diagonal(model, x, y, "exact")
    ctx.grad_evals += 10 * len(y)  # one backward with K logit columns
    return {n: diag[n].to(ctx.theta_star[n]) * len(y) * scale for n in names}  # mean -> summed loss
