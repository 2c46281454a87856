"""Where chunks and their vectors live: a small protocol, and the embedded LanceDB store under BAIMO_HOME.

A server-side store (a vector database server) plugs in by implementing `ChunkStore` and registering a kind in
`CHUNK_STORES`; the rest of `baimo.knowledge` only talks to the protocol. PostgreSQL with pgvector is one
(`pg_store.py`), chosen by a postgresql:// `vector_store_url` (`store_kind_for`), so replicas share knowledge.
LanceDB commits each `add` and `delete` as one new table version, so a kill mid-ingest leaves every earlier commit
intact and searchable.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# Lance's Rust logger warns about things we do on purpose (e.g. creating a table); keep stderr for real problems.
os.environ.setdefault("LANCE_LOG", "error")

TEXT_COLUMN = "search_text"
VECTOR_COLUMN = "vector"
# Each chunk's sentence vectors under the primary embedder, in one binary value (`pack_vectors`), read only for
# the dense candidates of a query, so they need no index of their own. A base made before has no such column.
SENTENCE_COLUMN = "sentence_vectors"


def pack_vectors(vectors: np.ndarray) -> bytes:
    """(n, dim) float vectors as bytes: n float32 scales, then n x dim int8 (each row scaled so its largest
    component is 127): dim + 4 bytes a vector, a quarter of float32, and the cosine of two unit vectors moves by
    < 0.002 (symmetric per-vector scalar quantization, as in the SQ of vector indexes)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    scales = np.maximum(np.abs(vectors).max(axis=1), 1e-12) / 127.0
    codes = np.round(vectors / scales[:, None]).astype(np.int8)
    return scales.astype(np.float32).tobytes() + codes.tobytes()


def unpack_vectors(blob: bytes, dim: int) -> np.ndarray:
    """The (n, dim) float32 vectors of a `pack_vectors` value."""
    n = len(blob) // (dim + 4)
    scales = np.frombuffer(blob, dtype=np.float32, count=n)
    codes = np.frombuffer(blob, dtype=np.int8, offset=4 * n).reshape(n, dim)
    return codes.astype(np.float32) * scales[:, None]
RESULT_COLUMNS = ["chunk_id", "doc_id", "source", "location", "heading", "ordinal", "text", VECTOR_COLUMN]


def vector_column(position: int) -> str:
    """The column of a base's `position`-th embedder (0 is its primary one): `vector`, `vector_1`, `vector_2`..."""
    return VECTOR_COLUMN if position == 0 else f"{VECTOR_COLUMN}_{position}"


@dataclass
class ChunkRecord:
    """One chunk as stored: the text shown to people, the text indexed for search, and its vector."""

    chunk_id: str
    doc_id: str
    doc_sha: str
    source: str
    location: str
    heading: str
    ordinal: int
    text: str
    search_text: str
    vector: np.ndarray  # the base's primary embedder's vector (cosine similarities are on its scale)
    extra_vectors: list[np.ndarray] = field(default_factory=list)  # its further embedders', in the base's order
    sentence_vectors: np.ndarray | None = None  # (sentences, dim) under the primary embedder, None: not made


@dataclass
class StoredHit:
    chunk_id: str
    doc_id: str
    source: str
    location: str
    heading: str
    ordinal: int
    text: str
    vector: np.ndarray  # the primary embedder's vector, whatever column was searched
    score: float  # the store's own score: BM25 for text search, cosine similarity for vector search
    sentence_vectors: np.ndarray | None = None  # (sentences, dim), when asked for and stored


