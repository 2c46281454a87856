"""Knowledge base routes under /api/knowledge: create, list, upload (multipart, ingested in the background),
documents, search, delete.

An upload of one file is parsed before it is answered, so a file that cannot be indexed (empty, no text,
password-protected, unsupported) is a 422 naming it; in a batch such files are reported by name in the job's
report and the rest go on.

Every route sees only the caller's bases (baimo/metering/principal.py): another owner's base, document or job is
a 404 like a missing one. Names are resolved here, once; ingestion and retrieval get the base's id.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from baimo.api.deps import principal, state
from baimo.api.filenames import read_uploads
from baimo.api.schemas import KnowledgeBaseCreate, KnowledgeSearch
from baimo.api.state import AppState
from baimo.errors import InvalidRequest, NotFound, UnprocessableFile
from baimo.knowledge.ingest import IngestReport, SourceFile, upload_source
from baimo.knowledge.parsing import SUPPORTED_SUFFIXES, ParseError, check_file
from baimo.metering.principal import Principal

router = APIRouter(tags=["knowledge"], dependencies=[Depends(principal)])


@router.get("/api/knowledge", summary="List knowledge bases")
async def list_bases(s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict[str, Any]:
    return {"object": "list", "data": [b.to_dict() for b in s.knowledge.list(who=who)]}


@router.post("/api/knowledge", status_code=201, summary="Create a knowledge base")
async def create_base(body: KnowledgeBaseCreate, s: AppState = Depends(state),
                      who: Principal = Depends(principal)) -> dict[str, Any]:
    info = s.knowledge.create(body.name, description=body.description, embedder=body.embedder,
                              chunk_size=body.chunk_size, chunk_overlap=body.chunk_overlap, who=who)
    return info.to_dict()


@router.get("/api/knowledge-jobs/{job_id}", summary="Status of an upload being ingested")
async def job_status(job_id: str, s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict[str, Any]:
    job = s.ingest_jobs.get(job_id)
    try:
        s.knowledge.get(job.knowledge_base, who=who)
    except NotFound:  # another owner's job: answered as a job that does not exist
        raise NotFound(f"no ingest job {job_id!r}", param="job_id") from None
    return job.to_dict()


@router.get("/api/knowledge/{name}", summary="Describe a knowledge base")
async def get_base(name: str, s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict[str, Any]:
    return s.knowledge.info(name, who=who).to_dict()


@router.delete("/api/knowledge/{name}", summary="Delete a knowledge base and all its documents")
async def delete_base(name: str, s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict[str, Any]:
    personas = await asyncio.to_thread(s.delete_knowledge_base, name, who)
    return {"object": "knowledge_base", "name": name, "deleted": True, "personas_updated": personas}


@router.get("/api/knowledge/{name}/documents", summary="List a knowledge base's documents")
async def list_documents(name: str, s: AppState = Depends(state),
                         who: Principal = Depends(principal)) -> dict[str, Any]:
    return {"object": "list", "data": s.knowledge.documents(name, who=who)}


_UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                             "description": f"{', '.join(sorted(SUPPORTED_SUFFIXES))} files (the field may also be "
                                            "called `file`); names may use RFC 5987 `filename*`"}}}}}}


@router.post("/api/knowledge/{name}/documents", openapi_extra={"requestBody": _UPLOAD_BODY},
             summary="Upload files (multipart field `files`); ingested in the background: poll "
             "/api/knowledge-jobs/{id}, or pass wait=true. One file that cannot be indexed is a 422 naming it; "
             "in a batch, such files are listed in the report's `failed` with the reason")
async def upload(name: str, request: Request,
                 wait: bool = Query(False, description="answer when ingestion has finished, with its report"),
                 s: AppState = Depends(state), who: Principal = Depends(principal)) -> JSONResponse:
    base_id = s.knowledge.get(name, who=who).id  # 404 before reading the upload
    uploads = await read_uploads(request)
    if not uploads:
        raise InvalidRequest("no files uploaded: send one multipart `files` part per file", param="files")
    report = IngestReport()
    sources: list[SourceFile] = []
    for filename, data in uploads:
        source = upload_source(filename, data)
        try:
            check_file(data, source)
        except ParseError as exc:
            report.failed.append({"source": source, "reason": str(exc)})
            continue
        sources.append(SourceFile(source, lambda data=data: data))
    if len(uploads) == 1:
        failure = report.failed[0] if report.failed else await asyncio.to_thread(
            s.ingest_jobs.ingestor.parse_ahead, base_id, sources[0])
        if failure is not None:
            raise UnprocessableFile(f"{failure['source']}: {failure['reason']}", param="files")
    job = s.ingest_jobs.submit(base_id, sources, report)
    if wait:
        assert job.future is not None
        await asyncio.wrap_future(job.future)
        job = s.ingest_jobs.get(job.id)  # the finished row (status, report), not the queued one `submit` returned
        return JSONResponse(job.to_dict(), status_code=200)
    return JSONResponse(job.to_dict(), status_code=202)


@router.delete("/api/knowledge/{name}/documents/{document:path}", summary="Remove a document (by source or id)")
async def remove_document(name: str, document: str, s: AppState = Depends(state),
                          who: Principal = Depends(principal)) -> dict[str, Any]:
    removed = await asyncio.to_thread(lambda: s.knowledge.remove_document(name, document, who=who))
    return {**removed, "deleted": True}


@router.post("/api/knowledge/{name}/search", summary="Search a knowledge base (hybrid BM25 + dense by default)")
async def search(name: str, body: KnowledgeSearch, s: AppState = Depends(state),
                 who: Principal = Depends(principal)) -> dict[str, Any]:
    base_id = s.knowledge.get(name, who=who).id
    hits = await asyncio.to_thread(s.retriever.search, [base_id], body.query, k=body.k, mode=body.mode)
    return {"object": "list", "data": [h.to_dict() for h in hits]}
