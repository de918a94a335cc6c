"""Check the SAPS claim honestly: masked unlearning by strategy × budget × method, over seeds.

    python benchmarks/saps_claims.py [--quick] [--only digits-backdoor,...] [--store DIR]

    python benchmarks/saps_claims.py --report-only   (tables from the cells stored so far)

Scenarios: digits backdoor, digits label flip, Fashion-MNIST backdoor (cnn on a 10,000-image
train subset, 2,000 test images and 8 epochs so it fits on a laptop CPU). Strategies: saps
(largest and smallest), random, magnitude, gradient, last_layer, all; fractions 0.5 %–100 %;
methods: the default iterative (10 masked steps) and Warnecke's one-shot first_order and
second_order (steps 1, each with its own step-size search). Every cell is stored in a run
store (default benchmarks/results/store, git-ignored), so an interrupted run resumes.
Writes benchmarks/results/saps_claims.{json,md} (+ saps_claims.html with plotly if installed).
Seconds are wall-clock on a shared CPU: compare the ratio to the retraining time, not absolutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core import config as config_mod  # noqa: E402
from core import experiment  # noqa: E402
from core.store import RunStore  # noqa: E402

torch.set_num_threads(1)
HERE = Path(__file__).resolve().parent / "results"
STRATEGIES = [{"name": "saps", "largest": True}, {"name": "saps", "largest": False}, {"name": "random"},
              {"name": "magnitude"}, {"name": "gradient"}, {"name": "last_layer"}, {"name": "all"}]  # fmt: skip
FRACTIONS = [0.005, 0.01, 0.02, 0.05, 0.1, 1.0]
METHODS = ["iterative", "first_order", "second_order"]
# the default method takes its multi-step setting; Warnecke's first/second order are one-shot
METHOD_HPARAMS = {"iterative": {"steps": 10, "lr": "auto"}, "first_order": {"steps": 1, "lr": "auto"},
                  "second_order": {"steps": 1, "lr": "auto"}}  # fmt: skip
SCENARIOS = {
    "digits-backdoor": {"dataset": "digits", "scenario": {"kind": "backdoor", "size": 60, "target": 0}},
    "digits-label-flip": {"dataset": "digits", "scenario": {"kind": "label_flip", "fraction": 0.2}},
    "fashion-backdoor": {"dataset": "fashion-mnist", "train_size": 10000, "test_size": 2000,
                         "scenario": {"kind": "backdoor", "size": 200, "target": 0},
                         "train": {"epochs": 8, "batch_size": 128}},
}  # fmt: skip


def sweep_configs(name: str, quick: bool) -> list[dict]:
    """One sweep config per group of methods sharing hyper-parameters (see METHOD_HPARAMS)."""
    groups: dict[str, list[str]] = {}
    for m in METHODS:
        groups.setdefault(json.dumps(METHOD_HPARAMS[m], sort_keys=True), []).append(m)
    out = []
    for hp, methods in groups.items():
        cfg = {"model": "cnn", "device": "cpu", "strategies": STRATEGIES, "curvature": {"method": "exact"},
               "unlearning": json.loads(hp), "metrics": {"mia": True, "relearn": True},
               "seeds": [0, 1] if quick else [0, 1, 2, 3, 4],
               "fractions": [0.01, 0.05, 1.0] if quick else FRACTIONS, "methods": methods}  # fmt: skip
        cfg.update(SCENARIOS[name])
        out.append(cfg)
    return out


def stored_cells(cfg: dict, store: RunStore) -> list[dict]:
    """The cells of a sweep config already in the store (nothing is computed)."""
    norm = config_mod.normalize(cfg, sweep=True)
    found = [store.find_done(experiment.cell_key(c)) for c in experiment.sweep_cells(norm)]
    return [{**row["result"], "cached": True} for row in found if row is not None and row.get("result")]


def best_rows(summary: list[dict], kind: str) -> list[dict]:
    """Masked rows (fraction < 1, not 'all'), best first by removal (backdoor) or % restored."""
    key = "backdoor_removal" if kind == "backdoor" else "restored_pct"
    rows = [
        r
        for r in summary
        if r["strategy"] != "all" and (r["fraction"] or 0) < 1 and r["mean"].get(key) is not None
    ]
    return sorted(rows, key=lambda r: -r["mean"][key])


def strategy_table(summary: list[dict], method: str, metric: str) -> list[str]:
    """Markdown: rows strategy, columns fraction, cells mean ± std of `metric` for `method`."""
    rows = [r for r in summary if r["method"] == method]
    fracs = sorted({r["fraction"] for r in rows if r["fraction"] is not None})
    names = []
    for r in rows:
        label = r["strategy"] + ("" if r["largest"] else " (smallest)")
        if label not in names:
            names.append(label)
    out = [
        f"| {method}: {metric} | " + " | ".join(f"{f:g}" for f in fracs) + " | fixed |",
        "|---" * (len(fracs) + 2) + "|",
    ]
    for label in names:
        cells = []
        for f in fracs + [None]:
            hit = [r for r in rows if (r["strategy"] + ("" if r["largest"] else " (smallest)")) == label
                   and r["fraction"] == f]  # fmt: skip
            m = hit[0]["mean"].get(metric) if hit else None
            s = hit[0]["std"].get(metric) if hit else None
            cells.append("" if m is None else f"{m:.2f} ± {s:.2f}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def _label(r: dict) -> str:
    return r["strategy"] + ("" if r["largest"] else " (smallest)")


def _fmt(m: dict, s: dict, k: str, digits: int = 3) -> str:
    return "-" if m.get(k) is None else f"{m[k]:.{digits}f} ± {(s.get(k) or 0):.{digits}f}"


def best_line(summary: list[dict], kind: str, max_ratio: float) -> str:
    """The best masked configuration with mean test-accuracy drop ≤ 0.02 and ratio ≤ max_ratio."""
    metric = "backdoor_removal" if kind == "backdoor" else "restored_pct"
    ok = [b for b in best_rows(summary, kind) if (b["mean"].get("test_acc_drop") or 0) <= 0.02
          and (b["mean"].get("retrain_ratio") or 9) <= max_ratio]  # fmt: skip
    if not ok:
        return f"none with test-acc drop ≤ 0.02 in ≤ {100 * max_ratio:g} % of the retraining time"
    b = ok[0]
    m, s = b["mean"], b["std"]
    val = f"{100 * m[metric]:.0f} ± {100 * s[metric]:.0f} % removal" if kind == "backdoor" else \
        f"{m[metric]:.0f} ± {s[metric]:.0f} % restored"  # fmt: skip
    return (
        f"**{_label(b)} @ {100 * b['fraction']:g} %, {b['method']}**: {val}, test-acc drop "
        f"{m['test_acc_drop']:+.3f} ± {s['test_acc_drop']:.3f}, {100 * m['retrain_ratio']:.1f} ± "
        f"{100 * s['retrain_ratio']:.1f} % of the retraining time (n = {b['n']})"
    )


def versus(summary: list[dict], method: str, metric: str) -> list[str]:
    """Per fraction < 1: saps largest and smallest against random and the others (means)."""
    rows = [r for r in summary if r["method"] == method and r["fraction"] is not None and r["fraction"] < 1]
    fracs = sorted({r["fraction"] for r in rows})
    at = {(_label(r), r["fraction"]): r["mean"].get(metric) for r in rows}
    out, lose_l, lose_s, winners = [], [], [], []
    for f in fracs:
        rnd = at.get(("random", f))
        sl, ss = at.get(("saps", f)), at.get(("saps (smallest)", f))
        if None not in (sl, rnd) and sl <= rnd:
            lose_l.append(f"{100 * f:g} %")
        if None not in (ss, rnd) and ss <= rnd:
            lose_s.append(f"{100 * f:g} %")
        cands = {k[0]: v for k, v in at.items() if k[1] == f and v is not None}
        if cands:
            top = max(cands, key=cands.get)
            winners.append(f"{100 * f:g} %: {top} ({cands[top]:.2f})")
    n = len(fracs)
    out.append(f"- {method}: SAPS (largest) ≤ random at {len(lose_l)}/{n} budgets"
               + (f" ({', '.join(lose_l)})" if lose_l else "") + f"; SAPS (smallest) ≤ random at {len(lose_s)}/{n}"
               + (f" ({', '.join(lose_s)})" if lose_s else "") + ". Best per budget: " + "; ".join(winners) + ".")  # fmt: skip
    return out


NOTES = """### Reading (by hand, from the run of 2026-11-27)

