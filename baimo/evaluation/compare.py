"""What changed between two evaluation runs of the same suite: per target, the accuracy change with McNemar's
exact test on the paired items, and the cost and latency changes.

Paired items are those both runs scored for the target (same `item_id`, `correct` not null in both). McNemar's
test (McNemar 1947; the exact form is a two-sided binomial test of the discordant pairs, b ~ Bin(b + c, 1/2),
`baimo.evaluation.stats.paired_mcnemar`) asks whether the items only A got right and those only B got right are
unbalanced by more than chance; a change with p < `ALPHA` is flagged `significant`.
"""

from __future__ import annotations

from typing import Any

from baimo.evaluation.stats import paired_mcnemar

ALPHA = 0.05  # the significance level of a flagged change (two-sided)


def _name(t: dict[str, Any]) -> str:
    return t["id"] if t.get("lam") is None else f"{t.get('router') or t['id']} λ={t['lam']:g}"


def outcomes(run: dict[str, Any], target: str) -> dict[str, bool]:
    """{item_id: correct} of `target`'s scored items in `run` (items with `correct` null are left out)."""
    return {i["item_id"]: bool(i["correct"]) for i in run.get("items", [])
            if i["target"] == target and i["correct"] is not None}


def compare_targets(a: dict[str, Any], b: dict[str, Any], run_a: dict[str, Any], run_b: dict[str, Any],
                    alpha: float = ALPHA) -> dict[str, Any]:
    """One target's change from run A to run B (a, b: its `targets` entries). Accuracy is over the paired items
    (so a limit or an error in one run does not fake a change); `lost` counts items right in A only, `gained`
    items right in B only; `p_value` is McNemar's exact p (1.0 with no discordant pair); `direction` is
    "better", "worse" or "same" (not significant at `alpha`)."""
    first, second = outcomes(run_a, a["id"]), outcomes(run_b, b["id"])
    test = paired_mcnemar(first, second)
    n = test["n"]
    acc_a = sum(first[k] for k in first if k in second) / n if n else None
    acc_b = sum(second[k] for k in first if k in second) / n if n else None
    significant = test["p_value"] < alpha
    delta = None if acc_a is None or acc_b is None else acc_b - acc_a
    direction = "same" if not significant or not delta else ("better" if delta > 0 else "worse")
    lat_a, lat_b = a.get("latency_ms") or {}, b.get("latency_ms") or {}
    return {"target": _name(a), "paired": n, "lost": test["b"], "gained": test["c"],
            "accuracy_a": acc_a, "accuracy_b": acc_b, "delta_accuracy": delta, "p_value": test["p_value"],
            "significant": significant, "direction": direction,
            "cost_per_item_a": a.get("cost_per_item_usd"), "cost_per_item_b": b.get("cost_per_item_usd"),
            "delta_cost_per_item_usd": (b.get("cost_per_item_usd") or 0.0) - (a.get("cost_per_item_usd") or 0.0),
            "latency_p50_a": lat_a.get("p50"), "latency_p50_b": lat_b.get("p50"),
            "delta_latency_p50_ms": (lat_b.get("p50") or 0.0) - (lat_a.get("p50") or 0.0),
            "delta_latency_p95_ms": (lat_b.get("p95") or 0.0) - (lat_a.get("p95") or 0.0)}


def compare_runs(run_a: dict[str, Any], run_b: dict[str, Any], alpha: float = ALPHA) -> dict[str, Any]:
    """Run A (before) against run B (after): `targets` holds one `compare_targets` entry per target present in
    both (matched by id), `only_a` / `only_b` the others; `suite_a` / `suite_b` name the suites (comparing runs of
    different suites pairs nothing: every target has 0 paired items)."""
    by_a = {_name(t): t for t in run_a.get("targets", [])}
    by_b = {_name(t): t for t in run_b.get("targets", [])}
    return {"run_a": run_a.get("run_id"), "run_b": run_b.get("run_id"),
            "suite_a": (run_a.get("suite") or {}).get("name"), "suite_b": (run_b.get("suite") or {}).get("name"),
            "alpha": alpha, "test": "McNemar exact (two-sided binomial on discordant pairs)",
            "targets": [compare_targets(by_a[k], by_b[k], run_a, run_b, alpha) for k in by_a if k in by_b],
            "only_a": [k for k in by_a if k not in by_b], "only_b": [k for k in by_b if k not in by_a]}
