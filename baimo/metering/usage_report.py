"""Usage reports: requests, tokens, cost and latency grouped by key, team, model, persona or day over a time
range, for `baimo usage` and `/api/usage?by=...`.

Every row of the `usage` table is one model call. `requests` counts client requests: it leaves out the rows of
a cascade's escalated attempts (`finish_reason = 'escalated'`) and of context summaries
(`endpoint = 'context.summary'`), which are extra calls made for a request; their tokens and cost are counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Float, String, and_, case, cast, func, select
from sqlalchemy.sql import ColumnElement

from baimo.errors import InvalidRequest
from baimo.store.database import Database
from baimo.store.tables import ApiKey, Team, UsageRecord

GROUPS = ("key", "team", "model", "persona", "day")
COLUMNS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
           "cost", "latency_ms_avg", "ttft_ms_avg")
_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Window:
    """A half-open time range [since, until) in UTC; None = unbounded on that side."""

    since: datetime | None = None
    until: datetime | None = None


def parse_time(text: str, *, param: str, end: bool = False, now: datetime | None = None) -> datetime:
    """A time from `2026-11-01` (a UTC day: its start, or with `end` the start of the next day so the day is
    included), an ISO 8601 date-time (`2026-11-01T12:00`, `...Z`, `...+08:00`; naive = UTC), or a span back
    from now (`30m`, `24h`, `7d`, `2w`). Raises InvalidRequest naming `param` otherwise."""
    text = text.strip()
    now = now or datetime.now(UTC)
    rel = _RELATIVE.match(text)
    if rel:
        return now - timedelta(**{_UNITS[rel.group(2)]: int(rel.group(1))})
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{param} {text!r}: use a date (2026-11-01), a date-time (2026-11-01T12:00Z) or a "
                             "span back from now (30m, 24h, 7d, 2w)", param=param) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def window(since: str | None = None, until: str | None = None, *, now: datetime | None = None) -> Window:
    """The Window of `since`/`until` texts (see parse_time); 400 when since is not before until."""
    w = Window(parse_time(since, param="since", now=now) if since else None,
               parse_time(until, param="until", end=True, now=now) if until else None)
    if w.since and w.until and w.since >= w.until:
        raise InvalidRequest("since must be before until", param="since")
    return w


def check_group(by: str) -> str:
    if by not in GROUPS:
        raise InvalidRequest(f"by {by!r}: use one of {', '.join(GROUPS)}", param="by")
    return by


def _day() -> ColumnElement[Any]:
    return func.substr(cast(UsageRecord.created_at, String), 1, 10)


def report(db: Database, by: str, w: Window = Window(), *, owner: str | None = None,
           all_owners: bool = True) -> list[dict[str, Any]]:
    """One row per group, most expensive first (by day: oldest first), each with `by`'s value under `key`
    (None: requests without one, e.g. no API key), a readable `label` (key or team name where known), and
    COLUMNS: counts, token sums, cost in USD, mean latency and time to first token in ms.
    `all_owners=False` keeps only the rows of `owner` (a non-admin's view; None = the local user's rows)."""
    check_group(by)
    group: ColumnElement[Any] = {"key": UsageRecord.api_key_id, "team": UsageRecord.team_id,
                                 "model": UsageRecord.model, "persona": UsageRecord.persona, "day": _day()}[by]
    counted = and_(UsageRecord.endpoint != "context.summary",
                   func.coalesce(UsageRecord.finish_reason, "") != "escalated")
    stmt = select(
        group.label("key"),
        func.sum(case((counted, 1), else_=0)),
        func.sum(case((and_(counted, UsageRecord.status_code >= 400), 1), else_=0)),
        func.sum(UsageRecord.prompt_tokens), func.sum(UsageRecord.completion_tokens),
        func.sum(UsageRecord.cached_tokens), func.sum(UsageRecord.reasoning_tokens),
        func.sum(UsageRecord.cost), func.avg(cast(UsageRecord.latency_ms, Float)),
        func.avg(cast(UsageRecord.ttft_ms, Float)),
    ).group_by(group)
    if w.since is not None:
        stmt = stmt.where(UsageRecord.created_at >= w.since)
    if w.until is not None:
        stmt = stmt.where(UsageRecord.created_at < w.until)
    if not all_owners:
        stmt = stmt.where(UsageRecord.owner.is_(None) if owner is None else UsageRecord.owner == owner)
    with db.session() as s:
        rows = []
        for key, *values in s.execute(stmt):
            row: dict[str, Any] = {"key": key, "label": key}
            for name, v in zip(COLUMNS, values, strict=True):
                if name == "cost":
                    row[name] = float(v or 0.0)
                elif name.endswith("_avg"):
                    row[name] = None if v is None else round(float(v), 1)
                else:
                    row[name] = int(v or 0)
            rows.append(row)
        _label(s, by, rows)
    if by == "day":
        return sorted(rows, key=lambda r: r["key"] or "")
    return sorted(rows, key=lambda r: (-r["cost"], -r["requests"], str(r["key"])))


def _label(s: Any, by: str, rows: list[dict[str, Any]]) -> None:
    """Names for key and team ids (a key that is gone keeps its id)."""
    ids = [r["key"] for r in rows if r["key"] is not None]
    if by not in ("key", "team") or not ids:
        return
    table = ApiKey if by == "key" else Team
    names = dict(s.execute(select(table.id, table.name).where(table.id.in_(ids))).all())
    for r in rows:
        if r["key"] in names:
            r["label"] = names[r["key"]]


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sum of a report's rows (means weighted by requests)."""
    out: dict[str, Any] = {c: sum(r[c] for r in rows) for c in COLUMNS if not c.endswith("_avg")}
    for c in ("latency_ms_avg", "ttft_ms_avg"):
        weighted = [(r[c], r["requests"]) for r in rows if r[c] is not None and r["requests"]]
        n = sum(w for _, w in weighted)
        out[c] = round(sum(v * w for v, w in weighted) / n, 1) if n else None
    out["cost"] = round(out["cost"], 10)
    return out
