"""Knowledge bases and their documents: names and settings in the SQL database, chunks in the chunk store.

The SQL rows are the catalogue (what exists, each file's content hash); the chunk store holds the searchable
text and vectors. `KnowledgeService` is the one object the API, CLI and chat path use.

Tenancy: a base has an owner (baimo/metering/principal.py) and its name is unique per owner. A base is referred to
by its id or its name; methods taking `who` see only that principal's bases (another owner's base is "not found",
exactly like a missing one), and internal callers (`who=None`: ingestion, retrieval, the CLI) pass ids once a
route has resolved a name for its caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from baimo.config import NAME_PATTERN, KnowledgeConfig
from baimo.embeddings import Embedder, EmbedderRegistry, embeds_segments
from baimo.errors import Conflict, InvalidRequest, NotFound
from baimo.knowledge.embed_pool import EmbedderPool
from baimo.knowledge.store import CHUNK_STORES, ChunkStore
from baimo.metering.principal import Principal, owner_clause, visible
from baimo.store.conversations import iso_utc
from baimo.store.database import Database
from baimo.store.tables import KnowledgeBase, KnowledgeDocument
from baimo.use_pooling import SegmentedText

BULK_MIN_TEXTS = 128  # below this, starting worker processes (~2 s to load the encoder) does not pay
EMBEDDER_SEPARATOR = ","  # a base's `embedder` column lists its embedders' ids, primary first: "use,e5"


def embedder_ids(base: KnowledgeBase | BaseInfo) -> list[str]:
    """The ids of a base's embedders, its primary one first. A base made before fusion records one id."""
    return base.embedder.split(EMBEDDER_SEPARATOR)


@dataclass
class EmbeddedBatch:
    """The vectors of a batch of passages: one (passages, dim) array per embedder of the base, primary first, and,
    when the primary embedder gives them and knowledge.sentence_vectors is on, each passage's (sentences, dim)
    sentence vectors under the primary embedder."""

    vectors: list[np.ndarray]
    sentence_vectors: list[np.ndarray] | None = None


@dataclass
class BaseInfo:
    id: str
    name: str
    description: str
    embedder: str
    chunk_size: int
    chunk_overlap: int
    created_at: str
    documents: int
    chunks: int

    def to_dict(self) -> dict[str, Any]:
        return {"object": "knowledge_base", **self.__dict__, "embedders": embedder_ids(self)}


def document_dict(d: KnowledgeDocument) -> dict[str, Any]:
    return {"object": "knowledge_document", "id": d.doc_id, "source": d.source, "format": d.format,
            "title": d.title, "sha256": d.sha256, "bytes": d.bytes, "chunks": d.chunks,
            "updated_at": iso_utc(d.updated_at)}


