"""The relational schema: conversations, messages, usage records, teams, API keys, knowledge bases and personas.

Tenancy: conversations, knowledge bases, personas, outcomes and usage carry an `owner`: "team:<team id>" for a key
in a team (its members share), "user:<user name>" for a key without one, NULL for the local single user (auth off).
See baimo/metering/principal.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(200), default="New chat")
    model: Mapped[str | None] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(240))  # "team:<id>" | "user:<name>" | NULL (local user)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Message.seq")

    __table_args__ = (Index("ix_conversations_updated", "updated_at", "id"),
                      Index("ix_conversations_owner_updated", "owner", "updated_at"))


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    seq: Mapped[int] = mapped_column(Integer, autoincrement=False)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200))
    route: Mapped[str | None] = mapped_column(String(500))
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    cost: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="complete")
    response_id: Mapped[str | None] = mapped_column(String(40))
    citations: Mapped[str | None] = mapped_column(Text)  # JSON list of the knowledge passages given, when any
    baseline_cost: Mapped[float | None] = mapped_column(Float)  # the same tokens on the router's strongest model
    baseline_model: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    conversation: Mapped[Conversation] = relationship(back_populates="messages")

    __table_args__ = (Index("ix_messages_conversation_seq", "conversation_id", "seq", unique=True),)


class UsageRecord(Base):
    __tablename__ = "usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    endpoint: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(240))
    team_id: Mapped[str | None] = mapped_column(String(32))
    model_requested: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))
    route: Mapped[str | None] = mapped_column(String(500))
    conversation_id: Mapped[str | None] = mapped_column(String(32))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")     # of prompt_tokens
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # of completion_tokens
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    status_code: Mapped[int] = mapped_column(Integer, default=200)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    response_id: Mapped[str | None] = mapped_column(String(40))
    prompt: Mapped[str | None] = mapped_column(Text)  # kept only for routed requests, to retrain routers
    persona: Mapped[str | None] = mapped_column(String(64))
    baseline_cost: Mapped[float | None] = mapped_column(Float)  # routed requests: the same tokens on the strongest
    baseline_model: Mapped[str | None] = mapped_column(String(200))  # candidate (the hybrid's saving)
    request_id: Mapped[str | None] = mapped_column(String(128))  # x-request-id (baimo/observability/request_id.py)

    __table_args__ = (Index("ix_usage_created", "created_at"), Index("ix_usage_model", "model"),
                      Index("ix_usage_response", "response_id"), Index("ix_usage_persona", "persona", "created_at"),
                      Index("ix_usage_owner", "owner", "created_at"), Index("ix_usage_team", "team_id", "created_at"),
                      Index("ix_usage_request", "request_id"))


class Outcome(Base):
    """How well a model answered a routed prompt: from user ratings and cascade escalations. Ratings of direct
    (unrouted) answers are kept with router "" (for distillation); a cascade row's `comment` is the rejected draft."""

    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    router: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(200))
    score: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16))  # feedback | cascade
    response_id: Mapped[str | None] = mapped_column(String(40))
    comment: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(240))

    __table_args__ = (Index("ix_outcomes_router", "router", "id"),)


