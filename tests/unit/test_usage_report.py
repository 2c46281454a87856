"""Usage reports on a real SQLite database: grouping, time windows, owners, names, totals; bad input."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, text

from baimo.errors import InvalidRequest
from baimo.metering.keys import KeyStore
from baimo.metering.usage_report import Window, check_group, parse_time, report, totals, window
from baimo.store.database import Database
from baimo.store.tables import UsageRecord

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_parse_time_accepts_dates_datetimes_and_spans() -> None:
    assert parse_time("2026-11-01", param="since") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_time("2026-11-01", param="until", end=True) == datetime(2026, 11, 2, tzinfo=UTC)  # day included
    assert parse_time("2026-11-01T12:30Z", param="since") == datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    assert parse_time("2026-11-01T20:30+08:00", param="since") == datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    assert parse_time("2026-11-01T12:30", param="since") == datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    assert parse_time("7d", param="since", now=NOW) == NOW - timedelta(days=7)
    assert parse_time("24h", param="since", now=NOW) == NOW - timedelta(hours=24)
    assert parse_time("30m", param="since", now=NOW) == NOW - timedelta(minutes=30)
    assert parse_time("2w", param="since", now=NOW) == NOW - timedelta(weeks=2)


@pytest.mark.parametrize("text", ["yesterday", "7", "7y", "2026-13-01", "2026/11/01", ""])
def test_bad_times_name_their_parameter(text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_time(text, param="until")
    assert info.value.param == "until" and "\n" not in info.value.message


def test_window_rejects_an_empty_range_and_bad_group() -> None:
    assert window("2026-11-01", "2026-11-01") == Window(datetime(2026, 11, 1, tzinfo=UTC),
                                                        datetime(2026, 11, 2, tzinfo=UTC))
    with pytest.raises(InvalidRequest) as info:
        window("2d", "3d", now=NOW)
    assert info.value.param == "since"
    with pytest.raises(InvalidRequest) as info:
        check_group("colour")
    assert info.value.param == "by" and "key, team, model, persona, day" in info.value.message


def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database: a SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'u.db'}"
    server = request.getfixturevalue("postgres_url")
    name = "usage_" + uuid.uuid4().hex[:12]
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    database = Database(fresh_database(request, tmp_path))
    keys = KeyStore(database)
    alice = keys.create("alice", team="red")[0]
    bob = keys.create("bob")[0]
    red = alice["team_id"]
    day1, day2 = datetime(2026, 11, 1, 10, tzinfo=UTC), datetime(2026, 11, 2, 10, tzinfo=UTC)
    rows = [
        # alice (team red): two requests on day 1, one of them after a cascade escalation
        dict(created_at=day1, endpoint="chat.completions", api_key_id=alice["id"], team_id=red, owner=f"team:{red}",
             model="cheap", prompt_tokens=10, completion_tokens=5, cost=0.001, latency_ms=100.0, ttft_ms=10.0,
             finish_reason="escalated"),
        dict(created_at=day1, endpoint="chat.completions", api_key_id=alice["id"], team_id=red, owner=f"team:{red}",
             model="strong", prompt_tokens=10, completion_tokens=20, cached_tokens=4, reasoning_tokens=7, cost=0.01,
             latency_ms=300.0, ttft_ms=30.0, persona="helper", finish_reason="stop"),
        dict(created_at=day1, endpoint="chat.completions", api_key_id=alice["id"], team_id=red, owner=f"team:{red}",
             model=None, status_code=404, error="no such model", latency_ms=1.0),
        # bob: a request and its context summary on day 2
        dict(created_at=day2, endpoint="context.summary", api_key_id=bob["id"], owner="user:bob", model="cheap",
             prompt_tokens=100, completion_tokens=30, cost=0.002),
        dict(created_at=day2, endpoint="chat.completions", api_key_id=bob["id"], owner="user:bob", model="cheap",
             prompt_tokens=50, completion_tokens=10, cost=0.003, latency_ms=200.0, ttft_ms=None),
        # the local user (no key)
        dict(created_at=day2, endpoint="embeddings", model="e5", prompt_tokens=8, cost=0.0, latency_ms=5.0),
    ]
    defaults = {c.name: None for c in UsageRecord.__table__.columns if c.name != "id"}
    defaults.update(stream=False, prompt_tokens=0, completion_tokens=0, cached_tokens=0, reasoning_tokens=0,
                    cost=0.0, status_code=200)
    with database.engine.begin() as conn:
        conn.execute(insert(UsageRecord.__table__), [{**defaults, **r} for r in rows])
    database.keys = {"alice": alice["id"], "bob": bob["id"], "red": red}  # type: ignore[attr-defined]
    yield database
    database.close()


def test_report_by_key_counts_requests_not_extra_calls_and_names_keys(db: Database) -> None:
    rows = {r["label"]: r for r in report(db, "key")}
    alice, bob, local = rows["alice"], rows["bob"], rows[None]
    assert alice["key"] == db.keys["alice"]  # type: ignore[attr-defined]
    assert (alice["requests"], alice["errors"]) == (2, 1)  # the escalated attempt is not a request
    assert (alice["prompt_tokens"], alice["completion_tokens"]) == (20, 25)  # but its tokens and cost count
    assert (alice["cached_tokens"], alice["reasoning_tokens"]) == (4, 7)
    assert alice["cost"] == pytest.approx(0.011)
    assert alice["latency_ms_avg"] == pytest.approx((100 + 300 + 1) / 3, abs=0.1)
    assert alice["ttft_ms_avg"] == pytest.approx(20.0)
    assert (bob["requests"], bob["prompt_tokens"], bob["cost"]) == (1, 150, pytest.approx(0.005))
    assert bob["ttft_ms_avg"] is None
    assert local["requests"] == 1
    assert [r["label"] for r in report(db, "key")] == ["alice", "bob", None]  # most expensive first


def test_report_by_team_model_persona_and_day(db: Database) -> None:
    teams = {r["label"]: r["requests"] for r in report(db, "team")}
    assert teams == {"red": 2, None: 2}
    models = {r["key"]: r["requests"] for r in report(db, "model")}
    assert models == {"cheap": 1, "strong": 1, None: 1, "e5": 1}
    personas = {r["key"]: r["requests"] for r in report(db, "persona")}
    assert personas == {"helper": 1, None: 3}
    days = report(db, "day")
    assert [(r["key"], r["requests"]) for r in days] == [("2026-11-01", 2), ("2026-11-02", 2)]
    assert totals(days)["requests"] == 4 and totals(days)["cost"] == pytest.approx(0.016)


def test_report_window_and_owner_scope(db: Database) -> None:
    day2_only = report(db, "key", window("2026-11-02", "2026-11-02"))
    assert {r["label"] for r in day2_only} == {"bob", None}
    assert report(db, "key", window(None, "2026-10-31")) == []
    red = db.keys["red"]  # type: ignore[attr-defined]
    mine = report(db, "model", owner=f"team:{red}", all_owners=False)
    assert sum(r["requests"] for r in mine) == 2 and {r["key"] for r in mine} == {"cheap", "strong", None}
    local = report(db, "model", owner=None, all_owners=False)
    assert [r["key"] for r in local] == ["e5"]
