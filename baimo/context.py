"""Fit a conversation into a model's context window: keep the system prompt and the newest turns, drop the oldest.

A single message that cannot fit even alone (with the system prompt) is the caller's error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from baimo.errors import ContextLengthExceeded

if TYPE_CHECKING:
    from baimo.backends.base import Backend, GenerationParams, StreamEvent

Messages = list[dict[str, Any]]
MIN_REPLY_TOKENS = 16
DEFAULT_REPLY_RESERVE = 512


@dataclass
class Fitted:
    messages: Messages
    dropped: int
    prompt_tokens: int
    max_tokens: int  # room left for the reply


def fit_to_window(messages: Messages, count_tokens: Callable[[Messages], int], window: int,
                  max_tokens: int | None = None) -> Fitted:
    """Trim `messages` to fit `window` tokens with room for the reply."""
    system = [m for m in messages[:1] if m["role"] in ("system", "developer")]
    turns = messages[len(system):]
    essential = count_tokens(system + turns[-1:])
    if essential > window - MIN_REPLY_TOKENS:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {window} tokens, but the last message "
            f"(with the system prompt) takes {essential} tokens. Shorten the message.", param="messages")
    total = count_tokens(messages)
    if max_tokens is not None and max_tokens > window - essential:
        raise ContextLengthExceeded(
            f"max_tokens={max_tokens} does not fit: this model's maximum context length is {window} tokens "
            f"and the prompt needs at least {essential}.", param="max_tokens")
    reserve = max_tokens if max_tokens is not None else min(DEFAULT_REPLY_RESERVE, window - essential)
    budget = window - reserve
    if total <= budget:
        return Fitted(messages, 0, total, window - total if max_tokens is None else max_tokens)
    # Drop from the oldest end; estimate per message, then confirm with a real count of the result.
    sizes = [count_tokens([m]) for m in turns]
    overhead = total - sum(sizes)
    keep_from, running = len(turns) - 1, count_tokens(system) + sizes[-1] + max(0, overhead)
    while keep_from > 0 and running + sizes[keep_from - 1] <= budget:
        keep_from -= 1
        running += sizes[keep_from]
    while True:
        kept = turns[keep_from:]
        while len(kept) > 1 and kept[0]["role"] == "assistant":  # a reply without its question confuses models
            keep_from += 1
            kept = turns[keep_from:]
        candidate = system + kept
        total = count_tokens(candidate)
        if total <= budget or keep_from >= len(turns) - 1:
            break
        keep_from += 1
    room = window - total if max_tokens is None else max_tokens
    return Fitted(candidate, len(turns) - len(kept), total, room)


async def start_fitted(backend: Backend, params: GenerationParams) -> tuple[Fitted, AsyncIterator[StreamEvent]]:
    """Load the backend, fit the request to its window (its reply cap when the request sets none), start it."""
    await backend.start()
    cap = params.max_tokens or backend.config.max_output_tokens
    fitted = fit_to_window(params.messages, backend.count_tokens, backend.config.context_window, cap)
    # The reply cap goes out only when the client (or the operator's `max_output_tokens`) set one: Baimo never
    # adds a limit of its own, which hosted providers reject when it exceeds their output limit.
    events = aiter(backend.stream(replace(params, messages=fitted.messages, max_tokens=cap)))
    return fitted, events
