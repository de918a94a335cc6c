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
                      option `samples` = K (default 1). For the softmax cross-entropy
                      E_ŷ[(p_n − e_ŷ)(p_n − e_ŷ)ᵀ] = H_n, so this is already an unbiased
                      Monte-Carlo estimate of diag G (the sampled-label scheme).
    ggn_mc            Monte-Carlo GGN by sampled columns: for each sample n, k of the C columns
                      of S_n (K_n ⊂ {1..C}, |K_n| = k, drawn uniformly without replacement),
                      scaled by C/k:  (1/N) Σ_n (C/k) Σ_{c ∈ K_n} (J_nᵀ s_nc)².
                      P(c ∈ K_n) = k/C, so its expectation is diag G exactly (unbiased); one
                      backward column per sample and draw instead of C. Option `mc_samples` = k
                      (default 1; k ≥ C gives diag G itself).
    empirical_fisher  (1/N) Σ_n (∇θ ℓ(x_n, y_n))² (mean of squared per-sample gradients).

How the sums are computed (no Python loop over samples or parameters): every method except
hutchinson/HVP is Σ_n Σ_k (J_nᵀ v_nk)² for some vectors v_nk in logit space (columns of S_n,
or ∂ℓ/∂f = p_n − e_y). One forward pass and K backward passes (one per column) per chunk,
and hooks on Linear/Conv2d/BatchNorm modules square the per-sample, per-column gradient
factors (BackPACK-style: Linear 'kno,ni->oi' on squares; Conv2d via unfold, summed over
positions before squaring, through position Gram matrices when positions are few).
Models with other parameterized modules use a torch.func fallback (vmap over samples of vjp).

Piecewise-linearity assumption: activations called functionally inside `forward`
(`torch.relu`, `torch.tanh`) are invisible to module walking. A model counts as piecewise
linear unless it contains a module from `CURVED_MODULES`; our models call only `torch.relu`.

Subsampling (`subsample` = the config's `curvature.samples`): the estimate on a seeded draw of
`subsample` of the N samples without replacement (torch.randperm with a CPU generator seeded by
`seed`), as the mean over the drawn samples — the same units as the full estimate. None (or
≥ N) uses every sample.

Data is processed in chunks of `batch_size` samples (auto: from `memory_mb`, default 1024 MB
of activations; on CPU the factor path also keeps one copy of a chunk's activations near
8 MB, which is faster), so peak memory does not grow with N. Runs where the model's parameters are
(CPU or CUDA). `progress(done_samples, total_samples)` is called after every chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from core.curvature.autodiff import functional_sum, hutchinson, hvp_exact
from core.curvature.common import (
    Progress,
    Scores,
    SharedModule,
    Unsupported,
    check_data,
    finish,
    no_options,
)
from core.curvature.factors import factor_sum
from core.errors import ConfigError
from core.functional import eval_mode, trainable

__all__ = [
    "CURVED_MODULES",
    "ESTIMATORS",
    "Estimator",
    "eval_mode",
    "hessian_diagonal",
    "hutchinson_with_stderr",
    "is_piecewise_linear",
]

# Modules whose output is curved in their input: the Hessian diagonal then has terms the GGN lacks.
CURVED_MODULES: tuple[type[nn.Module], ...] = (
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.Softplus,
    nn.SiLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Mish,
    nn.Hardswish,
    nn.LogSigmoid,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Softmax,
    nn.LogSoftmax,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.MultiheadAttention,
)


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
    subsample: int | None = None,
    **options: Any,
) -> Scores:
    """Diagonal of the curvature of the mean cross-entropy over (inputs, targets).

    inputs: N×C×H×W (or N×D) float tensor; targets: N int64 class indices.
    subsample: None (all N samples) or the number of samples to draw with `seed` (see
    `subsample_indices`); the result is then the mean over the drawn samples.
    Returns {parameter name: float32 CPU tensor of the parameter's shape}. The model is put in
    eval mode for the computation and restored afterwards; its weights are not modified.
    """
    if method not in ESTIMATORS:
        raise ConfigError(
            "curvature.method",
            f"unknown method {method!r}; choose one of {sorted(ESTIMATORS)}",
        )
    fn = ESTIMATORS[method].fn
    if subsample is not None:
        check_data(inputs, targets, batch_size)
        idx = subsample_indices(len(targets), subsample, seed)
        if idx is not None:
            inputs, targets = inputs[idx.to(inputs.device)], targets[idx.to(targets.device)]
    diag = _checked(
        fn, model, inputs, targets, batch_size=batch_size, seed=seed, progress=progress, **options
    )
    return finish(diag, method)


def subsample_indices(n: int, samples: int, seed: int) -> Tensor | None:
    """Sorted indices of `samples` of n samples drawn without replacement (a CPU generator
    seeded by `seed`: the same seed gives the same draw everywhere), or None when
    samples ≥ n (every sample). ConfigError("curvature.samples") unless an integer ≥ 1."""
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ConfigError("curvature.samples", f"need an integer ≥ 1 or null, got {samples!r}")
    if samples >= n:
        return None
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=generator)[:samples].sort().values


