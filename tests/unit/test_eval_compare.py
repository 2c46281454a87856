"""`compare_runs`: per-target accuracy change on paired items with McNemar's exact test, cost and latency deltas."""

from __future__ import annotations

import pytest

from baimo.evaluation.compare import compare_runs
from tests.support.eval_runs import make_run

# remote/x loses 10 items it had right (p = 2 * 0.5**10 ≈ 0.002); local/y loses 2 and gains 1 (p = 1.0);
# remote/z loses 0 and gains 8 (p ≈ 0.008); only-a / only-b are in one run each
A = make_run({"remote/x": [True] * 20, "local/y": [True, True, False] + [True] * 17, "remote/z": [False] * 10,
              "only-a": [True]}, run_id="A", cost_per_item={"remote/x": 0.002}, latency={"remote/x": 300.0})
B = make_run({"remote/x": [False] * 10 + [True] * 10, "local/y": [False, False, True] + [True] * 17,
              "remote/z": [True] * 8 + [False] * 2, "only-b": [False]}, run_id="B",
             cost_per_item={"remote/x": 0.003}, latency={"remote/x": 450.0})


def _by_target(result: dict) -> dict[str, dict]:
    return {t["target"]: t for t in result["targets"]}


def test_a_significant_drop_is_flagged_worse_with_its_exact_p_value() -> None:
    x = _by_target(compare_runs(A, B))["remote/x"]
    assert (x["paired"], x["lost"], x["gained"]) == (20, 10, 0)
    assert x["accuracy_a"] == 1.0 and x["accuracy_b"] == 0.5 and x["delta_accuracy"] == -0.5
    assert x["p_value"] == pytest.approx(2 * 0.5 ** 10)
    assert x["significant"] and x["direction"] == "worse"
    assert x["delta_cost_per_item_usd"] == pytest.approx(0.001) and x["delta_latency_p50_ms"] == 150.0


def test_a_small_change_is_not_significant_and_a_gain_is_better() -> None:
    by = _by_target(compare_runs(A, B))
    y, z = by["local/y"], by["remote/z"]
    assert (y["lost"], y["gained"], y["p_value"], y["direction"]) == (2, 1, 1.0, "same")
    assert not y["significant"] and y["delta_accuracy"] == pytest.approx(-0.05)
    assert z["direction"] == "better" and z["p_value"] == pytest.approx(2 * 0.5 ** 8)


def test_targets_in_one_run_only_are_listed_apart_and_unpaired_items_are_ignored() -> None:
    result = compare_runs(A, B)
    assert result["only_a"] == ["only-a"] and result["only_b"] == ["only-b"]
    assert set(_by_target(result)) == {"remote/x", "local/y", "remote/z"}
    short = make_run({"remote/x": [False] * 5}, run_id="C")  # a --limit 5 rerun: 5 paired items, all lost
    x = _by_target(compare_runs(A, short))["remote/x"]
    assert (x["paired"], x["lost"], x["accuracy_a"], x["accuracy_b"]) == (5, 5, 1.0, 0.0)
    assert x["p_value"] == pytest.approx(2 * 0.5 ** 5) and x["direction"] == "same"  # 5 of 5 lost: p = 0.0625
