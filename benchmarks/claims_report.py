"""Analysis and report text of `benchmarks/saps_claims.py`: pure Python (claims_stats), no torch.

Input per scenario: flat cell records (one per seed × configuration), each
{"seed", "id", "label", "family", "fraction", "method", <measures>} where `id` names a
configuration (strategy reading @ budget / method), `family` the reading without budget and
method (e.g. "saps:largest:global:full", "random"), and measures are plain numbers or None.
Everything the report says is computed here from those records: no fixed prose.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

from benchmarks import claims_stats as cs

MEASURES = {  # key: (label, which way is better, digits, verdict words)
    "backdoor_removal": ("backdoor removal", "higher", 2, ("ahead", "behind")),
    "restored_pct": ("% restored", "higher", 1, ("ahead", "behind")),
    "relearn_gap": ("relearn gap", "lower", 2, ("more robust to relearning", "less robust to relearning")),
    "retrain_ratio": ("full cost / retraining", "lower", 3, ("cheaper", "dearer")),
}
NUMERIC = (
    "backdoor_removal",
    "restored_pct",
    "restored_n_test",
    "test_acc",
    "test_acc_drop",
    "asr",
    "relearn_success",
    "relearn_gap",
    "poison_fit_auc",
    "mia_auc",
    "seconds",
    "seconds_select",
    "seconds_update",
    "retrain_ratio",
    "amortized_ratio",
    "curvature_ratio",
    "dead_selected",
    "n_selected",
    "unchanged",
)
BASELINES = ("random", "magnitude", "gradient", "fisher")
DROP_LIMIT = 0.02  # a chosen configuration may cost at most this much test accuracy (selection mean)
COST_LIMIT = 0.10  # the cheap tier: full cost ≤ 10 % of retraining (selection mean)
PAPER_FAMILY = "saps:largest:global:full"  # the abstract's reading: largest diag H on the training data


def esc(text: str) -> str:
    """A markdown table cell: labels such as 'magnitude |θ|' keep their bars."""
    return text.replace("|", "\\|")


def method_order(methods: set[str], default: str) -> list[str]:
    """The default method first, then the others by name."""
    return sorted(methods, key=lambda m: (m != default, m))


def pct(f: float | None) -> str:
    return "fixed" if f is None else f"{100 * f:g} %"


def table_of(records: list[dict]) -> tuple[dict, dict]:
    """{id: {measure: {seed: value}}} and {id: the record's description (no seed, no measures)}."""
    table: dict = defaultdict(lambda: defaultdict(dict))
    meta: dict = {}
    for r in records:
        for k in NUMERIC:
            table[r["id"]][k][r["seed"]] = r.get(k)
        curve = r.get("relearn_curve")
        if curve:
            for i, v in enumerate(curve):
                table[r["id"]][f"relearn@{i}"][r["seed"]] = v
        meta.setdefault(r["id"], {k: r.get(k) for k in ("label", "family", "fraction", "method", "strategy")})
        meta[r["id"]].setdefault("curve_steps", r.get("relearn_steps"))
    return table, meta


def config_rows(table: dict, meta: dict) -> list[dict]:
    """Per configuration: summaries of every measure and the mean relearning curve."""
    out = []
    for cid in sorted(table, key=lambda c: (meta[c]["method"], meta[c]["family"], meta[c]["fraction"] or 2)):
        row = {"id": cid, **meta[cid], "summary": {k: cs.summary(table[cid][k]) for k in NUMERIC}}
        steps = meta[cid].get("curve_steps") or []
        row["relearn_curve"] = [
            cs.summary(table[cid].get(f"relearn@{i}", {}))["mean"] for i in range(len(steps))
        ]
        n_test = [v for v in table[cid]["restored_n_test"].values() if cs.finite(v)]
        row["restored_n_test"] = {"median": statistics.median(n_test), "min": min(n_test)} if n_test else None
        out.append(row)
    return out


def paired(table: dict, meta: dict, main: str) -> list[dict]:
    """SAPS reading − each baseline at the same budget and method, on the main measure, the
    relearn gap and the full cost; q = Benjamini–Hochberg over each measure's family of tests."""
    by_slot = defaultdict(dict)  # (fraction, method) -> {family: id}
    for cid, m in meta.items():
        if m["fraction"] is not None:
            by_slot[(m["fraction"], m["method"])][m["family"]] = cid
    out = []
    for (fraction, method), fams in sorted(by_slot.items()):
        for saps in sorted(f for f in fams if f.startswith("saps")):
            for base in BASELINES:
                if base not in fams:
                    continue
                for measure in (main, "relearn_gap", "retrain_ratio"):
                    stat = cs.compare(
                        table[fams[saps]][measure], table[fams[base]][measure], better=MEASURES[measure][1]
                    )
                    out.append(
                        {
                            "saps": saps,
                            "baseline": base,
                            "fraction": fraction,
                            "method": method,
                            "measure": measure,
                            "a": meta[fams[saps]]["label"],
                            "b": meta[fams[base]]["label"],
                            **stat,
                        }
                    )
    for measure in {p["measure"] for p in out}:
        family = [p for p in out if p["measure"] == measure]
        for p, q in zip(family, cs.fdr([p["p"] for p in family])):
            p["q"] = q
    return out


def split_choice(table: dict, meta: dict, main: str, seeds: list[int]) -> dict:
    """The best configurations chosen on the selection half of the seeds and reported on the
    other half: overall, SAPS only, baselines only; with and without the cost limit."""
    sel, ev = cs.split_seeds(seeds)
    out = {"selection_seeds": sel, "evaluation_seeds": ev, "rule": {}, "tiers": {}}
    masked = {c for c, m in meta.items() if m["fraction"] is not None}
    for tier, limits in (
        ("any cost", {"test_acc_drop": DROP_LIMIT}),
        (
            f"≤ {100 * COST_LIMIT:g} % of retraining",
            {"test_acc_drop": DROP_LIMIT, "retrain_ratio": COST_LIMIT},
        ),
    ):
        picks = {}
        for group, allowed in (
            ("best", lambda c: c in masked),
            ("saps", lambda c: c in masked and meta[c]["family"].startswith("saps")),
            ("baseline", lambda c: c in masked and meta[c]["family"] in BASELINES),
        ):
            cid = cs.choose_best(table, sel, main, better=MEASURES[main][1], limits=limits, allowed=allowed)
            picks[group] = None
            if cid is not None:
                picks[group] = {
                    "id": cid,
                    "label": meta[cid]["label"],
                    "fraction": meta[cid]["fraction"],
                    "method": meta[cid]["method"],
                    "selection": cs.summary(table[cid][main], sel),
                    "evaluation": {k: cs.summary(table[cid][k], ev) for k in NUMERIC},
                }
        if picks["saps"] and picks["baseline"]:
            a, b = (table[picks[g]["id"]][main] for g in ("saps", "baseline"))
            picks["saps_vs_baseline"] = cs.compare(
                {s: a.get(s) for s in ev}, {s: b.get(s) for s in ev}, better=MEASURES[main][1]
            )
        out["tiers"][tier] = picks
        out["rule"][tier] = limits
    return out


def analyze(records: list[dict], *, main: str, expected: int, references: dict) -> dict:
    """All statistics of one scenario (JSON-able)."""
    table, meta = table_of(records)
    seeds = sorted({r["seed"] for r in records})
    pairs = paired(table, meta, main)
    full_cost = bool(records) and all(r.get("full_cost") for r in records)
    return {
        "main": main,
        "cells": len(records),
        "expected": expected,
        "missing": max(0, expected - len(records)),
        "seeds": seeds,
        "full_cost": full_cost,
        "references": references,
        "configs": config_rows(table, meta),
        "paired": pairs,
        "split": split_choice(table, meta, main, seeds),
    }


# ---------------------------------------------------------------------------------------------
# text


def _fmt(s: dict, digits: int = 2, *, ci: bool = False) -> str:
    if s is None or s.get("mean") is None:
        return "–"
    text = f"{cs.num(s['mean'], digits)} ± {cs.num(s['std'], digits)}"
    return text + (f" [{cs.num(s['lo'], digits)}, {cs.num(s['hi'], digits)}]" if ci else "")


def verdict_counts(pairs: list[dict], measure: str, method: str | None = None) -> dict:
    """{(saps family, baseline): Counter(verdict)} over budgets (and methods unless given)."""
    out: dict = defaultdict(Counter)
    for p in pairs:
        if p["measure"] == measure and (method is None or p["method"] == method):
            out[(p["saps"], p["baseline"])][p["verdict"]] += 1
    return out


def _n_range(ps: list[dict]) -> str:
    lo, hi = min(p["n"] for p in ps), max(p["n"] for p in ps)
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def _budget_list(ps: list[dict]) -> str:
    return ", ".join(pct(p["fraction"]) for p in ps) or "none"


def reading(name: str, an: dict, default_method: str) -> list[str]:
    """The conclusions of one scenario, each sentence built from the numbers in `an`."""
    main = an["main"]
    label, _, digits, words = MEASURES[main]
    lines = []
    seeds = an["seeds"]
    lines.append(
        f"**{name}**: {an['cells']} of {an['expected']} cells ({an['missing']} missing), "
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}); every comparison shows its own n."
    )
    if not an["full_cost"]:
        lines.append("Costs of these cells leave out selection (stored before full costs were recorded).")
    sp = an["split"]
    for tier, picks in sp["tiers"].items():
        b = picks.get("best")
        if b is None:
            lines.append(f"No masked configuration met the limits ({tier}) on the selection seeds.")
            continue
        e = b["evaluation"]
        lines.append(
            f"Best masked configuration ({tier}, test-accuracy drop ≤ {DROP_LIMIT:g}), chosen on seeds "
            f"{sp['selection_seeds']} and reported on seeds {sp['evaluation_seeds']}: {b['label']} @ "
            f"{pct(b['fraction'])}, {b['method']}: {label} {_fmt(e[main], digits, ci=True)}, relearn gap "
            f"{_fmt(e['relearn_gap'])}, test-accuracy drop {_fmt(e['test_acc_drop'], 3)}, full cost "
            f"{_fmt(e['retrain_ratio'], 3)} × retraining (n = {e[main]['n']})."
        )
        if picks.get("saps_vs_baseline"):
            s, bl = picks["saps"], picks["baseline"]
            sentence = (
                "Best SAPS reading vs best baseline, each chosen on the selection seeds: "
                + cs.sentence(
                    f"{s['label']} @ {pct(s['fraction'])} ({s['method']})",
                    f"{bl['label']} @ {pct(bl['fraction'])} ({bl['method']})",
                    f"on the evaluation seeds, {label}",
                    picks["saps_vs_baseline"],
                    digits=digits,
                    words=words,
                )
                + "."
            )
            if sentence not in lines:  # both tiers may pick the same pair: say it once
                lines.append(sentence)
    paper = [p for p in an["paired"] if p["saps"] == PAPER_FAMILY and p["method"] == default_method]
    for base in BASELINES:
        ps = [p for p in paper if p["baseline"] == base and p["measure"] == main]
        if not ps:
            continue
        ahead = [p for p in ps if p["verdict"] == "better"]
        behind = [p for p in ps if p["verdict"] == "worse"]
        rest = [p for p in ps if p["verdict"] not in ("better", "worse")]
        lines.append(
            f"{ps[0]['a']} vs {ps[0]['b']} ({default_method}, {label}): {words[0]} at {_budget_list(ahead)}; "
            f"{words[1]} at {_budget_list(behind)}; not significant at {_budget_list(rest)} "
            f"(n = {_n_range(ps)} pairs)."
        )
    for measure in (main, "relearn_gap", "retrain_ratio"):
        ps = [p for p in an["paired"] if p["measure"] == measure]
        if not ps:
            continue
        c = Counter(p["verdict"] for p in ps)
        fdr = sum(1 for p in ps if p["verdict"] in ("better", "worse") and (p.get("q") or 1) < cs.ALPHA)
        m_label, _, _, m_words = MEASURES[measure]
        lines.append(
            f"All {len(ps)} comparisons of a SAPS reading with a baseline at equal budget and method on "
            f"{m_label}: {c['better']} {m_words[0]}, {c['worse']} {m_words[1]}, {c['not significant']} not "
            f"significant, {c['no data']} without pairs; {fdr} of the significant ones survive a "
            f"Benjamini–Hochberg false discovery rate of {cs.ALPHA:g} (by chance alone about "
            f"{cs.ALPHA * len(ps):.0f} would pass α = {cs.ALPHA:g})."
        )
    families = sorted({p["saps"] for p in an["paired"]})
    for base in ("random",):
        majority = []
        for fam in families:
            ps = [
                p for p in an["paired"] if p["saps"] == fam and p["baseline"] == base and p["measure"] == main
            ]
            if ps and sum(p["verdict"] == "better" for p in ps) * 2 > len(ps):
                majority.append(fam)
        lines.append(
            f"SAPS readings {words[0]} of {base} on {label} in a majority of their (budget, method) "
            f"comparisons: {len(majority)} of {len(families)}"
            + (f" ({', '.join(majority)})." if majority else ".")
        )
    unchanged = Counter()
    total = Counter()
    for c in an["configs"]:
        u = c["summary"]["unchanged"]
        if u["mean"] is not None:
            unchanged[c["method"]] += round(u["mean"] * u["n"])
            total[c["method"]] += u["n"]
    if total:
        lines.append(
            "Cells where the method returned θ* unchanged (no step size passed the validation guard, or "
            "an unconverged solve was not applied): "
            + ", ".join(f"{m} {unchanged[m]} of {total[m]}" for m in sorted(total))
            + "."
        )
    refs = an["references"]
    gaps = [r["relearn_gap_original"] for r in refs.values() if cs.finite(r.get("relearn_gap_original"))]
    paper_rows = [c for c in an["configs"] if c["family"] == PAPER_FAMILY and c["method"] == default_method]
    if gaps or paper_rows:
        parts = [f"{_fmt(c['summary']['relearn_gap'])} at {pct(c['fraction'])}" for c in paper_rows]
        lines.append(
            "Relearning (attack success after the relearning steps minus the retrained model's; 0 = as "
            f"robust as retraining): θ* {cs.num(statistics.mean(gaps)) if gaps else '–'}; "
            f"{paper_rows[0]['label'] if paper_rows else 'the paper reading'} ({default_method}) "
            + ("; ".join(parts) if parts else "–")
            + "."
        )
    curv = defaultdict(list)
    for c in an["configs"]:
        if c["family"].startswith("saps") and c["summary"]["curvature_ratio"]["mean"] is not None:
            curv[c["family"].split(":")[-1]].append(c["summary"]["curvature_ratio"]["mean"])
    if curv:
        lines.append(
            "The curvature SAPS needs costs "
            + ", ".join(
                f"{statistics.mean(v):.2f} × retraining on the {d} data" for d, v in sorted(curv.items())
            )
            + " (mean over seeds), inside every SAPS cost above."
        )
    if main == "restored_pct":
        n_test = [r["restored_n_test"] for r in refs.values() if cs.finite(r.get("restored_n_test"))]
        if n_test:
            small = sum(1 for v in n_test if v < 5)
            lines.append(
                f"% restored rests on an accuracy gap of {statistics.median(n_test):g} test images (median; "
                f"min {min(n_test):g}, max {max(n_test):g}); at {small} of {len(n_test)} seeds the gap is under "
                "5 images, where one image moves % restored by more than 20 points."
            )
    return lines


