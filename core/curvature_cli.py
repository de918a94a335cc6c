"""`python -m core curvature --config FILE --out PATH`: Hessian-diagonal scores for inspection.

Writes the scores to PATH (.safetensors, or .npz by suffix) and a JSON summary to PATH + ".json":
per tensor min / median / max and fraction of exact zeros, a log10 histogram of |scores|
(bin edges + counts, zeros counted apart), method, samples, seconds.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.curvature import ESTIMATORS, hessian_diagonal
from core.errors import ConfigError

HISTOGRAM_BINS = 40


def curvature_command(config: dict, out: str, *, model: nn.Module | None = None) -> dict:
    """Load data, train (unless `model` is given), score, write PATH and PATH.json; return summary.

    Config keys used: dataset, root, model, seed, train {epochs, lr, batch_size},
    curvature {method, batch_size, options}.
    """
    from core import data, models, training  # imported here: only the CLI needs them

    curv = dict(config.get("curvature") or {})
    method = curv.get("method", "exact")
    if method not in ESTIMATORS:
        raise ConfigError(
            "curvature.method", f"unknown method {method!r}; choose one of {sorted(ESTIMATORS)}"
        )
    suffix = Path(out).suffix
    if suffix not in (".safetensors", ".npz"):
        raise ConfigError("out", f"need a .safetensors or .npz path, got {out!r}")
    seed = config.get("seed", 0)
    ds = data.load(config.get("dataset", "digits"), root=config.get("root"))
    if model is None:
        model = models.build(config.get("model", "cnn"), ds, seed=seed)
        train = dict(config.get("train") or {})
        training.train(
            model, ds.x_train, ds.y_train, epochs=train.get("epochs", 30),
            lr=train.get("lr", 0.001), batch_size=train.get("batch_size", 64), seed=seed,
            device="cpu",
        )  # fmt: skip
    start = time.perf_counter()
    scores = hessian_diagonal(
        model, ds.x_train, ds.y_train, method, batch_size=curv.get("batch_size"), seed=seed,
        **dict(curv.get("options") or {}),
    )  # fmt: skip
    seconds = time.perf_counter() - start
    write_scores(scores, out)
    summary = summarize(scores)
    summary.update(method=method, samples=len(ds.x_train), seconds=seconds, scores_path=str(out))
    Path(str(out) + ".json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def write_scores(scores: dict[str, torch.Tensor], out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tensors = {n: t.detach().float().cpu().contiguous() for n, t in scores.items()}
    if str(out).endswith(".npz"):
        np.savez(out, **{n: t.numpy() for n, t in tensors.items()})
    else:
        from safetensors.torch import save_file

        save_file(tensors, out)


def summarize(scores: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Per-tensor statistics and one global log10 histogram of the non-zero |scores|."""
    tensors = []
    for name, t in scores.items():
        flat = t.detach().double().flatten()
        tensors.append(
            {
                "name": name, "numel": flat.numel(), "min": flat.min().item(),
                "median": flat.median().item(), "max": flat.max().item(),
                "zero_fraction": (flat == 0).double().mean().item(),
            }
        )  # fmt: skip
    magnitudes = torch.cat([t.detach().double().abs().flatten() for t in scores.values()])
    nonzero = magnitudes[magnitudes > 0]
    histogram: dict[str, Any] = {"log10_edges": [], "counts": [], "zeros": int((magnitudes == 0).sum())}
    if len(nonzero):
        logs = nonzero.log10()
        low, high = math.floor(logs.min().item()), math.ceil(logs.max().item())
        high = max(high, low + 1)  # a single decade still gets a bin
        counts = torch.histc(logs, HISTOGRAM_BINS, low, high)
        histogram["log10_edges"] = torch.linspace(low, high, HISTOGRAM_BINS + 1).tolist()
        histogram["counts"] = [int(c) for c in counts]
    return {"tensors": tensors, "histogram": histogram}
