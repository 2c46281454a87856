"""Any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, hosted APIs) as a Baimo backend.

Always streams from the upstream and re-emits text as soon as it arrives, so a streaming client sees
tokens at the upstream's pace; a non-streaming client gets them collected. The HTTP client is aiohttp:
its C parser and `iter_any()` hand over everything that has arrived in one piece, so a burst of upstream
chunks becomes one event downstream without ever waiting for more (httpx/h11 cost ~30 µs per chunk here).
Connect errors are retried; timeouts, HTTP errors and unreadable answers become specific exceptions that
the chat service turns into fallbacks or OpenAI-shaped errors.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from baimo.backends.base import Finish, GenerationParams, StreamEvent, TextDelta, ToolCallDelta, estimate_tokens
from baimo.backends.capabilities import check_content_parts
from baimo.config import ModelConfig, Settings
from baimo.errors import InvalidRequest, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from baimo.observability.redact import redact
from baimo.privacy import refuse_if_private

RETRY_BACKOFF_S = 0.2


def _upstream_message(body: bytes) -> str:
    """The upstream's error message, with any key it echoes redacted (it reaches clients and logs)."""
    return redact(_raw_upstream_message(body))


def _raw_upstream_message(body: bytes) -> str:
    try:
        err = json.loads(body).get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    except (ValueError, AttributeError):
        pass
    return body[:200].decode("utf-8", "replace").strip() or "no body"


