"""Add files to a knowledge base: hash, parse, chunk, embed, store; skip unchanged files, replace changed ones.

Order per document, chosen so a kill -9 at any point leaves a usable base: (0) delete leftovers of an
interrupted earlier attempt at this same version, (1) append the new chunks (one atomic store commit),
(2) delete the document's other versions, (3) record the new hash in the catalogue. A kill before (1) leaves the
previous version in place; a kill after it leaves the new version searchable (next to the old one until (2)),
and the next add of that file finishes the job without duplicates. Files that fail to parse are reported and
the batch goes on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baimo.errors import InvalidRequest
from baimo.knowledge.bases import KnowledgeService
from baimo.knowledge.chunking import chunk_document
from baimo.knowledge.parsing import SUPPORTED_SUFFIXES, ParseError, parse_bytes
from baimo.knowledge.store import ChunkRecord

EMBED_BATCH = 64


@dataclass
class SourceFile:
    """A file to ingest: its name in the base (path relative to the folder that was added) and its bytes."""

    source: str
    read: Callable[[], bytes]


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


class Ingestor:
    def __init__(self, knowledge: KnowledgeService) -> None:
        self.knowledge = knowledge

    def add(self, kb_name: str, files: list[SourceFile], *, progress: Callable[[Progress], None] | None = None,
            report: IngestReport | None = None) -> IngestReport:
        base = self.knowledge.get(kb_name)
        embedder = self.knowledge.embedder_for(base)
        store = self.knowledge.store
        report = report or IngestReport()
        state = Progress(files_total=len(files))
        started = time.perf_counter()
        seen: set[str] = set()
        for f in files:
            state.current = f.source
            if progress:
                progress(state)
            if f.source in seen:
                report.failed.append({"source": f.source, "reason": "given twice in one batch"})
                continue
            seen.add(f.source)
            try:
                data = f.read()
            except OSError as exc:
                report.failed.append({"source": f.source, "reason": f"cannot read: {exc.strerror or exc}"})
                continue
            sha = hashlib.sha256(data).hexdigest()
            doc_id = doc_id_for(f.source)
            existing = self.knowledge.document(base, doc_id)
            if existing is not None and existing.sha256 == sha:
                report.unchanged.append(f.source)
            else:
                try:
                    doc = parse_bytes(data, f.source.rsplit("/", 1)[-1])
                except ParseError as exc:
                    report.failed.append({"source": f.source, "reason": str(exc)})
                    state.files_done += 1
                    continue
                chunks = chunk_document(doc, size=base.chunk_size, overlap=base.chunk_overlap)
                search_texts = [f"{c.heading}\n{c.text}" if c.heading else c.text for c in chunks]
                vectors = embedder.embed(search_texts) if search_texts else None
                records = [ChunkRecord(chunk_id=f"{doc_id}:{sha[:12]}:{c.ordinal}", doc_id=doc_id, doc_sha=sha,
                                       source=f.source, location=c.location, heading=c.heading,
                                       ordinal=c.ordinal, text=c.text, search_text=st, vector=vectors[i])
                           for i, (c, st) in enumerate(zip(chunks, search_texts, strict=True))]
                store.delete_doc(base.id, doc_id, only_sha=sha)
                store.add(base.id, records)
                store.delete_doc(base.id, doc_id, except_sha=sha)
                self.knowledge.save_document(base, doc_id=doc_id, source=f.source, fmt=doc.format, title=doc.title,
                                             sha256=sha, size=len(data), chunks=len(records))
                (report.updated if existing is not None else report.added).append(f.source)
                report.chunks += len(records)
                state.chunks_done += len(records)
            state.files_done += 1
        state.current = ""
        if progress:
            progress(state)
        if report.added or report.updated:
            store.maintain(base.id)
        report.seconds = time.perf_counter() - started
        return report


def check_upload_name(name: str) -> str:
    """An uploaded file's name as a source: no folders that climb out, no empty names."""
    clean = name.replace("\\", "/").strip("/")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidRequest(f"bad file name {name!r}", param="files")
    return "/".join(parts)
