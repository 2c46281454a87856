"""Rich answers of the scripted upstream: every field a modern OpenAI-compatible server may send.

`rich_chat_stream` / `rich_chat_payload` answer a chat completion with, per choice (`n` of them, interleaved
by `index` as real servers do): `reasoning_content` deltas, content tokens with `logprobs` (and
`top_logprobs` alternatives, some of them -inf or -3.4e38 as llama.cpp and vLLM write them), an `annotations`
list, and a final usage object with `prompt_tokens_details.cached_tokens` and
`completion_tokens_details.reasoning_tokens`. A last user message containing "refuse" gets a `refusal`
instead of content; a request offering tools gets `tool_calls` (after the reasoning).

`text_completion_stream` / `text_completion_payload` answer the legacy `/v1/completions`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.support.upstream_streams import AbruptClose, sse
from tests.support.upstream_text import last_user_text

REASONING = ["Thinking", " about", " the sky."]
REFUSAL = ["I can't", " help with that."]
CACHED_TOKENS = 4  # of the prompt tokens, reported in prompt_tokens_details
URL = "https://example.com/sky"
TOKEN_LOGPROB = -0.25
LOW_LOGPROBS = [-1.5, float("-inf"), -3.4e38, -2.0, -2.5]  # the alternatives' log-probabilities, in order


def rich_text(index: int) -> str:
    """The content of choice `index`: a different sentence per choice, so clients can tell them apart."""
    return "The sky is blue." if index == 0 else f"Choice {index} says the sky is blue."


def _words(text: str) -> list[str]:
    out: list[str] = []
    for i, w in enumerate(text.split(" ")):
        out.append(w if i == 0 else " " + w)
    return out



def _prompt_tokens(body: Mapping[str, Any]) -> int:
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    words = sum(len(json.dumps(m.get("content")).split()) for m in messages if isinstance(m, Mapping))
    return 3 + 4 * len(messages) + words + CACHED_TOKENS


def token_logprob(token: str, top: int) -> dict[str, Any]:
    """An OpenAI token-logprob object; its alternatives include -inf and -3.4e38 (only finite values may reach
    an OpenAI client)."""
    alternatives = [{"token": token, "logprob": TOKEN_LOGPROB, "bytes": list(token.encode())}]
    for i, lp in enumerate(LOW_LOGPROBS):
        alternatives.append({"token": f"alt{i}", "logprob": lp, "bytes": list(f"alt{i}".encode())})
    return {"token": token, "logprob": TOKEN_LOGPROB, "bytes": list(token.encode()),
            "top_logprobs": alternatives[:top]}


@dataclass
class RichChoice:
    index: int
    kind: str  # "content", "refusal" or "tool_calls"
    tokens: list[str] = field(default_factory=list)
    finish: str = "stop"


def plan(body: Mapping[str, Any]) -> list[RichChoice]:
    n = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 0) > 0 else 1
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    choices = []
    for i in range(n):
        if body.get("tools"):
            choices.append(RichChoice(i, "tool_calls", finish="tool_calls"))
        elif "refuse" in last_user_text(body.get("messages") or []):
            choices.append(RichChoice(i, "refusal", list(REFUSAL)))
        else:
            tokens = _words(rich_text(i))
            finish = "stop"
            if isinstance(limit, int) and 0 <= limit < len(tokens):
                tokens, finish = tokens[:limit], "length"
            choices.append(RichChoice(i, "content", tokens, finish))
    return choices


def tool_call_parts(body: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    """The streamed pieces of one call to the first tool offered: id and name, then the arguments in two halves."""
    name = body["tools"][0]["function"]["name"]
    arguments = json.dumps({"q": last_user_text(body.get("messages") or []), "choice": index})
    half = len(arguments) // 2
    return [{"index": 0, "id": f"call_{index}", "type": "function",
             "function": {"name": name, "arguments": arguments[:half]}},
            {"index": 0, "function": {"arguments": arguments[half:]}}]


def annotation(text: str) -> dict[str, Any]:
    return {"type": "url_citation",
            "url_citation": {"url": URL, "title": "Why the sky is blue", "start_index": 0, "end_index": len(text)}}


def rich_usage(body: Mapping[str, Any], choices: list[RichChoice]) -> dict[str, Any]:
    reasoning = len(REASONING) * len(choices)
    completion = reasoning + sum(len(c.tokens) + (2 if c.kind == "tool_calls" else 0) for c in choices)
    prompt = _prompt_tokens(body)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


async def rich_chat_stream(model: str, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
    """The SSE stream (what Baimo always asks for): the choices' deltas interleaved by `index`."""
    cid, created = "chatcmpl-rich" + uuid.uuid4().hex[:12], int(time.time())
    want_lp, top = bool(body.get("logprobs")), int(body.get("top_logprobs") or 0)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    choices = plan(body)

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None,
              logprobs: dict[str, Any] | None = None) -> bytes:
        c: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                             "system_fingerprint": "fp_scripted",
                             "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                          "finish_reason": finish}]}
        if include_usage:
            c["usage"] = None
        return sse(c)

    for c in choices:
        yield chunk(c.index, {"role": "assistant", "content": "", "refusal": None})
    for piece in REASONING:  # vLLM style: the reasoning in its own field, content null
        for c in choices:
            yield chunk(c.index, {"content": None, "reasoning_content": piece})
    for t in range(max((len(c.tokens) for c in choices), default=0)):
        for c in choices:
            if t >= len(c.tokens):
                continue
            tok = c.tokens[t]
            if c.kind == "refusal":
                yield chunk(c.index, {"refusal": tok})
            else:
                lp = {"content": [token_logprob(tok, top)], "refusal": None} if want_lp else None
                yield chunk(c.index, {"content": tok}, logprobs=lp)
        await asyncio.sleep(0)
    for c in choices:
        if c.kind == "tool_calls":
            for part in tool_call_parts(body, c.index):
                yield chunk(c.index, {"tool_calls": [part]})
        elif c.kind == "content":
            yield chunk(c.index, {"annotations": [annotation("".join(c.tokens))]})
    for c in choices:
        yield chunk(c.index, {}, c.finish)
    if include_usage:
        final = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "system_fingerprint": "fp_scripted", "choices": [], "usage": rich_usage(body, choices)}
        yield sse(final)
    yield b"data: [DONE]\n\n"


