"""The ingestion job table on both databases: concurrent claims take each job exactly once, a running job is left
alone while its claimer lives and beats, and taken over when its process is gone or silent."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from baimo.config import EmbedderConfig, KnowledgeConfig
from baimo.embeddings import EmbedderRegistry
from baimo.knowledge.bases import KnowledgeService
from baimo.knowledge.ingest import Ingestor, SourceFile
from baimo.knowledge.jobs import STALE_S, IngestJobRow, IngestJobs
from baimo.store.database import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}" if request.param == "sqlite" else request.getfixturevalue(
        "postgres_url")
    database = Database(url)
    with database.session() as s:
        s.query(IngestJobRow).delete()
    yield database
    database.close()


def jobs_on(db: Database, tmp_path: Path) -> IngestJobs:
    """A process's job runner (not started: the test claims by hand)."""
    knowledge = KnowledgeService(db, EmbedderRegistry([EmbedderConfig(id="local/multilingual-use", kind="use")]),
                                 KnowledgeConfig(), tmp_path / "knowledge")
    return IngestJobs(Ingestor(knowledge), tmp_path / "uploads")


def test_concurrent_claims_take_each_job_once(db: Database, tmp_path: Path) -> None:
    runners = [jobs_on(db, tmp_path) for _ in range(3)]
    queued = []
    for i in range(12):  # rows as `submit` writes them, without starting a runner
        job_id = f"ingest-test{i:02d}"
        (tmp_path / "uploads" / job_id).mkdir(parents=True)
        with db.session() as s:
            s.add(IngestJobRow(id=job_id, knowledge_base="kb", status="queued", files="[]", files_total=0,
                               files_done=0, chunks_done=0, current="", attempts=0, report="{}",
                               created_at=time.time() + i))
        queued.append(job_id)
    taken: list[tuple[int, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(runners))

    def claim_all(n: int) -> None:
        barrier.wait()
        while (row := runners[n].claim()) is not None:
            with lock:
                taken.append((n, row.id))

    threads = [threading.Thread(target=claim_all, args=(n,)) for n in range(len(runners))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(job for _, job in taken) == queued  # every job once, none twice
    with db.session() as s:
        rows = s.query(IngestJobRow).all()
        assert {r.status for r in rows} == {"running"} and all(r.attempts == 1 for r in rows)
        assert {r.claimed_by for r in rows} <= {r.me for r in runners}


def test_a_running_job_is_taken_over_only_when_its_claimer_is_gone_or_silent(db: Database, tmp_path: Path) -> None:
    runner = jobs_on(db, tmp_path)
    alive = f"{socket.gethostname()}:{os.getpid()}:x"  # this process: alive
    dead = f"{socket.gethostname()}:999999999:x"  # no such pid on this host
    with db.session() as s:
        for job_id, who, beat in [("ingest-alive", alive, time.time()), ("ingest-dead", dead, time.time()),
                                  ("ingest-silent", "other-host:1:x", time.time() - STALE_S - 5)]:
            s.add(IngestJobRow(id=job_id, knowledge_base="kb", status="running", files="[]", files_total=0,
                               files_done=0, chunks_done=0, current="", attempts=1, report="{}",
                               claimed_by=who, heartbeat=beat, created_at=time.time()))
    claimed = {runner.claim().id, runner.claim().id}  # type: ignore[union-attr]
    assert claimed == {"ingest-dead", "ingest-silent"} and runner.claim() is None
    with db.session() as s:
        s.execute(update(IngestJobRow).where(IngestJobRow.id == "ingest-alive").values(
            heartbeat=time.time() - STALE_S - 5))
    assert runner.claim().id == "ingest-alive"  # type: ignore[union-attr]


def test_a_submitted_job_is_run_and_its_status_read_from_the_table(db: Database, tmp_path: Path) -> None:
    runner = jobs_on(db, tmp_path)
    runner.ingestor.knowledge.create("kb")
    job = runner.submit("kb", [SourceFile("a.md", lambda: b"# A\n\nThe valve opens at 4 bar.")])
    assert (tmp_path / "uploads" / job.id / "00000").read_bytes().startswith(b"# A")  # saved before queued
    assert job.future is not None
    job.future.result(timeout=120)
    other = jobs_on(db, tmp_path)  # another process reads the same row
    done = other.get(job.id).to_dict()
    assert done["status"] == "done" and done["report"]["added"] == ["a.md"] and done["files_done"] == 1
    assert not (tmp_path / "uploads" / job.id).exists()
    assert other.counts()["done"] == 1
    assert json.loads(json.dumps(done)) == done
    runner.close()
