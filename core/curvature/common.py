"""Shared helpers of the curvature estimators: chunking, memory budgets, checks, output."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from core.errors import ConfigError, NumericalError

Progress = Callable[[int, int], None] | None
Scores = dict[str, Tensor]


class Unsupported(Exception):
    """The per-layer factor path cannot handle this model; use the functional fallback."""


class SharedModule(Unsupported):
    """A parameterized module runs twice per forward: the network is not affine in its weights."""


def device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def count_classes(model: nn.Module, inputs: Tensor, device, dtype) -> int:
    with torch.no_grad():
        return model(inputs[:1].to(device, dtype)).shape[1]


def activation_floats(model: nn.Module, x1: Tensor) -> int:
    """Floats of all leaf-module outputs for one sample (×2 for functional ops in forward)."""
    total = [x1.numel()]

    def count(module: nn.Module, args: tuple, output: Any) -> None:
        if isinstance(output, Tensor):
            total[0] += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(x1)
    finally:
        for h in handles:
            h.remove()
    return 2 * total[0]


def budget_rows(memory_mb: float, floats_per_row: int, dtype: torch.dtype) -> int:
    itemsize = torch.empty((), dtype=dtype).element_size()
    return max(1, int(memory_mb * 2**20 // max(1, floats_per_row * itemsize)))


def activation_rows(model: nn.Module, inputs: Tensor, copies: int, memory_mb: float) -> int:
    """Rows per chunk when `copies` buffers the size of one sample's activations fit in memory_mb."""
    device, dtype = device_dtype(model)
    per_sample = activation_floats(model, inputs[:1].to(device, dtype)) * copies
    return budget_rows(memory_mb, per_sample, dtype)


def chunks(
    inputs: Tensor, targets: Tensor, batch_size: int, device, dtype
) -> Iterator[tuple[int, Tensor, Tensor]]:
    for start in range(0, len(inputs), batch_size):
        x = inputs[start : start + batch_size].to(device, dtype)
        yield start, x, targets[start : start + batch_size].to(device)


def unflatten(flat: Tensor, shapes: dict, sizes: list[int], squeeze: bool = False) -> list:
    parts = flat.split(sizes, dim=1)
    return [
        (part[0] if squeeze else part).reshape(shape if squeeze else (flat.shape[0], *shape))
        for part, shape in zip(parts, shapes.values())
    ]


def report(progress: Progress, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def no_options(options: dict, method: str) -> None:
    if options:
        raise ConfigError("curvature", f"unknown option(s) {sorted(options)} for method {method!r}")


def check_data(inputs: Tensor, targets: Tensor, batch_size: int | None) -> None:
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        raise ConfigError("curvature.data", "inputs and targets must be tensors")
    if len(inputs) == 0 or len(inputs) != len(targets):
        raise ConfigError(
            "curvature.data",
            f"need N ≥ 1 inputs and N targets, got {len(inputs)}/{len(targets)}",
        )
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigError("curvature.batch_size", f"need an integer ≥ 1, got {batch_size!r}")


def finish(diag: Scores, method: str) -> Scores:
    out = {n: v.detach().float().cpu() for n, v in diag.items()}
    bad = [n for n, v in out.items() if not torch.isfinite(v).all()]
    if bad:
        raise NumericalError(f"curvature ({method}): non-finite values in {bad}")
    return out
