"""Paired statistics for `benchmarks/saps_claims.py`: pure functions (numpy, scipy), no torch.

Everything here works on per-seed values of one measure for one configuration, given as a
dict {seed: value}. Two configurations are compared on the seeds both have (paired
differences a − b per seed); an interval is a percentile bootstrap of the mean difference
over seeds (resampling seeds with replacement, seeded), the p-value a two-sided Wilcoxon
signed-rank test (scipy.stats.wilcoxon). A difference counts as significant only when both
agree: p < ALPHA *and* the 95 % interval excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np
from scipy import stats

ALPHA = 0.05
RESAMPLES = 10_000
LEVEL = 0.95
SPLIT_SEED = 0  # the seeded permutation that splits seeds into selection / evaluation halves

Values = Mapping[int, float | None]


def finite(v: object) -> bool:
    """A usable measurement: a real number (not bool, None, NaN or ±inf)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def bootstrap_ci(
    values: Iterable[float], *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the n values with replacement
    `resamples` times (numpy default_rng(seed)), take the (1 ± level)/2 quantiles of the means."""
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


def wilcoxon_p(diffs: Iterable[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (zeros dropped, as scipy's
    default "wilcox" rule does); 1.0 when every difference is zero, None without data."""
    d = np.asarray(list(diffs), dtype=float)
    if d.size == 0:
        return None
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def smallest_p(n: int) -> float:
    """The smallest two-sided exact signed-rank p-value n non-zero pairs can give: 2 / 2**n
    (every difference of one sign). Below n = 6 it is above 0.05: no test can be significant."""
    return min(1.0, 2.0 / 2**n)


def pair(a: Values, b: Values) -> tuple[list[int], list[float]]:
    """Seeds where both a and b have a finite value, and the differences a − b on them."""
    seeds = sorted(s for s in a if s in b and finite(a[s]) and finite(b[s]))
    return seeds, [float(a[s]) - float(b[s]) for s in seeds]


def compare(a: Values, b: Values, *, better: str = "higher", seed: int = 0) -> dict:
    """Paired comparison of configuration a against b on one measure.

    `better`: "higher" when a larger value is better (removal, % restored), "lower" when a
    smaller one is (relearn gap, cost). Returns {"n", "seeds", "mean", "lo", "hi", "p",
    "verdict"} with verdict "better", "worse", "not significant" or "no data"."""
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    seeds, d = pair(a, b)
    if not d:
        return {"n": 0, "seeds": [], "mean": None, "lo": None, "hi": None, "p": None, "verdict": "no data"}
    mean = float(np.mean(d))
    lo, hi = bootstrap_ci(d, seed=seed)
    p = wilcoxon_p(d)
    significant = p is not None and p < ALPHA and (lo > 0 or hi < 0)
    if not significant:
        verdict = "not significant"
    else:
        verdict = "better" if (mean > 0) == (better == "higher") else "worse"
    return {"n": len(d), "seeds": seeds, "mean": mean, "lo": lo, "hi": hi, "p": p, "verdict": verdict}


def fdr(pvalues: list[float | None]) -> list[float | None]:
    """Benjamini–Hochberg adjusted p-values (q) of a family of tests; None stays None."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if idx:
        q = stats.false_discovery_control([pvalues[i] for i in idx], method="bh")
        for i, v in zip(idx, np.atleast_1d(q)):
            out[i] = float(v)
    return out


def split_seeds(seeds: Iterable[int], *, seed: int = SPLIT_SEED) -> tuple[list[int], list[int]]:
    """A seeded permutation of the distinct seeds, cut in two: (selection, evaluation), the
    evaluation half taking the extra seed when their number is odd. Disjoint, both sorted."""
    s = sorted(set(seeds))
    perm = np.random.default_rng(seed).permutation(len(s))
    cut = len(s) // 2
    return sorted(s[i] for i in perm[:cut]), sorted(s[i] for i in perm[cut:])


def summary(values: Values, seeds: Iterable[int] | None = None) -> dict:
    """Mean, sample std, n and a bootstrap 95 % interval of the finite values (on `seeds` only)."""
    keep = None if seeds is None else set(seeds)
    x = [float(v) for s, v in values.items() if (keep is None or s in keep) and finite(v)]
    if not x:
        return {"n": 0, "mean": None, "std": None, "lo": None, "hi": None}
    lo, hi = bootstrap_ci(x)
    std = float(np.std(x, ddof=1)) if len(x) > 1 else 0.0
    return {"n": len(x), "mean": float(np.mean(x)), "std": std, "lo": lo, "hi": hi}


def choose_best(
    table: Mapping[str, Mapping[str, Values]],
    seeds: Iterable[int],
    measure: str,
    *,
    better: str = "higher",
    limits: Mapping[str, float] | None = None,
    allowed: Callable[[str], bool] | None = None,
) -> str | None:
    """The configuration with the best mean `measure` over `seeds` (the selection half).

    `table[config][measure][seed]` holds the values; only the given seeds are ever read, and a
    configuration must have a finite value of `measure` (and of every limited measure) on all
    of them. `limits`: {measure: maximum of its mean over the seeds}, e.g. test-accuracy drop
    ≤ 0.02. `allowed(config)` filters the candidates. Ties go to the smaller config id."""
    seeds = sorted(set(seeds))
    if not seeds:
        return None
    limits = dict(limits or {})
    best, best_value = None, None
    for cid in sorted(table):
        if allowed is not None and not allowed(cid):
            continue
        means = {}
        for m in [measure, *limits]:
            vals = [table[cid].get(m, {}).get(s) for s in seeds]
            if not all(finite(v) for v in vals):
                break
            means[m] = float(np.mean(vals))
        else:
            if any(means[m] > cap for m, cap in limits.items()):
                continue
            v = means[measure] if better == "higher" else -means[measure]
            if best_value is None or v > best_value:
                best, best_value = cid, v
    return best


# ---------------------------------------------------------------------------------------------
# text built from the numbers


def num(v: float | None, digits: int = 2, *, signed: bool = False) -> str:
    """A number with a true minus sign (−), '–' for no value."""
    if v is None:
        return "–"
    s = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    return s.replace("-", "−")


def pvalue(p: float | None) -> str:
    if p is None:
        return "p –"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def interval(stat: Mapping, digits: int = 2) -> str:
    """'+0.12 [−0.05, +0.30]' for a comparison or summary dict (mean, lo, hi)."""
    if stat.get("mean") is None:
        return "–"
    return (
        f"{num(stat['mean'], digits, signed=True)} "
        f"[{num(stat['lo'], digits, signed=True)}, {num(stat['hi'], digits, signed=True)}]"
    )


def verdict_text(stat: Mapping, words: tuple[str, str] = ("ahead", "behind")) -> str:
    """The verdict in words: words[0] when better, words[1] when worse; otherwise why not."""
    if stat["verdict"] == "better":
        return words[0]
    if stat["verdict"] == "worse":
        return words[1]
    if stat["verdict"] == "no data":
        return "no paired seeds"
    if stat["n"] and smallest_p(stat["n"]) >= ALPHA:
        pairs = "pair" if stat["n"] == 1 else "pairs"
        return f"not significant (with n = {stat['n']} {pairs} no p below {ALPHA:g} is possible)"
    return "not significant"


def sentence(
    a: str,
    b: str,
    context: str,
    stat: Mapping,
    *,
    digits: int = 2,
    words: tuple[str, str] = ("ahead", "behind"),
) -> str:
    """'SAPS (…) − random at 2 %, masked_finetune, backdoor removal: +0.12 [−0.05, +0.30],
    p = 0.19, n = 10: not significant'."""
    if stat["verdict"] == "no data":
        return f"{a} − {b} {context}: no paired seeds"
    return f"{a} − {b} {context}: {interval(stat, digits)}, {pvalue(stat['p'])}, n = {stat['n']}: {verdict_text(stat, words)}"
