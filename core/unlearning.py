"""Masked unlearning: update only the selected parameters so the model forgets D_f.

`unlearn(model, mask, forget_set, method, seed=, progress=, **hparams) -> (new_model, log)`.
The input model is never modified (deep copy); coordinates outside the mask M stay
bit-identical (the result is θ = where(M, θ_new, θ*)). Methods (registry `METHODS`):

    first_order   θ ← θ* − τ·(M ⊙ G),  G = Σ_{z̃∈D̃_f} ∇ℓ(z̃; θ*) − Σ_{z∈D_f} ∇ℓ(z; θ*)
                  (Warnecke et al.). `steps` > 1 repeats the step with G/|D_f| at the current θ,
                  plus a retain anchor (below) in every step.
    second_order  (H_MM + λI) u = G_M by conjugate gradients on masked Hessian-vector products
                  (`solver="lissa"`: LiSSA series; `solver="diagonal"`: u = G / (diag H + λ)),
                  θ_M ← θ*_M − τ·u. H: Hessian of the SUMMED training loss on D (same scale
                  as G), on `hessian_samples` samples scaled to the sum.
    iterative     Warnecke's iterative variant, made stable: `steps` (10) full-batch masked Adam
                  steps, each on the forget points the current model still gets wrong w.r.t.
                  the corrected labels (D_f inputs and D̃_f, both with the corrected labels;
                  `wrong_only=False`: all of them), minus `ascent`·Σ∇ℓ(D_f) of those points,
                  plus the retain anchor on one fixed D_r batch (`retain_fixed`); stops when
                  none is wrong. One forward pass per step. The default: the only one that
                  removes a backdoor (see PAPER.md), at ~5 % of the retraining time on digits.
    finetune      masked descent on batches of D_r ∪ D̃_f for `steps` steps.
    neggrad       masked ascent on D_f with descent on a D_r batch (plain removal).
    ssd           Selective Synaptic Dampening (Foster et al.): with F the empirical Fisher
                  diagonal, where F_f > α·F_D: θ_i ← θ_i · min(λ·F_D,i / F_f,i, 1).
    retrain       training from scratch on D_r ∪ D̃_f: the gold standard (ignores the mask).

Retain anchor (multi-step methods): a batch of D_r in every step (iterative: the same batch,
so θ*'s logits are computed for it only) with loss
`retain_weight`·‖f(x; θ) − f(x; θ*)‖² on the logits. The logit anchor does not saturate on
data the model already fits (cross-entropy on D_r barely pulls back until accuracy drops).

Step size `lr="auto"` (default): a validation split of D_r (`val_fraction`, never the test or
the attack set) is held out of the retain batches. One-shot methods try a grid of step sizes:
the one whose model is right on the most D_f inputs w.r.t. the corrected labels (for plain
removal: forget accuracy closest to validation accuracy) while validation accuracy stays
within `val_tolerance` (0.01) of the original wins. Multi-step methods run one guarded
trajectory from AUTO_START (see _descend). The search is included in the reported seconds.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp

from core.errors import ConfigError, NumericalError

Mask = dict[str, Tensor]
Progress = Callable[[int, int, str], None] | None
Monitor = Callable[[nn.Module], dict[str, float | None]] | None


# ---------------------------------------------------------------------------------------------
# hyper-parameters: one table, validated at the edge (config.normalize calls check_hparams)

COMMON = {"lr": "auto", "val_fraction": 0.2, "val_tolerance": 0.01, "check_every": 5, "device": None}
DEFAULTS: dict[str, dict[str, Any]] = {
    "first_order": {"steps": 1, "ascent": 1.0, "retain_batch": 128, "retain_weight": 0.1,
                    "optimizer": "sgd"},
    "second_order": {"solver": "cg", "damping": 0.1, "cg_iters": 20, "hessian_samples": 512,
                     "ascent": 1.0, "scores": None},
    "iterative": {"steps": 10, "ascent": 0.0, "retain_batch": 128, "retain_weight": 0.1,
                  "optimizer": "adam", "retain_fixed": True, "wrong_only": True, "check_every": 2},
    "finetune": {"steps": 20, "batch_size": 128, "optimizer": "adam"},
    "neggrad": {"steps": 20, "retain_batch": 128, "retain_weight": 1.0, "optimizer": "adam"},
    "ssd": {"alpha": 10.0, "dampening": 1.0},
    "retrain": {"epochs": 30, "train_lr": 1e-3, "batch_size": 64, "train_optimizer": "adam"},
}  # fmt: skip
CHOICES = {"optimizer": ("sgd", "adam"), "solver": ("cg", "lissa", "diagonal"),
           "train_optimizer": ("adam", "sgd")}  # fmt: skip
BOOLS = {"retain_fixed", "wrong_only"}
INTS = {"check_every", "steps", "retain_batch", "cg_iters", "hessian_samples", "batch_size", "epochs"}
# τ grid tried by lr="auto" for the one-shot second-order step (ascending; see _search)
LR_GRID = {"second_order": (0.1, 0.3, 1.0, 3.0, 10.0)}
# first step size of the guarded multi-step schedule (lr="auto")
AUTO_START = {"adam": 0.03, "sgd": 0.03}
# a rewind divides the step size by this
AUTO_BACKOFF = 3.0
ALL_KEYS = set(COMMON) | {k for d in DEFAULTS.values() for k in d} | {"method"}


def check_hparams(hparams: dict, field: str = "unlearning") -> None:
    """Validate unlearning hyper-parameters (any method's keys); raises ConfigError."""
    for k, v in hparams.items():
        f = f"{field}.{k}"
        if k not in ALL_KEYS:
            raise ConfigError(f, f"unknown key; allowed: {sorted(ALL_KEYS)}")
        if k == "method":
            if v not in METHODS:
                raise ConfigError(f, f"{v!r} is not allowed; choose one of {list(METHODS)}")
        elif k == "lr":
            if v != "auto" and (not _num(v) or v <= 0):
                raise ConfigError(f, f"must be 'auto' or a positive number, got {v!r}")
        elif k in CHOICES:
            if v not in CHOICES[k]:
                raise ConfigError(f, f"{v!r} is not allowed; choose one of {list(CHOICES[k])}")
        elif k in ("scores", "device"):
            continue
        elif k in BOOLS:
            if not isinstance(v, bool):
                raise ConfigError(f, f"must be true or false, got {v!r}")
        elif k in INTS:
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f, f"must be an integer ≥ 1, got {v!r}")
        elif k in ("val_fraction",):
            if not _num(v) or not 0 < v < 1:
                raise ConfigError(f, f"must be a number in (0, 1), got {v!r}")
        elif not _num(v) or v < 0:
            raise ConfigError(f, f"must be a finite number ≥ 0, got {v!r}")
        if k in ("damping", "train_lr", "dampening") and v is not None and v <= 0:
            raise ConfigError(f, f"must be a positive number, got {v!r}")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------------------------------------
