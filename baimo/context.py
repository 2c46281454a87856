"""Fit a conversation into a model's context window: keep the system prompt and the newest turns; the oldest turns
that no longer fit are summarised into one system message (`context.overflow: summarize`, the default) or dropped.

A single message that cannot fit even alone (with the system prompt) is the caller's error. When a summary cannot
be had (no summariser, an upstream failure, no room), the oldest turns are dropped and `Fitted.note` says why.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from baimo.errors import BaimoError, ContextLengthExceeded

if TYPE_CHECKING:
    from baimo.backends.base import Backend, GenerationParams, StreamEvent
    from baimo.backends.registry import ModelRegistry
    from baimo.context_summary import Summarizer
    from baimo.metering.usage import UsageLog

log = logging.getLogger(__name__)

Messages = list[dict[str, Any]]
MIN_REPLY_TOKENS = 16
DEFAULT_REPLY_RESERVE = 512


SUMMARY_OVERHEAD = 16  # tokens of the summary message besides its text (role, prefix)


@dataclass
class Fitted:
    """The messages sent to the model, and what fitting them did to the conversation.

    `dropped` oldest turns were left out; `summarized` oldest turns were replaced by one system message written
    by `summarizer` (`summary_cost` USD, 0 when cached); `note` says why a summary was not used."""

    messages: Messages
    dropped: int
    prompt_tokens: int
    max_tokens: int  # room left for the reply
    summarized: int = 0
    summarizer: str | None = None
    summary_cached: bool = False
    summary_cost: float = 0.0
    note: str | None = None

    def header(self) -> str | None:
        """The `x-baimo-context` value: what happened to the conversation's oldest turns (None: nothing)."""
        if self.summarized:
            text = f"summarized {self.summarized} turns with {self.summarizer}"
            text += " (cached)" if self.summary_cached else ""
            return text + (f"; dropped={self.dropped}" if self.dropped else "")
        if self.dropped:
            return f"trimmed{f' ({self.note})' if self.note else ''}; dropped={self.dropped}"
        return None


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


class ContextFitter:
    """Fits requests to a model's window the way baimo.yaml's `context:` section says (summarise or drop)."""

    def __init__(self, registry: ModelRegistry, usage: UsageLog | None = None) -> None:
        from baimo.context_summary import Summarizer

        self.config = registry.config.context
        self.summarizer: Summarizer = Summarizer(registry, self.config, usage)

    async def fit(self, backend: Backend, messages: Messages, max_tokens: int | None) -> Fitted:
        """`messages` fitted to `backend`'s window with `max_tokens` (None: some room) left for the reply."""
        from baimo.context_summary import SUMMARY_PREFIX

        window = backend.config.context_window
        plain = fit_to_window(messages, backend.count_tokens, window, max_tokens)
        if not plain.dropped or self.config.overflow == "drop":
            return plain
        room = min(self.config.summary_tokens, window // 4)
        try:
            spaced = fit_to_window(messages, backend.count_tokens, window - room - SUMMARY_OVERHEAD, max_tokens)
        except ContextLengthExceeded:
            return replace(plain, note="no room for a summary")
        system = [m for m in messages[:1] if m["role"] in ("system", "developer")]
        turns = messages[len(system):]
        try:
            summary = await self.summarizer.summarize(turns[:spaced.dropped], backend.config, room)
        except BaimoError as exc:
            log.warning("summarising %d turns for %s failed: %s", spaced.dropped, backend.config.id, exc.message)
            return replace(plain, note=f"summary failed: {exc.message}")
        # The summariser's tokens are not this model's count (a conservative estimate for most): a summary that
        # comes out longer than its room is cut at a word boundary, never left to push out the newest turns.
        text, reserve = summary.text, max_tokens or MIN_REPLY_TOKENS
        while True:
            final = system + [{"role": "system", "content": SUMMARY_PREFIX + text}] + turns[spaced.dropped:]
            total = backend.count_tokens(final)
            if total + reserve <= window:
                break
            text = text[:int(len(text) * 0.85)].rsplit(" ", 1)[0].rstrip(" ,;:") + " …"
            if len(text) < 40:
                return replace(plain, note="the summary did not fit")
        return Fitted(final, summary.skipped, total, window - total if max_tokens is None else max_tokens,
                      summarized=spaced.dropped - summary.skipped, summarizer=summary.model,
                      summary_cached=summary.cached, summary_cost=summary.cost)


async def start_fitted(backend: Backend, params: GenerationParams, fitter: ContextFitter | None = None,
                       ) -> tuple[Fitted, AsyncIterator[StreamEvent]]:
    """Load the backend, fit the request to its window (its reply cap when the request sets none), start it.

    Without a `fitter` the oldest turns that do not fit are dropped."""
    await backend.start()
    cap = params.max_tokens or backend.config.max_output_tokens
    if fitter is None:
        fitted = fit_to_window(params.messages, backend.count_tokens, backend.config.context_window, cap)
    else:
        fitted = await fitter.fit(backend, params.messages, cap)
    # The reply cap goes out only when the client (or the operator's `max_output_tokens`) set one: Baimo never
    # adds a limit of its own, which hosted providers reject when it exceeds their output limit.
    events = aiter(backend.stream(replace(params, messages=fitted.messages, max_tokens=cap)))
    return fitted, events
