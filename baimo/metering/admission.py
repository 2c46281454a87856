"""Admission: the one check every model call passes before it starts (RPM/TPM, then budgets), and its settlement.

`Admission.admit` runs right before a chat completion, text completion or embedding calls a model (after knowledge
retrieval, so the estimate covers the passages the prompt carries): it finds the limits of the calling key,
its team and the persona (baimo/metering/budgets.py), counts the request against the key's and team's RPM/TPM
(baimo/metering/ratelimit.py), and reserves an upper estimate of its cost in every budget. The returned `Ticket`
carries the x-ratelimit-* headers for the response and is settled to the real cost when the answer ends (or
released when no model answered). Requests of callers without any limit skip all of it (no database write).

The estimate: prompt tokens by Baimo's conservative estimate (about 3 UTF-8 bytes a token,
baimo.backends.base.estimate_tokens) plus the reply cap (max_tokens, else the model's max_output_tokens, else
limits.reserve_tokens) times `n`, priced at the dearest model the request may reach (the model and its fallbacks, or
every candidate of a router).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from baimo.backends.base import StreamEvent, estimate_tokens
from baimo.config import LimitsConfig, ModelConfig
from baimo.errors import BudgetExceeded
from baimo.metering.budgets import LIMITS_TTL_S, BudgetLedger, Limits, Reservation
from baimo.metering.ratelimit import RateLimits
from baimo.metering.usage import cost_usd
from baimo.store.tables import ApiKey


@dataclass
class Estimate:
    """An upper estimate of one request: USD (priced at the dearest reachable model) and tokens (for TPM)."""

    usd: float
    tokens: int


def estimate(models: list[ModelConfig], messages: list[dict[str, Any]], max_tokens: int | None, n: int,
             reserve_tokens: int) -> Estimate:
    """The dearest of `models` for this prompt and reply cap (see the module docstring)."""
    prompt = estimate_tokens(messages)
    usd, tokens = 0.0, prompt
    for m in models:
        reply = (max_tokens or m.max_output_tokens or reserve_tokens) * max(1, n)
        fitted = min(prompt, m.context_window)  # a longer prompt is cut to the window before the model sees it
        usd = max(usd, cost_usd(m, fitted, reply))
        tokens = max(tokens, prompt + reply)
    return Estimate(usd, tokens)


@dataclass
class Ticket:
    """One admitted request: its rate-limit headers and its budget reservation (settled or released once)."""

    headers: dict[str, str] = field(default_factory=dict)
    ledger: BudgetLedger | None = None
    reservation: Reservation | None = None
    estimate: Estimate | None = None

    @property
    def holds(self) -> bool:
        return self.ledger is not None and self.reservation is not None and bool(self.reservation.ids)

    def settle(self, usd: float) -> None:
        """Charge the real cost `usd` instead of the reservation (blocking: a database write)."""
        if self.holds:
            self.ledger.settle(self.reservation, usd)  # type: ignore[union-attr]

    def release(self) -> None:
        """Give the reservation back (no model answered)."""
        if self.holds:
            self.ledger.release(self.reservation)  # type: ignore[union-attr]

    def settle_soon(self, usd: float) -> None:
        """Settle off the event loop without waiting (also while the request task is being cancelled)."""
        if self.holds:
            asyncio.get_running_loop().run_in_executor(None, self.settle, usd)

    async def settled_stream(self, first: StreamEvent, rest: AsyncIterator[StreamEvent],
                             cost: Callable[[], float]) -> AsyncIterator[StreamEvent]:
        """The answer's events unchanged; when the stream ends (however it ends) the ticket is settled at
        `cost()`, the run's real cost by then (a ChatRun.rewrite step). The answer's end waits for the settlement
        (so the next request sees it), except when the client went away: then it is settled in the background."""
        gone = False
        try:
            yield first
            async for ev in rest:
                yield ev
        except (asyncio.CancelledError, GeneratorExit):
            gone = True
            raise
        finally:
            await rest.aclose()  # type: ignore[attr-defined]
            if gone:
                self.settle_soon(cost())
            elif self.holds:
                await asyncio.to_thread(self.settle, cost())


FREE = Ticket()


class Admission:
    """Budgets and rate limits in the request path (one per server; shared by its routes)."""

    def __init__(self, ledger: BudgetLedger, rates: RateLimits, config: LimitsConfig,
                 models_for: Callable[[str], list[ModelConfig]]) -> None:
        self.ledger = ledger
        self.rates = rates
        self.config = config
        self.models_for = models_for
        self._teams: dict[str, tuple[float, str | None]] = {}

    def team_of(self, key_id: str) -> str | None:
        """The key's team id (cached like limits: a move between teams counts within a second)."""
        hit = self._teams.get(key_id)
        now = time.monotonic()
        if hit is None or now - hit[0] > LIMITS_TTL_S:
            with self.ledger.db.session() as s:
                hit = (now, s.scalar(select(ApiKey.team_id).where(ApiKey.id == key_id)))
            self._teams[key_id] = hit
        return hit[1]

    def limits_for(self, key_id: str | None, persona: Limits | None = None) -> list[Limits]:
        """Every limit a request of this key (and persona) is under: the key's (with limits.key_rpm/key_tpm as
        defaults), its team's, and the persona's monthly budget."""
        out: list[Limits] = []
        if key_id is not None:
            key = f"key:{key_id}"
            team = self.team_of(key_id)
            found = self.ledger.get_limits([key] + ([f"team:{team}"] if team else []))
            own = found.get(key) or Limits(key)
            if own.rpm is None or own.tpm is None:
                own = Limits(key, own.budget_usd, own.period, own.rpm or self.config.key_rpm,
                             own.tpm or self.config.key_tpm)
            out += [lim for lim in (own, found.get(f"team:{team}")) if lim is not None]
        if persona is not None:
            out.append(persona)
        return [lim for lim in out if lim.budget_usd is not None or lim.rpm or lim.tpm]

    def _admit(self, key_id: str | None, persona: Limits | None, target: str, messages: list[dict[str, Any]],
               max_tokens: int | None, n: int) -> Ticket:
        """The blocking part of `admit` (limits lookup, counters, reservation), run in a worker thread."""
        limits = self.limits_for(key_id, persona)
        if not limits:
            return FREE
        est = estimate(self.models_for(target), messages, max_tokens, n, self.config.reserve_tokens)
        headers = self.rates.admit(limits, est.tokens)
        budgets = [lim for lim in limits if lim.budget_usd is not None]
        try:
            reservation = self.ledger.reserve(budgets, est.usd) if budgets else None
        except BudgetExceeded as exc:
            exc.headers = {**headers, **(exc.headers or {})}
            raise
        return Ticket(headers, self.ledger if reservation else None, reservation, est)

    async def admit(self, *, key_id: str | None, target: str, messages: list[dict[str, Any]],
                    max_tokens: int | None, n: int = 1, persona: Limits | None = None) -> Ticket:
        """Admit a request to `target` (a model or router id) or raise 429: BudgetExceeded (insufficient_quota)
        or RateLimited (rate_limit_exceeded, with Retry-After). `persona`: its budget (budgets.persona_limits).
        Callers settle or release the returned ticket."""
        if key_id is None and persona is None:
            return FREE
        return await asyncio.to_thread(self._admit, key_id, persona, target, messages, max_tokens, n)


