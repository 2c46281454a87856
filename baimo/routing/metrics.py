"""Cost–quality curves of routing rules, RouteLLM's APGR and CPT metrics, and picking λ for one knob.

RouteLLM measures quality against the share of calls to the strong model. With more than two models we
use cost instead: x = (average cost − cost of the cheapest single model) / (cost of the best single model
− cost of the cheapest), so x=0 is "always cheapest" and x=1 "always best"; with two models and equal
prompt costs this is exactly the strong-call share. "weak" is the cheapest single model and "strong" the
single model with the highest quality. Both axes are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from baimo.routing.learned import lambda_grid, threshold_choice, utility_choice


@dataclass
class Point:
    """One operating point of a rule: its parameter, mean quality, mean USD per request, best-model share."""

    param: float
    quality: float
    cost: float
    strong_share: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 10) for k, v in asdict(self).items()}


@dataclass
class Reference:
    """Single-model anchors: the cheapest (weak) and the best-quality (strong) model on this data."""

    weak: int
    strong: int
    weak_quality: float
    strong_quality: float
    weak_cost: float
    strong_cost: float

    @classmethod
    def of(cls, Y: np.ndarray, C: np.ndarray) -> Reference:
        q, c = Y.mean(0), C.mean(0)
        strong = int(np.argmax(q - 1e-12 * c))
        weak = int(np.argmin(c))
        return cls(weak, strong, float(q[weak]), float(q[strong]), float(c[weak]), float(c[strong]))

    def x_cost(self, cost: float) -> float:
        span = self.strong_cost - self.weak_cost
        return (cost - self.weak_cost) / span if span > 0 else 0.0


def evaluate(choice: np.ndarray, Y: np.ndarray, C: np.ndarray, strong: int, param: float = 0.0) -> Point:
    rows = np.arange(len(choice))
    return Point(param, float(Y[rows, choice].mean()), float(C[rows, choice].mean()), float((choice == strong).mean()))


def sweep(rule: Callable[[np.ndarray, np.ndarray, float], np.ndarray], P: np.ndarray, C_rule: np.ndarray,
          params: Sequence[float], Y: np.ndarray, C: np.ndarray, strong: int) -> list[Point]:
    """Operating points of `rule(P, C_rule, param)` judged by the true scores Y and costs C."""
    return [evaluate(rule(P, C_rule, float(p)), Y, C, strong, float(p)) for p in params]


# λ values `calibrate` sweeps: on RouterBench the curve is steep near 95 % (≈ 10 points of cost per point of quality),
# so the 120 of the default grid left the picked λ up to ~1 point of cost short of the target's; 400 measured
# 0.2–0.9 points cheaper at the same deployed quality (docs/routing.md). Each point is one argmax over (n, m).
CALIBRATION_POINTS = 400


def utility_curve(P: np.ndarray, C_norm: np.ndarray, Y: np.ndarray, C: np.ndarray, strong: int,
                  points: int = 120) -> list[Point]:
    """Operating points of the utility rule over `points` quantiles of λ's break-even ratios (`lambda_grid`)."""
    return sweep(utility_choice, P, C_norm, lambda_grid(P, C_norm, points), Y, C, strong)


def threshold_curve(P: np.ndarray, C_norm: np.ndarray, Y: np.ndarray, C: np.ndarray, strong: int) -> list[Point]:
    return sweep(threshold_choice, P, C_norm, np.linspace(0, 1, 101), Y, C, strong)


def oracle_curve(Y: np.ndarray, C: np.ndarray, strong: int) -> list[Point]:
    """The utility rule fed the true scores: what a perfect predictor would reach."""
    C_norm = C / C.mean(0).max()
    return sweep(utility_choice, Y, C_norm, lambda_grid(Y + 1e-9 * np.arange(Y.shape[1]), C_norm), Y, C, strong)


