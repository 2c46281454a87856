"""GET /api/usage: the usage page's data and usage reports (by key, team, model, persona or day over a range).

Admins (and the local user when auth is off) see every owner's usage; any other key sees only its owner's
(its team's, else its user's) rows, in every field of the answer.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from baimo.api.deps import principal, state
from baimo.api.state import AppState
from baimo.metering.principal import Principal
from baimo.metering.usage import ALL, Usage
from baimo.metering.usage_report import GROUPS, check_group, report, totals, window

router = APIRouter(tags=["usage"])

# The metered routes (POST): their refused requests are recorded too, once the caller is known.
METERED = (("chat.completions", re.compile(r"^/v1/chat/completions$")),
           ("completions", re.compile(r"^/v1/completions$")),
           ("embeddings", re.compile(r"^/v1/embeddings$")),
           ("conversations", re.compile(r"^/api/conversations/[^/]+/(messages|regenerate)$")))


def metered_endpoint(request: Request) -> str | None:
    """The usage `endpoint` name of a metered POST route, else None."""
    if request.method != "POST":
        return None
    path = request.url.path
    return next((name for name, pattern in METERED if pattern.match(path)), None)


async def record_refusal(request: Request, status_code: int, message: str, body: Any = None) -> None:
    """Record a metered request answered with an error before any model ran (400, 403, 404, 429, ...).

    Only once auth passed (`request.state.principal` is set by the `principal` dependency): a 401 is not
    metered. `body` (the parsed JSON when the error handler has it) gives the requested model and stream flag.
    Errors already recorded by the chat service (upstream failures) carry `usage_recorded` and are skipped
    by the caller."""
    who = getattr(request.state, "principal", None)
    endpoint = metered_endpoint(request)
    if who is None or endpoint is None:
        return
    if body is None:  # the route's JSON body, read (and kept by the Request) before the error
        try:
            body = json.loads(await request.body())
        except (ValueError, RuntimeError, RecursionError):  # not JSON, stream gone, nested too deeply
            body = None
    body = body if isinstance(body, dict) else {}
    model = body.get("model") if isinstance(body.get("model"), str) else None
    s: AppState = request.app.state.baimo
    await s.usage.write(Usage(endpoint=endpoint, model_requested=model, api_key_id=who.key_id, owner=who.owner,
                              team_id=who.team_id, stream=body.get("stream") is True, status_code=status_code,
                              error=message[:2000]))


def _page(s: AppState, owner: str | None, by: str, since: str | None, until: str | None) -> dict[str, Any]:
    w = window(since, until)
    rows = report(s.db, by, w, owner=None if owner == ALL else owner, all_owners=owner == ALL)
    by_model = s.usage.summary(owner=owner)
    strongest = s.strongest_model()
    chat_rows = [r for r in by_model if r["model"] not in s.embedders.ids()]
    baseline = s.usage.cost_if_all_to(strongest, owner=owner) if strongest else None
    hybrid = s.usage.savings_by_day(owner=owner)
    return {"by_model": by_model, "by_day": s.usage.by_day(owner=owner), "by_persona": s.usage.by_persona(owner=owner),
            "hybrid": {"by_day": hybrid, "requests": sum(r["requests"] for r in hybrid),
                       "cost": sum(r["cost"] for r in hybrid),
                       "baseline_cost": sum(r["baseline_cost"] for r in hybrid)},
            "recent": s.usage.recent(20, owner=owner),
            "totals": {"requests": sum(r["requests"] for r in chat_rows), "cost": sum(r["cost"] for r in chat_rows),
                       "strongest_model": strongest.id if strongest else None,
                       "cost_if_all_to_strongest": baseline},
            "report": {"by": by, "since": w.since.isoformat() if w.since else None,
                       "until": w.until.isoformat() if w.until else None, "data": rows, "totals": totals(rows)}}


@router.get("/api/usage", summary="Requests, tokens and cost per model, per day and savings; a report by key, "
            "team, model, persona or day")
async def usage(by: str = Query("model", description=f"Group the report by {', '.join(GROUPS)}."),
                since: str | None = Query(None, description="From a date (2026-11-01, UTC), an ISO 8601 date-time "
                                          "or a span back from now (24h, 7d)."),
                until: str | None = Query(None, description="Up to a date (included), a date-time or a span."),
                s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict[str, Any]:
    """`report` groups the usage rows by `by` between `since` and `until`; the other fields feed the usage page.
    400 `invalid_value` (param `by`, `since` or `until`) for a value it cannot read."""
    check_group(by)
    owner = ALL if who.is_admin else who.owner
    return await asyncio.to_thread(_page, s, owner, by, since, until)
