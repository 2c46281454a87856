"""Long conversations through a real `baimo serve`: the oldest turns that no longer fit are summarised by the cheapest
suitable model (the scripted upstream plays it), cached per conversation prefix, and the header says so; when the
summariser fails the turns are dropped and the header says that. One test uses the real local SmolLM2."""

from __future__ import annotations

import httpx
import pytest

from tests.support.remote import remote
from tests.support.server import SMOLLM_YAML, BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
SUMMARY = "The user is planning a river trip and asked about boats."
SYSTEM = {"role": "system", "content": "You are terse."}


def conversation(pairs: int, tag: str = "Question") -> list[dict[str, str]]:
    turns = []
    for i in range(pairs):
        turns += [{"role": "user", "content": f"{tag} {i}: " + "tell me about rivers and boats " * 8},
                  {"role": "assistant", "content": f"Answer {i}: " + "rivers flow to the sea " * 8}]
    return [SYSTEM, *turns, {"role": "user", "content": "And the last one?"}]


@pytest.fixture(scope="module")
def upstream():
    with ScriptedUpstream({"summarizer": Behaviour.ok(SUMMARY), "answer": Behaviour.ok("Fine."),
                           "big": Behaviour.ok("Big."), "onprem": Behaviour.ok("Kept inside.")}) as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    u = upstream.base_url
    config = ("models:\n"
              + remote("remote/small", "answer", u).replace("context_window: 8192", "context_window: 700")
              + remote("remote/big", "big", u, price_input=10, price_output=20)
              + remote("remote/summarizer", "summarizer", u, price_input=0.1, price_output=0.2)
              + remote("remote/onprem", "onprem", u, on_premises="true").replace("context_window: 8192",
                                                                                "context_window: 900"))
    with BaimoServer(tmp_path_factory.mktemp("ctx"), config) as s:
        yield s


def chat(gateway: BaimoServer, model: str, messages: list[dict[str, str]], **extra: object) -> httpx.Response:
    r = httpx.post(gateway.base_url + "/chat/completions", json={"model": model, "messages": messages, **extra},
                   timeout=60)
    assert r.status_code == 200, r.text
    return r


def summary_requests(upstream: ScriptedUpstream, model: str = "summarizer") -> list:
    return [q for q in upstream.requests_for("/chat/completions") if q.model == model
            and q.json["messages"][0]["content"].startswith("You summarise conversations.")]


def test_oldest_turns_are_summarised_by_the_cheapest_model_and_the_header_says_so(gateway, upstream) -> None:
    upstream.clear()
    messages = conversation(12)
    r = chat(gateway, "remote/small", messages, max_tokens=20)
    header = r.headers["x-baimo-context"]
    assert header.startswith("summarized ") and header.endswith(" turns with remote/summarizer"), header
    turns = int(header.split()[1])
    assert 0 < turns < len(messages) - 2
    (asked,) = summary_requests(upstream)  # the cheapest that fits: not remote/big, not remote/small itself
    transcript = asked.json["messages"][1]["content"]
    assert transcript.startswith("User: Question 0:") and f"Answer {turns // 2 - 1}:" in transcript
    assert "And the last one?" not in transcript
    sent = next(q for q in upstream.requests_for("/chat/completions") if q.model == "answer").json["messages"]
    assert sent[0] == SYSTEM
    assert sent[1] == {"role": "system", "content": f"Summary of earlier conversation: {SUMMARY}"}
    assert sent[2:] == messages[1 + turns:]
    assert not summary_requests(upstream, "big")
    usage = r.json()["usage"]
    answer_cost = (usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6
    assert float(r.headers["x-baimo-cost"]) > answer_cost  # the summary is paid for too
    recent = httpx.get(gateway.url + "/api/usage").json()["recent"]
    assert any(row["model"] == "remote/summarizer" and row["model_requested"] == "remote/small" for row in recent)


def test_a_seen_prefix_is_not_summarised_again_and_a_longer_one_incrementally(gateway, upstream) -> None:
    upstream.clear()
    messages = conversation(12, tag="Topic")
    first = chat(gateway, "remote/small", messages, max_tokens=20).headers["x-baimo-context"]
    assert len(summary_requests(upstream)) == 1
    again = chat(gateway, "remote/small", messages, max_tokens=20).headers["x-baimo-context"]
    assert again == first + " (cached)" and len(summary_requests(upstream)) == 1
    longer = messages[:-1] + [{"role": "user", "content": "Topic 12: " + "tell me about rivers and boats " * 8},
                              {"role": "assistant", "content": "Answer 12: " + "rivers flow to the sea " * 8},
                              messages[-1]]
    chat(gateway, "remote/small", longer, max_tokens=20)
    latest = summary_requests(upstream)[-1].json["messages"][1]["content"]
    assert latest.startswith(f"(Summary of what came before: {SUMMARY})")
    assert "Topic 0:" not in latest  # already summarised: only the newly overflowing turns are read


def test_a_failing_summariser_falls_back_to_dropping_and_says_so(gateway, upstream) -> None:
    upstream.set_behaviour("summarizer", Behaviour.fail(500, "summariser down"))
    try:
        r = chat(gateway, "remote/small", conversation(12, tag="Failing"), max_tokens=20)
    finally:
        upstream.set_behaviour("summarizer", Behaviour.ok(SUMMARY))
    header = r.headers["x-baimo-context"]
    assert header.startswith("trimmed (summary failed: ") and "summariser down" in header
    assert int(header.split("dropped=")[1]) > 0
    sent = [q for q in upstream.requests_for("/chat/completions") if q.model == "answer"][-1].json["messages"]
    assert not any(m["content"].startswith("Summary of earlier conversation") for m in sent)


def test_streams_carry_the_header_too(gateway) -> None:
    body = {"model": "remote/small", "messages": conversation(12, tag="Streamed"), "stream": True, "max_tokens": 20}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["x-baimo-context"].endswith("turns with remote/summarizer")
        assert any(line == "data: [DONE]" for line in r.iter_lines())


def test_an_on_premises_model_is_summarised_only_on_premises(gateway, upstream) -> None:
    upstream.clear()
    r = chat(gateway, "remote/onprem", conversation(12, tag="Private"), max_tokens=20)
    assert "with remote/onprem" in r.headers["x-baimo-context"]
    assert summary_requests(upstream, "onprem") and not summary_requests(upstream)


def test_real_local_model_summarises_for_itself(tmp_path_factory) -> None:
    """SmolLM2 (2048-token window) is the only model: it writes the summary of the overflowing turns itself."""
    with BaimoServer(tmp_path_factory.mktemp("smol-ctx"), SMOLLM_YAML) as s:
        messages = conversation(16)
        r = chat(s, "local/smollm2-135m", messages, max_tokens=8)
        header = r.headers["x-baimo-context"]
        assert header.startswith("summarized ") and "with local/smollm2-135m" in header, header
        assert r.json()["usage"]["prompt_tokens"] <= 2048 - 8
        recent = httpx.get(s.url + "/api/usage").json()["recent"]
        row = next(x for x in recent if x["route"] and x["route"].startswith("summary of "))
        assert row["model"] == "local/smollm2-135m" and row["completion_tokens"] > 0
