"""`baimo distill export`: supervised fine-tuning (SFT) rows from stored conversations answered by strong models.

One row per kept assistant answer: the conversation up to and including that answer, in the chat format TRL's
SFTTrainer reads (`{"messages": [{"role", "content"}...]}`), with `meta` saying where it came from
(`conversation_id`, `model`, `rating` 0..1 or null, `persona`, `response_id`). Rated answers come first (best
rating first), then unrated ones (oldest first); duplicates and near-duplicates are dropped (baimo/distill/dedup.py,
the first of a group is kept, so the better-rated one survives), and personal data is replaced by typed
placeholders (baimo/distill/scrub.py) unless the caller opts out.

Strong models (the teachers): by default every remote model and the largest local one (by weights size); the
caller may name them instead. Ratings are the latest thumbs/score on the answer (`/api/feedback`, stored as
Outcome rows with source "feedback"); the persona comes from the answer's usage record, and its instructions become
the row's system message (the conversation does not store them). Tenancy: only
conversations the principal sees (baimo/metering/principal.py; None or an admin: all owners).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from baimo.backends import catalogue
from baimo.config import BaimoConfig, Settings
from baimo.distill.dedup import dedupe
from baimo.distill.scrub import scrub_messages
from baimo.errors import ConfigError, InvalidRequest
from baimo.metering.principal import Principal, owner_clause
from baimo.store.database import Database
from baimo.store.tables import Conversation, Message, Outcome, Persona, UsageRecord

ROLES = ("system", "user", "assistant")


@dataclass
class ExportOptions:
    """What to export. `models`: the strong models (None: the default set); `min_rating`: 0..1, only answers rated
    at least this (thumbs up = 1, down = 0); `since`: answers created at or after; `who`: the caller (tenancy)."""

    models: list[str] | None = None
    persona: str | None = None
    min_rating: float | None = None
    since: datetime | None = None
    scrub: bool = True
    near_duplicates: bool = True
    who: Principal | None = None


@dataclass
class ExportStats:
    """Counts of one export: answers considered, kept, dropped as duplicates, and placeholders put in by kind."""

    answers: int = 0
    rows: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    scrubbed: dict[str, int] = field(default_factory=dict)


def _weights_mb(m: Any, settings: Settings | None) -> float:
    """A local model's size in MB: its catalogue entry's, else its file's on disk (0 when unknown)."""
    if m.catalogue:
        try:
            return float(catalogue.entry(m.catalogue).size_mb)
        except ConfigError:  # an unknown catalogue name: reported when the model is used
            return 0.0
    if m.path and settings is not None:
        path = catalogue.weights_path(m.path, None, settings.model_cache)
        return path.stat().st_size / 1e6 if path.exists() else 0.0
    return 0.0


def strong_models(config: BaimoConfig, settings: Settings | None = None,
                  only: list[str] | None = None) -> list[str]:
    """The teachers whose answers are exported: `only` (checked to be configured models), else every remote
    (non-llamacpp) model and the largest local one. Raises InvalidRequest naming an unknown id."""
    ids = {m.id for m in config.models}
    if only:
        unknown = [m for m in only if m not in ids]
        if unknown:
            raise InvalidRequest(f"unknown model(s) {', '.join(unknown)}; configured: {', '.join(sorted(ids))}",
                                 param="model")
        return list(only)
    remote = [m.id for m in config.models if m.kind != "llamacpp"]
    local = [m for m in config.models if m.kind == "llamacpp"]
    largest = max(local, key=lambda m: (_weights_mb(m, settings), m.strength or 0.0), default=None)
    return remote + ([largest.id] if largest else [])


def _ratings(s: Any, response_ids: list[str]) -> dict[str, float]:
    """The latest rating (0..1) of each response that has one."""
    out: dict[str, float] = {}
    for i in range(0, len(response_ids), 500):
        rows = s.execute(select(Outcome.response_id, Outcome.score).where(
            Outcome.source == "feedback", Outcome.response_id.in_(response_ids[i:i + 500])).order_by(Outcome.id))
        out.update({rid: float(score) for rid, score in rows})
    return out


def personas_of(s: Any, response_ids: list[str]) -> dict[str, str | None]:
    """The persona each response was given as (from its usage record; None when none)."""
    out: dict[str, str | None] = {}
    for i in range(0, len(response_ids), 500):
        rows = s.execute(select(UsageRecord.response_id, UsageRecord.persona).where(
            UsageRecord.response_id.in_(response_ids[i:i + 500]), UsageRecord.finish_reason != "escalated"))
        out.update({rid: persona for rid, persona in rows})
    return out


