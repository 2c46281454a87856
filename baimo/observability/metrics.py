"""Prometheus metrics (prometheus_client): what was served, to whom it cost what, how fast, and what failed.

Every finished model request is counted once, from its usage record (`observe_usage`, called by
`UsageLog.record`); every HTTP request and every OpenAI-shaped error (JSON body or SSE `error` event) is counted by
the request middleware (`baimo/observability/middleware.py`). Gauges of local engines and ingestion jobs are read
when /metrics is scraped (baimo/observability/wiring.py).

Several worker processes (`baimo serve --workers N`): when `PROMETHEUS_MULTIPROC_DIR` is set before this module is
imported, prometheus_client keeps each process's values in memory-mapped files in that directory, and `render()`
sums them with a `MultiProcessCollector`, so /metrics on any worker reports the whole server. Gauges use
`livemostrecent` (the value set last by a live process: the worker answering a scrape sets them first); a
worker marks itself dead at shutdown (`mark_process_dead`). See
https://prometheus.github.io/client_python/multiprocess/.

Label values are bounded: models are ids from the configuration (anything else is `other`), error types/codes
must look like identifiers, routes are route templates; no key id, prompt or free text is ever a label.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

log = logging.getLogger(__name__)

# generate_latest() writes classic metrics only, valid in text format 0.0.4, which every Prometheus version reads
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Seconds. Latency spans a cached 5 ms answer to a minutes-long local generation; TTFT is mostly under 10 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

REQUESTS = Counter("baimo_requests", "Model requests finished (chat, completions, embeddings), by served model, "
                   "route kind, endpoint and HTTP status", ["model", "route_kind", "endpoint", "status"])
TOKENS = Counter("baimo_tokens", "Tokens by model and kind (prompt, completion; cached is part of prompt, "
                 "reasoning part of completion)", ["model", "kind"])
COST = Counter("baimo_cost_usd", "Cost in US dollars at the configured prices, by model", ["model"])
LATENCY = Histogram("baimo_request_duration_seconds", "Model request latency, start to last token, by model and "
                    "route kind", ["model", "route_kind"], buckets=LATENCY_BUCKETS)
TTFT = Histogram("baimo_time_to_first_token_seconds", "Time to the first generated token, by model and route kind",
                 ["model", "route_kind"], buckets=TTFT_BUCKETS)
ERRORS = Counter("baimo_errors", "OpenAI-shaped errors returned (JSON bodies and SSE error events), by error "
                 "type and code", ["type", "code"])
HTTP_REQUESTS = Counter("baimo_http_requests", "HTTP requests by method, route template and status",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("baimo_http_request_duration_seconds", "HTTP request duration until the last body byte, "
                         "by method and route template", ["method", "route"], buckets=HTTP_BUCKETS)
# Gauges are set by the worker answering the scrape just before it renders, from one shared source (the local
# engine, or the engine host of `--workers N`; the jobs table), so the most recent value of any live process is right.
QUEUE_DEPTH = Gauge("baimo_local_queue_depth", "Requests waiting for a slot of a local model",
                    ["model"], multiprocess_mode="livemostrecent")
BUSY_SLOTS = Gauge("baimo_local_busy_slots", "Slots of a local model serving a request now",
                   ["model"], multiprocess_mode="livemostrecent")
SLOTS = Gauge("baimo_local_slots", "Parallel slots configured for a local model", ["model"],
              multiprocess_mode="livemostrecent")
INGEST_JOBS = Gauge("baimo_ingest_jobs", "Knowledge ingestion jobs by status (queued, running, done, failed)",
                    ["status"], multiprocess_mode="livemostrecent")

INGEST_STATUSES = ("queued", "running", "done", "failed")
_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_known_models: set[str] = set()


def configure(model_ids: Iterable[str]) -> None:
    """The ids allowed as `model` label values (configured models, routers, embedders); others become `other`."""
    _known_models.clear()
    _known_models.update(model_ids)


def model_label(model: str | None) -> str:
    if not model:
        return "none"
    return model if model in _known_models else "other"


def ident_label(value: str | None) -> str:
    """An error type or code as a label: an identifier (lower case, <= 48 chars), `none`, or `other`."""
    if not value:
        return "none"
    return value if _IDENT.match(value) else "other"


def route_kind(usage: Any) -> str:
    """How a request reached its model: direct, routed (a router chose), persona, fallback, cascade or none."""
    route = usage.route or ""
    if usage.model is None:
        return "none"
    if route.startswith("cascade"):
        return "cascade"
    if route.startswith("fallback") or " failed" in route:
        return "fallback"
    if usage.persona:
        return "persona"
    if usage.model_requested and usage.model_requested != usage.model:
        return "routed"
    return "direct"


def observe_usage(usage: Any) -> None:
    """Count one finished request from its usage record (`baimo.metering.usage.Usage`): request, tokens, cost,
    latency and TTFT. Thread-safe; never raises (metrics must not fail a request)."""
    try:
        model, kind = model_label(usage.model), route_kind(usage)
        REQUESTS.labels(model, kind, usage.endpoint or "none", str(usage.status_code)).inc()
        for name, value in (("prompt", usage.prompt_tokens), ("completion", usage.completion_tokens),
                            ("cached", usage.cached_tokens), ("reasoning", usage.reasoning_tokens)):
            if value:
                TOKENS.labels(model, name).inc(value)
        if usage.cost:
            COST.labels(model).inc(usage.cost)
        if usage.latency_ms is not None:
            LATENCY.labels(model, kind).observe(usage.latency_ms / 1000)
        if usage.ttft_ms is not None:
            TTFT.labels(model, kind).observe(usage.ttft_ms / 1000)
    except Exception:  # noqa: BLE001 - a metrics bug must never lose a usage record
        log.exception("metrics: could not count a usage record of %s", usage.model)


def observe_error(type_: str | None, code: str | None) -> None:
    ERRORS.labels(ident_label(type_), ident_label(code)).inc()


def observe_http(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


def set_local_model(model_id: str, queued: int, busy: int, slots: int) -> None:
    """Publish one local model's queue depth, busy slots and configured slots."""
    model = model_label(model_id)
    QUEUE_DEPTH.labels(model).set(queued)
    BUSY_SLOTS.labels(model).set(busy)
    SLOTS.labels(model).set(slots)


def refresh_gauges(state: Any) -> None:
    """Set the gauges from a running `AppState`: each local model's queue and slots (as this process sees its
    engine) and ingestion jobs by status (`IngestJobs.counts()`, a query: call it off the event loop)."""
    for backend in getattr(state, "models", ()):
        worker = getattr(backend, "_worker", None)
        if backend.config.kind == "llamacpp" and worker is not None:
            set_local_model(backend.config.id, worker.queued, worker.in_flight, backend.config.parallel or 0)
    jobs = getattr(state, "ingest_jobs", None)
    counts = getattr(jobs, "counts", None)
    if counts is not None:
        found = counts()
        for status in INGEST_STATUSES:
            INGEST_JOBS.labels(status).set(found.get(status, 0))


def render() -> bytes:
    """The Prometheus text exposition (format 0.0.4) of this server: all workers summed in multiprocess mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def process_exit() -> None:
    """At a worker's shutdown in multiprocess mode: drop its live gauges from the sums (`mark_process_dead`)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())
