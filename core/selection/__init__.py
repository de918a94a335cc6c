"""Parameter selection: scores -> boolean masks (one per named parameter), strategy registry.

A mask M has the shape of its parameter; the unlearning update is θ ← θ* − τ·(M ⊙ G).

Strategies (registry `STRATEGIES`; each entry carries its label, what it needs and its options):
    saps        rank by |diag H| (or diag H itself with `signed=True`) of the training loss
    random      seeded uniform ranking among the live parameters (`live=False`: among all)
    magnitude   rank by |θ|
    gradient    SalUn (Fan et al. 2024): rank by |∇θ L_forget|, mean CE on the forget set
    fisher      SSD-style (Foster et al. 2024): rank by F_forget / (F_full + 1e-12), F = empirical
                Fisher diagonal (mean squared per-sample gradient) on forget / full data
    last_layer  the final nn.Linear's weight and bias (Warnecke's code); no budget
    all         every parameter; no budget

Budget, exactly one of:
    fraction    k = round(fraction × P) parameters, P counted globally or per tensor
                (`per_layer=True`: round(fraction × numel) in every tensor)
    quantile    q in [0, 1): scores ≥ the q-quantile (largest) or ≤ it (smallest), quantile of
                the eligible scores with linear interpolation (as torch.quantile)
    threshold   scores ≥ threshold (largest) or ≤ threshold (smallest)

Ranking is on a total order (score, flat index), so ties break deterministically and
`largest=True` at k and `largest=False` at P − k are exact complements.

Live parameters: those with a non-zero diag H on the full training data, or (without it) a
non-zero empirical Fisher, i.e. a non-zero gradient on some training sample. An update of a
dead parameter changes nothing. With `largest=False`, zero scores are ineligible unless
`include_zero=True`; strategies that need "liveness" draw among live parameters only. When fewer
than k are eligible all of them are chosen without error; `dead_selected` and `summary` report it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from core.errors import ConfigError
from core.selection.ranking import (
    Masks,
    Scores,
    check_fraction,
    dead_selected,
    jaccard,
    live_mask,
    overlap_matrix,
    rank,
    select,
    summary,
)
from core.selection.scores import (
    Request,
    all_mask,
    fisher_scores,
    forget_gradient,
    gradient_scores,
    last_layer_mask,
    magnitude_scores,
    random_scores,
    request_data,
    saps_scores,
)

__all__ = [
    "BUDGET_KEYS",
    "NEEDS",
    "STRATEGIES",
    "Masks",
    "Request",
    "Scores",
    "Strategy",
    "build_mask",
    "check_fraction",
    "dead_selected",
    "forget_gradient",
    "jaccard",
    "last_layer_mask",
    "live_mask",
    "mask_for",
    "overlap_matrix",
    "select",
    "strategy_label",
    "summary",
]
NEEDS = frozenset({"curvature", "forget_gradient", "liveness", "training_data"})
# config keys every budgeted strategy accepts (the budget and its direction), with defaults
BUDGET_KEYS = {
    "fraction": None,
    "quantile": None,
    "threshold": None,
    "largest": True,
    "per_layer": False,
    "include_zero": False,
}


@dataclass(frozen=True)
class Strategy:
    """One selection strategy: `score(model, request) -> Scores` ranked under a budget, or
    `fixed(model) -> Masks` (no budget). `needs` ⊆ NEEDS says what its mask costs; `options`
    are the extra config keys it accepts, with their defaults; `variant(options)` names a
    configured variant for labels (default: `label`, with "smallest" when largest is false)."""

    name: str
    label: str
    description: str
    score: Callable[[nn.Module, Request], Scores] | None = None
    fixed: Callable[[nn.Module], Masks] | None = None
    needs: frozenset[str] = frozenset()
    options: dict[str, Any] = field(default_factory=dict)
    variant: Callable[[dict], str] | None = None

    @property
    def budgeted(self) -> bool:
        return self.fixed is None


def _order(s: dict) -> str:
    return "largest" if s.get("largest", True) else "smallest"


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            "saps",
            "SAPS (largest diag H)",
            "rank by |diag H| of the training loss at θ*",
            score=saps_scores,
            needs=frozenset({"curvature"}),
            options={"signed": False},
            variant=lambda s: f"SAPS ({_order(s)} {'signed ' if s.get('signed') else ''}diag H)",
        ),
        Strategy(
            "random",
            "random (live)",
            "seeded uniform draw among the live parameters",
            score=random_scores,
            needs=frozenset({"liveness"}),
            options={"live": True},
            variant=lambda s: "random (live)" if s.get("live", True) else "random (uniform)",
        ),
        Strategy("magnitude", "magnitude |θ|", "rank by |θ*|", score=magnitude_scores),
        Strategy(
            "gradient",
            "SalUn |∇L_forget|",
            "SalUn: rank by |∇θ L_forget| (mean CE on D_f)",
            score=gradient_scores,
            needs=frozenset({"forget_gradient"}),
        ),
        Strategy(
            "fisher",
            "SSD Fisher ratio",
            "SSD: empirical Fisher on D_f / empirical Fisher on D",
            score=fisher_scores,
            needs=frozenset({"training_data"}),
        ),
        Strategy("last_layer", "last layer", "the final linear layer only", fixed=last_layer_mask),
        Strategy("all", "all parameters", "every parameter", fixed=all_mask),
    )
}


def strategy_label(strategy: dict, fraction: float | None = None) -> str:
    """Human row label, e.g. "SAPS (smallest diag H) @ 2 %" or "all parameters". Built once
    and carried on result rows; `fraction` overrides the strategy's own (sweep budgets)."""
    entry = _entry(strategy.get("name"))
    if not entry.budgeted:
        return entry.label
    opts = {**BUDGET_KEYS, **entry.options, **strategy}
    if entry.variant is not None:
        text = entry.variant(opts)
    else:
        text = entry.label + ("" if opts["largest"] else " (smallest)")
    if opts["per_layer"]:
        text += ", per layer"
    fraction = fraction if fraction is not None else opts["fraction"]
    if fraction is not None:
        return f"{text} @ {fraction * 100:g} %"
    if opts["quantile"] is not None:
        return f"{text} {'≥' if opts['largest'] else '≤'} q{opts['quantile']:g}"
    if opts["threshold"] is not None:
        return f"{text} {'≥' if opts['largest'] else '≤'} {opts['threshold']:g}"
    return text