class KnowledgeService:
    def __init__(self, db: Database, embedders: EmbedderRegistry, config: KnowledgeConfig, store_path: Path,
                 *, store_kind: str = "lancedb") -> None:
        self.db = db
        self.embedders = embedders
        self.config = config
        self.store_path = store_path
        self._store_kind = store_kind
        self._store: ChunkStore | None = None
        self._pools: dict[str, EmbedderPool] = {}

    @property
    def store(self) -> ChunkStore:
        """Opened on first use, so servers and CLI commands that never touch knowledge never load LanceDB."""
        if self._store is None:
            self._store = CHUNK_STORES[self._store_kind](self.store_path, ann_index_rows=self.config.ann_index_rows)
        return self._store

    def embedder_for(self, base: KnowledgeBase | BaseInfo) -> Embedder:
        """The base's primary embedder: its vectors give passages their cosine similarity to a question."""
        return self.embedders.get(embedder_ids(base)[0])

    def embedders_for(self, base: KnowledgeBase | BaseInfo) -> list[Embedder]:
        """All the base's embedders, primary first (one per vector column, see `store.vector_column`)."""
        return [self.embedders.get(e) for e in embedder_ids(base)]

    def embed_bulk(self, base: KnowledgeBase, texts: list[str],
                   segments: list[SegmentedText] | None = None) -> Callable[[], EmbeddedBatch]:
        """Start embedding many passages with each of the base's embedders; call the result to wait for the
        vectors. `segments` gives each passage as its context and sentences (`texts[i]` is the context, when
        `context_in_vector`, then the sentences): a primary embedder that pools sentence vectors from the
        passage's own pass (`embeds_segments`) then returns them too (knowledge.sentence_vectors). In worker
        processes when configured and worth it (the caller can prepare the next batch meanwhile), else here."""
        embedders = self.embedders_for(base)
        pooled = segments is not None and self.config.sentence_vectors and embeds_segments(embedders[0])
        if self.config.ingest_workers < 2 or len(texts) < BULK_MIN_TEXTS:
            if pooled:
                primary, sentences = embedders[0].embed_segments(segments)  # type: ignore[attr-defined]
                batch = EmbeddedBatch([primary, *(e.embed(texts) for e in embedders[1:])], sentences)
            else:
                batch = EmbeddedBatch([embedder.embed(texts) for embedder in embedders])
            return lambda: batch
        waits: list[Callable[[], np.ndarray]] = []
        sentence_wait: Callable[[], tuple[np.ndarray, list[np.ndarray]]] | None = None
        for position, embedder in enumerate(embedders):
            pool = self._pools.get(embedder.config.id)
            if pool is None:
                pool = self._pools[embedder.config.id] = EmbedderPool(embedder.config, self.config.ingest_workers)
            if position == 0 and pooled:
                sentence_wait = pool.submit_segments(segments)  # type: ignore[arg-type]
            else:
                waits.append(pool.submit(texts))

        def wait() -> EmbeddedBatch:
            if sentence_wait is None:
                return EmbeddedBatch([w() for w in waits])
            primary, sentences = sentence_wait()
            return EmbeddedBatch([primary, *(w() for w in waits)], sentences)
        return wait

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    # -- knowledge bases -------------------------------------------------------------------------------------
    def create(self, name: str, *, description: str = "", embedder: str | None = None,
               fuse_embedders: list[str] | None = None, chunk_size: int | None = None,
               chunk_overlap: int | None = None, who: Principal | None = None) -> BaseInfo:
        """A new, empty base. Its embedders are `embedder` (default knowledge.embedder) and then `fuse_embedders`
        (default knowledge.fuse_embedders), recorded in the base so that a later change of the defaults never
        mixes vectors of two models in one column. Errors: 400 bad name or sizes, 404 unknown embedder, 409 taken."""
        if not NAME_PATTERN.match(name):
            raise InvalidRequest("a knowledge base name is 1-64 letters, digits, '_', '.' or '-', starting with a "
                                 "letter or digit", param="name")
        primary = embedder or self.config.embedder
        fused = self.config.fuse_embedders if fuse_embedders is None else fuse_embedders
        ids = list(dict.fromkeys([primary, *fused]))
        for e in ids:
            if EMBEDDER_SEPARATOR in e:
                raise InvalidRequest(f"an embedder id cannot contain {EMBEDDER_SEPARATOR!r}", param="embedder")
            self.embedders.get(e)  # 404 for an unknown embedder
        if len(EMBEDDER_SEPARATOR.join(ids)) > 200:  # the catalogue column's width
            raise InvalidRequest("the embedder ids of one base take at most 200 characters", param="embedder")
        size = chunk_size or self.config.chunk_size
        overlap = self.config.chunk_overlap if chunk_overlap is None else chunk_overlap
        if overlap >= size:
            raise InvalidRequest("chunk_overlap must be smaller than chunk_size", param="chunk_overlap")
        owner = who.owner if who else None
        with self.db.session() as s:
            if s.scalar(select(KnowledgeBase).where(KnowledgeBase.name == name,
                                                    func.coalesce(KnowledgeBase.owner, "") == (owner or ""))):
                raise Conflict(f"knowledge base {name!r} already exists", param="name")
            row = KnowledgeBase(name=name, owner=owner, description=description,
                                embedder=EMBEDDER_SEPARATOR.join(ids), chunk_size=size, chunk_overlap=overlap)
            s.add(row)
            s.flush()
            return self._info(s, row)

    def _row(self, s: Any, ref: str, who: Principal | None = None) -> KnowledgeBase:
        """A base by id or name among those `who` sees; for a name several owners use (admins, internal
        callers), the caller's own base first, then the oldest. NotFound (param `name`) otherwise."""
        row = s.get(KnowledgeBase, ref)
        if row is None or not visible(who, row.owner):
            own = who.owner if who else None
            row = s.scalar(select(KnowledgeBase).where(KnowledgeBase.name == ref,
                                                       owner_clause(KnowledgeBase.owner, who))
                           .order_by(func.coalesce(KnowledgeBase.owner, "") != (own or ""),
                                     KnowledgeBase.created_at).limit(1))
        if row is None:
            raise NotFound(f"no knowledge base {ref!r}", param="name")
        return row

    def get(self, name: str, *, who: Principal | None = None) -> KnowledgeBase:
        """The base row by id or name (see `_row`)."""
        with self.db.session() as s:
            return self._row(s, name, who)

    def info(self, name: str, *, who: Principal | None = None) -> BaseInfo:
        with self.db.session() as s:
            row = self._row(s, name, who)
            return self._info(s, row)

    def _info(self, s: Any, row: KnowledgeBase) -> BaseInfo:
        docs, chunks = s.execute(select(func.count(), func.coalesce(func.sum(KnowledgeDocument.chunks), 0))
                                 .where(KnowledgeDocument.kb_id == row.id)).one()
        return BaseInfo(id=row.id, name=row.name, description=row.description, embedder=row.embedder,
                        chunk_size=row.chunk_size, chunk_overlap=row.chunk_overlap,
                        created_at=iso_utc(row.created_at), documents=docs, chunks=int(chunks))

    def list(self, *, who: Principal | None = None) -> list[BaseInfo]:
        """The bases `who` sees, by name."""
        stmt = select(KnowledgeBase).where(owner_clause(KnowledgeBase.owner, who)).order_by(KnowledgeBase.name)
        with self.db.session() as s:
            return [self._info(s, row) for row in s.scalars(stmt)]

    def delete(self, name: str, *, who: Principal | None = None) -> KnowledgeBase:
        """Drop the chunks first: a kill in between leaves a catalogue row whose base is empty, never orphans.
        Returns the deleted row."""
        base = self.get(name, who=who)
        self.store.drop(base.id)
        with self.db.session() as s:
            s.delete(self._row(s, base.id))
        return base

    # -- documents -------------------------------------------------------------------------------------------
    def documents(self, name: str, *, who: Principal | None = None) -> list[dict[str, Any]]:
        base = self.get(name, who=who)
        with self.db.session() as s:
            rows = s.scalars(select(KnowledgeDocument).where(KnowledgeDocument.kb_id == base.id)
                             .order_by(KnowledgeDocument.source))
            return [document_dict(d) for d in rows]

    def document(self, base: KnowledgeBase, doc_id: str) -> KnowledgeDocument | None:
        with self.db.session() as s:
            return s.scalar(select(KnowledgeDocument).where(KnowledgeDocument.kb_id == base.id,
                                                            KnowledgeDocument.doc_id == doc_id))

    def remove_document(self, name: str, doc: str, *, who: Principal | None = None) -> dict[str, Any]:
        """Remove a document by its source name or its id."""
        base = self.get(name, who=who)
        with self.db.session() as s:
            row = s.scalar(select(KnowledgeDocument).where(
                KnowledgeDocument.kb_id == base.id,
                (KnowledgeDocument.source == doc) | (KnowledgeDocument.doc_id == doc)))
            if row is None:
                raise NotFound(f"knowledge base {name!r} has no document {doc!r}", param="document")
            removed = document_dict(row)
        self.store.delete_doc(base.id, removed["id"])
        with self.db.session() as s:
            row = s.scalar(select(KnowledgeDocument).where(KnowledgeDocument.kb_id == base.id,
                                                           KnowledgeDocument.doc_id == removed["id"]))
            if row is not None:
                s.delete(row)
        return removed

    def save_documents(self, base: KnowledgeBase, docs: list[dict[str, Any]]) -> None:
        """Insert or update catalogue rows (doc_id, source, fmt, title, sha256, size, chunks) in one transaction."""
        from baimo.store.tables import utcnow

        with self.db.session() as s:
            for d in docs:
                row = s.scalar(select(KnowledgeDocument).where(KnowledgeDocument.kb_id == base.id,
                                                               KnowledgeDocument.doc_id == d["doc_id"]))
                if row is None:
                    row = KnowledgeDocument(kb_id=base.id, doc_id=d["doc_id"])
                    s.add(row)
                row.source, row.format, row.title, row.sha256 = d["source"], d["fmt"], d["title"][:500], d["sha256"]
                row.bytes, row.chunks, row.updated_at = d["size"], d["chunks"], utcnow()
