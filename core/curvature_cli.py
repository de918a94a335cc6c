"""`python -m core curvature --config FILE --out PATH`: Hessian-diagonal scores for inspection.

Writes the scores to PATH (.safetensors, or .npz by suffix) and a JSON summary to PATH + ".json":
per tensor min / median / max and fraction of exact zeros, a log10 histogram of |scores|
(bin edges + counts, zeros counted apart), method, samples, seconds.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import ConfigError

HISTOGRAM_BINS = 40


def curvature_command(config: dict, out: str, *, store: Any = None) -> dict:
    """diag H at θ* for a run config; write PATH and PATH.json; return the summary.

    θ* is the run's original model (trained on D_r ∪ D_f of the config's scenario, or loaded
    from the store), scored on the config's `curvature.data` with `curvature.method` — the
    very scores `python -m core run` selects with.
    """
    from core import config as config_mod  # imported here: only the CLI needs them
    from core import experiment

    suffix = Path(out).suffix
    if suffix not in (".safetensors", ".npz"):
        raise ConfigError("--out", f"need a .safetensors or .npz path, got {out!r}")
    _check_writable(Path(out))
    cfg = config_mod.normalize(config)
    prepared = experiment.prepare(cfg)
    experiment.check(cfg, prepared)
    model, _ = experiment.train_model(cfg, prepared, "original", store=store)
    scores, seconds, cached = experiment.curvature_scores(cfg, prepared, model, store=store)
    write_scores(scores, out)
    summary = summarize(scores)
    cv = cfg["curvature"]
    summary.update(method=cv["method"], data=cv["data"], seconds=seconds, cached=cached, scores_path=str(out))
    Path(str(out) + ".json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _check_writable(out: Path) -> None:
    """Refuse, before anything is trained, an --out that cannot be written: a folder, or a path
    under a file (the nearest existing ancestor must be a writable folder)."""
    if out.is_dir():
        raise ConfigError("--out", f"{out} is a folder; give a file path ending in .safetensors or .npz")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError("--out", f"cannot write {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise ConfigError("--out", f"cannot write {out}: {parent} is not writable")


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
        stats = {"min": flat.min().item(), "median": flat.median().item(), "max": flat.max().item()}
        zero_fraction = (flat == 0).double().mean().item()
        tensors.append({"name": name, "numel": flat.numel(), **stats, "zero_fraction": zero_fraction})
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
