"""Knowledge services over the multilingual fixture corpus (ingested once per module, real LanceDB, real USE) and
over the held-out news corpus (real USE and e5)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

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


def make_service(home: Path, *, fused: bool = False) -> KnowledgeService:
    """New bases get USE only (the default), or with `fused` USE and e5 (knowledge.fuse_embedders)."""
    db = Database(f"sqlite:///{home / 'baimo.db'}")
    configs = [EmbedderConfig(id="local/multilingual-use", kind="use")]
    if fused:
        configs.append(FUSED_EMBEDDER.model_copy())
    config = KnowledgeConfig(fuse_embedders=[FUSED_EMBEDDER.id] if fused else [])
    return KnowledgeService(db, EmbedderRegistry(configs), config, home / "knowledge")


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
