"""Admin routes for budgets and rate limits: /api/keys/{key}/limits and /api/teams/{team}/limits (admin only).

PUT changes only the fields sent (null clears nothing; DELETE removes every limit); GET shows the limits with this
period's spend. See baimo/metering/budgets.py and ratelimit.py for what they mean.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from baimo.api.deps import admin, state
from baimo.api.state import AppState
from baimo.metering.admission import set_limits

router = APIRouter(tags=["admin"], dependencies=[Depends(admin)])


class LimitsUpdate(BaseModel):
    """A key's or team's budget and rate limits; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    budget_usd: float | None = Field(default=None, ge=0, description="USD per period (0 refuses every request)")
    period: Literal["day", "month"] | None = Field(default=None, description="calendar day or month, UTC")
    rpm: int | None = Field(default=None, ge=1, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="tokens per minute (prompt estimate + max_tokens)")


async def _set(s: AppState, body: LimitsUpdate | None, **who: str) -> dict[str, Any]:
    values = body or LimitsUpdate()
    return await asyncio.to_thread(set_limits, s.db, budget=values.budget_usd, period=values.period,
                                   rpm=values.rpm, tpm=values.tpm, **who)


@router.get("/api/keys/{key}/limits", summary="A key's budget, spend this period and rate limits")
async def get_key_limits(key: str, s: AppState = Depends(state)) -> dict[str, Any]:
    return await _set(s, None, key=key)


@router.put("/api/keys/{key}/limits", summary="Set a key's budget and rate limits")
async def put_key_limits(key: str, body: LimitsUpdate, s: AppState = Depends(state)) -> dict[str, Any]:
    return await _set(s, body, key=key)


@router.delete("/api/keys/{key}/limits", status_code=204, summary="Remove a key's budget and rate limits")
async def delete_key_limits(key: str, s: AppState = Depends(state)) -> Response:
    await asyncio.to_thread(set_limits, s.db, key=key, clear=True)
    return Response(status_code=204)


@router.get("/api/teams/{team}/limits", summary="A team's budget, spend this period and rate limits")
async def get_team_limits(team: str, s: AppState = Depends(state)) -> dict[str, Any]:
    return await _set(s, None, team=team)


@router.put("/api/teams/{team}/limits", summary="Set a team's budget and rate limits (all its keys together)")
async def put_team_limits(team: str, body: LimitsUpdate, s: AppState = Depends(state)) -> dict[str, Any]:
    return await _set(s, body, team=team)


@router.delete("/api/teams/{team}/limits", status_code=204, summary="Remove a team's budget and rate limits")
async def delete_team_limits(team: str, s: AppState = Depends(state)) -> Response:
    await asyncio.to_thread(set_limits, s.db, team=team, clear=True)
    return Response(status_code=204)

