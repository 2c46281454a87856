"""Any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, hosted APIs) as a Baimo backend.

Always streams from the upstream and re-emits each chunk as soon as it arrives, so a streaming
client sees tokens at the upstream's pace; a non-streaming client gets them collected. Connect
errors are retried; timeouts, HTTP errors and unreadable answers become specific exceptions that
the chat service turns into fallbacks or OpenAI-shaped errors.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx

from baimo.backends.base import Finish, GenerationParams, StreamEvent, TextDelta, estimate_tokens
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
        self._client: httpx.AsyncClient | None = None

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> None:
        if self._client is None:
            timeout = httpx.Timeout(self.config.timeout, connect=self.config.connect_timeout)
            limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
            self._client = httpx.AsyncClient(base_url=self.config.base_url or "", timeout=timeout,
                                             limits=limits)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

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
        return body

    async def _open(self, params: GenerationParams) -> httpx.Response:
        await self.start()
        assert self._client is not None
        request = self._client.build_request("POST", "chat/completions", json=self._body(params),
                                             headers=self._headers())
        attempt = 0
        while True:
            try:
                response = await self._client.send(request, stream=True)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                if attempt >= self.config.connect_retries:
                    raise UpstreamUnavailable(
                        f"{self.config.id}: cannot connect to {self.config.base_url} "
                        f"after {attempt + 1} attempts ({type(exc).__name__})") from exc
                attempt += 1
                await asyncio.sleep(RETRY_BACKOFF_S * attempt)
            except httpx.TimeoutException as exc:
                raise UpstreamTimeout(f"{self.config.id}: upstream did not answer within "
                                      f"{self.config.timeout:g}s") from exc
        if response.status_code >= 400:
            body = await response.aread()
            await response.aclose()
            message = f"{self.config.id}: upstream answered {response.status_code}: {_upstream_message(body)}"
            if response.status_code in (429, 503):
                raise UpstreamUnavailable(message)
            if response.status_code in (400, 413, 422):
                raise InvalidRequest(message, code="upstream_rejected")
            raise UpstreamError(message)
        return response

    async def stream(self, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        response = await self._open(params)
        produced: list[str] = []
        reason: str | None = None
        usage: dict[str, Any] | None = None
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except ValueError as exc:
                    raise UpstreamError(f"{self.config.id}: upstream sent a chunk that is not JSON") from exc
                if not isinstance(chunk, dict):
                    raise UpstreamError(f"{self.config.id}: upstream sent an unexpected chunk")
                if chunk.get("error"):
                    raise UpstreamError(f"{self.config.id}: upstream error: "
                                        f"{_upstream_message(json.dumps(chunk).encode())}")
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        produced.append(text)
                        yield TextDelta(text)
                    if choice.get("finish_reason"):
                        reason = choice["finish_reason"]
            else:
                if reason is None:
                    raise UpstreamError(f"{self.config.id}: upstream closed the stream before it finished")
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{self.config.id}: upstream stalled for {self.config.timeout:g}s") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise UpstreamError(f"{self.config.id}: upstream connection broke mid-stream") from exc
        finally:
            await response.aclose()
        prompt_tokens = (usage or {}).get("prompt_tokens") or estimate_tokens(params.messages)
        completion_tokens = (usage or {}).get("completion_tokens")
        if completion_tokens is None:
            completion_tokens = estimate_tokens([{"content": "".join(produced)}]) - 7
        yield Finish(reason=reason or "stop", prompt_tokens=int(prompt_tokens),
                     completion_tokens=max(0, int(completion_tokens)))
