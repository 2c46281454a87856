"""The cost–quality Pareto front: cheaper and more accurate dominates; ties and sweeps are kept right."""

from __future__ import annotations

from baimo.evaluation.frontier import Point, dominates, pareto_front, points_of
from tests.support.eval_runs import make_run


def _labels(points: list[Point]) -> list[str]:
    return [p.label for p in points]


def test_dominance_needs_no_worse_on_both_and_better_on_one() -> None:
    cheap_good, dear_bad = Point("a", 0.001, 0.8), Point("b", 0.01, 0.7)
    assert dominates(cheap_good, dear_bad) and not dominates(dear_bad, cheap_good)
    assert not dominates(cheap_good, cheap_good)  # equal points do not dominate each other
    assert not dominates(Point("c", 0.0, 0.5), Point("d", 0.01, 0.9))  # a trade-off: neither dominates


def test_front_is_cheapest_first_and_drops_dominated_points() -> None:
    points = [Point("strong", 0.01, 0.92), Point("local-big", 0.0, 0.55), Point("local-small", 0.0, 0.30),
              Point("mid", 0.004, 0.50), Point("router", 0.003, 0.88), Point("pricey-bad", 0.02, 0.90)]
    assert _labels(pareto_front(points)) == ["local-big", "router", "strong"]
    front = pareto_front(points)
    assert all(not dominates(q, p) for p in front for q in points)  # nothing beats a member
    assert all(any(dominates(p, q) for p in front) for q in points if q not in front)  # every other one is beaten


def test_ties_are_all_on_the_front_and_empty_input_gives_empty_front() -> None:
    assert _labels(pareto_front([Point("x", 0.1, 0.5), Point("y", 0.1, 0.5), Point("z", 0.2, 0.5)])) == ["x", "y"]
    assert pareto_front([]) == []


def test_points_of_a_run_name_sweep_points_by_router_and_lambda() -> None:
    run = make_run({"local/a": [True, False], "baimo/auto@0.3": [True, True]}, cost_per_item={"baimo/auto@0.3": 0.002},
                   sweep={"baimo/auto@0.3": ("baimo/auto", 0.3)})
    assert points_of(run["targets"]) == [Point("local/a", 0.0, 0.5), Point("baimo/auto λ=0.3", 0.002, 1.0)]
