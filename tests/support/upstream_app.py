"""The scripted OpenAI-compatible upstream itself: behaviours, the recorded requests and the Starlette app.

Run it with `tests/support/upstream.py` (a thread or a child process); see that module for usage.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import struct
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.upstream_rich import (
    rich_chat_payload,
    rich_chat_stream,
    text_completion_payload,
    text_completion_stream,
)
from tests.support.upstream_streams import (
    AbruptClose,
    chat_stream,
    malformed_stream,
    tool_call_stream,
    truncated_body,
)
from tests.support.upstream_text import (  # noqa: F401  (re-exported: tests import them from here)
    count_prompt_tokens,
    embedding_vector,
    last_user_text,
    split_tokens,
)

__all__ = [
    "DEFAULT_TEXT",
    "KINDS",
    "Behaviour",
    "RecordedRequest",
    "build_app",
    "count_prompt_tokens",
    "embedding_vector",
]

DEFAULT_TEXT = "Hello from the scripted upstream. This answer is fixed and deterministic."
KINDS = ("ok", "slow", "fail", "malformed", "midstream_error", "echo", "tool_call", "rich", "extract", "solve",
         "oracle")
REPO_ROOT = Path(__file__).resolve().parents[2]

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "overloaded"),
}


# --------------------------------------------------------------------------------------------------
# Behaviours
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """What the server does for one upstream model name.

    kind:
      ``ok``              answer ``text`` (or ``tokens`` tokens "tok0 tok1 ..."), optionally pausing
                          ``token_delay`` seconds between streamed tokens;
      ``slow``            wait ``delay`` seconds before the first byte, then answer like ``ok``;
      ``fail``            HTTP ``status`` with an OpenAI error body (and ``Retry-After`` if set);
      ``malformed``       HTTP 200 whose body is not JSON (streams: a ``data:`` line that is not JSON; with
                          ``garbage_after`` N, N good content chunks first);
      ``midstream_error`` send ``chunks_before_error`` content chunks, then drop the connection
                          (no final chunk, no ``[DONE]``; non-streamed: a truncated body); with
                          ``token_delay``, wait that long before dropping; -1: headers, then the drop;
      ``echo``            answer the content of the last user message.
      ``tool_call``       when the request offers tools: call the first one with ``{"q": <last user text>}``
                          (streamed in two argument pieces); after a tool result: answer ``Tool said: ...``.
      ``rich``            every field a modern server sends: reasoning_content, logprobs, refusal, annotations,
                          tool_calls, usage token details, ``n`` choices (see ``upstream_rich``).
      ``extract``         answer the sentence of the prompt's numbered passages that holds the key term ``text``,
                          with its ``[n]`` (a scripted strong grounded model, see ``upstream_grounded``).
      ``solve``           a scripted strong teacher of a synthetic distillation task: the right JSON answer to a
                          ``travel-json`` prompt (``baimo.distill.tasks.travel.solve``), else ``text``.
      ``oracle``          a scripted strong model of evaluation runs: GSM8K and CMMLU questions answered right at
                          GPT-4's published rates (see ``upstream_oracle``).
    ``delay`` applies before the first byte for every kind (``slow`` merely defaults it to 30 s).
    """

    kind: str = "ok"
    text: str = DEFAULT_TEXT
    tokens: int | None = None
    token_delay: float = 0.0
    delay: float = 0.0
    status: int = 500
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    retry_after: float | None = None
    chunks_before_error: int = 3
    garbage_after: int = 0  # malformed streams: good content chunks before the line that is not JSON
    logprob: float = -0.1  # log-probability reported for every token when the request asks for logprobs
    unsure_marker: str | None = None  # when the last user message contains it, report `unsure_logprob` instead
    unsure_logprob: float = -3.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown behaviour kind {self.kind!r}; expected one of {KINDS}")

    # Constructors --------------------------------------------------------------------------------

    @classmethod
    def ok(cls, text: str = DEFAULT_TEXT, *, tokens: int | None = None, token_delay: float = 0.0) -> Behaviour:
        return cls("ok", text=text, tokens=tokens, token_delay=token_delay)

    @classmethod
    def slow(cls, seconds: float = 30.0, *, text: str = DEFAULT_TEXT, tokens: int | None = None) -> Behaviour:
        return cls("slow", delay=seconds, text=text, tokens=tokens)

    @classmethod
    def fail(
        cls,
        status: int = 500,
        message: str | None = None,
        *,
        error_type: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> Behaviour:
        return cls(
            "fail",
            status=status,
            error_message=message,
            error_type=error_type,
            error_code=code,
            retry_after=retry_after,
        )

    @classmethod
    def malformed(cls, *, after: int = 0) -> Behaviour:
        return cls("malformed", garbage_after=after)

    @classmethod
    def midstream_error(cls, chunks: int = 3, *, tokens: int | None = None, token_delay: float = 0.0) -> Behaviour:
        return cls("midstream_error", chunks_before_error=chunks, tokens=tokens, token_delay=token_delay)

    @classmethod
    def rich(cls) -> Behaviour:
        return cls("rich")

    @classmethod
    def echo(cls, *, token_delay: float = 0.0) -> Behaviour:
        return cls("echo", token_delay=token_delay)

    @classmethod
    def extract(cls, key: str) -> Behaviour:
        return cls("extract", text=key)

    @classmethod
    def parse(cls, spec: str) -> Behaviour:
        """``"ok"``, ``"ok:100"``, ``"slow:2.5"``, ``"fail:429"``, ``"malformed"``,
        ``"midstream_error:5"``, ``"echo"``; raises ``ValueError`` for anything else."""
        kind, _, arg = spec.partition(":")
        if kind not in KINDS:
            raise ValueError(f"not a behaviour spec: {spec!r}")
        if not arg:
            return cls.slow() if kind == "slow" else cls(kind)
        if kind == "ok":
            return cls.ok(tokens=int(arg))
        if kind == "slow":
            return cls.slow(float(arg))
        if kind == "fail":
            return cls.fail(int(arg))
        if kind == "midstream_error":
            return cls.midstream_error(int(arg))
        raise ValueError(f"behaviour {kind!r} takes no argument: {spec!r}")

    # Serialisation (for the control endpoint of a server running in another process) -----------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_obj(cls, obj: Behaviour | str | Mapping[str, Any]) -> Behaviour:
        if isinstance(obj, Behaviour):
            return obj
        if isinstance(obj, str):
            return cls.parse(obj)
        return cls(**dict(obj))

    # Helpers ------------------------------------------------------------------------------------

    def answer_tokens(self, body: Mapping[str, Any]) -> list[str]:
        if self.kind == "echo":
            return split_tokens(last_user_text(body.get("messages") or []))
        if self.kind == "oracle":
            from tests.support.upstream_oracle import oracle_answer

            return split_tokens(oracle_answer(last_user_text(body.get("messages") or [])))
        if self.kind == "solve":
            import json

            from baimo.distill.tasks.travel import solve

            solved = solve(last_user_text(body.get("messages") or []))
            return split_tokens(json.dumps(solved) if solved is not None else self.text)
        if self.kind == "extract":
            from tests.support.upstream_grounded import extract_answer

            return split_tokens(extract_answer(body.get("messages") or [], self.text))
        if self.tokens is not None:
            return [f"tok{i} " for i in range(self.tokens)]
        return split_tokens(self.text)

    def error_body(self) -> dict[str, Any]:
        default_type, default_code = _ERROR_TYPES.get(self.status, ("server_error", None))
        return {
            "error": {
                "message": self.error_message or f"Scripted upstream failure (HTTP {self.status})",
                "type": self.error_type or default_type,
                "param": None,
                "code": self.error_code if self.error_code is not None else default_code,
            }
        }


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None
    raw: bytes = b""
    at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        return self.body

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecordedRequest:
        return cls(method=d["method"], path=d["path"], headers=dict(d["headers"]), body=d["body"], at=d["at"])


class _QuietAbruptClose(logging.Filter):
    """Keep uvicorn from printing a traceback for the deliberate AbruptClose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        seen = 0
        while exc is not None and seen < 10:
            if isinstance(exc, AbruptClose):
                return False
            if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                exc = exc.exceptions[0]
            else:
                exc = exc.__cause__ or exc.__context__
            seen += 1
        return True


