"""Request dependencies: the app's services from app.state, and API key checking."""

from __future__ import annotations

from fastapi import Request

from baimo.api.state import AppState


async def state(request: Request) -> AppState:
    return request.app.state.baimo


async def api_key(request: Request) -> str | None:
    """The calling key's id (None when keys are off); 401 when keys are on and this one is missing or wrong."""
    s: AppState = request.app.state.baimo
    return s.keys.verify(request.headers.get("authorization"))
