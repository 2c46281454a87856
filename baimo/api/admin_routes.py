"""Admin routes: API keys (/api/keys) and teams (/api/teams), for admin keys only (403 `admin_only` otherwise;
the local user is an admin while auth is off, so the first key can be made from the UI); /api/me for anyone.

A key's secret is in the answer of create and rotate only; lists show its prefix.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from baimo.api.deps import admin, principal, state
from baimo.api.state import AppState
from baimo.metering.admission import set_limits
from baimo.metering.budgets import MAX_RATE
from baimo.metering.principal import Principal

router = APIRouter(tags=["admin"])


class KeyCreate(BaseModel):
    """A new API key."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="what the key is for (unique names are easier "
                      "to revoke by name)")
    user: str | None = Field(default=None, max_length=200, description="the person it belongs to (default: name)")
    team: str | None = Field(default=None, max_length=64, description="team id or name; a new name creates it")
    models: list[str] | None = Field(default=None, description="model, router and persona ids it may call "
                                     "(default: all); others are answered 404 as if they did not exist")
    admin: bool = Field(default=False, description="manages keys and teams and sees every owner's objects")
    confidential: bool = Field(default=False, description="its requests are served only by models on premises")
    budget_usd: float | None = Field(default=None, ge=0, description="budget in USD per `period` (see "
                                     "/api/keys/{key}/limits)")
    period: Literal["day", "month"] | None = Field(default=None, description="budget period, calendar UTC")
    rpm: int | None = Field(default=None, ge=1, le=MAX_RATE, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, le=MAX_RATE, description="tokens per minute")


class TeamCreate(BaseModel):
    """A new team."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)


@router.get("/api/me", summary="Who the calling key is: user, team, admin, allowed models (no secret)")
async def me(s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict[str, Any]:
    return {**who.as_dict(), "auth": s.keys.enabled}


@router.get("/api/keys", summary="List API keys (never their secrets); admin only")
async def list_keys(s: AppState = Depends(state), _admin: Principal = Depends(admin)) -> dict[str, Any]:
    return {"object": "list", "data": await asyncio.to_thread(s.keys.list)}


@router.post("/api/keys", status_code=201, summary="Create an API key; its secret (`key`) is shown only here")
async def create_key(body: KeyCreate, s: AppState = Depends(state),
                     _admin: Principal = Depends(admin)) -> dict[str, Any]:
    if body.models is not None:
        for model_id in body.models:
            s.check_callable(model_id)  # 404 model_not_found for an id that is not a model, router or persona
    record, secret = await asyncio.to_thread(lambda: s.keys.create(
        body.name, user=body.user, team=body.team, models=body.models, admin=body.admin,
        confidential=body.confidential))
    if any(v is not None for v in (body.budget_usd, body.period, body.rpm, body.tpm)):
        record["limits"] = (await asyncio.to_thread(set_limits, s.db, key=record["id"], budget=body.budget_usd,
                                                    period=body.period, rpm=body.rpm, tpm=body.tpm))["limits"]
    return {**record, "key": secret}


@router.get("/api/keys/{key_id}", summary="Describe an API key (by id or name); admin only")
async def get_key(key_id: str, s: AppState = Depends(state), _admin: Principal = Depends(admin)) -> dict[str, Any]:
    return await asyncio.to_thread(s.keys.get, key_id)


@router.delete("/api/keys/{key_id}", summary="Revoke an API key (by id or name); it stops working within ~2 s")
async def revoke_key(key_id: str, s: AppState = Depends(state),
                     _admin: Principal = Depends(admin)) -> dict[str, Any]:
    return await asyncio.to_thread(s.keys.revoke, key_id)


@router.post("/api/keys/{key_id}/rotate", summary="Give an API key a new secret (same id, owner and limits); the "
             "old secret stops working within ~2 s; the new one (`key`) is shown only here")
async def rotate_key(key_id: str, s: AppState = Depends(state),
                     _admin: Principal = Depends(admin)) -> dict[str, Any]:
    record, secret = await asyncio.to_thread(s.keys.rotate, key_id)
    return {**record, "key": secret}


@router.get("/api/teams", summary="List teams with their number of active keys; admin only")
async def list_teams(s: AppState = Depends(state), _admin: Principal = Depends(admin)) -> dict[str, Any]:
    return {"object": "list", "data": await asyncio.to_thread(s.keys.teams.list)}


@router.post("/api/teams", status_code=201, summary="Create a team (keys made with `team` also create theirs)")
async def create_team(body: TeamCreate, s: AppState = Depends(state),
                      _admin: Principal = Depends(admin)) -> dict[str, Any]:
    return await asyncio.to_thread(s.keys.teams.create, body.name)