# the entry point


@dataclass
class Context:
    """What every method needs: the data split into parts, the mask, the original weights."""

    model: nn.Module
    mask: Mask
    forget_set: Any
    hp: dict
    seed: int
    device: torch.device
    progress: Progress
    x_f: Tensor = None  # D_f inputs as trained
    y_f: Tensor = None  # poisoned labels
    y_fix: Tensor = None  # corrected labels of D_f (true labels)
    x_c: Tensor = None  # D̃_f
    y_c: Tensor = None
    x_r: Tensor = None  # retain part used for updates
    y_r: Tensor = None
    x_val: Tensor = None  # validation split of D_r (never used for updates)
    y_val: Tensor = None
    theta0: dict[str, Tensor] = field(default_factory=dict)
    grad_evals: int = 0
    monitor: Monitor = None  # display-only evaluation along a multi-step trajectory (see unlearn)
    monitor_every: int = 1
    monitor_seconds: float = 0.0
    curve: list[dict] = field(default_factory=list)

    def record(self, model: nn.Module, step: int) -> None:
        """Append monitor(model) at `step` to the curve; its time is kept out of the method's."""
        if self.monitor is None:
            return
        start = time.perf_counter()
        with torch.no_grad(), _eval(model):
            self.curve.append({"step": step, **self.monitor(model)})
        self.monitor_seconds += time.perf_counter() - start


def unlearn(model: nn.Module, mask: Mask, forget_set, method: str = "first_order", *, seed: int = 0,
            progress: Progress = None, monitor: Monitor = None, monitor_every: int = 2,
            **hparams: Any) -> tuple[nn.Module, dict]:  # fmt: skip
    """Unlearn D_f from `model` by updating only the coordinates where `mask` is True.

    mask: {parameter name: BoolTensor of the parameter's shape}. Returns (new model in eval
    mode, log) with log keys method, lr, n_selected, grad_evals (per-sample gradient
    evaluations; a Hessian-vector product counts 2), seconds, and per-method details.
    monitor: model -> {name: value}, called by the multi-step methods at step 0 and every
    `monitor_every` steps (and the last); it never steers the update, so it may read the test
    or attack sets. The log then has "curve" = {"step": [...], name: [...]} (steps of the kept
    trajectory: points past a rewind are dropped) and "curve_seconds", which "seconds" excludes.
    Raises ConfigError (unknown method or hparam, empty or misshapen mask) or NumericalError.
    """
    if method not in METHODS:
        raise ConfigError("unlearning.method", f"unknown method {method!r}; choose one of {list(METHODS)}")
    check_hparams(hparams)
    start = time.perf_counter()
    hp = {
        **COMMON,
        **DEFAULTS[method],
        **{k: v for k, v in hparams.items() if v is not None or k == "scores"},
    }
    device = next(model.parameters()).device if hp.get("device") is None else torch.device(hp["device"])
    new = copy.deepcopy(model).to(device).eval()
    mask = _check_mask(new, mask, device, required=method != "retrain")
    ctx = _context(new, mask, forget_set, hp, seed, device, progress)
    ctx.monitor, ctx.monitor_every = monitor, max(1, int(monitor_every))
    log = METHODS[method](ctx)
    if method != "retrain":
        _restore_outside_mask(new, ctx)
    _check_finite(new, method)
    log = {"method": method, "n_selected": int(sum(int(m.sum()) for m in mask.values())),
           "grad_evals": ctx.grad_evals, **log,
           "seconds": time.perf_counter() - start - ctx.monitor_seconds}  # fmt: skip
    if ctx.curve:
        keys = list(ctx.curve[0])
        log["curve"] = {k: [c.get(k) for c in ctx.curve] for k in keys}
        log["curve_seconds"] = ctx.monitor_seconds
    return new.eval(), log


