"""Check the SAPS claims with paired statistics over seeds: every reading of the paper against
every baseline at the same budget and method.

    python benchmarks/saps_claims.py --jobs 2                      (the full grid, resumable)
    python benchmarks/saps_claims.py --quick --only digits-backdoor  (a smoke grid)
    python benchmarks/saps_claims.py --report-only                 (report from the stored cells)

Scenarios: digits backdoor (target = seed % 10), digits label flip, Fashion-MNIST backdoor (cnn on
a seeded 10,000-image train subset, target = seed % 10). SAPS readings: curvature on the full,
forget or corrected data × global or per-layer budget × largest or smallest; baselines random
(live), magnitude, gradient (SalUn), fisher (SSD) at the same budgets, plus last_layer and all.
One sweep per (scenario, seed, curvature data, method set); every cell is kept in a run store
(default runs/saps_claims, git-ignored), so an interrupted run resumes where it stopped, and
`--jobs N` runs N seeds at a time in separate processes (one thread each).
Writes <out>/saps_claims.json (every cell and every statistic), saps_claims.md (the report) and
saps_claims_readme.md (the table and reading README.md includes); <out> is benchmarks/results,
or runs/saps_claims_quick with --quick.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks import claims_report as cr  # noqa: E402
from benchmarks import claims_stats as cs  # noqa: E402
from core import config as config_mod  # noqa: E402
from core import selection  # noqa: E402
from core import sweep as sweep_api  # noqa: E402
from core.store import RunStore  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_STORE = ROOT / "runs" / "saps_claims"
DEFAULT_METHOD = "masked_finetune"
CURVATURE_DATA = ("full", "forget", "corrected")
SAPS_READINGS = [
    {"name": "saps", "largest": largest, "per_layer": per_layer}
    for largest in (True, False)
    for per_layer in (False, True)
]
BASELINES = [{"name": n} for n in cr.BASELINES]
FIXED = [{"name": "last_layer"}, {"name": "all"}]
# "grid" methods run on every reading; "extra" methods on the paper's reading (largest, global,
# full data), smallest global on the full data, the baselines and the fixed masks only.
# CPU seconds a digits cell (one thread): masked_finetune 0.25–0.35, first_order 0.17,
# warnecke_iterative 0.26–0.49, second_order ~1.9 (a solved CG system). Full grid: digits
# 228 cells a seed, ~2,400 CPU-s for both scenarios; Fashion-MNIST 34 cells a seed, ~3,000 CPU-s
# (training and the full-data curvature ~100 CPU-s a seed); `--jobs 2` halves the wall time.
SCENARIOS = {
    "digits-backdoor": {
        "measure": "backdoor_removal",
        "config": {"dataset": "digits", "scenario": {"kind": "backdoor", "size": 60}},
        "target_by_seed": True,
        "seeds": list(range(10)),
        "fractions": [0.005, 0.01, 0.02, 0.05, 0.1],
        "grid": ["masked_finetune", "first_order"],
        "extra": ["second_order", "warnecke_iterative"],
    },
    "digits-label-flip": {
        "measure": "restored_pct",
        "config": {"dataset": "digits", "scenario": {"kind": "label_flip", "fraction": 0.2}},
        "target_by_seed": False,
        "seeds": list(range(10)),
        "fractions": [0.005, 0.01, 0.02, 0.05, 0.1],
        "grid": ["masked_finetune", "first_order"],
        "extra": ["second_order", "warnecke_iterative"],
    },
    "fashion-backdoor": {
        "measure": "backdoor_removal",
        "config": {
            "dataset": "fashion-mnist",
            "train_size": 10000,
            "test_size": 2000,
            "scenario": {"kind": "backdoor", "size": 200},
            "train": {"epochs": 8, "batch_size": 128},
        },
        "target_by_seed": True,
        # 6 seeds: with 5 pairs no two-sided signed-rank p can fall below 0.05
        "seeds": list(range(6)),
        "fractions": [0.01, 0.05],
        # a Fashion-MNIST cell costs ~11 CPU-s with masked_finetune (metrics ~7 of them: the
        # relearning curve ~3) and ~24 with second_order: second order would add ~10 min here
        "grid": ["masked_finetune"],
        "extra": [],
    },
}
QUICK = {"seeds": 2, "fractions": [0.01, 0.05]}


def sweep_configs(name: str, seed: int, quick: bool = False) -> list[dict]:
    """The sweep configs of one scenario and seed (the full-data one first: it trains the models)."""
    sc = SCENARIOS[name]
    fractions = QUICK["fractions"] if quick else sc["fractions"]
    out = []
    for data in CURVATURE_DATA:
        plans = [(sc["grid"], list(SAPS_READINGS) + (BASELINES + FIXED if data == "full" else []))]
        if data == "full" and sc["extra"]:
            plans.append((sc["extra"], [SAPS_READINGS[0], SAPS_READINGS[2], *BASELINES, *FIXED]))
        for methods, strategies in plans:
            cfg = copy.deepcopy(sc["config"])
            if sc["target_by_seed"]:
                cfg["scenario"]["target"] = seed % 10
            cfg.update(
                model="cnn",
                device="cpu",
                seeds=[seed],
                fractions=fractions,
                methods=methods,
                strategies=copy.deepcopy(strategies),
                curvature={"method": "exact", "data": data},
                # each method at its registry defaults (masked_finetune 10 steps, Warnecke one-shot)
                unlearning={"method": methods[0]},
                metrics={"mia": True, "relearn": True},
            )
            out.append(cfg)
    return out


def seeds_of(name: str, quick: bool) -> list[int]:
    return SCENARIOS[name]["seeds"][: QUICK["seeds"]] if quick else SCENARIOS[name]["seeds"]


def cell_specs(cfg: dict) -> list[dict]:
    return sweep_api.sweep_cells(config_mod.normalize(cfg, sweep=True))


# ---------------------------------------------------------------------------------------------
# cells -> flat records


def describe(spec: dict) -> dict:
    """What a cell is, from its spec (never parsed back from a label)."""
    st = spec["strategy"]
    name = st["name"]
    if name == "saps":
        data = spec["curvature"]["data"]
        family = f"saps:{'largest' if st.get('largest', True) else 'smallest'}"
        family += f":{'per_layer' if st.get('per_layer') else 'global'}:{data}"
        label = f"{selection.strategy_label(st)}, {data} data"
    else:
        family, label = name, selection.strategy_label(st)
    frac = "fixed" if spec["fraction"] is None else f"{spec['fraction']:g}"
    return {
        "seed": spec["seed"],
        "id": f"{family}@{frac}/{spec['method']}",
        "family": family,
        "label": label,
        "strategy": name,
        "fraction": spec["fraction"],
        "method": spec["method"],
    }


def _ratio(num: object, den: object) -> float | None:
    return num / den if cs.finite(num) and cs.finite(den) and den else None


def flatten(spec: dict, row: dict) -> dict:
    """One flat record per cell: its description, the measures the report reads, its costs."""
    m = row.get("metrics") or {}
    log = row.get("log") or {}
    retrain = (row.get("seconds_reference") or {}).get("retrain")
    curve = m.get("relearn_curve") or {}
    parts = row.get("seconds_select_parts") or {}
    rec = describe(spec)
    rec.update({k: m.get(k) for k in cr.NUMERIC if k in m})
    rec.update(
        seconds=row.get("seconds"),
        seconds_select=row.get("seconds_select"),
        seconds_update=row.get("seconds_update"),
        retrain_ratio=row.get("retrain_ratio"),
        amortized_ratio=_ratio(row.get("seconds_amortized"), retrain),
        curvature_ratio=_ratio(parts.get("curvature"), retrain),
        n_selected=row.get("n_selected"),
        dead_selected=row.get("dead_selected"),
        relearn_curve=curve.get("value"),
        relearn_steps=curve.get("steps"),
        guard_failed=log.get("guard_failed"),
        converged=log.get("converged"),
        changed=log.get("changed"),
        unchanged=None if log.get("changed") is None else float(not log["changed"]),
        full_cost="seconds_select" in row,
    )
    return rec


def reference(row: dict) -> dict:
    """Per seed: θ* and the retrained model, their relearning success, the curvature's cost."""
    o, r = row.get("original") or {}, row.get("retrained") or {}
    secs = row.get("seconds_reference") or {}
    ok = all(cs.finite(v) for v in (o.get("relearn_success"), r.get("relearn_success")))
    gap = o["relearn_success"] - r["relearn_success"] if ok else None
    return {
        "test_acc_original": o.get("test_acc"),
        "test_acc_retrained": r.get("test_acc"),
        "asr_original": o.get("asr"),
        "asr_retrained": r.get("asr"),
        "relearn_original": o.get("relearn_success"),
        "relearn_retrained": r.get("relearn_success"),
        "relearn_gap_original": gap,
        "restored_n_test": (row.get("metrics") or {}).get("restored_n_test"),
        "seconds": secs,
        "curvature_ratio": _ratio(secs.get("curvature"), secs.get("retrain")),
    }


