"""The cost–quality Pareto front of an evaluation run: the targets no other target beats on both cost and accuracy.

A point p dominates q when p costs no more and is at least as accurate, and is strictly better on one of the two
(the usual Pareto dominance for minimising cost and maximising accuracy; e.g. Ehrgott, *Multicriteria
Optimization*, 2005, def. 2.1). The front is the set of points no other point dominates; it is what RouteLLM and
RouterBench plot as the "cost–quality frontier" a router should reach.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    """One target (model, persona, router, or one λ of a router's sweep) on the cost–quality plane.

    `cost`: US dollars per item (any non-negative unit works, as long as all points share it);
    `accuracy`: fraction correct in [0, 1] (or any higher-is-better quality score)."""

    label: str
    cost: float
    accuracy: float


def dominates(p: Point, q: Point) -> bool:
    """True when `p` is no costlier and no less accurate than `q`, and strictly better on one of them."""
    return p.cost <= q.cost and p.accuracy >= q.accuracy and (p.cost < q.cost or p.accuracy > q.accuracy)


def pareto_front(points: Iterable[Point]) -> list[Point]:
    """The non-dominated points, cheapest first (ties of equal cost and accuracy are all kept).

    O(n log n): sorted by cost ascending then accuracy descending, a point is on the front when it is strictly
    more accurate than every cheaper point kept so far, or equal to the last kept point in both coordinates."""
    ordered = sorted(points, key=lambda p: (p.cost, -p.accuracy, p.label))
    front: list[Point] = []
    for p in ordered:
        if not front or p.accuracy > front[-1].accuracy:
            front.append(p)
        elif p.accuracy == front[-1].accuracy and p.cost == front[-1].cost:
            front.append(p)  # a tie: neither dominates the other
    return front


def points_of(targets: Sequence[dict]) -> list[Point]:
    """The points of a run's `targets` (run JSON): cost per item (USD) against accuracy; targets that scored no
    item are left out (their accuracy means nothing)."""
    return [Point(t["id"] if t.get("lam") is None else f"{t.get('router') or t['id']} λ={t['lam']:g}",
                  float(t.get("cost_per_item_usd") or 0.0), float(t.get("accuracy") or 0.0))
            for t in targets if t.get("scored", t.get("n", 0))]
