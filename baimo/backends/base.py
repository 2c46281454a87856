"""The Backend protocol every model kind implements, and the request/stream types passed through it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from baimo.config import ModelConfig


@dataclass
class GenerationParams:
    """What a chat completion asks of a model, already validated and fitted to its window."""

    messages: list[dict[str, str]]
    max_tokens: int | None = None
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


@dataclass
class TextDelta:
    """A piece of generated text, as soon as the model produced it."""

    text: str


@dataclass
class Finish:
    """The end of a generation: why it stopped and the token counts."""

    reason: str
    prompt_tokens: int
    completion_tokens: int
    logprob_sum: float | None = None  # sum of the sampled tokens' log-probabilities, when asked for
    logprob_tokens: int = 0           # how many tokens that sum covers


@dataclass
class ToolCallDelta:
    """Pieces of tool calls as the model produced them, in OpenAI's `delta.tool_calls` shape."""

    calls: list[dict[str, Any]]


StreamEvent = TextDelta | ToolCallDelta | Finish


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

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        """Prompt tokens these messages take with this model's template (exact or a safe over-estimate)."""

    def stream(self, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        """Generate; yields TextDelta events then exactly one Finish. Closing the iterator stops generation."""


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A conservative token estimate for models whose tokenizer we do not have (about 3 UTF-8 bytes a token)."""
    total = 3
    for m in messages:
        content = m.get("content") or ""
        if m.get("tool_calls"):
            content += json.dumps(m["tool_calls"])
        total += 4 + (len(content.encode("utf-8")) + 2) // 3
    return total
