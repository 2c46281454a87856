"""Request dependencies: the app's services from app.state, and who is calling (the `Principal`)."""

from __future__ import annotations

from fastapi import Request

from baimo.api.state import AppState
from baimo.errors import PermissionDenied
from baimo.metering.principal import Principal


async def state(request: Request) -> AppState:
    return request.app.state.baimo


async def principal(request: Request) -> Principal:
    """The caller, resolved once per request (also kept on `request.state.principal`): the key's owner; the user a
    trusted proxy names in `auth.trusted_header` when no key is sent; the local user when auth is off; 401 when
    auth is on and the key is missing, unknown or revoked."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    s: AppState = request.app.state.baimo
    authorization, header = request.headers.get("authorization"), s.config.auth.trusted_header
    if not authorization and header and request.headers.get(header):  # signed in by a trusted reverse proxy
        who = s.keys.resolve_trusted(request.headers[header])
    else:
        who = s.keys.resolve(authorization)
    request.state.principal = who
    return who


async def admin(request: Request) -> Principal:
    """The caller when it is an admin (or the local user); 403 `admin_only` for any other key."""
    who = await principal(request)
    if not who.is_admin:
        raise PermissionDenied("This needs an admin key.")
    return who
