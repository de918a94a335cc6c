"""Parameter selection: scores -> boolean masks (one per named parameter), strategy registry.

A mask M has the shape of its parameter; SAPS then updates θ ← θ* − τ·(M ⊙ G).

Strategies (registry `STRATEGIES`, names as users type them):
    saps        rank by |diag H| (or diag H itself with `signed=True`); `scores` required
    random      uniform random ranking from `seed`
    magnitude   rank by |θ|
    gradient    SalUn (Fan et al. 2024): rank by |∇θ L_forget|, mean CE on the forget set
    fisher      SSD-style (Foster et al. 2024): rank by F_forget / (F_full + 1e-12), F = empirical
                Fisher diagonal (mean squared per-sample gradient) on forget / full data
    last_layer  the final nn.Linear's weight and bias (Warnecke's code); budget ignored
    all         every parameter; budget ignored

Budget, exactly one of:
    fraction    k = round(fraction × P) parameters, P counted globally or per tensor
                (`per_layer=True`: round(fraction × numel) in every tensor)
    quantile    q in [0, 1]: scores ≥ the q-quantile (largest) or ≤ it (smallest), quantile of
                the eligible scores with linear interpolation (as torch.quantile)
    threshold   scores ≥ threshold (largest) or ≤ threshold (smallest)

Ranking is on a total order (score, flat index), so ties break deterministically and
`largest=True` at k and `largest=False` at P − k are exact complements.

Dead parameters: with `largest=False`, parameters whose score is exactly zero (units that never
fire: updating them changes nothing) are ineligible unless `include_zero=True`. If fewer than k
non-zero scores exist, all non-zero ones are chosen and no error is raised; `summary(...)` shows
the shortfall (`selected` < requested) and `zero_score_selected` counts dead picks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.curvature import eval_mode, hessian_diagonal
from core.errors import ConfigError, NumericalError

Scores = dict[str, Tensor]
Masks = dict[str, Tensor]


# ---------------------------------------------------------------------------------------------
# the core primitive


def select(
    scores: Scores,
    fraction: float,
    *,
    largest: bool = True,
    per_layer: bool = False,
    include_zero: bool = True,
) -> Masks:
    """Masks choosing exactly round(fraction × numel) entries by score (global or per tensor).

    Scores are ranked as given (take abs first if wanted). With include_zero=False, exact
    zeros are ineligible and fewer may be chosen (see module docstring).
    """
    fraction = check_fraction(fraction)
    return _rank(scores, largest, per_layer, include_zero, fraction=fraction)


def check_fraction(fraction: Any, field: str = "fraction") -> float:
    """A finite number in (0, 1], else ConfigError naming `field`."""
    ok = isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
    if not ok or not math.isfinite(fraction) or not 0 < fraction <= 1:
        raise ConfigError(field, f"need a number in (0, 1], got {fraction!r}")
    return float(fraction)


def _rank(
    scores: Scores,
    largest: bool,
    per_layer: bool,
    include_zero: bool,
    *,
    fraction: float | None = None,
    quantile: float | None = None,
    threshold: float | None = None,
) -> Masks:
    names = list(scores)
    for name in names:
        if torch.isnan(scores[name]).any():
            raise NumericalError(f"selection: NaN scores in {name!r}")
    if per_layer:
        groups = [[n] for n in names]
    else:
        groups = [names]
    masks: Masks = {}
    for group in groups:
        flat = torch.cat([scores[n].detach().reshape(-1).double().cpu() for n in group])
        chosen = _choose(flat, largest, include_zero, fraction, quantile, threshold)
        for name, part in zip(group, chosen.split([scores[n].numel() for n in group])):
            masks[name] = part.reshape(scores[name].shape)
    return masks


def _choose(flat: Tensor, largest, include_zero, fraction, quantile, threshold) -> Tensor:
    """Boolean vector over `flat` per the budget; eligibility excludes zeros when asked."""
    eligible = torch.ones_like(flat, dtype=torch.bool)
    if not include_zero and not largest:  # dead parameters: an update there changes nothing
        eligible = flat != 0
    candidates = eligible.nonzero().squeeze(1)
    # total order (score, index): stable sort of candidates, which are in index order
    order = candidates[torch.sort(flat[candidates], stable=True).indices]
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    if fraction is not None:
        k = min(round(fraction * flat.numel()), len(order))
        picked = order[len(order) - k :] if largest else order[:k]
        chosen[picked] = True
        return chosen
    if quantile is not None:
        if len(order) == 0:
            return chosen
        ranked = flat[order]  # linear interpolation between order statistics, as torch.quantile
        position = quantile * (len(order) - 1)
        low, high = ranked[math.floor(position)], ranked[math.ceil(position)]
        threshold = (low + (high - low) * (position - math.floor(position))).item()
    chosen[candidates] = flat[candidates] >= threshold if largest else flat[candidates] <= threshold
    return chosen


# ---------------------------------------------------------------------------------------------
# strategies


@dataclass(frozen=True)
class Strategy:
    """`score(model, request) -> Scores` ranked by the budget, or `fixed(model) -> Masks`."""

    description: str
    score: Callable[[nn.Module, dict], Scores] | None = None
    fixed: Callable[[nn.Module], Masks] | None = None


def _saps_scores(model: nn.Module, request: dict) -> Scores:
    scores = request["scores"]
    if scores is None:
        raise ConfigError("scores", "strategy 'saps' needs the Hessian diagonal (`scores`)")
    _check_keys(scores, model, "scores")
    return {n: s if request["signed"] else s.abs() for n, s in scores.items()}


def _random_scores(model: nn.Module, request: dict) -> Scores:
    generator = torch.Generator().manual_seed(request["seed"])
    return {n: torch.rand(p.shape, generator=generator) for n, p in _trainable(model)}


def _magnitude_scores(model: nn.Module, request: dict) -> Scores:
    return {n: p.detach().abs().cpu() for n, p in _trainable(model)}


def _gradient_scores(model: nn.Module, request: dict) -> Scores:
    x, y = _data(request, "forget_inputs", "forget_targets", "gradient")
    return {n: g.abs() for n, g in forget_gradient(model, x, y).items()}


def _fisher_scores(model: nn.Module, request: dict) -> Scores:
    x_f, y_f = _data(request, "forget_inputs", "forget_targets", "fisher")
    x, y = _data(request, "inputs", "targets", "fisher")
    forget = hessian_diagonal(model, x_f, y_f, "empirical_fisher", seed=request["seed"])
    full = hessian_diagonal(model, x, y, "empirical_fisher", seed=request["seed"])
    # SSD's importance ratio: large where the forget set matters more than the data overall
    return {n: forget[n] / (full[n] + 1e-12) for n in forget}


def last_layer_mask(model: nn.Module) -> Masks:
    """True on the weight and bias of the last nn.Linear in module order, False elsewhere."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("strategy", "'last_layer' needs a model with an nn.Linear layer")
    prefix = linears[-1] + "."
    return {n: torch.full(p.shape, n.startswith(prefix)) for n, p in _trainable(model)}


