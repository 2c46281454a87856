"""Evaluation statistics (baimo/evaluation/stats.py) against values computed by hand from the published formulas."""

from __future__ import annotations

import math

import pytest

from baimo.evaluation.stats import mcnemar, paired_mcnemar, percentiles, summarize, wilson


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson (1927): (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(8, 10), (0, 6), (6, 6), (137, 200), (1, 1319)])
def test_wilson_interval(k: int, n: int) -> None:
    lo, hi = wilson(k, n)
    assert (lo, hi) == pytest.approx(wilson_by_hand(k, n), abs=1e-9)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_known_value_and_empty() -> None:
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_mcnemar_exact() -> None:
    assert mcnemar(0, 5) == pytest.approx(2 * 0.5 ** 5)       # all discordant pairs one way: 0.0625
    assert mcnemar(3, 3) == pytest.approx(1.0)
    assert mcnemar(0, 0) == 1.0
    assert mcnemar(1, 9) == pytest.approx(2 * (1 + 10) / 2 ** 10)  # P(X <= 1) doubled, X ~ Bin(10, 1/2)
    first = {"a": True, "b": True, "c": False, "d": False, "e": True}
    second = {"a": True, "b": False, "c": True, "d": True, "x": False}
    assert paired_mcnemar(first, second) == {"n": 4, "b": 1, "c": 2, "p_value": pytest.approx(1.0)}


def test_percentiles() -> None:
    assert percentiles(list(range(1, 101))) == {"p50": 50.5, "p95": 95.0}
    assert percentiles([]) == {"p50": 0.0, "p95": 0.0}


def test_summarize() -> None:
    items = [
        {"correct": True, "score": None, "cost_usd": 0.01, "latency_ms": 100.0, "served_model": "a", "cached": False,
         "prompt_tokens": 10, "completion_tokens": 5},
        {"correct": False, "score": None, "cost_usd": 0.03, "latency_ms": 5.0, "served_model": "b", "cached": True,
         "prompt_tokens": 10, "completion_tokens": 5},
        {"correct": None, "score": None, "cost_usd": 0.0, "latency_ms": 0.0, "served_model": None, "cached": False,
         "error": "upstream 503", "prompt_tokens": 0, "completion_tokens": 0},
        {"correct": True, "score": None, "cost_usd": 0.02, "latency_ms": 300.0, "served_model": "a", "cached": False,
         "prompt_tokens": 10, "completion_tokens": 5},
    ]
    t = summarize({"id": "r"}, items)
    assert (t["n"], t["scored"], t["correct"], t["errors"]) == (4, 3, 2, 1)
    assert t["accuracy"] == pytest.approx(2 / 3, abs=1e-4) and t["ci95"] == pytest.approx(wilson(2, 3), abs=1e-4)
    assert t["cost_usd"] == pytest.approx(0.06) and t["cost_per_item_usd"] == pytest.approx(0.015)
    assert t["served_share"] == {"a": pytest.approx(2 / 3, abs=1e-4), "b": pytest.approx(1 / 3, abs=1e-4)}
    assert t["latency_ms"] == {"p50": 100.0, "p95": 280.0}  # errors left out; a cached answer as it was made
    assert t["mean_score"] is None and (t["prompt_tokens"], t["completion_tokens"]) == (30, 15)
    judged = summarize({"id": "j"}, [{**items[0], "score": 8.0}, {**items[1], "score": 5.0}], judged=True)
    assert judged["mean_score"] == 6.5
