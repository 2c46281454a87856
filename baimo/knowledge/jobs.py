"""Uploads ingested in the background, with a status the API and UI can poll, in a job table any replica runs.

An upload's files are written to the upload folder (BAIMO_UPLOAD_DIR, default BAIMO_HOME/uploads; a volume
shared by every replica) before its job row is committed as `queued`. Each server process runs one ingestion
thread that claims the oldest runnable job: with `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL (replicas
never wait on each other's claims) followed, on every database, by a compare-and-set `UPDATE ... WHERE status =
<what was read>` (on SQLite, whose writes are serialised, this update alone is the atomic claim). A running job
renews `heartbeat` every `HEARTBEAT_S`; a `running` job whose heartbeat is older than `STALE_S`, or whose process on
this host is gone (a kill -9, a restart), is claimed again and ingested from its saved files: documents it had
finished are `unchanged` by their content hash (see `ingest.py` for why a kill never leaves a half-written
document), so a resumed job only does the rest.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Float, Integer, String, Text, delete, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from baimo.engine.worker import pid_alive
from baimo.errors import BaimoError, NotFound
from baimo.knowledge.ingest import Ingestor, IngestReport, Progress, SourceFile
from baimo.store.tables import Base

KEEP_FINISHED = 200
POLL_S = 1.0  # how often an idle process looks for queued jobs (a submit in the same process wakes it at once)
HEARTBEAT_S = 5.0
STALE_S = 60.0  # a running job without a heartbeat for this long is taken over by another process
PROGRESS_EVERY_S = 0.5
log = logging.getLogger("baimo.knowledge")


class IngestJobRow(Base):
    """One upload being ingested (migration 0010). Times are Unix seconds; `files` is a JSON list of
    {source, path} in the upload folder; `report` the JSON of an IngestReport."""

    __tablename__ = "knowledge_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    knowledge_base: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued | running | done | failed
    files: Mapped[str] = mapped_column(Text)
    files_total: Mapped[int] = mapped_column(Integer)
    files_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    current: Mapped[str] = mapped_column(String(1000), default="")
    error: Mapped[str | None] = mapped_column(Text)
    report: Mapped[str] = mapped_column(Text, default="{}")
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)


def _report(data: str) -> IngestReport:
    values = json.loads(data or "{}")
    return IngestReport(**{k: values[k] for k in IngestReport.__dataclass_fields__ if k in values})


@dataclass
class IngestJob:
    """A job as read from its row. `future` (on the process that submitted it) resolves when the job has finished,
    whichever process ran it."""

    id: str
    knowledge_base: str
    files_total: int
    status: str = "queued"  # queued | running | done | failed
    files_done: int = 0
    chunks_done: int = 0
    current: str = ""
    error: str | None = None
    report: IngestReport = field(default_factory=IngestReport)
    created_at: float = field(default_factory=time.time)
    future: Future[Any] | None = None

    @classmethod
    def from_row(cls, row: IngestJobRow, future: Future[Any] | None = None) -> IngestJob:
        return cls(id=row.id, knowledge_base=row.knowledge_base, files_total=row.files_total, status=row.status,
                   files_done=row.files_done, chunks_done=row.chunks_done, current=row.current, error=row.error,
                   report=_report(row.report), created_at=row.created_at, future=future)

    def to_dict(self) -> dict[str, Any]:
        return {"object": "knowledge_ingest_job", "id": self.id, "knowledge_base": self.knowledge_base,
                "status": self.status, "files_total": self.files_total, "files_done": self.files_done,
                "chunks_done": self.chunks_done, "current": self.current, "error": self.error,
                "report": self.report.to_dict() if self.status in ("done", "failed") else None}


class IngestJobs:
    """The job table's producer (`submit`), reader (`get`) and this process's ingestion thread."""

    def __init__(self, ingestor: Ingestor, upload_dir: Path | None = None, *, poll_s: float = POLL_S) -> None:
        self.ingestor = ingestor
        self.db = ingestor.knowledge.db
        self.upload_dir = upload_dir or Path(ingestor.knowledge.store_path).parent / "uploads"
        self.poll_s = poll_s
        self.me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._local: dict[str, tuple[list[SourceFile], Future[Any]]] = {}  # jobs submitted here, not finished
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start this process's ingestion thread (servers only: a CLI command that builds the services must not
        claim a server's jobs); it resumes unfinished jobs at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="baimo-ingest", daemon=True)
            self._thread.start()

    def submit(self, kb_name: str, files: list[SourceFile], report: IngestReport | None = None) -> IngestJob:
        """Save the files to the upload folder, then queue the job (committed: any replica may run it)."""
        job_id = "ingest-" + uuid.uuid4().hex[:16]
        folder = self.upload_dir / job_id
        folder.mkdir(parents=True, exist_ok=True)
        saved = []
        for i, f in enumerate(files):
            path = folder / f"{i:05d}"
            path.write_bytes(f.read())
            saved.append({"source": f.source, "path": path.name})
        row = IngestJobRow(id=job_id, knowledge_base=kb_name, status="queued", files=json.dumps(saved),
                           files_total=len(files), files_done=0, chunks_done=0, current="", attempts=0,
                           report=json.dumps((report or IngestReport()).__dict__), created_at=time.time())
        future: Future[Any] = Future()
        with self._lock:
            self._local[job_id] = (files, future)
        with self.db.session() as s:
            s.add(row)
        self._prune()
        self.start()  # a server starts it at start-up (resuming unfinished jobs); here at the latest
        self._wake.set()
        return IngestJob.from_row(row, future)

    def get(self, job_id: str) -> IngestJob:
        with self.db.session() as s:
            row = s.get(IngestJobRow, job_id)
            if row is None:
                raise NotFound(f"no ingest job {job_id!r}", param="job_id")
            local = self._local.get(job_id)
            return IngestJob.from_row(row, local[1] if local else None)

    def counts(self) -> dict[str, int]:
        """Jobs in the table by status ({queued, running, done, failed} -> count), whichever replica has them."""
        counts = dict.fromkeys(("queued", "running", "done", "failed"), 0)
        with self.db.session() as s:
            for status, n in s.execute(select(IngestJobRow.status, func.count()).group_by(IngestJobRow.status)):
                counts[status] = n
        return counts

    def _prune(self) -> None:
        with self.db.session() as s:
            keep = select(IngestJobRow.id).where(IngestJobRow.status.in_(("done", "failed"))).order_by(
                IngestJobRow.created_at.desc()).limit(KEEP_FINISHED).scalar_subquery()
            s.execute(delete(IngestJobRow).where(IngestJobRow.status.in_(("done", "failed")),
                                                 IngestJobRow.id.not_in(keep)))

    def _runnable(self, row: IngestJobRow, now: float) -> bool:
        if row.status == "queued":
            return True
        if row.heartbeat is None or now - row.heartbeat > STALE_S:
            return True
        host, _, rest = (row.claimed_by or "").partition(":")
        pid = rest.split(":", 1)[0]
        return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))

    def claim(self) -> IngestJobRow | None:
        """Take the oldest runnable job for this process, or None. Safe against every other process."""
        now = time.time()
        with self.db.session() as s:
            rows = s.scalars(select(IngestJobRow).where(IngestJobRow.status.in_(("queued", "running")))
                             .order_by(IngestJobRow.created_at).limit(20)
                             .with_for_update(skip_locked=True)).all()
            for row in rows:
                if not self._runnable(row, now):
                    continue
                taken = s.execute(update(IngestJobRow).where(
                    IngestJobRow.id == row.id, IngestJobRow.status == row.status,
                    IngestJobRow.attempts == row.attempts).values(
                    status="running", claimed_by=self.me, heartbeat=now, attempts=row.attempts + 1))
                if taken.rowcount == 1:
                    s.expunge(row)
                    return row
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                row = self.claim()
                if row is not None:
                    self._run(row)
                    continue
                self._resolve_finished()
            except Exception:  # the thread's boundary: a database hiccup must not end ingestion for good
                log.exception("ingest job loop")
            self._wake.wait(0.25 if self._local else self.poll_s)
            self._wake.clear()

    def _resolve_finished(self) -> None:
        """Resolve the futures of jobs submitted here that another process has finished."""
        with self._lock:
            pending = list(self._local)
        if not pending:
            return
        with self.db.session() as s:
            done = s.scalars(select(IngestJobRow.id).where(IngestJobRow.id.in_(pending),
                                                           IngestJobRow.status.in_(("done", "failed")))).all()
        for job_id in done:
            self._finish_local(job_id)

    def _finish_local(self, job_id: str) -> None:
        with self._lock:
            local = self._local.pop(job_id, None)
        if local is not None and not local[1].done():
            local[1].set_result(None)

    def _files(self, row: IngestJobRow) -> list[SourceFile]:
        local = self._local.get(row.id)
        if local is not None:
            return local[0]  # this process's own upload: the bytes (and a file parsed ahead) are in memory
        folder = self.upload_dir / row.id
        return [SourceFile(f["source"], lambda p=folder / f["path"]: p.read_bytes()) for f in json.loads(row.files)]

    def _save(self, job_id: str, **values: Any) -> None:
        with self.db.session() as s:
            s.execute(update(IngestJobRow).where(IngestJobRow.id == job_id, IngestJobRow.claimed_by == self.me)
                      .values(heartbeat=time.time(), **values))

    def _run(self, row: IngestJobRow) -> None:
        report = _report(row.report)
        if row.attempts > 0:
            log.info("resuming ingest job %s (attempt %d)", row.id, row.attempts + 1)
        last = 0.0
        beating = threading.Event()

        def heartbeat() -> None:
            while not beating.wait(HEARTBEAT_S):
                try:
                    self._save(row.id)
                except Exception:  # a missed beat is retried on the next one
                    log.warning("ingest job %s: heartbeat failed", row.id)

        def progress(p: Progress) -> None:
            nonlocal last
            if time.monotonic() - last >= PROGRESS_EVERY_S or p.files_done == p.files_total:
                last = time.monotonic()
                self._save(row.id, files_done=p.files_done, chunks_done=p.chunks_done, current=p.current[:1000])

        beat = threading.Thread(target=heartbeat, name=f"baimo-ingest-heartbeat-{row.id}", daemon=True)
        beat.start()
        status, error = "done", None
        try:
            self.ingestor.add(row.knowledge_base, self._files(row), progress=progress, report=report)
        except BaimoError as exc:
            status, error = "failed", exc.message
        except Exception as exc:  # the worker thread's boundary: report any failure on the job, never hang it
            log.exception("ingest job %s failed", row.id)
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            beating.set()
        self._save(row.id, status=status, error=error, report=json.dumps(report.__dict__), current="")
        shutil.rmtree(self.upload_dir / row.id, ignore_errors=True)
        self._finish_local(row.id)

    def close(self) -> None:
        """Stop the ingestion thread after the job it is running (an unfinished job resumes on the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