def _checked(fn: Callable[..., Any], model: nn.Module, inputs: Tensor, targets: Tensor, **kwargs: Any) -> Any:
    """`fn(model, inputs, targets, **kwargs)` on checked data, with the model in eval mode."""
    check_data(inputs, targets, kwargs["batch_size"])
    with eval_mode(model):
        return fn(model, inputs, targets, **kwargs)


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
    options = dict(probes=probes, probe_batch=probe_batch, memory_mb=memory_mb, least=2)
    mean, m2 = _checked(
        _moments, model, inputs, targets, batch_size=batch_size, seed=seed, progress=progress, **options
    )
    stderr = {n: (v / (probes - 1) / probes).clamp_min(0).sqrt() for n, v in m2.items()}
    return finish(mean, "hutchinson"), finish(stderr, "hutchinson")


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
    no_options(options, "exact")
    linear, culprit = is_piecewise_linear(model)
    if linear:
        try:  # diag H = diag GGN when the network is affine in every single parameter
            return factor_sum(model, inputs, targets, "ggn", batch_size, seed, progress, memory_mb)
        except SharedModule as reason:
            culprit = str(reason)
        except Unsupported:  # e.g. an unknown layer type: GGN by torch.func, still exact
            kind = "ggn"
            return functional_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb)
    n_params = sum(p.numel() for _, p in trainable(model))
    if n_params > max_params:
        raise ConfigError(
            "curvature.method",
            f"'exact' cannot handle module {culprit} on a model with {n_params:,} parameters "
            f"(exact Hessian-vector route is limited to max_exact_params={max_params:,}); "
            "use 'ggn' or 'hutchinson'",
        )
    return hvp_exact(model, inputs, targets, batch_size, progress, memory_mb)


def _ggn(model, inputs, targets, *, batch_size, seed, progress, **options) -> Scores:
    memory_mb = options.pop("memory_mb", 1024)
    no_options(options, "ggn")
    return columns_sum(model, inputs, targets, "ggn", batch_size, seed, progress, memory_mb)


def _fisher(model, inputs, targets, *, batch_size, seed, progress, **options) -> Scores:
    memory_mb = options.pop("memory_mb", 1024)
    samples = options.pop("samples", 1)
    no_options(options, "fisher")
    if not isinstance(samples, int) or samples < 1:
        raise ConfigError(
            "curvature", f"fisher's `samples` (labels per input) needs an integer ≥ 1, got {samples!r}"
        )
    kind = ("fisher", samples)
    return columns_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb)


def _ggn_mc(model, inputs, targets, *, batch_size, seed, progress, **options) -> Scores:
    memory_mb = options.pop("memory_mb", 1024)
    k = options.pop("mc_samples", 1)
    no_options(options, "ggn_mc")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError("curvature.mc_samples", f"need an integer ≥ 1, got {k!r}")
    return columns_sum(model, inputs, targets, ("ggn_mc", k), batch_size, seed, progress, memory_mb)


def _empirical_fisher(model, inputs, targets, *, batch_size, seed, progress, **options) -> Scores:
    memory_mb = options.pop("memory_mb", 1024)
    no_options(options, "empirical_fisher")
    kind = "empirical_fisher"
    return columns_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb)


def _moments(
    model, inputs, targets, *, batch_size, seed, progress, least, **options
) -> tuple[Scores, Scores]:
    """Mean and M2 (sum of squared deviations) of z ⊙ ∇²L z over `probes` ≥ `least` probes."""
    probes = options.pop("probes", 100)
    probe_batch = options.pop("probe_batch", 10)
    memory_mb = options.pop("memory_mb", 1024)
    no_options(options, "hutchinson")
    if not isinstance(probes, int) or probes < least:
        raise ConfigError("curvature.probes", f"need an integer ≥ {least}, got {probes!r}")
    return hutchinson(model, inputs, targets, probes, probe_batch, batch_size, seed, progress, memory_mb)


def _hutchinson_only(model, inputs, targets, *, batch_size, seed, progress, **options) -> Scores:
    mean, _ = _moments(
        model, inputs, targets, batch_size=batch_size, seed=seed, progress=progress, least=1, **options
    )
    return mean


@dataclass(frozen=True)
class Estimator:
    """A registry entry: `fn(model, inputs, targets, *, batch_size, seed, progress, **options)`
    returns the diagonal (any dtype, on the model's device) for `hessian_diagonal` to finish.

    `options`: the extra keyword options a config may set as `curvature.<option>`, with the
    defaults `fn` uses when they are absent (config validation accepts exactly these keys)."""

    name: str
    label: str
    description: str
    fn: Callable[..., Scores]
    options: dict[str, Any] = field(default_factory=dict)


ESTIMATORS: dict[str, Estimator] = {
    e.name: e
    for e in (
        Estimator(
            "exact",
            "Exact diag H",
            "true diag of the Hessian (= diag GGN for ReLU/max-pool/BatchNorm nets)",
            _exact,
        ),
        Estimator("ggn", "GGN diagonal", "diag of the generalized Gauss-Newton matrix", _ggn),
        Estimator("hutchinson", "Hutchinson", "Rademacher probes z ⊙ Hz (unbiased, noisy)", _hutchinson_only),
        Estimator("fisher", "Monte-Carlo Fisher", "Fisher with labels sampled from the model", _fisher),
        Estimator(
            "ggn_mc",
            "Monte-Carlo GGN",
            "k of the C output columns of the GGN per sample, scaled by C/k (unbiased; mc_samples = k)",
            _ggn_mc,
            {"mc_samples": 1},
        ),
        Estimator(
            "empirical_fisher", "Empirical Fisher", "mean of squared per-sample gradients", _empirical_fisher
        ),
    )
}


def columns_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb) -> Scores:
    try:
        return factor_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb)
    except Unsupported:
        return functional_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb)
