"""API keys: created once and shown once, stored as SHA-256 hashes; any active key turns authentication on.

A key created confidential has every request it makes served only by models on premises (baimo/privacy.py).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from sqlalchemy import select

from baimo.errors import AuthenticationError, NotFound
from baimo.store.database import Database
from baimo.store.tables import ApiKey, utcnow

KEY_PREFIX = "bm-"
ENABLED_TTL_S = 2.0


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _key_dict(k: ApiKey) -> dict[str, Any]:
    return {"id": k.id, "name": k.name, "prefix": k.prefix, "created_at": k.created_at.isoformat(),
            "revoked": k.revoked_at is not None, "confidential": bool(k.confidential)}


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._enabled: bool | None = None
        self._checked = 0.0
        self._confidential: dict[str, bool] = {}  # key id -> flag (fixed at creation, so safe to remember)

    def create(self, name: str, *, confidential: bool = False) -> tuple[dict[str, Any], str]:
        """A new key; the secret is returned only here. A confidential key's requests stay on premises."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.db.session() as s:
            k = ApiKey(name=name, prefix=secret[:10], key_hash=_hash(secret), confidential=confidential)
            s.add(k)
            s.flush()
            record = _key_dict(k)
        self._enabled = True
        return record, secret

    def list(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [_key_dict(k) for k in s.scalars(select(ApiKey).order_by(ApiKey.created_at))]

    def revoke(self, key_id_or_name: str) -> dict[str, Any]:
        with self.db.session() as s:
            k = s.get(ApiKey, key_id_or_name) or s.scalar(
                select(ApiKey).where(ApiKey.name == key_id_or_name, ApiKey.revoked_at.is_(None)))
            if k is None:
                raise NotFound(f"no API key {key_id_or_name!r}")
            k.revoked_at = utcnow()
            record = _key_dict(k)
        self._enabled = None
        return record

    @property
    def enabled(self) -> bool:
        """True when at least one key is active; re-read every few seconds so keys made by the CLI take effect."""
        now = time.monotonic()
        if self._enabled is None or now - self._checked > ENABLED_TTL_S:
            with self.db.session() as s:
                self._enabled = s.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None
            self._checked = now
        return self._enabled

    def verify(self, authorization: str | None) -> str | None:
        """The key id for a valid `Authorization: Bearer` header, None when auth is off; raises otherwise."""
        if not self.enabled:
            return None
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthenticationError("Missing API key: send `Authorization: Bearer <key>`.")
        token = authorization[7:].strip()
        with self.db.session() as s:
            k = s.scalar(select(ApiKey).where(ApiKey.key_hash == _hash(token)))
        if k is None or k.revoked_at is not None:
            raise AuthenticationError("Incorrect API key provided.")
        self._confidential[k.id] = bool(k.confidential)
        return k.id

    def is_confidential(self, key_id: str) -> bool:
        """True when the key was created confidential."""
        if key_id not in self._confidential:
            with self.db.session() as s:
                self._confidential[key_id] = bool(s.scalar(select(ApiKey.confidential).where(ApiKey.id == key_id)))
        return self._confidential[key_id]
