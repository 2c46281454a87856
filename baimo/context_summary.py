"""Summaries of the oldest turns of a long conversation, written by the cheapest suitable model and cached.

The cache key is a hash chain over the summarised messages (h_i = SHA-256(h_{i-1} + message_i)), so the summary of
a conversation prefix is found again on the next turn, and a longer prefix is summarised incrementally: the cached
summary of its longest summarised prefix plus the turns after it, not the whole history again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from baimo.backends.base import Backend, Finish, GenerationParams, TextDelta, estimate_tokens, message_text
from baimo.backends.registry import ModelRegistry
from baimo.config import ContextConfig, ModelConfig
from baimo.errors import UpstreamError
from baimo.metering.usage import Usage, UsageLog, cost_usd

log = logging.getLogger(__name__)

SUMMARY_PREFIX = "Summary of earlier conversation: "
INSTRUCTIONS = ("You summarise conversations. Summarise the conversation below for the assistant who will continue "
                "it: the user's goals, the facts, names, numbers and decisions stated, and the questions still open. "
                "Write only the summary, in the conversation's language, in at most {words} words.")
ROLE_NAMES = {"user": "User", "assistant": "Assistant", "tool": "Tool result", "system": "System",
              "developer": "System"}

Messages = list[dict[str, Any]]


@dataclass
class Summary:
    """A summary of `turns` messages (the oldest of the conversation) written by `model`.

    `skipped` of those turns (the oldest) are not covered: no summariser's window could hold them. `cost` is in USD
    (0 when the summary came from the cache)."""

    text: str
    turns: int
    model: str
    cost: float = 0.0
    cached: bool = False
    skipped: int = 0


def chain_hashes(messages: Messages) -> list[str]:
    """Hex digests h_1..h_n of the hash chain over `messages` (h_i identifies the prefix messages[:i])."""
    out: list[str] = []
    h = hashlib.sha256(b"baimo-summary-v1").digest()
    for m in messages:
        h = hashlib.sha256(h + json.dumps(m, sort_keys=True, ensure_ascii=False, default=str).encode()).digest()
        out.append(h.hex())
    return out


def render(turns: Messages, previous: str | None = None) -> str:
    """The transcript a summariser reads: an earlier summary (if any), then one line per message."""
    lines = [f"(Summary of what came before: {previous})"] if previous else []
    for m in turns:
        text = message_text(m).strip()
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            text += f" [called {fn.get('name')}({fn.get('arguments', '')})]"
        lines.append(f"{ROLE_NAMES.get(m.get('role', ''), 'User')}: {text.strip()}")
    return "\n".join(lines)


class SummaryCache:
    """Least-recently-used summaries by prefix hash: (summary text, model id)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def get(self, key: str) -> tuple[str, str] | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: str, text: str, model: str) -> None:
        if self.size <= 0:
            return
        self._items[key] = (text, model)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class Summarizer:
    """Chooses the summarising model, asks it for a summary, caches the result and meters its cost."""

    def __init__(self, registry: ModelRegistry, config: ContextConfig, usage: UsageLog | None = None) -> None:
        self.registry = registry
        self.config = config
        self.usage = usage
        self.cache = SummaryCache(config.cache_size)
        self._inflight: dict[str, asyncio.Future[Summary]] = {}  # prefix hash -> the summary being written

    def candidates(self, serving: ModelConfig) -> list[Backend]:
        """Models allowed to read this conversation: all, or only on-premises ones when the answering model is."""
        if self.config.summarizer != "auto":
            chosen = self.registry.get(self.config.summarizer)
            if serving.is_on_premises and not chosen.config.is_on_premises:
                raise UpstreamError(f"summarizer {chosen.config.id} is not on premises and {serving.id} is")
            return [chosen]
        return [b for b in self.registry if b.config.is_on_premises or not serving.is_on_premises]

    def choose(self, serving: ModelConfig, prompt_tokens: int, reply_tokens: int) -> Backend:
        """`auto`: the cheapest candidate whose window holds the request, local (then loaded, then stronger) first
        among equal prices; when none holds it, the one with the largest window."""
        backends = self.candidates(serving)
        if not backends:
            raise UpstreamError(f"no model may summarise for {serving.id}")

        def key(b: Backend) -> tuple[float, bool, bool, float]:
            c = b.config
            return (cost_usd(c, prompt_tokens, reply_tokens), not c.is_on_premises, not b.ready, -(c.strength or 0))

        fitting = [b for b in backends if b.config.context_window >= prompt_tokens + reply_tokens]
        if fitting:
            return min(fitting, key=key)
        return max(backends, key=lambda b: b.config.context_window)

    async def summarize(self, turns: Messages, serving: ModelConfig, max_tokens: int) -> Summary:
        """A summary of `turns` in at most `max_tokens` tokens, from the cache when this prefix was seen; concurrent
        requests for the same prefix share one summary request.

        Raises BaimoError (UpstreamError, ContextLengthExceeded, ...) when the summariser fails or says nothing."""
        hashes = chain_hashes(turns)
        pending = self._inflight.get(hashes[-1])
        if pending is not None:
            shared = await asyncio.shield(pending)
            return Summary(shared.text, shared.turns, shared.model, cached=True, skipped=shared.skipped)
        future: asyncio.Future[Summary] = asyncio.get_running_loop().create_future()
        self._inflight[hashes[-1]] = future
        try:
            summary = await self._summarize(turns, hashes, serving, max_tokens)
        except BaseException as exc:  # the waiters get the failure (a cancelled writer is a failure to them)
            shared_exc = exc if isinstance(exc, Exception) else UpstreamError("the summary request was cancelled")
            future.set_exception(shared_exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._inflight[hashes[-1]]
        future.set_result(summary)
        return summary

    async def _summarize(self, turns: Messages, hashes: list[str], serving: ModelConfig, max_tokens: int) -> Summary:
        start, previous = 0, None
        for k in range(len(turns), 0, -1):
            hit = self.cache.get(hashes[k - 1])
            if hit is not None:
                if k == len(turns):
                    return Summary(hit[0], len(turns), hit[1], cached=True)
                start, previous = k, hit[0]
                break
        instructions = INSTRUCTIONS.format(words=max(10, int(max_tokens * 0.6)))

        def request(first: int, prev: str | None) -> Messages:
            return [{"role": "system", "content": instructions},
                    {"role": "user", "content": render(turns[first:], prev)}]

        messages = request(start, previous)
        backend = self.choose(serving, estimate_tokens(messages), max_tokens)
        window = backend.config.context_window - max_tokens
        skipped = 0
        if estimate_tokens(messages) > window:  # no window holds it all: summarise the newest turns that fit
            previous = None
            skipped = start
            while skipped < len(turns) - 1 and estimate_tokens(request(skipped, None)) > window:
                skipped += 1
            messages = request(skipped, None)
        text, finish = await self._generate(backend, messages, max_tokens)
        cost = cost_usd(backend.config, finish.prompt_tokens, finish.completion_tokens)
        if not text:
            raise UpstreamError(f"{backend.config.id} returned an empty summary")
        self.cache.put(hashes[-1], text, backend.config.id)
        self._meter(serving, backend.config, len(turns) - skipped, finish, cost)
        return Summary(text, len(turns), backend.config.id, cost=cost, skipped=skipped)

    async def _generate(self, backend: Backend, messages: Messages, max_tokens: int) -> tuple[str, Finish]:
        await backend.start()
        params = GenerationParams(messages=messages, max_tokens=max_tokens, temperature=0)
        parts: list[str] = []
        finish: Finish | None = None
        async for ev in backend.stream(params):
            if isinstance(ev, TextDelta) and ev.index == 0:
                parts.append(ev.text)
            elif isinstance(ev, Finish):
                finish = ev
        if finish is None:
            raise UpstreamError(f"{backend.config.id} ended the summary without finishing")
        return " ".join("".join(parts).split()), finish

    def _meter(self, serving: ModelConfig, model: ModelConfig, turns: int, finish: Finish, cost: float) -> None:
        if self.usage is None:
            return
        usage = Usage(endpoint="context.summary", model_requested=serving.id, model=model.id,
                      route=f"summary of {turns} turns for {serving.id}", prompt_tokens=finish.prompt_tokens,
                      completion_tokens=finish.completion_tokens, cost=cost, finish_reason=finish.reason)
        self.usage.submit(usage).add_done_callback(_log_failure)  # committed before the answer's own record


def _log_failure(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("could not record a summary's usage: %s", exc)


__all__ = ["SUMMARY_PREFIX", "Summarizer", "Summary", "SummaryCache", "chain_hashes", "render"]