def _curve(xs: Sequence[float], ys: Sequence[float], weak: float, strong: float) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by x in [0, 1], anchored at (0, weak) and (1, strong)."""
    x = np.concatenate([[0.0], np.clip(np.asarray(xs, dtype=float), 0, 1), [1.0]])
    y = np.concatenate([[weak], np.asarray(ys, dtype=float), [strong]])
    order = np.lexsort((y, x))
    return x[order], y[order]


def auc(xs: Sequence[float], ys: Sequence[float], weak: float, strong: float) -> float:
    x, y = _curve(xs, ys, weak, strong)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def apgr(xs: Sequence[float], ys: Sequence[float], weak: float, strong: float) -> float:
    """(AUC_router − AUC_weak) / (AUC_strong − AUC_weak) over x in [0, 1]; 0.5 for a random mix."""
    if strong == weak:
        return float("nan")
    return (auc(xs, ys, weak, strong) - weak) / (strong - weak)


def reach(xs: Sequence[float], ys: Sequence[float], target: float, weak: float, strong: float) -> float | None:
    """Smallest x at which the piecewise-linear curve reaches `target` quality (None if it never does)."""
    x, y = _curve(xs, ys, weak, strong)
    if y[0] >= target:
        return float(x[0])
    for i in range(1, len(x)):
        if y[i] >= target:
            if y[i] == y[i - 1]:
                return float(x[i])
            return float(x[i - 1] + (target - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))
    return None


def cpt(xs: Sequence[float], ys: Sequence[float], weak: float, strong: float, frac: float) -> float | None:
    """Share (of strong calls, or normalised cost) needed to reach weak + frac·(strong − weak)."""
    return reach(xs, ys, weak + frac * (strong - weak), weak, strong)


def summarize(points: list[Point], ref: Reference, quality_frac: float = 0.95) -> dict[str, Any]:
    """APGR and CPT on both axes, and the cost at `quality_frac` of the best single model's quality."""
    wq, sq = ref.weak_quality, ref.strong_quality
    share_x = [p.strong_share for p in points]
    cost_x = [ref.x_cost(p.cost) for p in points]
    ys = [p.quality for p in points]
    x95 = reach(cost_x, ys, quality_frac * sq, wq, sq)
    cost95 = None if x95 is None else ref.weak_cost + x95 * (ref.strong_cost - ref.weak_cost)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 4)

    return {"apgr": r(apgr(share_x, ys, wq, sq)), "cpt50": r(cpt(share_x, ys, wq, sq, 0.5)),
            "cpt80": r(cpt(share_x, ys, wq, sq, 0.8)),
            "apgr_cost": r(apgr(cost_x, ys, wq, sq)), "cpt50_cost": r(cpt(cost_x, ys, wq, sq, 0.5)),
            "cpt80_cost": r(cpt(cost_x, ys, wq, sq, 0.8)),
            "quality_target": round(quality_frac * sq, 4),
            "strong_share_at_target": r(reach(share_x, ys, quality_frac * sq, wq, sq)),
            "cost_at_target": cost95,
            "cost_reduction_at_target": None if cost95 is None else r(1 - cost95 / ref.strong_cost),
            "max_quality": r(max(ys)) if ys else None}


def pick(points: list[Point], best_quality: float, *, target_quality: float | None = None,
         max_cost: float | None = None) -> tuple[Point, bool]:
    """The operating point for one knob; (point, met) where met=False means the knob could not be met.

    target_quality (fraction of the best single model's quality): the cheapest point reaching it, else
    the best-quality point. max_cost (USD per request): the best-quality point within it, else the cheapest.
    Where several λ give that same (quality, cost) (a plateau: the held-out choices do not change between
    them), the middle one by λ is taken, not the plateau's edge, where a slightly different P on new prompts
    already flips choices.
    """
    if (target_quality is None) == (max_cost is None):
        raise ValueError("give exactly one of target_quality and max_cost")
    if target_quality is not None:
        ok = [p for p in points if p.quality >= target_quality * best_quality - 1e-12]
        if ok:
            return _middle(points, min(ok, key=lambda p: (p.cost, -p.quality))), True
        return _middle(points, max(points, key=lambda p: (p.quality, -p.cost))), False
    assert max_cost is not None
    ok = [p for p in points if p.cost <= max_cost + 1e-15]
    if ok:
        return _middle(points, max(ok, key=lambda p: (p.quality, -p.cost))), True
    return _middle(points, min(points, key=lambda p: (p.cost, -p.quality))), False


