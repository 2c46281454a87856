"""Conversations and their messages: create, page through (cursor pagination), search, rename, delete, append.

Each conversation has an owner (baimo/metering/principal.py); methods taking `who` act only on what that principal
may see, answering NotFound for the rest exactly as for a missing id (`who=None`: internal callers, all).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, or_, select, update

from baimo.errors import InvalidRequest, NotFound
from baimo.metering.principal import Principal, owner_clause, visible
from baimo.store.database import Database
from baimo.store.tables import Conversation, Message, utcnow

DEFAULT_TITLE = "New chat"
TITLE_CHARS = 60
MAX_PAGE = 200


def conversation_dict(c: Conversation) -> dict[str, Any]:
    return {"id": c.id, "title": c.title, "model": c.model,
            "created_at": iso_utc(c.created_at), "updated_at": iso_utc(c.updated_at)}


def message_dict(m: Message) -> dict[str, Any]:
    return {"id": m.id, "role": m.role, "content": m.content, "model": m.model, "route": m.route,
            "tokens_in": m.tokens_in, "tokens_out": m.tokens_out, "latency_ms": m.latency_ms,
            "ttft_ms": m.ttft_ms, "cost": m.cost, "status": m.status, "response_id": m.response_id,
            "citations": json.loads(m.citations) if m.citations else None, "created_at": iso_utc(m.created_at),
            "baseline_cost": m.baseline_cost, "baseline_model": m.baseline_model}


def iso_utc(d: datetime) -> str:
    """ISO 8601 in UTC with its zone (SQLite hands back naive datetimes that are UTC)."""
    return d.isoformat() if d.tzinfo else d.isoformat() + "Z"


def _encode_cursor(c: Conversation) -> str:
    raw = f"{c.updated_at.isoformat()}|{c.id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, cid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(stamp), cid
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("cursor is not one this server issued", param="cursor") from None


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return (line[: TITLE_CHARS - 1] + "…") if len(line) > TITLE_CHARS else (line or DEFAULT_TITLE)


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, title: str | None = None, model: str | None = None, *,
               who: Principal | None = None) -> dict[str, Any]:
        """A new conversation owned by `who` (the local user when None)."""
        with self.db.session() as s:
            c = Conversation(title=title_from(title) if title else DEFAULT_TITLE, model=model,
                             owner=who.owner if who else None)
            s.add(c)
            s.flush()
            return conversation_dict(c)

    def list(self, limit: int = 50, cursor: str | None = None, q: str | None = None, *,
             who: Principal | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the conversations `who` may see, newest first, and the next page's cursor."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}", param="limit")
        stmt = (select(Conversation).where(owner_clause(Conversation.owner, who))
                .order_by(Conversation.updated_at.desc(), Conversation.id.desc()))
        if cursor:
            stamp, cid = _decode_cursor(cursor)
            stmt = stmt.where(or_(Conversation.updated_at < stamp,
                                  (Conversation.updated_at == stamp) & (Conversation.id < cid)))
        if q and q.strip():
            pattern = f"%{q.strip().lower()}%"
            in_messages = exists().where(Message.conversation_id == Conversation.id,
                                         func.lower(Message.content).like(pattern))
            stmt = stmt.where(or_(func.lower(Conversation.title).like(pattern), in_messages))
        with self.db.session() as s:
            rows = list(s.scalars(stmt.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return [conversation_dict(c) for c in rows], (_encode_cursor(rows[-1]) if more else None)

    def _get(self, s: Any, conversation_id: str, who: Principal | None = None) -> Conversation:
        c = s.get(Conversation, conversation_id)
        if c is None or not visible(who, c.owner):
            raise NotFound(f"conversation {conversation_id} does not exist", param="conversation_id")
        return c

    def get(self, conversation_id: str, *, who: Principal | None = None) -> dict[str, Any]:
        with self.db.session() as s:
            c = self._get(s, conversation_id, who)
            return {**conversation_dict(c), "messages": [message_dict(m) for m in c.messages]}

    def rename(self, conversation_id: str, title: str, *, who: Principal | None = None) -> dict[str, Any]:
        if not title.strip():
            raise InvalidRequest("title must not be empty", param="title")
        with self.db.session() as s:
            c = self._get(s, conversation_id, who)
            c.title = title.strip()[:200]
            return conversation_dict(c)

    def delete(self, conversation_id: str, *, who: Principal | None = None) -> None:
        with self.db.session() as s:
            c = self._get(s, conversation_id, who)
            s.delete(c)

    def history(self, conversation_id: str, *, who: Principal | None = None) -> list[dict[str, str]]:
        """The conversation as chat messages, stopped and failed answers included as the user saw them."""
        with self.db.session() as s:
            c = self._get(s, conversation_id, who)
            return [{"role": m.role, "content": m.content} for m in c.messages if m.content]

    def append(self, conversation_id: str, role: str, content: str, *, who: Principal | None = None,
               **meta: Any) -> dict[str, Any]:
        with self.db.session() as s:
            c = self._get(s, conversation_id, who)
            seq = (s.scalar(select(func.max(Message.seq)).where(Message.conversation_id == c.id)) or 0) + 1
            if meta.get("citations") is not None:
                meta["citations"] = json.dumps(meta["citations"], ensure_ascii=False)
            m = Message(conversation_id=c.id, seq=seq, role=role, content=content, **meta)
            s.add(m)
            c.updated_at = utcnow()
            if role == "user" and c.title == DEFAULT_TITLE:
                c.title = title_from(content)
            if meta.get("model"):
                c.model = meta["model"]
            s.flush()
            return message_dict(m)

    def drop_last_assistant(self, conversation_id: str, *, who: Principal | None = None) -> None:
        """Remove the trailing assistant message (for regenerate); it is an error if the last turn is not one."""
        with self.db.session() as s:
            c = self._get(s, conversation_id, who)
            if not c.messages:
                raise InvalidRequest("the conversation has no messages to regenerate")
            last = c.messages[-1]
            if last.role == "assistant":
                s.execute(delete(Message).where(Message.id == last.id))
            elif last.role != "user":
                raise InvalidRequest("the last message is neither a user nor an assistant message")
            s.execute(update(Conversation).where(Conversation.id == c.id).values(updated_at=utcnow()))
