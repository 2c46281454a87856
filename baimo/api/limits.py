"""ASGI middleware that refuses oversized bodies (413) and non-JSON bodies on JSON endpoints (415) before parsing."""

from __future__ import annotations

import json
from typing import Any

from baimo.errors import BaimoError, PayloadTooLarge, UnsupportedMediaType

JSON_PREFIXES = ("/v1/", "/api/")
MULTIPART_OK = ("/api/knowledge",)


async def _send_error(send: Any, exc: BaimoError) -> None:
    body = json.dumps(exc.to_dict()).encode()
    await send({"type": "http.response.start", "status": exc.status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyLimits:
    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        path = scope["path"]
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max:
            return await _send_error(send, PayloadTooLarge(
                f"Request body of {int(length)} bytes exceeds the limit of {self.max} bytes."))
        if path.startswith(JSON_PREFIXES) and not path.startswith(MULTIPART_OK):
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if length != b"0" and ctype != b"application/json":
                return await _send_error(send, UnsupportedMediaType(
                    f"Content-Type must be application/json, not {ctype.decode() or 'missing'}."))
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max:
                    raise PayloadTooLarge(f"Request body exceeds the limit of {self.max} bytes.")
            return message

        await self.app(scope, limited_receive, send)
