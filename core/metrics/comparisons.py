"""Measures between models: distances to the retrained model, and the COMPARISONS of a strategy's
METRICS with the original θ* and the retrained model."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.training import predict


def relative_distance(model: nn.Module, reference: nn.Module) -> float:
    """‖θ − θ_ref‖₂ / ‖θ_ref‖₂ over all parameters."""
    pairs = zip(model.parameters(), reference.parameters())
    num = sum(((p.detach().cpu() - q.detach().cpu()) ** 2).sum() for p, q in pairs)
    den = sum((q.detach().cpu() ** 2).sum() for q in reference.parameters())
    return float((num / den).sqrt())


def output_distance(model: nn.Module, reference: nn.Module, inputs: torch.Tensor) -> tuple[float, float]:
    """(prediction agreement, mean KL(p_ref ‖ p_model)) on `inputs` (N×C×H×W)."""
    return logit_distance(predict(model, inputs), predict(reference, inputs))


def logit_distance(logits: torch.Tensor, ref_logits: torch.Tensor) -> tuple[float, float]:
    """(share of equal argmax, mean_i KL(softmax(ref_i) ‖ softmax(logits_i)) in nats), logits N×C."""
    lp = F.log_softmax(logits, 1)
    lq = F.log_softmax(ref_logits, 1)
    agreement = float((lp.argmax(1) == lq.argmax(1)).float().mean())
    kl = float((lq.exp() * (lq - lp)).sum(1).mean())
    return agreement, kl


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or not math.isfinite(num) or abs(den) < 1e-12:
        return None
    return num / den


def backdoor_removal(
    asr_original: float | None, asr_unlearned: float | None, asr_retrained: float | None
) -> float | None:
    """(asr_original − asr_unlearned) / (asr_original − asr_retrained): 1 = as good as retraining."""
    if None in (asr_original, asr_unlearned, asr_retrained):
        return None
    return _ratio(asr_original - asr_unlearned, asr_original - asr_retrained)


def restored_pct(acc_before: float | None, acc_after: float | None, acc_clean: float | None) -> float | None:
    """Warnecke's % restored: 100·(acc_after − acc_before)/(acc_clean − acc_before). None when
    it is undefined: a value is missing, or retraining is not more accurate than θ* (a removal
    whose retrained model lands below θ*: there is nothing to restore, and the sign would flip)."""
    if None in (acc_before, acc_after, acc_clean) or acc_clean <= acc_before:
        return None
    r = _ratio(acc_after - acc_before, acc_clean - acc_before)
    return None if r is None else 100.0 * r


def compare(m: dict, original: dict, retrained: dict | None, n_test: int) -> dict:
    """METRICS `m` of an unlearned model plus the COMPARISONS (a new dict):

    backdoor_removal  (asr θ* − asr)/(asr θ* − asr retrained); None without a backdoor
    restored_pct      % restored of test accuracy (label flips and removals; a backdoor barely
                      moves test accuracy, so None there)
    restored_n_test   round(|acc retrained − acc θ*| · n_test): the test images behind 100 %
    test_acc_drop     test_acc θ* − test_acc
    relearn_gap       relearn_success − the retrained model's relearn_success
    """
    out = dict(m)
    ret = retrained or {}
    out["backdoor_removal"] = backdoor_removal(original.get("asr"), m.get("asr"), ret.get("asr"))
    before, after, clean = original.get("test_acc"), m.get("test_acc"), ret.get("test_acc")
    label_measure = original.get("asr") is None and None not in (before, after, clean)
    out["restored_pct"] = restored_pct(before, after, clean) if label_measure else None
    out["restored_n_test"] = round(abs(clean - before) * n_test) if label_measure else None
    out["test_acc_drop"] = None if None in (before, after) else before - after
    gap = (m.get("relearn_success"), ret.get("relearn_success"))
    out["relearn_gap"] = None if None in gap else gap[0] - gap[1]
    return out
