"""Attack success, and how fast it returns under a relearning attack.

Attack success of a model on a forget set (what unlearning should have taken away):

    backdoor (a "triggered_test" eval set)   share of triggered non-target test images -> target
    label flip (D̃_f not empty)              accuracy on D_f w.r.t. the POISONED labels
    removal (D̃_f empty)                     accuracy on D_f w.r.t. its labels as trained

The relearning attack fine-tunes a copy of the model for 20 Adam steps on 10 D_f samples as
trained mixed with 90 clean retain samples, and records attack success along the way: a model
that forgot returns slowly (like the retrained model), one that only hid the effect returns fast.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from core.functional import eval_mode
from core.training import accuracy

RELEARN_STEPS = (0, 1, 2, 5, 10, 20)


def attack_success_rate(model: nn.Module, forget_set) -> float | None:
    """Share of triggered non-target test images classified as the target (backdoor only)."""
    if "triggered_test" not in forget_set.eval_sets:
        return None
    return accuracy(model, *forget_set.eval_sets["triggered_test"])


def attack_success(model: nn.Module, forget_set) -> float | None:
    """Attack success as in the module docstring (None for an empty D_f)."""
    if "triggered_test" in forget_set.eval_sets:
        return attack_success_rate(model, forget_set)
    return accuracy(model, *forget_set.forget)  # D_f as trained: poisoned or, for removal, true labels


def checkpoints(steps: int) -> list[int]:
    """The RELEARN_STEPS within `steps`, and `steps` itself (the last point)."""
    return sorted({k for k in RELEARN_STEPS if k <= steps} | {steps})


def relearn_curve(
    model: nn.Module,
    forget_set,
    *,
    samples: int = 10,
    clean: int = 90,
    steps: int = 20,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict | None:
    """{"steps": [0, 1, 2, 5, 10, 20], "value": attack success after that many steps} of ONE attack.

    The attack: Adam (lr) on a copy of `model` in eval mode (BatchNorm statistics stay: the
    attacker fine-tunes weights), full batch of `samples` seeded D_f samples as trained plus
    `clean` seeded retain samples. The clean samples matter: on poisoned samples alone any model
    (the retrained one too) learns to answer the target class for everything. None when D_f is
    empty. `model` is left untouched."""
    x_f, y_f = forget_set.forget
    if len(y_f) == 0:
        return None
    x_r, y_r = forget_set.retain
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(y_f), generator=g)[: min(samples, len(y_f))]
    keep = torch.randperm(len(y_r), generator=g)[: min(clean, len(y_r))]
    attacked = copy.deepcopy(model)
    dev = next(attacked.parameters()).device
    x = torch.cat([x_f[idx], x_r[keep]]).to(dev)
    y = torch.cat([y_f[idx], y_r[keep]]).to(dev)
    opt = torch.optim.Adam(attacked.parameters(), lr=lr)
    marks = checkpoints(steps)
    values = [attack_success(attacked, forget_set)] if marks[0] == 0 else []
    with eval_mode(attacked), torch.enable_grad():
        for step in range(1, steps + 1):
            opt.zero_grad()
            F.cross_entropy(attacked(x), y).backward()
            opt.step()
            if step in marks:
                values.append(attack_success(attacked, forget_set))
    return {"steps": marks, "value": values}
