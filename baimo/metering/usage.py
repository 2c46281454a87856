"""Cost of a request from the model's prices, and the usage record written for every API call.

Every record goes through `UsageLog.submit` (the one place: listeners such as metrics hook in there) and is
committed by a `UsageWriter` (group commit, baimo/metering/usage_writer.py); `UsageLog.write` waits until the
record is durable, so a route that awaits it before its response ends never loses a completed request's record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, func, insert, select

from baimo.config import ModelConfig
from baimo.errors import InvalidRequest, NotFound
from baimo.metering.principal import Principal, owner_clause
from baimo.metering.usage_writer import UsageWriter
from baimo.observability.request_id import current_request_id
from baimo.store.database import Database
from baimo.store.tables import ApiKey, Conversation, Message, Outcome, UsageRecord

log = logging.getLogger("baimo.usage")
USAGE_COLUMNS = frozenset(c.name for c in UsageRecord.__table__.columns)


def cost_usd(model: ModelConfig | None, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
    """USD for these tokens at the model's per-million prices; `cached_tokens` (part of `prompt_tokens`) are
    priced at `price_cached_input` when the model has one (reasoning tokens are completion tokens already)."""
    if model is None:
        return 0.0
    cached = min(max(cached_tokens, 0), prompt_tokens) if model.price_cached_input is not None else 0
    prompt_cost = (prompt_tokens - cached) * model.price_input + cached * (model.price_cached_input or 0.0)
    return (prompt_cost + completion_tokens * model.price_output) / 1_000_000


def token_details(usage: dict | None) -> tuple[int, int]:
    """(cached prompt tokens, reasoning tokens) from an OpenAI usage object's *_details, 0 when absent."""
    usage = usage or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return int(cached), int(reasoning)


@dataclass
class Usage:
    """One request's usage row (table `usage`). Tokens are counts; `cost`/`baseline_cost` in USD; times in ms
    (`ttft_ms`: time to the first token, None when none came); `status_code` is the HTTP status the client got
    (499: the client went away before the end)."""

    endpoint: str
    model_requested: str | None = None
    model: str | None = None
    route: str | None = None
    api_key_id: str | None = None
    conversation_id: str | None = None
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    status_code: int = 200
    finish_reason: str | None = None
    error: str | None = None
    prompt: str | None = None
    response_id: str | None = None
    persona: str | None = None
    baseline_cost: float | None = None   # routed requests: the same tokens on the router's strongest model
    baseline_model: str | None = None
    owner: str | None = None     # the key's owner (user or team), filled from api_key_id by UsageLog.owner_of
    team_id: str | None = None
    request_id: str | None = field(default_factory=current_request_id)  # x-request-id; None outside a request


ALL = "*all*"  # `owner` argument of the queries below: every owner's rows (an admin's view)


def scoped(stmt: Any, owner: str | None) -> Any:
    """`stmt` limited to one owner's usage rows (None: the local user's), or unchanged for ALL."""
    if owner == ALL:
        return stmt
    return stmt.where(UsageRecord.owner.is_(None) if owner is None else UsageRecord.owner == owner)


_ROW_FIELDS = tuple(f.name for f in fields(Usage) if f.name in USAGE_COLUMNS)


