"""Command line: `python -m core run|sweep|forget-quality|curvature|runs` and the registry
lists `strategies|methods|scenarios|estimators|models|datasets`.

`--json` prints exactly one JSON document on stdout; progress goes to stderr. Bad input
(config fields, arguments, missing data files, unreadable checkpoints) prints one line
naming the problem and exits with code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import sys
from typing import Any

from core.errors import ConfigError, SapsError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors also exit 2, with our one-line style
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _clean(obj: Any) -> Any:
    """JSON-safe: non-finite floats become null (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def emit(obj: Any) -> None:
    print(json.dumps(_clean(obj), indent=2))


class StderrProgress:
    """A one-line, tqdm-style progress bar on stderr; `end_line()` before anything else is
    printed there (an error line starts on its own line)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and sys.stderr is not None
        self.last = ""

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(round(width * max(0.0, min(1.0, fraction))))
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {100 * fraction:5.1f}% {stage}: {message}"
        sys.stderr.write(line[:160].ljust(len(self.last)))
        sys.stderr.flush()
        self.last = line[:160]
        if stage == "done":
            self.end_line()

    def end_line(self) -> None:
        if self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.last = ""


def _store(args):
    from core.store import RunStore

    return RunStore(args.store)


def _print_result_table(result: dict) -> None:
    keys = ("test_acc", "retain_acc", "forget_acc", "forget_acc_poisoned", "asr", "mia_auc")

    def fmt(v):
        return "   -  " if v is None else f"{v:6.3f}"

    rows = [("original", result["original"], None)]
    if result.get("retrained"):
        rows.append(("retrained", result["retrained"], None))
    rows += [(s["label"], s["metrics"], s) for s in result.get("strategies", [])]
    width = max(len(name) for name, _, _ in rows) + 2
    print(f"{'model':<{width}}" + "".join(f"{k:>20}" for k in keys) + f"{'seconds':>10}{'× retrain':>11}")
    for name, m, s in rows:
        cost = "" if s is None else f"{s['seconds']:>10.2f}{_ratio(s['retrain_ratio']):>11}"
        print(f"{name:<{width}}" + "".join(f"{fmt(m.get(k)):>20}" for k in keys) + cost)
    print("seconds:", json.dumps({k: (round(v, 2) if v else v) for k, v in result["seconds"].items()}))
    print("a strategy's seconds: its full cost (curvature and liveness it needs + mask + update)")
    if result.get("run_id") is not None:
        print("stored as run", result["run_id"])


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.3f}"


def cmd_run(args) -> int:
    from core import config as config_mod
    from core import experiment

    cfg = config_mod.load_file(args.config)
    result = experiment.run(cfg, store=_store(args), progress=args.progress)
    emit(result) if args.json else _print_result_table(result)
    return 0


def cmd_sweep(args) -> int:
    from core import config as config_mod
    from core import sweep

    cfg = config_mod.load_file(args.config)
    result = sweep.sweep(
        cfg, store=_store(args), progress=args.progress, executor=args.executor, address=args.address
    )
    emit(result) if args.json else print(sweep.format_summary(result))
    return 0


def cmd_forget_quality(args) -> int:
    from core import config as config_mod
    from core.deep_eval import forget_quality_run

    cfg = config_mod.load_file(args.config)
    result = forget_quality_run(
        cfg, args.models, store=_store(args), progress=args.progress, workers=args.workers
    )
    if args.json:
        emit(result)
        return 0
    seconds, workers = result["seconds"], result["workers"]
    print(
        f"forget quality over {result['models']} seeds ({seconds:.1f} s, {workers} workers); 1 = like retraining"
    )
    for label, value in [("original θ*", result["original"]), *result["forget_quality"].items()]:
        print(f"  {label:<40}{value:8.3f}")
    return 0


def cmd_curvature(args) -> int:
    from core import config as config_mod
    from core.curvature_cli import curvature_command

    cfg = config_mod.load_file(args.config)
    summary = curvature_command(cfg, args.out, store=_store(args))
    emit(summary) if args.json else print(f"scores written to {args.out} (+ .json summary)")
    return 0


def cmd_runs(args) -> int:
    store = _store(args)
    if args.action == "list":
        rows = store.list_runs(limit=args.limit)
        slim = [{k: r[k] for k in ("id", "created", "kind", "status", "seconds", "error")} for r in rows]
        if args.json:
            emit(slim)
            return 0
        print(f"{'id':>5}  {'created':<26}{'kind':<7}{'status':<9}{'seconds':>9}  error")
        for r in slim:
            sec = f"{r['seconds']:.1f}" if r["seconds"] is not None else "-"
            error = (r["error"] or "")[:60]
            print(f"{r['id']:>5}  {r['created']:<26}{r['kind']:<7}{r['status']:<9}{sec:>9}  {error}")
        return 0
    if args.id is None:
        raise ConfigError("ID", "`runs show` needs a run id (see `runs list`)")
    emit(store.get(args.id))
    return 0


def _datasets(root: str | None) -> list[tuple[str, Any, str | None]]:
    """(name, Dataset or None, why not) for every entry of core.data.DATASETS."""
    from core import data

    out = []
    for name in data.DATASETS:
        try:
            out.append((name, data.load(name, root), None))
        except SapsError as e:
            out.append((name, None, str(e)))
    return out


def cmd_models(args) -> int:
    from core import models

    rows = []
    for name, ds, why in _datasets(args.root):
        if ds is None:
            rows.append({"dataset": name, "available": False, "why": why})
            continue
        for m in models.MODELS:
            n = models.count_parameters(models.build(m, ds))
            row = {"dataset": name, "model": m, "shape": list(ds.shape), "parameters": n}
            rows.append({**row, **_describe(m, models, "MODELS")})
    if args.json:
        emit(rows)
        return 0
    for r in rows:
        if "model" in r:
            print(
                f"{r['dataset']:<15}{r['model']:<10}{r['parameters']:>12,}  {r['label']}: {r['description']}"
            )
        else:
            print(f"{r['dataset']:<15}(not available: {r['why'][:80]})")
    return 0


def cmd_datasets(args) -> int:
    from core import data

    rows = []
    for name, ds, why in _datasets(args.root):
        row = {"name": name, "label": data.DATASETS[name].label, "needs_root": data.DATASETS[name].needs_root}
        if ds is None:
            rows.append({**row, "available": False, "note": why})
            continue
        sizes = {"n_train": len(ds.y_train), "n_test": len(ds.y_test)}
        rows.append({**row, "available": True, "shape": list(ds.shape), **sizes, "classes": ds.classes})
    if args.json:
        emit(rows)
        return 0
    for r in rows:
        extra = f"{r['n_train']} train / {r['n_test']} test, {r['shape']}" if r["available"] else r["note"]
        print(f"{r['name']:<15}{r['label']:<34}{'yes' if r['available'] else 'no':<5}{extra[:100]}")
    return 0


# registry lists: command -> (module, registry); each entry's metadata is printed as it is
REGISTRIES = {
    "strategies": ("core.selection", "STRATEGIES"),
    "methods": ("core.unlearning", "METHODS"),
    "scenarios": ("core.scenarios", "SCENARIOS"),
    "estimators": ("core.curvature", "ESTIMATORS"),
}


def _describe(name: str, module: Any, registry: str) -> dict:
    """An entry's JSON-able metadata: name, label, description and its other plain fields
    (e.g. needs, options, budgeted); callables are left out."""
    entry = getattr(module, registry)[name]
    row: dict[str, Any] = {"name": name, "label": name, "description": ""}
    if dataclasses.is_dataclass(entry):
        row.update({f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)})
        for attr in ("budgeted",):
            if hasattr(entry, attr):
                row[attr] = getattr(entry, attr)
    plain = {
        k: v for k, v in row.items() if v is not None and _plain(v)
    }  # callables and unset hooks left out
    return {k: sorted(v) if isinstance(v, (set, frozenset)) else v for k, v in plain.items()}


def _plain(v: Any) -> bool:
    if isinstance(v, (str, bool, int, float, type(None))):
        return True
    if isinstance(v, (list, tuple, set, frozenset)):
        return all(_plain(x) for x in v)
    return isinstance(v, dict) and all(_plain(x) for x in v.values())


def cmd_registry(args) -> int:
    module_name, registry = REGISTRIES[args.command]
    module = importlib.import_module(module_name)
    rows = [_describe(name, module, registry) for name in getattr(module, registry)]
    if args.json:
        emit(rows)
        return 0
    width = max(len(r["name"]) for r in rows) + 2
    label_width = max(len(r["label"]) for r in rows) + 2
    for r in rows:
        print(f"{r['name']:<{width}}{r['label']:<{label_width}}{r['description']}")
    return 0


def _positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (a bad value exits 2 with the flag named)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m core", description="SAPS machine-unlearning workbench")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp, config=True):
        if config:
            sp.add_argument("--config", required=True, help="JSON config file")
        sp.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        sp.add_argument("--store", default=None, help="run store folder (default $SAPS_STORE or runs/)")
        sp.add_argument("--quiet", action="store_true", help="no progress bar on stderr")

    common(sub.add_parser("run", help="run one experiment config"))
    sw = sub.add_parser("sweep", help="run a grid of strategies × fractions × methods × seeds")
    common(sw)
    sw.add_argument("--executor", choices=["local", "ray"], default="local")
    sw.add_argument("--address", default=None, help="Ray cluster address (with --executor ray)")
    fq = sub.add_parser("forget-quality", help="forget quality over M training seeds (deep evaluation)")
    common(fq)
    fq.add_argument("--models", type=int, default=16, help="M: training seeds per side (default 16)")
    fq.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="processes, one thread each (default: one per core)",
    )
    cv = sub.add_parser("curvature", help="compute Hessian-diagonal scores and save them")
    common(cv)
    cv.add_argument("--out", required=True, help="output file (.safetensors or .npz)")
    rs = sub.add_parser("runs", help="list or show stored runs")
    rs.add_argument("action", choices=["list", "show"])
    rs.add_argument("id", nargs="?", type=int)
    rs.add_argument("--limit", type=_positive_int, default=50, help="newest rows shown (default 50)")
    common(rs, config=False)
    for name in ("models", "datasets"):
        sp = sub.add_parser(name, help=f"list {name}")
        sp.add_argument("--root", default=None, help="data folder for mnist/cifar10")
        sp.add_argument("--json", action="store_true")
    for name, (module, registry) in REGISTRIES.items():
        sp = sub.add_parser(name, help=f"list {name} ({module}.{registry})")
        sp.add_argument("--json", action="store_true")
    return p


COMMANDS = {
    "run": cmd_run,
    "sweep": cmd_sweep,
    "forget-quality": cmd_forget_quality,
    "curvature": cmd_curvature,
    "runs": cmd_runs,
    "models": cmd_models,
    "datasets": cmd_datasets,
    **{name: cmd_registry for name in REGISTRIES},
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.progress = StderrProgress(not getattr(args, "quiet", True))
    try:
        return COMMANDS[args.command](args)
    except SapsError as e:
        args.progress.end_line()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        args.progress.end_line()
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