class ChunkStore(Protocol):
    def add(self, kb_id: str, records: list[ChunkRecord]) -> None: ...
    def delete_doc(self, kb_id: str, doc_id: str) -> None: ...
    def replace_documents(self, kb_id: str, records: list[ChunkRecord], versions: dict[str, str]) -> None: ...
    def text_search(self, kb_id: str, query: str, k: int) -> list[StoredHit]: ...
    def vector_search(self, kb_id: str, vector: np.ndarray, k: int, column: str = VECTOR_COLUMN, *,
                      sentences: bool = False) -> list[StoredHit]: ...
    def count(self, kb_id: str) -> int: ...
    def drop(self, kb_id: str) -> None: ...
    def maintain(self, kb_id: str) -> None: ...


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class LanceChunkStore:
    """One LanceDB table per knowledge base: BM25 full-text index (ICU word segmentation, so Chinese, Japanese
    and Arabic are split into words) plus a cosine vector index once the table is large."""

    def __init__(self, path: Path, *, ann_index_rows: int = 20_000) -> None:
        import lancedb

        path.mkdir(parents=True, exist_ok=True)
        # Re-read the table version on each query so chunks added by another process (the CLI) show at once.
        self._db = lancedb.connect(str(path), read_consistency_interval=timedelta(0))
        self.ann_index_rows = ann_index_rows
        self._tables: dict[str, Any] = {}
        self._lock = threading.Lock()

    @staticmethod
    def table_name(kb_id: str) -> str:
        return f"kb_{kb_id}"

    def _table(self, kb_id: str) -> Any | None:
        name = self.table_name(kb_id)
        table = self._tables.get(name)
        if table is None:
            try:
                table = self._db.open_table(name)
            except (ValueError, FileNotFoundError):
                return None
            self._tables[name] = table
        return table

    def add(self, kb_id: str, records: list[ChunkRecord]) -> None:
        if not records:
            return
        import pyarrow as pa

        def vectors(position: int) -> Any:
            matrix = np.stack([r.vector if position == 0 else r.extra_vectors[position - 1] for r in records])
            return pa.FixedSizeListArray.from_arrays(pa.array(matrix.astype(np.float32).ravel()), matrix.shape[1])

        data = pa.table({
            "chunk_id": pa.array([r.chunk_id for r in records], pa.string()),
            "doc_id": pa.array([r.doc_id for r in records], pa.string()),
            "doc_sha": pa.array([r.doc_sha for r in records], pa.string()),
            "source": pa.array([r.source for r in records], pa.string()),
            "location": pa.array([r.location for r in records], pa.string()),
            "heading": pa.array([r.heading for r in records], pa.string()),
            "ordinal": pa.array([r.ordinal for r in records], pa.int32()),
            "text": pa.array([r.text for r in records], pa.string()),
            TEXT_COLUMN: pa.array([r.search_text for r in records], pa.string()),
            **{vector_column(i): vectors(i) for i in range(1 + len(records[0].extra_vectors))},
        })
        with self._lock:
            table = self._table(kb_id)
            if (table is None and any(r.sentence_vectors is not None for r in records)) or (
                    table is not None and SENTENCE_COLUMN in table.schema.names):
                data = data.append_column(SENTENCE_COLUMN, pa.array([
                    b"" if r.sentence_vectors is None else pack_vectors(r.sentence_vectors)
                    for r in records], pa.binary()))
            if table is None:
                table = self._db.create_table(self.table_name(kb_id), data=data)
                self._tables[self.table_name(kb_id)] = table
                self._create_text_index(table)
            else:
                table.add(data)

    @staticmethod
    def _create_text_index(table: Any) -> None:
        from lancedb.index import FTS

        # No stemming or stop words: they are English-only and would damage every other language.
        table.create_index(TEXT_COLUMN, config=FTS(base_tokenizer="icu", stem=False, remove_stop_words=False,
                                                   lower_case=True, ascii_folding=True), replace=True)

    def _delete(self, kb_id: str, where: str) -> None:
        with self._lock:
            table = self._table(kb_id)
            if table is not None:
                table.delete(where)

    def delete_doc(self, kb_id: str, doc_id: str) -> None:
        """Delete every chunk of a document."""
        self._delete(kb_id, f"doc_id = {_quote(doc_id)}")

    def replace_documents(self, kb_id: str, records: list[ChunkRecord], versions: dict[str, str]) -> None:
        """Make `versions` (doc_id -> sha) the only versions of those documents: drop leftovers of these same
        versions, append `records` in one commit, then drop every other version of the documents."""
        if not versions:
            return
        self._delete(kb_id, " OR ".join(f"(doc_id = {_quote(d)} AND doc_sha = {_quote(v)})"
                                        for d, v in versions.items()))
        self.add(kb_id, records)
        self._delete(kb_id, " OR ".join(f"(doc_id = {_quote(d)} AND doc_sha != {_quote(v)})"
                                        for d, v in versions.items()))

    def _hits(self, rows: list[dict[str, Any]], score: Callable[[dict[str, Any]], float]) -> list[StoredHit]:
        hits = []
        for r in rows:
            vector = np.asarray(r[VECTOR_COLUMN], dtype=np.float32)
            blob = r.get(SENTENCE_COLUMN)
            sentences = unpack_vectors(blob, len(vector)) if blob else None
            hits.append(StoredHit(chunk_id=r["chunk_id"], doc_id=r["doc_id"], source=r["source"],
                                  location=r["location"], heading=r["heading"], ordinal=int(r["ordinal"]),
                                  text=r["text"], vector=vector, score=score(r), sentence_vectors=sentences))
        return hits

    def text_search(self, kb_id: str, query: str, k: int) -> list[StoredHit]:
        table = self._table(kb_id)
        if table is None or not query.strip():
            return []
        rows = (table.search(query, query_type="fts", fts_columns=TEXT_COLUMN).limit(k)
                .select([*RESULT_COLUMNS, "_score"]).to_list())
        return self._hits(rows, lambda r: float(r["_score"]))

    def vector_search(self, kb_id: str, vector: np.ndarray, k: int, column: str = VECTOR_COLUMN, *,
                      sentences: bool = False) -> list[StoredHit]:
        """The k chunks nearest to `vector` in `column` (cosine); each hit carries the primary `vector` too, and
        with `sentences` its sentence vectors when the base stores them."""
        table = self._table(kb_id)
        if table is None:
            return []
        columns = [*RESULT_COLUMNS, "_distance"]
        if sentences and SENTENCE_COLUMN in table.schema.names:
            columns.append(SENTENCE_COLUMN)
        query = table.search(vector.astype(np.float32), vector_column_name=column).distance_type("cosine")
        rows = query.limit(k).nprobes(32).refine_factor(4).select(columns).to_list()
        return self._hits(rows, lambda r: 1.0 - float(r["_distance"]))

    def count(self, kb_id: str) -> int:
        table = self._table(kb_id)
        return 0 if table is None else int(table.count_rows())

    def drop(self, kb_id: str) -> None:
        with self._lock:
            self._tables.pop(self.table_name(kb_id), None)
            try:
                self._db.drop_table(self.table_name(kb_id))
            except (ValueError, FileNotFoundError):
                pass

    def maintain(self, kb_id: str) -> None:
        """After an ingest: fold new rows into the indexes, compact small files, and build the approximate
        vector index of each embedder's column once the table is big enough that a flat scan gets slow (~270 ms
        at 100k chunks here)."""
        with self._lock:
            table = self._table(kb_id)
            if table is None:
                return
            indexed = {ix.name: ix for ix in table.list_indices()}
            if not any(getattr(ix, "columns", []) == [TEXT_COLUMN] for ix in indexed.values()):
                self._create_text_index(table)
            if not any(getattr(ix, "columns", []) == ["doc_id"] for ix in indexed.values()):
                from lancedb.index import BTree

                table.create_index("doc_id", config=BTree())  # replacing or removing a document finds it fast
            if table.count_rows() >= self.ann_index_rows:
                from lancedb.index import IvfHnswSq

                columns = [name for name in table.schema.names if name.startswith(VECTOR_COLUMN)]
                for column in columns:
                    if not any(getattr(ix, "columns", []) == [column] for ix in indexed.values()):
                        table.create_index(column, config=IvfHnswSq(distance_type="cosine"))
            table.optimize()


def _pgvector(url: str, **kwargs: Any) -> ChunkStore:
    from baimo.knowledge.pg_store import PgVectorChunkStore

    return PgVectorChunkStore(url, **kwargs)


CHUNK_STORES: dict[str, Callable[..., ChunkStore]] = {"lancedb": LanceChunkStore, "pgvector": _pgvector}


def store_kind_for(location: Path | str) -> str:
    """The `CHUNK_STORES` kind for a location: `pgvector` for a postgresql:// URL, else `lancedb` (a folder)."""
    return "pgvector" if str(location).startswith(("postgresql", "postgres:")) else "lancedb"