- Digits backdoor, the default iterative method: the best masked configuration is magnitude at
  5 % (≈ 91 % removal, test accuracy unchanged, ≈ 5 % of the retraining time), which meets the
  issue's goal (≥ 90 % in ≤ 5 %) on the mean; per-seed ratios vary by ±2 points with the load.
  SAPS (largest) reaches ≈ 0.5–0.6 removal at 1–2 % but is unstable across seeds (one seed stays
  near 0: its sharpest coordinates make the validation guard stop early); magnitude and gradient
  masks are ahead of it at every budget, random is behind it below 5 %. SAPS (smallest) only
  works from 5–10 % on. One-shot first/second order barely touch a backdoor (≤ 0.25).
- Digits label flip: masked second order with SAPS (largest) restores the most accuracy
  (≈ 40–80 %), but in 10–25 % of the retraining time (forget set of 270 images); SAPS
  (smallest) restores almost nothing there. The iterative method is noisy (± 30 points).
- Fashion-MNIST backdoor (partial, see cell counts): the digits-tuned default does not
  transfer. Its step-size guard restarts with smaller steps again and again (validation
  checks on 1,960 images), so it costs 20–95 % of the retraining time and removes ≤ 0.4 of the
  backdoor; second order with SAPS (smallest) is the best masked method seen there.
