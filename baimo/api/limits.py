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
    def __init__(self, app: Any, max_body_bytes: int, max_upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_json = max_body_bytes
        self.max_upload = max_upload_bytes or max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        path = scope["path"]
        limit = self.max_upload if path.startswith(MULTIPART_OK) else self.max_json
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _send_error(send, PayloadTooLarge(
                f"Request body of {int(length)} bytes exceeds the limit of {limit} bytes."))
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
                if received > limit:
                    raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
            return message

        await self.app(scope, limited_receive, send)
