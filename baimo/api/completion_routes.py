"""POST /v1/completions: OpenAI's legacy text completions, for base models and evaluation harnesses.

A request goes to one model (routers and personas answer chat completions only), with the model's
fallbacks tried before the first token, and is metered like a chat completion.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from baimo.api.deps import principal, state
from baimo.api.schemas import CompletionRequest
from baimo.api.sse import DONE, SSEResponse, error_event, event
from baimo.api.state import AppState
from baimo.errors import BaimoError, InvalidRequest, ModelNotFound, UpstreamError
from baimo.metering.admission import FREE, Ticket
from baimo.metering.principal import Principal
from baimo.metering.usage import Usage, cost_usd, token_details
from baimo.observability.request_id import claim_response_id
from baimo.privacy import mark_private

router = APIRouter(prefix="/v1", tags=["openai"])


class CompletionRun:
    """One text completion in flight: the serving backend, its chunks, and the totals for metering."""

    def __init__(self, s: AppState, requested: str, backend: Any, first: dict[str, Any],
                 chunks: AsyncIterator[dict[str, Any]], started: float, key_id: str | None, stream: bool) -> None:
        self.s, self.requested, self.backend = s, requested, backend
        self.first, self._chunks, self.started = first, chunks, started
        self.key_id, self.stream = key_id, stream
        self.id = claim_response_id("cmpl-")  # also the request's id
        self.created = int(time.time())
        self.usage: dict[str, Any] | None = None
        self.ttft_ms: float | None = None
        self.error: BaimoError | None = None
        self.ticket: Ticket = FREE  # budgets and rate limits (baimo/metering/admission.py)

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The upstream's chunks with Baimo's id and model name; usage is kept aside for metering."""
        status = 200
        try:
            chunk: dict[str, Any] | None = self.first
            while chunk is not None:
                if self.ttft_ms is None and any(c.get("text") for c in chunk.get("choices") or []):
                    self.ttft_ms = (time.perf_counter() - self.started) * 1000
                if chunk.get("usage"):
                    from baimo.backends.openai_compat import add_usage

                    self.usage = add_usage(self.usage, chunk["usage"])
                chunk = {**chunk, "id": self.id, "created": self.created, "model": self.backend.config.id}
                yield chunk
                chunk = await anext(self._chunks, None)
        except BaimoError as exc:
            self.error, status = exc, exc.status_code
            exc.usage_recorded = True  # type: ignore[attr-defined]  # by the finally below
            raise
        except BaseException:
            status = 499
            raise
        finally:
            await self._chunks.aclose()
            u = self.usage or {}
            self.ticket.settle_soon(cost_usd(self.backend.config, int(u.get("prompt_tokens") or 0),
                                             int(u.get("completion_tokens") or 0), token_details(u)[0]))
            if status == 499:  # the client went away (the task is being cancelled): queue, do not wait
                self.s.usage.submit(self._usage(status))
            else:  # the response's end is sent only once its record is committed
                await self.s.usage.write(self._usage(status))

    def _usage(self, status: int) -> Usage:
        u = self.usage or {}
        prompt, completion = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
        cached, reasoning = token_details(u)
        return Usage(
            endpoint="completions", model_requested=self.requested, model=self.backend.config.id,
            route=f"direct -> {self.backend.config.id}", api_key_id=self.key_id, stream=self.stream,
            prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached, reasoning_tokens=reasoning,
            cost=cost_usd(self.backend.config, prompt, completion, cached),
            latency_ms=(time.perf_counter() - self.started) * 1000, ttft_ms=self.ttft_ms, status_code=status,
            error=self.error.message if self.error else None, response_id=self.id)


