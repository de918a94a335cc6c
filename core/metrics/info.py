"""What every emitted metric is: label, unit, which direction is better, one-line description.

The dashboard, figures and reports read labels and units from METRICS_INFO instead of keeping
their own tables. Units: "fraction" (0–1), "auc" (0–1, 0.5 = chance), "ratio" (1 = as
retraining), "percent", "count", "nats", "curve" ({"steps", "value"}). Better: "higher",
"lower", "closer_to_retrained", "closer_to_zero", or None (a sample size, not a quality).
"""

from __future__ import annotations

from core.metrics.membership import MIA_KEYS


def _info(label: str, unit: str, better: str | None, description: str) -> dict:
    return {"label": label, "unit": unit, "better": better, "description": description}


METRICS_INFO: dict[str, dict] = {
    "test_acc": _info("test accuracy", "fraction", "higher", "accuracy on the clean test set"),
    "retain_acc": _info("retain accuracy", "fraction", "higher", "accuracy on D_r (labels as trained)"),
    "forget_acc": _info(
        "forget accuracy",
        "fraction",
        "closer_to_retrained",
        "accuracy on D_f inputs w.r.t. the corrected (true) labels",
    ),
    "forget_acc_poisoned": _info(
        "forget accuracy (poisoned labels)",
        "fraction",
        "closer_to_retrained",
        "accuracy on D_f inputs w.r.t. the labels it was trained on",
    ),
    "asr": _info(
        "attack success rate",
        "fraction",
        "lower",
        "backdoor: share of triggered non-target test images classified as the target",
    ),
    "poison_fit_auc": _info(
        "poison fit AUC",
        "auc",
        "lower",
        "loss-threshold AUC of D_f as trained (trigger, poisoned label) vs test "
        "images: how well the poison is still fit (retrained ≈ 0); not membership",
    ),
    "mia_auc": _info(
        "membership AUC",
        "auc",
        "closer_to_retrained",
        "threshold attack on log p_y − log(1 − p_y): members (D_f for removal, D̃_f "
        "for backdoor / label flip) vs test images, balanced",
    ),
    "mia_auc_logistic": _info(
        "membership AUC (logistic)",
        "auc",
        "closer_to_retrained",
        "logistic attack on confidence features, stratified 5-fold CV AUC",
    ),
    "mia_tpr_at_1pct_fpr": _info(
        "membership TPR @ 1 % FPR",
        "fraction",
        "closer_to_retrained",
        "threshold attack's TPR at 1 % FPR (needs ≥ 100 samples per side)",
    ),
    "mia_tpr_at_0p1pct_fpr": _info(
        "membership TPR @ 0.1 % FPR",
        "fraction",
        "closer_to_retrained",
        "threshold attack's TPR at 0.1 % FPR (needs ≥ 1,000 per side)",
    ),
    "mia_n": _info("membership samples per side", "count", None, "members (= non-members) the attacks used"),
    "relearn_curve": _info(
        "relearning curve",
        "curve",
        "closer_to_retrained",
        "attack success after 0, 1, 2, 5, 10, 20 relearning steps (backdoor: ASR; "
        "label flip: forget accuracy on the poisoned labels; removal: forget accuracy)",
    ),
    "relearn_success": _info(
        "attack success after relearning",
        "fraction",
        "closer_to_retrained",
        "the relearning curve's last value",
    ),
    "agreement": _info(
        "agreement with retrained",
        "fraction",
        "higher",
        "share of test images on which the prediction equals the retrained model's",
    ),
    "kl_to_retrained": _info(
        "KL to retrained", "nats", "lower", "mean KL(p_retrained ‖ p_model) over the test set"
    ),
    "dist_to_retrained": _info(
        "weight distance to retrained", "ratio", "lower", "‖θ − θ_retrained‖ / ‖θ_retrained‖"
    ),
    "backdoor_removal": _info(
        "backdoor removal", "ratio", "higher", "(ASR θ* − ASR) / (ASR θ* − ASR retrained): 1 = as retraining"
    ),
    "restored_pct": _info(
        "% restored",
        "percent",
        "higher",
        "Warnecke: 100·(acc − acc θ*)/(acc retrained − acc θ*) on the test set",
    ),
    "restored_n_test": _info(
        "test images behind % restored",
        "count",
        None,
        "round(|acc retrained − acc θ*| · test images): the gap that 100 % closes",
    ),
    "test_acc_drop": _info(
        "test accuracy drop", "fraction", "lower", "test accuracy of θ* minus this model's"
    ),
    "relearn_gap": _info(
        "relearning gap",
        "fraction",
        "closer_to_zero",
        "attack success after relearning minus the retrained model's (0 = as retraining)",
    ),
}

METRIC_KEYS: tuple[str, ...] = (
    "test_acc",
    "retain_acc",
    "forget_acc",
    "forget_acc_poisoned",
    "asr",
    "poison_fit_auc",
    *MIA_KEYS,
    "relearn_curve",
    "relearn_success",
    "agreement",
    "kl_to_retrained",
    "dist_to_retrained",
)
"""Every key `evaluate` returns besides "notes" (always present, None when not computed)."""

COMPARISON_KEYS: tuple[str, ...] = (
    "backdoor_removal",
    "restored_pct",
    "restored_n_test",
    "test_acc_drop",
    "relearn_gap",
)
"""The keys `compare` adds."""
