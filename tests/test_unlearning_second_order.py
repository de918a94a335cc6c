"""Second order against dense linear algebra: the solvers on hand-made matrices, and the masked
solve of `second_order` against the dense GGN / Hessian of a tiny net restricted to a partial mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian, jacrev

from core import unlearning
from core.scenarios import ForgetSet
from core.unlearning import solvers
from tests.test_unlearning import tiny_forget_set


def as_params(v: torch.Tensor) -> dict:
    return {"v": v.clone()}


def matrix(a: torch.Tensor):
    return lambda p: {"v": a @ p["v"]}


def spd(n: int, seed: int = 0) -> torch.Tensor:
    q = torch.linalg.qr(
        torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )[0]
    return q @ torch.diag(torch.linspace(0.1, 10.0, n, dtype=torch.float64)) @ q.T


def test_cg_solves_an_spd_system_and_reports_the_true_residual():
    a, b = spd(12), torch.arange(1.0, 13.0, dtype=torch.float64)
    res = solvers.conjugate_gradient(matrix(a), as_params(b), iters=100, tol=1e-10)
    u = res.u["v"]
    assert res.converged and not res.negative_curvature and res.iters <= 24
    assert torch.allclose(u, torch.linalg.solve(a, b), rtol=1e-8)
    assert res.rel_residual == pytest.approx(
        float(torch.linalg.norm(a @ u - b) / torch.linalg.norm(b)), abs=1e-14
    )


def test_cg_with_too_few_iterations_says_it_did_not_converge():
    a, b = spd(12), torch.ones(12, dtype=torch.float64)
    res = solvers.conjugate_gradient(matrix(a), as_params(b), iters=2, tol=1e-6)
    true = float(torch.linalg.norm(a @ res.u["v"] - b) / torch.linalg.norm(b))
    assert not res.converged and res.iters == 2 and res.rel_residual == pytest.approx(true) and true > 1e-6


def test_cg_on_an_indefinite_matrix_stops_and_says_so():
    a = torch.diag(torch.tensor([3.0, 1.0, -2.0], dtype=torch.float64))
    res = solvers.conjugate_gradient(matrix(a), as_params(torch.ones(3, dtype=torch.float64)), iters=50)
    assert res.negative_curvature and not res.converged


def test_levenberg_marquardt_raises_damping_until_the_system_is_positive_definite():
    a = torch.diag(torch.tensor([3.0, 1.0, -2.0], dtype=torch.float64))
    b = torch.ones(3, dtype=torch.float64)
    res = solvers.solve_damped(matrix(a), as_params(b), 0.01, iters=50, tol=1e-10, raise_damping=True)
    assert res.converged and res.restarts == 3 and res.damping == pytest.approx(10.0)  # 0.01 -> 10: λ > 2
    damped = a + res.damping * torch.eye(3, dtype=torch.float64)
    assert torch.allclose(res.u["v"], torch.linalg.solve(damped, b), rtol=1e-8)
    plain = solvers.solve_damped(matrix(a), as_params(b), 0.01, iters=50, raise_damping=False)
    assert not plain.converged and plain.damping == 0.01


def test_lissa_and_the_power_iteration_on_an_spd_matrix():
    a, b = spd(6, seed=1), torch.ones(6, dtype=torch.float64)
    top = solvers.power_iteration(matrix(a), as_params(torch.ones(6, dtype=torch.float64)), iters=200)
    assert top == pytest.approx(10.0, rel=1e-3)
    res = solvers.lissa(matrix(a), as_params(b), iters=2000, scale=1.1 * top, tol=1e-8)
    assert res.converged and torch.allclose(res.u["v"], torch.linalg.solve(a, b), rtol=1e-6)
    short = solvers.lissa(matrix(a), as_params(b), iters=5, scale=1.1 * top)
    assert not short.converged and short.rel_residual > 1e-3


def test_masked_operator_is_the_principal_submatrix():
    a, keep = spd(5), torch.tensor([True, False, True, True, False])
    v = torch.arange(1.0, 6.0, dtype=torch.float64)
    out = solvers.masked(matrix(a), {"v": keep})(as_params(v))["v"]
    expected = torch.zeros(5, dtype=torch.float64)
    expected[keep] = a[keep][:, keep] @ v[keep]
    assert torch.allclose(out, expected)


# -- the masked second-order step of a tiny net against dense matrices (float64) ------------------


def double_forget_set() -> ForgetSet:
    fs = tiny_forget_set(n=30, n_forget=6)
    return ForgetSet(
        "label_flip",
        {},
        fs.x_train.double(),
        fs.y_train,
        fs.y_true,
        fs.forget_idx,
        fs.corrected_x.double(),
        fs.corrected_y,
        3,
    )


def tanh_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def partial_mask(model: nn.Module) -> dict:
    g = torch.Generator().manual_seed(3)
    return {n: torch.rand(p.shape, generator=g) < 0.5 for n, p in model.named_parameters()}


def flat_problem(model: nn.Module, fs: ForgetSet):
    """θ* flat, an unflatten, the summed loss over (x, y) as a function of flat θ, and G flat."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])

    def unflatten(v):
        out, i = {}, 0
        for n, s in zip(names, shapes):
            out[n] = v[i : i + s.numel()].view(s)
            i += s.numel()
        return out

    def logits(v, x):
        return functional_call(model, unflatten(v), (x,))

    def loss(v, x, y):
        return F.cross_entropy(logits(v, x), y, reduction="sum")

    g = torch.func.grad(loss)(theta, *fs.corrected) - torch.func.grad(loss)(theta, *fs.forget)
    return theta, logits, loss, g