class Team(Base):
    """A group of users sharing conversations, knowledge bases, personas and usage (owner "team:<id>")."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    confidential: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")  # on-premises models only
    user: Mapped[str | None] = mapped_column(String(200))  # the person the key belongs to (default: its name)
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    models: Mapped[str | None] = mapped_column(Text)  # JSON list of callable model ids; NULL = all


class KnowledgeBase(Base):
    """A named collection of documents; its chunks and vectors live in the vector store, keyed by `id`."""

    __tablename__ = "knowledge_bases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(240))
    description: Mapped[str] = mapped_column(Text, default="")
    embedder: Mapped[str] = mapped_column(String(200))
    chunk_size: Mapped[int] = mapped_column(Integer)
    chunk_overlap: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    # names are unique per owner; coalesce() because NULL owners (the local user) would never collide otherwise
    __table_args__ = (Index("ux_knowledge_bases_owner_name", func.coalesce(owner, ""), name, unique=True),)


class KnowledgeDocument(Base):
    """One ingested file: its content hash decides whether re-adding it does anything."""

    __tablename__ = "knowledge_documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"))
    doc_id: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(1000))
    format: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(500), default="")
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_knowledge_documents_kb_doc", "kb_id", "doc_id", unique=True),)


class Persona(Base):
    """A 'digital employee': instructions, knowledge, a model or router, and a monthly budget."""

    __tablename__ = "personas"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(240))
    description: Mapped[str] = mapped_column(Text, default="")
    instructions: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str | None] = mapped_column(String(200))
    temperature: Mapped[float | None] = mapped_column(Float)
    knowledge: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of knowledge base names
    grounded: Mapped[bool] = mapped_column(Boolean, default=False)
    min_relevance: Mapped[float | None] = mapped_column(Float)
    top_k: Mapped[int | None] = mapped_column(Integer)
    budget_usd: Mapped[float | None] = mapped_column(Float)  # per calendar month (UTC)
    confidential: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")  # on-premises models only
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ux_personas_owner_name", func.coalesce(owner, ""), name, unique=True),)


class Limit(Base):
    """A budget and rate limits of one subject: "key:<id>", "team:<id>" (baimo/metering/budgets.py)."""

    __tablename__ = "limits"

    subject: Mapped[str] = mapped_column(String(100), primary_key=True)
    budget_usd: Mapped[float | None] = mapped_column(Float)          # None: no budget
    budget_period: Mapped[str] = mapped_column(String(8), default="month")  # day | month (calendar, UTC)
    rpm: Mapped[int | None] = mapped_column(Integer)                  # requests per minute
    tpm: Mapped[int | None] = mapped_column(Integer)                  # tokens per minute
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BudgetWindow(Base):
    """What a subject spent and holds reserved in one budget period, in nano-USD (1e-9 USD: exact sums)."""

    __tablename__ = "budget_windows"

    subject: Mapped[str] = mapped_column(String(100), primary_key=True)
    period_start: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD (UTC)
    spent: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)


class BudgetReservation(Base):
    """One request's hold on one budget until it settles; rows older than a request can live are reclaimed (a
    replica killed mid-request does not leave its hold behind)."""

    __tablename__ = "budget_reservations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    subject: Mapped[str] = mapped_column(String(100))
    period_start: Mapped[str] = mapped_column(String(10))
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_budget_reservations_created", "created_at"),)


class EvalRun(Base):
    """One `baimo eval run`: its suite, parameters and targets (JSON), and whether it finished
    (running | finished | interrupted), with the last heartbeat of the process running it. See
    baimo/evaluation/store.py."""

    __tablename__ = "eval_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str | None] = mapped_column(String(240))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="running")
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # while its process is alive
    suite: Mapped[str] = mapped_column(Text)    # JSON: name, kind, items, source, license
    params: Mapped[str] = mapped_column(Text)   # JSON: limit, few_shot, cot, temperature, max_tokens, seed, judge...
    targets: Mapped[str] = mapped_column(Text)  # JSON list: id, kind, lam, router

    __table_args__ = (Index("ix_eval_runs_created", "created_at"),)


class EvalResult(Base):
    """One scored item of one target in a run, written as soon as it is scored (what a resumed run skips)."""

    __tablename__ = "eval_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(240))
    item_id: Mapped[str] = mapped_column(String(200))
    correct: Mapped[bool | None] = mapped_column(Boolean)
    score: Mapped[float | None] = mapped_column(Float)
    extracted: Mapped[str | None] = mapped_column(Text)
    expected: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    served_model: Mapped[str | None] = mapped_column(String(200))
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ux_eval_results_item", "run_id", "target", "item_id", unique=True),)


class EvalCache(Base):
    """A paid model answer by sha256(target, messages, params): the same call is never made twice."""

    __tablename__ = "eval_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(240))
    target: Mapped[str] = mapped_column(String(240))
    response: Mapped[str] = mapped_column(Text)  # JSON: text, served_model, route, cost, tokens, latency_ms
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