def _check_mask(model: nn.Module, mask: Mask, device, *, required: bool) -> Mask:
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


def _context(model, mask, fs, hp, seed, device, progress) -> Context:
    ctx = Context(model, mask, fs, hp, seed, device, progress)
    ctx.theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    x_f, y_f = fs.forget
    _, y_fix = fs.forget_true
    x_c, y_c = fs.corrected
    x_r, y_r = fs.retain
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(y_r), generator=g)
    n_val = min(len(y_r) - 1, max(20, round(hp["val_fraction"] * len(y_r)))) if len(y_r) > 1 else 0
    val, upd = perm[:n_val], perm[n_val:]
    to = lambda t: t.to(device)  # noqa: E731
    ctx.x_f, ctx.y_f, ctx.y_fix = to(x_f), to(y_f), to(y_fix)
    ctx.x_c, ctx.y_c = to(x_c), to(y_c)
    ctx.x_r, ctx.y_r = to(x_r[upd]), to(y_r[upd])
    ctx.x_val, ctx.y_val = to(x_r[val]), to(y_r[val])
    return ctx


def _restore_outside_mask(model: nn.Module, ctx: Context) -> None:
    """θ ← where(M, θ, θ*): coordinates outside the mask are exactly the original bits."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(torch.where(ctx.mask[n], p, ctx.theta0[n]))


def _check_finite(model: nn.Module, method: str) -> None:
    for n, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise NumericalError(f"unlearning ({method}) produced non-finite values in {n}; "
                                 "lower unlearning.lr or raise unlearning.damping")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# shared pieces: losses, masked steps, step-size search


def _sum_grad(model: nn.Module, parts: list[tuple[Tensor, Tensor, float]], ctx: Context) -> list[Tensor]:
    """∇θ Σ_parts weight · Σ_i ℓ(x_i, y_i) (summed cross-entropy), one tensor per parameter."""
    params = [p for _, p in model.named_parameters()]
    loss = torch.zeros((), device=ctx.device)
    for x, y, w in parts:
        if len(y) and w:
            loss = loss + w * F.cross_entropy(model(x), y, reduction="sum")
            ctx.grad_evals += len(y)
    if not loss.requires_grad:
        return [torch.zeros_like(p) for p in params]
    return list(torch.autograd.grad(loss, params))


def warnecke_gradient(model: nn.Module, ctx: Context, ascent: float = 1.0) -> list[Tensor]:
    """G = Σ_{z̃∈D̃_f} ∇ℓ(z̃) − ascent · Σ_{z∈D_f} ∇ℓ(z) at the model's current weights."""
    with _eval(model):
        return _sum_grad(model, [(ctx.x_c, ctx.y_c, 1.0), (ctx.x_f, ctx.y_f, -ascent)], ctx)


class _eval:
    """Eval mode inside (BatchNorm uses running statistics; no dropout)."""

    def __init__(self, model: nn.Module):
        self.model, self.was = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was)


def _anchor_logits(ctx: Context) -> Tensor:
    """Logits of θ* on the retain part (the anchor's target), computed once per run."""
    if "anchor" not in ctx.hp:
        with torch.no_grad(), _eval(ctx.model):
            ctx.hp["anchor"] = ctx.model(ctx.x_r) if len(ctx.y_r) else None
    return ctx.hp["anchor"]


def _retain_batch(ctx: Context, gen: torch.Generator, size: int) -> Tensor:
    return torch.randint(len(ctx.y_r), (min(size, len(ctx.y_r)),), generator=gen).to(ctx.device)


def _optimizer(name: str, params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr) if name == "adam" else torch.optim.SGD(params, lr=lr)


