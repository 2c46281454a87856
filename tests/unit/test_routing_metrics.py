"""APGR, CPT and the one-knob pick on tiny hand-made curves whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from baimo.routing.metrics import Point, Reference, apgr, auc, cpt, pick, reach, summarize


def test_straight_line_is_the_random_router() -> None:
    xs, ys = [0.25, 0.5, 0.75], [0.25, 0.5, 0.75]
    assert apgr(xs, ys, 0.0, 1.0) == pytest.approx(0.5)
    assert cpt(xs, ys, 0.0, 1.0, 0.5) == pytest.approx(0.5)
    assert cpt(xs, ys, 0.0, 1.0, 0.8) == pytest.approx(0.8)


def test_knee_curve() -> None:
    # (0, 0) -> (0.5, 1) -> (1, 1): AUC = 0.25 + 0.5
    xs, ys = [0.5], [1.0]
    assert auc(xs, ys, 0.0, 1.0) == pytest.approx(0.75)
    assert apgr(xs, ys, 0.0, 1.0) == pytest.approx(0.75)
    assert cpt(xs, ys, 0.0, 1.0, 0.5) == pytest.approx(0.25)
    assert cpt(xs, ys, 0.0, 1.0, 0.8) == pytest.approx(0.4)


def test_apgr_is_relative_to_weak_and_strong() -> None:
    # weak 0.6, strong 0.8, router reaches strong at x=0: everything above the weak line -> APGR 1
    assert apgr([0.0, 0.5], [0.8, 0.8], 0.6, 0.8) == pytest.approx(1.0)
    assert cpt([0.0, 0.5], [0.8, 0.8], 0.6, 0.8, 0.5) == pytest.approx(0.0)


def test_reach_none_when_never_reached_and_first_crossing_otherwise() -> None:
    assert reach([0.5], [0.4], 0.95, 0.0, 0.9) is None
    # curve rises above the target, dips, rises again: the first crossing counts
    assert reach([0.2, 0.4, 0.6], [0.9, 0.5, 0.95], 0.8, 0.5, 1.0) == pytest.approx(0.2 * 0.3 / 0.4)


def test_summarize_cost_reduction_on_two_models() -> None:
    ref = Reference.of(np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([[1.0, 11.0], [1.0, 11.0]]))
    assert (ref.weak, ref.strong, ref.weak_quality, ref.strong_quality) == (0, 1, 0.5, 1.0)
    # the perfect router: half the calls to the strong model give full quality, cost 6 instead of 11
    s = summarize([Point(1.0, 1.0, 6.0, 0.5)], ref)
    assert s["apgr"] == pytest.approx(0.75) and s["cpt50"] == pytest.approx(0.25)
    assert s["cost_reduction_at_target"] == pytest.approx(1 - (1 + 0.45 * 10) / 11, abs=1e-4)


def test_pick_one_knob() -> None:
    points = [Point(0.0, 0.9, 10.0, 1.0), Point(1.0, 0.86, 6.0, 0.5), Point(2.0, 0.7, 1.0, 0.0)]
    assert pick(points, 0.9, target_quality=0.95)[0].param == 1.0
    assert pick(points, 0.9, target_quality=0.99)[0].param == 0.0
    assert pick(points, 0.9, target_quality=1.2) == (points[0], False)
    assert pick(points, 0.9, max_cost=7.0)[0].param == 1.0
    assert pick(points, 0.9, max_cost=0.5) == (points[2], False)
    with pytest.raises(ValueError):
        pick(points, 0.9)


def test_pick_takes_the_middle_of_a_plateau_of_equal_points() -> None:
    # λ 1..5 all give the same held-out choices: the middle λ is kept, not the plateau's edge
    same = [Point(float(lam), 0.86, 6.0, 0.5) for lam in (1, 2, 3, 4, 5)]
    points = [Point(0.0, 0.9, 10.0, 1.0), *same, Point(9.0, 0.7, 1.0, 0.0)]
    assert pick(points, 0.9, target_quality=0.95)[0].param == 3.0
    assert pick(points, 0.9, max_cost=7.0)[0].param == 3.0
    assert pick(points, 0.9, target_quality=0.99)[0].param == 0.0
