"""A knowledge answer streamed sentence by sentence, each sentence checked (`citations.AnswerCheck`) before it is sent.

The client still sees the answer grow while it is generated, one checked sentence at a time instead of one
token at a time; tool calls, other delta fields (reasoning) and the finish pass through unchanged. A sentence
ends at `.`/`!`/`?` followed by a space, at `。！？`, or at a line break, once the next character is seen and is
not a citation marker (so `42 Nm. [1]` stays one sentence).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from baimo.backends.base import Finish, StreamEvent, TextDelta
from baimo.knowledge.citations import AnswerCheck

_MARK = r"[\[【［][^\]】］\n]{0,24}[\]】］]"
BOUNDARY = re.compile(rf"(?:[.!?…](?:\s*{_MARK})*\s+|[。！？](?:\s*{_MARK})*\s*|\n(?:\s*{_MARK})*\s*)(?=[^\s\[【［])")


def split_sentences(text: str) -> tuple[list[str], str]:
    """Complete sentences (each with its trailing space) and the unfinished rest of `text`."""
    pieces, start = [], 0
    for m in BOUNDARY.finditer(text):
        pieces.append(text[start:m.end()])
        start = m.end()
    return pieces, text[start:]


@dataclass
class _Choice:
    buffer: str = ""
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0  # sentences with content sent so far


async def _fixed(check: AnswerCheck, piece: str) -> str:
    """The checked sentence with the piece's trailing whitespace kept ('' when it was dropped)."""
    body = piece.rstrip()
    if not body:
        return piece
    fixed = await asyncio.to_thread(check.fix, body)
    return fixed + piece[len(body):] if fixed.strip() else ""


async def checked_answer(first: StreamEvent, rest: AsyncIterator[StreamEvent], check: AnswerCheck,
                         fallback: str) -> AsyncIterator[StreamEvent]:
    """The answer's events with every text sentence passed through `check.fix`; a choice whose sentences were
    all dropped as instruction echoes gets `fallback` (grounded mode's decline) instead."""
    choices: dict[int, _Choice] = {}

    def emit(c: _Choice, index: int, text: str) -> TextDelta:
        delta = TextDelta(text, index, logprobs=c.logprobs or None)
        c.logprobs = []
        if text.strip():
            c.sent += 1
        return delta

    try:
        event: StreamEvent | None = first
        while event is not None:
            if isinstance(event, TextDelta):
                c = choices.setdefault(event.index, _Choice())
                if event.extra:
                    yield TextDelta("", event.index, extra=event.extra)
                c.logprobs.extend(event.logprobs or [])
                pieces, c.buffer = split_sentences(c.buffer + event.text)
                for piece in pieces:
                    text = await _fixed(check, piece)
                    if text:
                        yield emit(c, event.index, text)
            elif isinstance(event, Finish):
                for index, c in sorted(choices.items()):
                    text = await _fixed(check, c.buffer) if c.buffer else ""
                    c.buffer = ""
                    if not c.sent and not text.strip() and check.echoes:
                        text = fallback
                    if text or c.logprobs:
                        yield emit(c, index, text)
                yield event
            else:
                yield event
            event = await anext(rest, None)
    finally:
        await rest.aclose()