def _all_mask(model: nn.Module) -> Masks:
    return {n: torch.ones(p.shape, dtype=torch.bool) for n, p in _trainable(model)}


STRATEGIES: dict[str, Strategy] = {
    "saps": Strategy("rank by |diag Hessian| of the training loss", score=_saps_scores),
    "random": Strategy("uniform random subset (seeded)", score=_random_scores),
    "magnitude": Strategy("rank by |θ|", score=_magnitude_scores),
    "gradient": Strategy("SalUn: rank by |∇θ L_forget|", score=_gradient_scores),
    "fisher": Strategy("SSD: forget/full empirical Fisher ratio", score=_fisher_scores),
    "last_layer": Strategy("final linear layer only (budget ignored)", fixed=last_layer_mask),
    "all": Strategy("every parameter (budget ignored)", fixed=_all_mask),
}


def build_mask(
    strategy: str,
    model: nn.Module,
    *,
    fraction: float | None = None,
    largest: bool = True,
    per_layer: bool = False,
    include_zero: bool = False,
    signed: bool = False,
    scores: Scores | None = None,
    forget_inputs: Tensor | None = None,
    forget_targets: Tensor | None = None,
    inputs: Tensor | None = None,
    targets: Tensor | None = None,
    seed: int = 0,
    threshold: float | None = None,
    quantile: float | None = None,
) -> Masks:
    """Mask {parameter name: BoolTensor of its shape} for `strategy` under one budget.

    Ranked strategies need exactly one of fraction / quantile / threshold; `last_layer` and
    `all` ignore the budget (a given fraction is still validated). Masks live on the CPU.
    """
    if strategy not in STRATEGIES:
        raise ConfigError("strategy", f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    if fraction is not None:
        fraction = check_fraction(fraction)
    entry = STRATEGIES[strategy]
    if entry.fixed is not None:
        return entry.fixed(model)
    budgets = [b for b in (fraction, quantile, threshold) if b is not None]
    if len(budgets) != 1:
        raise ConfigError(
            "fraction", f"strategy {strategy!r} needs exactly one of fraction, quantile, threshold"
        )
    if quantile is not None:
        quantile = check_fraction(quantile, "quantile") if quantile != 0 else 0.0
    if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise ConfigError("threshold", f"need a finite number, got {threshold!r}")
    request = dict(
        scores=scores, signed=signed, seed=seed, forget_inputs=forget_inputs,
        forget_targets=forget_targets, inputs=inputs, targets=targets,
    )  # fmt: skip
    values = entry.score(model, request)
    include_zero = include_zero or strategy == "random"
    return _rank(
        values, largest, per_layer, include_zero,
        fraction=fraction, quantile=quantile, threshold=threshold,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# reporting


def jaccard(mask_a: Masks, mask_b: Masks) -> float:
    """|A ∩ B| / |A ∪ B| over all parameters (1.0 when both are empty)."""
    if set(mask_a) != set(mask_b):
        raise ConfigError("mask", "masks cover different parameters")
    inter = union = 0
    for name, a in mask_a.items():
        b = mask_b[name]
        if a.shape != b.shape:
            raise ConfigError("mask", f"{name!r}: shapes {tuple(a.shape)} and {tuple(b.shape)}")
        a, b = a.bool().cpu(), b.bool().cpu()
        inter += int((a & b).sum())
        union += int((a | b).sum())
    return 1.0 if union == 0 else inter / union


def summary(mask: Masks, scores: Scores | None = None) -> list[dict]:
    """Per tensor: name, numel, selected, share (selected / numel), zero_score (count of exact
    zero scores) and zero_score_selected (selected with score exactly 0); the last two are
    None without scores."""
    rows = []
    for name, m in mask.items():
        m = m.bool().cpu()
        row = {"name": name, "numel": m.numel(), "selected": int(m.sum())}
        row["share"] = row["selected"] / max(1, row["numel"])
        row["zero_score"] = row["zero_score_selected"] = None
        if scores is not None:
            zero = scores[name].detach().cpu() == 0
            row["zero_score"] = int(zero.sum())
            row["zero_score_selected"] = int((zero & m).sum())
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# helpers


def forget_gradient(model: nn.Module, inputs: Tensor, targets: Tensor, *, batch_size: int = 256) -> Scores:
    """∇θ of the mean cross-entropy over (inputs, targets) in eval mode, float32 CPU tensors."""
    params = _trainable(model)
    device = params[0][1].device
    total = [torch.zeros_like(p) for _, p in params]
    with eval_mode(model), torch.enable_grad():
        for start in range(0, len(inputs), batch_size):  # chunks bound memory
            x = inputs[start : start + batch_size].to(device, params[0][1].dtype)
            y = targets[start : start + batch_size].to(device)
            loss = F.cross_entropy(model(x), y, reduction="sum")
            for t, g in zip(total, torch.autograd.grad(loss, [p for _, p in params])):
                t += g
    return {n: (t / len(inputs)).float().cpu() for (n, _), t in zip(params, total)}


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _check_keys(scores: Scores, model: nn.Module, field: str) -> None:
    for name, p in _trainable(model):
        if name not in scores or tuple(scores[name].shape) != tuple(p.shape):
            raise ConfigError(field, f"missing or misshapen entry for parameter {name!r}")


def _data(request: dict, x_key: str, y_key: str, strategy: str) -> tuple[Tensor, Tensor]:
    x, y = request[x_key], request[y_key]
    if x is None or y is None or len(x) == 0:
        raise ConfigError(x_key, f"strategy {strategy!r} needs {x_key} and {y_key}")
    return x, y