async def open_completion(s: AppState, body: CompletionRequest, key_id: str | None) -> CompletionRun:
    """Start the completion on the model or, before the first chunk, on its fallbacks."""
    if body.model not in s.models.ids():
        s.check_callable(body.model)  # 404 for an unknown id
        raise InvalidRequest(f"{body.model} is a router or persona; legacy completions go to one model (use chat "
                             "completions to route)", param="model")
    sent = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    sent.pop("stream_options", None)
    started = time.perf_counter()
    primary = s.models.get(body.model)
    order = [body.model, *primary.config.fallbacks]
    privacy = s.chat.privacy
    if privacy is not None and privacy.active:  # the same rule as chat: personal data stays on premises
        prompts = body.prompt if isinstance(body.prompt, list) else [body.prompt]
        text = "\n".join(p for p in prompts if isinstance(p, str))
        private = await asyncio.to_thread(privacy.inspect, [{"role": "user", "content": text}], api_key_id=key_id)
        mark_private(private)
        privacy.check_direct(body.model, private)  # 403 for a confidential caller naming a remote model
        order = privacy.fallbacks(order, [body.model], private)
    prompts = body.prompt if isinstance(body.prompt, list) else [body.prompt]
    ticket = await s.assistant.admission.admit(
        key_id=key_id, target=body.model, messages=[{"role": "user", "content": " ".join(map(str, prompts))}],
        max_tokens=body.max_tokens, n=body.n or 1) if s.assistant.admission else FREE
    last: BaimoError | None = None
    tried: list[str] = []
    for model_id in order:
        backend = s.models.get(model_id)
        if not hasattr(backend, "text_completions"):
            continue
        try:
            chunks = aiter(backend.text_completions(sent))
            first = await anext(chunks)
        except UpstreamError as exc:
            last = last or exc
            tried.append(f"{model_id} failed ({exc.status_code})")
            continue
        except StopAsyncIteration:
            last = last or UpstreamError(f"{model_id} returned nothing")
            tried.append(f"{model_id} failed (empty stream)")
            continue
        run = CompletionRun(s, body.model, backend, first, chunks, started, key_id, bool(body.stream))
        run.ticket = ticket
        return run
    await asyncio.to_thread(ticket.release)
    if last is not None:  # every model failed before its first chunk: recorded before the error is sent
        await s.usage.write(Usage(endpoint="completions", model_requested=body.model, route="; ".join(tried),
                                  api_key_id=key_id, stream=bool(body.stream), status_code=last.status_code,
                                  latency_ms=(time.perf_counter() - started) * 1000, error=last.message))
        last.usage_recorded = True  # type: ignore[attr-defined]
    raise last or InvalidRequest(f"{body.model} does not serve text completions", param="model")


def _collect(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join streamed text_completion chunks into whole choices (text, logprobs and finish_reason per index)."""
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for c in chunk.get("choices") or []:
            i = int(c.get("index") or 0)
            acc = choices.setdefault(i, {"text": "", "index": i, "logprobs": None, "finish_reason": None})
            acc["text"] += c.get("text") or ""
            lp = c.get("logprobs")
            if isinstance(lp, dict):
                if acc["logprobs"] is None:
                    acc["logprobs"] = {k: list(v) if isinstance(v, list) else v for k, v in lp.items()}
                else:
                    for k, v in lp.items():
                        if isinstance(v, list):
                            acc["logprobs"].setdefault(k, []).extend(v)
            acc["finish_reason"] = c.get("finish_reason") or acc["finish_reason"]
    return [choices[i] for i in sorted(choices)]


@router.post("/completions", summary="Create a text completion (OpenAI's legacy completions API)")
async def completions(body: CompletionRequest, s: AppState = Depends(state),
                      who: Principal = Depends(principal)) -> Any:
    if not who.may_call(body.model):  # a model outside the key's scope answers like a missing one
        raise ModelNotFound(f"The model '{body.model}' does not exist", param="model")
    run = await open_completion(s, body, who.key_id)
    if body.stream:
        options = (body.model_extra or {}).get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

        async def sse() -> AsyncIterator[bytes]:
            # OpenAI's shape whatever the upstream's: with include_usage, every chunk carries `usage: null` and
            # one last chunk with empty choices carries the whole usage (llama-server puts it on the chunk with
            # the finish_reason instead, once per choice).
            try:
                last: dict[str, Any] | None = None
                async for chunk in run.chunks():
                    last = chunk
                    if chunk.get("choices"):
                        out = {k: v for k, v in chunk.items() if k != "usage"}
                        yield event({**out, "usage": None} if include_usage else out)
                if include_usage and last is not None and run.usage:
                    final = {k: v for k, v in last.items() if k not in ("usage", "timings")}
                    yield event({**final, "choices": [], "usage": run.usage})
            except BaimoError as exc:
                yield error_event(exc)
            yield DONE

        return SSEResponse(sse(), headers={"x-request-id": run.id, **run.ticket.headers,
                                           "x-baimo-route": f"direct -> {run.backend.config.id}"})
    collected = [chunk async for chunk in run.chunks()]
    u = run.usage or {}
    usage = {"prompt_tokens": int(u.get("prompt_tokens") or 0), "completion_tokens": int(u.get("completion_tokens")
                                                                                         or 0)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return JSONResponse({"id": run.id, "object": "text_completion", "created": run.created,
                         "model": run.backend.config.id, "system_fingerprint": None, "choices": _collect(collected),
                         "usage": usage}, headers={"x-request-id": run.id, **run.ticket.headers})