def reachable_models(registry: Any, routers: Any) -> Callable[[str], list[ModelConfig]]:
    """`target -> its models`: a model and its fallbacks, or every candidate of a router (and their fallbacks)."""

    def models_for(target: str) -> list[ModelConfig]:
        ids = routers.candidates(target) if target in routers else [target]
        out: dict[str, ModelConfig] = {}
        for mid in ids:
            if mid not in registry.ids():
                continue
            config = registry.get(mid).config
            out[mid] = config
            for fb in config.fallbacks:
                out.setdefault(fb, registry.get(fb).config)
        return list(out.values())

    return models_for


def build_admission(db: Any, config: Any, settings: Any, registry: Any, routers: Any) -> Admission:
    """The server's Admission: limits and spend in `db`, counters in Redis when configured (else in memory)."""
    from baimo.config import redis_url

    return Admission(BudgetLedger(db), RateLimits(config.limits.strategy, redis_url(settings, config)),
                     config.limits, reachable_models(registry, routers))


def subject_of(db: Any, *, key: str | None = None, team: str | None = None) -> tuple[str, dict[str, Any]]:
    """The budget subject of a key (id or name) or a team (id or name) and its record; exactly one of the two.

    Raises InvalidRequest (neither or both given) or NotFound (no such key or team)."""
    from baimo.errors import InvalidRequest
    from baimo.metering.keys import KeyStore
    from baimo.metering.teams import TeamStore

    if (key is None) == (team is None):
        raise InvalidRequest("name a key or a team (--team), one of the two", param="key")
    if key is not None:
        record = KeyStore(db).get(key)
        return f"key:{record['id']}", record
    record = TeamStore(db).get(team)  # type: ignore[arg-type]
    return f"team:{record['id']}", record


def set_limits(db: Any, *, key: str | None = None, team: str | None = None, budget: float | None = None,
               period: str | None = None, rpm: int | None = None, tpm: int | None = None,
               clear: bool = False) -> dict[str, Any]:
    """Set a key's or team's limits (None keeps a value); returns {"subject", "key"|"team", limits with spend}."""
    subject, record = subject_of(db, key=key, team=team)
    ledger = BudgetLedger(db)
    if clear or any(v is not None for v in (budget, period, rpm, tpm)):
        ledger.set_limits(subject, budget_usd=budget, period=period, rpm=rpm, tpm=tpm, clear=clear)
    kind = subject.split(":", 1)[0]
    return {"subject": subject, kind: {"id": record["id"], "name": record["name"]},
            "limits": ledger.describe(subject)}
