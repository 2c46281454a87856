"""The knowledge catalogue and personas on both databases Baimo supports (SQLite and a real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from baimo.config import EmbedderConfig, KnowledgeConfig
from baimo.embeddings import EmbedderRegistry
from baimo.errors import Conflict, NotFound
from baimo.knowledge.bases import KnowledgeService
from baimo.knowledge.ingest import Ingestor, SourceFile
from baimo.metering.usage import Usage, UsageLog
from baimo.personas import PersonaStore
from baimo.store.database import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}" if request.param == "sqlite" else request.getfixturevalue(
        "postgres_url")
    database = Database(url)
    yield database
    if request.param == "postgresql":
        from baimo.store.tables import Base

        with database.engine.begin() as c:
            for table in reversed(Base.metadata.sorted_tables):
                c.execute(table.delete())
    database.close()


def test_bases_documents_personas_and_salary_slip(db: Database, tmp_path: Path) -> None:
    embedders = EmbedderRegistry([EmbedderConfig(id="local/multilingual-use", kind="use")])
    # on PostgreSQL the chunks go to the same server's pgvector store, as a replicated deployment runs
    knowledge = (KnowledgeService(db, embedders, KnowledgeConfig(), db.url, store_kind="pgvector")
                 if db.url.startswith("postgresql") else KnowledgeService(db, embedders, KnowledgeConfig(),
                                                                          tmp_path / "knowledge"))
    knowledge.create("handbook", description="HR")
    with pytest.raises(Conflict):
        knowledge.create("handbook")
    data = b"# Leave\n\nEmployees get 27 days of paid leave a year."
    report = Ingestor(knowledge).add("handbook", [SourceFile("leave.md", lambda: data)])
    assert report.added == ["leave.md"]
    assert knowledge.info("handbook").documents == 1 and knowledge.documents("handbook")[0]["chunks"] == 1
    assert knowledge.documents("handbook")[0]["updated_at"].endswith(("Z", "+00:00"))

    personas = PersonaStore(db, check_model=lambda m: None, check_knowledge=knowledge.get)
    personas.create("hr", instructions="Be kind.", knowledge=["handbook"], grounded=True, budget_usd=5.0)
    with pytest.raises(NotFound):
        personas.create("bad", knowledge=["missing"])
    assert personas.get("hr").knowledge == ["handbook"] and personas.get("hr").grounded
    assert personas.update("hr", temperature=0.3).temperature == 0.3

    usage = UsageLog(db)
    usage.record(Usage(endpoint="chat.completions", model="m1", persona="hr", prompt_tokens=10,
                       completion_tokens=5, cost=0.5))
    usage.record(Usage(endpoint="chat.completions", model="m2", persona="hr", prompt_tokens=1, cost=0.25))
    usage.record(Usage(endpoint="chat.completions", model="m1", persona="other", cost=9.0))
    slip = usage.persona_report("hr")
    assert slip["requests"] == 2 and slip["cost"] == pytest.approx(0.75)
    assert slip["this_month_cost"] == pytest.approx(0.75)
    assert {m["model"]: m["share"] for m in slip["models"]} == {"m1": 0.5, "m2": 0.5}

    knowledge.delete("handbook")
    assert personas.forget_knowledge("handbook") == ["hr"]
    assert personas.get("hr").knowledge == []
    knowledge.close()
