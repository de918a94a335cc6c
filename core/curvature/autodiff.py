"""torch.func paths: the column sums for any differentiable model (vmap over samples of a vjp),
the exact diagonal from one-hot Hessian-vector products, and Hutchinson's estimator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, vjp, vmap

from core.curvature.common import (
    Scores,
    activation_rows,
    budget_rows,
    chunks,
    count_classes,
    device_dtype,
    report,
    unflatten,
)
from core.curvature.factors import logit_columns, n_columns
from core.functional import hvp, split_params


def functional_sum(model, inputs, targets, kind, batch_size, seed, progress, memory_mb) -> Scores:
    """Σ_n Σ_k (J_nᵀ v_nk)² with vmap over samples of a vjp vmapped over the K columns."""
    device, dtype = device_dtype(model)
    params, rest = split_params(model)
    n_classes = count_classes(model, inputs, device, dtype)
    k = n_columns(kind, n_classes)
    n_params = sum(p.numel() for p in params.values())
    if batch_size is None:  # N×K×P per-sample-column gradients are materialized
        batch_size = budget_rows(memory_mb, 2 * k * n_params, dtype)
    generator = torch.Generator().manual_seed(seed)

    def sample_sq(x_n: Tensor, v_n: Tensor) -> Scores:
        def logits(p: Scores) -> Tensor:
            return functional_call(model, (p, rest), (x_n[None],))[0]

        _, pullback = vjp(logits, params)
        (per_column,) = vmap(pullback)(v_n)  # dict: K×shape
        return {n: g.square().sum(0) for n, g in per_column.items()}

    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    for start, x, y in chunks(inputs, targets, batch_size, device, dtype):
        with torch.no_grad():
            logits = functional_call(model, (params, rest), (x,))
        columns = logit_columns(logits, y, kind, generator).transpose(0, 1)  # N×K×C
        for n, s in vmap(sample_sq)(x, columns).items():
            sums[n] += s.sum(0)
        report(progress, start + len(x), len(inputs))
    return {n: s / len(inputs) for n, s in sums.items()}


def hvp_exact(model, inputs, targets, batch_size, progress, memory_mb) -> Scores:
    """diag ∇²L exactly: (e_iᵀ ∇²L e_i) for one-hot tangents e_i, vmapped in blocks of params."""
    device, dtype = device_dtype(model)
    params, _ = split_params(model)
    shapes = {n: p.shape for n, p in params.items()}
    sizes = [p.numel() for p in params.values()]
    n_params = sum(sizes)
    if batch_size is None:
        batch_size = activation_rows(model, inputs, 8, memory_mb)
    block = 256  # tangents per vmap call
    diag = torch.zeros(n_params, dtype=dtype, device=device)
    for start, x, y in chunks(inputs, targets, batch_size, device, dtype):
        product = hvp(model, x, y)  # v ↦ ∇²Σ_i ℓ(x_i, y_i) v on this chunk
        for first in range(0, n_params, block):  # blocks of one-hot tangents, vmapped
            idx = torch.arange(first, min(first + block, n_params), device=device)
            onehot = F.one_hot(idx, n_params).to(dtype)
            tangents = dict(zip(shapes, unflatten(onehot, shapes, sizes)))
            hv = torch.cat([v.flatten(1) for v in vmap(product)(tangents).values()], dim=1)
            diag[idx] += hv[torch.arange(len(idx), device=device), idx]
        report(progress, start + len(x), len(inputs))
    return dict(zip(shapes, unflatten(diag[None] / len(inputs), shapes, sizes, squeeze=True)))


def hutchinson(model, inputs, targets, probes, probe_batch, batch_size, seed, progress, memory_mb):
    """Per-probe estimates z ⊙ ∇²L z (data summed in chunks), then Welford mean and M2."""
    device, dtype = device_dtype(model)
    params, _ = split_params(model)
    if batch_size is None:
        batch_size = activation_rows(model, inputs, 8 * probe_batch, memory_mb)
    generator = torch.Generator().manual_seed(seed)
    mean = {n: torch.zeros_like(p) for n, p in params.items()}
    m2 = {n: torch.zeros_like(p) for n, p in params.items()}
    passes = math.ceil(probes / probe_batch)
    done = 0
    for block_start in range(0, probes, probe_batch):
        b = min(probe_batch, probes - block_start)
        z = {  # Rademacher ±1, drawn on the CPU so the seed gives the same probes everywhere
            n: (torch.randint(0, 2, (b, *p.shape), generator=generator) * 2 - 1).to(device, dtype)
            for n, p in params.items()
        }
        zhz = {n: torch.zeros_like(v) for n, v in z.items()}
        for _, x, y in chunks(inputs, targets, batch_size, device, dtype):
            hv = vmap(hvp(model, x, y))(z)
            for n in zhz:
                zhz[n] += z[n] * hv[n]
            done += len(x)
            report(progress, done, passes * len(inputs))
        seen = block_start  # Chan's parallel update of mean and M2 with this block's b probes
        for n, block in zhz.items():
            block = block / len(inputs)
            block_mean = block.mean(0)
            delta = block_mean - mean[n]
            mean[n] += delta * b / (seen + b)
            m2[n] += (block - block_mean).square().sum(0) + delta.square() * seen * b / (seen + b)
    return mean, m2
