"""Optional OpenTelemetry traces: a span per HTTP request with child spans for the route decision, knowledge
retrieval and the model call, exported over OTLP/HTTP (protobuf) to `<endpoint>/v1/traces`.

Off unless an endpoint is configured: `BAIMO_OTEL_ENDPOINT` (Settings.otel_endpoint) or the standard
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) / `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended), as the
OTLP exporter specification says. When off, `span()` and `record_span()` cost one attribute check.
Spans go through a BatchSpanProcessor (a 500 ms schedule, flushed at shutdown). Baimo uses its own
TracerProvider (not the global one), so embedding applications keep theirs; the current span still travels in
OpenTelemetry's context (contextvars), so a child span started anywhere in the request's task is linked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_provider: Any = None
_tracer: Any = None
SCHEDULE_DELAY_MS = 500


def traces_url(endpoint: str | None) -> str | None:
    """The OTLP/HTTP traces URL from Baimo's setting or the standard environment variables, or None (off)."""
    if endpoint:
        return endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return base.rstrip("/") + "/v1/traces" if base else None


def setup_tracing(endpoint: str | None, service_name: str = "baimo") -> bool:
    """Start exporting spans when an endpoint is configured; True when tracing is on."""
    global _provider, _tracer
    url = traces_url(endpoint)
    if url is None or _provider is not None:
        return _provider is not None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from baimo import __version__

    _provider = TracerProvider(resource=Resource.create({"service.name": service_name,
                                                         "service.version": __version__}))
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url),
                                                    schedule_delay_millis=SCHEDULE_DELAY_MS))
    _tracer = _provider.get_tracer("baimo", __version__)
    return True


def shutdown_tracing() -> None:
    """Flush the spans still queued and stop the exporter."""
    global _provider, _tracer
    if _provider is not None:
        _provider.force_flush()
        _provider.shutdown()
    _provider = _tracer = None


def enabled() -> bool:
    return _tracer is not None


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


def start_server_span(name: str, attributes: dict[str, Any]) -> tuple[Any, Any]:
    """Start a request's root span and make it current: (span, token) for `end_server_span`, or (None, None)."""
    if _tracer is None:
        return None, None
    from opentelemetry import context, trace

    span = _tracer.start_span(name, kind=trace.SpanKind.SERVER, attributes=_clean(attributes))
    return span, context.attach(trace.set_span_in_context(span))


def end_server_span(span: Any, token: Any, name: str, attributes: dict[str, Any]) -> None:
    if span is None:
        return
    from opentelemetry import context

    span.update_name(name)
    span.set_attributes(_clean(attributes))
    span.end()
    context.detach(token)


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A child span of the current one around a block (a no-op yielding None when tracing is off)."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=_clean(attributes)) as s:
        yield s


def record_span(name: str, started: float, **attributes: Any) -> None:
    """A finished child span of the current one, from `started` (a time.perf_counter() value) to now: for work
    that spans a stream's lifetime, where a context manager would cross tasks."""
    if _tracer is None:
        return
    now_ns = time.time_ns()
    start_ns = now_ns - int((time.perf_counter() - started) * 1e9)
    s = _tracer.start_span(name, start_time=start_ns, attributes=_clean(attributes))
    s.end(end_time=now_ns)
