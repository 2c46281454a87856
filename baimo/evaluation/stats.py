"""Statistics of an evaluation: accuracy with its Wilson interval, latency percentiles, McNemar's exact test.

Sources: the Wilson score interval (Wilson 1927; recommended over the normal approximation for small n and
accuracies near 0 or 1 by Brown, Cai and DasGupta 2001), computed by SciPy's `binomtest(...).proportion_ci(
method="wilson")`; McNemar's exact test (McNemar 1947) is the two-sided binomial test of the discordant pairs
b and c against p = 0.5, the standard paired test for two classifiers on the same items (Dietterich 1998).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

__all__ = ["mcnemar", "paired_mcnemar", "percentiles", "summarize", "wilson"]


def wilson(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `correct`/`n`, as (low, high) fractions in [0, 1].
    n = 0 gives (0.0, 1.0): nothing is known."""
    if n <= 0:
        return 0.0, 1.0
    from scipy.stats import binomtest  # imported when needed: it takes a second or two

    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def percentiles(values: list[float], qs: tuple[float, ...] = (50, 95)) -> dict[str, float]:
    """{"p50": ..., "p95": ...} of `values` (linear interpolation, NumPy's default); 0.0 for no values."""
    if not values:
        return {f"p{q:g}": 0.0 for q in qs}
    arr = np.asarray(values, dtype=float)
    return {f"p{q:g}": round(float(np.percentile(arr, q)), 1) for q in qs}


def mcnemar(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value for b items right only in run 1 and c right only in run 2
    (1.0 when there is no discordant pair)."""
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(int(b), int(b + c), 0.5, alternative="two-sided").pvalue)


def paired_mcnemar(first: dict[str, bool], second: dict[str, bool]) -> dict[str, Any]:
    """McNemar's test on the items two runs both scored ({item_id: correct}): {"n", "b" (only the first right),
    "c" (only the second right), "p_value"}."""
    common = [k for k in first if k in second]
    b = sum(1 for k in common if first[k] and not second[k])
    c = sum(1 for k in common if second[k] and not first[k])
    return {"n": len(common), "b": b, "c": c, "p_value": mcnemar(b, c)}


def summarize(target: dict[str, Any], items: list[dict[str, Any]], *, judged: bool = False) -> dict[str, Any]:
    """Fill a target entry of the run JSON from its item results: n, scored, correct, accuracy, ci95 (Wilson),
    mean_score (judged kinds only), cost_usd (every call's cost, cached ones at what they cost when made),
    cost_per_item_usd, tokens, latency_ms p50/p95 (failed calls left out; a cached answer, like its cost, counts
    at what it took when it was made), served_share, errors. `items` are the contract's item dicts plus
    "prompt_tokens" and "completion_tokens"."""
    scored = [r for r in items if r.get("correct") is not None]
    correct = sum(1 for r in scored if r["correct"])
    scores = [r["score"] for r in items if r.get("score") is not None]
    cost = sum(r.get("cost_usd") or 0.0 for r in items)
    served = Counter(r["served_model"] for r in items if r.get("served_model"))
    total_served = sum(served.values())
    lo, hi = wilson(correct, len(scored))
    target.update({
        "n": len(items), "scored": len(scored), "correct": correct,
        "accuracy": round(correct / len(scored), 4) if scored else 0.0, "ci95": [round(lo, 4), round(hi, 4)],
        "mean_score": round(sum(scores) / len(scores), 3) if scores and judged else None,
        "cost_usd": round(cost, 8), "cost_per_item_usd": round(cost / len(items), 10) if items else 0.0,
        "prompt_tokens": sum(int(r.get("prompt_tokens") or 0) for r in items),
        "completion_tokens": sum(int(r.get("completion_tokens") or 0) for r in items),
        "latency_ms": percentiles([r["latency_ms"] for r in items if not r.get("error")]),
        "served_share": {m: round(k / total_served, 4) for m, k in served.most_common()},
        "errors": sum(1 for r in items if r.get("error")),
    })
    return target
