"""Fitting conversations into a context window."""

from __future__ import annotations

import pytest

from baimo.context import fit_to_window
from baimo.errors import ContextLengthExceeded


def count(messages: list[dict[str, str]]) -> int:
    """One token per word plus four per message: simple and exact for the test."""
    return sum(4 + len(m["content"].split()) for m in messages)


def turn(role: str, words: int, tag: str = "") -> dict[str, str]:
    return {"role": role, "content": " ".join([tag or role] * words)}


def test_short_conversation_is_untouched() -> None:
    msgs = [turn("system", 5), turn("user", 10)]
    fitted = fit_to_window(msgs, count, window=100)
    assert fitted.messages == msgs and fitted.dropped == 0 and fitted.prompt_tokens == 23
    assert fitted.max_tokens == 100 - 23


def test_keeps_system_and_newest_turns() -> None:
    msgs = [turn("system", 5, "sys")] + [turn("user" if i % 2 == 0 else "assistant", 20, f"t{i}") for i in range(10)]
    fitted = fit_to_window(msgs, count, window=120, max_tokens=30)
    assert fitted.messages[0]["content"].startswith("sys")
    assert fitted.messages[-1] == msgs[-1]
    assert fitted.prompt_tokens <= 120 - 30 and fitted.dropped > 0
    assert fitted.messages[1]["role"] == "user"  # never starts with an orphaned assistant reply
    kept = [m["content"].split()[0] for m in fitted.messages[1:]]
    assert kept == [f"t{i}" for i in range(10 - len(kept), 10)]


def test_single_message_larger_than_window_is_an_error() -> None:
    with pytest.raises(ContextLengthExceeded) as e:
        fit_to_window([turn("system", 5), turn("user", 500)], count, window=100)
    assert e.value.param == "messages" and e.value.status_code == 400


def test_max_tokens_that_cannot_fit_is_an_error() -> None:
    with pytest.raises(ContextLengthExceeded) as e:
        fit_to_window([turn("user", 50)], count, window=100, max_tokens=80)
    assert e.value.param == "max_tokens"


def test_default_reply_room_shrinks_for_small_windows() -> None:
    msgs = [turn("user", 30) for _ in range(3)]
    fitted = fit_to_window(msgs, count, window=60)
    assert fitted.messages == msgs[-1:] and fitted.max_tokens == 60 - 34
