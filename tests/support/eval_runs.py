"""Hand-made evaluation run JSONs (the contract shape of `baimo eval run --json`) for report and compare tests.

`make_run(correct_by_target)` builds a run whose per-target numbers are computed from its items, so a test that
changes an item's outcome sees every derived number move with it."""

from __future__ import annotations

from typing import Any

from baimo.evaluation.stats import wilson


def make_run(outcomes: dict[str, list[bool]], *, run_id: str = "run-a", cost_per_item: dict[str, float] | None = None,
             latency: dict[str, float] | None = None, sweep: dict[str, tuple[str, float]] | None = None,
             served: dict[str, dict[str, float]] | None = None, suite: str = "gsm8k") -> dict[str, Any]:
    """A finished run: `outcomes[target]` lists each item's correctness (item ids q0, q1, ...); `sweep[target]` =
    (router, λ) makes the target a point of that router's λ sweep."""
    cost_per_item = cost_per_item or {}
    latency = latency or {}
    sweep = sweep or {}
    targets, items = [], []
    for target, marks in outcomes.items():
        n, k = len(marks), sum(marks)
        c = cost_per_item.get(target, 0.0)
        lat = latency.get(target, 100.0)
        router, lam = sweep.get(target, (None, None))
        targets.append({"id": target, "kind": "router" if router else "model", "n": n, "scored": n, "correct": k,
                        "accuracy": k / n, "ci95": list(wilson(k, n)), "mean_score": None, "cost_usd": c * n,
                        "cost_per_item_usd": c, "prompt_tokens": 50 * n, "completion_tokens": 20 * n,
                        "latency_ms": {"p50": lat, "p95": 2 * lat},
                        "served_share": (served or {}).get(target, {target: 1.0}), "errors": 0,
                        "lam": lam, "router": router})
        items += [{"target": target, "item_id": f"q{i}", "correct": m, "score": None, "extracted": "1",
                   "expected": "1" if m else "2", "served_model": target, "cost_usd": c, "latency_ms": lat,
                   "cached": False, "error": None} for i, m in enumerate(marks)]
    return {"run_id": run_id, "created_at": "2026-12-01T05:00:00+00:00", "finished_at": "2026-12-01T05:10:00+00:00",
            "status": "finished",
            "suite": {"name": suite, "kind": "numeric", "items": len(next(iter(outcomes.values()), [])),
                      "source": f"builtin:{suite}", "license": "MIT"},
            "params": {"limit": None, "few_shot": 0, "cot": False, "temperature": 0, "max_tokens": 256, "seed": 0},
            "targets": targets, "items": items}
