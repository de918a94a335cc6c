"""Benchmark: exact Hessian diagonal vs one backward pass, BackPACK and Hutchinson.

    python benchmarks/hessian_diagonal.py [--device cuda] [--reps 3] [--out PATH]

Part 1 (one model, one batch): cnn on 28×28×1 random data, batch 512. Median seconds of
`--reps` runs for: one backward pass, core `exact`, BackPACK DiagHessian and DiagGGNExact (on an
nn.Sequential sharing the cnn's weights, since BackPACK needs module activations), core
`hutchinson` with 10 probes, core `ggn_mc` with 1 and 5 sampled columns (seconds, relative
error against `exact` for one draw and for the mean of 10 draws). Also the max relative
difference between core and BackPACK.
Part 2: core `exact` on resnet18 at 32×32×3, batch 128 and 256 (same auto chunk size), each in a
fresh subprocess: seconds and peak memory (VmHWM on Linux CPU, max_memory_allocated on CUDA),
to show that peak memory does not grow with the dataset size; and, in this process, `exact`
on resnet18 with `--resnet-batch` samples (16) against one backward pass of the summed loss.
Prints and saves JSON (default benchmarks/results/hessian_diagonal.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import curvature, models  # noqa: E402


def seconds(fn, device: str, reps: int) -> float:
    """Median wall-clock seconds of `reps` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def as_sequential(cnn: nn.Module) -> nn.Sequential:
    """The project's CNN with module activations, sharing weights (BackPACK needs modules)."""
    return nn.Sequential(
        cnn.conv1,
        nn.ReLU(),
        nn.MaxPool2d(2),
        cnn.conv2,
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        cnn.fc1,
        nn.ReLU(),
        cnn.fc2,
    )


def cnn_part(device: str, reps: int) -> dict:
    torch.manual_seed(0)
    ds = types.SimpleNamespace(shape=(1, 28, 28), classes=list(range(10)))
    model = models.build("cnn", ds, seed=0).to(device).eval()
    x = torch.randn(512, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (512,), device=device)

    def backward() -> None:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()

    result = {"model": "cnn", "input": [1, 28, 28], "batch": 512, "parameters": 105_866}
    result["backward_s"] = seconds(backward, device, reps)
    result["exact_s"] = seconds(lambda: curvature.hessian_diagonal(model, x, y, "exact"), device, reps)
    result["hutchinson_10_probes_s"] = seconds(
        lambda: curvature.hessian_diagonal(model, x, y, "hutchinson", probes=10), device, reps
    )
    exact = curvature.hessian_diagonal(model, x, y, "exact")
    result["ggn_mc"] = [ggn_mc_row(model, x, y, exact, k, device, reps) for k in (1, 5)]
    try:
        import backpack
        from backpack.extensions import DiagGGNExact, DiagHessian
    except ImportError:
        result["backpack"] = "not installed"
    else:
        seq = backpack.extend(as_sequential(model))
        loss_fn = backpack.extend(nn.CrossEntropyLoss())

        def run(extension) -> None:
            seq.zero_grad()
            with backpack.backpack(extension()):
                loss_fn(seq(x), y).backward()

        result["backpack_diag_hessian_s"] = seconds(lambda: run(DiagHessian), device, reps)
        result["backpack_diag_ggn_exact_s"] = seconds(lambda: run(DiagGGNExact), device, reps)
        ours = curvature.hessian_diagonal(model, x, y, "exact")
        run(DiagHessian)
        result["max_rel_diff_vs_backpack"] = max(
            ((ours[n] - p.diag_h.cpu()).norm() / p.diag_h.cpu().norm()).item()
            for n, p in zip(ours, seq.parameters())
        )
        result["ratio_exact_vs_backpack_diag_hessian"] = result["exact_s"] / result["backpack_diag_hessian_s"]
        result["ratio_exact_vs_backpack_diag_ggn_exact"] = (
            result["exact_s"] / result["backpack_diag_ggn_exact_s"]
        )
    result["ratio_exact_vs_backward"] = result["exact_s"] / result["backward_s"]
    return result


