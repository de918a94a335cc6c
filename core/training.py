"""Seeded training and evaluation loops, device choice, progress callbacks.

Same seed and same device give bit-identical weights: the shuffling generator and the
initial weights (see `core.models.build(seed=...)`) are the only sources of randomness.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core.config import SCHEDULES  # learning-rate schedules: constant, or cosine decay to 0
from core.errors import ConfigError, NumericalError

OPTIMIZERS = ("adam", "sgd")
# progress(epoch, total_epochs, loss, accuracy) — called after every epoch
Progress = Callable[[int, int, float, float], None]


@dataclass
class History:
    """Per-epoch training curve: epoch (1-based), mean loss, training accuracy, seconds."""

    epochs: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` -> cuda, then mps, then cpu. An explicit device that is absent is a ConfigError."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise ConfigError("device", f"unknown device {device!r}; choose auto, cpu, cuda or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "device", "'cuda' requested but CUDA is not available on this machine; use 'auto' or 'cpu'"
        )
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device", "'mps' requested but MPS is not available; use 'auto' or 'cpu'")
    return torch.device(device)


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ConfigError("train.optimizer", f"unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")


def scheduled_lr(lr: float, step: int, total_steps: int, schedule: str) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total_steps`: `lr` throughout
    ("constant"), or ½·lr·(1 + cos(π·step/total_steps)) ("cosine": lr at the first step, → 0 at
    the last). Written out rather than torch's CosineAnnealingLR, whose chained form drifts from
    the closed form over thousands of steps and would tie the weights to its internals."""
    if schedule == "constant":
        return lr
    return 0.5 * lr * (1.0 + math.cos(math.pi * step / total_steps))


def train(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    schedule: str = "constant",
) -> History:
    """Minimise the mean cross-entropy of `model` on (inputs N×C×H×W, targets N) in place.

    Mini-batches are shuffled by a generator seeded with `seed`; the model ends in eval mode
    on `device`. Raises NumericalError if the loss becomes non-finite.
    """
    dev = resolve_device(device)
    model.to(dev)
    opt = make_optimizer(optimizer, model.parameters(), lr, weight_decay)
    if schedule not in SCHEDULES:
        raise ConfigError("train.schedule", f"unknown schedule {schedule!r}; choose one of {list(SCHEDULES)}")
    total_steps = epochs * math.ceil(len(targets) / batch_size)
    step = 0
    gen = torch.Generator().manual_seed(int(seed))
    x_all, y_all = inputs.to(dev), targets.to(dev)
    n = len(y_all)
    history = History()
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=gen).to(dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            if len(idx) < 2 and _has_batchnorm(model):
                continue  # BatchNorm cannot train on a batch of one
            logits = model(x_all[idx])
            loss = F.cross_entropy(logits, y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for group in opt.param_groups:
                group["lr"] = scheduled_lr(lr, step, total_steps, schedule)
            opt.step()
            step += 1
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == y_all[idx]).sum()
        mean_loss = float(loss_sum) / n  # one host sync per epoch
        if not math.isfinite(mean_loss):
            raise NumericalError(f"training loss became {mean_loss} in epoch {epoch}; lower train.lr")
        acc = float(correct) / n
        history.epochs.append(
            {"epoch": epoch, "loss": mean_loss, "accuracy": acc, "seconds": time.perf_counter() - start}
        )
        if progress is not None:
            progress(epoch, epochs, mean_loss, acc)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Logits N×K of `model` in eval mode, on the model's device, returned on the CPU."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    outs = [
        model(inputs[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(inputs), batch_size)
    ]
    model.train(was_training)
    if not outs:
        return torch.empty(0, 0)
    return torch.cat(outs)


def accuracy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float | None:
    """Share of `inputs` classified as `targets`; None for an empty set."""
    if len(targets) == 0:
        return None
    return float((predict(model, inputs).argmax(1) == targets.cpu()).float().mean())
