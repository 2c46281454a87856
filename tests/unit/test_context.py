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


# ---- summarising instead of dropping ------------------------------------------------------------------------------

def registry(tmp_path, models: list[dict], **context: object):  # type: ignore[no-untyped-def]
    from baimo.backends.registry import ModelRegistry
    from baimo.config import BaimoConfig, Settings

    config = BaimoConfig.model_validate({"models": models, "context": context})
    return ModelRegistry(config, Settings(home=tmp_path))


def remote_model(id_: str, window: int, price: float, **extra: object) -> dict:
    return {"id": id_, "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "context_window": window,
            "price_input": price, "price_output": price, "connect_retries": 0, "connect_timeout": 0.5, **extra}


def long_chat(pairs: int) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": "Be brief."}]
    for i in range(pairs):
        msgs += [turn("user", 40, f"q{i}"), turn("assistant", 40, f"a{i}")]
    return msgs + [turn("user", 5, "last")]


def test_header_says_what_happened_to_the_oldest_turns() -> None:
    from baimo.context import Fitted

    assert Fitted([], 0, 10, 5).header() is None
    assert Fitted([], 4, 10, 5).header() == "trimmed; dropped=4"
    assert Fitted([], 4, 10, 5, note="summary failed: boom").header() == "trimmed (summary failed: boom); dropped=4"
    assert Fitted([], 0, 10, 5, summarized=6, summarizer="local/m").header() == "summarized 6 turns with local/m"
    assert Fitted([], 2, 10, 5, summarized=6, summarizer="m", summary_cached=True).header() == \
        "summarized 6 turns with m (cached); dropped=2"


def test_hash_chain_identifies_every_prefix_and_the_cache_evicts_the_least_recent() -> None:
    from baimo.context_summary import SummaryCache, chain_hashes

    msgs = long_chat(3)
    full, head = chain_hashes(msgs), chain_hashes(msgs[:4])
    assert full[:4] == head and len(set(full)) == len(full)
    assert chain_hashes([{**msgs[0], "content": "Be long."}])[0] != full[0]
    cache = SummaryCache(2)
    cache.put("a", "A", "m")
    cache.put("b", "B", "m")
    assert cache.get("a") == ("A", "m")  # now the most recent
    cache.put("c", "C", "m")
    assert cache.get("b") is None and cache.get("a") == ("A", "m") and cache.get("c") == ("C", "m")


def test_transcript_names_roles_and_tool_calls() -> None:
    from baimo.context_summary import render

    text = render([{"role": "user", "content": [{"type": "text", "text": "weather?"}]},
                   {"role": "assistant", "content": None,
                    "tool_calls": [{"function": {"name": "forecast", "arguments": '{"city": "Oslo"}'}}]},
                   {"role": "tool", "content": "rain"}], previous="Earlier: hello.")
    assert text.splitlines() == ["(Summary of what came before: Earlier: hello.)", "User: weather?",
                                 'Assistant: [called forecast({"city": "Oslo"})]', "Tool result: rain"]


def test_auto_picks_the_cheapest_model_that_fits_local_first_and_keeps_private_chats_local(tmp_path) -> None:
    reg = registry(tmp_path, [remote_model("r/big", 100_000, 5.0), remote_model("r/cheap", 100_000, 0.1),
                              remote_model("r/tiny", 500, 0.0),
                              {"id": "l/local", "kind": "llamacpp", "path": "/nonexistent.gguf",
                               "context_window": 4096}])
    summarizer = reg_summarizer(reg)
    serving = reg.get("r/big").config
    assert summarizer.choose(serving, 3000, 200).config.id == "l/local"  # free and local beats free remote
    assert summarizer.choose(serving, 8000, 200).config.id == "r/cheap"  # the local window is too small
    local = reg.get("l/local").config
    assert local.is_on_premises and {b.config.id for b in summarizer.candidates(local)} == {"l/local"}
    assert summarizer.choose(local, 8000, 200).config.id == "l/local"  # too small, but nothing else may read it


def reg_summarizer(reg):  # type: ignore[no-untyped-def]
    from baimo.context_summary import Summarizer

    return Summarizer(reg, reg.config.context)


def test_drop_mode_and_a_failing_summariser_both_drop_and_say_why(tmp_path) -> None:
    import asyncio

    from baimo.context import ContextFitter

    msgs = long_chat(8)
    dropping = registry(tmp_path, [remote_model("r/m", 400, 1.0)], overflow="drop")
    fitted = asyncio.run(ContextFitter(dropping).fit(dropping.get("r/m"), msgs, 20))
    assert fitted.dropped > 0 and fitted.header() == f"trimmed; dropped={fitted.dropped}"
    failing = registry(tmp_path, [remote_model("r/m", 400, 1.0)])  # summarize (default); nothing listens on :9

    async def fit():  # type: ignore[no-untyped-def]
        try:
            return await ContextFitter(failing).fit(failing.get("r/m"), msgs, 20)
        finally:
            await failing.close()

    fitted = asyncio.run(fit())
    assert fitted.dropped > 0 and fitted.summarized == 0 and fitted.messages[-1] == msgs[-1]
    assert fitted.note and fitted.note.startswith("summary failed") and "dropped=" in (fitted.header() or "")


def test_a_summarizer_must_be_a_configured_model() -> None:
    from pydantic import ValidationError

    from baimo.config import BaimoConfig

    with pytest.raises(ValidationError, match="context.summarizer 'nope' is not a configured model"):
        BaimoConfig.model_validate({"models": [remote_model("r/m", 400, 1.0)], "context": {"summarizer": "nope"}})


def test_concurrent_requests_for_one_prefix_share_one_summary(tmp_path) -> None:
    import asyncio

    from tests.support.upstream import Behaviour, ScriptedUpstream

    with ScriptedUpstream({"sum": Behaviour.ok("They talked about q0.", token_delay=0.05)}) as up:
        reg = registry(tmp_path, [remote_model("r/s", 8000, 0.1, base_url=up.base_url, upstream_model="sum")])
        summarizer = reg_summarizer(reg)
        turns = long_chat(3)[1:]

        async def both():  # type: ignore[no-untyped-def]
            try:
                return await asyncio.gather(*(summarizer.summarize(turns, reg.get("r/s").config, 64)
                                              for _ in range(3)))
            finally:
                await reg.close()

        summaries = asyncio.run(both())
        assert len(up.requests_for("/chat/completions")) == 1
    assert {s.text for s in summaries} == {"They talked about q0."}
    assert sorted(s.cached for s in summaries) == [False, True, True]


def test_a_summary_longer_than_its_room_is_cut_not_dropped(tmp_path) -> None:
    import asyncio

    from baimo.context import ContextFitter
    from tests.support.upstream import Behaviour, ScriptedUpstream

    long_summary = "The user asked many things about rivers and boats. " * 60  # far more than the room
    with ScriptedUpstream({"sum": Behaviour.ok(long_summary)}) as up:
        reg = registry(tmp_path, [remote_model("r/m", 600, 1.0), remote_model("r/s", 8000, 0.1,
                                                                               base_url=up.base_url,
                                                                               upstream_model="sum")])

        async def fit():  # type: ignore[no-untyped-def]
            try:
                return await ContextFitter(reg).fit(reg.get("r/m"), long_chat(8), 20)
            finally:
                await reg.close()

        fitted = asyncio.run(fit())
    assert fitted.summarized > 0 and fitted.summarizer == "r/s" and fitted.prompt_tokens + 20 <= 600
    summary = fitted.messages[1]["content"]
    assert summary.startswith("Summary of earlier conversation: The user asked") and summary.endswith(" …")
