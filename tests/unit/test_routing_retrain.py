"""Folding partially labelled production outcomes into a trained learned router."""

from __future__ import annotations

import numpy as np

from baimo.routing import learned


def test_masked_fit_and_knn_ignore_missing_labels() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = (X[:, 0] > 0).astype(float)
    Y = np.stack([y, np.full(80, np.nan)], axis=1)
    Y[40:, 1] = 1 - y[40:]  # the second model is labelled on half the rows only
    W = learned.fit_logistic(X, Y, l2=1.0)
    P = learned.predict_logistic(W, X)
    assert ((P[:, 0] > 0.5) == (y > 0.5)).mean() > 0.9
    assert ((P[:, 1] > 0.5) == (y < 0.5)).mean() > 0.9
    E = X / np.linalg.norm(X, axis=1, keepdims=True)
    K = learned.predict_knn(E, Y, E[:5], k=5)
    assert not np.isnan(K).any()


def test_retrain_moves_probabilities_towards_the_new_outcomes() -> None:
    prompts = [f"Say hello to friend number {i}." for i in range(12)] + \
              [f"Compute {i} * {i + 7} + {3 * i}." for i in range(12)]
    scores = np.array([[1.0, 1.0]] * 12 + [[0.0, 1.0]] * 12)
    costs = np.array([[0.001, 0.01]] * 24)
    embedder = learned.make_embedder()
    E = learned.embed_prompts(prompts, embedder)
    router, _ = learned.train(prompts, ["cheap", "strong"], scores, costs, E)
    router.embedder_obj = embedder
    probe = "Say hello to friend number 99."
    before = router.probabilities(router.embed([probe]))[0, 0]
    learned.retrain(router, [f"Say hello to friend number {i}." for i in range(40, 70)], [{"cheap": 0.0}] * 30)
    after = router.probabilities(router.embed([probe]))[0, 0]
    assert after < before - 0.1
    assert router.stats["n_production_outcomes"] == 30
    assert router.knn_Y.shape == (54, 2) and np.isnan(router.knn_Y[24:, 1]).all()
