"""Knowledge chunks in PostgreSQL with pgvector: the `ChunkStore` that N workers and replicas share.

Set `vector_store_url: postgresql://...` in baimo.yaml (or BAIMO_VECTOR_URL). One table per knowledge base,
`kb_<id>`, as in the LanceDB store: the chunk's columns, one `vector(dim)` column per embedder of the base
(`vector`, `vector_1`...), the packed sentence vectors (`bytea`, see `store.pack_vectors`) and a `tsvector` for
full-text search. The server needs the `vector` extension (Debian: postgresql-15-pgvector); the store runs
`CREATE EXTENSION IF NOT EXISTS vector` on first use.

Full-text search keeps the LanceDB store's behaviour: no stemming or stop words (PostgreSQL's `simple`
configuration), lower case, accents folded, and CJK text cut into words before PostgreSQL sees it (`fts_words`:
jieba's search-mode segmentation for Han characters, character bigrams for kana and hangul; LanceDB uses ICU's
dictionary segmentation, which jieba's dictionary approximates for Chinese). A query matches chunks sharing any of
its words (OR, as BM25 does) and is ranked by BM25 (Robertson and Zaragoza, "The Probabilistic Relevance
Framework: BM25 and Beyond", 2009; Lucene's idf and k1 = 1.2, b = 0.75) with each word counted once per chunk:
PostgreSQL has no BM25 and its `ts_rank_cd` has no idf, so common words ("the", "what") outweighed rare ones and
BM25-only hit@5 on the fixture corpus fell from LanceDB's 0.57 to 0.32; idf comes from one count per query word
through the GIN index.

Vector search is cosine distance (`<=>`) on each embedder's column: exact scan until the base reaches
`ann_index_rows` chunks, then an HNSW index per column (pgvector's `vector_cosine_ops`, m=16, ef_construction=64,
its defaults). A document's replacement (`replace_documents`) is one transaction, so readers never see it half-way.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from baimo.knowledge.store import (
    SENTENCE_COLUMN,
    VECTOR_COLUMN,
    ChunkRecord,
    StoredHit,
    pack_vectors,
    unpack_vectors,
    vector_column,
)

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA_HANGUL = r"\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff"
_RUNS = re.compile(rf"([{_HAN}]+)|([{_KANA_HANGUL}]+)|(\w+)")
_VECTOR_NAME = re.compile(r"^vector(_[0-9]+)?$")
_RESULT = "chunk_id, doc_id, source, location, heading, ordinal, text, vector"
MAX_QUERY_WORDS = 32
BM25_K1, BM25_B = 1.2, 0.75  # Lucene's defaults (as in LanceDB's and Tantivy's BM25)
# BM25's term weight with tf = 1: (k1 + 1) / (1 + k1 (1 - b + b dl / avgdl)); dl is the chunk's number of distinct
# words, avgdl its mean over the matching chunks (a window over the candidates, not the whole base)
_BM25_NORM = (f"{BM25_K1 + 1} / (1 + {BM25_K1} * (1 - {BM25_B} + {BM25_B} * length(fts)::float8 / "
              "greatest(avg(length(fts)) OVER (), 1)))")


def _fold(word: str) -> str:
    """Lower case with accents removed (LanceDB's `lower_case` + `ascii_folding`)."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fts_words(text: str) -> list[str]:
    """The words full-text search indexes and matches, in order: Latin/Cyrillic/Arabic... words as `\\w+` runs,
    folded; Han runs cut by jieba in search mode (a long word also yields its dictionary sub-words); kana and
    hangul runs as overlapping character bigrams (single characters when the run has one)."""
    words: list[str] = []
    for han, kana, other in _RUNS.findall(text):
        if han:
            import jieba

            words.extend(w for w in jieba.cut_for_search(han) if w.strip())
        elif kana:
            words.extend([kana] if len(kana) == 1 else [kana[i:i + 2] for i in range(len(kana) - 1)])
        else:
            words.append(_fold(other))
    return words


def _tsquery(words: list[str]) -> str:
    """An OR of quoted lexemes for `to_tsquery('simple', ...)` (quotes doubled, so any word is one lexeme)."""
    return " | ".join("'" + w.replace("'", "''").replace("\\", "\\\\") + "'" for w in dict.fromkeys(words))


def psycopg_url(url: str) -> str:
    """A libpq connection string from a SQLAlchemy-style URL (`postgresql+psycopg://` -> `postgresql://`)."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


class PgVectorChunkStore:
    """One PostgreSQL table per knowledge base (see the module docstring). Thread-safe: each thread uses its own
    autocommit connection (the retriever searches text and vectors in parallel threads)."""

    def __init__(self, url: str, *, ann_index_rows: int = 20_000) -> None:
        self.url = psycopg_url(str(url))
        self.ann_index_rows = ann_index_rows
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        with self._conn() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        import psycopg
        from pgvector.psycopg import register_vector

        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.url, autocommit=True)
            try:
                register_vector(conn)
            except psycopg.ProgrammingError:  # the extension is created by __init__ on its own connection
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                register_vector(conn)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        try:
            yield conn
        except psycopg.OperationalError:  # a dropped connection: the next call opens a new one
            self._local.conn = None
            raise

    @staticmethod
    def table_name(kb_id: str) -> str:
        return f"kb_{kb_id}"

    def _ident(self, kb_id: str) -> Any:
        from psycopg import sql

        return sql.Identifier(self.table_name(kb_id))

    def _exists(self, conn: Any, kb_id: str) -> bool:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (self.table_name(kb_id),)).fetchone()[0]

    def _create(self, conn: Any, kb_id: str, records: list[ChunkRecord]) -> None:
        from psycopg import sql

        dims = [len(records[0].vector), *(len(v) for v in records[0].extra_vectors)]
        vectors = sql.SQL(", ").join(sql.SQL("{} vector({})").format(sql.Identifier(vector_column(i)),
                                                                      sql.Literal(d)) for i, d in enumerate(dims))
        table = self._ident(kb_id)
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (chunk_id text PRIMARY KEY, doc_id text NOT NULL, doc_sha text NOT NULL, "
            "source text NOT NULL, location text NOT NULL, heading text NOT NULL, ordinal integer NOT NULL, "
            "text text NOT NULL, search_text text NOT NULL, fts tsvector NOT NULL, {}, {} bytea)").format(
            table, vectors, sql.Identifier(SENTENCE_COLUMN)))
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (fts)").format(
            sql.Identifier(f"{self.table_name(kb_id)}_fts"), table))
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (doc_id, doc_sha)").format(
            sql.Identifier(f"{self.table_name(kb_id)}_doc"), table))

    def _insert(self, conn: Any, kb_id: str, records: list[ChunkRecord]) -> None:
        from psycopg import sql

        if not self._exists(conn, kb_id):
            self._create(conn, kb_id, records)
        n_vectors = 1 + len(records[0].extra_vectors)
        columns = ["chunk_id", "doc_id", "doc_sha", "source", "location", "heading", "ordinal", "text", "search_text",
                   "fts", *(vector_column(i) for i in range(n_vectors)), SENTENCE_COLUMN]
        rows = []
        for r in records:
            vectors = [r.vector, *r.extra_vectors]
            rows.append((r.chunk_id, r.doc_id, r.doc_sha, r.source, r.location, r.heading, r.ordinal, r.text,
                         r.search_text, " ".join(fts_words(r.search_text)),
                         *(np.asarray(v, dtype=np.float32) for v in vectors),
                         None if r.sentence_vectors is None else pack_vectors(r.sentence_vectors)))
        placeholders = sql.SQL(", ").join(
            sql.SQL("to_tsvector('simple', %s)") if c == "fts" else sql.Placeholder() for c in columns)
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (chunk_id) DO UPDATE SET {}").format(
            self._ident(kb_id), sql.SQL(", ").join(map(sql.Identifier, columns)), placeholders,
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns[1:]))
        with conn.cursor() as cur:
            cur.executemany(statement, rows)

    def add(self, kb_id: str, records: list[ChunkRecord]) -> None:
        """Insert (or overwrite, by chunk_id) chunks in one transaction; the table is made on the first add."""
        if not records:
            return
        with self._conn() as conn, conn.transaction():
            self._insert(conn, kb_id, records)

    def delete_doc(self, kb_id: str, doc_id: str) -> None:
        """Delete every chunk of a document."""
        from psycopg import sql

        with self._conn() as conn:
            if self._exists(conn, kb_id):
                conn.execute(sql.SQL("DELETE FROM {} WHERE doc_id = %s").format(self._ident(kb_id)), (doc_id,))

    def replace_documents(self, kb_id: str, records: list[ChunkRecord], versions: dict[str, str]) -> None:
        """Make `versions` (doc_id -> sha) the only versions of those documents, in one transaction."""
        from psycopg import sql

        if not versions:
            return
        with self._conn() as conn, conn.transaction():
            if self._exists(conn, kb_id):
                conn.execute(sql.SQL("DELETE FROM {} WHERE doc_id = ANY(%s)").format(self._ident(kb_id)),
                             (list(versions),))
            if records:
                self._insert(conn, kb_id, records)

    def _hits(self, rows: list[tuple], sentences: bool) -> list[StoredHit]:
        hits = []
        for row in rows:
            vector = row[7].to_numpy() if hasattr(row[7], "to_numpy") else np.asarray(row[7], dtype=np.float32)
            blob = row[9] if sentences else None
            hits.append(StoredHit(chunk_id=row[0], doc_id=row[1], source=row[2], location=row[3], heading=row[4],
                                  ordinal=int(row[5]), text=row[6], vector=vector, score=float(row[8]),
                                  sentence_vectors=unpack_vectors(bytes(blob), len(vector)) if blob else None))
        return hits

    def text_search(self, kb_id: str, query: str, k: int) -> list[StoredHit]:
        """The k best chunks for `query` by BM25 with term frequency saturated at one occurrence (see `bm25`),
        among chunks sharing at least one of its words; ties broken by ts_rank_cd."""
        from psycopg import sql

        words = list(dict.fromkeys(fts_words(query)))[:MAX_QUERY_WORDS]
        if not words:
            return []
        table = self._ident(kb_id)
        with self._conn() as conn:
            if not self._exists(conn, kb_id):
                return []
            n = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0])
            idf = []
            for w in words:  # document frequency of each word, through the GIN index
                df = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE fts @@ to_tsquery('simple', %s)")
                                  .format(table), (_tsquery([w]),)).fetchone()[0]
                if df:
                    idf.append((w, math.log(1 + (n - df + 0.5) / (df + 0.5))))
            if not idf:
                return []
            weight = sql.SQL(" + ").join(
                sql.SQL("CASE WHEN fts @@ to_tsquery('simple', {}) THEN {} ELSE 0 END").format(
                    sql.Literal(_tsquery([w])), sql.Literal(v)) for w, v in idf)
            rows = conn.execute(sql.SQL(
                "SELECT " + _RESULT + ", score FROM (SELECT *, ({weight}) * {norm} AS score, ts_rank_cd(fts, q, 1) "
                "AS tie FROM {table}, to_tsquery('simple', %s) q WHERE fts @@ q) hits "
                "ORDER BY score DESC, tie DESC, chunk_id LIMIT %s").format(
                weight=weight, table=table, norm=sql.SQL(_BM25_NORM)),
                (_tsquery([w for w, _ in idf]), k)).fetchall()
        return self._hits(rows, False)

    def vector_search(self, kb_id: str, vector: np.ndarray, k: int, column: str = VECTOR_COLUMN, *,
                      sentences: bool = False) -> list[StoredHit]:
        """The k chunks nearest to `vector` in `column` (cosine); each hit carries the primary `vector` too, and
        with `sentences` its sentence vectors when stored. Score: cosine similarity (1 - cosine distance)."""
        from psycopg import sql

        if not _VECTOR_NAME.match(column):
            raise ValueError(f"not a vector column: {column!r}")
        with self._conn() as conn:
            if not self._exists(conn, kb_id):
                return []
            query = sql.SQL("SELECT " + _RESULT + ", 1 - ({col} <=> %(q)s) AS score, {sent} FROM {table} "
                            "ORDER BY {col} <=> %(q)s LIMIT %(k)s").format(
                col=sql.Identifier(column), table=self._ident(kb_id),
                sent=sql.Identifier(SENTENCE_COLUMN) if sentences else sql.SQL("NULL"))
            with conn.transaction():
                conn.execute("SET LOCAL hnsw.ef_search = 100")  # pgvector's default 40 trades recall for speed
                rows = conn.execute(query, {"q": np.asarray(vector, dtype=np.float32), "k": k}).fetchall()
        return self._hits(rows, sentences)

    def count(self, kb_id: str) -> int:
        from psycopg import sql

        with self._conn() as conn:
            if not self._exists(conn, kb_id):
                return 0
            return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._ident(kb_id))).fetchone()[0])

    def drop(self, kb_id: str) -> None:
        from psycopg import sql

        with self._conn() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._ident(kb_id)))

    def maintain(self, kb_id: str) -> None:
        """After an ingest: build each vector column's HNSW index once the base has `ann_index_rows` chunks, and
        refresh the planner's statistics."""
        from psycopg import sql

        with self._conn() as conn:
            if not self._exists(conn, kb_id):
                return
            table = self.table_name(kb_id)
            if self.count(kb_id) >= self.ann_index_rows:
                columns = [r[0] for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND udt_name = "
                    "'vector'", (table,)).fetchall()]
                for column in columns:
                    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} vector_cosine_ops)")
                                 .format(sql.Identifier(f"{table}_{column}_hnsw"), self._ident(kb_id),
                                         sql.Identifier(column)))
            conn.execute(sql.SQL("ANALYZE {}").format(self._ident(kb_id)))

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
