"""Admin routes for the web UI and tools: conversations (paged, searchable), chatting inside one, export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from baimo.api.deps import principal, state
from baimo.api.filenames import content_disposition
from baimo.api.schemas import ConversationCreate, ConversationMessage, ConversationPatch, Regenerate
from baimo.api.sse import DONE, ChunkMaker, SSEResponse, error_event, event
from baimo.api.state import AppState
from baimo.backends.base import GenerationParams, TextDelta
from baimo.chat import ChatContext, ChatRun
from baimo.errors import BaimoError
from baimo.export import conversation_markdown
from baimo.metering.principal import Principal

router = APIRouter(prefix="/api/conversations", tags=["conversations"], dependencies=[Depends(principal)])


@router.get("", summary="List conversations, newest first (cursor pagination, search by title or content)")
async def list_conversations(limit: int = Query(50, ge=1, le=200), cursor: str | None = None,
                             q: str | None = None, s: AppState = Depends(state),
                             who: Principal = Depends(principal)) -> dict[str, Any]:
    items, next_cursor = s.conversations.list(limit=limit, cursor=cursor, q=q, who=who)
    return {"data": items, "next_cursor": next_cursor}


@router.post("", status_code=201, summary="Create a conversation")
async def create_conversation(body: ConversationCreate | None = None, s: AppState = Depends(state),
                              who: Principal = Depends(principal)) -> Any:
    body = body or ConversationCreate()
    if body.model:
        s.check_callable(body.model, who)
    return s.conversations.create(title=body.title, model=body.model, who=who)


@router.get("/{conversation_id}", summary="A conversation with its messages")
async def get_conversation(conversation_id: str, s: AppState = Depends(state),
                           who: Principal = Depends(principal)) -> Any:
    return s.conversations.get(conversation_id, who=who)


@router.patch("/{conversation_id}", summary="Rename a conversation")
async def rename_conversation(conversation_id: str, body: ConversationPatch, s: AppState = Depends(state),
                              who: Principal = Depends(principal)) -> Any:
    return s.conversations.rename(conversation_id, body.title, who=who)


@router.delete("/{conversation_id}", status_code=204, summary="Delete a conversation and its messages")
async def delete_conversation(conversation_id: str, s: AppState = Depends(state),
                              who: Principal = Depends(principal)) -> Response:
    s.conversations.delete(conversation_id, who=who)
    return Response(status_code=204)


@router.get("/{conversation_id}/export", summary="Export a conversation as JSON or Markdown")
async def export_conversation(conversation_id: str, format: str = Query("json", pattern="^(json|markdown)$"),
                              s: AppState = Depends(state), who: Principal = Depends(principal)) -> Response:
    conv = s.conversations.get(conversation_id, who=who)
    name = f"conversation-{conversation_id}"
    if format == "markdown":
        return Response(conversation_markdown(conv), media_type="text/markdown; charset=utf-8",
                        headers={"content-disposition": content_disposition(f"{name}.md")})
    return JSONResponse(conv, headers={"content-disposition": content_disposition(f"{name}.json")})


async def _open(s: AppState, conversation_id: str, model: str, params: GenerationParams,
                who: Principal) -> ChatRun | BaimoError:
    """Route and admit the answer (budgets and rate limits) before the response starts, so its headers can carry
    the key's `x-ratelimit-*` like /v1/chat/completions; a refusal is returned, to be streamed as an error event."""
    ctx = ChatContext(endpoint="conversations", stream=True, api_key_id=who.key_id,
                      conversation_id=conversation_id, store_message=True)
    try:
        target, params, options = s.assistant.resolve(model, params, ctx, who=who)
        return await s.assistant.open(target, params, ctx, options)
    except BaimoError as exc:
        return exc


async def _answer(run: ChatRun | BaimoError, user_message: dict[str, Any] | None) -> AsyncIterator[bytes]:
    if user_message is not None:
        yield event({"object": "baimo.user_message", "message": user_message})
    try:
        if isinstance(run, BaimoError):
            raise run
        maker = ChunkMaker(run.model_id, run.ctx.response_id)
        async for ev in run.events():
            if isinstance(ev, TextDelta):
                yield event(maker.chunk({"content": ev.text}))
        yield event({"object": "baimo.message", "message": run.stored_message})
    except BaimoError as exc:
        yield error_event(exc)
    yield DONE


def _stream(run: ChatRun | BaimoError, user_message: dict[str, Any] | None) -> SSEResponse:
    """The SSE answer, with the request id and the key's rate-limit headers (or a refusal's, e.g. Retry-After)."""
    if isinstance(run, BaimoError):
        return SSEResponse(_answer(run, user_message), headers=dict(run.headers or {}))
    headers = {"x-request-id": run.ctx.response_id, **(run.ctx.ticket.headers if run.ctx.ticket is not None else {})}
    return SSEResponse(_answer(run, user_message), headers=headers, on_close=run.abandon)


def _params(s: AppState, conversation_id: str, who: Principal, temperature: float | None = None,
            max_tokens: int | None = None) -> GenerationParams:
    return GenerationParams(messages=s.conversations.history(conversation_id, who=who), temperature=temperature,
                            max_tokens=max_tokens)


@router.post("/{conversation_id}/messages", summary="Send a message; streams the answer as SSE")
async def send_message(conversation_id: str, body: ConversationMessage, s: AppState = Depends(state),
                       who: Principal = Depends(principal)) -> SSEResponse:
    model = body.model or s.conversations.get(conversation_id, who=who)["model"] or s.models.default_id or ""
    s.check_callable(model, who)  # validate before storing anything
    user_message = s.conversations.append(conversation_id, "user", body.content, who=who)
    params = _params(s, conversation_id, who, body.temperature, body.max_tokens)
    return _stream(await _open(s, conversation_id, model, params, who), user_message)


@router.post("/{conversation_id}/regenerate", summary="Answer the last user message again; streams SSE")
async def regenerate(conversation_id: str, body: Regenerate | None = None, s: AppState = Depends(state),
                     who: Principal = Depends(principal)) -> SSEResponse:
    conv = s.conversations.get(conversation_id, who=who)
    model = (body.model if body else None) or conv["model"] or s.models.default_id or ""
    s.check_callable(model, who)
    s.conversations.drop_last_assistant(conversation_id, who=who)
    params = _params(s, conversation_id, who, body.temperature if body else None, body.max_tokens if body else None)
    return _stream(await _open(s, conversation_id, model, params, who), None)