def _middle(points: list[Point], chosen: Point) -> Point:
    """The point of median λ among those with exactly `chosen`'s quality and cost."""
    same = sorted((p for p in points if p.quality == chosen.quality and p.cost == chosen.cost), key=lambda p: p.param)
    return same[(len(same) - 1) // 2] if same else chosen


def calibrate(router: Any, P: np.ndarray, prompts: Sequence[str], Y: np.ndarray, C: np.ndarray, *,
              target_quality: float | None = None, max_cost: float | None = None, source: str,
              C_pred: np.ndarray | None = None, X: np.ndarray | None = None,
              lambda_points: int = CALIBRATION_POINTS) -> dict[str, Any]:
    """Sweep λ on (P, true Y, C), pick it for the knob, and store λ and the sweep table on the router.

    P: held-out probabilities (`train`'s second result, or the router's on held-out data); `lambda_points`: λ
    values swept.
    The rule sees predicted costs: `C_pred` (n, m, USD; e.g. `router.oof_costs` after `train`), else the
    router's prediction from the prompts' input X (`router.embed`'s output), else from the prompt length.
    """
    ref = Reference.of(Y, C)
    if C_pred is None:
        C_pred = router.predicted_costs(prompts, X)
    points = utility_curve(P, C_pred / router.cost_scale, Y, C, ref.strong, lambda_points)
    point, met = pick(points, ref.strong_quality, target_quality=target_quality, max_cost=max_cost)
    router.lam = point.param
    router.calibration = {
        "source": source, "n": len(prompts), "target_quality": target_quality, "max_cost": max_cost, "met": met,
        "best_model": router.models[ref.strong], "best_quality": ref.strong_quality,
        "best_cost": ref.strong_cost, "expected": point.to_dict(),
        "table": [p.to_dict() for p in points]}
    return router.calibration


def lambda_for(calibration: dict[str, Any], *, target_quality: float | None = None,
               max_cost: float | None = None) -> tuple[float, bool]:
    """Re-pick λ for a new knob from a router's stored calibration table."""
    points = [Point(**p) for p in calibration["table"]]
    point, met = pick(points, calibration["best_quality"], target_quality=target_quality, max_cost=max_cost)
    return point.param, met


def random_curve(ref: Reference, steps: int = 11) -> list[Point]:
    """Expected points of sending a random share s of requests to the best model and the rest to the cheapest."""
    return [Point(s, ref.weak_quality + s * (ref.strong_quality - ref.weak_quality),
                  ref.weak_cost + s * (ref.strong_cost - ref.weak_cost), s) for s in np.linspace(0, 1, steps)]


def bench_report(router: Any, P: np.ndarray, prompts: Sequence[str], Y: np.ndarray, C: np.ndarray,
                 quality_frac: float = 0.95, X: np.ndarray | None = None) -> dict[str, Any]:
    """Everything `baimo router bench` prints: single models, the router's curves and metrics, baselines.

    X: the prompts' router input (`router.embed`'s output), for routers that predict costs by kNN.
    """
    ref = Reference.of(Y, C)
    C_pred = router.predicted_costs(prompts, X)
    C_norm = C_pred / router.cost_scale
    curves = {"learned": utility_curve(P, C_norm, Y, C, ref.strong),
              "threshold_rule": threshold_curve(P, C_norm, Y, C, ref.strong),
              "oracle": oracle_curve(Y, C, ref.strong),
              "random": random_curve(ref)}
    report: dict[str, Any] = {
        "n": len(prompts),
        "models": {m: {"quality": round(float(q), 4), "cost": float(c)}
                   for m, q, c in zip(router.models, Y.mean(0), C.mean(0), strict=True)},
        "reference": {"weak_model": router.models[ref.weak], "strong_model": router.models[ref.strong],
                      "weak_quality": ref.weak_quality, "strong_quality": ref.strong_quality,
                      "weak_cost": ref.weak_cost, "strong_cost": ref.strong_cost,
                      "axes": "apgr/cpt*: share of calls to the strong model; *_cost: normalised cost"},
    }
    for name, points in curves.items():
        report[name] = {**summarize(points, ref, quality_frac), "curve": [p.to_dict() for p in points]}
    op = evaluate(router.choose_index(P, C_pred), Y, C, ref.strong, router.lam)
    report["learned"]["operating_point"] = op.to_dict()
    return report
