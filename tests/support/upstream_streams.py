"""Response bodies of the scripted upstream: the SSE chat stream, a tool call, and the broken ones."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class AbruptClose(Exception):
    """Raised inside a response body to make uvicorn drop the connection (midstream_error)."""


async def tool_call_stream(model: str, name: str, arguments: str) -> AsyncIterator[bytes]:
    """One function call, its arguments split in two deltas as real servers do, then finish_reason tool_calls."""
    base = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    half = len(arguments) // 2
    deltas = [
        {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": name, "arguments": arguments[:half]}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]},
    ]
    for delta in deltas:
        yield sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    yield sse({**base, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}})
    yield b"data: [DONE]\n\n"


async def chat_stream(
    b: Any,  # a Behaviour (upstream_app); Any here to avoid an import cycle
    cid: str,
    created: int,
    model: str,
    tokens: list[str],
    finish: str,
    usage: dict[str, int],
    include_usage: bool,
    logprobs: bool = False,
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        lp = None
        if logprobs and delta.get("content"):
            lp = {"content": [{"token": delta["content"], "logprob": b.logprob, "bytes": None, "top_logprobs": []}]}
        c: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish_reason}],
        }
        if include_usage:
            c["usage"] = None
        return c

    if b.kind == "midstream_error" and b.chunks_before_error < 0:
        raise AbruptClose()  # headers sent, then the connection closes before the first data: event
    yield sse(chunk({"role": "assistant", "content": ""}, None))
    for i, tok in enumerate(tokens):
        if b.token_delay > 0 and i > 0:
            await asyncio.sleep(b.token_delay)  # also before a drop: what was sent has reached the client
        if b.kind == "midstream_error" and i >= b.chunks_before_error:
            raise AbruptClose()
        if b.kind == "malformed" and i >= b.garbage_after:
            yield b'data: {"choices": [ this is not json\n\n'
            return
        yield sse(chunk({"content": tok}, None))
    if b.kind == "midstream_error":
        raise AbruptClose()
    yield sse(chunk({}, finish))
    if include_usage:
        final = chunk({}, None)
        final["choices"] = []
        final["usage"] = usage
        yield sse(final)
    yield b"data: [DONE]\n\n"


async def malformed_stream() -> AsyncIterator[bytes]:
    yield b'data: {"id": "chatcmpl-broken", "choices": [ this is not json\n\n'
    yield b"data: [DONE]\n\n"


async def truncated_body(data: bytes) -> AsyncIterator[bytes]:
    yield data[: len(data) // 2]
    raise AbruptClose()
