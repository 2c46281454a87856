"""Add files to a knowledge base: hash, parse, chunk, embed, store; skip unchanged files, replace changed ones.

Documents are written in batches, in an order chosen so a kill -9 at any point leaves a usable base: (0) delete
leftovers of an interrupted earlier attempt at these same versions, (1) append the new chunks (one atomic
store commit for the batch), (2) delete the documents' other versions, (3) record the new hashes in the
catalogue. A kill before (1) leaves the previous versions in place; a kill after it leaves the new versions
searchable (next to the old ones until (2)), and the next add finishes the job without duplicates. Files that
fail to parse (or give no text) are reported by name with the reason and the rest go on; no document is ever
recorded with 0 chunks.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baimo.knowledge.bases import EmbeddedBatch, KnowledgeService
from baimo.knowledge.chunking import Chunk, chunk_document, document_title, sentence_context, sentence_spans
from baimo.knowledge.parsing import SUPPORTED_SUFFIXES, ParsedDocument, ParseError, parse_bytes
from baimo.knowledge.store import ChunkRecord
from baimo.store.tables import KnowledgeBase
from baimo.use_pooling import SegmentedText

# Documents are embedded and committed in batches of about this many chunks: one store commit per document
# made ingestion commit-bound (~25 chunks/s); batches keep each commit atomic for all the documents in it.
BATCH_CHUNKS = 256


@dataclass
class SourceFile:
    """A file to ingest: its name in the base (path relative to the folder that was added) and its bytes;
    `parsed` once `Ingestor.parse_ahead` has parsed it."""

    source: str
    read: Callable[[], bytes]
    parsed: ParsedDocument | None = None


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "chunks_per_second": round(self.chunks / self.seconds, 1) if self.seconds else None}


@dataclass
class Progress:
    """What a progress bar or an upload status shows."""

    files_total: int
    files_done: int = 0
    chunks_done: int = 0
    current: str = ""


def collect_files(paths: Iterable[Path]) -> tuple[list[SourceFile], list[dict[str, str]]]:
    """Files given directly, and every supported file under given folders (recursively, sorted)."""
    files: list[SourceFile] = []
    missing: list[dict[str, str]] = []
    for path in paths:
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                if f.suffix.lower() in SUPPORTED_SUFFIXES and not any(part.startswith(".") for part in
                                                                      f.relative_to(path).parts):
                    files.append(SourceFile(f.relative_to(path).as_posix(), f.read_bytes))
        elif path.is_file():
            files.append(SourceFile(path.name, path.read_bytes))
        else:
            missing.append({"source": str(path), "reason": "no such file or folder"})
    return files, missing


def doc_id_for(source: str) -> str:
    return hashlib.sha1(source.encode("utf-8")).hexdigest()


@dataclass
class _Pending:
    """A parsed, chunked document waiting for the next batch commit."""

    source: str
    doc_id: str
    sha: str
    size: int
    fmt: str
    title: str
    updated: bool
    chunks: list[Chunk]
    context_title: str = ""  # what sentences of chunks without a heading are embedded with (document_title)


@dataclass
class _Batch:
    """Documents whose chunks are being embedded; `vectors()` waits for the result."""

    docs: list[_Pending]
    texts: list[str]
    vectors: Callable[[], EmbeddedBatch]


class Ingestor:
    def __init__(self, knowledge: KnowledgeService, *, batch_chunks: int = BATCH_CHUNKS) -> None:
        self.knowledge = knowledge
        self.batch_chunks = batch_chunks

    def add(self, kb_name: str, files: list[SourceFile], *, progress: Callable[[Progress], None] | None = None,
            report: IngestReport | None = None) -> IngestReport:
        """Ingest files in batches; while one batch is being embedded (in worker processes when configured),
        the next is read, parsed and chunked."""
        base = self.knowledge.get(kb_name)
        report = report or IngestReport()
        state = Progress(files_total=len(files))
        started = time.perf_counter()
        seen: set[str] = set()
        pending: list[_Pending] = []
        inflight: _Batch | None = None
        for f in files:
            state.current = f.source
            if progress:
                progress(state)
            if f.source in seen:
                report.failed.append({"source": f.source, "reason": "given twice in one batch"})
                continue
            seen.add(f.source)
            item = self._prepare(base, f, report)
            if item is not None:
                pending.append(item)
                if sum(len(p.chunks) for p in pending) >= self.batch_chunks:
                    if inflight is not None:
                        self._write(base, inflight, report, state)
                    inflight, pending = self._embed(base, pending), []
            state.files_done = len(seen) - len(pending) - (len(inflight.docs) if inflight else 0)
        if inflight is not None:
            self._write(base, inflight, report, state)
        if pending:
            self._write(base, self._embed(base, pending), report, state)
        state.files_done, state.current = len(files), ""
        if progress:
            progress(state)
        if report.added or report.updated:
            self.knowledge.store.maintain(base.id)
        report.seconds = time.perf_counter() - started
        return report

    def parse_ahead(self, kb_name: str, f: SourceFile) -> dict[str, str] | None:
        """Parse a file now instead of in `add`, so that adding a single file can answer its failure at once
        (HTTP 422, a one-line CLI error). Returns the failure ({source, reason}) or None. On success the bytes and
        the parsed document stay on `f`, so `add` ingests exactly what was checked without parsing it again; a file
        the base already has unchanged is not parsed at all."""
        try:
            data = f.read()
        except OSError as exc:
            return {"source": f.source, "reason": f"cannot read: {exc.strerror or exc}"}
        f.read = lambda: data
        existing = self.knowledge.document(self.knowledge.get(kb_name), doc_id_for(f.source))
        if existing is not None and existing.sha256 == hashlib.sha256(data).hexdigest():
            return None
        try:
            f.parsed = parse_bytes(data, f.source.rsplit("/", 1)[-1])
        except ParseError as exc:
            return {"source": f.source, "reason": str(exc)}
        return None

    def _prepare(self, base: KnowledgeBase, f: SourceFile, report: IngestReport) -> _Pending | None:
        """Read, hash, parse and chunk one file; None when it is unchanged or failed (both reported)."""
        try:
            data = f.read()
        except OSError as exc:
            report.failed.append({"source": f.source, "reason": f"cannot read: {exc.strerror or exc}"})
            return None
        sha = hashlib.sha256(data).hexdigest()
        doc_id = doc_id_for(f.source)
        existing = self.knowledge.document(base, doc_id)
        if existing is not None and existing.sha256 == sha:
            report.unchanged.append(f.source)
            return None
        try:
            doc = f.parsed or parse_bytes(data, f.source.rsplit("/", 1)[-1])
        except ParseError as exc:
            report.failed.append({"source": f.source, "reason": str(exc)})
            return None
        chunks = chunk_document(doc, size=base.chunk_size, overlap=base.chunk_overlap)
        if not chunks:  # never list a document that nothing can find
            report.failed.append({"source": f.source, "reason": "no extractable text"})
            return None
        return _Pending(f.source, doc_id, sha, len(data), doc.format, doc.title, existing is not None, chunks,
                        document_title(doc))

    def _embed(self, base: KnowledgeBase, pending: list[_Pending]) -> _Batch:
        """Start embedding a batch of documents together (the result is awaited in `_write`)."""
        texts = [f"{c.heading}\n{c.text}" if c.heading else c.text for p in pending for c in p.chunks]
        # A sentence's vector pools its chunk's heading, or else the document's title (chunking.sentence_context).
        segments = []
        pairs = [(p, c) for p in pending for c in p.chunks]
        for text, (doc, c) in zip(texts, pairs, strict=True):
            offset = len(text) - len(c.text)
            segments.append(SegmentedText(text, [offset, *(offset + end for _, end in sentence_spans(c.text))],
                                          "" if c.heading else sentence_context(c, doc.context_title)))
        return _Batch(pending, texts, self.knowledge.embed_bulk(base, texts, segments))

    def _write(self, base: KnowledgeBase, batch: _Batch, report: IngestReport, state: Progress) -> None:
        """Write an embedded batch as one store commit, then its catalogue rows (see the module docstring)."""
        embedded = batch.vectors()
        vectors, *extra = embedded.vectors
        sentences = embedded.sentence_vectors
        records: list[ChunkRecord] = []
        for p in batch.docs:
            for c in p.chunks:
                i = len(records)
                records.append(ChunkRecord(chunk_id=f"{p.doc_id}:{p.sha[:12]}:{c.ordinal}", doc_id=p.doc_id,
                                           doc_sha=p.sha, source=p.source, location=c.location, heading=c.heading,
                                           ordinal=c.ordinal, text=c.text, search_text=batch.texts[i],
                                           vector=vectors[i], extra_vectors=[v[i] for v in extra],
                                           sentence_vectors=None if sentences is None else sentences[i]))
        self.knowledge.store.replace_documents(base.id, records, {p.doc_id: p.sha for p in batch.docs})
        self.knowledge.save_documents(base, [
            {"doc_id": p.doc_id, "source": p.source, "fmt": p.fmt, "title": p.title, "sha256": p.sha,
             "size": p.size, "chunks": len(p.chunks)} for p in batch.docs])
        for p in batch.docs:
            (report.updated if p.updated else report.added).append(p.source)
        report.chunks += len(records)
        state.chunks_done += len(records)


_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")
_DRIVE = re.compile("^[A-Za-z]:")
MAX_NAME_CHARS = 255  # a file name's usual limit; the catalogue's source column holds 1000
MAX_SOURCE_CHARS = 1000


def upload_source(filename: str, data: bytes) -> str:
    """The source name of an uploaded file, from the name the client sent, which is never trusted as a path.

    The name is Unicode-normalised (NFC: the same name typed on macOS and on Linux is one document) and loses
    control characters. Relative folders stay (`sub/a.md`, like a folder added with the CLI), but a name that
    climbs out (`../../x.md`, `..\\x.md`) or is absolute (`/etc/x.md`, `C:\\x.md`) keeps only its base name. A
    name with nothing before its suffix (`.md`, or no name at all) gets one made from the content hash
    (`upload-1a2b3c4d5e6f.md`). Uploads are never written to disk under these names: only their text is stored,
    in the chunk store under BAIMO_HOME, so the name is a label and nothing else.
    """
    name = _CONTROL_CHARS.sub("", unicodedata.normalize("NFC", filename)).replace("\\", "/").strip()
    parts = [p.strip() for p in name.split("/")]
    if name.startswith("/") or _DRIVE.match(name) or ".." in parts:
        parts = parts[-1:]
    parts = [p for p in parts if p not in ("", ".", "..")]
    base = parts.pop() if parts else ""
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    if not stem.strip(". "):
        ext = ext.strip()
        base = f"upload-{hashlib.sha256(data).hexdigest()[:12]}" + (f".{ext}" if ext else "")
    elif len(base) > MAX_NAME_CHARS:
        keep = MAX_NAME_CHARS - len(dot + ext)
        base = stem[:keep] + dot + ext if keep > 0 else base[:MAX_NAME_CHARS]
    source = "/".join([*parts, base])
    return source if len(source) <= MAX_SOURCE_CHARS else base