_quiet_filter_installed = False


def _install_log_filter() -> None:
    global _quiet_filter_installed
    if not _quiet_filter_installed:
        logging.getLogger("uvicorn.error").addFilter(_QuietAbruptClose())
        _quiet_filter_installed = True


# --------------------------------------------------------------------------------------------------
# The ASGI application
# --------------------------------------------------------------------------------------------------


class _State:
    def __init__(
        self,
        behaviours: Mapping[str, Behaviour | str] | None,
        default: Behaviour | str | None,
        api_key: str | None,
        record: bool,
        embedding_dim: int,
    ) -> None:
        self.behaviours: dict[str, Behaviour] = {k: Behaviour.from_obj(v) for k, v in (behaviours or {}).items()}
        self.default = Behaviour.from_obj(default) if default is not None else Behaviour.ok()
        self.api_key = api_key
        self.record = record
        self.embedding_dim = embedding_dim
        self.requests: list[RecordedRequest] = []
        self.lock = threading.Lock()

    def behaviour_for(self, model: Any) -> Behaviour:
        name = str(model) if model is not None else ""
        with self.lock:
            found = self.behaviours.get(name)
        if found is not None:
            return found
        try:
            parsed = Behaviour.parse(name)
        except ValueError:
            return self.default
        if ":" not in name and parsed.kind == self.default.kind:
            return self.default  # e.g. "ok" follows a scripted default such as ok with --tokens 100
        return parsed

    def add(self, rec: RecordedRequest) -> None:
        if self.record:
            with self.lock:
                self.requests.append(rec)


