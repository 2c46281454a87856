"""Add a model to a trained learned router from a few labelled prompts, by representing it through the known models.

A router's kNN memory holds, for every training prompt, the outcome of each known model: that outcome vector
is the prompt's representation in "model space" (the row of the prompts × models matrix that RouteLLM's matrix
factorisation and EmbedLLM factorise). A new model is represented by a small logistic regression on it,

    P(new model answers prompt i well) = σ(a · y_i + c · logit(q_i) + b),

y_i = the known models' outcomes on prompt i, (a ∈ R^m: the new model's embedding in the space of the known
models, b its bias), q_i = the mean outcome of the new model on the labelled prompts nearest to prompt i (its
own kNN, leave-one-out for the labelled ones: what the outcome vector cannot tell apart, e.g. two tasks every
known model finds equally hard, the prompt embedding can), fitted on the ≤ 200 prompts labelled for it.
The fitted model then fills the new model's column of the kNN memory with soft labels (its
actual labels where a labelled prompt is in the memory), and its logistic-regression row is fitted on those, so
the new model is routed like the others with m + 2 parameters learned instead of a whole per-model classifier.
Its costs are imputed the same way: a least-squares line of log cost on the known models' log costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from baimo.errors import InvalidRequest
from baimo.routing.learned import LearnedRouter, Progress, _quiet, fit_costs, fit_logistic, predict_logistic

SAME_PROMPT = 0.9999  # cosine above which a labelled prompt is taken to be a memory prompt (same tail text)
IMPUTE_L2_GRID = (0.01, 0.1, 1.0, 10.0)  # L2 on a, chosen by 5-fold CV log-loss on the labelled prompts


def _memory_rows(router: LearnedRouter, E: np.ndarray) -> np.ndarray:
    """Index of the memory prompt each row of E is (cosine ≥ SAME_PROMPT), or −1."""
    sims = E @ router.knn_E.T
    best = sims.argmax(axis=1)
    return np.where(sims[np.arange(len(E)), best] >= SAME_PROMPT, best, -1)


def choose_l2(Z: np.ndarray, y: np.ndarray, grid: Sequence[float] = IMPUTE_L2_GRID, n_folds: int = 5) -> float:
    """The L2 strength of the grid with the lowest K-fold cross-validated log-loss of σ(a·z + b) on (Z, y)."""
    order = np.random.default_rng(0).permutation(len(y))
    folds = [order[f::n_folds] for f in range(n_folds)]

    def loss(l2: float) -> float:
        total = 0.0
        for f, te in enumerate(folds):
            tr = np.concatenate([folds[g] for g in range(n_folds) if g != f])
            p = np.clip(predict_logistic(fit_logistic(Z[tr], y[tr, None], l2), Z[te])[:, 0], 1e-4, 1 - 1e-4)
            total -= float(np.sum(y[te] * np.log(p) + (1 - y[te]) * np.log(1 - p)))
        return total

    return min(grid, key=loss)


FEW_K = 10  # neighbours among the labelled prompts for q_i


def few_knn(E_few: np.ndarray, y: np.ndarray, E: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """logit of the mean label of the FEW_K labelled prompts most similar to each row of E; `exclude[r]` is the
    labelled prompt row r must not see (itself), or −1. Shrunk towards the mean label by one pseudo-count."""
    S = E @ E_few.T
    hit = exclude >= 0
    S[np.flatnonzero(hit), exclude[hit]] = -np.inf
    k = max(1, min(FEW_K, len(y) - 1))
    top = np.argpartition(-S, k - 1, axis=1)[:, :k]
    q = (y[top].sum(axis=1) + y.mean()) / (k + 1)
    q = np.clip(q, 0.02, 0.98)
    return np.log(q / (1 - q))


def _filled(Y: np.ndarray) -> np.ndarray:
    """Y with missing labels (NaN) replaced by the column mean."""
    return np.where(np.isnan(Y), np.nanmean(Y, axis=0), Y)


def add_model(router: LearnedRouter, name: str, prompts: Sequence[str], scores: np.ndarray,
              costs: np.ndarray | None = None, *, l2: float | None = None, progress: Progress = _quiet,
              X: np.ndarray | None = None) -> dict[str, Any]:
    """Add model `name` to `router` in place from its outcomes on a few prompts; returns a summary.

    scores: (n,) the new model's quality per prompt in 0..1; costs: (n,) USD per prompt (None: the mean of the
    known models' costs). l2: the L2 strength on the model embedding (None: `choose_l2`). X: the prompts'
    router input if already embedded. λ and its calibration table are
    kept (re-run `baimo router calibrate` on held-out outcomes that include the new model to re-pick λ).
    Raises InvalidRequest for a model the router already has or fewer than 10 labelled prompts.
    """
    if name in router.models:
        raise InvalidRequest(f"the router already routes to {name!r}")
    scores = np.asarray(scores, dtype=np.float64)
    if len(prompts) != len(scores) or len(prompts) < 10:
        raise InvalidRequest(f"need at least 10 labelled prompts for {name!r}, got {len(prompts)}")
    if X is None:
        X = router.embed(prompts, progress=progress)
    d = router.knn_E.shape[1]
    rows = _memory_rows(router, X[:, :d].astype(np.float32))
    # the known models' outcomes on the labelled prompts: observed where the prompt is in memory, else predicted
    Z = router.probabilities(X)
    Y_mem = _filled(router.knn_Y.astype(np.float64))
    Z[rows >= 0] = Y_mem[rows[rows >= 0]]
    E_few = X[:, :d].astype(np.float64)
    Z = np.hstack([Z, few_knn(E_few, scores, E_few, np.arange(len(scores)))[:, None]])
    if l2 is None:
        l2 = choose_l2(Z, scores)
    w = fit_logistic(Z, scores[:, None], l2)[0]
    exclude = np.full(len(Y_mem), -1)
    exclude[rows[rows >= 0]] = np.flatnonzero(rows >= 0)
    q_mem = few_knn(E_few, scores, router.knn_E.astype(np.float64), exclude)
    imputed = predict_logistic(w[None, :], np.hstack([Y_mem, q_mem[:, None]]))[:, 0]
    imputed[rows[rows >= 0]] = scores[rows >= 0]
    router.knn_Y = np.hstack([router.knn_Y, imputed[:, None]])
    # costs: log-linear in the known models' log costs (answer length is shared across models), else the mean
    if router.knn_C is not None:
        C_mem = router.knn_C.astype(np.float64)
        logC = np.log(np.maximum(_filled(C_mem), 1e-12))
        if costs is not None and (rows >= 0).sum() >= 5:
            lc = np.log(np.maximum(np.asarray(costs, dtype=np.float64)[rows >= 0], 1e-12))
            A = np.hstack([logC[rows[rows >= 0]], np.ones(((rows >= 0).sum(), 1))])
            coef = np.linalg.solve(A.T @ A + 1e-3 * np.eye(A.shape[1]), A.T @ lc)
            c_new = np.exp(np.hstack([logC, np.ones((len(logC), 1))]) @ coef)
        elif costs is not None:
            c_new = np.full(len(C_mem), float(np.mean(costs)))
        else:
            c_new = np.nanmean(C_mem, axis=1)
        router.knn_C = np.hstack([C_mem, c_new[:, None]])
    # the prompt-length cost model and the logistic-regression row
    few_costs = np.asarray(costs, dtype=np.float64) if costs is not None else \
        router.predicted_costs(prompts, X).mean(axis=1)
    a, b = fit_costs(prompts, few_costs[:, None])
    router.cost_a, router.cost_b = np.append(router.cost_a, a), np.append(router.cost_b, b)
    if router.hyper.blend > 0:
        X_mem = router.knn_E.astype(np.float64)
        if router.features:
            X_mem = np.hstack([X_mem, router.knn_F]) if router.knn_F is not None else None
        row = fit_logistic((X_mem - router.mu) / router.sd, imputed[:, None], router.hyper.l2)[0] \
            if X_mem is not None else np.zeros(router.W.shape[1])
    else:
        row = np.zeros(router.W.shape[1])
    router.W = np.vstack([router.W, row])
    router.models = [*router.models, name]
    embedding = {m: round(float(v), 4) for m, v in zip(router.models[:-1], w[:-2], strict=True)}
    summary = {"model": name, "labelled": len(prompts), "in_memory": int((rows >= 0).sum()),
               "mean_score": round(float(scores.mean()), 4), "imputed_mean": round(float(imputed.mean()), 4),
               "model_embedding": embedding, "own_knn_weight": round(float(w[-2]), 4),
               "bias": round(float(w[-1]), 4), "l2": l2}
    router.stats.setdefault("added_models", {})[name] = summary
    return summary