def paper_table(an: dict, method: str, measure: str | None = None) -> list[str]:
    """Markdown: the paper's reading − each baseline per budget on `measure` (default: the
    scenario's main measure), diff [CI], p, n."""
    main = measure or an["main"]
    label, _, digits, words = MEASURES[main]
    ps = [
        p
        for p in an["paired"]
        if p["saps"] == PAPER_FAMILY and p["method"] == method and p["measure"] == main
    ]
    fracs = sorted({p["fraction"] for p in ps})
    if not ps:
        return []
    out = [
        f"| {esc(ps[0]['a'])} − … ({method}, {label}) | " + " | ".join(pct(f) for f in fracs) + " |",
        "|---" * (len(fracs) + 1) + "|",
    ]
    for base in BASELINES:
        row = {p["fraction"]: p for p in ps if p["baseline"] == base}
        if not row:
            continue
        name = next(iter(row.values()))["b"]
        cells = []
        for f in fracs:
            p = row.get(f)
            if p is None or p["verdict"] == "no data":
                cells.append("–")
                continue
            mark = {"better": f" **{words[0]}**", "worse": f" **{words[1]}**"}.get(p["verdict"], "")
            cells.append(f"{cs.interval(p, digits)}, {cs.pvalue(p['p'])}, n {p['n']}{mark}")
        out.append(f"| {esc(name)} | " + " | ".join(cells) + " |")
    return out