def build_app(
    behaviours: Mapping[str, Behaviour | str] | None = None,
    *,
    default: Behaviour | str | None = None,
    api_key: str | None = None,
    record: bool = True,
    embedding_dim: int = 16,
) -> Starlette:
    """The scripted server as a Starlette app (``app.state.scripted`` holds the shared state)."""
    state = _State(behaviours, default, api_key, record, embedding_dim)

    async def read(request: Request) -> tuple[RecordedRequest, Any, Response | None]:
        raw = await request.body()
        body: Any = None
        problem: Response | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                problem = _error(400, "Request body is not valid JSON.")
        rec = RecordedRequest(request.method, request.url.path, dict(request.headers), body, raw)
        state.add(rec)
        if problem is None and state.api_key is not None:
            if request.headers.get("authorization") != f"Bearer {state.api_key}":
                problem = _error(401, "Incorrect API key provided.", code="invalid_api_key")
        return rec, body, problem

    async def wait_before_first_byte(request: Request, seconds: float) -> bool:
        """Sleep; return False if the client went away meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            await asyncio.sleep(min(left, 0.05))
            if await request.is_disconnected():
                return False

    async def models(request: Request) -> Response:
        _, _, problem = await read(request)
        if problem is not None:
            return problem
        with state.lock:
            names = list(dict.fromkeys([*state.behaviours, *KINDS]))
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "scripted-upstream"} for n in names]
        return JSONResponse({"object": "list", "data": data})

    async def chat(request: Request) -> Response:
        _, body, problem = await read(request)
        if problem is not None:
            return problem
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' is required.", param="messages")
        model = body.get("model") or ""
        b = state.behaviour_for(model)
        stream = bool(body.get("stream"))

        if b.delay > 0 and not await wait_before_first_byte(request, b.delay):
            return Response(status_code=499)
        if b.kind == "fail":
            headers = {"retry-after": f"{b.retry_after:g}"} if b.retry_after is not None else None
            return JSONResponse(b.error_body(), status_code=b.status, headers=headers)
        if b.kind == "malformed" and not (stream and b.garbage_after > 0):
            if stream:
                return StreamingResponse(malformed_stream(), media_type="text/event-stream")
            return Response(b"<html>502 this is not JSON {", media_type="application/json")

        if b.kind == "rich":
            if stream:
                return StreamingResponse(rich_chat_stream(model, body), media_type="text/event-stream")
            return JSONResponse(rich_chat_payload(model, body))
        if b.kind == "tool_call" and stream:
            messages = body["messages"]
            if messages and messages[-1].get("role") == "tool":
                b = dataclasses.replace(b, kind="ok", text=f"Tool said: {messages[-1].get('content')}")
            elif body.get("tools"):
                name = body["tools"][0]["function"]["name"]
                arguments = json.dumps({"q": last_user_text(messages)})
                return StreamingResponse(tool_call_stream(model, name, arguments), media_type="text/event-stream")
        tokens = b.answer_tokens(body)
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        finish = "stop"
        if isinstance(limit, int) and limit >= 0 and len(tokens) > limit:
            tokens, finish = tokens[:limit], "length"
        prompt_tokens = count_prompt_tokens(body["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())

        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            if b.unsure_marker and b.unsure_marker in last_user_text(body["messages"]):
                b = dataclasses.replace(b, logprob=b.unsure_logprob)
            gen = chat_stream(b, cid, created, model, tokens, finish, usage, include_usage,
                               bool(body.get("logprobs")))
            return StreamingResponse(
                gen,
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            )

        payload = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(tokens), "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": usage,
        }
        if b.kind == "midstream_error":
            data = json.dumps(payload).encode()
            return StreamingResponse(
                truncated_body(data),
                media_type="application/json",
                headers={"content-length": str(len(data))},
            )
        return JSONResponse(payload)

    async def begin(request: Request, required: str) -> tuple[Any, str, Behaviour, Response | None]:
        """Read a body that needs `required`, find the model's behaviour, wait or fail as it says; the last item
        is the response to send at once (or None to go on)."""
        _, body, problem = await read(request)
        if problem is not None:
            return body, "", Behaviour.ok(), problem
        if not isinstance(body, dict) or required not in body:
            return body, "", Behaviour.ok(), _error(400, f"'{required}' is required.", param=required)
        model = body.get("model") or ""
        b = state.behaviour_for(model)
        if b.delay > 0 and not await wait_before_first_byte(request, b.delay):
            return body, model, b, Response(status_code=499)
        if b.kind == "fail":
            return body, model, b, JSONResponse(b.error_body(), status_code=b.status)
        return body, model, b, None

    async def completions(request: Request) -> Response:
        """Legacy text completions: ``ok``/``rich`` answer text, ``fail`` and ``midstream_error`` fail alike."""
        body, model, b, early = await begin(request, "prompt")
        if early is not None:
            return early
        if body.get("stream"):
            return StreamingResponse(text_completion_stream(b, model, body), media_type="text/event-stream")
        return JSONResponse(text_completion_payload(b, model, body))

    async def embeddings(request: Request) -> Response:
        body, model, b, early = await begin(request, "input")
        if early is not None:
            return early
        if b.kind == "malformed":
            return Response(b"not json at all", media_type="application/json")

        inputs = body["input"]
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in inputs]
        dims = body.get("dimensions") or state.embedding_dim
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = embedding_vector(text, int(dims))
            emb: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        n = sum(max(1, len(t.split())) for t in texts)
        return JSONResponse(
            {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": n, "total_tokens": n}}
        )

    async def control_requests(request: Request) -> Response:
        with state.lock:
            items = [r.to_dict() for r in state.requests]
        return JSONResponse(items)

    async def control_reset(request: Request) -> Response:
        with state.lock:
            state.requests.clear()
        return JSONResponse({"ok": True})

    async def control_behaviours(request: Request) -> Response:
        try:
            spec = json.loads(await request.body())
            parsed = {str(k): Behaviour.from_obj(v) for k, v in spec.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            return _error(400, f"bad behaviours: {exc}")
        with state.lock:
            state.behaviours.update(parsed)
        return JSONResponse({"ok": True, "models": sorted(parsed)})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/_scripted/requests", control_requests, methods=["GET"]),
            Route("/_scripted/reset", control_reset, methods=["POST"]),
            Route("/_scripted/behaviours", control_behaviours, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.scripted = state
    return app


def _error(status: int, message: str, *, code: str | None = None, param: str | None = None) -> JSONResponse:
    err_type, default_code = _ERROR_TYPES.get(status, ("server_error", None))
    body = {"error": {"message": message, "type": err_type, "param": param, "code": code or default_code}}
    return JSONResponse(body, status_code=status)
