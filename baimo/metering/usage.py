"""Cost of a request from the model's prices, and the usage record written for every API call."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, func, select

from baimo.config import ModelConfig
from baimo.errors import InvalidRequest, NotFound
from baimo.store.database import Database
from baimo.store.tables import Message, Outcome, UsageRecord


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


class UsageLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, usage: Usage) -> None:
        with self.db.session() as s:
            s.add(UsageRecord(**asdict(usage)))

    def summary(self, persona: str | None = None) -> list[dict[str, Any]]:
        """Requests, tokens and cost per model (of one persona's traffic when `persona` is given)."""
        stmt = (select(UsageRecord.model, func.count(), func.sum(UsageRecord.prompt_tokens),
                       func.sum(UsageRecord.completion_tokens), func.sum(UsageRecord.cost))
                .group_by(UsageRecord.model).order_by(func.count().desc()))
        if persona is not None:
            stmt = stmt.where(UsageRecord.persona == persona)
        with self.db.session() as s:
            return [{"model": m, "requests": n, "prompt_tokens": p or 0, "completion_tokens": c or 0,
                     "cost": cost or 0.0} for m, n, p, c, cost in s.execute(stmt)]

    def by_day(self, days: int = 30) -> list[dict[str, Any]]:
        """Requests and cost per day and model, oldest first (for the usage page's chart)."""
        day = func.substr(func.cast(UsageRecord.created_at, String), 1, 10)
        stmt = (select(day, UsageRecord.model, func.count(), func.sum(UsageRecord.cost))
                .group_by(day, UsageRecord.model).order_by(day))
        with self.db.session() as s:
            rows = [{"day": d, "model": m, "requests": n, "cost": c or 0.0} for d, m, n, c in s.execute(stmt)]
        keep = sorted({r["day"] for r in rows})[-days:]
        return [r for r in rows if r["day"] in keep]

    def savings_by_day(self, days: int = 30) -> list[dict[str, Any]]:
        """Routed chat traffic per day, oldest first: requests, what it cost, and what the same tokens would
        have cost on each router's strongest model (`baseline_cost`), i.e. the hybrid's saving over time."""
        day = func.substr(func.cast(UsageRecord.created_at, String), 1, 10)
        stmt = (select(day, func.count(), func.sum(UsageRecord.cost), func.sum(UsageRecord.baseline_cost))
                .where(UsageRecord.baseline_model.is_not(None), UsageRecord.endpoint != "embeddings")
                .group_by(day).order_by(day))
        with self.db.session() as s:
            rows = [{"day": d, "requests": n, "cost": c or 0.0, "baseline_cost": b or 0.0}
                    for d, n, c, b in s.execute(stmt)]
        return rows[-days:]

    def by_persona(self) -> list[dict[str, Any]]:
        """Requests, tokens and cost per persona (requests made without one are left out)."""
        stmt = (select(UsageRecord.persona, func.count(), func.sum(UsageRecord.prompt_tokens),
                       func.sum(UsageRecord.completion_tokens), func.sum(UsageRecord.cost))
                .where(UsageRecord.persona.is_not(None)).group_by(UsageRecord.persona)
                .order_by(func.count().desc()))
        with self.db.session() as s:
            return [{"persona": p, "requests": n, "prompt_tokens": pt or 0, "completion_tokens": c or 0,
                     "cost": cost or 0.0} for p, n, pt, c, cost in s.execute(stmt)]

    def persona_report(self, persona: str) -> dict[str, Any]:
        """A persona's 'salary slip': requests, tokens and cost, and the share each model served."""
        models = [m for m in self.summary(persona) if m["model"] is not None or m["requests"]]
        total = sum(m["requests"] for m in models)
        for m in models:
            m["share"] = m["requests"] / total if total else 0.0
        return {"persona": persona, "requests": total,
                "prompt_tokens": sum(m["prompt_tokens"] for m in models),
                "completion_tokens": sum(m["completion_tokens"] for m in models),
                "cost": sum(m["cost"] for m in models), "this_month_cost": self.month_cost(persona),
                "models": models}

    def month_cost(self, persona: str) -> float:
        """What a persona has spent since the start of this calendar month (UTC), for its budget."""
        start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        stmt = select(func.sum(UsageRecord.cost)).where(UsageRecord.persona == persona,
                                                        UsageRecord.created_at >= start)
        with self.db.session() as s:
            return float(s.scalar(stmt) or 0.0)

    def cost_if_all_to(self, model: ModelConfig) -> float:
        """What the recorded chat traffic would have cost had every request gone to `model`."""
        stmt = select(func.sum(UsageRecord.prompt_tokens), func.sum(UsageRecord.completion_tokens)).where(
            UsageRecord.endpoint != "embeddings", UsageRecord.finish_reason != "escalated")
        with self.db.session() as s:
            p, c = s.execute(stmt).one()
        return cost_usd(model, p or 0, c or 0)

    def add_outcome(self, *, router: str, prompt: str, model: str, score: float, source: str,
                    response_id: str | None = None, comment: str | None = None) -> None:
        with self.db.session() as s:
            s.add(Outcome(router=router, prompt=prompt, model=model, score=score, source=source,
                          response_id=response_id, comment=comment))

    def feedback(self, response_id: str, score: float, comment: str | None = None) -> dict[str, Any]:
        """Record a rating of a response; a routed response also becomes an outcome row for retraining."""
        if not 0.0 <= score <= 1.0:
            raise InvalidRequest("score must be between 0 and 1", param="score")
        with self.db.session() as s:
            record = s.scalar(select(UsageRecord).where(UsageRecord.response_id == response_id,
                                                        UsageRecord.finish_reason != "escalated")
                              .order_by(UsageRecord.id.desc()).limit(1))
            if record is None:
                message = s.scalar(select(Message).where(Message.response_id == response_id))
                if message is None:
                    raise NotFound(f"no response {response_id!r}", param="response_id")
                raise InvalidRequest(f"response {response_id!r} has no usage record yet", param="response_id")
            routed = record.prompt is not None and record.model_requested != record.model
            if routed:
                s.add(Outcome(router=record.model_requested or "", prompt=record.prompt or "",
                              model=record.model or "", score=score, source="feedback", response_id=response_id,
                              comment=comment))
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

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        stmt = select(UsageRecord).order_by(UsageRecord.id.desc()).limit(limit)
        with self.db.session() as s:
            return [{c.name: getattr(r, c.name) for c in UsageRecord.__table__.columns} for r in s.scalars(stmt)]
