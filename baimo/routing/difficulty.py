"""How hard a prompt is, on one scale shared by every model: the prior behind `baimo/auto`.

The model is the Rasch model of item response theory with explanatory item covariates (the linear logistic
test model, Fischer 1973; De Boeck & Wilson, *Explanatory Item Response Models*, 2004):

    P(model j answers prompt i well) = sigmoid(theta_j - b_i),    b_i = w . x_i + c

- `theta_j` is the model's *ability*, one number per model: a model is represented by it, so a new model needs
  only its ability (from a declared strength, its price, or a few labelled answers), never a new classifier.
- `b_i` is the prompt's *difficulty*, predicted from `x_i`: the prompt tail's embedding (the multilingual
  Universal Sentence Encoder, as the learned router uses) and the learned router's scalar prompt features.
- The scale is fixed by making the mean difficulty of the training prompts 0, so `sigmoid(theta_j)` reads as "the
  share of average benchmark prompts model j answers well": that is what a declared `strength` means.

`fit` estimates w, c and every training model's theta at once, by Newton's method on the stacked
(prompt, model) rows, each benchmark weighted equally. The shipped prior is `baimo/routing/data/auto_prior.npz`,
made by `bench/make_auto_prior.py` from outcome data the project may publish (RouteLLM's Apache-2.0 outcomes and
Baimo's own five-model GSM8K runs); its provenance is stored inside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from baimo.routing.learned import prompt_features, prompt_tail

PRIOR_FILE = "auto_prior.npz"


def sigmoid(z: np.ndarray | float) -> Any:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


@dataclass
class DifficultyModel:
    """b(prompt) = w . standardise(x) + c, with x = [embedding of the tail, scalar features].

    `abilities` holds the theta of the models the prior was fitted on (keyed by their ids in the training data)
    and `meta` the provenance (sources, counts, held-out log-loss).
    """

    mu: np.ndarray            # (d,) column means of x
    sd: np.ndarray            # (d,) column scales of x (features scaled by FEATURE_WEIGHT, as the learned router)
    w: np.ndarray             # (d,) difficulty weights
    c: float                  # difficulty intercept (mean training difficulty is 0)
    features: list[str]       # names of the scalar prompt features appended to the embedding
    tail_chars: int           # characters of the prompt's end that are embedded
    embedder: str             # embedder kind the vectors came from ("use")
    abilities: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def inputs(self, E: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        """(n, d) model inputs from (n, dim) tail embeddings and the prompts themselves."""
        F = prompt_features(prompts, self.features, self.tail_chars)
        X = np.hstack([E, F]) if len(self.features) else E
        return (X - self.mu) / self.sd

    def difficulty(self, E: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        """(n,) difficulty b of each prompt (0 = an average training prompt; +1 is e^1 times the odds of failing)."""
        return self.inputs(E, prompts) @ self.w + self.c

    def tail(self, prompt: str) -> str:
        return prompt_tail(prompt, self.tail_chars)

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        header = {"features": self.features, "tail_chars": self.tail_chars, "embedder": self.embedder,
                  "c": self.c, "abilities": self.abilities, "meta": self.meta}
        np.savez_compressed(tmp, mu=self.mu, sd=self.sd, w=self.w, header=np.array(json.dumps(header)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path | None = None) -> DifficultyModel:
        """The prior at `path`, or the one shipped in the package."""
        source = path or resources.files("baimo.routing").joinpath("data", PRIOR_FILE)
        with source.open("rb") as f, np.load(f) as z:
            header = json.loads(str(z["header"]))
            return cls(mu=z["mu"], sd=z["sd"], w=z["w"], c=float(header["c"]), features=header["features"],
                       tail_chars=int(header["tail_chars"]), embedder=header["embedder"],
                       abilities={k: float(v) for k, v in header["abilities"].items()}, meta=header["meta"])


def fit(X: np.ndarray, Y: np.ndarray, *, l2: float, row_weight: np.ndarray | None = None,
        iters: int = 25) -> tuple[np.ndarray, float, np.ndarray]:
    """Fit sigmoid(theta_j - (w . x_i + c)) to the outcomes Y.

    X: (n, d) standardised inputs. Y: (n, m) outcomes in 0..1, NaN where model j did not answer prompt i.
    row_weight: (n,) weight of each prompt (default 1). l2 penalises w only.
    Returns (w (d,), c, theta (m,)), with c set so that the weighted mean difficulty of the training prompts is 0.
    Newton's method on the (d + m) parameters; raises numpy.linalg.LinAlgError only on degenerate input.
    """
    n, d = X.shape
    m = Y.shape[1]
    rows, models = np.nonzero(~np.isnan(Y))
    y = Y[rows, models]
    rw = np.ones(n) if row_weight is None else row_weight
    sw = rw[rows]
    # parameters: [w (d), theta (m)]; logit = theta[model] - X[row] . w   (c is folded into theta, fixed below)
    params = np.zeros(d + m)
    reg = np.concatenate([np.full(d, l2), np.full(m, 1e-4)])
    Xr = X[rows]
    for _ in range(iters):
        z = params[d:][models] - Xr @ params[:d]
        p = sigmoid(z)
        r = sw * (p - y)
        grad = np.concatenate([-(Xr.T @ r), np.bincount(models, weights=r, minlength=m)]) + reg * params
        s = sw * p * (1 - p)
        Hww = (Xr * s[:, None]).T @ Xr
        Hwt = np.zeros((d, m))
        for j in range(m):
            sel = models == j
            Hwt[:, j] = -(Xr[sel] * s[sel, None]).sum(0)
        Htt = np.diag(np.bincount(models, weights=s, minlength=m))
        H = np.block([[Hww, Hwt], [Hwt.T, Htt]]) + np.diag(reg)
        step = np.linalg.solve(H, grad)
        params -= step
        if np.max(np.abs(step)) < 1e-6:
            break
    w, theta = params[:d], params[d:]
    c = -float(np.average(X @ w, weights=rw))  # mean training difficulty 0; the abilities move with it
    return w, c, theta + c


def ability_map(theta_prior: float, b: np.ndarray, y: np.ndarray, sd: float = 1.0, iters: int = 30) -> float:
    """The MAP ability of one model from its outcomes y (0..1) on prompts of difficulty b, with a N(theta_prior, sd²)
    prior: how production outcomes (ratings, cascade escalations) and a few labelled prompts refine a model's place.
    """
    theta = theta_prior
    for _ in range(iters):
        p = sigmoid(theta - b)
        grad = float(np.sum(y - p)) - (theta - theta_prior) / sd**2
        hess = -float(np.sum(p * (1 - p))) - 1 / sd**2
        step = grad / hess
        theta -= step
        if abs(step) < 1e-8:
            break
    return float(theta)

