"""Teams: named groups of keys whose users share one owner ("team:<id>"): conversations, knowledge, personas, usage.

A team is made explicitly (`baimo teams create`, `POST /api/teams`) or implicitly by the first key created with
`--team NAME`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from baimo.config import NAME_PATTERN
from baimo.errors import InvalidRequest, NotFound
from baimo.store.database import Database
from baimo.store.tables import ApiKey, Team


def _team_dict(t: Team, keys: int = 0) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "created_at": t.created_at.isoformat(), "keys": keys}


def check_team_name(name: str) -> str:
    """The name when it is a valid one (letters, digits, . _ -; up to 64); raises InvalidRequest (param `name`)."""
    if not NAME_PATTERN.match(name or ""):
        raise InvalidRequest(f"invalid team name {name!r}: use letters, digits, '.', '_' or '-' (up to 64)",
                             param="name")
    return name


def find_team(s: Session, id_or_name: str) -> Team | None:
    """A team by id or name inside an open session."""
    return s.get(Team, id_or_name) or s.scalar(select(Team).where(Team.name == id_or_name))


class TeamStore:
    """Create and list teams (admin operations)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, *, exist_ok: bool = False) -> dict[str, Any]:
        """A new team {id, name, created_at, keys}; InvalidRequest (param `name`) if the name is taken."""
        check_team_name(name)
        try:
            with self.db.session() as s:
                existing = find_team(s, name)
                if existing is not None:
                    if exist_ok:
                        return _team_dict(existing)
                    raise InvalidRequest(f"team {name!r} already exists", param="name", code="team_exists")
                team = Team(name=name)
                s.add(team)
                s.flush()
                return _team_dict(team)
        except IntegrityError:  # created meanwhile by another process
            if not exist_ok:
                raise InvalidRequest(f"team {name!r} already exists", param="name", code="team_exists") from None
            return self.get(name)

    def get(self, id_or_name: str) -> dict[str, Any]:
        """One team by id or name; NotFound otherwise."""
        with self.db.session() as s:
            team = find_team(s, id_or_name)
            if team is None:
                raise NotFound(f"no team {id_or_name!r}")
            return _team_dict(team)

    def list(self) -> list[dict[str, Any]]:
        """Every team with its number of active keys, oldest first."""
        active = (select(ApiKey.team_id, func.count().label("n")).where(ApiKey.revoked_at.is_(None))
                  .group_by(ApiKey.team_id).subquery())
        stmt = select(Team, active.c.n).outerjoin(active, active.c.team_id == Team.id).order_by(Team.created_at)
        with self.db.session() as s:
            return [_team_dict(t, n or 0) for t, n in s.execute(stmt)]
