"""The usage writer's group commit: records queued while a commit runs go in the next transaction together,
in order; each waiter learns when its own record is durable; a bad row does not lose the others."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from baimo.metering.usage import Usage, UsageLog
from baimo.metering.usage_writer import UsageWriter
from baimo.store.database import Database


def test_records_queued_during_a_commit_are_committed_together_in_order() -> None:
    committed: list[list[int]] = []
    gate = threading.Event()
    entered = threading.Event()

    def commit(rows: list[dict]) -> None:
        entered.set()
        gate.wait(10)  # the first transaction is slow: everything submitted meanwhile waits for the next
        committed.append([r["n"] for r in rows])

    writer = UsageWriter(commit)
    first = writer.submit({"n": 0})
    assert entered.wait(10)
    later = [writer.submit({"n": i}) for i in range(1, 51)]
    assert not any(f.done() for f in [first, *later])  # nothing is acknowledged before its commit
    gate.set()
    for f in [first, *later]:
        f.result(10)
    writer.close()
    assert committed == [[0], list(range(1, 51))]
    assert (writer.batches, writer.rows) == (2, 51)


def test_max_batch_caps_a_transaction() -> None:
    committed: list[int] = []
    gate = threading.Event()

    def commit(rows: list[dict]) -> None:
        gate.wait(10)
        committed.append(len(rows))

    writer = UsageWriter(commit, max_batch=20)
    futures = [writer.submit({"n": i}) for i in range(61)]
    gate.set()
    for f in futures:
        f.result(10)
    writer.close()
    assert sum(committed) == 61 and max(committed) <= 20


def test_a_failing_row_is_reported_to_its_waiter_and_the_others_are_kept() -> None:
    kept: list[int] = []

    def commit(rows: list[dict]) -> None:
        if any(r["n"] == 3 for r in rows):
            raise ValueError("bad row")
        kept.extend(r["n"] for r in rows)

    writer = UsageWriter(commit, linger_ms=50)  # linger so that the rows share one transaction first
    futures = [writer.submit({"n": i}) for i in range(6)]
    for i, f in enumerate(futures):
        if i == 3:
            with pytest.raises(ValueError):
                f.result(10)
        else:
            f.result(10)
    writer.close()
    assert sorted(kept) == [0, 1, 2, 4, 5]


@pytest.mark.parametrize("group", [True, False])
def test_usage_log_write_is_durable_when_it_returns(tmp_path: Path, group: bool) -> None:
    db_path = tmp_path / "u.db"
    log = UsageLog(Database(f"sqlite:///{db_path}"), group_commit=group)
    seen: list[str] = []
    log.listeners.append(lambda u: seen.append(u.endpoint))

    async def many() -> list[int]:
        counts = []

        async def one(i: int) -> None:
            await log.write(Usage(endpoint="chat.completions", model="m", prompt_tokens=i, response_id=f"r{i}"))
            other = sqlite3.connect(db_path)  # another connection sees the row: it is committed
            counts.append(other.execute("SELECT count(*) FROM usage WHERE response_id = ?", (f"r{i}",)).fetchone()[0])
            other.close()

        await asyncio.gather(*(one(i) for i in range(40)))
        return counts

    assert asyncio.run(many()) == [1] * 40
    assert seen == ["chat.completions"] * 40
    log.close()
    if group:
        assert log.writer.batches < 40  # concurrent requests shared transactions


def test_a_lone_record_does_not_wait_for_company() -> None:
    """The linger applies only after a transaction of several records (requests finishing together)."""
    writer = UsageWriter(lambda rows: None, linger_ms=600_000)
    writer.submit({"n": 0}).result(30)  # a ten-minute linger would time this out
    writer.close()
    assert writer.batches == 1
