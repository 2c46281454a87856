"""A kill -9 in the middle of `baimo kb add` leaves a usable knowledge base: every document the catalogue lists
is searchable, nothing is half-written, and adding the folder again completes the base without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.knowledge.conftest import make_service

BAIMO = str(Path(sys.executable).parent / "baimo")
N_FILES = 400


def write_folder(folder: Path) -> None:
    folder.mkdir()
    for i in range(N_FILES):
        body = "\n\n".join(f"Paragraph {j} of file {i}. The marker of this file is zq{i:04d}x and it repeats here."
                           for j in range(6))
        (folder / f"doc{i:04d}.md").write_text(f"# File {i}\n\n{body}\n", encoding="utf-8")


def workers_of(home: Path) -> list[int]:
    """Embedding worker processes (multiprocessing spawn children) started for this BAIMO_HOME."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline and f"BAIMO_HOME={home}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BAIMO, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BAIMO_HOME": str(home)})


@pytest.mark.timeout(600)
def test_kill_during_ingest_keeps_every_finished_document(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = tmp_path / "docs"
    write_folder(folder)
    assert run(home, "kb", "create", "big").returncode == 0
    proc = subprocess.Popen([BAIMO, "kb", "add", "big", str(folder)], env={**os.environ, "BAIMO_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    service = make_service(home)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # wait until some documents are in, then kill without warning
        if len(service.documents("big")) >= 20:
            break
        assert proc.poll() is None, "ingestion finished before it could be killed; make the folder bigger"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while workers_of(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not workers_of(home), "embedding worker processes outlived the killed ingestion"

    docs = service.documents("big")
    assert 20 <= len(docs) < N_FILES
    from baimo.knowledge.retrieval import Retriever

    retriever = Retriever(service)
    for d in docs[:: max(1, len(docs) // 15)]:
        marker = f"zq{int(d['source'][3:7]):04d}x"
        hits = retriever.search(["big"], marker, k=1, mode="bm25")
        assert hits and hits[0].source == d["source"], d["source"]

    r = run(home, "kb", "add", "big", str(folder), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert len(report["unchanged"]) >= len(docs) - 1  # the document being written at the kill may be redone
    assert len(report["added"]) + len(report["updated"]) + len(report["unchanged"]) == N_FILES
    docs = service.documents("big")
    assert len(docs) == N_FILES
    base = service.get("big")
    assert service.store.count(base.id) == sum(d["chunks"] for d in docs)  # no duplicate or orphan chunks
    service.db.close()


def test_chunks_left_by_an_attempt_killed_before_its_catalogue_row_are_not_duplicated(
        tmp_path: Path, vector_url: str | None) -> None:
    """In each chunk store: re-adding finds the chunks already there, a new version replaces them, a removed
    document takes its chunks along."""
    from sqlalchemy import delete

    from baimo.knowledge.ingest import Ingestor, collect_files
    from baimo.store.tables import KnowledgeDocument

    service = make_service(tmp_path, vector_url=vector_url)
    service.create("kb")
    f = tmp_path / "a.md"
    f.write_text("# A\n\n" + " ".join(f"Sentence {i} about the qq1 marker." for i in range(80)), encoding="utf-8")
    files, _ = collect_files([f])
    Ingestor(service).add("kb", files)
    base = service.get("kb")
    n = service.store.count(base.id)
    assert n > 1
    with service.db.session() as s:  # as if killed after the chunks were committed, before the catalogue row
        s.execute(delete(KnowledgeDocument))
    report = Ingestor(service).add("kb", files)
    assert report.added == ["a.md"]
    assert service.store.count(base.id) == n
    f.write_text("# A\n\nA much shorter new version.", encoding="utf-8")
    assert Ingestor(service).add("kb", collect_files([f])[0]).updated == ["a.md"]
    assert service.store.count(base.id) == 1
    assert [h.text for h in service.store.text_search(base.id, "shorter version", 5)] == ["A much shorter new version."]
    service.remove_document("kb", "a.md")
    assert service.store.count(base.id) == 0 and service.store.text_search(base.id, "shorter", 5) == []
    service.store.drop(base.id)
    service.db.close()