def rich_chat_payload(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The same answer as one chat.completion (for clients that do not stream)."""
    want_lp, top = bool(body.get("logprobs")), int(body.get("top_logprobs") or 0)
    choices = plan(body)
    out = []
    for c in choices:
        text = "".join(c.tokens)
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None,
                                   "reasoning_content": "".join(REASONING)}
        if c.kind == "content":
            message.update(content=text, annotations=[annotation(text)])
        elif c.kind == "refusal":
            message["refusal"] = text
        else:
            first, rest = tool_call_parts(body, c.index)
            message["tool_calls"] = [{"id": first["id"], "type": "function", "function": {
                "name": first["function"]["name"],
                "arguments": first["function"]["arguments"] + rest["function"]["arguments"]}}]
        lp = {"content": [token_logprob(t, top) for t in c.tokens], "refusal": None} \
            if want_lp and c.kind == "content" else None
        out.append({"index": c.index, "message": message, "logprobs": lp, "finish_reason": c.finish})
    return {"id": "chatcmpl-rich" + uuid.uuid4().hex[:12], "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_scripted", "choices": out, "usage": rich_usage(body, choices)}


# --------------------------------------------------------------------------------------------------
# Legacy text completions (/v1/completions)
# --------------------------------------------------------------------------------------------------


def _prompts(body: Mapping[str, Any]) -> list[str]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    return [prompt if isinstance(prompt, str) else json.dumps(prompt)]


def _completion_plan(b: Any, body: Mapping[str, Any]) -> tuple[list[list[str]], str, dict[str, int]]:
    """Each choice's tokens (prompts × n), the finish reason and the usage."""
    n = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 0) > 0 else 1
    tokens = [f"tok{i} " for i in range(b.tokens)] if b.tokens is not None else _words(b.text)
    limit = body.get("max_tokens")
    finish = "stop"
    if isinstance(limit, int) and 0 <= limit < len(tokens):
        tokens, finish = tokens[:limit], "length"
    prompts = _prompts(body)
    choices = [list(tokens) for _ in prompts for _ in range(n)]
    prompt_tokens = sum(len(p.split()) for p in prompts)
    completion = sum(len(c) for c in choices)
    return choices, finish, {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                             "total_tokens": prompt_tokens + completion}


def _legacy_logprobs(tokens: list[str], top: int, offset: int) -> dict[str, Any]:
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t)
    return {"tokens": tokens, "token_logprobs": [TOKEN_LOGPROB] * len(tokens),
            "top_logprobs": [{t: TOKEN_LOGPROB, **{f"alt{i}": -1.5 - i for i in range(top - 1)}} for t in tokens],
            "text_offset": offsets}


async def text_completion_stream(b: Any, model: str, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
    """`text_completion` chunks, one token of one choice each; a `midstream_error` behaviour drops the
    connection after `chunks_before_error` tokens."""
    cid, created = "cmpl-scripted" + uuid.uuid4().hex[:12], int(time.time())
    choices, finish, usage = _completion_plan(b, body)
    top = body.get("logprobs")
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(index: int, text: str, finish_reason: str | None, logprobs: Any = None) -> bytes:
        return sse({"id": cid, "object": "text_completion", "created": created, "model": model,
                    "system_fingerprint": None,
                    "choices": [{"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}]})

    sent = 0
    offsets = [0] * len(choices)
    for t in range(max((len(c) for c in choices), default=0)):
        for i, c in enumerate(choices):
            if t >= len(c):
                continue
            if b.kind == "midstream_error" and sent >= b.chunks_before_error:
                raise AbruptClose()
            lp = _legacy_logprobs([c[t]], int(top), offsets[i]) if isinstance(top, int) else None
            offsets[i] += len(c[t])
            sent += 1
            yield chunk(i, c[t], None, lp)
    if b.kind == "midstream_error":
        raise AbruptClose()
    for i in range(len(choices)):
        yield chunk(i, "", finish)
    if include_usage:
        yield sse({"id": cid, "object": "text_completion", "created": created, "model": model, "choices": [],
                   "usage": usage})
    yield b"data: [DONE]\n\n"


def text_completion_payload(b: Any, model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    choices, finish, usage = _completion_plan(b, body)
    top = body.get("logprobs")
    return {"id": "cmpl-scripted" + uuid.uuid4().hex[:12], "object": "text_completion", "created": int(time.time()),
            "model": model, "system_fingerprint": None,
            "choices": [{"text": "".join(c), "index": i, "finish_reason": finish,
                         "logprobs": _legacy_logprobs(c, int(top), 0) if isinstance(top, int) else None}
                        for i, c in enumerate(choices)],
            "usage": usage}
