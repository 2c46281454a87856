"""OpenAI-compatible routes under /v1: chat completions (streaming and not), models, embeddings."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from baimo.api.deps import principal, state
from baimo.api.disconnect import unless_client_leaves
from baimo.api.schemas import ChatCompletionRequest, EmbeddingRequest
from baimo.api.sse import DONE, ChunkMaker, SSEResponse, error_event, event
from baimo.api.state import AppState
from baimo.backends.base import Finish, TextDelta, ToolCallDelta, message_text
from baimo.chat import ChatContext, ChatRun, ChoiceState
from baimo.errors import BaimoError, InvalidRequest, ModelNotFound
from baimo.metering.principal import Principal

router = APIRouter(prefix="/v1", tags=["openai"])


def header_safe(value: str) -> str:
    """HTTP header values are Latin-1: keep what fits, escape the rest (model ids may be any Unicode)."""
    return value.encode("latin-1", "backslashreplace").decode("latin-1")


def route_headers(run: ChatRun, *, final: bool) -> dict[str, str]:
    headers = {"x-baimo-route": header_safe(run.route), "x-request-id": run.ctx.response_id,
               "x-baimo-cost": f"{run.total_cost if final else run.prompt_cost + run.extra_cost:.8f}"}
    if not final:
        headers["x-baimo-cost-scope"] = "prompt"
    context = run.fitted.header()
    if context:
        headers["x-baimo-context"] = header_safe(context)
    if run.ctx.ticket is not None:  # x-ratelimit-* of a rate-limited key (baimo/metering/ratelimit.py)
        headers.update(run.ctx.ticket.headers)
    return headers


def usage_dict(run: ChatRun) -> dict[str, Any]:
    """OpenAI's usage object: the upstream's own (with its token details) when it sent one, else Baimo's count."""
    f = run.finish
    prompt = f.prompt_tokens if f else run.fitted.prompt_tokens
    completion = f.completion_tokens if f else len(run.text_parts)
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}
    if f and f.usage:
        usage.update({k: v for k, v in f.usage.items() if k.endswith("_details") and isinstance(v, dict)})
    return usage


def baimo_meta(run: ChatRun) -> dict[str, Any]:
    return {"route": run.route, "cost": run.total_cost, "latency_ms": round(run.latency_ms, 1),
            "ttft_ms": round(run.ttft_ms, 1) if run.ttft_ms is not None else None,
            "context_dropped": run.fitted.dropped, "context_summarized": run.fitted.summarized}


FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "function_call")


def finish_reason(f: Finish | None, index: int = 0) -> str:
    reason = f.reason_for(index) if f else "stop"
    return reason if reason in FINISH_REASONS else "stop"


def assistant_message(choice: ChoiceState) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.text, "refusal": None}
    if choice.extra:
        message.update(choice.extra)
    if choice.tool_call_parts:
        message["tool_calls"] = choice.tool_calls
        message["content"] = choice.text or None
    return message


def choice_logprobs(choice: ChoiceState) -> dict[str, Any] | None:
    return {"content": choice.logprobs, "refusal": None} if choice.logprobs is not None else None


async def stream_chunks(run: ChatRun, include_usage: bool) -> AsyncIterator[bytes]:
    maker = ChunkMaker(run.model_id, run.ctx.response_id)
    started: set[int] = set()

    def opening(index: int) -> list[bytes]:
        if index in started:
            return []
        started.add(index)
        return [event(maker.chunk({"role": "assistant", "content": ""}, index=index))]

    for chunk in opening(0):
        yield chunk
    try:
        async for ev in run.events():
            if isinstance(ev, TextDelta):
                for chunk in opening(ev.index):
                    yield chunk
                delta: dict[str, Any] = {"content": ev.text} if ev.text or not ev.extra else {}
                if ev.extra:
                    delta.update(ev.extra)
                logprobs = {"content": ev.logprobs, "refusal": None} if ev.logprobs else None
                yield event(maker.chunk(delta, index=ev.index, logprobs=logprobs))
            elif isinstance(ev, ToolCallDelta):
                for chunk in opening(ev.index):
                    yield chunk
                yield event(maker.chunk({"tool_calls": ev.calls}, index=ev.index))
        citations = run.citations()
        if citations is not None:
            # A chunk-shaped event with an empty delta: plain OpenAI clients see nothing; Baimo's UI reads it.
            yield event(maker.chunk({}, citations=citations), name="citations")
        for index in sorted(started | set(run.choices)):
            yield event(maker.chunk({}, finish_reason(run.finish, index), index=index))
        if include_usage:
            yield event(maker.usage_chunk(usage_dict(run), baimo=baimo_meta(run)))
    except BaimoError as exc:
        yield error_event(exc)
    yield DONE


