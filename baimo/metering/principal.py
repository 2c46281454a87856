"""Who is calling: the `Principal` resolved once per request from its API key (or the local user when auth is off).

Ownership (tenancy): every conversation, knowledge base, persona, routing outcome and usage row has an `owner`
string, the principal's `owner`:
  - "team:<team id>"  for a key in a team (all the team's keys share its objects),
  - "user:<user name>" for a key without a team,
  - None              for the local single user (auth off: no key exists and `auth: optional`).
Admins (`is_admin`) see and manage every owner's objects; everyone else sees only their own. A hidden object is
answered exactly like a missing one (404), so its existence cannot be detected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


def team_owner(team_id: str) -> str:
    """The owner string of a team's objects."""
    return f"team:{team_id}"


def user_owner(user: str) -> str:
    """The owner string of a user's own objects (a key without a team)."""
    return f"user:{user}"


@dataclass(frozen=True)
class Principal:
    """The caller of one request.

    key_id: the API key's id (None for the local user); user: the person the key belongs to; team_id / team: its
    team's id and name, or None; is_admin: manages keys and teams and sees every owner's objects; models: the model,
    router and persona ids the key may call (None = all); confidential: requests stay on models on premises.
    """

    key_id: str | None = None
    user: str | None = None
    team_id: str | None = None
    team: str | None = None
    is_admin: bool = False
    models: frozenset[str] | None = None
    confidential: bool = False

    @property
    def owner(self) -> str | None:
        """The owner of what this principal creates: its team, else its user, None for the local user."""
        if self.team_id:
            return team_owner(self.team_id)
        if self.user:
            return user_owner(self.user)
        return None

    @property
    def is_local(self) -> bool:
        """True for the local single user (auth off)."""
        return self.key_id is None

    def sees(self, owner: str | None) -> bool:
        """Whether an object with this `owner` is visible (admins see all)."""
        return self.is_admin or owner == self.owner

    def may_call(self, model_id: str) -> bool:
        """Whether the key may call this model, router or persona id (`persona/<name>` included)."""
        return self.models is None or model_id in self.models

    def allowed(self, model_ids: Iterable[str]) -> list[str]:
        """The ids of `model_ids` this key may call, in order."""
        return [m for m in model_ids if self.may_call(m)]

    @classmethod
    def of_owner(cls, owner: str | None) -> Principal:
        """A non-admin principal that sees exactly the objects of `owner` (used to scope a persona's knowledge to
        the persona's own owner)."""
        if owner and owner.startswith("team:"):
            return cls(team_id=owner[5:])
        if owner and owner.startswith("user:"):
            return cls(key_id="", user=owner[5:])
        return cls()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (no secrets: a principal never holds one)."""
        return {"key_id": self.key_id, "user": self.user, "team_id": self.team_id, "team": self.team,
                "is_admin": self.is_admin, "models": sorted(self.models) if self.models is not None else None,
                "confidential": self.confidential, "owner": self.owner}


# Auth off: the one local user owns everything (owner None) and may manage keys (to create the first one).
LOCAL = Principal(is_admin=True)


def owner_clause(column: Any, who: Principal | None) -> Any:
    """A SQL condition keeping the rows `who` may see: everything for None (internal use, the CLI) and admins,
    else rows whose `column` (an owner column) is the principal's owner (NULL for the local user)."""
    from sqlalchemy import true

    if who is None or who.is_admin:
        return true()
    return column.is_(None) if who.owner is None else column == who.owner


def visible(who: Principal | None, owner: str | None) -> bool:
    """Whether a row with this owner is visible to `who` (None: internal use, sees all)."""
    return who is None or who.sees(owner)
