"""Score functions of the selection strategies: (model at θ*, request) -> {name: score tensor}.

A higher score means "more worth updating" under `largest=True`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.errors import ConfigError
from core.functional import eval_mode, trainable
from core.selection.ranking import Masks, Scores, check_keys


@dataclass(frozen=True)
class Request:
    """What a score function may look at. `options`: the strategy's options, defaults filled."""

    scores: Scores | None = None
    forget_inputs: Tensor | None = None
    forget_targets: Tensor | None = None
    inputs: Tensor | None = None
    targets: Tensor | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


def saps_scores(model: nn.Module, request: Request) -> Scores:
    if request.scores is None:
        raise ConfigError("scores", "strategy 'saps' needs the Hessian diagonal (`scores`)")
    check_keys(request.scores, model, "scores")
    signed = request.options["signed"]
    return {n: s if signed else s.abs() for n, s in request.scores.items()}


def random_scores(model: nn.Module, request: Request) -> Scores:
    generator = torch.Generator().manual_seed(request.seed)
    return {n: torch.rand(p.shape, generator=generator) for n, p in trainable(model)}


def magnitude_scores(model: nn.Module, request: Request) -> Scores:
    return {n: p.detach().abs().cpu() for n, p in trainable(model)}


def gradient_scores(model: nn.Module, request: Request) -> Scores:
    x, y = request_data(request, "forget", "gradient")
    return {n: g.abs() for n, g in forget_gradient(model, x, y).items()}


def fisher_scores(model: nn.Module, request: Request) -> Scores:
    from core.curvature import hessian_diagonal

    x_f, y_f = request_data(request, "forget", "fisher")
    x, y = request_data(request, "training", "fisher")
    forget = hessian_diagonal(model, x_f, y_f, "empirical_fisher", seed=request.seed)
    full = hessian_diagonal(model, x, y, "empirical_fisher", seed=request.seed)
    # SSD's importance ratio: large where the forget set matters more than the data overall
    return {n: forget[n] / (full[n] + 1e-12) for n in forget}


def last_layer_mask(model: nn.Module) -> Masks:
    """True on the weight and bias of the last nn.Linear in module order, False elsewhere."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("strategy", "'last_layer' needs a model with an nn.Linear layer")
    prefix = linears[-1] + "."
    return {n: torch.full(p.shape, n.startswith(prefix)) for n, p in trainable(model)}


def all_mask(model: nn.Module) -> Masks:
    return {n: torch.ones(p.shape, dtype=torch.bool) for n, p in trainable(model)}


def forget_gradient(model: nn.Module, inputs: Tensor, targets: Tensor, *, batch_size: int = 256) -> Scores:
    """∇θ (1/N) Σ_n ℓ(x_n, y_n), the mean cross-entropy over (inputs N×..., targets N), in eval
    mode; float32 CPU tensors of the parameters' shapes."""
    params = trainable(model)
    device, dtype = params[0][1].device, params[0][1].dtype
    total = [torch.zeros_like(p) for _, p in params]
    with eval_mode(model), torch.enable_grad():
        for start in range(0, len(inputs), batch_size):  # chunks bound memory
            x = inputs[start : start + batch_size].to(device, dtype)
            y = targets[start : start + batch_size].to(device)
            loss = F.cross_entropy(model(x), y, reduction="sum")
            for t, g in zip(total, torch.autograd.grad(loss, [p for _, p in params])):
                t += g
    return {n: (t / len(inputs)).float().cpu() for (n, _), t in zip(params, total)}


def request_data(request: Request, which: str, strategy: str) -> tuple[Tensor, Tensor]:
    """(inputs, targets) of the forget set or of the training data, else a ConfigError."""
    x, y = (
        (request.forget_inputs, request.forget_targets)
        if which == "forget"
        else (request.inputs, request.targets)
    )
    if x is None or y is None or len(x) == 0:
        key = "forget_inputs" if which == "forget" else "inputs"
        raise ConfigError(key, f"strategy {strategy!r} needs the {which} data ({key})")
    return x, y
