"""The FastAPI app factory: builds the server's state in the lifespan and wires routes, errors and the UI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from baimo import __version__
from baimo.api import (
    admin_routes,
    completion_routes,
    conversation_routes,
    eval_routes,
    knowledge_routes,
    limit_routes,
    openai_routes,
    persona_routes,
    usage_routes,
)
from baimo.api.deps import principal, state
from baimo.api.errors import install_error_handlers
from baimo.api.limits import BodyLimits
from baimo.api.schemas import Feedback
from baimo.api.state import AppState
from baimo.blas_threads import limit_blas_threads
from baimo.config import Settings
from baimo.metering.principal import Principal
from baimo.observability import wiring as observability

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limit_blas_threads()  # small matrix products between requests: spinning BLAS threads cost more than they give
        app.state.baimo = AppState.build(settings)
        await app.state.baimo.start()
        await observability.start(app.state.baimo, settings)
        try:
            yield
        finally:
            await app.state.baimo.close()
            await observability.stop(app.state.baimo)

    app = FastAPI(title="Baimo", version=__version__, lifespan=lifespan,
                  description="Many models as one, behind an OpenAI-compatible API.")
    app.add_middleware(BodyLimits, max_body_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_upload_bytes)
    observability.install(app, settings)  # request ids, metrics, access log, spans: outermost middleware
    install_error_handlers(app)
    app.include_router(openai_routes.router)
    app.include_router(completion_routes.router)
    app.include_router(conversation_routes.router)
    app.include_router(knowledge_routes.router)
    app.include_router(persona_routes.router)
    app.include_router(usage_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(limit_routes.router)
    app.include_router(eval_routes.router)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness: configuration, database and models usable")
    async def readyz(s: AppState = Depends(state)) -> JSONResponse:
        models = {b.config.id: b.ready for b in s.models}
        warming = s.still_warming()
        ready = s.ready and not warming
        body = {"status": "ready" if ready else "starting", "models_loaded": models, "warming": warming}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/api/workers", tags=["health"], summary="Local model workers: running, pid, restarts, requests in flight",
             dependencies=[Depends(principal)])
    async def workers(s: AppState = Depends(state)) -> dict:
        rows = []
        for b in s.models:
            w = getattr(b, "_worker", None)
            if b.config.kind != "llamacpp":
                continue
            rows.append({"model": b.config.id, "running": bool(w and w.running), "pid": w.pid if w else None,
                         "restarts": w.restarts if w else 0, "in_flight": w.in_flight if w else 0,
                         "queued": w.queued if w else 0,
                         "parallel": b.config.parallel, "keep_alive": b.config.keep_alive})
        return {"data": rows}

    @app.post("/api/feedback", tags=["usage"], summary="Rate a response (thumbs up/down or a 0..1 score)")
    async def feedback(body: Feedback, s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict:
        return s.usage.feedback(body.response_id, body.value, body.comment, who=who)

    @app.get("/admin", include_in_schema=False)
    async def admin_page() -> FileResponse:
        """Keys and teams (the page asks for an admin key when auth is on)."""
        return FileResponse(STATIC / "admin.html")

    @app.get("/usage", include_in_schema=False)
    async def usage_page() -> FileResponse:
        return FileResponse(STATIC / "usage.html")

    @app.get("/knowledge", include_in_schema=False)
    @app.get("/personas", include_in_schema=False)
    async def knowledge_page() -> FileResponse:
        """Knowledge bases and personas: one page, two tabs (the path picks the tab)."""
        return FileResponse(STATIC / "knowledge.html")

    @app.get("/eval", include_in_schema=False)
    async def eval_page() -> FileResponse:
        """Evaluation runs and their reports (cost–quality frontier)."""
        return FileResponse(STATIC / "eval.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app