def _masked_steps(model: nn.Module, ctx: Context, lr: float, loss_fn: Callable[[nn.Module, int], Tensor | None],
                  steps: int, optimizer: str, opt: torch.optim.Optimizer | None = None,
                  offset: int = 0, total: int | None = None) -> int:  # fmt: skip
    """Run `steps` optimizer steps on loss_fn(model, step) with gradients masked to M.

    loss_fn returns None to stop early. Returns the number of steps taken. `offset`: steps
    already taken on this trajectory (for the monitor's step numbers); `total`: its length
    (None: a one-shot candidate, not recorded)."""
    params = [p for _, p in model.named_parameters()]
    masks = [ctx.mask[n] for n, _ in model.named_parameters()]
    opt = opt or _optimizer(optimizer, params, lr)
    done = 0
    with _eval(model):
        for step in range(steps):
            loss = loss_fn(model, step)
            if loss is None:
                break
            if not torch.isfinite(loss):
                raise NumericalError(f"unlearning loss became {float(loss.detach())} at step {step + 1}; "
                                     "lower unlearning.lr")  # fmt: skip
            opt.zero_grad(set_to_none=False)
            loss.backward()
            for p, m in zip(params, masks):
                p.grad.mul_(m)
            opt.step()
            done += 1
            at = offset + done
            if total is not None and (at % ctx.monitor_every == 0 or at == total):
                ctx.record(model, at)
            if ctx.progress is not None:
                ctx.progress(step + 1, steps, "unlearning step")
    return done


def _descend(ctx: Context, loss_fn: Callable[[nn.Module, int], Tensor | None], steps: int,
             optimizer: str) -> tuple[nn.Module, dict]:  # fmt: skip
    """Masked descent on loss_fn from θ*. With lr="auto" the step size is guarded on the
    validation split: every `check_every` steps validation accuracy is measured and the point
    kept if it is within val_tolerance of the original. The run returns the latest kept point
    (a dip in the middle of the trajectory often recovers, so it does not stop the run); if no
    point past θ* was kept, it starts again with lr / AUTO_BACKOFF (at most 3 times).
    One trajectory, so the search costs a few forward passes instead of a grid of runs."""
    hp = ctx.hp
    model = _fresh(ctx)
    ctx.record(model, 0)
    if hp["lr"] != "auto":
        done = _masked_steps(model, ctx, float(hp["lr"]), loss_fn, steps, optimizer, total=steps)
        _record_last(model, ctx, done)
        return model, {"lr": float(hp["lr"]), "lr_auto": False, "steps": done}
    lr = AUTO_START[optimizer]
    val0 = _acc(ctx.model, ctx.x_val, ctx.y_val)
    tol = hp["val_tolerance"]
    every = max(1, min(hp["check_every"], steps))
    good = (0, [p.detach().clone() for p in model.parameters()])  # latest checkpoint that passed
    done, rewinds, trace = 0, 0, []
    opt = _optimizer(optimizer, list(model.parameters()), lr)
    while done < steps:
        chunk = min(every, steps - done)
        try:
            taken = _masked_steps(model, ctx, lr, lambda m, i, d=done: loss_fn(m, d + i), chunk, optimizer,
                                  opt, offset=done, total=steps)  # fmt: skip
            finite = all(torch.isfinite(p).all() for p in model.parameters())
        except NumericalError:  # diverged
            taken, finite = chunk, False
        done += taken
        val = _acc(model, ctx.x_val, ctx.y_val) if finite and len(ctx.y_val) else float("nan")
        ctx.grad_evals += len(ctx.y_val)
        trace.append({"step": done, "lr": lr, "val_acc": val})
        ok = finite and (val != val or val >= val0 - tol - 1e-9)
        if ok:
            good = (done, [p.detach().clone() for p in model.parameters()])
        stop = taken < chunk or done >= steps  # loss_fn said stop (nothing left to fix), or the end
        if finite and not stop:
            continue  # a dip in the middle may recover: judge at the end, keep the latest good point
        if good[0] > 0 or rewinds >= 3:
            break
        # nothing past θ* kept the validation accuracy: start again with smaller steps
        rewinds += 1
        lr /= AUTO_BACKOFF
        done = 0
        _rewind(model, good[1])
        ctx.curve = ctx.curve[:1]
        opt = _optimizer(optimizer, list(model.parameters()), lr)
    if good[0] != done:  # the end did not pass: go back to the latest checkpoint that did
        done = good[0]
        _rewind(model, good[1])
        ctx.curve = [c for c in ctx.curve if c["step"] <= done]
    _record_last(model, ctx, done)
    return model, {"lr": lr, "lr_auto": True, "steps": done, "rewinds": rewinds,
                   "val_acc_original": val0, "val_trace": trace}  # fmt: skip


def _rewind(model: nn.Module, weights: list[Tensor]) -> None:
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(w)


