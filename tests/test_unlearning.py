"""Masked unlearning against independent computations (hand-made Warnecke step, dense solve),
the method registry, and numbers pinned from before the package split."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from core import unlearning
from core.errors import ConfigError, NumericalError
from core.scenarios import ForgetSet


def tiny_forget_set(n: int = 40, n_forget: int = 8, n_classes: int = 3, seed: int = 0) -> ForgetSet:
    """A label-flip forget set on random 1×2×2 'images' (D̃_f = D_f with the true labels)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 2, 2, generator=g)
    y_true = torch.randint(n_classes, (n,), generator=g)
    idx = torch.arange(n_forget)
    y = y_true.clone()
    y[idx] = (y_true[idx] + 1) % n_classes
    return ForgetSet("label_flip", {}, x, y, y_true, idx, x[idx].clone(), y_true[idx].clone(), n_classes)


def linear(seed: int = 0, n_classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, n_classes))


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def full_mask(model: nn.Module) -> dict:
    return {n: torch.ones(p.shape, dtype=torch.bool) for n, p in model.named_parameters()}


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_first_order_full_mask_is_warnecke_step():
    fs, model = tiny_forget_set(), small_net()
    tau = 0.05
    # independent: a per-sample loop of gradients, G = Σ ∇ℓ(z̃) − Σ ∇ℓ(z)
    params = list(model.parameters())
    g_sum = [torch.zeros_like(p) for p in params]
    for (x, y), sign in [(fs.corrected, 1.0), (fs.forget, -1.0)]:
        for i in range(len(y)):
            grads = torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), params)
            for acc, gi in zip(g_sum, grads):
                acc += sign * gi
    expected = torch.cat([(p - tau * g).detach().flatten() for p, g in zip(params, g_sum)])
    before = flat(model)
    new, log = unlearning.unlearn(model, full_mask(model), fs, "first_order", lr=tau, steps=1)
    assert torch.allclose(flat(new), expected, atol=1e-6)
    assert torch.equal(flat(model), before)  # the input model is untouched
    assert log["lr"] == tau and log["n_selected"] == before.numel()


