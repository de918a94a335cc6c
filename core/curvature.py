"""Hessian-diagonal estimators: `hessian_diagonal(model, inputs, targets, method)` by name.

All estimators return the diagonal of a curvature matrix of the MEAN cross-entropy

    L(θ) = (1/N) Σ_n ℓ(f(x_n; θ), y_n),    ℓ = cross-entropy,

one float32 CPU tensor per named parameter (requires_grad ones only), model in eval mode.

Methods (registry `ESTIMATORS`):
    exact             diag ∇²L. For networks that are piecewise linear in each parameter
                      (ReLU, max/avg-pool, eval BatchNorm, residual sums, Linear, Conv) the
                      network is affine in every single parameter, so the Hessian's diagonal
                      equals the GGN's diagonal: computed by `ggn`. With a curved activation
                      module (Tanh, Sigmoid, GELU, ...) small models (≤ `max_exact_params`,
                      default 20,000) get the exact diagonal from one-hot Hessian-vector
                      products; larger ones are refused with a ConfigError naming the module.
    ggn               diag G, G = (1/N) Σ_n J_nᵀ H_n J_n, H_n = diag(p_n) − p_n p_nᵀ (softmax
                      Hessian). With H_n = S_n S_nᵀ, S_n = diag(√p_n) − p_n √p_nᵀ:
                      diag G = (1/N) Σ_n Σ_c (J_nᵀ s_nc)².
    hutchinson        E_z[z ⊙ ∇²L z], Rademacher z, via forward-over-reverse HVPs; options
                      `probes` (default 100), `probe_batch` (default 10). Its standard error
                      comes from `hutchinson_with_stderr(...) -> (diag, stderr)`.
    fisher            Monte-Carlo Fisher (1/N) Σ_n (1/K) Σ_k (∇θ ℓ(x_n, ŷ_nk))², ŷ_nk ~ p_n;
                      option `samples` = K (default 1).
    empirical_fisher  (1/N) Σ_n (∇θ ℓ(x_n, y_n))² (mean of squared per-sample gradients).

How the sums are computed (no Python loop over samples or parameters): every method except
hutchinson/HVP is Σ_n Σ_k (J_nᵀ v_nk)² for some vectors v_nk in logit space (columns of S_n,
or ∂ℓ/∂f = p_n − e_y). One forward pass, one backward pass vmapped over the K columns, and
hooks on Linear/Conv2d/BatchNorm modules square the per-sample, per-column gradient
factors with einsum (BackPACK-style: Linear 'kno,ni->oi' on squares; Conv2d via unfold).
Models with other parameterized modules use a torch.func fallback (vmap over samples of vjp).

Piecewise-linearity assumption: activations called functionally inside `forward`
(`torch.relu`, `torch.tanh`) are invisible to module walking. A model counts as piecewise
linear unless it contains a module from `CURVED_MODULES`; our models call only `torch.relu`.

Data is processed in chunks of `batch_size` samples (auto: from `memory_mb`, default 1024 MB
of activations), so peak memory does not grow with N. Runs where the model's parameters are
(CPU or CUDA). `progress(done_samples, total_samples)` is called after every chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from core.errors import ConfigError, NumericalError

Progress = Callable[[int, int], None] | None
Scores = dict[str, Tensor]

# Modules whose output is curved in their input: the Hessian diagonal then has terms the GGN lacks.
CURVED_MODULES: tuple[type[nn.Module], ...] = (
    nn.Tanh, nn.Sigmoid, nn.GELU, nn.Softplus, nn.SiLU, nn.ELU, nn.SELU, nn.CELU, nn.Mish,
    nn.Hardswish, nn.LogSigmoid, nn.Softsign, nn.Tanhshrink, nn.Softmax, nn.LogSoftmax,
    nn.LayerNorm, nn.GroupNorm, nn.MultiheadAttention,
)  # fmt: skip


class _Unsupported(Exception):
    """The per-layer factor path cannot handle this model; use the functional fallback."""


class _SharedModule(_Unsupported):
    """A parameterized module runs twice per forward: the network is not affine in its weights."""


# ---------------------------------------------------------------------------------------------
# public API


def hessian_diagonal(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    method: str = "exact",
    *,
    batch_size: int | None = None,
    seed: int = 0,
    progress: Progress = None,
    **options: Any,
) -> Scores:
    """Diagonal of the curvature of the mean cross-entropy over (inputs, targets).

    inputs: N×C×H×W (or N×D) float tensor; targets: N int64 class indices.
    Returns {parameter name: float32 CPU tensor of the parameter's shape}. The model is put in
    eval mode for the computation and restored afterwards; its weights are not modified.
    """
    if method not in ESTIMATORS:
        raise ConfigError(
            "curvature.method",
            f"unknown method {method!r}; choose one of {sorted(ESTIMATORS)}",
        )
    _check_data(inputs, targets, batch_size)
    with eval_mode(model):
        diag = ESTIMATORS[method](
            model,
            inputs,
            targets,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
            **options,
        )
    return _finish(diag, method)


def hutchinson_with_stderr(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    probes: int = 100,
    probe_batch: int = 10,
    batch_size: int | None = None,
    seed: int = 0,
    progress: Progress = None,
    memory_mb: float = 1024,
) -> tuple[Scores, Scores]:
    """Hutchinson estimate d = (1/K) Σ_k z_k ⊙ ∇²L z_k (Rademacher z_k) and its standard error.

    stderr = sqrt(sample variance over the K probes / K), elementwise (same shapes as d).
    The data is traversed once per block of `probe_batch` probes (vmap over the block).
    """
    _check_data(inputs, targets, batch_size)
    if not isinstance(probes, int) or probes < 2:
        raise ConfigError("curvature.probes", f"need an integer ≥ 2, got {probes!r}")
    with eval_mode(model):
        mean, m2 = _hutchinson(
            model,
            inputs,
            targets,
            probes,
            probe_batch,
            batch_size,
            seed,
            progress,
            memory_mb,
        )
    stderr = {n: (v / (probes - 1) / probes).clamp_min(0).sqrt() for n, v in m2.items()}
    return _finish(mean, "hutchinson"), _finish(stderr, "hutchinson")


def is_piecewise_linear(model: nn.Module) -> tuple[bool, str | None]:
    """(True, None) unless a module in CURVED_MODULES (or train-mode-only BatchNorm) is found.

    Returns (False, "name (Type)") naming the first curved module otherwise.
    """
    for name, module in model.named_modules():
        batch_stats = isinstance(module, nn.modules.batchnorm._BatchNorm) and (
            module.running_mean is None
        )  # BatchNorm without running stats normalizes by batch statistics: curved
        if isinstance(module, CURVED_MODULES) or batch_stats:
            return False, f"{name!r} ({type(module).__name__})"
    return True, None


# ---------------------------------------------------------------------------------------------
# estimators: each returns SUMS over samples divided by the right count (the mean), any dtype


def _exact(model, inputs, targets, *, batch_size, seed, progress, **options) -> Scores:
    max_params = int(options.pop("max_exact_params", 20_000))
    memory_mb = options.pop("memory_mb", 1024)
    _no_options(options, "exact")
    linear, culprit = is_piecewise_linear(model)
    if linear:
        try:  # diag H = diag GGN when the network is affine in every single parameter
            return _factor_sum(model, inputs, targets, "ggn", batch_size, seed, progress, memory_mb)
        except _SharedModule as reason:
            culprit = str(reason)
        except _Unsupported:  # e.g. an unknown layer type: GGN by torch.func, still exact
            kind = "ggn"
            return _functional_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb)
    n_params = sum(p.numel() for _, p in _trainable(model))
    if n_params > max_params:
        raise ConfigError(
            "curvature.method",
            f"'exact' cannot handle module {culprit} on a model with {n_params:,} parameters "
            f"(exact Hessian-vector route is limited to max_exact_params={max_params:,}); "
            "use 'ggn' or 'hutchinson'",
        )
    return _hvp_exact(model, inputs, targets, batch_size, progress, memory_mb)


def _ggn(model, inputs, targets, *, batch_size, seed, progress, **options) -> Scores:
    memory_mb = options.pop("memory_mb", 1024)
    _no_options(options, "ggn")
    return _columns_sum(model, inputs, targets, "ggn", batch_size, seed, progress, memory_mb)


def _fisher(model, inputs, targets, *, batch_size, seed, progress, **options) -> Scores:
    memory_mb = options.pop("memory_mb", 1024)
    samples = options.pop("samples", 1)
    _no_options(options, "fisher")
    if not isinstance(samples, int) or samples < 1:
        raise ConfigError("curvature.samples", f"need an integer ≥ 1, got {samples!r}")
    kind = ("fisher", samples)
    return _columns_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb)


def _empirical_fisher(model, inputs, targets, *, batch_size, seed, progress, **options) -> Scores:
    memory_mb = options.pop("memory_mb", 1024)
    _no_options(options, "empirical_fisher")
    kind = "empirical_fisher"
    return _columns_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb)


def _hutchinson_only(model, inputs, targets, *, batch_size, seed, progress, **options) -> Scores:
    probes = options.pop("probes", 100)
    probe_batch = options.pop("probe_batch", 10)
    memory_mb = options.pop("memory_mb", 1024)
    _no_options(options, "hutchinson")
    if not isinstance(probes, int) or probes < 1:
        raise ConfigError("curvature.probes", f"need an integer ≥ 1, got {probes!r}")
    mean, _ = _hutchinson(
        model,
        inputs,
        targets,
        probes,
        probe_batch,
        batch_size,
        seed,
        progress,
        memory_mb,
    )
    return mean


ESTIMATORS: dict[str, Callable[..., Scores]] = {
    "exact": _exact,
    "ggn": _ggn,
    "hutchinson": _hutchinson_only,
    "fisher": _fisher,
    "empirical_fisher": _empirical_fisher,
}

DESCRIPTIONS = {
    "exact": "true diag of the Hessian (= diag GGN for ReLU/max-pool/BatchNorm nets)",
    "ggn": "diag of the generalized Gauss-Newton matrix",
    "hutchinson": "Rademacher probes z ⊙ Hz (unbiased, noisy)",
    "fisher": "Monte-Carlo Fisher, labels sampled from the model",
    "empirical_fisher": "mean of squared per-sample gradients",
}


# ---------------------------------------------------------------------------------------------
# logit-space columns v_nk: Σ_n Σ_k (J_nᵀ v_nk)² is the sum each estimator needs


def _logit_columns(logits: Tensor, targets: Tensor, kind: Any, generator: torch.Generator) -> Tensor:
    """K×N×C columns v_nk for a chunk; the estimator's sum is Σ_n Σ_k (J_nᵀ v_nk)²."""
    p = logits.detach().softmax(dim=1)
    c = p.shape[1]
    if kind == "ggn":  # columns of S_n = diag(√p) − p √pᵀ, so S_n S_nᵀ = diag(p) − ppᵀ
        eye = torch.eye(c, dtype=p.dtype, device=p.device)
        return p.sqrt().T[:, :, None] * (eye[:, None, :] - p[None, :, :])
    if kind == "empirical_fisher":  # ∂ℓ/∂f = p − e_y
        return (p - F.one_hot(targets, c).to(p.dtype))[None]
    samples = kind[1]  # Monte-Carlo Fisher: ŷ ~ Categorical(p), drawn on the CPU for seeding
    drawn = torch.multinomial(p.cpu().float(), samples, replacement=True, generator=generator)
    onehot = F.one_hot(drawn.T.to(p.device), c).to(p.dtype)  # K×N×C
    return (p[None] - onehot) / math.sqrt(samples)  # 1/√K so the squares average over K


def _columns_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb) -> Scores:
    try:
        return _factor_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb)
    except _Unsupported:
        return _functional_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb)


