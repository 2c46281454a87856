"""Cost of a request from the model's prices, and the usage record written for every API call."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select

from baimo.config import ModelConfig
from baimo.store.database import Database
from baimo.store.tables import UsageRecord


def cost_usd(model: ModelConfig | None, prompt_tokens: int, completion_tokens: int) -> float:
    """USD for these tokens at the model's per-million prices."""
    if model is None:
        return 0.0
    return (prompt_tokens * model.price_input + completion_tokens * model.price_output) / 1_000_000


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
    cost: float = 0.0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    status_code: int = 200
    finish_reason: str | None = None
    error: str | None = None


class UsageLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, usage: Usage) -> None:
        with self.db.session() as s:
            s.add(UsageRecord(**asdict(usage)))

    def summary(self) -> list[dict[str, Any]]:
        """Requests, tokens and cost per model."""
        stmt = (select(UsageRecord.model, func.count(), func.sum(UsageRecord.prompt_tokens),
                       func.sum(UsageRecord.completion_tokens), func.sum(UsageRecord.cost))
                .group_by(UsageRecord.model).order_by(func.count().desc()))
        with self.db.session() as s:
            return [{"model": m, "requests": n, "prompt_tokens": p or 0, "completion_tokens": c or 0,
                     "cost": cost or 0.0} for m, n, p, c, cost in s.execute(stmt)]

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        stmt = select(UsageRecord).order_by(UsageRecord.id.desc()).limit(limit)
        with self.db.session() as s:
            return [{c.name: getattr(r, c.name) for c in UsageRecord.__table__.columns} for r in s.scalars(stmt)]
