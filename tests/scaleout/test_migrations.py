"""Replicas starting together on one empty PostgreSQL database: one migrates, the others wait and find the schema
at head (an advisory lock in `migrate`), instead of racing to create the same tables."""

from __future__ import annotations

import threading
import uuid

import psycopg

from baimo.store.database import Database


def test_replicas_migrating_one_database_at_once_all_succeed(postgres_url: str) -> None:
    name = "race_" + uuid.uuid4().hex[:8]
    server = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres_url.rsplit("/", 1)[0] + "/" + name
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start_replica() -> None:
        barrier.wait()
        try:
            Database(url).close()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start_replica) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        head = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert len(head) == 1 and {"knowledge_jobs", "usage", "conversations"} <= tables