def masked_u(model: nn.Module, new: nn.Module, mask: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """u = θ* − θ_new (lr = 1) and the flat mask."""
    u = torch.cat([(p - q).detach().flatten() for p, q in zip(model.parameters(), new.parameters())])
    return u, torch.cat([mask[n].flatten() for n, _ in model.named_parameters()])


def test_masked_ggn_solve_matches_the_dense_solve():
    fs, model = double_forget_set(), tanh_net()
    mask, lam = partial_mask(model), 0.05
    theta, logits, _, g = flat_problem(model, fs)
    jac = jacrev(logits)(theta, fs.x_train)  # N×C×P
    prob = F.softmax(logits(theta, fs.x_train), dim=1)
    h_out = torch.diag_embed(prob) - prob[:, :, None] * prob[:, None, :]  # N×C×C
    ggn = torch.einsum("ncp,ncd,ndq->pq", jac, h_out, jac)
    new, log = unlearning.unlearn(
        model, mask, fs, "second_order", lr=1.0, damping=lam, cg_iters=300, tol=1e-11
    )
    u, keep = masked_u(model, new, mask)
    dense = torch.linalg.solve(
        ggn[keep][:, keep] + lam * torch.eye(int(keep.sum()), dtype=torch.float64), g[keep]
    )
    assert log["converged"] and log["applied"] and log["curvature"] == "ggn" and log["rel_residual"] <= 1e-11
    assert log["damping"] == lam and log["damping_raises"] == 0  # the GGN needs no raise
    assert torch.linalg.norm(u[keep] - dense) <= 1e-6 * torch.linalg.norm(dense)
    assert torch.equal(u[~keep], torch.zeros(int((~keep).sum()), dtype=torch.float64))


def test_masked_hessian_solve_raises_damping_until_positive_definite_and_matches_the_dense_solve():
    fs, model = double_forget_set(), tanh_net(seed=1)
    mask, lam0 = partial_mask(model), 1e-3
    theta, _, loss, g = flat_problem(model, fs)
    keep = torch.cat([mask[n].flatten() for n, _ in model.named_parameters()])
    h_mm = hessian(loss)(theta, fs.x_train, fs.y_train)[keep][:, keep]
    assert torch.linalg.eigvalsh(h_mm).min() < -lam0  # the case is indefinite
    new, log = unlearning.unlearn(
        model, mask, fs, "second_order", lr=1.0, curvature="hessian", damping=lam0, cg_iters=500, tol=1e-11
    )
    lam = log["damping"]
    assert (
        log["converged"]
        and log["damping_raises"] >= 1
        and lam == pytest.approx(lam0 * 10 ** log["damping_raises"])
    )
    assert torch.linalg.eigvalsh(h_mm).min() + lam > 0  # the final system is positive definite
    u, _ = masked_u(model, new, mask)
    dense = torch.linalg.solve(h_mm + lam * torch.eye(int(keep.sum()), dtype=torch.float64), g[keep])
    assert torch.linalg.norm(u[keep] - dense) <= 1e-6 * torch.linalg.norm(dense)
