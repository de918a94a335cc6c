"""Command line: `python -m core run|sweep|curvature|runs|models|datasets`.

`--json` prints exactly one JSON document on stdout; progress goes to stderr. Bad input
(config fields, arguments, missing data files, unreadable checkpoints) prints one line
naming the problem and exits with code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
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
    """A one-line, tqdm-style progress bar on stderr."""

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
            sys.stderr.write("\n")


def _store(args):
    from core.store import RunStore

    return RunStore(args.store)


def _print_result_table(result: dict) -> None:
    keys = ("test_acc", "retain_acc", "forget_acc", "forget_acc_poisoned", "asr", "mia_auc")

    def fmt(v):
        return "   -  " if v is None else f"{v:6.3f}"

    print(f"{'model':<28}" + "".join(f"{k:>20}" for k in keys))
    rows = [("original", result["original"])]
    if result.get("retrained"):
        rows.append(("retrained", result["retrained"]))
    for s in result.get("strategies", []):
        label = f"{s['name']}@{s.get('fraction')}" + ("" if s.get("largest", True) else " (small)")
        rows.append((label, s["metrics"]))
    for name, m in rows:
        print(f"{name:<28}" + "".join(f"{fmt(m.get(k)):>20}" for k in keys))
    print("seconds:", json.dumps({k: (round(v, 2) if v else v) for k, v in result["seconds"].items()}))
    if "run_id" in result:
        print("stored as run", result["run_id"])


def cmd_run(args) -> int:
    from core import config as config_mod
    from core import experiment

    cfg = config_mod.load_file(args.config)
    result = experiment.run(cfg, store=_store(args), progress=StderrProgress(not args.quiet))
    if args.json:
        emit(result)
    else:
        _print_result_table(result)
    return 0


def cmd_sweep(args) -> int:
    from core import config as config_mod
    from core import experiment

    if not hasattr(experiment, "sweep"):
        raise ConfigError("sweep", "sweeps are not available in this version")
    cfg = config_mod.load_file(args.config)
    kwargs = {}
    if args.executor != "local":
        kwargs["executor"] = args.executor
        kwargs["address"] = args.address
    result = experiment.sweep(cfg, store=_store(args), progress=StderrProgress(not args.quiet),
                              **kwargs)  # fmt: skip
    if args.json:
        emit(result)
    else:
        table = getattr(experiment, "format_summary", None)
        print(table(result) if table else json.dumps(_clean(result["summary"]), indent=2))
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
        else:
            print(f"{'id':>5}  {'created':<26}{'kind':<7}{'status':<9}{'seconds':>9}  error")
            for r in slim:
                sec = f"{r['seconds']:.1f}" if r["seconds"] is not None else "-"
                print(f"{r['id']:>5}  {r['created']:<26}{r['kind']:<7}{r['status']:<9}{sec:>9}  "
                      f"{(r['error'] or '')[:60]}")  # fmt: skip
        return 0
    if args.id is None:
        raise ConfigError("ID", "`runs show` needs a run id (see `runs list`)")
    emit(store.get(args.id))
    return 0


def cmd_models(args) -> int:
    from core import data, models

    rows = []
    for name in data.LOADERS:
        if name == "npz":
            continue
        try:
            ds = data.load(name, args.root)
        except SapsError as e:
            rows.append({"dataset": name, "available": False, "why": str(e)})
            continue
        for m in models.MODELS:
            rows.append({"dataset": name, "model": m, "shape": list(ds.shape),
                         "parameters": models.count_parameters(models.build(m, ds)),
                         "description": models.DESCRIPTIONS[m]})  # fmt: skip
    if args.json:
        emit(rows)
    else:
        for r in rows:
            if "model" in r:
                print(f"{r['dataset']:<15}{r['model']:<10}{r['parameters']:>12,}  {r['description']}")
            else:
                print(f"{r['dataset']:<15}(not available: {r['why'][:80]})")
    return 0


def cmd_datasets(args) -> int:
    from core import data

    rows = []
    for name in data.LOADERS:
        if name == "npz":
            rows.append({"name": "npz", "available": None,
                         "note": "your own .npz: set root to its path"})  # fmt: skip
            continue
        try:
            ds = data.load(name, args.root)
            rows.append({"name": name, "available": True, "shape": list(ds.shape),
                         "n_train": len(ds.y_train), "n_test": len(ds.y_test),
                         "classes": ds.classes})  # fmt: skip
        except SapsError as e:
            rows.append({"name": name, "available": False, "note": str(e)})
    if args.json:
        emit(rows)
    else:
        for r in rows:
            state = "yes" if r["available"] else ("-" if r["available"] is None else "no")
            extra = (f"{r['n_train']} train / {r['n_test']} test, {r['shape']}"
                     if r.get("available") else r.get("note", ""))  # fmt: skip
            print(f"{r['name']:<15}{state:<5}{extra[:100]}")
    return 0


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
    cv = sub.add_parser("curvature", help="compute Hessian-diagonal scores and save them")
    common(cv)
    cv.add_argument("--out", required=True, help="output file (.safetensors or .npz)")
    rs = sub.add_parser("runs", help="list or show stored runs")
    rs.add_argument("action", choices=["list", "show"])
    rs.add_argument("id", nargs="?", type=int)
    rs.add_argument("--limit", type=int, default=50)
    common(rs, config=False)
    for name in ("models", "datasets"):
        sp = sub.add_parser(name, help=f"list {name}")
        sp.add_argument("--root", default=None, help="data folder for mnist/cifar10")
        sp.add_argument("--json", action="store_true")
    return p


COMMANDS = {"run": cmd_run, "sweep": cmd_sweep, "curvature": cmd_curvature, "runs": cmd_runs,
            "models": cmd_models, "datasets": cmd_datasets}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SapsError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
