"""`baimo/auto`: the hybrid router a fresh install uses, over every configured model, with no training step.

For a request, each candidate model j gets P_j = sigmoid(theta_j - b), the chance it answers well (the Rasch
model of `baimo.routing.difficulty`): b is the prompt's difficulty, predicted by the shipped prior from the
prompt's embedding, and theta_j the model's ability. Then it picks

    argmax_j  P_j - lam * cost_j / max_k cost_k            (one knob: `lam`, 0 = best model, large = cheapest)

the utility rule of `docs/routing.md`, with cost_j the estimated USD of this request on model j (prompt tokens
and an expected answer length at the model's prices). Local models cost nothing billed; so that the router still
prefers a small local model when it suffices, a local model is charged a *shadow* price for routing only,
LOCAL_PRICE_PER_GB USD per million tokens per GB of weights (compute grows with the bytes read per token).

Where theta_j comes from, first match wins (the route's `abilities` say which):
1. `outcomes`: refined by production outcomes (ratings, cascade escalations) with `baimo router retrain baimo/auto`
   or the server's schedule: the MAP ability given the outcomes, with the prior below as its mean;
2. `declared`: the model's `strength` in baimo.yaml (or its preset): theta = logit(strength);
3. `measured`: the prior was fitted on it (the catalogue's local models, by catalogue name);
4. `price`: a remote model without a strength: interpolated on log price between the prior's two reference
   models, Mixtral-8x7B ($0.24 per million tokens) and GPT-4 ($24.7), the RouteLLM paper's prices
   (arXiv 2406.18665, Sec. 5); an unpriced remote model is taken as Mixtral-class.

The other candidates follow the chosen one in utility order, as fallbacks.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from baimo.backends import catalogue
from baimo.backends.base import message_text
from baimo.config import ModelConfig, RouterConfig
from baimo.routing.difficulty import DifficultyModel, ability_map, logit, sigmoid
from baimo.routing.outcomes import estimate_tokens
from baimo.routing.request import RouteRequest

if TYPE_CHECKING:
    from baimo.routing.strategies import RoutePlan, RouterSet

DEFAULT_LAM = 0.25
LOCAL_PRICE_PER_GB = 0.05      # USD per million tokens per GB of weights: a routing tie-break, never billed
EXPECTED_ANSWER_TOKENS = 256   # as the RouteLLM cost model; the request's max_tokens when smaller
REFERENCE_PRICES = {"mixtral-8x7b": 0.24, "gpt-4": 24.7}  # USD per million tokens (arXiv 2406.18665)
ABILITY_FILE = "abilities.json"
RECHECK_S = 2.0                # seconds between checks for a newly pulled model or refitted abilities

_prior_lock = threading.Lock()
_prior: DifficultyModel | None = None


def shipped_prior() -> DifficultyModel:
    """The difficulty prior shipped in the package (loaded once per process)."""
    global _prior
    with _prior_lock:
        if _prior is None:
            _prior = DifficultyModel.load()
        return _prior


def router_dir(routers_dir: Path, router_id: str) -> Path:
    """Where a router's state lives: its id with '/' made safe (`baimo/auto` -> `baimo__auto`)."""
    return routers_dir / router_id.replace("/", "__")


def load_refined(routers_dir: Path, router_id: str) -> dict[str, dict[str, Any]]:
    """model id -> {"theta", "n", "prior"} written by `refine`; empty when never retrained."""
    path = router_dir(routers_dir, router_id) / ABILITY_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("models", {})


def blended_price(m: ModelConfig) -> float:
    """USD per million tokens, input and output weighted 3:1 (a chat prompt is longer than its answer)."""
    return (3 * m.price_input + m.price_output) / 4


def local_size_gb(m: ModelConfig, model_cache: Path) -> float:
    """GB of weights of a local model: the catalogue's size, or the file's (1 when neither is known)."""
    if m.catalogue and m.catalogue in catalogue.CATALOGUE:
        return catalogue.CATALOGUE[m.catalogue].size_mb / 1000
    path = catalogue.weights_path(m.path, m.catalogue, model_cache) if m.path else None
    return path.stat().st_size / 1e9 if path is not None and path.is_file() else 1.0


def is_local(m: ModelConfig) -> bool:
    return m.kind == "llamacpp"


def is_available(m: ModelConfig, model_cache: Path) -> bool:
    """A local model is a candidate only once its file is there (`baimo models pull`); remote ones always are."""
    return not is_local(m) or catalogue.weights_path(m.path, m.catalogue, model_cache).is_file()