def _dense_newton(model: nn.Module, fs: ForgetSet, lam: float) -> torch.Tensor:
    """θ* − (H + λI)⁻¹ G with H = ∇² Σ ℓ over D from torch.func.hessian (dense)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = flat(model)

    def unflatten(v):
        out, i = {}, 0
        for n, s in zip(names, shapes):
            k = s.numel()
            out[n] = v[i : i + k].view(s)
            i += k
        return out

    def loss(v, x, y):
        return F.cross_entropy(torch.func.functional_call(model, unflatten(v), (x,)), y, reduction="sum")

    hess = torch.func.hessian(loss)(theta, fs.x_train, fs.y_train)
    g = torch.func.grad(loss)(theta, *fs.corrected) - torch.func.grad(loss)(theta, *fs.forget)
    u = torch.linalg.solve(hess + lam * torch.eye(len(theta)), g)
    return theta - u


def test_second_order_full_mask_on_logistic_regression_matches_dense_solve():
    fs, model = tiny_forget_set(), linear()
    lam = 0.5
    new, log = unlearning.unlearn(
        model, full_mask(model), fs, "second_order", lr=1.0, damping=lam, cg_iters=100, tol=1e-6
    )
    # for a linear model the GGN is the Hessian: the default curvature solves the Newton system
    assert torch.allclose(flat(new), _dense_newton(model, fs, lam), atol=1e-4)
    assert log["solver"] == "cg" and log["curvature"] == "ggn" and log["converged"] and log["applied"]
    assert log["rel_residual"] <= 1e-6 and log["changed"] and log["note"] is None


def test_second_order_lissa_approximates_dense_solve():
    fs, model = tiny_forget_set(), linear()
    lam = 2.0
    new, log = unlearning.unlearn(
        model,
        full_mask(model),
        fs,
        "second_order",
        lr=1.0,
        damping=lam,
        solver="lissa",
        cg_iters=400,
        tol=1e-2,
    )
    expected = _dense_newton(model, fs, lam)
    assert log["converged"] and torch.allclose(flat(new), expected, atol=1e-3)


def test_second_order_diagonal_uses_given_scores():
    fs, model = tiny_forget_set(), linear()
    scores = {n: torch.full(p.shape, 0.25) for n, p in model.named_parameters()}  # mean-loss scale
    lam = 1.0
    new, log = unlearning.unlearn(
        model, full_mask(model), fs, "second_order", lr=1.0, damping=lam, solver="diagonal", scores=scores
    )
    params = list(model.parameters())
    corrected = F.cross_entropy(model(fs.corrected[0]), fs.corrected[1], reduction="sum")
    loss = corrected - F.cross_entropy(model(fs.forget[0]), fs.forget[1], reduction="sum")
    g = torch.autograd.grad(loss, params)
    n = len(fs.y_train)
    expected = torch.cat([(p - gi / (0.25 * n + lam)).detach().flatten() for p, gi in zip(params, g)])
    assert torch.allclose(flat(new), expected, atol=1e-6)
    assert log["converged"] and log["rel_residual_curvature"] > 0  # the diagonal is not the full system


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    method=st.sampled_from(["first_order", "second_order", "masked_finetune", "warnecke_iterative", "ssd"]),
    density=st.floats(0.05, 0.9),
)
def test_coordinates_outside_the_mask_never_change(seed, method, density):
    fs, model = tiny_forget_set(seed=seed % 7), small_net(seed % 5)
    g = torch.Generator().manual_seed(seed)
    mask = {n: torch.rand(p.shape, generator=g) < density for n, p in model.named_parameters()}
    if not any(m.any() for m in mask.values()):
        mask["1.weight"][0, 0] = True
    hp = {"masked_finetune": {"steps": 3}, "warnecke_iterative": {"rounds": 2}}.get(method, {})
    new, _ = unlearning.unlearn(model, mask, fs, method, seed=seed, **hp)
    for (n, p), q in zip(model.named_parameters(), new.parameters()):
        outside = ~mask[n]
        assert torch.equal(p.detach()[outside], q.detach()[outside]), n  # bit-identical


@pytest.mark.parametrize("method", ["masked_finetune", "finetune", "neggrad", "first_order"])
def test_multi_step_methods_move_only_the_mask_and_log(method):
    fs, model = tiny_forget_set(), small_net()
    mask = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in model.named_parameters()}
    mask["3.weight"][:] = True
    new, log = unlearning.unlearn(model, mask, fs, method, steps=5)
    changed = {n for (n, p), q in zip(model.named_parameters(), new.parameters()) if not torch.equal(p, q)}
    assert changed <= {"3.weight"}
    assert log["grad_evals"] > 0 and log["seconds"] >= 0 and log["n_selected"] == 18


def test_masked_finetune_fixes_the_flipped_labels_of_a_trained_model():
    fs = tiny_forget_set(n=60, n_forget=6)
    model = small_net()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):  # fit D as trained, flipped labels included
        opt.zero_grad()
        F.cross_entropy(model(fs.x_train), fs.y_train).backward()
        opt.step()
    x_f, y_true = fs.forget_true
    before = float((model(x_f).argmax(1) == y_true).float().mean())
    new, _ = unlearning.unlearn(model, full_mask(model), fs, "masked_finetune", steps=40, lr=0.01)
    after = float((new(x_f).argmax(1) == y_true).float().mean())
    assert after > before


def test_retrain_ignores_the_mask_and_trains_from_scratch():
    fs, model = tiny_forget_set(), small_net()
    new, log = unlearning.unlearn(model, None, fs, "retrain", epochs=2, batch_size=16)
    assert not torch.equal(flat(new), flat(model)) and log["epochs"] == 2


def test_the_retrain_method_trains_like_the_runs_train_section(monkeypatch):
    """The `retrain` row is trained with the run's optimizer, weight decay and lr schedule — the
    same recipe as the retrained reference (it once dropped weight_decay and the schedule)."""
    from core import config, experiment
    from core.unlearning import rules
    from tests.conftest import small_config

    train = {"epochs": 2, "lr": 0.01, "batch_size": 16, "weight_decay": 0.01, "schedule": "cosine"}
    cfg = config.normalize(small_config(train=train, unlearning={"method": "retrain"}))
    method, hp = experiment.unlearning_hparams(cfg)
    assert method == "retrain" and hp["train_schedule"] == "cosine" and hp["train_weight_decay"] == 0.01
    seen, real = {}, rules.train
    monkeypatch.setattr(rules, "train", lambda *a, **k: seen.update(k) or real(*a, **k))
    unlearning.unlearn(small_net(), None, tiny_forget_set(), "retrain", **hp)
    assert {k: seen[k] for k in ("epochs", "lr", "batch_size", "weight_decay", "schedule")} == {
        "epochs": 2,
        "lr": 0.01,
        "batch_size": 16,
        "weight_decay": 0.01,
        "schedule": "cosine",
    }


def test_bad_input_is_refused():
    fs, model = tiny_forget_set(), small_net()
    empty = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in model.named_parameters()}
    with pytest.raises(ConfigError, match="mask"):
        unlearning.unlearn(model, empty, fs, "first_order")
    with pytest.raises(ConfigError, match="unlearning.method"):
        unlearning.unlearn(model, full_mask(model), fs, "magic")
    with pytest.raises(ConfigError, match="unlearning.lr"):
        unlearning.unlearn(model, full_mask(model), fs, "first_order", lr=-1.0)
    with pytest.raises(ConfigError, match="unlearning.bogus"):
        unlearning.unlearn(model, full_mask(model), fs, "first_order", bogus=1)
    bad_shape = {**full_mask(model), "1.weight": torch.ones(2, 2, dtype=torch.bool)}
    with pytest.raises(ConfigError, match="shape"):
        unlearning.unlearn(model, bad_shape, fs, "first_order")


def test_non_finite_values_stop_the_run():
    fs, model = tiny_forget_set(), small_net()
    with pytest.raises(NumericalError):
        unlearning.unlearn(model, full_mask(model), fs, "first_order", lr=1e38, steps=3)
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken[1].weight[0, 0] = float("nan")
    with pytest.raises(NumericalError):
        unlearning.unlearn(broken, full_mask(broken), fs, "first_order", lr=0.1)


def test_check_hparams_names_the_field():
    with pytest.raises(ConfigError, match="unlearning.optimizer"):
        unlearning.check_hparams({"optimizer": "rmsprop"})
    with pytest.raises(ConfigError, match="unlearning.damping"):
        unlearning.check_hparams({"damping": 0})
    unlearning.check_hparams({"method": "masked_finetune", "steps": 3, "lr": "auto", "retain_weight": 0.5})
    unlearning.check_hparams({"steps": 3, "damping": 0.5})  # a sweep's section shared by several methods
    with pytest.raises(ConfigError, match="unlearning.steps.*second_order"):
        unlearning.check_hparams({"steps": 3}, method="second_order")
    with pytest.raises(ConfigError, match="unlearning.curvature"):
        unlearning.check_hparams({"curvature": "fisher"})
    with pytest.raises(ConfigError, match="masked_finetune.*warnecke_iterative"):
        unlearning.check_hparams({"method": "iterative"})


def test_monitor_records_the_kept_trajectory_and_is_not_timed():
    fs, model = tiny_forget_set(n=60, n_forget=6), small_net()
    x_f, y_true = fs.forget_true
    seen = []

    def monitor(m):
        seen.append(flat(m))
        return {"forget_acc": float((m(x_f).argmax(1) == y_true).float().mean())}

    new, log = unlearning.unlearn(
        model,
        full_mask(model),
        fs,
        "masked_finetune",
        steps=6,
        lr=0.01,
        wrong_only=False,
        monitor=monitor,
        monitor_every=2,
    )
    curve = log["curve"]
    assert curve["step"] == [0, 2, 4, 6] and log["steps"] == 6
    assert torch.equal(seen[0], flat(model)) and torch.equal(seen[-1], flat(new))  # θ* first, θ_u last
    assert curve["forget_acc"][-1] == pytest.approx(float((new(x_f).argmax(1) == y_true).float().mean()))
    assert log["curve_seconds"] > 0 and log["seconds"] >= 0
    _, plain = unlearning.unlearn(model, full_mask(model), fs, "first_order", lr=0.1, monitor=monitor)
    assert "curve" not in plain  # one-shot methods have no trajectory


def test_auto_step_size_returns_a_point_that_kept_validation_accuracy():
    fs = tiny_forget_set(n=200, n_forget=20)
    model = small_net()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(fs.x_train), fs.y_train).backward()
        opt.step()
    _, log = unlearning.unlearn(
        model, full_mask(model), fs, "masked_finetune", steps=8, lr="auto", val_tolerance=0.0
    )
    kept = {0} | {t["step"] for t in log["val_trace"] if t["val_acc"] >= log["val_acc_original"]}
    assert log["steps"] in kept


# -- numbers pinned from the code before the package split (then called "iterative") ---------


def _pinned_case():
    """A small net fitted (flipped labels included) on 120 random points; half the weights masked."""
    fs = tiny_forget_set(n=120, n_forget=12)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(model(fs.x_train), fs.y_train).backward()
        opt.step()
    mask = {
        n: torch.rand(p.shape, generator=torch.Generator().manual_seed(1)) < 0.5
        for n, p in model.named_parameters()
    }
    x_test = torch.rand(50, 1, 2, 2, generator=torch.Generator().manual_seed(9))
    return fs, model, mask, x_test


@pytest.mark.parametrize(
    ("hparams", "logits_sum", "steps"),
    # the former options spelled out (the defaults changed: a fresh retain batch each step, a
    # forget batch of 64, the step size relative to the selected weights)
    [
        (
            {"lr": 0.01, "steps": 6, "retain_fixed": True, "retain_batch": 128, "forget_batch": 10**6},
            17.247661031782627,
            6,
        )
    ],
)
def test_masked_finetune_reproduces_the_former_default(hparams, logits_sum, steps):
    fs, model, mask, x_test = _pinned_case()
    new, log = unlearning.unlearn(model, mask, fs, "masked_finetune", seed=3, **hparams)
    with torch.no_grad():
        total = float(new(x_test).double().sum())
    assert total == pytest.approx(logits_sum, rel=1e-6, abs=1e-5)
    assert log["steps"] == steps and log["changed"] and not log["guard_failed"]


# -- the registry and honest names ----------------------------------------------------------------


def removal_set(n: int = 40, n_forget: int = 8, seed: int = 0) -> ForgetSet:
    fs = tiny_forget_set(n, n_forget, seed=seed)
    empty_x, empty_y = fs.x_train[:0].clone(), fs.y_train[:0].clone()
    return ForgetSet(
        "random_samples", {}, fs.x_train, fs.y_true, fs.y_true, fs.forget_idx, empty_x, empty_y, 3
    )


@pytest.mark.parametrize("method", ["masked_finetune", "warnecke_iterative"])
def test_a_method_that_needs_corrected_samples_is_refused_on_a_removal(method):
    fs, model = removal_set(), small_net()
    assert unlearning.METHODS[method].needs_correction
    with pytest.raises(ConfigError, match="unlearning.method") as err:
        unlearning.unlearn(model, full_mask(model), fs, method)
    assert method in str(err.value)


def test_the_old_name_iterative_is_refused_naming_both_new_ones():
    fs, model = tiny_forget_set(), small_net()
    with pytest.raises(ConfigError, match="unlearning.method") as err:
        unlearning.unlearn(model, full_mask(model), fs, "iterative")
    assert "masked_finetune" in str(err.value) and "warnecke_iterative" in str(err.value)


def test_every_method_logs_the_common_keys():
    fs, model = tiny_forget_set(), small_net()
    for name, spec in unlearning.METHODS.items():
        hp = {"epochs": 1} if name == "retrain" else {"steps": 2} if "steps" in spec.defaults else {}
        _, log = unlearning.unlearn(model, full_mask(model) if spec.uses_mask else None, fs, name, **hp)
        missing = {
            "method",
            "n_selected",
            "grad_evals",
            "seconds",
            "lr",
            "steps",
            "guard_failed",
            "changed",
            "note",
        }
        assert missing - set(log) == set(), name
        assert log["changed"] or log["note"], name  # unchanged always says why


def test_options_of_other_methods_are_ignored_and_listed():
    fs, model = tiny_forget_set(), small_net()
    _, log = unlearning.unlearn(model, full_mask(model), fs, "ssd", steps=3, damping=0.5)
    assert log["ignored"] == ["damping", "steps"]


# -- guards: nothing passes -> θ* unchanged, said so ---------------------------------------------


def _fitted(n: int = 200, n_forget: int = 20):
    fs = tiny_forget_set(n=n, n_forget=n_forget)
    model = small_net()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(fs.x_train), fs.y_train).backward()
        opt.step()
    return fs, model


def test_a_one_shot_step_that_fails_the_guard_leaves_theta_star_bit_identical(monkeypatch):
    fs, model = _fitted()
    monkeypatch.setattr(unlearning.rules, "NEWTON_GRID", (1e4,))  # only a step that wrecks the model
    new, log = unlearning.unlearn(model, full_mask(model), fs, "second_order", val_tolerance=0.0)
    assert log["converged"] and log["lr_tried"][0]["ok"] is False
    assert log["guard_failed"] and not log["applied"] and not log["changed"] and "validation" in log["note"]
    assert torch.equal(flat(new), flat(model))


def test_a_trajectory_that_never_passes_the_guard_leaves_theta_star_bit_identical(monkeypatch):
    fs, model = _fitted()
    monkeypatch.setattr(unlearning.stepsize, "AUTO_STEP", 1e4)  # every step size diverges or wrecks
    new, log = unlearning.unlearn(model, full_mask(model), fs, "neggrad", steps=4, val_tolerance=0.0)
    assert log["rewinds"] == unlearning.stepsize.MAX_REWINDS and log["steps"] == 0
    assert log["guard_failed"] and not log["changed"] and "validation" in log["note"]
    assert torch.equal(flat(new), flat(model))


def test_an_unconverged_solve_is_not_applied():
    fs, model = tiny_forget_set(), small_net()
    new, log = unlearning.unlearn(model, full_mask(model), fs, "second_order", cg_iters=1, tol=1e-8)
    assert not log["converged"] and not log["applied"] and log["rel_residual"] > 1e-8
    assert "not applied" in log["note"] and not log["changed"]
    assert torch.equal(flat(new), flat(model))


# -- Warnecke's iterative variant -------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2])
def test_warnecke_iterative_moves_only_the_mask_and_fixes_forget_samples(order):
    fs, model = _fitted(n=60, n_forget=6)
    x_f, y_true = fs.forget_true
    mask = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in model.named_parameters()}
    mask["3.weight"][:], mask["3.bias"][:] = True, True
    new, log = unlearning.unlearn(model, mask, fs, "warnecke_iterative", order=order, val_tolerance=0.1)
    before = int((model(x_f).argmax(1) != y_true).sum())
    after = int((new(x_f).argmax(1) != y_true).sum())
    assert after < before and log["wrong_left"] == after and log["round_trace"][0]["wrong"] == before
    moved = {n for (n, p), q in zip(model.named_parameters(), new.parameters()) if not torch.equal(p, q)}
    assert moved and moved <= {"3.weight", "3.bias"}
    if order == 2:
        assert log["converged"] and log["applied"] and log["solver"] == "cg"


def test_warnecke_gradient_uses_only_the_samples_still_wrong():
    """With G over the wrong samples only, a forget set whose samples are all right leaves θ*."""
    fs, model = _fitted(n=60, n_forget=6)
    x_f, _ = fs.forget_true
    right = model(x_f).argmax(1)  # call the model's answers the corrected labels: nothing is wrong
    fixed = ForgetSet(
        "label_flip", {}, fs.x_train, fs.y_train, fs.y_true.clone(), fs.forget_idx, x_f, right, 3
    )
    fixed.y_true[fs.forget_idx] = right
    new, log = unlearning.unlearn(model, full_mask(model), fixed, "warnecke_iterative")
    assert log["rounds"] == 0 and not log["changed"] and "corrected label" in log["note"]
    assert torch.equal(flat(new), flat(model))


@pytest.mark.parametrize("name", sorted(unlearning.METHODS))
def test_no_rule_writes_into_theta_star(name):
    """Each rule gets θ* as `ctx.original` and `ctx.theta_star`; after it ran both still hold θ*."""
    from core.unlearning.context import build_context

    fs, model = tiny_forget_set(), small_net()
    spec = unlearning.METHODS[name]
    hp = {"device": None, **spec.defaults, **({"epochs": 1} if name == "retrain" else {})}
    if "steps" in hp:
        hp["steps"] = 2
    ctx = build_context(model, full_mask(model), fs, hp, 0, torch.device("cpu"), mask_required=spec.uses_mask)
    spec.run(ctx)
    for n, p in ctx.original.named_parameters():
        assert torch.equal(p.detach(), model.state_dict()[n]) and torch.equal(
            ctx.theta_star[n], p.detach()
        ), n


def test_a_long_trajectory_is_monitored_at_a_bounded_number_of_points():
    from core.unlearning.steps import CURVE_POINTS

    fs, model = tiny_forget_set(n=60, n_forget=6), small_net()
    calls = []

    def monitor(m):
        calls.append(1)
        return {"n": len(calls)}

    steps = 7 * CURVE_POINTS + 3
    _, log = unlearning.unlearn(
        model,
        full_mask(model),
        fs,
        "masked_finetune",
        steps=steps,
        lr=1e-4,
        val_tolerance=1.0,
        wrong_only=False,
        monitor=monitor,
        monitor_every=1,
    )
    curve = log["curve"]["step"]
    assert log["steps"] == steps and curve[0] == 0 and curve[-1] == steps
    assert len(curve) <= CURVE_POINTS + 2 and len(calls) == len(curve)
    assert len(set(b - a for a, b in zip(curve[:-2], curve[1:-1]))) == 1  # evenly spaced but the last