def _n_columns(kind: Any, n_classes: int) -> int:
    return n_classes if kind == "ggn" else (1 if kind == "empirical_fisher" else kind[1])


# ---------------------------------------------------------------------------------------------
# per-layer factor path (BackPACK-style): one backward pass carries all K columns


def _linear_rule(module: nn.Linear, x: Tensor, g: Tensor) -> Scores:
    """x: N×I layer input, g: K×N×O output gradients. diag_W = Σ_kn g²_kno x²_ni."""
    if x.dim() == 2:
        g2 = g.square()
        out = {"weight": torch.einsum("kno,ni->oi", g2, x.square())}
        if module.bias is not None:
            out["bias"] = g2.sum((0, 1))
        return out
    x, g = (
        x.flatten(1, -2),
        g.flatten(2, -2),
    )  # extra dims (e.g. sequence) are summed first
    out = {"weight": torch.einsum("knlo,nli->knoi", g, x).square().sum((0, 1))}
    if module.bias is not None:
        out["bias"] = g.sum(2).square().sum((0, 1))
    return out


def _conv2d_rule(module: nn.Conv2d, x: Tensor, g: Tensor) -> Scores:
    """Per-sample weight gradient J = g_kn (O×L) @ unfold(x_n)ᵀ (L×I·kh·kw); diag = Σ_kn J²."""
    if module.groups != 1 or isinstance(module.padding, str) or module.padding_mode != "zeros":
        raise _Unsupported(f"Conv2d with groups/padding={module.padding!r}")
    k, n = g.shape[:2]
    g = g.flatten(3)  # K×N×O×L
    u = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # N×I'×L
    weight = torch.zeros(g.shape[2], u.shape[1], dtype=g.dtype, device=g.device)
    step = max(1, (1 << 24) // max(1, k * g.shape[2] * u.shape[1]))  # ≤ 64 MB of factors
    for start in range(0, n, step):  # bounded memory: chunks of samples, not single samples
        sl = slice(start, start + step)
        weight += torch.einsum("knol,nil->knoi", g[:, sl], u[sl]).square().sum((0, 1))
    out = {"weight": weight.reshape(module.weight.shape)}
    if module.bias is not None:
        out["bias"] = g.sum(3).square().sum((0, 1))
    return out


def _batchnorm_rule(module: nn.modules.batchnorm._BatchNorm, x: Tensor, g: Tensor) -> Scores:
    """Eval BatchNorm y = γ x̂ + β (affine per channel): diag_γ = Σ_kn (Σ_l g x̂)², β: (Σ_l g)²."""
    if module.training or module.running_mean is None:
        raise _Unsupported("BatchNorm using batch statistics")
    shape = (1, -1) + (1,) * (x.dim() - 2)
    x_hat = (x - module.running_mean.view(shape)) / (module.running_var.view(shape) + module.eps).sqrt()
    g, x_hat = (
        g.flatten(3) if g.dim() > 3 else g[..., None],
        x_hat.flatten(2) if x.dim() > 2 else x_hat[..., None],
    )
    out = {}
    if module.weight is not None:
        out["weight"] = torch.einsum("kncl,ncl->knc", g, x_hat).square().sum((0, 1))
    if module.bias is not None:
        out["bias"] = g.sum(3).square().sum((0, 1))
    return out


# Registry: parameterized module type -> rule turning (input, output gradients) into diag sums.
FACTOR_RULES: dict[type[nn.Module], Callable[[Any, Tensor, Tensor], Scores]] = {
    nn.Linear: _linear_rule,
    nn.Conv2d: _conv2d_rule,
    nn.BatchNorm1d: _batchnorm_rule,
    nn.BatchNorm2d: _batchnorm_rule,
    nn.BatchNorm3d: _batchnorm_rule,
}


def _factor_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules owning trainable parameters, all of a type in FACTOR_RULES, else _Unsupported."""
    owners = {}
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own:
            if type(module) not in FACTOR_RULES:
                raise _Unsupported(f"{name!r} ({type(module).__name__})")
            owners[name] = module
    return owners


def _factor_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb) -> Scores:
    """Σ_n Σ_k (J_nᵀ v_nk)² / N via hooks on Linear/Conv2d/BatchNorm (see module doc).

    One forward pass per chunk records each layer's input and output; one backward pass,
    vmapped over the K columns (`is_grads_batched`), gives K×N×output gradients per layer.
    """
    owners = _factor_modules(model)
    names = {id(m): prefix for prefix, m in owners.items()}
    device, dtype = _device_dtype(model)
    n_classes = _n_classes(model, inputs, device, dtype)
    k = _n_columns(kind, n_classes)
    if batch_size is None:  # K gradients per recorded activation live at once
        per_sample = _activation_floats(model, inputs[:1].to(device, dtype)) * (k + 1)
        batch_size = _budget_rows(memory_mb, per_sample, dtype)
    generator = torch.Generator().manual_seed(seed)
    sums = {n: torch.zeros_like(p) for n, p in _trainable(model)}
    records: list[tuple[nn.Module, Tensor, Tensor]] = []

    def on_forward(module: nn.Module, args: tuple, output: Tensor) -> None:
        if any(module is seen for seen, _, _ in records):  # parameters used twice: not affine
            raise _SharedModule(f"{names[id(module)]!r} is called more than once")
        records.append((module, args[0].detach(), output))

    handles = [m.register_forward_hook(on_forward) for m in owners.values()]
    try:
        for start, x, y in _chunks(inputs, targets, batch_size, device, dtype):
            records.clear()
            with torch.enable_grad():
                logits = model(x)
            columns = _logit_columns(logits, y, kind, generator)  # K×N×C
            outputs = [output for _, _, output in records]
            grads = torch.autograd.grad(
                logits, outputs, grad_outputs=columns, is_grads_batched=True, allow_unused=True
            )
            with torch.no_grad():
                for (module, layer_input, _), g in zip(records, grads):
                    if g is None:  # layer does not reach the logits
                        continue
                    for pname, value in FACTOR_RULES[type(module)](module, layer_input, g).items():
                        sums[f"{names[id(module)]}.{pname}".lstrip(".")] += value
            _report(progress, start + len(x), len(inputs))
    finally:
        records.clear()
        for h in handles:
            h.remove()
    return {n: s / len(inputs) for n, s in sums.items()}


# ---------------------------------------------------------------------------------------------
# torch.func fallbacks: any differentiable model


def _split_params(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    params = {n: p.detach() for n, p in _trainable(model)}
    rest = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    rest.update(dict(model.named_buffers()))
    return params, rest


def _functional_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb) -> Scores:
    """Σ_n Σ_k (J_nᵀ v_nk)² with vmap over samples of a vjp vmapped over the K columns."""
    device, dtype = _device_dtype(model)
    params, rest = _split_params(model)
    n_classes = _n_classes(model, inputs, device, dtype)
    k = _n_columns(kind, n_classes)
    n_params = sum(p.numel() for p in params.values())
    if batch_size is None:  # N×K×P per-sample-column gradients are materialized
        batch_size = _budget_rows(memory_mb, 2 * k * n_params, dtype)
    generator = torch.Generator().manual_seed(seed)

    def sample_sq(x_n: Tensor, v_n: Tensor) -> Scores:
        def logits(p: Scores) -> Tensor:
            return functional_call(model, (p, rest), (x_n[None],))[0]

        _, pullback = vjp(logits, params)
        (per_column,) = vmap(pullback)(v_n)  # dict: K×shape
        return {n: g.square().sum(0) for n, g in per_column.items()}

    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    for start, x, y in _chunks(inputs, targets, batch_size, device, dtype):
        with torch.no_grad():
            logits = functional_call(model, (params, rest), (x,))
        columns = _logit_columns(logits, y, kind, generator).transpose(0, 1)  # N×K×C
        for n, s in vmap(sample_sq)(x, columns).items():
            sums[n] += s.sum(0)
        _report(progress, start + len(x), len(inputs))
    return {n: s / len(inputs) for n, s in sums.items()}


def _loss_sum(model: nn.Module, rest: Scores, x: Tensor, y: Tensor) -> Callable[[Scores], Tensor]:
    def loss(p: Scores) -> Tensor:
        return F.cross_entropy(functional_call(model, (p, rest), (x,)), y, reduction="sum")

    return loss


def _hvp_exact(model, inputs, targets, batch_size, progress, memory_mb) -> Scores:
    """diag ∇²L exactly: (e_iᵀ ∇²L e_i) for one-hot tangents e_i, vmapped in blocks of params."""
    device, dtype = _device_dtype(model)
    params, rest = _split_params(model)
    shapes = {n: p.shape for n, p in params.items()}
    sizes = [p.numel() for p in params.values()]
    n_params = sum(sizes)
    if batch_size is None:
        per_sample = _activation_floats(model, inputs[:1].to(device, dtype)) * 8
        batch_size = _budget_rows(memory_mb, per_sample, dtype)
    block = 256  # tangents per vmap call
    diag = torch.zeros(n_params, dtype=dtype, device=device)
    for start, x, y in _chunks(inputs, targets, batch_size, device, dtype):
        grad_fn = grad(_loss_sum(model, rest, x, y))

        def hvp(t: Scores, grad_fn=grad_fn) -> Scores:
            return jvp(grad_fn, (params,), (t,))[1]

        for first in range(0, n_params, block):  # blocks of one-hot tangents, vmapped
            idx = torch.arange(first, min(first + block, n_params), device=device)
            onehot = F.one_hot(idx, n_params).to(dtype)
            tangents = dict(zip(shapes, _unflatten(onehot, shapes, sizes)))
            hv = torch.cat([v.flatten(1) for v in vmap(hvp)(tangents).values()], dim=1)
            diag[idx] += hv[torch.arange(len(idx), device=device), idx]
        _report(progress, start + len(x), len(inputs))
    return dict(zip(shapes, _unflatten(diag[None] / len(inputs), shapes, sizes, squeeze=True)))


def _hutchinson(model, inputs, targets, probes, probe_batch, batch_size, seed, progress, memory_mb):
    """Per-probe estimates z ⊙ ∇²L z (data summed in chunks), then Welford mean and M2."""
    device, dtype = _device_dtype(model)
    params, rest = _split_params(model)
    if batch_size is None:
        per_sample = _activation_floats(model, inputs[:1].to(device, dtype)) * 8 * probe_batch
        batch_size = _budget_rows(memory_mb, per_sample, dtype)
    generator = torch.Generator().manual_seed(seed)
    mean = {n: torch.zeros_like(p) for n, p in params.items()}
    m2 = {n: torch.zeros_like(p) for n, p in params.items()}
    passes = math.ceil(probes / probe_batch)
    done = 0
    for block_start in range(0, probes, probe_batch):
        b = min(probe_batch, probes - block_start)
        z = {  # Rademacher ±1, drawn on the CPU so the seed gives the same probes everywhere
            n: (torch.randint(0, 2, (b, *p.shape), generator=generator) * 2 - 1).to(device, dtype)
            for n, p in params.items()
        }
        zhz = {n: torch.zeros_like(v) for n, v in z.items()}
        for _, x, y in _chunks(inputs, targets, batch_size, device, dtype):
            grad_fn = grad(_loss_sum(model, rest, x, y))
            hv = vmap(lambda t, grad_fn=grad_fn: jvp(grad_fn, (params,), (t,))[1])(z)
            for n in zhz:
                zhz[n] += z[n] * hv[n]
            done += len(x)
            _report(progress, done, passes * len(inputs))
        seen = block_start  # Chan's parallel update of mean and M2 with this block's b probes
        for n, block in zhz.items():
            block = block / len(inputs)
            block_mean = block.mean(0)
            delta = block_mean - mean[n]
            mean[n] += delta * b / (seen + b)
            m2[n] += (block - block_mean).square().sum(0) + delta.square() * seen * b / (seen + b)
    return mean, m2


# ---------------------------------------------------------------------------------------------
# helpers


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode during the computation; every submodule's previous mode restored after."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def _n_classes(model: nn.Module, inputs: Tensor, device, dtype) -> int:
    with torch.no_grad():
        return model(inputs[:1].to(device, dtype)).shape[1]


def _activation_floats(model: nn.Module, x1: Tensor) -> int:
    """Floats of all leaf-module outputs for one sample (×2 for functional ops in forward)."""
    total = [x1.numel()]

    def count(module: nn.Module, args: tuple, output: Any) -> None:
        if isinstance(output, Tensor):
            total[0] += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(x1)
    finally:
        for h in handles:
            h.remove()
    return 2 * total[0]


def _budget_rows(memory_mb: float, floats_per_row: int, dtype: torch.dtype) -> int:
    itemsize = torch.empty((), dtype=dtype).element_size()
    return max(1, int(memory_mb * 2**20 // max(1, floats_per_row * itemsize)))


def _chunks(inputs: Tensor, targets: Tensor, batch_size: int, device, dtype):
    for start in range(0, len(inputs), batch_size):
        x = inputs[start : start + batch_size].to(device, dtype)
        yield start, x, targets[start : start + batch_size].to(device)


def _unflatten(flat: Tensor, shapes: dict, sizes: list[int], squeeze: bool = False) -> list:
    parts = flat.split(sizes, dim=1)
    return [
        (part[0] if squeeze else part).reshape(shape if squeeze else (flat.shape[0], *shape))
        for part, shape in zip(parts, shapes.values())
    ]


def _report(progress: Progress, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _no_options(options: dict, method: str) -> None:
    if options:
        raise ConfigError("curvature", f"unknown option(s) {sorted(options)} for method {method!r}")


def _check_data(inputs: Tensor, targets: Tensor, batch_size: int | None) -> None:
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        raise ConfigError("curvature.data", "inputs and targets must be tensors")
    if len(inputs) == 0 or len(inputs) != len(targets):
        raise ConfigError(
            "curvature.data",
            f"need N ≥ 1 inputs and N targets, got {len(inputs)}/{len(targets)}",
        )
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigError("curvature.batch_size", f"need an integer ≥ 1, got {batch_size!r}")


def _finish(diag: Scores, method: str) -> Scores:
    out = {n: v.detach().float().cpu() for n, v in diag.items()}
    bad = [n for n, v in out.items() if not torch.isfinite(v).all()]
    if bad:
        raise NumericalError(f"curvature ({method}): non-finite values in {bad}")
    return out
