"""Migration 0007 (teams, owners, names unique per owner) on a database holding 0006 data: SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from baimo.store.database import MIGRATIONS, make_engine, migrate

KB = ("INSERT INTO knowledge_bases (id, name, owner, description, embedder, chunk_size, chunk_overlap, created_at) "
      "VALUES (:id, :name, :owner, '', 'e', 700, 120, '2026-01-01')")
PERSONA = ("INSERT INTO personas (id, name, owner, description, instructions, knowledge, grounded, confidential, "
           "created_at, updated_at) VALUES (:id, :name, :owner, '', '', '[]', false, false, '2026-01-01', "
           "'2026-01-01')")


def _at_0006_with_data(url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0006")
    with engine.begin() as c:
        c.execute(text(KB.replace(", owner", "").replace(", :owner", "")), {"id": "k1", "name": "handbook"})
        c.execute(text("INSERT INTO knowledge_documents (kb_id, doc_id, source, format, title, sha256, bytes, "
                       "chunks, updated_at) VALUES ('k1', 'd1', 'a.md', 'md', 'A', 'x', 1, 3, '2026-01-01')"))
        c.execute(text(PERSONA.replace(", owner", "").replace(", :owner", "")), {"id": "p1", "name": "helper"})
    return engine


def _check_upgrade(engine) -> None:  # type: ignore[no-untyped-def]
    migrate(engine)
    with engine.begin() as c:  # the base's documents survived the table's rebuild, and old rows have no owner
        assert c.execute(text("SELECT kb_id, doc_id, chunks FROM knowledge_documents")).all() == [("k1", "d1", 3)]
        assert c.execute(text("SELECT owner FROM knowledge_bases")).scalar() is None
        c.execute(text(KB), {"id": "k2", "name": "handbook", "owner": "team:blue"})  # same name, other owner
        c.execute(text(PERSONA), {"id": "p2", "name": "helper", "owner": "team:blue"})
    for statement, row in ((KB, {"id": "k3", "name": "handbook", "owner": None}),
                           (KB, {"id": "k4", "name": "handbook", "owner": "team:blue"}),
                           (PERSONA, {"id": "p3", "name": "helper", "owner": None})):
        with pytest.raises(IntegrityError), engine.begin() as c:  # unique per owner, the NULL owner included
            c.execute(text(statement), row)


def test_upgrade_on_sqlite_keeps_documents_and_makes_names_unique_per_owner(tmp_path: Path) -> None:
    _check_upgrade(_at_0006_with_data(f"sqlite:///{tmp_path / 'old.db'}"))


def test_upgrade_on_postgresql(postgres_url: str) -> None:
    name = "mig_" + uuid.uuid4().hex[:8]
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    engine = _at_0006_with_data(postgres_url.rsplit("/", 1)[0] + "/" + name)
    try:
        _check_upgrade(engine)
    finally:
        engine.dispose()
