"""What a user measures after unlearning: `evaluate` -> METRICS, `compare` -> COMPARISONS.

    test_acc               accuracy on the clean test set
    retain_acc             accuracy on D_r (labels as trained, which are correct there)
    forget_acc             accuracy on D_f inputs w.r.t. the corrected (true) labels
    forget_acc_poisoned    accuracy on D_f inputs w.r.t. the poisoned labels it was trained on
    asr                    backdoor attack success: triggered non-target test images -> target
    poison_fit_auc         backdoor / label flip: loss-threshold AUC of D_f as trained vs test
                           images (how well the poison is still fit; None for removals)
    mia_auc, mia_auc_logistic, mia_tpr_at_1pct_fpr, mia_tpr_at_0p1pct_fpr, mia_n
                           membership inference on φ = log p_y − log(1 − p_y): members D_f
                           (removal) or D̃_f (backdoor / label flip) vs test images (membership)
    relearn_curve          {"steps", "value"}: attack success along one relearning attack (relearn)
    relearn_success        its last value
    agreement, kl_to_retrained, dist_to_retrained    against the reference (retrained) model
    notes                  {key: why it is None}

Forget quality of the NeurIPS 2023 unlearning challenge (over M models per side):
`logit_scaled_confidence`, `forget_quality` (challenge.py). Labels, units and directions of
every key: METRICS_INFO (info.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.metrics.challenge import epsilon_points, epsilons, forget_quality
from core.metrics.comparisons import (
    backdoor_removal,
    compare,
    logit_distance,
    output_distance,
    relative_distance,
    restored_pct,
)
from core.metrics.info import COMPARISON_KEYS, METRIC_KEYS, METRICS_INFO
from core.metrics.membership import (
    MIA_KEYS,
    confidence_features,
    logistic_fit,
    logit_scaled_confidence,
    membership_inference,
    poison_fit_auc,
    tpr_at_fpr,
)
from core.metrics.relearn import RELEARN_STEPS, attack_success, attack_success_rate, relearn_curve
from core.training import accuracy, predict

__all__ = [
    "COMPARISON_KEYS",
    "METRICS_INFO",
    "METRIC_KEYS",
    "MIA_KEYS",
    "OPTIONS",
    "RELEARN_STEPS",
    "attack_success",
    "attack_success_rate",
    "backdoor_removal",
    "compare",
    "confidence_features",
    "epsilon_points",
    "epsilons",
    "evaluate",
    "forget_quality",
    "logistic_fit",
    "logit_distance",
    "logit_scaled_confidence",
    "membership_inference",
    "output_distance",
    "poison_fit_auc",
    "relative_distance",
    "relearn_curve",
    "restored_pct",
    "tpr_at_fpr",
]

OPTIONS = {
    "relearn_samples": 10,
    "relearn_clean": 90,
    "relearn_steps": 20,
    "relearn_lr": 1e-3,
    "reference_test_logits": None,
}
"""Options `evaluate` accepts besides its keywords, with their defaults."""


def _logits_of(model: nn.Module, x: torch.Tensor, reuse: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The model's logits on x, or reuse[1] when x equals the inputs reuse[0] (a label flip's D̃_f)."""
    if reuse[0].shape == x.shape and torch.equal(reuse[0], x):
        return reuse[1]
    return predict(model, x)


def evaluate(
    model: nn.Module,
    dataset,
    forget_set,
    *,
    reference: nn.Module | None = None,
    mia: bool = True,
    relearn: bool = True,
    seed: int = 0,
    **options: Any,
) -> dict[str, Any]:
    """METRICS of `model` on `dataset` (x_test N×C×H×W, y_test N) and `forget_set` (a
    core.scenarios.ForgetSet); every key of METRIC_KEYS plus "notes", see the module docstring.

    One forward pass per data set (test, D_f, D̃_f when its inputs differ from D_f's, D_r),
    shared by every metric. mia: run the membership attacks; relearn: run the relearning attack
    (options relearn_samples, relearn_clean, relearn_steps, relearn_lr). reference: the retrained
    model for agreement, KL and weight distance; reference_test_logits (option): its test logits,
    computed once by a caller that evaluates many models against one reference. seed: the
    attacks' subsampling. An unknown option is a TypeError (no silent typo).
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"unknown metric options {unknown}; known: {sorted(OPTIONS)}")
    opts = {**OPTIONS, **options}
    x_f, y_f = forget_set.forget  # as trained: poisoned labels (true labels for a removal)
    _, y_f_true = forget_set.forget_true
    x_c, y_c = forget_set.corrected
    x_r, y_r = forget_set.retain
    test_logits = predict(model, dataset.x_test)
    forget_logits = predict(model, x_f) if len(y_f) else None
    forget_pred = forget_logits.argmax(1) if forget_logits is not None else None

    def acc(pred: torch.Tensor | None, y: torch.Tensor) -> float | None:
        return None if pred is None or len(y) == 0 else float((pred == y.cpu()).float().mean())

    out: dict[str, Any] = dict.fromkeys(METRIC_KEYS)
    notes: dict[str, str] = {}
    out.update(
        test_acc=acc(test_logits.argmax(1), dataset.y_test),
        retain_acc=accuracy(model, x_r, y_r),
        forget_acc=acc(forget_pred, y_f_true),
        forget_acc_poisoned=acc(forget_pred, y_f),
    )
    out["asr"] = attack_success_rate(model, forget_set)
    notes["asr"] = "not a backdoor scenario"
    if forget_set.is_removal:
        notes["poison_fit_auc"] = "removal scenario: D_f carries no poison"
    elif forget_logits is not None:
        out["poison_fit_auc"] = poison_fit_auc(forget_logits, y_f, test_logits, dataset.y_test, seed=seed)
    if mia and forget_logits is None:
        notes.update(dict.fromkeys(MIA_KEYS[:-1], "empty forget set"))
    elif mia:
        # members: D_f for a removal; D̃_f (what the retrained model saw) for backdoor / label flip
        members = (
            (forget_logits, y_f)
            if forget_set.is_removal
            else (_logits_of(model, x_c, (x_f, forget_logits)), y_c)
        )
        res = membership_inference(*members, test_logits, dataset.y_test, seed=seed)
        notes.update(res.pop("notes"))
        out.update(res)
    else:
        notes.update(dict.fromkeys(MIA_KEYS, "membership attacks not run (metrics.mia false)"))
    if relearn:
        curve = relearn_curve(
            model,
            forget_set,
            samples=opts["relearn_samples"],
            clean=opts["relearn_clean"],
            steps=opts["relearn_steps"],
            lr=opts["relearn_lr"],
            seed=seed,
        )
        out["relearn_curve"] = curve
        out["relearn_success"] = curve["value"][-1] if curve else None
    else:
        notes.update(
            dict.fromkeys(
                ("relearn_curve", "relearn_success"), "relearning attack not run (metrics.relearn false)"
            )
        )
    if reference is not None:
        ref_logits = opts["reference_test_logits"]
        if ref_logits is None:
            ref_logits = predict(reference, dataset.x_test)
        out["agreement"], out["kl_to_retrained"] = logit_distance(test_logits, ref_logits)
        out["dist_to_retrained"] = relative_distance(model, reference)
    else:
        notes.update(
            dict.fromkeys(("agreement", "kl_to_retrained", "dist_to_retrained"), "no reference model")
        )
    out["notes"] = {k: v for k, v in notes.items() if out.get(k) is None}
    return out