def build_mask(
    strategy: str,
    model: nn.Module,
    *,
    fraction: float | None = None,
    quantile: float | None = None,
    threshold: float | None = None,
    largest: bool = True,
    per_layer: bool = False,
    include_zero: bool = False,
    scores: Scores | None = None,
    forget_inputs: Tensor | None = None,
    forget_targets: Tensor | None = None,
    inputs: Tensor | None = None,
    targets: Tensor | None = None,
    seed: int = 0,
    eligible: Masks | None = None,
    **options: Any,
) -> Masks:
    """Mask {parameter name: BoolTensor of its shape} for `strategy` under one budget.

    Budgeted strategies need exactly one of fraction / quantile / threshold; fixed ones take
    none (a given fraction is still validated). `options` are the strategy's own (e.g.
    `signed` for saps). With `eligible` (the live parameters, see `live_mask`), a strategy
    that needs "liveness" draws among those only. Masks live on the CPU.
    """
    entry = _entry(strategy)
    if fraction is not None:
        fraction = check_fraction(fraction)
    unknown = set(options) - set(entry.options)
    if unknown:
        raise ConfigError(f"strategy.{sorted(unknown)[0]}", f"not an option of {strategy!r}")
    if entry.fixed is not None:
        return entry.fixed(model)
    budgets = [b for b in (fraction, quantile, threshold) if b is not None]
    if len(budgets) != 1:
        raise ConfigError(
            "fraction", f"strategy {strategy!r} needs exactly one of fraction, quantile, threshold"
        )
    if quantile is not None and not (isinstance(quantile, (int, float)) and 0 <= quantile < 1):
        raise ConfigError("quantile", f"must be a number in [0, 1), got {quantile!r}")
    if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise ConfigError("threshold", f"must be a finite number, got {threshold!r}")
    request = Request(
        scores, forget_inputs, forget_targets, inputs, targets, seed, {**entry.options, **options}
    )
    values = entry.score(model, request)
    if "liveness" not in entry.needs:
        eligible = None
    return rank(
        values,
        largest,
        per_layer,
        include_zero or "liveness" in entry.needs,
        eligible=eligible,
        fraction=fraction,
        quantile=quantile,
        threshold=threshold,
    )


def mask_for(
    strategy: dict,
    model: nn.Module,
    *,
    fraction: float | None = None,
    scores: Scores | None = None,
    forget_set: Any = None,
    seed: int = 0,
    live: Masks | None = None,
) -> Masks:
    """The mask of one configured strategy (a normalized `strategies[i]` dict) at θ* = `model`.

    `fraction` (a sweep budget) overrides the strategy's own; `scores`: diag H for strategies
    that need "curvature"; `forget_set` (core.scenarios.ForgetSet) supplies D_f as trained and
    the training data; `live` (see `live_mask`) is computed here from the training data when a
    strategy that needs it gets none.
    """
    entry = _entry(strategy.get("name"))
    opts = {**BUDGET_KEYS, **entry.options, **strategy}
    fraction = fraction if fraction is not None else opts["fraction"]
    if entry.budgeted and fraction is None and opts["quantile"] is None and opts["threshold"] is None:
        raise ConfigError("fraction", f"strategy {entry.name!r} needs a fraction (or sweep 'fractions')")
    x_f = y_f = x = y = None
    if forget_set is not None:
        (x_f, y_f), (x, y) = forget_set.forget, (forget_set.x_train, forget_set.y_train)
    if "liveness" in entry.needs and opts.get("live", True):
        if live is None:
            live = live_mask(model, *request_data(Request(inputs=x, targets=y), "training", entry.name))
    else:
        live = None
    return build_mask(
        entry.name,
        model,
        fraction=fraction if entry.budgeted else None,
        quantile=None if fraction is not None else opts["quantile"],
        threshold=None if fraction is not None else opts["threshold"],
        largest=opts["largest"],
        per_layer=opts["per_layer"],
        include_zero=opts["include_zero"],
        scores=scores,
        forget_inputs=x_f,
        forget_targets=y_f,
        inputs=x,
        targets=y,
        seed=seed,
        eligible=live,
        **{k: opts[k] for k in entry.options},
    )


def _entry(name: Any) -> Strategy:
    if name not in STRATEGIES:
        raise ConfigError("strategy", f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[name]