def answer_rows(db: Database, teachers: list[str], opts: ExportOptions) -> list[dict[str, Any]]:
    """Every complete answer of a teacher the principal sees, as an SFT row with its context, unordered."""
    stmt = (select(Message.conversation_id).join(Conversation)
            .where(Message.role == "assistant", Message.status == "complete", Message.model.in_(teachers),
                   owner_clause(Conversation.owner, opts.who)).distinct())
    rows: list[dict[str, Any]] = []
    with db.session() as s:
        conv_ids = list(s.scalars(stmt))
        for i in range(0, len(conv_ids), 200):
            msgs = list(s.scalars(select(Message).where(Message.conversation_id.in_(conv_ids[i:i + 200]))
                                  .order_by(Message.conversation_id, Message.seq)))
            context: list[dict[str, str]] = []
            current = None
            for m in msgs:
                if m.conversation_id != current:
                    current, context = m.conversation_id, []
                if m.role not in ROLES or not m.content:
                    continue
                turn = {"role": m.role, "content": m.content}
                wanted = (m.role == "assistant" and m.status == "complete" and m.model in teachers
                          and (opts.since is None or _aware(m.created_at) >= _aware(opts.since)))
                if wanted and any(c["role"] == "user" for c in context):
                    rows.append({"messages": [*context, turn],
                                 "meta": {"conversation_id": m.conversation_id, "model": m.model, "rating": None,
                                          "persona": None, "response_id": m.response_id},
                                 "_created": _aware(m.created_at)})
                context.append(turn)
        ids = [r["meta"]["response_id"] for r in rows if r["meta"]["response_id"]]
        ratings, personas = _ratings(s, ids), personas_of(s, ids)
        instructions = _instructions(s, conv_ids, {p for p in personas.values() if p})
    for r in rows:
        rid = r["meta"]["response_id"]
        r["meta"]["rating"] = ratings.get(rid)
        r["meta"]["persona"] = personas.get(rid)
        system = instructions.get((r["meta"]["conversation_id"], r["meta"]["persona"]))
        if system and r["messages"][0]["role"] != "system":
            r["messages"].insert(0, {"role": "system", "content": system})
    return rows


def _instructions(s: Any, conv_ids: list[str], names: set[str]) -> dict[tuple[str, str], str]:
    """{(conversation id, persona name): the persona's instructions} for the personas of each conversation's owner
    (their current instructions: the system prompt the persona put before the conversation)."""
    if not names:
        return {}
    owners: dict[str, str | None] = {}
    for i in range(0, len(conv_ids), 500):
        owners.update(s.execute(select(Conversation.id, Conversation.owner)
                                .where(Conversation.id.in_(conv_ids[i:i + 500]))).all())
    found = {(owner, name): text for name, owner, text in s.execute(
        select(Persona.name, Persona.owner, Persona.instructions).where(Persona.name.in_(names)))}
    return {(cid, name): found[(owner, name)] for cid, owner in owners.items() for name in names
            if found.get((owner, name))}


def _aware(d: datetime) -> datetime:
    """SQLite hands back naive datetimes that are UTC."""
    from datetime import UTC

    return d if d.tzinfo else d.replace(tzinfo=UTC)


def rated_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rated rows first, best rating first; then unrated rows; oldest first within equal ratings."""
    def key(r: dict[str, Any]) -> tuple[int, float, datetime]:
        rating = r["meta"]["rating"]
        return (rating is None, -(rating or 0.0), r["_created"])

    return sorted(rows, key=key)


def export_sft(db: Database, config: BaimoConfig, opts: ExportOptions,
               settings: Settings | None = None) -> tuple[list[dict[str, Any]], ExportStats]:
    """The SFT rows of an export (ordered, de-duplicated, scrubbed unless `opts.scrub` is off) and its counts."""
    if opts.min_rating is not None and not 0.0 <= opts.min_rating <= 1.0:
        raise InvalidRequest("--min-rating is a 0..1 score (thumbs up = 1, down = 0)", param="min_rating")
    teachers = strong_models(config, settings, opts.models)
    rows = answer_rows(db, teachers, opts)
    stats = ExportStats(answers=len(rows))
    if opts.persona is not None:
        rows = [r for r in rows if r["meta"]["persona"] == opts.persona]
    if opts.min_rating is not None:
        rows = [r for r in rows if r["meta"]["rating"] is not None and r["meta"]["rating"] >= opts.min_rating]
    rows, stats.exact_duplicates, stats.near_duplicates = dedupe(rated_first(rows), near=opts.near_duplicates)
    for r in rows:
        del r["_created"]
        if opts.scrub:
            r["messages"] = scrub_messages(r["messages"], totals=stats.scrubbed)
    if opts.scrub:  # answers that differed only in their personal data are duplicates now
        rows, exact, _ = dedupe(rows, near=False)
        stats.exact_duplicates += exact
    stats.rows = len(rows)
    return rows, stats