class UsageLog:
    """Writes usage records (group commit) and answers the questions asked of them.

    `listeners`: callables `fn(usage)` run once per record in the submitting thread before it is committed
    (metrics hook in here; keep them cheap, their errors are logged). `owner_of`: `key_id -> (owner, team_id)`
    fills the owner columns of records that do not carry them.
    """

    def __init__(self, db: Database, *, group_commit: bool = True, max_batch: int = 256,
                 linger_ms: float = 5.0) -> None:
        self.db = db
        self.writer = UsageWriter(self._commit, group=group_commit, max_batch=max_batch, linger_ms=linger_ms)
        self.listeners: list[Callable[[Usage], None]] = []
        self.owner_of: Callable[[str], tuple[str | None, str | None]] = self._key_owner
        self._owners: dict[str, tuple[str | None, str | None]] = {}

    def _key_owner(self, key_id: str) -> tuple[str | None, str | None]:
        """(owner, team_id) of a key: "team:<team id>" when it has a team, else "user:<user or key name>"
        (the tenancy rule of baimo/metering/principal.py). Cached: a key's owner never changes (rotation keeps it)."""
        found = self._owners.get(key_id)
        if found is None:
            with self.db.session() as s:
                key = s.get(ApiKey, key_id)
                if key is None:
                    return None, None
                found = (f"team:{key.team_id}", key.team_id) if key.team_id else (f"user:{key.user or key.name}",
                                                                                  None)
            self._owners[key_id] = found
        return found

    def _commit(self, rows: list[dict[str, Any]]) -> None:
        """Insert `rows` in one transaction (an executemany)."""
        with self.db.engine.begin() as conn:
            conn.execute(insert(UsageRecord.__table__), rows)

    def _row(self, usage: Usage) -> dict[str, Any]:
        if usage.api_key_id and usage.owner is None:
            try:
                usage.owner, usage.team_id = self.owner_of(usage.api_key_id)
            except Exception:  # noqa: BLE001 - a revoked or unknown key still gets its row
                log.debug("no owner for key %s", usage.api_key_id)
        for listener in self.listeners:
            try:
                listener(usage)
            except Exception:  # noqa: BLE001
                log.exception("usage listener failed")
        row = {k: getattr(usage, k) for k in _ROW_FIELDS}
        row["created_at"] = datetime.now(UTC)
        return row

    def submit(self, usage: Usage) -> Future[None]:
        """Queue a record for the next group commit without waiting; the future resolves once it is durable."""
        return self.writer.submit(self._row(usage))

    async def write(self, usage: Usage) -> None:
        """Record and wait until the record is committed (routes await this before their response ends).
        A database failure is logged, not raised: the client still gets its answer."""
        await self.durable(self.submit(usage))

    async def durable(self, submitted: Future[None]) -> None:
        """Wait for a submitted record's commit (a failure is logged, not raised)."""
        try:
            await asyncio.wrap_future(submitted)
        except Exception:  # noqa: BLE001
            log.exception("usage record could not be written")

    def record(self, usage: Usage) -> None:
        """Record from a worker thread (or a script) and wait until the record is committed."""
        self.submit(usage).result()

    def flush(self) -> None:
        """Wait until every record submitted so far is committed."""
        self.writer.flush()

    def close(self) -> None:
        """Commit what is queued and stop the writer thread (at shutdown, before the database closes)."""
        self.writer.close()

    def summary(self, persona: str | None = None, owner: str | None = ALL) -> list[dict[str, Any]]:
        """Requests, tokens and cost per model (of one persona's traffic when `persona` is given)."""
        stmt = (select(UsageRecord.model, func.count(), func.sum(UsageRecord.prompt_tokens),
                       func.sum(UsageRecord.completion_tokens), func.sum(UsageRecord.cost))
                .group_by(UsageRecord.model).order_by(func.count().desc()))
        if persona is not None:
            stmt = stmt.where(UsageRecord.persona == persona)
        stmt = scoped(stmt, owner)
        with self.db.session() as s:
            return [{"model": m, "requests": n, "prompt_tokens": p or 0, "completion_tokens": c or 0,
                     "cost": cost or 0.0} for m, n, p, c, cost in s.execute(stmt)]

    def by_day(self, days: int = 30, owner: str | None = ALL) -> list[dict[str, Any]]:
        """Requests and cost per day and model, oldest first (for the usage page's chart)."""
        day = func.substr(func.cast(UsageRecord.created_at, String), 1, 10)
        stmt = (select(day, UsageRecord.model, func.count(), func.sum(UsageRecord.cost))
                .group_by(day, UsageRecord.model).order_by(day))
        stmt = scoped(stmt, owner)
        with self.db.session() as s:
            rows = [{"day": d, "model": m, "requests": n, "cost": c or 0.0} for d, m, n, c in s.execute(stmt)]
        keep = sorted({r["day"] for r in rows})[-days:]
        return [r for r in rows if r["day"] in keep]

    def savings_by_day(self, days: int = 30, owner: str | None = ALL) -> list[dict[str, Any]]:
        """Routed chat traffic per day, oldest first: requests, what it cost, and what the same tokens would
        have cost on each router's strongest model (`baseline_cost`), i.e. the hybrid's saving over time."""
        day = func.substr(func.cast(UsageRecord.created_at, String), 1, 10)
        stmt = (select(day, func.count(), func.sum(UsageRecord.cost), func.sum(UsageRecord.baseline_cost))
                .where(UsageRecord.baseline_model.is_not(None), UsageRecord.endpoint != "embeddings")
                .group_by(day).order_by(day))
        stmt = scoped(stmt, owner)
        with self.db.session() as s:
            rows = [{"day": d, "requests": n, "cost": c or 0.0, "baseline_cost": b or 0.0}
                    for d, n, c, b in s.execute(stmt)]
        return rows[-days:]

    def by_persona(self, owner: str | None = ALL) -> list[dict[str, Any]]:
        """Requests, tokens and cost per persona (requests made without one are left out)."""
        stmt = (select(UsageRecord.persona, func.count(), func.sum(UsageRecord.prompt_tokens),
                       func.sum(UsageRecord.completion_tokens), func.sum(UsageRecord.cost))
                .where(UsageRecord.persona.is_not(None)).group_by(UsageRecord.persona)
                .order_by(func.count().desc()))
        stmt = scoped(stmt, owner)
        with self.db.session() as s:
            return [{"persona": p, "requests": n, "prompt_tokens": pt or 0, "completion_tokens": c or 0,
                     "cost": cost or 0.0} for p, n, pt, c, cost in s.execute(stmt)]

    def persona_report(self, persona: str, owner: str | None = ALL) -> dict[str, Any]:
        """A persona's 'salary slip': requests, tokens and cost, and the share each model served. `owner`: the
        persona's owner, whose usage rows are counted (names are unique per owner only)."""
        models = [m for m in self.summary(persona, owner) if m["model"] is not None or m["requests"]]
        total = sum(m["requests"] for m in models)
        for m in models:
            m["share"] = m["requests"] / total if total else 0.0
        return {"persona": persona, "requests": total,
                "prompt_tokens": sum(m["prompt_tokens"] for m in models),
                "completion_tokens": sum(m["completion_tokens"] for m in models),
                "cost": sum(m["cost"] for m in models), "this_month_cost": self.month_cost(persona, owner),
                "models": models}

    def month_cost(self, persona: str, owner: str | None = ALL) -> float:
        """What a persona (of `owner`) has spent since the start of this calendar month (UTC), for its budget."""
        start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        stmt = scoped(select(func.sum(UsageRecord.cost)).where(UsageRecord.persona == persona,
                                                               UsageRecord.created_at >= start), owner)
        with self.db.session() as s:
            return float(s.scalar(stmt) or 0.0)

    def cost_if_all_to(self, model: ModelConfig, owner: str | None = ALL) -> float:
        """What the recorded chat traffic would have cost had every request gone to `model`."""
        stmt = select(func.sum(UsageRecord.prompt_tokens), func.sum(UsageRecord.completion_tokens)).where(
            UsageRecord.endpoint != "embeddings", UsageRecord.finish_reason != "escalated")
        stmt = scoped(stmt, owner)
        with self.db.session() as s:
            p, c = s.execute(stmt).one()
        return cost_usd(model, p or 0, c or 0)

    def add_outcome(self, *, router: str, prompt: str, model: str, score: float, source: str,
                    response_id: str | None = None, comment: str | None = None,
                    api_key_id: str | None = None) -> None:
        """An outcome row for retraining `router`, owned by the calling key's owner (None: the local user)."""
        owner = None
        if api_key_id:
            try:
                owner = self.owner_of(api_key_id)[0]
            except Exception:  # noqa: BLE001 - an unknown key's outcome is still worth keeping
                log.debug("no owner for key %s", api_key_id)
        with self.db.session() as s:
            s.add(Outcome(router=router, prompt=prompt, model=model, score=score, source=source,
                          response_id=response_id, comment=comment, owner=owner))

    def feedback(self, response_id: str, score: float, comment: str | None = None, *,
                 who: Principal | None = None) -> dict[str, Any]:
        """Record a rating of a response; a routed response also becomes an outcome row (of the response's owner)
        for retraining. A response of an owner `who` does not see is "not found", like a missing one."""
        if not 0.0 <= score <= 1.0:
            raise InvalidRequest("score must be between 0 and 1", param="score")
        with self.db.session() as s:
            record = s.scalar(select(UsageRecord).where(UsageRecord.response_id == response_id,
                                                        UsageRecord.finish_reason != "escalated",
                                                        owner_clause(UsageRecord.owner, who))
                              .order_by(UsageRecord.id.desc()).limit(1))
            if record is None:
                message = s.scalar(select(Message).join(Conversation).where(
                    Message.response_id == response_id, owner_clause(Conversation.owner, who)))
                if message is None:
                    raise NotFound(f"no response {response_id!r}", param="response_id")
                raise InvalidRequest(f"response {response_id!r} has no usage record yet", param="response_id")
            routed = record.prompt is not None and record.model_requested != record.model
            # a direct answer's rating is kept too, with no router (""): distillation exports rated answers first
            s.add(Outcome(router=(record.model_requested or "") if routed else "", prompt=record.prompt or "",
                          model=record.model or "", score=score, source="feedback", response_id=response_id,
                          comment=comment, owner=record.owner))
            return {"response_id": response_id, "model": record.model, "router": record.model_requested
                    if routed else None, "score": score, "outcome_recorded": routed}

    def outcomes(self, router: str | None = None) -> list[dict[str, Any]]:
        stmt = select(Outcome).order_by(Outcome.id)
        if router:
            stmt = stmt.where(Outcome.router == router)
        with self.db.session() as s:
            return [{"id": o.id, "router": o.router, "prompt": o.prompt, "model": o.model, "score": o.score,
                     "source": o.source, "response_id": o.response_id, "created_at": o.created_at.isoformat()}
                    for o in s.scalars(stmt)]

    def recent(self, limit: int = 50, owner: str | None = ALL) -> list[dict[str, Any]]:
        stmt = scoped(select(UsageRecord).order_by(UsageRecord.id.desc()).limit(limit), owner)
        with self.db.session() as s:
            return [{c.name: getattr(r, c.name) for c in UsageRecord.__table__.columns} for r in s.scalars(stmt)]
