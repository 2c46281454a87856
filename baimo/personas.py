"""Personas ("digital employees"): a name, instructions, knowledge bases, a model or router, and a budget.

Each persona is callable as `persona/<name>`. Resolving one gives the concrete model or router to call, the
system prompt to put first, the default temperature, and the knowledge options for retrieval.

Tenancy: a persona has an owner (baimo/metering/principal.py); its name is unique per owner, `persona/<name>`
resolves within the caller's owner, and its knowledge base names resolve within the persona's own owner (never by
a name found in a message or a document). Methods taking `who` see only that principal's personas.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select

from baimo.backends.base import GenerationParams
from baimo.config import NAME_PATTERN
from baimo.errors import Conflict, InvalidRequest, NotFound
from baimo.knowledge.grounding import KnowledgeOptions
from baimo.metering.principal import Principal, owner_clause, visible
from baimo.store.database import Database
from baimo.store.tables import Persona, utcnow

PREFIX = "persona/"
FIELDS = ("description", "instructions", "model", "temperature", "knowledge", "grounded", "min_relevance",
          "top_k", "budget_usd", "confidential")


@dataclass
class PersonaSpec:
    name: str
    description: str = ""
    instructions: str = ""
    model: str | None = None          # a model or router id; None = the server's default model
    temperature: float | None = None
    knowledge: list[str] | None = None
    grounded: bool = False
    min_relevance: float | None = None  # None = knowledge.min_relevance from baimo.yaml
    top_k: int | None = None
    budget_usd: float | None = None     # per calendar month (UTC); None = no limit
    confidential: bool = False          # its requests are served only by models on premises (baimo/privacy.py)
    owner: str | None = None            # "team:<id>" | "user:<name>" | None (the local user)

    @property
    def id(self) -> str:
        return PREFIX + self.name

    def to_dict(self) -> dict[str, Any]:
        fields = {k: v for k, v in self.__dict__.items() if k != "owner"}
        return {"object": "persona", "id": self.id, **fields, "knowledge": list(self.knowledge or [])}

    def apply(self, params: GenerationParams) -> GenerationParams:
        """The persona's instructions go first; the client's own system messages follow them."""
        messages = params.messages
        if self.instructions.strip():
            messages = [{"role": "system", "content": self.instructions}, *messages]
        temperature = params.temperature if params.temperature is not None else self.temperature
        return replace(params, messages=messages, temperature=temperature)

    def knowledge_options(self, default_k: int, default_min_relevance: float) -> KnowledgeOptions | None:
        if not self.knowledge:
            return None
        return KnowledgeOptions(bases=list(self.knowledge), k=self.top_k or default_k, grounded=self.grounded,
                                min_relevance=default_min_relevance if self.min_relevance is None
                                else self.min_relevance)


def _spec(row: Persona) -> PersonaSpec:
    return PersonaSpec(name=row.name, description=row.description, instructions=row.instructions, model=row.model,
                       temperature=row.temperature, knowledge=json.loads(row.knowledge or "[]"),
                       grounded=row.grounded, min_relevance=row.min_relevance, top_k=row.top_k,
                       budget_usd=row.budget_usd, confidential=row.confidential, owner=row.owner)


class PersonaStore:
    """CRUD on personas. `check_model` and `check_knowledge` raise for unknown targets (404 / 400);
    `check_knowledge(name, who=principal)` looks the base up among the bases of the persona's owner."""

    def __init__(self, db: Database, check_model: Callable[[str], None],
                 check_knowledge: Callable[..., object]) -> None:
        self.db = db
        self.check_model = check_model
        self.check_knowledge = check_knowledge

    def _validate(self, values: dict[str, Any], who: Principal | None) -> None:
        model = values.get("model")
        if model:
            if model.startswith(PREFIX):
                raise InvalidRequest("a persona cannot use another persona as its model", param="model")
            self.check_model(model)
        for kb in values.get("knowledge") or []:
            self.check_knowledge(kb, who=who)
        t = values.get("temperature")
        if t is not None and not 0 <= t <= 2:
            raise InvalidRequest("temperature must be between 0 and 2", param="temperature")
        if values.get("top_k") is not None and not 1 <= values["top_k"] <= 50:
            raise InvalidRequest("top_k must be between 1 and 50", param="top_k")
        if values.get("budget_usd") is not None and values["budget_usd"] < 0:
            raise InvalidRequest("budget_usd must not be negative", param="budget_usd")
        if values.get("min_relevance") is not None and not -1 <= values["min_relevance"] <= 1:
            raise InvalidRequest("min_relevance is a cosine similarity between -1 and 1", param="min_relevance")

    def create(self, name: str, *, who: Principal | None = None, **values: Any) -> PersonaSpec:
        """A new persona owned by `who`; Conflict (409) when that owner already has one of this name."""
        if not NAME_PATTERN.match(name):
            raise InvalidRequest("a persona name is 1-64 letters, digits, '_', '.' or '-', starting with a letter "
                                 "or digit", param="name")
        unknown = set(values) - set(FIELDS)
        if unknown:
            raise InvalidRequest(f"unknown persona fields: {', '.join(sorted(unknown))}")
        owner = who.owner if who else None
        self._validate(values, Principal.of_owner(owner))
        with self.db.session() as s:
            if s.scalar(select(Persona).where(Persona.name == name,
                                              func.coalesce(Persona.owner, "") == (owner or ""))) is not None:
                raise Conflict(f"persona {name!r} already exists", param="name")
            row = Persona(name=name, owner=owner)
            self._assign(row, {"description": "", "instructions": "", "grounded": False, "knowledge": [], **values})
            s.add(row)
            s.flush()
            return _spec(row)

    @staticmethod
    def _assign(row: Persona, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key == "knowledge":
                value = json.dumps(list(value or []))
            elif key in ("description", "instructions") and value is None:
                value = ""
            elif key in ("grounded", "confidential"):
                value = bool(value)
            setattr(row, key, value)
        row.updated_at = utcnow()

    def update(self, name: str, *, who: Principal | None = None, **values: Any) -> PersonaSpec:
        unknown = set(values) - set(FIELDS)
        if unknown:
            raise InvalidRequest(f"unknown persona fields: {', '.join(sorted(unknown))}")
        with self.db.session() as s:
            row = self._row(s, name, who)
            self._validate(values, Principal.of_owner(row.owner))
            self._assign(row, values)
            s.flush()
            return _spec(row)

    def _row(self, s: Any, name: str, who: Principal | None = None) -> Persona:
        """The persona of this name among those `who` sees: the caller's own first (admins, internal callers),
        then the oldest. NotFound (param `name`) otherwise, also for another owner's persona."""
        own = who.owner if who else None
        row = s.scalar(select(Persona).where(Persona.name == name, owner_clause(Persona.owner, who))
                       .order_by(func.coalesce(Persona.owner, "") != (own or ""), Persona.created_at).limit(1))
        if row is None or not visible(who, row.owner):
            raise NotFound(f"no persona {name!r}", param="name")
        return row

    def get(self, name: str, *, who: Principal | None = None) -> PersonaSpec:
        with self.db.session() as s:
            return _spec(self._row(s, name, who))

    def list(self, *, who: Principal | None = None) -> list[PersonaSpec]:
        """The personas `who` sees, by name."""
        with self.db.session() as s:
            return [_spec(r) for r in s.scalars(select(Persona).where(owner_clause(Persona.owner, who))
                                                 .order_by(Persona.name))]

    def delete(self, name: str, *, who: Principal | None = None) -> None:
        with self.db.session() as s:
            s.delete(self._row(s, name, who))

    def forget_knowledge(self, kb_name: str, owner: str | None = None) -> list[str]:
        """Take a deleted knowledge base out of every persona of its owner that used it; returns their names."""
        changed = []
        with self.db.session() as s:
            for row in s.scalars(select(Persona).where(func.coalesce(Persona.owner, "") == (owner or ""))):
                bases = json.loads(row.knowledge or "[]")
                if kb_name in bases:
                    row.knowledge = json.dumps([b for b in bases if b != kb_name])
                    row.updated_at = utcnow()
                    changed.append(row.name)
        return changed

    def is_confidential(self, name: str) -> bool:
        """True when a persona of that name (of any owner: the cautious answer) is marked confidential."""
        with self.db.session() as s:
            return any(s.scalars(select(Persona.confidential).where(Persona.name == name)))

    def resolve(self, model_id: str, who: Principal | None = None) -> PersonaSpec | None:
        """The persona a `persona/<name>` id names among those `who` sees and may call (ModelNotFound, 404,
        otherwise, as for a model that does not exist), or None for any other id."""
        if not model_id.startswith(PREFIX):
            return None
        try:
            if who is not None and not who.may_call(model_id):
                raise NotFound(model_id)
            return self.get(model_id[len(PREFIX):], who=who)
        except NotFound:
            from baimo.errors import ModelNotFound

            raise ModelNotFound(f"The model '{model_id}' does not exist", param="model") from None