def counts_table(an: dict, measure: str, method: str | None = None) -> list[str]:
    """Markdown: per SAPS reading × baseline, how many (budget, method) comparisons went which way."""
    counts = verdict_counts(an["paired"], measure, method)
    if not counts:
        return []
    label, _, _, words = MEASURES[measure]
    labels = {p["saps"]: p["a"] for p in an["paired"]}
    out = [
        f"| {label}: {words[0]} / {words[1]} / n.s. | " + " | ".join(BASELINES) + " |",
        "|---" * (len(BASELINES) + 1) + "|",
    ]
    for fam in sorted({k[0] for k in counts}):
        cells = []
        for b in BASELINES:
            c = counts.get((fam, b))
            cells.append(
                "–" if not c else f"{c['better']} / {c['worse']} / {c['not significant'] + c['no data']}"
            )
        out.append(f"| {esc(labels[fam])} | " + " | ".join(cells) + " |")
    return out


def config_table(an: dict, method: str) -> list[str]:
    """Markdown: every configuration of one method, main measure beside its relearning numbers and costs."""
    main = an["main"]
    label, _, digits, _ = MEASURES[main]
    rows = [c for c in an["configs"] if c["method"] == method]
    if not rows:
        return []
    steps = next((c["curve_steps"] for c in rows if c.get("curve_steps")), None)
    curve_head = f"relearn curve (steps {', '.join(map(str, steps))})" if steps else "relearn curve"
    head = f"| configuration | budget | n | {label} |"
    if main == "restored_pct":
        head += " test images behind it |"
    head += f" {curve_head} | relearn gap | test-acc drop | full cost / retrain | amortized / retrain | dead selected | θ* returned unchanged |"
    out = [head, "|---" * (head.count("|") - 1) + "|"]
    for c in rows:
        s = c["summary"]
        cells = [c["label"], pct(c["fraction"]), str(s[main]["n"]), _fmt(s[main], digits)]
        if main == "restored_pct":
            n = c["restored_n_test"]
            cells.append("–" if n is None else f"{n['median']:g} (min {n['min']:g})")
        curve = " → ".join(cs.num(v) for v in c["relearn_curve"]) or "–"
        cells += [
            curve,
            _fmt(s["relearn_gap"]),
            _fmt(s["test_acc_drop"], 3),
            _fmt(s["retrain_ratio"], 3),
            _fmt(s["amortized_ratio"], 3),
            _fmt(s["dead_selected"], 0),
            "–" if s["unchanged"]["mean"] is None else f"{100 * s['unchanged']['mean']:.0f} %",
        ]
        out.append("| " + " | ".join(esc(c) for c in cells) + " |")
    return out


def reference_table(an: dict) -> list[str]:
    out = [
        "| seed | θ* test acc | retrained test acc | θ* ASR | retrained ASR | θ* relearn | retrained relearn "
        "| curvature (full data) / retrain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, r in sorted(an["references"].items(), key=lambda kv: int(kv[0])):
        vals = (
            "test_acc_original",
            "test_acc_retrained",
            "asr_original",
            "asr_retrained",
            "relearn_original",
            "relearn_retrained",
            "curvature_ratio",
        )
        out.append(f"| {seed} | " + " | ".join(cs.num(r.get(k), 3) for k in vals) + " |")
    return out