- `relearn_asr` here is from the attack as it was when these cells ran (10 Adam steps on 10
  poisoned samples only, before commit 4a8c081 mixed in 90 clean retain samples): under it every
  model, the retrained one included, returns to ≈ 1.0, so that column does not separate methods.
- Claim check: SAPS does not beat random everywhere (lists above); where it does, magnitude
  or gradient masks usually do as well or better.
"""


def report(results: dict) -> str:
    done = sum(len(r["cells"]) for r in results.values())
    expected = sum(r.get("expected") or len(r["cells"]) for r in results.values())
    lines = ["# SAPS claims, checked", "",
             f"Generated by `benchmarks/saps_claims.py` on {datetime.date.today().isoformat()}, "
             f"machine: {os.cpu_count()} CPU cores shared with other work, no GPU ({platform.machine()}, "
             f"torch {torch.__version__}, 1 thread). Cells completed: {done} of {expected}.", "",
             "Mean ± std over seeds. `backdoor_removal` = "
             "(asr_original − asr)/(asr_original − asr_retrained); `restored_pct` = Warnecke's % restored "
             "(test accuracy); `retrain_ratio` = seconds of selection + update (step-size search included, "
             "curvature excluded) / seconds of retraining the same seed's reference in the same run. "
             "Wall-clock timings on 2 shared CPU cores: ratios are noisy (other processes ran beside).", "",
             "Setup: cnn; digits (1,347 train / 450 test images, 30 epochs) with a 60-image checkerboard "
             "backdoor (target 0) or 20 % flipped labels; Fashion-MNIST on a seeded subset of 10,000 train "
             "and 2,000 test images (8 epochs, batch 128) with a 200-image backdoor. Training lr 0.003 "
             "(the project default). Strategies saps (largest, smallest non-zero), random, magnitude, "
             "gradient (SalUn) at 0.5, 1, 2, 5, 10, 100 % of the parameters, last_layer and all; methods "
             "iterative (the default: 10 masked Adam steps, lr auto on a 20 % split of D_r), first_order "
             "and second_order (Warnecke's one-shot steps, step size searched on the same split). "
             "MIA and the relearning attack on every cell.", "",
             "## Headline", ""]  # fmt: skip
    for name, res in results.items():
        kind = "backdoor" if "backdoor" in name else "label_flip"
        metric = "backdoor_removal" if kind == "backdoor" else "restored_pct"
        seeds = sorted({c["seed"] for c in res["cells"]})
        lines += [f"### {name} ({len(res['cells'])} of {res.get('expected', '?')} cells, seeds {seeds})", "",
                  f"- best masked, ≤ 10 % of retraining: {best_line(res['summary'], kind, 0.10)}",
                  f"- best masked, ≤ 5 % of retraining: {best_line(res['summary'], kind, 0.05)}"]  # fmt: skip
        for method in METHODS:
            if any(r["method"] == method for r in res["summary"]):
                lines += versus(res["summary"], method, metric)
        lines.append("")
    if set(results) == set(SCENARIOS):
        lines += [NOTES]
    for name, res in results.items():
        kind = "backdoor" if "backdoor" in name else "label_flip"
        metric = "backdoor_removal" if kind == "backdoor" else "restored_pct"
        cells = res["cells"]
        seeds = sorted({c["seed"] for c in cells})
        lines += [
            f"## {name}",
            "",
            f"{len(cells)} cells, seeds {seeds}. Configs: `{json.dumps(res['config_given'])}`",
            "",
        ]
        per_seed = {c["seed"]: (c["original"], c["retrained"]) for c in cells}
        for seed, (o, r) in sorted(per_seed.items()):
            asr = "" if o.get("asr") is None else f", asr {o['asr']:.3f} → retrained {r['asr']:.3f}"
            lines.append(
                f"- seed {seed}: original test_acc {o['test_acc']:.3f}, retrained {r['test_acc']:.3f}{asr}"
            )
        lines.append("")
        best = best_rows(res["summary"], kind)
        ok = [
            b
            for b in best
            if (b["mean"].get("test_acc_drop") or 0) <= 0.02 and (b["mean"].get("retrain_ratio") or 9) <= 0.10
        ]
        lines += ["Best masked configurations (fraction < 1) with mean test-accuracy drop ≤ 0.02 and ≤ 10 % of the retraining time:", "",
                  "| strategy | fraction | method | n | " + metric + " | test_acc drop | retrain_ratio | relearn_asr | mia_auc |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for b in ok[:8]:
            m, s = b["mean"], b["std"]
            frac = "-" if b["fraction"] is None else f"{b['fraction']:g}"
            fmt = lambda k, m=m, s=s: "-" if m.get(k) is None else f"{m[k]:.3f} ± {s[k]:.3f}"  # noqa: E731
            lines.append(f"| {b['strategy']}{'' if b['largest'] else ' (smallest)'} | {frac} | {b['method']} "
                         f"| {b['n']} | {fmt(metric)} | {fmt('test_acc_drop')} | {fmt('retrain_ratio')} "
                         f"| {fmt('relearn_asr')} | {fmt('mia_auc')} |")  # fmt: skip
        if not ok:
            lines.append("| (none met both limits) |||||||||")
        lines.append("")
        for method in METHODS:
            lines += strategy_table(res["summary"], method, metric) + [""]
        lines += strategy_table(res["summary"], "iterative", "test_acc_drop") + [""]
        lines += strategy_table(res["summary"], "iterative", "retrain_ratio") + [""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        return
    fig = make_subplots(rows=1, cols=len(results), subplot_titles=list(results))
    for j, (name, res) in enumerate(results.items(), start=1):
        metric = "backdoor_removal" if "backdoor" in name else "restored_pct"
        for label in ("saps", "saps (smallest)", "random", "magnitude", "gradient"):
            rows = sorted([r for r in res["summary"] if r["method"] == "iterative" and r["fraction"] is not None
                           and (r["strategy"] + ("" if r["largest"] else " (smallest)")) == label],
                          key=lambda r: r["fraction"])  # fmt: skip
            if rows:
                fig.add_trace(go.Scatter(x=[r["fraction"] for r in rows], y=[r["mean"][metric] for r in rows],
                                         error_y={"array": [r["std"][metric] or 0 for r in rows]}, name=label,
                                         legendgroup=label, showlegend=j == 1), row=1, col=j)  # fmt: skip
        fig.update_xaxes(type="log", title_text="fraction of parameters", row=1, col=j)
    fig.update_layout(
        title="iterative masked unlearning: removal / % restored vs budget (mean ± std over seeds)"
    )
    fig.write_html(path, include_plotlyjs="cdn")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 seeds, fractions 1 %, 5 %, 100 %")
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    p.add_argument("--store", default=str(HERE / "store"))
    p.add_argument("--report-only", action="store_true", help="write the report from stored cells only")
    args = p.parse_args(argv)
    store = RunStore(args.store)
    results = {}
    out_json = HERE / "saps_claims.json"
    for name in args.only.split(","):
        cells, expected, cfgs = [], 0, sweep_configs(name, args.quick)
        print(f"== {name}", file=sys.stderr, flush=True)

        def progress(stage: str, fraction: float, message: str) -> None:
            print(f"  [{100 * fraction:5.1f}%] {stage}: {message}", file=sys.stderr, flush=True)

        for cfg in cfgs:
            expected += len(experiment.sweep_cells(config_mod.normalize(cfg, sweep=True)))
            if args.report_only:
                cells += stored_cells(cfg, store)
            else:
                cells += experiment.sweep(cfg, store=store, progress=progress)["cells"]
        res = {
            "config_given": cfgs,
            "cells": cells,
            "summary": experiment.summarize(cells),
            "expected": expected,
        }
        results[name] = res
        print(experiment.format_summary(res), flush=True)
        slim = {k: {"config": v["config_given"], "summary": v["summary"], "expected_cells": v["expected"],
                    "cells": [{kk: c[kk] for kk in c if kk not in ("original", "retrained")} | {"original": c["original"], "retrained": c["retrained"]} for c in v["cells"]]}
                for k, v in results.items()}  # fmt: skip
        out_json.write_text(json.dumps(slim, indent=1, default=str))
        (HERE / "saps_claims.md").write_text(report(results))
        plot(results, HERE / "saps_claims.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