def ability_from_price(price: float, prior: DifficultyModel) -> float:
    """theta of a model known only by its blended price (USD per million tokens): log-linear between the prior's
    two reference models at the RouteLLM paper's prices, clipped to 1.5 below the cheaper and 0.5 above the
    dearer; an unpriced model is taken as the cheaper reference (Mixtral-class)."""
    lo, hi = (prior.abilities.get(k, 0.0) for k in REFERENCE_PRICES)
    if price <= 0:
        return lo
    x = (math.log(price) - math.log(REFERENCE_PRICES["mixtral-8x7b"])) / (
        math.log(REFERENCE_PRICES["gpt-4"]) - math.log(REFERENCE_PRICES["mixtral-8x7b"]))
    return min(max(lo + x * (hi - lo), lo - 1.5), hi + 0.5)


def prior_ability(m: ModelConfig, prior: DifficultyModel) -> tuple[float, str]:
    """(theta, where it came from) for one model before any production outcome; see the module docstring."""
    if m.strength is not None:
        return logit(m.strength), "declared"
    if m.catalogue and f"catalogue:{m.catalogue}" in prior.abilities:
        return prior.abilities[f"catalogue:{m.catalogue}"], "measured"
    if is_local(m):
        return prior.abilities.get("mixtral-8x7b", 0.0) - 2.0, "default-local"
    return ability_from_price(blended_price(m), prior), "price"


@dataclass
class Candidate:
    config: ModelConfig
    theta: float
    source: str          # outcomes | declared | measured | price | default-local
    routing_price: tuple[float, float]  # USD per million (input, output) tokens used to route


def most_able(cands: list[Candidate]) -> str | None:
    """Id of the candidate with the highest ability (ties: the dearer one); None when there is none."""
    return max(cands, key=lambda c: (c.theta, c.config.price_output)).config.id if cands else None


def describe_difficulty(b: float) -> str:
    return "easy" if b < -0.75 else "hard" if b > 0.75 else "average"


class AutoStrategy:
    """The `auto` strategy: see the module docstring. `plan` is what the chat service calls per request."""

    def __init__(self, config: RouterConfig, routers: RouterSet) -> None:
        self.config = config
        self.routers = routers
        self._embedder: Any = None
        self._lock = threading.Lock()
        self._cache: list[Candidate] | None = None
        self._cache_key: tuple[Any, ...] = ()
        self._cache_checked = 0.0
        self._arrays: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros((0, 2)))

    # --- candidates -------------------------------------------------------------------------------------

    def model_configs(self) -> list[ModelConfig]:
        """Configured candidates (`candidates:` or every model), available ones only."""
        wanted = set(self.config.candidates) if self.config.candidates else None
        cache = self.routers.settings.model_cache
        return [m for m in self.routers.config.models
                if (wanted is None or m.id in wanted) and is_available(m, cache)]

    def candidates(self) -> list[Candidate]:
        """Every available candidate with its ability and routing price. Cached: rebuilt when the refitted
        abilities file changes, and availability (a local model pulled meanwhile) is re-checked every few seconds."""
        path = router_dir(self.routers.settings.routers_dir, self.config.id) / ABILITY_FILE
        now = time.monotonic()
        if self._cache is not None and now - self._cache_checked < RECHECK_S:
            return self._cache
        key = (path.stat().st_mtime_ns if path.exists() else 0, tuple(m.id for m in self.model_configs()))
        self._cache_checked = now
        if self._cache is not None and key == self._cache_key:
            return self._cache
        prior = shipped_prior()
        refined = load_refined(self.routers.settings.routers_dir, self.config.id)
        cache = self.routers.settings.model_cache
        out = []
        for m in self.model_configs():
            theta, source = prior_ability(m, prior)
            if m.id in refined and refined[m.id].get("n", 0) > 0:
                theta, source = float(refined[m.id]["theta"]), "outcomes"
            if is_local(m) and m.price_input == 0 and m.price_output == 0:
                shadow = LOCAL_PRICE_PER_GB * local_size_gb(m, cache)
                price = (shadow, shadow)
            else:
                price = (m.price_input, m.price_output)
            out.append(Candidate(m, theta, source, price))
        self._cache, self._cache_key = out, key
        self._arrays = (np.array([c.theta for c in out]), np.array([c.routing_price for c in out]).reshape(-1, 2))
        return out

    def invalidate(self) -> None:
        """Forget the cached candidates (after a refit in this process)."""
        self._cache = None

    def strongest(self) -> str | None:
        """The candidate with the highest ability: the 'everything to the best model' baseline."""
        return most_able(self.candidates())

    # --- difficulty -------------------------------------------------------------------------------------

    def _embed(self, prompt: str) -> np.ndarray:
        """(1, dim) embedding of the prompt's tail, by the server's embedder of the prior's kind when it has one."""
        from baimo.routing import learned

        prior = shipped_prior()
        with self._lock:  # one embedding at a time: the embedders run on one thread
            if self._embedder is None:
                wanted = learned.embedder_id(prior.embedder)
                shared = [e for e in self.routers.embedders if learned.matches(e, wanted)]
                self._embedder = shared[0] if shared else learned.make_embedder(prior.embedder)
            return np.asarray(self._embedder.embed([prior.tail(prompt)], is_query=True), dtype=np.float32)

    def difficulty(self, prompt: str) -> float:
        """b of one prompt on the prior's scale (0 = an average benchmark prompt)."""
        prior = shipped_prior()
        return float(prior.difficulty(self._embed(prompt), [prompt])[0])

    # --- the decision -----------------------------------------------------------------------------------

    def decide(self, req: RouteRequest) -> RoutePlan:
        from baimo.errors import UpstreamUnavailable
        from baimo.routing.strategies import RoutePlan

        cands = self.candidates()
        if not cands:
            raise UpstreamUnavailable(f"router {self.config.id}: no candidate model is available "
                                      f"(pull a local model with `baimo models pull`, or add a remote one)")
        b = self.difficulty(req.prompt) if req.prompt.strip() else -1.0
        prompt_tokens = sum(estimate_tokens(message_text(m)) for m in req.messages) + 4 * len(req.messages)
        answer = EXPECTED_ANSWER_TOKENS if req.max_tokens is None else min(req.max_tokens, EXPECTED_ANSWER_TOKENS)
        theta, price = self._arrays
        P = sigmoid(theta - b)
        C = (prompt_tokens * price[:, 0] + answer * price[:, 1]) / 1e6  # est. USD per candidate
        lam = DEFAULT_LAM if self.config.lam is None else self.config.lam
        U = P - lam * C / (C.max() or 1.0)
        order = [int(i) for i in np.lexsort((C, -U))]
        best = int(np.argmax(P))
        i = order[0]
        chosen = cands[i].config.id
        level = describe_difficulty(b)
        if i == best:
            words = f"{level} prompt (d={b:+.1f}); most capable: {chosen} P={P[i]:.2f}"
        else:
            words = (f"{level} prompt (d={b:+.1f}); {chosen} P={P[i]:.2f} ~${C[i]:.5f} is enough vs "
                     f"{cands[best].config.id} P={P[best]:.2f} ~${C[best]:.5f}")
        reason = f"auto: {words} -> {chosen}"
        plan = RoutePlan([cands[j].config.id for j in order], reason,
                         probabilities={c.config.id: round(float(p), 4) for c, p in zip(cands, P, strict=True)})
        plan.baseline = most_able(cands)
        return plan

    async def plan(self, req: RouteRequest) -> RoutePlan:
        return await asyncio.to_thread(self.decide, req)


