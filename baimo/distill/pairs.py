"""Preference pairs (DPO) from production signals, in TRL's conversational preference format:
`{"prompt": [messages], "chosen": [{"role": "assistant", ...}], "rejected": [{"role": "assistant", ...}], "meta"}`.

Two sources:
- thumbs: answers to the same prompt (the same normalised conversation before the answer) where one was rated
  up (score >= 0.5) and another down (< 0.5): every up x down combination with different texts is a pair;
- cascade escalations: the cheap model's draft that the cascade rejected (kept as the cascade outcome's `comment`,
  see ChatService._record_escalation) against the answer the client received for the same request.
Tenancy: only conversations the principal sees (None or an admin: all owners).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from baimo.distill.dedup import dedupe, normalise
from baimo.distill.export import ExportOptions, ExportStats, answer_rows, personas_of
from baimo.distill.scrub import scrub_messages
from baimo.metering.principal import owner_clause
from baimo.store.database import Database
from baimo.store.tables import Conversation, Message, Outcome

UP = 0.5  # a rating at or above this is a thumbs up


def _prompt_key(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m['role']}: {normalise(m['content'])}" for m in messages)


def _turn(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def thumbs_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairs from rated SFT rows (export.answer_rows) that answer the same prompt, one rated up, one down."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["meta"]["rating"] is not None:
            groups.setdefault(_prompt_key(r["messages"][:-1]), []).append(r)
    pairs = []
    for group in groups.values():
        ups = sorted((r for r in group if r["meta"]["rating"] >= UP), key=lambda r: -r["meta"]["rating"])
        downs = sorted((r for r in group if r["meta"]["rating"] < UP), key=lambda r: r["meta"]["rating"])
        for good in ups:
            for bad in downs:
                chosen, rejected = good["messages"][-1]["content"], bad["messages"][-1]["content"]
                if normalise(chosen) != normalise(rejected):
                    pairs.append({"prompt": good["messages"][:-1], "chosen": _turn(chosen),
                                  "rejected": _turn(rejected),
                                  "meta": {"source": "thumbs", "conversation_id": good["meta"]["conversation_id"],
                                           "chosen_model": good["meta"]["model"],
                                           "rejected_model": bad["meta"]["model"]}})
    return pairs


def cascade_pairs(db: Database, opts: ExportOptions) -> list[dict[str, Any]]:
    """Pairs from cascade escalations: the rejected draft vs the answer the client got (its stored message)."""
    stmt = (select(Outcome, Message).join(Message, Message.response_id == Outcome.response_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Outcome.source == "cascade", Outcome.comment.is_not(None), Message.role == "assistant",
                   Message.status == "complete", owner_clause(Conversation.owner, opts.who))
            .order_by(Outcome.id))
    pairs = []
    with db.session() as s:
        found = s.execute(stmt).all()
        personas = personas_of(s, [a.response_id for _, a in found]) if opts.persona is not None else {}
        for outcome, answer in found:
            if opts.persona is not None and personas.get(answer.response_id) != opts.persona:
                continue
            if opts.since is not None and answer.created_at.replace(tzinfo=None) < opts.since.replace(tzinfo=None):
                continue
            context = [{"role": m.role, "content": m.content} for m in s.scalars(
                select(Message).where(Message.conversation_id == answer.conversation_id, Message.seq < answer.seq)
                .order_by(Message.seq)) if m.content and m.role in ("system", "user", "assistant")]
            if not context or normalise(outcome.comment or "") == normalise(answer.content):
                continue
            pairs.append({"prompt": context, "chosen": _turn(answer.content), "rejected": _turn(outcome.comment),
                          "meta": {"source": "cascade", "conversation_id": answer.conversation_id,
                                   "chosen_model": answer.model, "rejected_model": outcome.model,
                                   "router": outcome.router}})
    return pairs


def export_pairs(db: Database, opts: ExportOptions) -> tuple[list[dict[str, Any]], ExportStats]:
    """All preference pairs the principal sees (thumbs first, then cascades), de-duplicated and scrubbed."""
    rated = [r for r in answer_rows(db, _all_models(db), opts) if r["meta"]["rating"] is not None]
    if opts.persona is not None:
        rated = [r for r in rated if r["meta"]["persona"] == opts.persona]
    pairs = thumbs_pairs(rated) + cascade_pairs(db, opts)
    stats = ExportStats(answers=len(pairs))
    pairs, stats.exact_duplicates, stats.near_duplicates = dedupe(pairs, near=opts.near_duplicates)
    if opts.scrub:
        for p in pairs:
            p["prompt"] = scrub_messages(p["prompt"], totals=stats.scrubbed)
            p["chosen"] = scrub_messages(p["chosen"], totals=stats.scrubbed)
            p["rejected"] = scrub_messages(p["rejected"], totals=stats.scrubbed)
    stats.rows = len(pairs)
    return pairs, stats


def _all_models(db: Database) -> list[str]:
    """Every model that answered something (a thumbs-down answer of a weak model is what a pair rejects)."""
    with db.session() as s:
        return [m for m in s.scalars(select(Message.model).where(Message.role == "assistant").distinct()) if m]