def _record_last(model: nn.Module, ctx: Context, done: int) -> None:
    """The curve ends where the trajectory ended (an early stop or the last rewind)."""
    if ctx.monitor is not None and (not ctx.curve or ctx.curve[-1]["step"] != done):
        ctx.curve = [c for c in ctx.curve if c["step"] < done]
        ctx.record(model, done)


@torch.no_grad()
def _acc(model: nn.Module, x: Tensor, y: Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    with _eval(model):
        return float((model(x).argmax(1) == y).float().mean())


def _forget_score(model: nn.Module, ctx: Context, val_acc: float) -> float:
    """Higher is better forgetting: accuracy on D_f inputs w.r.t. the corrected labels; for plain
    removal, −|forget accuracy − validation accuracy| (an unseen sample's accuracy)."""
    if ctx.forget_set.is_removal:
        return -abs(_acc(model, ctx.x_f, ctx.y_f) - val_acc)
    return _acc(model, ctx.x_f, ctx.y_fix)


def _search(
    ctx: Context, run: Callable[[float], tuple[nn.Module, dict]], grid: tuple[float, ...]
) -> tuple[nn.Module, dict]:
    """lr="auto": try `grid` in ascending order; keep the best forgetting whose validation
    accuracy is within val_tolerance of the original. Stops at the first candidate that breaks
    the tolerance after a valid one, or that forgets perfectly (larger steps only cost more)."""
    if ctx.hp["lr"] != "auto":
        model, info = run(float(ctx.hp["lr"]))
        return model, {**info, "lr": float(ctx.hp["lr"]), "lr_auto": False}
    val0 = _acc(ctx.model, ctx.x_val, ctx.y_val)
    tried, best = [], None
    for lr in grid:
        try:
            model, info = run(lr)
            _check_finite(model, "search")
        except NumericalError:  # a diverged candidate is rejected; larger steps would diverge too
            tried.append({"lr": lr, "diverged": True, "ok": False})
            break
        val = _acc(model, ctx.x_val, ctx.y_val)
        score = _forget_score(model, ctx, val)
        ok = math.isnan(val0) or val >= val0 - ctx.hp["val_tolerance"] - 1e-9
        tried.append({"lr": lr, "val_acc": val, "forget_score": score, "ok": ok})
        if ok and (best is None or score > best[0] + 1e-9):
            best = (score, lr, model, info)
        if (not ok and best is not None) or (ok and score >= 1.0):
            break
    if best is None:  # nothing kept the validation accuracy: the smallest step is the safest
        lr = grid[0]
        model, info = run(lr)
        best = (None, lr, model, info)
    _, lr, model, info = best
    return model, {**info, "lr": lr, "lr_auto": True, "lr_tried": tried, "val_acc_original": val0}


def _fresh(ctx: Context) -> nn.Module:
    return copy.deepcopy(ctx.model)


# ---------------------------------------------------------------------------------------------
# methods


def first_order(ctx: Context) -> dict:
    """θ ← θ* − τ·(M ⊙ G) (Warnecke). `steps` > 1 repeats it with G/|D_f| at the current θ plus
    the retain anchor in every step (τ guarded on the validation split when lr="auto")."""
    hp = ctx.hp
    steps = hp["steps"]
    gen = torch.Generator().manual_seed(ctx.seed)
    anchor = _anchor_logits(ctx) if steps > 1 and hp["retain_weight"] else None

    # several steps use G/|D_f| so their step size is on the scale of the other multi-step methods
    scale = 1.0 if steps == 1 else 1.0 / max(1, len(ctx.y_f))

    def loss_fn(m: nn.Module, step: int) -> Tensor:
        loss = F.cross_entropy(m(ctx.x_c), ctx.y_c, reduction="sum") if len(ctx.y_c) else 0.0
        loss = loss - hp["ascent"] * F.cross_entropy(m(ctx.x_f), ctx.y_f, reduction="sum")
        loss = loss * scale
        ctx.grad_evals += len(ctx.y_c) + len(ctx.y_f)
        if anchor is not None:
            loss = loss + _anchor_loss(m, ctx, anchor, gen)
        return loss

    if steps > 1:
        return _adopt(ctx, *_descend(ctx, loss_fn, steps, hp["optimizer"]))

    def run(lr: float):
        model = _fresh(ctx)
        return model, {"steps": _masked_steps(model, ctx, lr, loss_fn, 1, "sgd")}

    return _adopt(ctx, *_search(ctx, run, _one_shot_grid(ctx) if hp["lr"] == "auto" else ()))


def _one_shot_grid(ctx: Context) -> tuple[float, ...]:
    """τ for one summed-gradient step: relative to 1/‖M⊙G‖ so the step moves θ_M by 0.1 %–10 %
    of ‖θ*_M‖ (G is a sum over D_f, so its scale varies with |D_f| and the model)."""
    g = warnecke_gradient(ctx.model, ctx, ctx.hp["ascent"])
    names = [n for n, _ in ctx.model.named_parameters()]
    gnorm = math.sqrt(sum(float((gi * ctx.mask[n]).pow(2).sum()) for n, gi in zip(names, g)))
    tnorm = math.sqrt(sum(float((ctx.theta0[n] * ctx.mask[n]).pow(2).sum()) for n in names)) or 1.0
    if gnorm == 0:
        return (1e-3,)
    return tuple(r * tnorm / gnorm for r in (0.001, 0.003, 0.01, 0.03, 0.1))


def _anchor_loss(m: nn.Module, ctx: Context, anchor: Tensor, gen: torch.Generator) -> Tensor:
    """retain_weight · mean_i ‖f(x_i; θ) − f(x_i; θ*)‖² over a D_r batch (logit anchor)."""
    idx = _retain_batch(ctx, gen, ctx.hp["retain_batch"])
    ctx.grad_evals += len(idx)
    return ctx.hp["retain_weight"] * (m(ctx.x_r[idx]) - anchor[idx]).pow(2).sum(1).mean()


def iterative(ctx: Context) -> dict:
    """Small masked steps on the forget points still wrong w.r.t. the corrected labels:
    loss = Σ ℓ(wrong D_f inputs and D̃_f, corrected labels)/|D_f ∪ D̃_f| − ascent·mean ℓ(wrong D_f,
           poisoned) + retain anchor. Stops when every forget point is right.

    One forward pass per step: the forget points and the retain batch go through the model
    together and "wrong" is read off the same logits (the model before the step)."""
    hp = ctx.hp
    if ctx.forget_set.is_removal:  # nothing to correct: the iterative variant degenerates to neggrad
        return neggrad(ctx)
    x_fix = torch.cat([ctx.x_f, ctx.x_c])
    y_fix = torch.cat([ctx.y_fix, ctx.y_c])
    n_fix, n_f = len(y_fix), len(ctx.y_f)
    gen = torch.Generator().manual_seed(ctx.seed)
    anchored = bool(hp["retain_weight"]) and len(ctx.y_r) > 0
    fixed = _fixed_retain(ctx, gen) if anchored and hp["retain_fixed"] else None

    def loss_fn(m: nn.Module, step: int) -> Tensor | None:
        if anchored:
            idx, target = fixed if fixed is not None else _retain_and_anchor(ctx, gen)
            logits = m(torch.cat([x_fix, ctx.x_r[idx]]))
        else:
            logits = m(x_fix)
        out_f = logits[:n_fix]
        wrong = out_f.detach().argmax(1) != y_fix
        ctx.grad_evals += len(logits)
        if not wrong.any():
            return None
        if not hp["wrong_only"]:
            wrong = torch.ones_like(wrong)
        # mean over all points (right ones add little): a mean over the wrong ones alone
        # grows as they get fewer and overshoots
        loss = F.cross_entropy(out_f[wrong], y_fix[wrong], reduction="sum") / n_fix
        w_f = wrong[:n_f]
        if hp["ascent"] and w_f.any():
            loss = loss - hp["ascent"] * F.cross_entropy(out_f[:n_f][w_f], ctx.y_f[w_f])
        if anchored:
            loss = loss + hp["retain_weight"] * (logits[n_fix:] - target).pow(2).sum(1).mean()
        return loss

    return _adopt(ctx, *_descend(ctx, loss_fn, hp["steps"], hp["optimizer"]))


def _fixed_retain(ctx: Context, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """One D_r batch used in every step, with θ*'s logits on it (a forward of `retain_batch`
    samples instead of the whole retain set)."""
    idx = torch.randperm(len(ctx.y_r), generator=gen)[: ctx.hp["retain_batch"]].to(ctx.device)
    with torch.no_grad(), _eval(ctx.model):
        return idx, ctx.model(ctx.x_r[idx])


def _retain_and_anchor(ctx: Context, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    idx = _retain_batch(ctx, gen, ctx.hp["retain_batch"])
    return idx, _anchor_logits(ctx)[idx]


def finetune(ctx: Context) -> dict:
    """Masked descent on mini-batches of D_r ∪ D̃_f (mean cross-entropy) for `steps` steps."""
    hp = ctx.hp
    x = torch.cat([ctx.x_r, ctx.x_c])
    y = torch.cat([ctx.y_r, ctx.y_c])
    gen = torch.Generator().manual_seed(ctx.seed)

    def loss_fn(m: nn.Module, step: int) -> Tensor:
        idx = torch.randint(len(y), (min(hp["batch_size"], len(y)),), generator=gen).to(ctx.device)
        ctx.grad_evals += len(idx)
        return F.cross_entropy(m(x[idx]), y[idx])

    return _adopt(ctx, *_descend(ctx, loss_fn, hp["steps"], hp["optimizer"]))


def neggrad(ctx: Context) -> dict:
    """Masked ascent on D_f (poisoned labels) with descent on a D_r batch:
    loss = −mean ℓ(D_f) + retain_weight · mean ℓ(D_r batch)."""
    hp = ctx.hp
    gen = torch.Generator().manual_seed(ctx.seed)

    def loss_fn(m: nn.Module, step: int) -> Tensor:
        idx = _retain_batch(ctx, gen, hp["retain_batch"])
        ctx.grad_evals += len(idx) + len(ctx.y_f)
        return (-F.cross_entropy(m(ctx.x_f), ctx.y_f)
                + hp["retain_weight"] * F.cross_entropy(m(ctx.x_r[idx]), ctx.y_r[idx]))  # fmt: skip

    return _adopt(ctx, *_descend(ctx, loss_fn, hp["steps"], hp["optimizer"]))


# -- second order ------------------------------------------------------------------------------


def _hessian_data(ctx: Context) -> tuple[Tensor, Tensor, float]:
    """Training data D as trained (or a seeded subsample) and the factor scaling it to the sum."""
    fs = ctx.forget_set
    x, y = fs.x_train, fs.y_train
    n = ctx.hp["hessian_samples"]
    if n is not None and n < len(y):
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(ctx.seed))[:n]
        return x[idx].to(ctx.device), y[idx].to(ctx.device), len(fs.y_train) / n
    return x.to(ctx.device), y.to(ctx.device), 1.0


def masked_hvp(model: nn.Module, ctx: Context, x: Tensor, y: Tensor, scale: float) -> Callable[[dict], dict]:
    """v ↦ M ⊙ (H (M ⊙ v)), H = scale · ∇²Σ_i ℓ(x_i, y_i) (forward-over-reverse, eval mode)."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(p: dict) -> Tensor:
        return F.cross_entropy(functional_call(model, (p, buffers), (x,)), y, reduction="sum") * scale

    g = grad(loss)

    def hvp(v: dict) -> dict:
        v = {n: v[n] * ctx.mask[n] for n in v}
        with _eval(model):
            out = jvp(g, (params,), (v,))[1]
        ctx.grad_evals += 2 * len(y)
        return {n: out[n] * ctx.mask[n] for n in out}

    return hvp


def _dot(a: dict, b: dict) -> float:
    return float(sum((a[n] * b[n]).sum() for n in a))


def conjugate_gradient(
    apply: Callable[[dict], dict], b: dict, iters: int, tol: float = 1e-6
) -> tuple[dict, int]:
    """Solve A u = b for symmetric positive-definite A given as u ↦ A u (dicts of tensors)."""
    u = {n: torch.zeros_like(t) for n, t in b.items()}
    r = {n: t.clone() for n, t in b.items()}
    p = {n: t.clone() for n, t in b.items()}
    rr = _dot(r, r)
    b_norm = math.sqrt(rr)
    k = 0
    for k in range(1, iters + 1):
        if math.sqrt(rr) <= tol * max(b_norm, 1e-30):
            return u, k - 1
        ap = apply(p)
        pap = _dot(p, ap)
        if pap <= 0 or not math.isfinite(pap):  # negative curvature in the masked subspace
            break
        alpha = rr / pap
        for n in u:
            u[n] += alpha * p[n]
            r[n] -= alpha * ap[n]
        rr_new = _dot(r, r)
        for n in p:
            p[n] = r[n] + (rr_new / rr) * p[n]
        rr = rr_new
    return u, k


def lissa(apply: Callable[[dict], dict], b: dict, iters: int, scale: float) -> dict:
    """LiSSA: u_{j+1} = b + (I − A/scale) u_j, returns u/scale ≈ A⁻¹ b (scale > ‖A‖)."""
    u = {n: t.clone() for n, t in b.items()}
    for _ in range(iters):
        au = apply(u)
        u = {n: b[n] + u[n] - au[n] / scale for n in u}
    return {n: t / scale for n, t in u.items()}


def second_order(ctx: Context) -> dict:
    """θ_M ← θ*_M − τ·u with (H_MM + λI) u = G_M (CG or LiSSA), or u = G/(diag H + λ)."""
    hp = ctx.hp
    names = [n for n, _ in ctx.model.named_parameters()]
    g = dict(zip(names, warnecke_gradient(ctx.model, ctx, hp["ascent"])))
    g = {n: g[n] * ctx.mask[n] for n in names}
    lam = float(hp["damping"])
    x, y, scale = _hessian_data(ctx)
    info: dict[str, Any] = {"solver": hp["solver"], "damping": lam, "hessian_samples": len(y)}
    if hp["solver"] == "diagonal":
        diag = hp.get("scores")
        if diag is None:
            from core.curvature import hessian_diagonal

            diag = hessian_diagonal(ctx.model, x, y, "exact")
            ctx.grad_evals += 10 * len(y)  # one backward with K logit columns
            diag = {n: d * len(y) * scale for n, d in diag.items()}  # mean -> summed loss
        else:  # scores are of the MEAN loss over the N training samples
            diag = {n: diag[n].to(ctx.device) * len(ctx.forget_set.y_train) for n in names}
        u = {n: g[n] / (diag[n].clamp_min(0) + lam) for n in names}
    else:
        hvp = masked_hvp(ctx.model, ctx, x, y, scale)
        damped = lambda v: {n: t + lam * v[n] * ctx.mask[n] for n, t in hvp(v).items()}  # noqa: E731
        if hp["solver"] == "cg":
            u, iters = conjugate_gradient(damped, g, hp["cg_iters"])
            info["cg_iters_done"] = iters
        else:
            # power iteration for ‖H_MM + λI‖ so the LiSSA series converges
            v = {n: torch.randn(t.shape, generator=torch.Generator().manual_seed(ctx.seed)).to(t) * ctx.mask[n]
                 for n, t in g.items()}  # fmt: skip
            top = 0.0
            for _ in range(10):
                av = damped(v)
                top = math.sqrt(_dot(av, av)) / max(math.sqrt(_dot(v, v)), 1e-30)
                v = {n: t / max(math.sqrt(_dot(av, av)), 1e-30) for n, t in av.items()}
            u = lissa(damped, g, hp["cg_iters"], 1.1 * top + lam)
    u = {n: u[n] * ctx.mask[n] for n in names}
    if not all(torch.isfinite(t).all() for t in u.values()):
        raise NumericalError("second-order solve produced non-finite values; raise unlearning.damping")

    def run(tau: float):
        model = _fresh(ctx)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p -= tau * u[n]
        return model, {}

    grid = LR_GRID["second_order"] if hp["lr"] == "auto" else ()
    return {**info, **_adopt(ctx, *_search(ctx, run, grid))}


def _adopt(ctx: Context, model: nn.Module, info: dict) -> dict:
    """Copy the chosen candidate's weights into the run's model; return its log."""
    with torch.no_grad():
        for p, q in zip(ctx.model.parameters(), model.parameters()):
            p.copy_(q)
    return info


# -- SSD and retrain -----------------------------------------------------------------------------


def ssd(ctx: Context) -> dict:
    """Selective Synaptic Dampening inside the mask: F_f, F_D = empirical Fisher diagonals on
    D_f and D; where F_f > α·F_D, θ_i ← θ_i · min(λ·F_D,i / F_f,i, 1)."""
    from core.curvature import hessian_diagonal

    fs = ctx.forget_set
    f_forget = hessian_diagonal(ctx.model, ctx.x_f, ctx.y_f, "empirical_fisher")
    f_full = hessian_diagonal(
        ctx.model, fs.x_train.to(ctx.device), fs.y_train.to(ctx.device), "empirical_fisher"
    )
    ctx.grad_evals += len(ctx.y_f) + len(fs.y_train)
    alpha, lam = ctx.hp["alpha"], ctx.hp["dampening"]
    dampened = 0
    with torch.no_grad():
        for n, p in ctx.model.named_parameters():
            ff, fd = f_forget[n].to(p.device), f_full[n].to(p.device)
            hit = (ff > alpha * fd) & ctx.mask[n]
            factor = torch.where(hit, (lam * fd / ff.clamp_min(1e-30)).clamp(max=1.0), torch.ones_like(p))
            p.mul_(factor)
            dampened += int(hit.sum())
    return {"alpha": alpha, "dampening": lam, "n_dampened": dampened, "lr": None}


def retrain(ctx: Context) -> dict:
    """Train a fresh model of the same architecture on D_r ∪ D̃_f (the gold standard)."""
    from core.training import train

    hp, fs = ctx.hp, ctx.forget_set
    torch.manual_seed(ctx.seed)
    with torch.no_grad():
        for m in ctx.model.modules():
            if hasattr(m, "reset_parameters") and m is not ctx.model:
                m.reset_parameters()
    x, y = fs.retrain_data()
    hist = train(ctx.model, x, y, epochs=hp["epochs"], lr=hp["train_lr"], batch_size=hp["batch_size"],
                 seed=ctx.seed, device=ctx.device, optimizer=hp["train_optimizer"])  # fmt: skip
    ctx.grad_evals += hp["epochs"] * len(y)
    return {"epochs": hp["epochs"], "lr": hp["train_lr"], "train_seconds": hist.seconds}


METHODS: dict[str, Callable[[Context], dict]] = {
    "first_order": first_order,
    "second_order": second_order,
    "iterative": iterative,
    "finetune": finetune,
    "neggrad": neggrad,
    "ssd": ssd,
    "retrain": retrain,
}
