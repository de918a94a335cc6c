"""Solvers for A u = b over dicts of tensors, A given as a product v ↦ A v (pure functions:
no model, no data; a test can hand them an explicit matrix).

Every solver reports the relative residual ‖A u − b‖ / ‖b‖ recomputed with one product at the
end (not CG's recursive estimate) and whether it is within `tol`:

    conjugate_gradient  A symmetric positive definite; stops and says so at the first direction
                        with non-positive curvature pᵀA p ≤ 0
    solve_damped        (A + λI) u = b by CG; with `raise_damping` (Levenberg–Marquardt) λ is
                        multiplied by `factor` and the solve restarted whenever CG meets
                        non-positive curvature, at most `max_raises` times
    lissa               u = Σ_j (I − A/s)^j b / s (LiSSA), s > ‖A‖ from `power_iteration`
    diagonal_solve      u = b / (max(d, 0) + λ)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Params = dict[str, Tensor]
LinearMap = Callable[[Params], Params]


@dataclass(frozen=True)
class Solve:
    """A solver's answer: u, the iterations it used, ‖A u − b‖/‖b‖ and whether that is ≤ tol."""

    u: Params
    iters: int
    rel_residual: float
    converged: bool
    damping: float = 0.0  # the final λ (solve_damped, lissa, diagonal_solve)
    negative_curvature: bool = False  # CG met pᵀA p ≤ 0 (in the last solve)
    restarts: int = 0  # damping raises (solve_damped)


def dot(a: Params, b: Params) -> float:
    return float(sum((a[n] * b[n]).sum() for n in a))


def norm(a: Params) -> float:
    return math.sqrt(dot(a, a))


def masked(apply: LinearMap, mask: dict[str, Tensor]) -> LinearMap:
    """v ↦ M ⊙ A (M ⊙ v): A restricted to the coordinates where the mask is True (A_MM)."""

    def product(v: Params) -> Params:
        out = apply({n: v[n] * mask[n] for n in v})
        return {n: out[n] * mask[n] for n in v}

    return product


def damped(apply: LinearMap, damping: float) -> LinearMap:
    """v ↦ A v + λ v (on a masked A and masked vectors: A_MM + λI)."""
    return lambda v: {n: t + damping * v[n] for n, t in apply(v).items()}


def relative_residual(apply: LinearMap, u: Params, b: Params) -> float:
    """‖A u − b‖ / ‖b‖ by one product (0 when b = 0)."""
    b_norm = norm(b)
    if b_norm == 0:
        return 0.0
    au = apply(u)
    return norm({n: au[n] - b[n] for n in b}) / b_norm


def conjugate_gradient(apply: LinearMap, b: Params, iters: int, tol: float = 1e-3) -> Solve:
    """Solve A u = b for symmetric positive-definite A, from u = 0, at most `iters` products.

    When the recursive residual reaches tol, the true residual b − A u is recomputed (one
    product); CG continues from it while iterations remain, so `rel_residual` is never the
    recursive estimate. A direction with pᵀA p ≤ 0 (or non-finite) stops the solve:
    `negative_curvature`, not converged."""
    u = {n: torch.zeros_like(t) for n, t in b.items()}
    b_norm = norm(b)
    if b_norm == 0:
        return Solve(u, 0, 0.0, True)
    r = {n: t.clone() for n, t in b.items()}
    done, negative = 0, False
    while True:
        p = {n: t.clone() for n, t in r.items()}
        rr = dot(r, r)
        while done < iters:
            ap = apply(p)
            pap = dot(p, ap)
            if not math.isfinite(pap) or pap <= 0:
                negative = True
                break
            done += 1
            alpha = rr / pap
            for n in u:
                u[n] += alpha * p[n]
                r[n] -= alpha * ap[n]
            rr_new = dot(r, r)
            if math.sqrt(rr_new) <= tol * b_norm:
                break
            for n in p:
                p[n] = r[n] + (rr_new / rr) * p[n]
            rr = rr_new
        au = apply(u)
        r = {n: b[n] - au[n] for n in b}
        rel = norm(r) / b_norm
        if negative or rel <= tol or done >= iters or not math.isfinite(rel):
            return Solve(u, done, rel, rel <= tol and not negative, negative_curvature=negative)


def solve_damped(
    apply: LinearMap,
    b: Params,
    damping: float,
    *,
    iters: int,
    tol: float = 1e-3,
    raise_damping: bool = False,
    factor: float = 10.0,
    max_raises: int = 8,
) -> Solve:
    """(A + λI) u = b by CG. With `raise_damping`: λ ← factor·λ and a fresh solve whenever CG
    meets non-positive curvature (Levenberg–Marquardt), up to `max_raises` times."""
    lam, raises = float(damping), 0
    while True:
        res = conjugate_gradient(damped(apply, lam), b, iters, tol)
        if not (res.negative_curvature and raise_damping and raises < max_raises):
            return Solve(
                res.u, res.iters, res.rel_residual, res.converged, lam, res.negative_curvature, raises
            )
        lam *= factor
        raises += 1


def power_iteration(apply: LinearMap, start: Params, iters: int = 10) -> float:
    """Estimate of the largest |eigenvalue| of A: ‖A v‖/‖v‖ after `iters` normalized products."""
    v, top = start, 0.0
    for _ in range(iters):
        av = apply(v)
        top = norm(av) / max(norm(v), 1e-30)
        v = {n: t / max(norm(av), 1e-30) for n, t in av.items()}
    return top


def lissa(apply: LinearMap, b: Params, iters: int, scale: float, tol: float = 1e-3) -> Solve:
    """LiSSA: u_{j+1} = b + (I − A/s) u_j from u_0 = b, answer u/s ≈ A⁻¹ b; converges for
    positive-definite A when s > ‖A‖ (take s = 1.1 · power_iteration)."""
    u = {n: t.clone() for n, t in b.items()}
    for _ in range(iters):
        au = apply(u)
        u = {n: b[n] + u[n] - au[n] / scale for n in u}
    u = {n: t / scale for n, t in u.items()}
    rel = relative_residual(apply, u, b)
    return Solve(u, iters, rel, rel <= tol)


def diagonal_solve(b: Params, diagonal: Params, damping: float, tol: float = 1e-3) -> Solve:
    """u = b / (max(d, 0) + λ): the exact solve of the diagonal system (its residual is rounding)."""
    u = {n: b[n] / (diagonal[n].clamp_min(0) + damping) for n in b}
    rel = relative_residual(lambda v: {n: (diagonal[n].clamp_min(0) + damping) * v[n] for n in v}, u, b)
    return Solve(u, 0, rel, rel <= tol, damping)