class OpenAICompatBackend:
    """A model served by a remote OpenAI-compatible HTTP server."""

    KEEPALIVE_S = 30.0  # how long an idle pooled connection is kept

    def __init__(self, config: ModelConfig, settings: Settings) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> None:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout,
                                            sock_read=self.config.timeout)
            connector = aiohttp.TCPConnector(limit=1000, keepalive_timeout=self.KEEPALIVE_S)
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector, raise_for_status=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def _url(self) -> str:
        return (self.config.base_url or "").rstrip("/") + "/chat/completions"

    def count_tokens(self, messages: list[dict[str, Any]]) -> int:
        return estimate_tokens(messages)

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream"}
        if self.config.api_key_env:
            key = os.environ.get(self.config.api_key_env)
            if key:
                headers["authorization"] = f"Bearer {key}"
        return headers

    def _body(self, params: GenerationParams) -> dict[str, Any]:
        """The upstream request: the client's fields as sent, the model renamed, always streamed (with usage).

        Baimo adds nothing the client did not send, except `stream`/`stream_options` (it always streams from
        upstreams and meters from the final usage chunk)."""
        body: dict[str, Any] = {k: v for k, v in params.extra.items() if v is not None}
        messages = params.messages
        if not self.config.developer_role:
            messages = [{**m, "role": "system"} if m.get("role") == "developer" else m for m in messages]
        body.update({"model": self.config.upstream_model or self.config.id, "messages": messages,
                     "stream": True, "stream_options": {"include_usage": True}})
        optional = {params.max_tokens_param: params.max_tokens, "temperature": params.temperature,
                    "top_p": params.top_p, "seed": params.seed, "presence_penalty": params.presence_penalty,
                    "frequency_penalty": params.frequency_penalty,
                    "stop": None if "stop" in body else params.stop or None}  # the client's own form wins
        body.update({k: v for k, v in optional.items() if v is not None})
        if params.logprobs:
            body["logprobs"] = True
        if params.json_mode and "response_format" not in body:
            body["response_format"] = {"type": "json_object"}
        if params.tools:
            body["tools"] = params.tools
            for name in ("tool_choice", "parallel_tool_calls"):
                if getattr(params, name) is not None:
                    body[name] = getattr(params, name)
        return body

    def check(self, params: GenerationParams) -> None:
        """Remote servers get every field; only content kinds this model is declared not to read are refused."""
        check_content_parts(self.config, params.messages)

    async def _open(self, params: GenerationParams) -> aiohttp.ClientResponse:
        return await self._post(self._url, self._body(params))

    async def _post(self, url: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
        refuse_if_private(self.config)  # a private request never leaves for a remote server (baimo/privacy.py)
        await self.start()
        assert self._session is not None
        attempt = 0
        while True:
            try:
                response = await self._session.post(url, json=body, headers=self._headers())
                break
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError,
                    aiohttp.ConnectionTimeoutError) as exc:
                # ClientOSError covers connect errors and a pooled keep-alive connection the server had closed
                # (reset before any answer): sending again is safe
                if attempt >= self.config.connect_retries:
                    raise UpstreamUnavailable(
                        f"{self.config.id}: cannot connect to {self.config.base_url} "
                        f"after {attempt + 1} attempts ({type(exc).__name__})") from exc
                attempt += 1
                await asyncio.sleep(RETRY_BACKOFF_S * attempt)
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise UpstreamTimeout(f"{self.config.id}: upstream did not answer within "
                                      f"{self.config.timeout:g}s") from exc
            except aiohttp.ClientError as exc:
                raise UpstreamError(f"{self.config.id}: upstream request failed ({type(exc).__name__})") from exc
        if response.status >= 400:
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                body = b""
            response.release()
            message = f"{self.config.id}: upstream answered {response.status}: {_upstream_message(body)}"
            if response.status in (429, 503, 529):  # 529: "overloaded" (Anthropic-style servers), like 503
                raise UpstreamUnavailable(message)
            if response.status in (400, 413, 422):
                raise InvalidRequest(message, code="upstream_rejected")
            raise UpstreamError(message)
        return response

    def _parse(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise UpstreamError(f"{self.config.id}: upstream sent a chunk that is not JSON") from exc
        if not isinstance(chunk, dict):
            raise UpstreamError(f"{self.config.id}: upstream sent an unexpected chunk")
        if chunk.get("error"):
            raise UpstreamError(f"{self.config.id}: upstream error: {_upstream_message(json.dumps(chunk).encode())}")
        return chunk

    def completions_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """A legacy text-completion request as it goes upstream: the client's fields, the model renamed, streamed."""
        out = {k: v for k, v in body.items() if v is not None}
        out.update({"model": self.config.upstream_model or self.config.id, "stream": True,
                    "stream_options": {"include_usage": True}})
        return out

    async def text_completions(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST /completions upstream (always streamed) and yield its `text_completion` chunks as parsed JSON."""
        response = await self._post(self._completions_url, self.completions_body(body))
        async for batch in self._batches(response):
            for chunk in batch:
                yield chunk

    async def _batches(self, response: aiohttp.ClientResponse) -> AsyncIterator[list[dict[str, Any]]]:
        """The upstream's SSE chunks, parsed, in batches of whatever arrived together (never waiting for more).

        After `[DONE]` the rest is read so the connection goes back to the pool. Raises UpstreamError when the
        stream ends with neither `[DONE]` nor a finish_reason, UpstreamTimeout when it stalls."""
        done = finished = False
        pending = b""
        try:
            async for data in response.content.iter_any():
                if done:
                    continue
                pending += data
                *lines, pending = pending.split(b"\n")
                batch: list[dict[str, Any]] = []
                for raw in lines:
                    if not raw.startswith(b"data:"):
                        continue
                    payload = raw[5:].strip().decode("utf-8", "replace")
                    if payload == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = self._parse(payload)
                    except UpstreamError:
                        if batch:  # the good chunks that arrived in the same read still reach the client
                            yield batch
                        raise
                    finished = finished or any(c.get("finish_reason") for c in chunk.get("choices") or [])
                    batch.append(chunk)
                if batch:
                    yield batch
            if not done and not finished:
                raise UpstreamError(f"{self.config.id}: upstream closed the stream before it finished")
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"{self.config.id}: upstream stalled for {self.config.timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{self.config.id}: upstream connection broke mid-stream") from exc
        finally:
            response.release()

    @property
    def _completions_url(self) -> str:
        return self._url.removesuffix("/chat/completions") + "/completions"

    async def stream(self, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        """Re-emit upstream deltas as they arrive; whatever arrived together becomes one event per choice."""
        response = await self._open(params)
        async for ev in self._events(response, params):
            yield ev

    async def _events(self, response: aiohttp.ClientResponse, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        produced = 0
        reasons: dict[int, str] = {}
        usage: dict[str, Any] | None = None
        fingerprint: str | None = None
        lp_sum, lp_n = 0.0, 0
        async for batch in self._batches(response):
            merged: dict[int, TextDelta] = {}
            calls: dict[int, list[dict[str, Any]]] = {}
            for chunk in batch:
                if chunk.get("usage"):
                    usage = add_usage(usage, chunk["usage"])
                fingerprint = chunk.get("system_fingerprint") or fingerprint
                for choice in chunk.get("choices") or []:
                    index = int(choice.get("index") or 0)
                    delta = choice.get("delta") or {}
                    if isinstance(delta.get("tool_calls"), list):
                        calls.setdefault(index, []).extend(delta["tool_calls"])
                    extra = {k: v for k, v in delta.items()
                             if k not in ("content", "role", "tool_calls") and v is not None}
                    tokens = finite_logprobs((choice.get("logprobs") or {}).get("content"))
                    text = delta.get("content") or ""
                    if text or extra or tokens:
                        ev = merged.setdefault(index, TextDelta("", index))
                        ev.text += text
                        if tokens:
                            ev.logprobs = (ev.logprobs or []) + tokens
                            lp_sum += sum(token["logprob"] for token in tokens)
                            lp_n += len(tokens)
                        if extra:
                            ev.extra = merge_delta_fields(ev.extra, extra)
                        produced += len(text)
                    if choice.get("finish_reason"):
                        reasons[index] = choice["finish_reason"]
            for ev in merged.values():
                yield ev
            for index, parts in calls.items():
                yield ToolCallDelta(parts, index)
        prompt_tokens = (usage or {}).get("prompt_tokens") or estimate_tokens(params.messages)
        completion_tokens = (usage or {}).get("completion_tokens")
        if completion_tokens is None:
            completion_tokens = (produced + 2) // 3
        yield Finish(reason=reasons.get(0) or next(iter(reasons.values()), "stop"), prompt_tokens=int(prompt_tokens),
                     completion_tokens=max(0, int(completion_tokens)),
                     logprob_sum=lp_sum if lp_n else None, logprob_tokens=lp_n, reasons=reasons, usage=usage,
                     system_fingerprint=fingerprint)


LOGPROB_FLOOR = -9999.0  # what OpenAI reports for tokens too unlikely to score


def _finite(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return LOGPROB_FLOOR
    return x if math.isfinite(x) and x > LOGPROB_FLOOR else LOGPROB_FLOOR


def finite_logprobs(tokens: Any) -> list[dict[str, Any]]:
    """OpenAI token-logprob objects with every number finite, so a strict JSON parser can read them: -inf, NaN and
    anything below -9999.0 (llama.cpp writes -3.4e38 for a zero probability) become -9999.0, as OpenAI reports
    tokens too unlikely to score."""
    if not isinstance(tokens, list):
        return []
    out = []
    for t in tokens:
        if not isinstance(t, dict):
            continue
        item = dict(t)
        item["logprob"] = _finite(t.get("logprob"))
        if isinstance(t.get("top_logprobs"), list):
            item["top_logprobs"] = [{**alt, "logprob": _finite(alt.get("logprob"))}
                                    for alt in t["top_logprobs"] if isinstance(alt, dict)]
        out.append(item)
    return out


def add_usage(total: dict[str, Any] | None, usage: dict[str, Any]) -> dict[str, Any]:
    """Fold a usage chunk into the total. Servers send one per stream; llama-server sends one per choice when
    n > 1 (each with the prompt and that choice's completion), so completions add up and the prompt does not."""
    if total is None:
        return dict(usage)
    out = dict(total)
    completion = int(total.get("completion_tokens") or 0) + int(usage.get("completion_tokens") or 0)
    out["completion_tokens"] = completion
    out["prompt_tokens"] = max(int(total.get("prompt_tokens") or 0), int(usage.get("prompt_tokens") or 0))
    out["total_tokens"] = out["prompt_tokens"] + completion
    return out


def merge_delta_fields(into: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Fold delta fields of several chunks into one: strings concatenate (reasoning_content), lists extend
    (annotations), anything else is replaced by the newer value."""
    out = dict(into or {})
    for k, v in new.items():
        old = out.get(k)
        if isinstance(old, str) and isinstance(v, str):
            out[k] = old + v
        elif isinstance(old, list) and isinstance(v, list):
            out[k] = old + v
        else:
            out[k] = v
    return out
