"""How the app takes observability on: the request middleware, GET /metrics, and start/stop hooks for the
lifespan (logging, tracing, the metrics listener on usage records, multiprocess clean-up)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from baimo.config import Settings
from baimo.observability import metrics, tracing
from baimo.observability.logs import setup_logging
from baimo.observability.middleware import RequestObservability

GAUGE_REFRESH_S = 5.0  # multiprocess mode: how often each worker publishes its gauges for the others' scrapes


def install(app: FastAPI, settings: Settings) -> None:
    """Add the request middleware (call after every other `add_middleware`, so it is outermost) and /metrics;
    configure logging when the settings ask for a format (`baimo serve` always does)."""
    if settings.log_format:
        setup_logging(settings.log_format, settings.log_level)
    app.add_middleware(RequestObservability)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (text exposition format)",
             response_class=Response, responses={200: {"content": {metrics.CONTENT_TYPE: {}}}})
    async def prometheus_metrics(request: Request) -> Response:
        body = metrics.render(getattr(request.app.state, "baimo", None))
        return Response(body, media_type=metrics.CONTENT_TYPE)


async def start(state: Any, settings: Settings) -> None:
    """At start-up, after the state is built: label sets, the usage listener, tracing, gauge publishing."""
    config = state.config
    metrics.configure([m.id for m in config.models] + [r.id for r in config.routers]
                      + [e.id for e in config.embedders])
    listeners = getattr(state.usage, "listeners", None)
    if listeners is not None and metrics.observe_usage not in listeners:
        listeners.append(metrics.observe_usage)
    tracing.setup_tracing(settings.otel_endpoint)
    if metrics.MULTIPROCESS:
        state._gauge_task = asyncio.create_task(_publish_gauges(state))


async def _publish_gauges(state: Any) -> None:
    while True:
        with contextlib.suppress(Exception):
            metrics.refresh_gauges(state)
        await asyncio.sleep(GAUGE_REFRESH_S)


async def stop(state: Any) -> None:
    """At shutdown: stop publishing, flush spans, and mark this worker dead for the multiprocess sums."""
    task = getattr(state, "_gauge_task", None)
    if task is not None:
        task.cancel()
    await asyncio.to_thread(tracing.shutdown_tracing)
    metrics.process_exit()
