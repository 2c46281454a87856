"""The FastAPI app factory: builds the server's state in the lifespan and wires routes, errors and the UI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from baimo import __version__
from baimo.api import completion_routes, conversation_routes, knowledge_routes, openai_routes, persona_routes
from baimo.api.deps import api_key, state
from baimo.api.errors import install_error_handlers
from baimo.api.limits import BodyLimits
from baimo.api.schemas import Feedback
from baimo.api.state import AppState
from baimo.config import Settings

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.baimo = AppState.build(settings)
        await app.state.baimo.start()
        try:
            yield
        finally:
            await app.state.baimo.close()

    app = FastAPI(title="Baimo", version=__version__, lifespan=lifespan,
                  description="Many models as one, behind an OpenAI-compatible API.")
    app.add_middleware(BodyLimits, max_body_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_upload_bytes)
    install_error_handlers(app)
    app.include_router(openai_routes.router)
    app.include_router(completion_routes.router)
    app.include_router(conversation_routes.router)
    app.include_router(knowledge_routes.router)
    app.include_router(persona_routes.router)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness: configuration, database and models usable")
    async def readyz(s: AppState = Depends(state)) -> JSONResponse:
        models = {b.config.id: b.ready for b in s.models}
        body = {"status": "ready" if s.ready else "starting", "models_loaded": models}
        return JSONResponse(body, status_code=200 if s.ready else 503)

    @app.get("/api/workers", tags=["health"], summary="Local model workers: running, pid, restarts, requests in flight",
             dependencies=[Depends(api_key)])
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

    @app.get("/api/usage", tags=["usage"], summary="Requests, tokens and cost per model, per day, and savings",
             dependencies=[Depends(api_key)])
    async def usage(s: AppState = Depends(state)) -> dict:
        by_model = s.usage.summary()
        strongest = s.strongest_model()
        chat_rows = [r for r in by_model if r["model"] not in s.embedders.ids()]
        total = sum(r["cost"] for r in chat_rows)
        baseline = s.usage.cost_if_all_to(strongest) if strongest else None
        hybrid = s.usage.savings_by_day()
        return {"by_model": by_model, "by_day": s.usage.by_day(), "by_persona": s.usage.by_persona(),
                "hybrid": {"by_day": hybrid, "requests": sum(r["requests"] for r in hybrid),
                           "cost": sum(r["cost"] for r in hybrid),
                           "baseline_cost": sum(r["baseline_cost"] for r in hybrid)},
                "recent": s.usage.recent(20),
                "totals": {"requests": sum(r["requests"] for r in chat_rows), "cost": total,
                           "strongest_model": strongest.id if strongest else None,
                           "cost_if_all_to_strongest": baseline}}

    @app.post("/api/feedback", tags=["usage"], summary="Rate a response (thumbs up/down or a 0..1 score)",
              dependencies=[Depends(api_key)])
    async def feedback(body: Feedback, s: AppState = Depends(state)) -> dict:
        return s.usage.feedback(body.response_id, body.value, body.comment)

    @app.get("/usage", include_in_schema=False)
    async def usage_page() -> FileResponse:
        return FileResponse(STATIC / "usage.html")

    @app.get("/knowledge", include_in_schema=False)
    @app.get("/personas", include_in_schema=False)
    async def knowledge_page() -> FileResponse:
        """Knowledge bases and personas: one page, two tabs (the path picks the tab)."""
        return FileResponse(STATIC / "knowledge.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app
