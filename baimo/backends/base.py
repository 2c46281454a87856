"""The Backend protocol every model kind implements, and the request/stream types passed through it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from baimo.config import ModelConfig


@dataclass
class GenerationParams:
    """What a chat completion asks of a model, already validated and fitted to its window.

    `messages` are as the client sent them (a `content` may be a string, a list of content parts or null).
    `max_tokens` is the reply cap the client set (None: none), sent upstream under the name the client
    used (`max_tokens_param`). `extra` holds every other request field the client sent (OpenAI's newer
    ones and vendor extensions alike); OpenAI-compatible backends forward them unchanged."""

    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    max_tokens_param: str = "max_tokens"
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool = False  # ask the backend for the sampled tokens' log-probabilities (cascade confidence)
    json_mode: bool = False  # constrain the answer to a JSON object
    tools: list[dict[str, Any]] | None = None  # OpenAI function tools, passed to models that can call them
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TextDelta:
    """A piece of generated text, as soon as the model produced it.

    `index` is the choice it belongs to (requests with `n` > 1); `logprobs` are OpenAI token-logprob objects
    for the tokens of this piece (`choices[].logprobs.content`); `extra` holds other delta fields the model
    sent (`reasoning_content`, `refusal`, `annotations`, ...), passed to the client unchanged."""

    text: str
    index: int = 0
    logprobs: list[dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None


@dataclass
class Finish:
    """The end of a generation: why it stopped and the token counts."""

    reason: str
    prompt_tokens: int
    completion_tokens: int
    logprob_sum: float | None = None  # sum of the sampled tokens' log-probabilities, when asked for
    logprob_tokens: int = 0           # how many tokens that sum covers
    reasons: dict[int, str] = field(default_factory=dict)  # finish_reason per choice index (n > 1)
    usage: dict[str, Any] | None = None  # the upstream's usage object as sent (cached/reasoning token details)
    system_fingerprint: str | None = None

    def reason_for(self, index: int) -> str:
        return self.reasons.get(index, self.reason)


@dataclass
class ToolCallDelta:
    """Pieces of tool calls as the model produced them, in OpenAI's `delta.tool_calls` shape."""

    calls: list[dict[str, Any]]
    index: int = 0


StreamEvent = TextDelta | ToolCallDelta | Finish


def message_text(message: dict[str, Any]) -> str:
    """The text of a message: its string content, or its text parts joined in order (other parts skipped)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")


def with_text_appended(message: dict[str, Any], text: str, sep: str = "\n\n") -> dict[str, Any]:
    """A copy of the message with `text` added at the end of its content (a new text part for a parts list)."""
    out = dict(message)
    content = out.get("content")
    if isinstance(content, list):
        out["content"] = [*content, {"type": "text", "text": sep + text}]
    else:
        out["content"] = (content or "").rstrip() + sep + text if content else text
    return out


def uses_tools(params: GenerationParams) -> bool:
    """True when the request offers tools or its history holds tool calls or tool results."""
    return bool(params.tools) or any(m.get("tool_calls") or m["role"] == "tool" for m in params.messages)


class Backend(Protocol):
    """A callable model. Implementations register a factory in `baimo.backends.registry.BACKEND_KINDS`."""

    config: ModelConfig

    async def start(self) -> None:
        """Load weights or open connections; called lazily before first use or at server start."""

    async def close(self) -> None:
        """Free resources."""

    @property
    def ready(self) -> bool:
        """True once the model can answer without a cold start."""

    def count_tokens(self, messages: list[dict[str, Any]]) -> int:
        """Prompt tokens these messages take with this model's template (exact or a safe over-estimate)."""

    def check(self, params: GenerationParams) -> None:
        """Raise InvalidRequest (400, naming the field) for a request this backend cannot honour; routing and
        fallbacks skip such backends."""

    def stream(self, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        """Generate; yields TextDelta events then exactly one Finish. Closing the iterator stops generation."""


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """A conservative token estimate for models whose tokenizer we do not have (about 3 UTF-8 bytes a token)."""
    total = 3
    for m in messages:
        content = message_text(m)
        if isinstance(m.get("content"), list):  # images and other parts: a flat guess
            content += "x" * 255 * sum(1 for p in m["content"] if isinstance(p, dict) and p.get("type") != "text")
        if m.get("tool_calls"):
            content += json.dumps(m["tool_calls"])
        total += 4 + (len(content.encode("utf-8")) + 2) // 3
    return total
