"""ASGI middleware around every HTTP request: its id (`x-request-id`), HTTP metrics, errors by kind, the access
log line and the request's root span. Outermost in the app, so it also sees answers of other middleware (413, 415).

Errors are counted from what the client receives: the `error` object of a JSON body with status >= 400, and
`event: error` of a server-sent-events stream (baimo/api/sse.py), whatever raised them.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from baimo.observability import metrics, request_id, tracing

access_log = logging.getLogger("baimo.access")
log = logging.getLogger("baimo.api")
MAX_ERROR_BODY = 64 * 1024  # bytes of a JSON error body read for its type and code
SSE_ERROR = b"event: error\n"
COMPLETION_PREFIXES = {"/v1/chat/completions": "chatcmpl-", "/v1/completions": "cmpl-"}  # their response ids


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v.decode("latin-1")
    return None


def _served_model(route_header: str | None) -> str | None:
    """The model a completion went to, from `x-baimo-route` ('... -> model')."""
    if not route_header or "-> " not in route_header:
        return None
    return route_header.rsplit("-> ", 1)[1].strip() or None


def _count_error_json(body: bytes) -> None:
    try:
        err = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return
    if isinstance(err, dict):
        metrics.observe_error(err.get("type"), err.get("code"))


def _count_sse_errors(chunk: bytes) -> None:
    """Count each `event: error` in a chunk of an SSE body (Baimo sends one event per chunk)."""
    start = chunk.find(SSE_ERROR)
    while start != -1:
        data = chunk[start + len(SSE_ERROR):].split(b"\n\n", 1)[0]
        if data.startswith(b"data: "):
            _count_error_json(data[6:])
        start = chunk.find(SSE_ERROR, start + 1)


class RequestObservability:
    """Request id, metrics, access log and root span for each HTTP request (see the module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        info = request_id.begin(_header(scope["headers"], b"x-request-id"), COMPLETION_PREFIXES.get(path, "req_"))
        started = time.perf_counter()
        span, token = tracing.start_server_span(f"{method} {path}", {"http.request.method": method,
                                                                    "url.path": path})
        seen: dict[str, Any] = {"status": 500, "started": False, "sse": False, "error_body": None, "model": None,
                                "response_id": None}

        async def send_observed(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                response_id = _header(headers, b"x-request-id")
                if response_id and info.id is None:
                    info.id = response_id  # a completion's id, when nothing claimed one before
                seen.update(status=message["status"], started=True, response_id=response_id,
                            model=_served_model(_header(headers, b"x-baimo-route")))
                ctype = (_header(headers, b"content-type") or "").lower()
                seen["sse"] = ctype.startswith("text/event-stream")
                if message["status"] >= 400 and ctype.startswith("application/json"):
                    seen["error_body"] = bytearray()
                headers = [(k, v) for k, v in headers if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", info.get().encode("latin-1")))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if seen["sse"] and SSE_ERROR in body:
                    _count_sse_errors(body)
                elif seen["error_body"] is not None and len(seen["error_body"]) < MAX_ERROR_BODY:
                    seen["error_body"] += body
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            if seen["started"]:
                raise
            # The app's catch-all handler sits outside this middleware (Starlette's ServerErrorMiddleware), so
            # answer here, with the request id, in OpenAI's shape.
            log.exception("unhandled error")
            from baimo.api.errors import error_body

            body = json.dumps(error_body("The server had an error while processing your request.", "server_error",
                                         None, "internal_error")).encode()
            await send_observed({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send_observed({"type": "http.response.body", "body": body})
        finally:
            self._finish(scope, method, path, info, started, seen, span, token)

    @staticmethod
    def _finish(scope: dict, method: str, path: str, info: request_id.RequestInfo, started: float,
                seen: dict[str, Any], span: Any, token: Any) -> None:
        seconds = time.perf_counter() - started
        status = seen["status"] if seen["started"] else 499  # the client left before any answer
        route = getattr(scope.get("route"), "path", None) or "other"
        if seen["error_body"]:
            _count_error_json(bytes(seen["error_body"]))
        metrics.observe_http(method, route, status, seconds)
        rid = info.get()
        latency_ms = round(seconds * 1000, 1)
        extra = {"request_id": rid, "method": method, "path": path, "status": status, "latency_ms": latency_ms,
                 "model": seen["model"]}
        if seen["response_id"] and seen["response_id"] != rid:
            extra["response_id"] = seen["response_id"]
        access_log.info("%s %s %d %.1fms", method, path, status, latency_ms, extra=extra)
        tracing.end_server_span(span, token, f"{method} {route}", {
            "http.route": route, "http.response.status_code": status, "baimo.request_id": rid,
            "baimo.model": seen["model"]})