def ggn_mc_row(model, x, y, exact: dict, k: int, device: str, reps: int) -> dict:
    """Seconds of `ggn_mc` with k columns, its relative error ‖d̂ − d‖/‖d‖ against `exact` (seed 0)
    and the error of the mean of 10 seeded draws (unbiased: it shrinks roughly as 1/√draws)."""

    def draw(seed: int) -> dict:
        return curvature.hessian_diagonal(model, x, y, "ggn_mc", mc_samples=k, seed=seed)

    def rel(d: dict) -> float:
        num = sum((d[n] - exact[n]).square().sum() for n in exact)
        return (num / sum(v.square().sum() for v in exact.values())).sqrt().item()

    draws = [draw(seed) for seed in range(10)]
    mean = {n: sum(d[n] for d in draws) / len(draws) for n in exact}
    return {
        "mc_samples": k,
        "seconds": seconds(lambda: draw(0), device, reps),
        "rel_error": rel(draws[0]),
        "rel_error_mean_of_10": rel(mean),
    }


def resnet_vs_backward(device: str, n: int, reps: int) -> dict:
    """resnet18 32×32×3, n samples: `exact` against one backward pass of the summed loss."""
    torch.manual_seed(0)
    ds = types.SimpleNamespace(shape=(3, 32, 32), classes=list(range(10)))
    model = models.build("resnet18", ds, seed=0).to(device).eval()
    x = torch.randn(n, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (n,), device=device)

    def backward() -> None:
        model.zero_grad()
        F.cross_entropy(model(x), y, reduction="sum").backward()

    out = {"samples": n, "backward_s": seconds(backward, device, reps)}
    out["exact_s"] = seconds(lambda: curvature.hessian_diagonal(model, x, y, "exact"), device, reps)
    out["ratio_exact_vs_backward"] = out["exact_s"] / out["backward_s"]
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM (Linux; unlike ru_maxrss, not inherited from
    the parent across fork + exec), else ru_maxrss."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line = next(ln for ln in status.splitlines() if ln.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def resnet_worker(device: str, n: int) -> dict:
    """Run in a fresh process: exact on resnet18 32×32×3 with n samples; seconds and peak memory."""
    torch.manual_seed(0)
    ds = types.SimpleNamespace(shape=(3, 32, 32), classes=list(range(10)))
    model = models.build("resnet18", ds, seed=0).to(device).eval()
    x, y = torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,))
    baseline_mb = peak_rss_mb()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    chunks = []
    start = time.perf_counter()
    curvature.hessian_diagonal(model, x, y, "exact", progress=lambda d, t: chunks.append(d))
    if device == "cuda":
        torch.cuda.synchronize()
    out = {
        "samples": n,
        "seconds": time.perf_counter() - start,
        "chunks": len(chunks),
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": baseline_mb,
    }
    if device == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def resnet_part(device: str, sizes: list[int]) -> dict:
    runs = []
    for n in sizes:  # fresh process each: the peak is a lifetime maximum
        cmd = [sys.executable, __file__, "--worker", str(n), "--device", device]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(line.strip().splitlines()[-1]))
        print(f"  resnet18 n={n}: {runs[-1]}", file=sys.stderr)
    return {"model": "resnet18", "input": [3, 32, 32], "parameters": 11_173_962, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--resnet-sizes", default="128,256")
    parser.add_argument("--resnet-batch", type=int, default=16)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results/hessian_diagonal.json"))
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(resnet_worker(args.device, args.worker)))
        return
    report = {
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "reps": args.reps,
        "cnn": cnn_part(args.device, args.reps),
    }
    print(json.dumps(report["cnn"], indent=1), file=sys.stderr)
    sizes = [int(s) for s in args.resnet_sizes.split(",") if s]
    report["resnet18_exact"] = resnet_part(args.device, sizes) if sizes else None
    report["resnet18_vs_backward"] = resnet_vs_backward(args.device, args.resnet_batch, args.reps)
    print(json.dumps(report["resnet18_vs_backward"], indent=1), file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
