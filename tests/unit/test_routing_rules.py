"""Decision rules (utility and threshold), the λ grid, and the two classifiers on data with a known answer."""

from __future__ import annotations

import numpy as np

from baimo.routing.learned import (
    fit_logistic,
    lambda_grid,
    predict_knn,
    predict_logistic,
    threshold_choice,
    utility_choice,
)

P = np.array([[0.5, 0.9, 0.95], [0.9, 0.92, 0.93], [0.1, 0.2, 0.8]])
C = np.array([[0.01, 0.1, 1.0]] * 3)


def test_utility_rule_moves_from_best_to_cheapest_as_lambda_grows() -> None:
    assert utility_choice(P, C, 0.0).tolist() == [2, 2, 2]
    assert utility_choice(P, C, 0.5).tolist() == [1, 0, 2]
    assert utility_choice(P, C, 100.0).tolist() == [0, 0, 0]


def test_utility_ties_go_to_the_cheaper_model() -> None:
    assert utility_choice(np.array([[0.7, 0.7]]), np.array([[0.1, 1.0]]), 0.0).tolist() == [0]


def test_threshold_rule_takes_cheapest_above_t_else_most_likely() -> None:
    assert threshold_choice(P, C, 0.85).tolist() == [1, 0, 2]
    assert threshold_choice(P, C, 0.99).tolist() == [2, 2, 2]
    assert threshold_choice(P, C, 0.0).tolist() == [0, 0, 0]


def test_lambda_grid_spans_all_decisions() -> None:
    grid = lambda_grid(P, C)
    assert grid[0] == 0.0
    choices = {tuple(utility_choice(P, C, lam)) for lam in grid}
    assert (2, 2, 2) in choices and (0, 0, 0) in choices and (1, 0, 2) in choices


def test_logistic_regression_learns_a_separable_rule() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    Y = np.stack([(X[:, 0] > 0), (X[:, 1] < 0)], axis=1).astype(float)
    W = fit_logistic(X, Y, l2=1.0)
    acc = ((predict_logistic(W, X) > 0.5) == Y).mean(axis=0)
    assert (acc > 0.97).all()


def test_knn_averages_the_nearest_outcomes() -> None:
    E = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.14, 0.99]])
    Y = np.array([[1.0], [1.0], [0.0], [0.0]])
    q = np.array([[0.95, 0.3], [0.2, 0.98]])
    assert predict_knn(E, Y, q, 2)[:, 0].tolist() == [1.0, 0.0]