@router.post("/chat/completions", summary="Create a chat completion (OpenAI-compatible)")
async def chat_completions(body: ChatCompletionRequest, request: Request, s: AppState = Depends(state),
                           who: Principal = Depends(principal)) -> Any:
    params = body.generation_params()
    metadata = body.metadata or {}
    conversation_id = metadata.get("conversation_id")
    s.check_callable(body.model, who)  # 404 before anything is stored
    if conversation_id:
        s.conversations.get(conversation_id, who=who)
    ctx = ChatContext(stream=bool(body.stream), api_key_id=who.key_id, conversation_id=conversation_id,
                      store_message=bool(conversation_id), persona=metadata.get("persona"))
    kn = body.knowledge
    options = s.assistant.knowledge_options(kn.bases, k=kn.k, grounded=kn.grounded, min_relevance=kn.min_relevance,
                                            mode=kn.mode, who=who) if kn else None
    target, params, options = s.assistant.resolve(body.model, params, ctx, options, who)
    if conversation_id and params.messages[-1]["role"] == "user":
        s.conversations.append(conversation_id, "user", message_text(params.messages[-1]))
    run = await unless_client_leaves(request, s.assistant.open(target, params, ctx, options))
    if body.stream:
        # stream_options only means something for streams; on a non-streaming request it is ignored (as
        # vLLM and llama.cpp do), and it is never forwarded: Baimo asks upstreams for usage itself.
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return SSEResponse(stream_chunks(run, include_usage), headers=route_headers(run, final=False),
                           on_close=run.abandon)
    await unless_client_leaves(request, run.collect())
    response = {
        "id": run.ctx.response_id, "object": "chat.completion", "created": int(time.time()), "model": run.model_id,
        "system_fingerprint": run.finish.system_fingerprint if run.finish else None,
        "choices": [{"index": i, "message": assistant_message(c), "logprobs": choice_logprobs(c),
                     "finish_reason": finish_reason(run.finish, i)} for i, c in sorted(run.choices.items())],
        "usage": usage_dict(run), "baimo": baimo_meta(run),
    }
    citations = run.citations()
    if citations is not None:
        response["citations"] = citations
    return JSONResponse(response, headers=route_headers(run, final=True))


@router.get("/models", summary="List every callable model id")
async def list_models(s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict[str, Any]:
    """Models, routers, the caller's personas and embedders: only the ids the caller's key may call."""
    default = s.models.default_id
    data = []
    for backend in s.models:
        c = backend.config
        data.append({"id": c.id, "object": "model", "created": 0, "owned_by": "baimo",
                     "baimo": {"kind": c.kind, "context_window": c.context_window, "price_input": c.price_input,
                               "price_output": c.price_output, "description": c.description,
                               "fallbacks": c.fallbacks, "default": c.id == default, "ready": backend.ready}})
    for r in s.routers.configs():
        data.append({"id": r.id, "object": "model", "created": 0, "owned_by": "baimo",
                     "baimo": {"kind": "router", "strategy": r.strategy, "description": r.description,
                               "candidates": s.routers.candidates(r.id), "default": r.id == default}})
    for p in s.personas.list(who=who):
        data.append({"id": p.id, "object": "model", "created": 0, "owned_by": "baimo",
                     "baimo": {"kind": "persona", "description": p.description, "model": p.model or default,
                               "knowledge": p.knowledge or [], "grounded": p.grounded, "default": False}})
    for eid in s.embedders.ids():
        data.append({"id": eid, "object": "model", "created": 0, "owned_by": "baimo",
                     "baimo": {"kind": "embedding", "default": False}})
    return {"object": "list", "data": [m for m in data if who.may_call(m["id"])]}


@router.get("/models/{model_id:path}", summary="Describe one model")
async def get_model(model_id: str, s: AppState = Depends(state), who: Principal = Depends(principal)) -> Any:
    listing = await list_models(s, who)
    for m in listing["data"]:
        if m["id"] == model_id:
            return m
    raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")


@router.post("/embeddings", summary="Create embeddings (multilingual, batched)")
async def embeddings(body: EmbeddingRequest, response: Response, s: AppState = Depends(state),
                     who: Principal = Depends(principal)) -> dict[str, Any]:
    if not who.may_call(body.model):  # an embedder outside the key's scope answers like a missing one
        raise ModelNotFound(f"The embedding model '{body.model}' does not exist", param="model")
    key_id = who.key_id
    texts = body.texts()
    embedder = s.embedders.get(body.model)
    if body.dimensions is not None and body.dimensions != embedder.dim:
        raise InvalidRequest(f"{body.model} produces {embedder.dim} dimensions; it cannot give {body.dimensions}",
                             param="dimensions")
    if s.assistant.admission is not None:  # RPM/TPM (embedders are free: a budget only refuses once it is spent)
        ticket = await s.assistant.admission.admit(key_id=key_id, target=body.model, max_tokens=None,
                                                   messages=[{"role": "user", "content": t} for t in texts])
        response.headers.update(ticket.headers)
        if ticket.holds:  # a budget: embedders are free, so nothing to charge
            await asyncio.to_thread(ticket.release)
    started = time.perf_counter()
    vectors = await s.embedders.embed(body.model, texts)
    tokens = sum(max(1, len(t.encode("utf-8")) // 4) for t in texts)
    data = []
    for i, v in enumerate(vectors):
        emb: Any = base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" \
            else v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    from baimo.metering.usage import Usage

    await s.usage.write(Usage(endpoint="embeddings", model_requested=body.model, model=body.model,
                              route=f"direct -> {body.model}", api_key_id=key_id, prompt_tokens=tokens,
                              latency_ms=(time.perf_counter() - started) * 1000))
    return {"object": "list", "data": data, "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
