"""How the app takes observability on: the request middleware, GET /metrics, and start/stop hooks for the
lifespan (logging, tracing, the metrics listener on usage records, multiprocess clean-up)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import Response

from baimo.config import Settings
from baimo.observability import metrics, tracing
from baimo.observability.logs import setup_logging
from baimo.observability.middleware import RequestObservability

log = logging.getLogger("baimo.metrics")
ENGINE_TIMEOUT_S = 2.0  # asking the engine host of `--workers N` for its queues, at a scrape


def install(app: FastAPI, settings: Settings) -> None:
    """Add the request middleware (call after every other `add_middleware`, so it is outermost) and /metrics;
    configure logging when the settings ask for a format (`baimo serve` always does)."""
    if settings.log_format:
        setup_logging(settings.log_format, settings.log_level)
    app.add_middleware(RequestObservability)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (text exposition format)",
             response_class=Response, responses={200: {"content": {metrics.CONTENT_TYPE: {}}}})
    async def prometheus_metrics(request: Request) -> Response:
        state = getattr(request.app.state, "baimo", None)
        if state is not None:
            await asyncio.to_thread(metrics.refresh_gauges, state)
            if os.environ.get("BAIMO_ENGINE_URL"):
                await _engine_gauges(os.environ["BAIMO_ENGINE_URL"], state)
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


async def _engine_gauges(engine_url: str, state: Any) -> None:
    """`--workers N`: local models run in the master's engine host (baimo/engine/host.py); its /workers has the
    queues and busy slots of all server workers together."""
    slots = {m.id: getattr(m, "parallel", 0) or 0 for m in state.config.models}
    try:
        timeout = aiohttp.ClientTimeout(total=ENGINE_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(engine_url.rstrip("/") + "/workers") as r:
            rows = await r.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        log.warning("engine host at %s did not answer /workers; local model gauges not refreshed", engine_url)
        return
    for model_id, row in rows.items():
        metrics.set_local_model(model_id, int(row.get("queued") or 0), int(row.get("in_flight") or 0),
                                slots.get(model_id, 0))


async def start(state: Any, settings: Settings) -> None:
    """At start-up, after the state is built: label values, the usage listener, tracing."""
    config = state.config
    metrics.configure([m.id for m in config.models] + [r.id for r in config.routers]
                      + [e.id for e in config.embedders])
    listeners = getattr(state.usage, "listeners", None)
    if listeners is not None and metrics.observe_usage not in listeners:
        listeners.append(metrics.observe_usage)
    tracing.setup_tracing(settings.otel_endpoint or config.observability.otel_endpoint)


async def stop(state: Any) -> None:
    """At shutdown: flush spans, and mark this worker dead for the multiprocess sums."""
    await asyncio.to_thread(tracing.shutdown_tracing)
    metrics.process_exit()
