"""Routers as callable models: each strategy turns a request into a plan (which model, why), and they compose.

A plan names the models to try in order (the first is the choice, the rest are fallbacks for upstream
errors or a context window that is too small) and the reason shown in `x-baimo-route`. A cascade plan
also carries how to judge the cheap answers; the chat service executes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from baimo.config import BaimoConfig, RouterConfig, Settings
from baimo.errors import ConfigError, NotFound, UpstreamUnavailable
from baimo.privacy import keep_private
from baimo.routing.request import RouteRequest
from baimo.routing.rules import first_match


@dataclass
class CascadeSpec:
    threshold: float
    scorer: str
    verifier: str | None = None


@dataclass
class RoutePlan:
    models: list[str]
    reason: str
    cascade: CascadeSpec | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    baseline: str | None = None  # the strongest model the router could have used: what its saving is measured on


class Strategy(Protocol):
    async def plan(self, req: RouteRequest) -> RoutePlan: ...


class RouterSet:
    """Every configured router by id; `plan` resolves a router id (recursively) into a RoutePlan."""

    def __init__(self, config: BaimoConfig, settings: Settings, embedders: list[Any] | None = None) -> None:
        self.config = config
        self.settings = settings
        self.embedders = embedders or []
        self._strategies: dict[str, Strategy] = {}
        self._configs = {r.id: r for r in config.routers}
        for r in config.routers:
            self._strategies[r.id] = STRATEGIES[r.strategy](r, self)

    def __contains__(self, router_id: str) -> bool:
        return router_id in self._strategies

    def configs(self) -> list[RouterConfig]:
        return [c for key, c in self._configs.items() if key == c.id]  # not the variants below

    def variant(self, router_id: str, **changes: Any) -> str:
        """Add a copy of a router with some settings changed (an evaluation's λ sweep: `lam=0.3`) under the id
        `<router_id>@lam=0.3`; the copy keeps the router's own id inside, so it uses the same trained state.
        Returns the new id (NotFound for an unknown router)."""
        base = self.strategy(router_id).config
        key = f"{router_id}@" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in sorted(changes.items()))
        if key not in self._strategies:
            cfg = base.model_copy(update=changes)
            self._configs[key] = cfg
            self._strategies[key] = STRATEGIES[cfg.strategy](cfg, self)
        return key

    def candidates(self, router_id: str) -> list[str]:
        """Concrete model ids a router can end at (for listings and 'cost if all went to the strongest')."""
        seen: list[str] = []
        strategy = self._strategies[router_id]
        if hasattr(strategy, "model_configs"):  # auto: every available model (or its `candidates:`)
            return [m.id for m in strategy.model_configs()]
        for target in self._configs[router_id].targets():
            more = self.candidates(target) if target in self else [target]
            seen += [m for m in more if m not in seen]
        return seen

    def strategy(self, router_id: str) -> Strategy:
        if router_id not in self._strategies:
            raise NotFound(f"no router {router_id!r} in baimo.yaml")
        return self._strategies[router_id]

    def strongest(self, router_id: str) -> str | None:
        """The strongest model a router can end at: the baseline its saving is measured against (the `auto`
        router's most able candidate; otherwise the candidate with the highest price per output token)."""
        strategy = self._strategies[router_id]
        if hasattr(strategy, "strongest"):
            return strategy.strongest()
        by_id = {m.id: m for m in self.config.models}
        cands = [by_id[m] for m in self.candidates(router_id) if m in by_id]
        return max(cands, key=lambda m: (m.price_output, m.price_input)).id if cands else None

    async def plan(self, router_id: str, req: RouteRequest) -> RoutePlan:
        if router_id in req.trail:
            raise ConfigError(f"router loop: {' -> '.join(req.trail + [router_id])}")
        top = not req.trail
        req.trail.append(router_id)
        plan = await self._strategies[router_id].plan(req)
        if top and req.private is not None:  # personal data or a confidential caller: models on premises only
            plan = keep_private(plan, req.private, {m.id: m for m in self.config.models}, self.candidates(router_id))
        return plan

    async def resolve(self, target: str, req: RouteRequest, reason: str) -> RoutePlan:
        """A target of a rule or default: a router (delegate, keeping the reason) or a model."""
        if target in self:
            inner = await self.plan(target, req)
            inner.reason = f"{reason} => {inner.reason}"
            return inner
        return RoutePlan([target], f"{reason} -> {target}")

    def learned_router(self, name: str) -> Any:
        """A trained router; it shares the server's embedder of the kind it was trained with, if there is one."""
        from baimo.routing.learned import LearnedRouter

        path = self.settings.routers_dir / name
        if not (path / "router.json").exists():
            raise UpstreamUnavailable(f"the learned router {name!r} is not trained yet (no {path}); "
                                      f"run `baimo router train --name {name}`")
        return LearnedRouter.load(path, embedders=self.embedders)


class RulesStrategy:
    def __init__(self, config: RouterConfig, routers: RouterSet) -> None:
        self.config = config
        self.routers = routers

    async def plan(self, req: RouteRequest) -> RoutePlan:
        match = first_match(self.config.rules, req)
        if match is not None:
            i, rule = match
            return await self.routers.resolve(rule.model, req, f"rules:{rule.name or i + 1}")
        if self.config.default is None:
            raise NotFound(f"router {self.config.id}: no rule matched and there is no default")
        return await self.routers.resolve(self.config.default, req, "rules:default")


class LearnedStrategy:
    """Predict P(good answer) per candidate from a local embedding of the prompt; cheapest model worth it."""

    def __init__(self, config: RouterConfig, routers: RouterSet) -> None:
        self.config = config
        self.routers = routers
        self._router: Any = None
        self._lock = asyncio.Lock()

    async def loaded(self) -> Any:
        async with self._lock:
            if self._router is None:
                assert self.config.learned is not None
                self._router = await asyncio.to_thread(self.routers.learned_router, self.config.learned)
        return self._router

    def to_model(self, trained_id: str) -> str:
        return self.config.model_map.get(trained_id, trained_id)

    async def probabilities(self, prompt: str) -> tuple[str, dict[str, float], str]:
        router = await self.loaded()
        return await asyncio.to_thread(router.choose, prompt, self.config.lam)

    async def plan(self, req: RouteRequest) -> RoutePlan:
        chosen, probs, why = await self.probabilities(req.prompt)
        order = [chosen] + sorted((m for m in probs if m != chosen), key=lambda m: -probs[m])
        models = [self.to_model(m) for m in order]
        reason = why.replace(f"-> {chosen}", f"-> {self.to_model(chosen)}")
        return RoutePlan(models, reason, probabilities={self.to_model(m): p for m, p in probs.items()})


class CascadeStrategy:
    """Cheapest model first; escalate when its answer's confidence is below the threshold.

    mode=prompt judges from the prompt instead (the learned router's P for each model), so the chosen
    model can stream from its first token.
    """

    def __init__(self, config: RouterConfig, routers: RouterSet) -> None:
        self.config = config
        self.routers = routers
        self._learned = LearnedStrategy(config, routers) if config.learned else None

    async def plan(self, req: RouteRequest) -> RoutePlan:
        c = self.config
        if c.mode == "full":
            return RoutePlan(list(c.cascade), "cascade", CascadeSpec(c.threshold, c.scorer, c.verifier))
        assert self._learned is not None
        _, probs, _ = await self._learned.probabilities(req.prompt)
        mapped = {self._learned.to_model(m): p for m, p in probs.items()}
        for i, model in enumerate(c.cascade):
            p = mapped.get(model, 0.0)
            if p >= c.threshold or i == len(c.cascade) - 1:
                sign = ">=" if p >= c.threshold else "<"
                return RoutePlan(c.cascade[i:], f"cascade-prompt:p={p:.2f}{sign}{c.threshold:.2f} -> {model}",
                                 probabilities=mapped)
        raise AssertionError("unreachable")


def _auto(config: RouterConfig, routers: RouterSet) -> Strategy:
    from baimo.routing.auto import AutoStrategy

    return AutoStrategy(config, routers)


STRATEGIES: dict[str, Callable[[RouterConfig, RouterSet], Strategy]] = {
    "rules": RulesStrategy,
    "learned": LearnedStrategy,
    "cascade": CascadeStrategy,
    "auto": _auto,
}
