"""Uploads ingested in the background, one at a time, with a status the API and UI can poll.

Jobs live in memory: after a restart their status is gone, but every document they finished is in the base
(see `ingest.py` for why a kill never leaves a half-written document).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from baimo.errors import BaimoError, NotFound
from baimo.knowledge.ingest import Ingestor, IngestReport, Progress, SourceFile

KEEP_FINISHED = 200
log = logging.getLogger("baimo.knowledge")


@dataclass
class IngestJob:
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

    def to_dict(self) -> dict[str, Any]:
        return {"object": "knowledge_ingest_job", "id": self.id, "knowledge_base": self.knowledge_base,
                "status": self.status, "files_total": self.files_total, "files_done": self.files_done,
                "chunks_done": self.chunks_done, "current": self.current, "error": self.error,
                "report": self.report.to_dict() if self.status in ("done", "failed") else None}


class IngestJobs:
    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self._jobs: dict[str, IngestJob] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baimo-ingest")

    def submit(self, kb_name: str, files: list[SourceFile], report: IngestReport | None = None) -> IngestJob:
        job = IngestJob(id="ingest-" + uuid.uuid4().hex[:16], knowledge_base=kb_name, files_total=len(files),
                        report=report or IngestReport())
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.status in ("done", "failed")]
            for old in sorted(finished, key=lambda j: j.created_at)[:-KEEP_FINISHED]:
                self._jobs.pop(old.id, None)
        job.future = self._pool.submit(self._run, job, files)
        return job

    def _run(self, job: IngestJob, files: list[SourceFile]) -> None:
        job.status = "running"

        def progress(p: Progress) -> None:
            job.files_done, job.chunks_done, job.current = p.files_done, p.chunks_done, p.current

        try:
            self.ingestor.add(job.knowledge_base, files, progress=progress, report=job.report)
            job.status = "done"
        except BaimoError as exc:
            job.status, job.error = "failed", exc.message
        except Exception as exc:  # the worker thread's boundary: report any failure on the job, never hang it
            log.exception("ingest job %s failed", job.id)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"

    def get(self, job_id: str) -> IngestJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no ingest job {job_id!r}", param="job_id")
        return job

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
