"""API keys: created once and shown once, stored as SHA-256 hashes, resolved to a `Principal` per request.

Auth modes (`auth:` in baimo.yaml, see README "Keys, teams and tenancy"):
  - optional (default): off while no active key exists (one local user, who owns everything), on as soon as one
    does (a key made by the CLI takes effect within ENABLED_TTL_S);
  - required: always on; at start the server makes sure an admin key exists, creating one and printing it once.
BAIMO_ADMIN_KEY (the environment) is an admin key: it is stored (hashed) as the key named ENV_ADMIN_NAME at start,
replacing the one an earlier value made.

A key belongs to a user (default: its name) and optionally a team; it may be an admin key (manages keys and teams,
sees every owner's objects), restricted to some model ids, or confidential (every request served only by models on
premises, baimo/privacy.py).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import threading
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from baimo.errors import AuthenticationError, InvalidRequest, NotFound
from baimo.metering.principal import LOCAL, Principal
from baimo.metering.teams import TeamStore, find_team
from baimo.store.database import Database
from baimo.store.tables import ApiKey, Team, utcnow

KEY_PREFIX = "bm-"
ENV_ADMIN_NAME = "admin-env"
ENABLED_TTL_S = 2.0   # how long "is any key active" is remembered (keys made by another process apply after this)
PRINCIPAL_TTL_S = 1.5  # how long a resolved key is remembered: revocation and rotation apply within this


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _models(k: ApiKey) -> list[str] | None:
    return json.loads(k.models) if k.models else None


def _key_dict(k: ApiKey, team: str | None) -> dict[str, Any]:
    return {"id": k.id, "name": k.name, "prefix": k.prefix, "user": k.user or k.name, "team_id": k.team_id,
            "team": team, "admin": bool(k.is_admin), "models": _models(k), "created_at": k.created_at.isoformat(),
            "revoked": k.revoked_at is not None, "confidential": bool(k.confidential)}


def _principal(k: ApiKey, team: str | None) -> Principal:
    models = _models(k)
    return Principal(key_id=k.id, user=k.user or k.name, team_id=k.team_id, team=team, is_admin=bool(k.is_admin),
                     models=frozenset(models) if models is not None else None, confidential=bool(k.confidential))


def _team_name(s: Session, k: ApiKey) -> str | None:
    return s.scalar(select(Team.name).where(Team.id == k.team_id)) if k.team_id else None


class KeyStore:
    """Keys in the database plus short in-memory caches (per process; every replica reads the same table)."""

    def __init__(self, db: Database, *, required: bool = False) -> None:
        self.db = db
        self.required = required
        self.teams = TeamStore(db)
        self._enabled: bool | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._resolved: dict[str, tuple[float, Principal | None]] = {}  # key hash -> (monotonic expiry, principal)
        self._confidential: dict[str, bool] = {}  # key id -> flag (fixed at creation, so safe to remember)

    # -- management -------------------------------------------------------------------------------------------

    def create(self, name: str, *, user: str | None = None, team: str | None = None,
               models: list[str] | None = None, admin: bool = False,
               confidential: bool = False) -> tuple[dict[str, Any], str]:
        """A new key (record, secret); the secret is returned only here.

        `team` (id or name) is created when it does not exist yet; `models` restricts the callable model, router
        and persona ids (None = all). Raises InvalidRequest for an empty name or an empty model list.
        """
        if not name or not name.strip() or len(name) > 200:
            raise InvalidRequest("a key needs a name of 1-200 characters", param="name")
        if models is not None:
            models = sorted({m.strip() for m in models if m.strip()})
            if not models:
                raise InvalidRequest("--models needs at least one model id", param="models")
        team_id = None
        if team:
            with self.db.session() as s:
                found = find_team(s, team)
                team_id = found.id if found else None
            if team_id is None:
                team_id = self.teams.create(team, exist_ok=True)["id"]
        secret = _new_secret()
        with self.db.session() as s:
            k = ApiKey(name=name, user=user or name, team_id=team_id, is_admin=admin, prefix=secret[:10],
                       key_hash=_hash(secret), confidential=confidential,
                       models=json.dumps(models) if models is not None else None)
            s.add(k)
            s.flush()
            record = _key_dict(k, _team_name(s, k))
        self._enabled = True
        return record, secret

    def list(self) -> list[dict[str, Any]]:
        """Every key, oldest first (never a secret or a hash)."""
        with self.db.session() as s:
            teams = dict(s.execute(select(Team.id, Team.name)).all())
            return [_key_dict(k, teams.get(k.team_id)) for k in s.scalars(select(ApiKey).order_by(ApiKey.created_at))]

    def _find(self, s: Session, key_id_or_name: str) -> ApiKey:
        k = s.get(ApiKey, key_id_or_name) or s.scalar(
            select(ApiKey).where(ApiKey.name == key_id_or_name, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.created_at.desc()).limit(1))
        if k is None:
            raise NotFound(f"no API key {key_id_or_name!r}")
        return k

    def get(self, key_id_or_name: str) -> dict[str, Any]:
        """One key by id (or the newest active one with that name); NotFound otherwise."""
        with self.db.session() as s:
            k = self._find(s, key_id_or_name)
            return _key_dict(k, _team_name(s, k))

    def revoke(self, key_id_or_name: str) -> dict[str, Any]:
        """Revoke a key (by id or name); it stops working within PRINCIPAL_TTL_S on every replica."""
        with self.db.session() as s:
            k = self._find(s, key_id_or_name)
            if k.revoked_at is None:
                k.revoked_at = utcnow()
            record = _key_dict(k, _team_name(s, k))
        self._forget()
        return record

    def rotate(self, key_id_or_name: str) -> tuple[dict[str, Any], str]:
        """A new secret for an active key (same id, owner and limits); the old secret stops working."""
        secret = _new_secret()
        with self.db.session() as s:
            k = self._find(s, key_id_or_name)
            if k.revoked_at is not None:
                raise NotFound(f"no active API key {key_id_or_name!r}")
            k.key_hash, k.prefix = _hash(secret), secret[:10]
            record = _key_dict(k, _team_name(s, k))
        self._forget()
        return record, secret

    def _forget(self) -> None:
        with self._lock:
            self._resolved.clear()
        self._enabled = None

    # -- start-up ---------------------------------------------------------------------------------------------

    def bootstrap(self, env_admin_key: str | None) -> str | None:
        """Make the admin keys start-up needs; returns a newly created admin secret to print once, else None.

        BAIMO_ADMIN_KEY is stored (hashed) as ENV_ADMIN_NAME, revoking an earlier stored value. With `auth:
        required` and no active admin key at all, one is created (name "admin") and returned.
        """
        if env_admin_key:
            digest = _hash(env_admin_key)
            with self.db.session() as s:
                for old in s.scalars(select(ApiKey).where(ApiKey.name == ENV_ADMIN_NAME,
                                                          ApiKey.revoked_at.is_(None), ApiKey.key_hash != digest)):
                    old.revoked_at = utcnow()
                k = s.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
                if k is None:
                    s.add(ApiKey(name=ENV_ADMIN_NAME, user="admin", is_admin=True, prefix=env_admin_key[:10],
                                 key_hash=digest))
                elif k.revoked_at is not None or not k.is_admin:
                    k.revoked_at, k.is_admin = None, True
            self._forget()
        if not self.required:
            return None
        with self.db.session() as s:
            has_admin = s.scalar(select(ApiKey.id).where(ApiKey.is_admin.is_(True), ApiKey.revoked_at.is_(None))
                                 .limit(1)) is not None
        if has_admin:
            return None
        return self.create("admin", user="admin", admin=True)[1]

    # -- per request ------------------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """True when auth is required or at least one key is active (re-read every ENABLED_TTL_S)."""
        if self.required:
            return True
        now = time.monotonic()
        if self._enabled is None or now - self._checked > ENABLED_TTL_S:
            with self.db.session() as s:
                self._enabled = s.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None
            self._checked = now
        return self._enabled

    def resolve(self, authorization: str | None) -> Principal:
        """The caller of an `Authorization: Bearer <key>` header: LOCAL when auth is off; raises
        AuthenticationError (401) when auth is on and the key is missing, unknown or revoked."""
        if not self.enabled:
            return LOCAL
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthenticationError("Missing API key: send `Authorization: Bearer <key>`.")
        digest = _hash(authorization[7:].strip())
        now = time.monotonic()
        cached = self._resolved.get(digest)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            with self.db.session() as s:
                k = s.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
                found = _principal(k, _team_name(s, k)) if k is not None and k.revoked_at is None else None
            with self._lock:
                if len(self._resolved) > 10_000:
                    self._resolved.clear()
                self._resolved[digest] = (now + PRINCIPAL_TTL_S, found)
        if found is None:
            raise AuthenticationError("Incorrect API key provided.")
        self._confidential[found.key_id or ""] = found.confidential
        return found

    def resolve_trusted(self, user: str) -> Principal:
        """The caller a trusted reverse proxy named (auth.trusted_header): the user's own key, made on first
        sight as "sso:<user>" with a secret nobody is shown, so its usage, owner and limits work like any key's
        and an admin can revoke it (then this user gets 401). AuthenticationError for an empty or overlong name."""
        user = user.strip()
        if not user or len(user) > 195:
            raise AuthenticationError("The trusted user header is empty or too long.")
        name, now = f"sso:{user}", time.monotonic()
        cached = self._resolved.get(name)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            with self.db.session() as s:
                k = s.scalar(select(ApiKey).where(ApiKey.name == name).order_by(ApiKey.created_at.desc()).limit(1))
                found = _principal(k, _team_name(s, k)) if k is not None and k.revoked_at is None else None
            if k is None:
                record, _secret = self.create(name, user=user)
                found = Principal(key_id=record["id"], user=user)
            with self._lock:
                self._resolved[name] = (now + PRINCIPAL_TTL_S, found)
        if found is None:
            raise AuthenticationError(f"The access of {user!r} was revoked.")
        return found

    def verify(self, authorization: str | None) -> str | None:
        """The key id for a valid header (None when auth is off); raises AuthenticationError otherwise."""
        return self.resolve(authorization).key_id

    def is_confidential(self, key_id: str) -> bool:
        """True when the key was created confidential."""
        if key_id not in self._confidential:
            with self.db.session() as s:
                self._confidential[key_id] = bool(s.scalar(select(ApiKey.confidential).where(ApiKey.id == key_id)))
        return self._confidential[key_id]


def start_keys(db: Database, *, required: bool, env_admin_key: str | None) -> KeyStore:
    """The KeyStore of a starting server (or of `serve --workers N`'s supervisor, once, before its workers):
    store BAIMO_ADMIN_KEY, and with `auth: required` and no admin key create one and print it once on stderr
    (never through logging, so it reaches the console and no log file)."""
    keys = KeyStore(db, required=required)
    secret = keys.bootstrap(env_admin_key)
    if secret:
        sys.stderr.write(f"auth is required and no admin key existed: created admin key {secret}\n"
                         "store it now, it is not shown again (or set BAIMO_ADMIN_KEY)\n")
        sys.stderr.flush()
    return keys