def refine(router_id: str, routers_dir: Path, candidates: list[Candidate], outcomes: list[dict[str, Any]],
           embed: Any) -> dict[str, dict[str, Any]]:
    """Refine each candidate's ability from production outcomes; write and return the ability table.

    outcomes: rows {"prompt", "model", "score" (0..1)} of this router. embed: prompt -> (1, dim) vector.
    Each model's theta is the MAP estimate with its prior ability as the mean (sd 1), so a handful of ratings
    moves it a little and hundreds move it a lot. Written atomically to `<routers_dir>/<id>/abilities.json`.
    """
    prior = shipped_prior()
    by_model: dict[str, list[dict[str, Any]]] = {}
    for o in outcomes:
        by_model.setdefault(o["model"], []).append(o)
    table: dict[str, dict[str, Any]] = {}
    difficulties: dict[str, float] = {}
    for c in candidates:
        theta0, source = prior_ability(c.config, prior)  # always the prior: refits never compound
        rows = by_model.get(c.config.id, [])
        for r in rows:
            if r["prompt"] not in difficulties:
                difficulties[r["prompt"]] = float(prior.difficulty(embed(r["prompt"]), [r["prompt"]])[0])
        if rows:
            b = np.array([difficulties[r["prompt"]] for r in rows])
            y = np.array([float(r["score"]) for r in rows])
            theta = ability_map(theta0, b, y)
        else:
            theta = theta0
        table[c.config.id] = {"theta": round(theta, 4), "n": len(rows), "prior": round(theta0, 4),
                              "prior_source": source}
    path = router_dir(routers_dir, router_id)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (ABILITY_FILE + ".tmp")
    tmp.write_text(json.dumps({"router": router_id, "models": table}, indent=2), encoding="utf-8")
    tmp.replace(path / ABILITY_FILE)
    return table


def retrain(strategy: AutoStrategy, usage: Any) -> dict[str, Any]:
    """Refit an auto router's model abilities from every outcome recorded for it (ratings, cascade escalations).

    usage: a `UsageLog`. Returns {"router", "outcomes", "models": {id: {"theta", "n", "prior", "prior_source"}}}.
    Used by `baimo router retrain baimo/auto` and by the server every `retrain_every` seconds.
    """
    rows = usage.outcomes(strategy.config.id)
    table = refine(strategy.config.id, strategy.routers.settings.routers_dir, strategy.candidates(), rows,
                   strategy._embed)
    strategy.invalidate()
    return {"router": strategy.config.id, "outcomes": len(rows), "models": table}
