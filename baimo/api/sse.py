"""Server-sent events: OpenAI-style chunk encoding and a streaming response that always closes its generator."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import StreamingResponse

from baimo.errors import BaimoError


def event(data: dict[str, Any] | str, name: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (f"event: {name}\n" if name else "").encode() + b"data: " + payload.encode("utf-8") + b"\n\n"


DONE = b"data: [DONE]\n\n"


def error_event(exc: BaimoError) -> bytes:
    return event(exc.to_dict(), "error")


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


class ChunkMaker:
    """Builds `chat.completion.chunk` objects for one completion."""

    def __init__(self, model: str, response_id: str | None = None) -> None:
        self.id = response_id or completion_id()
        self.created = int(time.time())
        self.model = model

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, *, index: int = 0,
              logprobs: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "system_fingerprint": None,
                "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
                **extra}

    def usage_chunk(self, usage: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "system_fingerprint": None, "choices": [], "usage": usage, **extra}


class SSEResponse(StreamingResponse):
    """A StreamingResponse for SSE that closes its generator however the connection ends (client gone included)."""

    media_type = "text/event-stream"

    def __init__(self, content: Any, headers: dict[str, str] | None = None,
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        """`on_close`: awaited after the generator is closed, however the response ended (a chat run's
        `abandon`, which records a client that left before the generator ever started)."""
        super().__init__(content, headers={"cache-control": "no-cache", "x-accel-buffering": "no",
                                           **(headers or {})})
        self.on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                aclose = getattr(self.body_iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                if self.on_close is not None:
                    await self.on_close()
