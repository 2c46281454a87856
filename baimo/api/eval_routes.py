"""Evaluation runs for the web UI and tools: the list, one run's JSON, and its HTML report with the frontier.

Runs have an owner like conversations (the key's team, else its user; None for the local user): a plain key sees
its owner's runs only, an admin sees all; another owner's run answers exactly like a missing one (404).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse

from baimo.api.deps import principal, state
from baimo.api.state import AppState
from baimo.errors import BaimoError, NotFound
from baimo.evaluation.store import EvalStore
from baimo.metering.principal import Principal

router = APIRouter(prefix="/api/eval", tags=["evaluation"], dependencies=[Depends(principal)])
RunId = Path(description="A run id (32 hex digits), as `baimo eval list` prints it.")
RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def visible_run(s: AppState, run_id: str, who: Principal) -> dict[str, Any]:
    """The run JSON of `run_id` when `who` may see it; NotFound (param `run_id`) otherwise, the same for a run
    that does not exist and for another owner's (no prefix lookup: a prefix could tell runs apart)."""
    run = None
    if RUN_ID.match(run_id):  # anything else cannot be a run (and never reaches the database)
        try:
            run = EvalStore(s.db).load_run(run_id)
        except BaimoError:
            run = None
    if run is None or run["run_id"] != run_id or not who.sees(run.get("owner")):
        raise NotFound(f"No evaluation run '{run_id}'.", param="run_id", code="run_not_found")
    return run


@router.get("/runs", summary="Evaluation runs, newest first (suite, status, targets, results stored)")
async def list_runs(suite: str | None = Query(None, description="Only the runs of this suite (by name)."),
                    limit: int = Query(100, ge=1, le=500), s: AppState = Depends(state),
                    who: Principal = Depends(principal)) -> dict[str, Any]:
    rows = await asyncio.to_thread(EvalStore(s.db).list_runs, limit, suite=suite, owner=who.owner,
                                   all_owners=who.is_admin)
    return {"data": [{k: v for k, v in r.items() if k != "owner" or who.is_admin} for r in rows]}


@router.get("/runs/{run_id}", summary="One run: suite, parameters, per-target statistics and every item's result")
async def get_run(run_id: str = RunId, s: AppState = Depends(state), who: Principal = Depends(principal)
                  ) -> dict[str, Any]:
    run = await asyncio.to_thread(visible_run, s, run_id, who)
    if not who.is_admin:
        run.pop("owner", None)
    return run


@router.get("/runs/{run_id}/report", response_class=HTMLResponse,
            summary="A run's self-contained HTML report: the cost–quality frontier (inline SVG) and the target table")
async def run_report(run_id: str = RunId, s: AppState = Depends(state), who: Principal = Depends(principal)
                     ) -> HTMLResponse:
    from baimo.evaluation.report import report_html

    run = await asyncio.to_thread(visible_run, s, run_id, who)
    page = await asyncio.to_thread(report_html, run)
    # the page is shown in a sandboxed frame; it runs no script and loads nothing
    return HTMLResponse(page, headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                       "img-src data:"})
