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
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from baimo.backends.base import Finish, GenerationParams, StreamEvent, TextDelta, ToolCallDelta, estimate_tokens
from baimo.config import ModelConfig, Settings
from baimo.errors import InvalidRequest, UpstreamError, UpstreamTimeout, UpstreamUnavailable

RETRY_BACKOFF_S = 0.2


def _upstream_message(body: bytes) -> str:
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
            connector = aiohttp.TCPConnector(limit=1000, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector, raise_for_status=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def _url(self) -> str:
        return (self.config.base_url or "").rstrip("/") + "/chat/completions"

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return estimate_tokens(messages)

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream"}
        if self.config.api_key_env:
            key = os.environ.get(self.config.api_key_env)
            if key:
                headers["authorization"] = f"Bearer {key}"
        return headers

    def _body(self, params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.upstream_model or self.config.id,
            "messages": params.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        optional = {"max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p,
                    "seed": params.seed, "presence_penalty": params.presence_penalty,
                    "frequency_penalty": params.frequency_penalty, "stop": params.stop or None}
        body.update({k: v for k, v in optional.items() if v is not None})
        if params.logprobs:
            body["logprobs"] = True
        if params.json_mode:
            body["response_format"] = {"type": "json_object"}
        if params.tools:
            body["tools"] = params.tools
            for name in ("tool_choice", "parallel_tool_calls"):
                if getattr(params, name) is not None:
                    body[name] = getattr(params, name)
        return body

    async def _open(self, params: GenerationParams) -> aiohttp.ClientResponse:
        await self.start()
        assert self._session is not None
        attempt = 0
        while True:
            try:
                response = await self._session.post(self._url, json=self._body(params), headers=self._headers())
                break
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError,
                    aiohttp.ConnectionTimeoutError) as exc:
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
            if response.status in (429, 503):
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

    async def stream(self, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        """Re-emit upstream text as it arrives; whatever arrived together becomes one event (never a wait)."""
        response = await self._open(params)
        produced: list[str] = []
        reason: str | None = None
        usage: dict[str, Any] | None = None
        done = False
        pending = b""
        lp_sum, lp_n = 0.0, 0
        try:
            async for data in response.content.iter_any():
                if done:
                    continue  # read to the end so the connection goes back to the pool
                pending += data
                *lines, pending = pending.split(b"\n")
                texts: list[str] = []
                calls: list[dict[str, Any]] = []
                for raw in lines:
                    if not raw.startswith(b"data:"):
                        continue
                    payload = raw[5:].strip().decode("utf-8", "replace")
                    if payload == "[DONE]":
                        done = True
                        break
                    chunk = self._parse(payload)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        text = delta.get("content")
                        if text:
                            texts.append(text)
                        if isinstance(delta.get("tool_calls"), list):
                            calls.extend(delta["tool_calls"])
                        if choice.get("finish_reason"):
                            reason = choice["finish_reason"]
                        for token in ((choice.get("logprobs") or {}).get("content") or []):
                            if isinstance(token.get("logprob"), int | float):
                                lp_sum += token["logprob"]
                                lp_n += 1
                if texts:
                    text = "".join(texts)
                    produced.append(text)
                    yield TextDelta(text)
                if calls:
                    yield ToolCallDelta(calls)
            if not done and reason is None:
                raise UpstreamError(f"{self.config.id}: upstream closed the stream before it finished")
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"{self.config.id}: upstream stalled for {self.config.timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{self.config.id}: upstream connection broke mid-stream") from exc
        finally:
            response.release()
        prompt_tokens = (usage or {}).get("prompt_tokens") or estimate_tokens(params.messages)
        completion_tokens = (usage or {}).get("completion_tokens")
        if completion_tokens is None:
            completion_tokens = estimate_tokens([{"content": "".join(produced)}]) - 7
        yield Finish(reason=reason or "stop", prompt_tokens=int(prompt_tokens),
                     completion_tokens=max(0, int(completion_tokens)),
                     logprob_sum=lp_sum if lp_n else None, logprob_tokens=lp_n)
