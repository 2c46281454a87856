"""The request middleware on a real ASGI app (Starlette, driven over httpx's ASGI transport): an unexpected
exception still answers in OpenAI's shape with the request id; errors are counted from JSON bodies and SSE events;
route templates, not raw paths, become labels."""

from __future__ import annotations

import asyncio
import json

import httpx
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from baimo.observability.middleware import RequestObservability
from baimo.observability.request_id import claim_response_id


async def boom(request):
    raise RuntimeError("bug with key bm-AAAAAAAAAAAAAAAAAAAAAAAA")


async def limited(request):
    return JSONResponse({"error": {"message": "slow down", "type": "rate_limit_error", "param": None,
                                   "code": "rate_limit_exceeded"}}, status_code=429)


async def stream(request):
    response_id = claim_response_id("chatcmpl-")

    async def body():
        yield b'data: {"choices": []}\n\n'
        yield b"event: error\ndata: " + json.dumps({"error": {"message": "upstream died", "type": "upstream_error",
                                                              "code": "bad_gateway"}}).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"x-request-id": response_id})


def errors(type_: str, code: str) -> float:
    return REGISTRY.get_sample_value("baimo_errors_total", {"type": type_, "code": code}) or 0.0


def http_count(route: str, status: str) -> float:
    return REGISTRY.get_sample_value("baimo_http_requests_total", {"method": "GET", "route": route,
                                                                   "status": status}) or 0.0


def call(*requests: tuple[str, dict[str, str]]) -> list[httpx.Response]:
    app = Starlette(routes=[Route("/boom", boom), Route("/items/{item_id}", limited), Route("/stream", stream)])
    app.add_middleware(RequestObservability)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get(path, headers=headers) for path, headers in requests]

    return asyncio.run(run())


def test_an_unexpected_exception_answers_500_in_openai_shape_with_the_request_id() -> None:
    before = errors("server_error", "internal_error")
    [r] = call(("/boom", {"x-request-id": "abc"}))
    assert r.status_code == 500 and r.headers["x-request-id"] == "abc"
    assert r.json() == {"error": {"message": "The server had an error while processing your request.",
                                  "type": "server_error", "param": None, "code": "internal_error"}}
    assert "bm-" not in r.text
    assert errors("server_error", "internal_error") == before + 1


def test_errors_are_counted_from_json_bodies_and_sse_events_under_route_templates() -> None:
    limited_before = errors("rate_limit_error", "rate_limit_exceeded")
    sse_before = errors("upstream_error", "bad_gateway")
    template_before = http_count("/items/{item_id}", "429")
    first, second, streamed = call(("/items/1", {}), ("/items/2", {}), ("/stream", {}))
    assert first.status_code == second.status_code == 429
    assert first.headers["x-request-id"].startswith("req_") and first.headers["x-request-id"] != \
        second.headers["x-request-id"]
    assert streamed.headers["x-request-id"].startswith("chatcmpl-")  # the stream's response id is the request's
    assert "event: error" in streamed.text
    assert errors("rate_limit_error", "rate_limit_exceeded") == limited_before + 2
    assert errors("upstream_error", "bad_gateway") == sse_before + 1
    assert http_count("/items/{item_id}", "429") == template_before + 2
    assert REGISTRY.get_sample_value("baimo_http_requests_total", {"method": "GET", "route": "/items/1",
                                                                   "status": "429"}) is None
