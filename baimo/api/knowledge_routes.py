"""Knowledge base routes under /api/knowledge: create, list, upload (multipart, ingested in the background),
documents, search, delete."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi.responses import JSONResponse

from baimo.api.deps import api_key, state
from baimo.api.schemas import KnowledgeBaseCreate, KnowledgeSearch
from baimo.api.state import AppState
from baimo.errors import InvalidRequest
from baimo.knowledge.ingest import IngestReport, SourceFile, check_upload_name
from baimo.knowledge.parsing import SUPPORTED_SUFFIXES

router = APIRouter(tags=["knowledge"], dependencies=[Depends(api_key)])


@router.get("/api/knowledge", summary="List knowledge bases")
async def list_bases(s: AppState = Depends(state)) -> dict[str, Any]:
    return {"object": "list", "data": [b.to_dict() for b in s.knowledge.list()]}


@router.post("/api/knowledge", status_code=201, summary="Create a knowledge base")
async def create_base(body: KnowledgeBaseCreate, s: AppState = Depends(state)) -> dict[str, Any]:
    info = s.knowledge.create(body.name, description=body.description, embedder=body.embedder,
                              chunk_size=body.chunk_size, chunk_overlap=body.chunk_overlap)
    return info.to_dict()


@router.get("/api/knowledge-jobs/{job_id}", summary="Status of an upload being ingested")
async def job_status(job_id: str, s: AppState = Depends(state)) -> dict[str, Any]:
    return s.ingest_jobs.get(job_id).to_dict()


@router.get("/api/knowledge/{name}", summary="Describe a knowledge base")
async def get_base(name: str, s: AppState = Depends(state)) -> dict[str, Any]:
    return s.knowledge.info(name).to_dict()


@router.delete("/api/knowledge/{name}", summary="Delete a knowledge base and all its documents")
async def delete_base(name: str, s: AppState = Depends(state)) -> dict[str, Any]:
    personas = await asyncio.to_thread(s.delete_knowledge_base, name)
    return {"object": "knowledge_base", "name": name, "deleted": True, "personas_updated": personas}


@router.get("/api/knowledge/{name}/documents", summary="List a knowledge base's documents")
async def list_documents(name: str, s: AppState = Depends(state)) -> dict[str, Any]:
    return {"object": "list", "data": s.knowledge.documents(name)}


@router.post("/api/knowledge/{name}/documents", summary="Upload files (multipart field `files`); ingested in the "
             "background: poll /api/knowledge-jobs/{id}, or pass wait=true")
async def upload(name: str, files: list[UploadFile] = File(..., description="TXT, MD, HTML, PDF or DOCX files"),
                 wait: bool = Query(False, description="answer when ingestion has finished, with its report"),
                 s: AppState = Depends(state)) -> JSONResponse:
    s.knowledge.get(name)  # 404 before reading the upload
    report = IngestReport()
    sources: list[SourceFile] = []
    for f in files:
        source = check_upload_name(f.filename or "")
        suffix = "." + source.rsplit(".", 1)[-1].lower() if "." in source else ""
        if suffix not in SUPPORTED_SUFFIXES:
            report.failed.append({"source": source, "reason": f"unsupported file type {suffix or '(none)'} "
                                  f"(supported: {', '.join(sorted(SUPPORTED_SUFFIXES))})"})
            continue
        data = await f.read()
        sources.append(SourceFile(source, lambda data=data: data))
    if not sources and not report.failed:
        raise InvalidRequest("no files uploaded", param="files")
    job = s.ingest_jobs.submit(name, sources, report)
    if wait:
        assert job.future is not None
        await asyncio.wrap_future(job.future)
        return JSONResponse(job.to_dict(), status_code=200)
    return JSONResponse(job.to_dict(), status_code=202)


@router.delete("/api/knowledge/{name}/documents/{document:path}", summary="Remove a document (by source or id)")
async def remove_document(name: str, document: str, s: AppState = Depends(state)) -> dict[str, Any]:
    removed = await asyncio.to_thread(s.knowledge.remove_document, name, document)
    return {**removed, "deleted": True}


@router.post("/api/knowledge/{name}/search", summary="Search a knowledge base (hybrid BM25 + dense by default)")
async def search(name: str, body: KnowledgeSearch, s: AppState = Depends(state)) -> dict[str, Any]:
    hits = await asyncio.to_thread(s.retriever.search, [name], body.query, k=body.k, mode=body.mode)
    return {"object": "list", "data": [h.to_dict() for h in hits]}
