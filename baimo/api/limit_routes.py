"""Admin routes for budgets and rate limits: /api/keys/{key}/limits and /api/teams/{team}/limits (admin only).

PUT changes only the fields sent (DELETE removes every limit); GET shows the limits with this period's spend.
See baimo/metering/budgets.py and ratelimit.py for what they mean.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from baimo.api.deps import admin, state
from baimo.api.state import AppState
from baimo.metering.admission import set_limits
from baimo.metering.budgets import MAX_RATE

router = APIRouter(tags=["admin"], dependencies=[Depends(admin)])


class LimitsUpdate(BaseModel):
    """A key's or team's budget and rate limits; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    budget_usd: float | None = Field(default=None, ge=0, description="USD per period (0 refuses every request)")
    period: Literal["day", "month"] | None = Field(default=None, description="calendar day or month, UTC")
    rpm: int | None = Field(default=None, ge=1, le=MAX_RATE, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, le=MAX_RATE, description="tokens per minute (prompt estimate + "
                            "max_tokens)")


def _add_routes(kind: str) -> None:
    """GET/PUT/DELETE /api/{kind}s/{id or name}/limits for `kind` key or team."""
    path = f"/api/{kind}s/{{ident}}/limits"
    whose = "a team's (all its keys together)" if kind == "team" else "a key's"

    async def get_limits(ident: str, s: AppState = Depends(state)) -> dict[str, Any]:
        return await asyncio.to_thread(set_limits, s.db, **{kind: ident})

    async def put_limits(ident: str, body: LimitsUpdate, s: AppState = Depends(state)) -> dict[str, Any]:
        return await asyncio.to_thread(set_limits, s.db, budget=body.budget_usd, period=body.period, rpm=body.rpm,
                                       tpm=body.tpm, **{kind: ident})

    async def delete_limits(ident: str, s: AppState = Depends(state)) -> Response:
        await asyncio.to_thread(set_limits, s.db, clear=True, **{kind: ident})
        return Response(status_code=204)

    router.add_api_route(path, get_limits, methods=["GET"], name=f"get_{kind}_limits",
                         summary=f"Show {whose} budget, spend this period and rate limits")
    router.add_api_route(path, put_limits, methods=["PUT"], name=f"put_{kind}_limits",
                         summary=f"Set {whose} budget and rate limits")
    router.add_api_route(path, delete_limits, methods=["DELETE"], status_code=204, name=f"delete_{kind}_limits",
                         summary=f"Remove {whose} budget and rate limits")


_add_routes("key")
_add_routes("team")
