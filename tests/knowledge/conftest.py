"""Knowledge services over the multilingual fixture corpus (ingested once per module, real LanceDB, real USE) and
over the held-out news corpus (real USE and e5)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from baimo.config import FUSED_EMBEDDER, EmbedderConfig, KnowledgeConfig
from baimo.embeddings import EmbedderRegistry
from baimo.knowledge.bases import KnowledgeService
from baimo.knowledge.ingest import Ingestor, IngestReport, collect_files
from baimo.knowledge.retrieval import Retriever
from baimo.store.database import Database

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "kb_corpus"
HELDOUT = Path(__file__).resolve().parent.parent / "fixtures" / "kb_heldout"


def load_questions(name: str = "questions.jsonl", corpus: Path = CORPUS) -> list[dict]:
    return [json.loads(line) for line in (corpus / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def make_service(home: Path, *, fused: bool = False, vector_url: str | None = None) -> KnowledgeService:
    """New bases get USE only (the default), or with `fused` USE and e5 (knowledge.fuse_embedders). Chunks go to
    LanceDB under `home`, or with `vector_url` to that PostgreSQL server's pgvector store."""
    db = Database(f"sqlite:///{home / 'baimo.db'}")
    configs = [EmbedderConfig(id="local/multilingual-use", kind="use")]
    if fused:
        configs.append(FUSED_EMBEDDER.model_copy())
    config = KnowledgeConfig(fuse_embedders=[FUSED_EMBEDDER.id] if fused else [])
    if vector_url:
        return KnowledgeService(db, EmbedderRegistry(configs), config, vector_url, store_kind="pgvector")
    return KnowledgeService(db, EmbedderRegistry(configs), config, home / "knowledge")


@pytest.fixture(params=["lancedb", "pgvector"])
def vector_url(request: pytest.FixtureRequest) -> str | None:
    """Each chunk store: None for the embedded LanceDB, a real PostgreSQL server's URL for pgvector."""
    return request.getfixturevalue("postgres_url") if request.param == "pgvector" else None


class Corpus:
    def __init__(self, service: KnowledgeService, report: IngestReport) -> None:
        self.service = service
        self.report = report
        self.retriever = Retriever(service)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    home = tmp_path_factory.mktemp("kb-home")
    service = make_service(home)
    service.create("corpus")
    files, missing = collect_files([CORPUS / "docs"])
    assert not missing
    report = Ingestor(service).add("corpus", files)
    yield Corpus(service, report)
    service.db.close()


@pytest.fixture(scope="module", params=["lancedb", "pgvector"])
def stored_corpus(request: pytest.FixtureRequest, corpus: Corpus) -> Iterator[Corpus]:
    """The corpus in each chunk store. The pgvector one gets the LanceDB store's chunks (same text, vectors and
    sentence vectors, same catalogue) instead of a second ingestion (a minute of embedding), so the two runs differ
    only in the store's searches; ingestion into pgvector is tested by test_ingest_safety."""
    if request.param == "lancedb":
        yield corpus
        return
    from baimo.knowledge.store import SENTENCE_COLUMN, ChunkRecord, unpack_vectors

    service = corpus.service
    pg = KnowledgeService(service.db, service.embedders, service.config, request.getfixturevalue("postgres_url"),
                          store_kind="pgvector")
    base_id = service.get("corpus").id
    rows = service.store._table(base_id).to_arrow().to_pylist()  # type: ignore[attr-defined]
    pg.store.add(base_id, [ChunkRecord(
        chunk_id=r["chunk_id"], doc_id=r["doc_id"], doc_sha=r["doc_sha"], source=r["source"], location=r["location"],
        heading=r["heading"], ordinal=r["ordinal"], text=r["text"], search_text=r["search_text"],
        vector=np.asarray(r["vector"], dtype=np.float32),
        sentence_vectors=unpack_vectors(r[SENTENCE_COLUMN], len(r["vector"])) if r.get(SENTENCE_COLUMN) else None)
        for r in rows])
    pg.store.maintain(base_id)
    yield Corpus(pg, corpus.report)
    pg.store.drop(base_id)