# ---------------------------------------------------------------------------------------------
# running


def run_job(name: str, seed: int, quick: bool, store_path: str) -> dict:
    """Every sweep of one scenario and seed, in this process (one thread). Returns its timing."""
    torch.set_num_threads(1)
    store = RunStore(store_path)
    start, failed = time.perf_counter(), []
    for cfg in sweep_configs(name, seed, quick):
        tag = f"[{name} seed {seed} {cfg['curvature']['data']} {'+'.join(cfg['methods'])}]"

        def progress(stage: str, fraction: float, message: str, tag: str = tag) -> None:
            if stage in ("sweep", "train", "done"):
                print(f"{tag} {100 * fraction:5.1f} % {message}", file=sys.stderr, flush=True)

        try:
            sweep_api.sweep(cfg, store=store, progress=progress)
        except Exception as e:  # noqa: BLE001 - the report counts the missing cells
            failed.append(f"{tag} {type(e).__name__}: {e}")
            print(f"{tag} FAILED {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    print(f"[{name} seed {seed}] done in {seconds:.0f} s, {len(failed)} sweep(s) failed", file=sys.stderr)
    return {"scenario": name, "seed": seed, "seconds": seconds, "failed": failed}


def collect(name: str, quick: bool, store: RunStore) -> tuple[list[dict], int, dict, list[dict]]:
    """The stored cells of a scenario as flat records, the expected count, per-seed references."""
    records, expected, refs, configs = [], 0, {}, []
    for seed in seeds_of(name, quick):
        for cfg in sweep_configs(name, seed, quick):
            configs.append(cfg)
            for spec in cell_specs(cfg):
                expected += 1
                row = store.find_done(sweep_api.cell_key(spec))
                if row is None or not row.get("result"):
                    continue
                records.append(flatten(spec, row["result"]))
                if cfg["curvature"]["data"] == "full":
                    refs.setdefault(seed, reference(row["result"]))
    return records, expected, refs, configs


def previous_run(out: Path) -> dict:
    """The run information of the report already in `out` (jobs, timing), if it has any."""
    try:
        return json.loads((out / "saps_claims.json").read_text()).get("info") or {}
    except (OSError, ValueError, AttributeError):
        return {}


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads_per_process": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------------------------
# report


def report(results: dict, info: dict) -> str:
    lines = [
        "# SAPS claims, checked with paired statistics",
        "",
        f"Generated by `benchmarks/saps_claims.py` on {info['date']}. Machine: {info['machine']['platform']}, "
        f"{info['machine']['cores']} CPU cores, torch {info['machine']['torch']}, one thread per process"
        + (f", {info['jobs']} process(es) at a time" if info.get("jobs") else "")
        + ". Seconds are wall-clock on shared cores: compare ratios to retraining, not absolutes."
        + run_line(info),
        "",
        "## How to read this",
        "",
        "- **Measures.** Backdoor removal = (ASR_θ* − ASR)/(ASR_θ* − ASR_retrained), 1 = as good as "
        "retraining. % restored (label flips) = (acc − acc_θ*)/(acc_retrained − acc_θ*) on the test set, "
        "shown with the number of test images behind the gap. Relearn gap = attack success after the "
        "relearning steps minus the retrained model's (0 = as robust as retraining). Full cost = "
        "selection (curvature, liveness, forget gradient, Fisher passes: whatever the mask needs, "
        "cached or not) + update, divided by the same seed's retraining time; *amortized* leaves out "
        "the parts one curvature shares across budgets.",
        f"- **Paired statistics.** Per seed, SAPS reading − baseline at the same budget and method; "
        f"mean difference with a {int(100 * cs.LEVEL)} % percentile bootstrap interval "
        f"({cs.RESAMPLES:,} resamples of the seeds, seeded) and a two-sided Wilcoxon signed-rank p. A "
        f"difference is called significant only when p < {cs.ALPHA:g} *and* the interval excludes 0; "
        "with fewer than 6 pairs no p below 0.05 exists. Many comparisons are made, so the counts also "
        "say how many survive a Benjamini–Hochberg false discovery rate of 5 %.",
        f"- **Best configuration.** Chosen on a seeded half of the seeds (selection) with mean test-"
        f"accuracy drop ≤ {cr.DROP_LIMIT:g}, its numbers reported on the other half (evaluation): no "
        "maximum over noisy means is reported as a result.",
        "",
        "## Reading (generated from the numbers below)",
        "",
    ]
    for name, an in results.items():
        lines += [f"- {s}" for s in cr.reading(name, an, DEFAULT_METHOD)] + [""]
    for name, an in results.items():
        first = json.dumps(info["configs"][name][:1])
        lines += [
            f"## {name}",
            "",
            f"Configs: `{first}` (first of {len(info['configs'][name])} sweeps; all in the JSON).",
            "",
        ]
        lines += cr.reference_table(an) + [""]
        lines += ["### The paper's reading against each baseline", ""]
        for method in cr.method_order({c["method"] for c in an["configs"]}, DEFAULT_METHOD):
            for measure in (an["main"], "relearn_gap"):
                t = cr.paper_table(an, method, measure)
                lines += (t + [""]) if t else []
        lines += ["### Every SAPS reading against each baseline (counts over budgets and methods)", ""]
        for measure in (an["main"], "relearn_gap", "retrain_ratio"):
            lines += cr.counts_table(an, measure) + [""]
        for method in cr.method_order({c["method"] for c in an["configs"]}, DEFAULT_METHOD):
            lines += [f"<details><summary>All configurations, {method}</summary>", ""]
            lines += cr.config_table(an, method) + ["", "</details>", ""]
    return "\n".join(lines)


def run_line(info: dict) -> str:
    """' The run took … (per scenario: …)' from the stored timing, or nothing."""
    if not info.get("wall_seconds"):
        return ""
    per = {}
    for t in info.get("timing") or []:
        per[t["scenario"]] = per.get(t["scenario"], 0.0) + t["seconds"]
    parts = ", ".join(f"{n} {s / 60:.0f} min" for n, s in per.items())
    return f" The last invocation took {info['wall_seconds'] / 60:.0f} min of wall-clock time (summed job time per scenario: {parts}; cells already stored cost nothing)."


def readme_snippet(results: dict, info: dict) -> str:
    lines = [
        f"Generated by `benchmarks/saps_claims.py` on {info['date']} ({info['machine']['cores']} CPU "
        f"cores, torch {info['machine']['torch']}); full report: `benchmarks/results/saps_claims.md`.",
        "",
    ]
    for name, an in results.items():
        lines += [f"**{name}**", ""] + cr.paper_table(an, DEFAULT_METHOD) + [""]
        lines += cr.paper_table(an, DEFAULT_METHOD, "relearn_gap") + [""]
        lines += [f"- {s}" for s in cr.reading(name, an, DEFAULT_METHOD)] + [""]
    return "\n".join(lines)


def compact(obj: object) -> object:
    """JSON-able copy: floats to 5 significant digits, None entries of dicts left out."""
    if isinstance(obj, float):
        return float(f"{obj:.5g}")
    if isinstance(obj, dict):
        return {k: compact(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [compact(v) for v in obj]
    return obj


LABEL_KEYS = ("label", "family", "strategy", "a", "b", "seeds")


def json_text(results: dict, info: dict, records: dict) -> str:
    """The JSON file: one line per cell, per configuration and per comparison (labels once, in
    `labels`), so it stays a few MB and diffs line by line."""
    parts = [f'{{"info": {json.dumps(compact(info), default=str)},', '"scenarios": {']
    for i, (name, an) in enumerate(results.items()):
        labels = {r["family"]: r["label"] for r in records[name]}
        cells = [{k: v for k, v in r.items() if k not in LABEL_KEYS} for r in records[name]]
        head = {k: v for k, v in an.items() if k not in ("configs", "paired", "cells")}
        parts.append(f"{json.dumps(name)}: {{")
        parts.append(f'"summary": {json.dumps(compact(head), default=str)},')
        parts.append(f'"labels": {json.dumps(labels, ensure_ascii=False)},')
        for key, rows in (("configs", an["configs"]), ("paired", an["paired"]), ("cells", cells)):
            rows = [{k: v for k, v in r.items() if k not in LABEL_KEYS[2:]} for r in rows]
            body = ",\n".join(json.dumps(compact(r), ensure_ascii=False) for r in rows)
            parts.append(f'"{key}": [\n{body}\n]' + ("," if key != "cells" else ""))
        parts.append("}" + ("," if i < len(results) - 1 else ""))
    parts.append("}}")
    return "\n".join(parts) + "\n"


def write(results: dict, info: dict, records: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "saps_claims.json").write_text(json_text(results, info, records))
    (out / "saps_claims.md").write_text(report(results, info))
    (out / "saps_claims_readme.md").write_text(readme_snippet(results, info))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help=f"{QUICK['seeds']} seeds, fractions {QUICK['fractions']}"
    )
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    p.add_argument("--jobs", type=int, default=1, help="seeds run at a time (processes, one thread each)")
    p.add_argument("--store", default=str(DEFAULT_STORE))
    p.add_argument("--out", default=None, help="report folder (default benchmarks/results, quick: runs/…)")
    p.add_argument("--report-only", action="store_true", help="write the report from the stored cells only")
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    out = Path(args.out) if args.out else (ROOT / "runs" / "saps_claims_quick" if args.quick else RESULTS)
    timing, started, info_run = [], time.perf_counter(), {}
    if not args.report_only:
        jobs = [(n, s) for n in names for s in seeds_of(n, args.quick)]
        if args.jobs <= 1:
            timing = [run_job(n, s, args.quick, args.store) for n, s in jobs]
        else:
            with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
                futures = [pool.submit(run_job, n, s, args.quick, args.store) for n, s in jobs]
                timing = [f.result() for f in as_completed(futures)]
    store = RunStore(args.store)
    results, records, configs = {}, {}, {}
    for name in names:
        recs, expected, refs, cfgs = collect(name, args.quick, store)
        results[name] = cr.analyze(recs, main=SCENARIOS[name]["measure"], expected=expected, references=refs)
        records[name], configs[name] = recs, cfgs
        print(f"{name}: {len(recs)} of {expected} cells", file=sys.stderr)
    if not any(records.values()):
        print(f"no stored cells in {args.store}: nothing written to {out}", file=sys.stderr)
        return 1
    if args.report_only:  # keep what the run that computed the cells measured
        info_run = previous_run(out)
    info = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "jobs": info_run.get("jobs") if args.report_only else args.jobs,
        "quick": args.quick,
        "timing": info_run.get("timing", []) if args.report_only else timing,
        "wall_seconds": info_run.get("wall_seconds") if args.report_only else time.perf_counter() - started,
        "configs": configs,
    }
    write(results, info, records, out)
    print(f"wrote {out / 'saps_claims.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
