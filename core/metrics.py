"""What a user measures after unlearning: the METRICS dict of DESIGN.md.

test_acc             accuracy on the clean test set
retain_acc           accuracy on D_r (labels as trained, which are correct there)
forget_acc           accuracy on D_f inputs w.r.t. the corrected (true) labels
forget_acc_poisoned  accuracy on D_f inputs w.r.t. the poisoned labels it was trained on
asr                  backdoor attack success: triggered non-target test images -> target
mia_auc              membership inference AUC on D_f vs unseen test data
relearn_asr          attack success after a few fine-tuning steps on poisoned samples
dist_to_retrained    relative L2 distance of the weights to the retrained model
"""

from __future__ import annotations

from typing import Any

from torch import nn

from core.training import accuracy

METRIC_KEYS = ("test_acc", "retain_acc", "forget_acc", "forget_acc_poisoned", "asr", "mia_auc",
               "relearn_asr", "dist_to_retrained")  # fmt: skip


def attack_success_rate(model: nn.Module, forget_set) -> float | None:
    """Share of triggered non-target test images classified as the target (backdoor only)."""
    if "triggered_test" not in forget_set.eval_sets:
        return None
    return accuracy(model, *forget_set.eval_sets["triggered_test"])


def relative_distance(model: nn.Module, reference: nn.Module) -> float:
    """‖θ − θ_ref‖₂ / ‖θ_ref‖₂ over all parameters."""
    num = sum(((p.detach().cpu() - q.detach().cpu()) ** 2).sum() for p, q in
              zip(model.parameters(), reference.parameters()))  # fmt: skip
    den = sum((q.detach().cpu() ** 2).sum() for q in reference.parameters())
    return float((num / den).sqrt())


def evaluate(model: nn.Module, dataset, forget_set, *, reference: nn.Module | None = None,
             **options: Any) -> dict[str, float | None]:  # fmt: skip
    """METRICS of `model` on `dataset` and `forget_set` (see the module docstring)."""
    x_f, y_f_poisoned = forget_set.forget
    _, y_f_true = forget_set.forget_true
    return {
        "test_acc": accuracy(model, dataset.x_test, dataset.y_test),
        "retain_acc": accuracy(model, *forget_set.retain),
        "forget_acc": accuracy(model, x_f, y_f_true),
        "forget_acc_poisoned": accuracy(model, x_f, y_f_poisoned),
        "asr": attack_success_rate(model, forget_set),
        "mia_auc": None,
        "relearn_asr": None,
        "dist_to_retrained": relative_distance(model, reference) if reference is not None else None,
    }
