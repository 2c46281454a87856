"""Remote OpenAI-compatible models pass everything through and add nothing, end to end.

A real `baimo serve` in front of the real scripted upstream, which records every request it gets. Requests go in
through the official openai client (vendor fields in `extra_body`) or raw httpx; the upstream's recorded request
must be the client's, with only `model` renamed and `stream`/`stream_options` set (Baimo always streams from
upstreams, with usage), minus Baimo's own `knowledge` and `metadata.conversation_id`/`metadata.persona`. What the
upstream answers (logprobs, refusal, annotations, tool_calls, reasoning_content, usage token details, n choices)
must reach the client, streamed and not, and the usage records must count cached and reasoning tokens.
Field cases (../shared/field-cases): F01 F02 F03 F05 F06 F07 F10 F12 F16, remote side.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import httpx
import openai
import pytest

from tests.support.remote import remote, sse_events, strict_json
from tests.support.server import BaimoServer
from tests.support.upstream import Behaviour, RecordedRequest, ScriptedUpstream
from tests.support.upstream_rich import CACHED_TOKENS, REASONING, REFUSAL, URL, rich_text

pytestmark = pytest.mark.e2e
USER = [{"role": "user", "content": "Why is the sky blue?"}]
UPSTREAM_STREAM = {"stream": True, "stream_options": {"include_usage": True}}
BACKUP_TEXT = "pong from the fallback"
SQRT_TOOL = {"type": "function", "function": {"name": "sqrt", "description": "Square root of x", "parameters": {
    "type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}}}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
FILE = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}


@pytest.fixture(scope="module")
def upstream():
    with ScriptedUpstream({"rich": Behaviour.rich(), "rich-vision": Behaviour.rich(), "echo": Behaviour.echo(),
                           "tool_call": Behaviour("tool_call"), "backup": Behaviour.ok(BACKUP_TEXT),
                           "overloaded": Behaviour.fail(503, "overloaded, try later"),
                           "drops": Behaviour.midstream_error(2, token_delay=0.3),
                           "headers-only": Behaviour.midstream_error(-1)}) as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    u = upstream.base_url
    config = (
        "default_model: remote/rich\nmodels:\n"
        + remote("remote/rich", "rich", u, price_cached_input=0.25)
        + remote("remote/echo", "echo", u)
        + remote("remote/nodev", "echo", u, developer_role="false")
        + remote("remote/capped", "rich", u, max_output_tokens=3)
        + remote("remote/tools", "tool_call", u)
        + remote("remote/text-only", "rich", u, inputs="[text]", fallbacks="[remote/vision]")
        + remote("remote/text-alone", "rich", u, inputs="[text]")
        + remote("remote/vision", "rich-vision", u, inputs="[text, image]")
        + remote("remote/backup", "backup", u)
        + remote("remote/overloaded", "overloaded", u, fallbacks="[remote/backup]")
        + remote("remote/headers-only", "headers-only", u, fallbacks="[remote/backup]")
        + remote("remote/drops", "drops", u, fallbacks="[remote/backup]")
    )
    with BaimoServer(tmp_path_factory.mktemp("passthrough"), config) as s:
        yield s


@pytest.fixture
def oc(gateway):
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0, timeout=30)


@pytest.fixture
def api(gateway):
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client


@pytest.fixture(autouse=True)
def fresh(upstream):
    upstream.clear()


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def forwarded(upstream: ScriptedUpstream, path: str = "/chat/completions") -> RecordedRequest:
    """The one request the upstream got for this test."""
    reqs = upstream.requests_for(path)
    assert len(reqs) == 1, [r.body for r in reqs]
    return reqs[0]


def upstream_body(sent: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """What the upstream must receive for a client body: the same, model renamed, streamed with usage."""
    return {**sent, "model": upstream_model, **UPSTREAM_STREAM}


def post_stream(api: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Headers, list[tuple[str | None, str]]]:
    with api.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = list(r.iter_lines())
    events = sse_events(lines)
    assert events[-1] == (None, "[DONE]")
    return r.headers, events


def chunks_of(events: list[tuple[str | None, str]]) -> list[dict[str, Any]]:
    """The chat.completion.chunk objects of a stream (strictly parsed), without [DONE]; errors fail the test."""
    errors = [data for name, data in events if name == "error"]
    assert not errors, errors
    return [strict_json(data) for name, data in events if data != "[DONE]" and name is None]


def joined(chunks: list[dict[str, Any]], field: str, index: int = 0) -> str:
    return "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks
                   if c["choices"] and c["choices"][0]["index"] == index)


def usage_record(api: httpx.Client, response_id: str, timeout: float = 10) -> dict[str, Any]:
    """The usage record of a response (written in the background, so wait a little for it)."""
    deadline = time.monotonic() + timeout
    while True:
        for r in api.get("/api/usage").json()["recent"]:
            if r["response_id"] == response_id:
                return r
        assert time.monotonic() < deadline, f"no usage record for {response_id}"
        time.sleep(0.1)


def all_numbers_finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(all_numbers_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(all_numbers_finite(v) for v in obj)
    return True


def rich_usage_expectation(prompt_tokens: int, choices: int = 1) -> dict[str, Any]:
    reasoning = len(REASONING) * choices
    completion = reasoning + sum(len(rich_text(i).split(" ")) for i in range(choices))
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


# --------------------------------------------------------------------------------------------------
# Requests: what the client sent is what the upstream gets
# --------------------------------------------------------------------------------------------------


def test_every_field_the_client_sent_reaches_the_upstream_unchanged(oc, api, upstream) -> None:
    conversation = api.post("/api/conversations", json={}).json()["id"]
    vendor = {"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1,
              "chat_template_kwargs": {"enable_thinking": False}, "guided_json": {"type": "object"},
              "some_future_field": {"nested": [1, "x", {"deep": True}]}}
    newer = {"reasoning_effort": "low", "service_tier": "auto", "prediction": {"type": "content", "content": "The"},
             "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}, "user": "user-42",
             "store": False}
    classic = {"max_completion_tokens": 50, "temperature": 0.3, "top_p": 0.9, "seed": 7, "presence_penalty": 0.1,
               "frequency_penalty": -0.2, "logit_bias": {"50256": -100}, "logprobs": True, "top_logprobs": 2,
               "response_format": {"type": "text"}}
    raw = oc.chat.completions.with_raw_response.create(
        model="remote/rich", messages=USER, **classic, **newer,
        metadata={"conversation_id": conversation, "persona": "support", "trace": "t-1"}, extra_body=vendor)
    assert raw.status_code == 200 and raw.parse().choices[0].message.content == rich_text(0)

    expected = upstream_body({"messages": USER, **classic, **newer, **vendor, "metadata": {"trace": "t-1"}}, "rich")
    assert forwarded(upstream).json == expected  # nothing lost, nothing added
    # Baimo's own metadata keys were consumed, not forwarded: the exchange is stored and metered with the persona.
    stored = api.get(f"/api/conversations/{conversation}").json()["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"] and stored[1]["content"] == rich_text(0)
    assert usage_record(api, raw.headers["x-request-id"])["persona"] == "support"


def test_explicit_nulls_and_baimo_fields_are_not_forwarded(api, upstream) -> None:
    """F05: `max_tokens: null` is "not set"; Baimo adds no cap of its own. `knowledge` is Baimo's, not the model's."""
    assert api.post("/api/knowledge", json={"name": "empty-kb"}).status_code == 201
    body = {"model": "remote/rich", "messages": USER, "max_tokens": None, "max_completion_tokens": None,
            "temperature": 0, "stop": None, "top_k": None, "min_p": 0.1, "stream_options": None,
            "tools": None, "metadata": {"persona": "support"},
            "knowledge": {"bases": ["empty-kb"], "mode": "bm25"}}
    r = api.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["choices"][0]["finish_reason"] == "stop" and c["choices"][0]["message"]["content"] == rich_text(0)
    assert c["usage"]["total_tokens"] == c["usage"]["prompt_tokens"] + c["usage"]["completion_tokens"]
    assert forwarded(upstream).json == upstream_body({"messages": USER, "temperature": 0, "min_p": 0.1}, "rich")
    assert c["citations"] == []  # the knowledge field was used (an empty base): Baimo's, not forwarded


def test_reply_caps_go_out_as_the_client_sent_them(api, upstream) -> None:
    """max_tokens and max_completion_tokens keep their names; a model's max_output_tokens applies only when the
    client sets no cap, and Baimo never adds one otherwise."""
    cases = [
        ("remote/rich", {"max_completion_tokens": 2}, {"max_completion_tokens": 2}, "length"),
        ("remote/rich", {"max_tokens": 2}, {"max_tokens": 2}, "length"),
        ("remote/rich", {"max_tokens": 9, "max_completion_tokens": 2}, {"max_tokens": 9, "max_completion_tokens": 2},
         "length"),
        ("remote/rich", {}, {}, "stop"),
        ("remote/capped", {}, {"max_tokens": 3}, "length"),
        ("remote/capped", {"max_completion_tokens": 50}, {"max_completion_tokens": 50}, "stop"),
    ]
    for model, caps, upstream_caps, finish in cases:
        upstream.clear()
        r = api.post("/v1/chat/completions", json={"model": model, "messages": USER, **caps})
        assert r.status_code == 200, (model, caps, r.text)
        assert r.json()["choices"][0]["finish_reason"] == finish, (model, caps)
        assert forwarded(upstream).json == upstream_body({"messages": USER, **upstream_caps}, "rich"), (model, caps)


def test_stop_in_every_form_is_forwarded_as_sent(api, upstream) -> None:
    """F06: a string, a list, [] and null are all fine; 5 sequences is OpenAI's 400 (param stop), never a 500."""
    messages = [{"role": "user", "content": "Repeat exactly: alpha STOP omega"}]
    for stop in ("STOP", ["STOP", "omega"], []):
        upstream.clear()
        r = api.post("/v1/chat/completions", json={"model": "remote/echo", "messages": messages, "stop": stop,
                                                   "temperature": 0, "max_tokens": 32})
        assert r.status_code == 200, (stop, r.text)
        assert forwarded(upstream).json == upstream_body(
            {"messages": messages, "stop": stop, "temperature": 0, "max_tokens": 32}, "echo"), stop
    upstream.clear()
    r = api.post("/v1/chat/completions", json={"model": "remote/echo", "messages": messages, "stop": None})
    assert r.status_code == 200 and "stop" not in forwarded(upstream).json
    upstream.clear()
    r = api.post("/v1/chat/completions", json={"model": "remote/echo", "messages": messages,
                                               "stop": ["a", "b", "c", "d", "e"]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["param"] == "stop"
    assert upstream.requests == []


@pytest.mark.parametrize("stream", [False, True])
def test_messages_go_out_exactly_as_sent(api, upstream, stream) -> None:
    """F01: content arrays (text, image, audio and file parts) unchanged, system messages included; names kept."""
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in one word."}]},
        {"role": "user", "name": "alice", "content": [
            {"type": "text", "text": "Say the word"}, {"type": "text", "text": "apple."}, IMAGE, AUDIO, FILE]},
        {"role": "assistant", "content": "Apple.", "name": "bot"},
        {"role": "user", "content": [{"type": "text", "text": "Again"}]},
    ]
    body = {"model": "remote/rich", "messages": messages, "max_tokens": 16}
    if stream:
        _, events = post_stream(api, body)
        assert joined(chunks_of(events), "content") == rich_text(0)
    else:
        r = api.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] > 0
    assert forwarded(upstream).json == upstream_body(body, "rich")


@pytest.mark.parametrize("stream", [False, True])
def test_developer_is_forwarded_or_mapped_to_system(oc, upstream, stream) -> None:
    """F02: `developer` goes out as sent, or as `system` to a model configured with `developer_role: false`."""
    messages = [{"role": "developer", "content": "Answer in exactly one word."},
                {"role": "user", "content": "What colour is the sky on a clear day?"}]
    for model, role in (("remote/echo", "developer"), ("remote/nodev", "system")):
        upstream.clear()
        answer = oc.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0,
                                            stream=stream)
        text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices) if stream \
            else answer.choices[0].message.content
        assert text == "What colour is the sky on a clear"  # the echo, cut at max_tokens=8
        sent = forwarded(upstream).json["messages"]
        assert sent == [{"role": role, "content": "Answer in exactly one word."}, messages[1]], model


@pytest.mark.parametrize("variant", ["no content key", "content null", "content empty", "tool_choice none"])
def test_tool_history_goes_out_unchanged(oc, upstream, variant) -> None:
    """F03: an assistant tool-call turn without content gets no content key; no "None"/"null" strings appear."""
    call = {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                                 "function": {"name": "sqrt", "arguments": "{\"x\": 101}"}}]}
    if variant == "content null":
        call["content"] = None
    elif variant == "content empty":
        call["content"] = ""
    messages = [{"role": "user", "content": "What is the square root of 101? Use the tool."}, call,
                {"role": "tool", "tool_call_id": "call_1", "content": "10.05"}]
    extra = {"tool_choice": "none"} if variant == "tool_choice none" else {}
    c = oc.chat.completions.create(model="remote/tools", messages=messages, tools=[SQRT_TOOL], max_tokens=32,
                                   **extra)
    assert "10.05" in c.choices[0].message.content
    rec = forwarded(upstream)
    assert rec.json == upstream_body({"messages": messages, "tools": [SQRT_TOOL], "max_tokens": 32, **extra},
                                     "tool_call")
    assert ("content" in rec.json["messages"][1]) == ("content" in call)
    assert b'"None"' not in rec.raw and b'"null"' not in rec.raw


def test_stream_options_on_a_non_streaming_request(api, upstream) -> None:
    """F12: 200 and an ordinary completion; the upstream call is a stream (stream_options is only ever sent with
    stream: true). Streams: the usage chunk comes only when asked for, after the last choice chunk."""
    body = {"model": "remote/rich", "messages": [{"role": "user", "content": "Hi"}], "stream": False,
            "stream_options": {"include_usage": True}, "max_tokens": 8}
    r = api.post("/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    assert forwarded(upstream).json == upstream_body({"messages": body["messages"], "max_tokens": 8}, "rich")

    _, events = post_stream(api, {**body, "stream_options": {"include_usage": True}})
    chunks = chunks_of(events)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all(c.get("usage") is None for c in chunks[:-1])
    _, events = post_stream(api, {**body, "stream_options": None})
    assert all(c.get("usage") is None and c["choices"] for c in chunks_of(events))


# --------------------------------------------------------------------------------------------------
# Responses: every field the upstream returns reaches the client
# --------------------------------------------------------------------------------------------------


def test_rich_answer_non_streamed(oc, api, upstream) -> None:
    """F10 and the rich fields: logprobs with top_logprobs (finite), reasoning_content, annotations, refusal null,
    usage token details, system_fingerprint; all readable by the openai client and a strict JSON parser."""
    body = {"model": "remote/rich", "messages": [{"role": "user", "content": "Say yes."}], "logprobs": True,
            "top_logprobs": 5, "top_p": 0.1, "temperature": 1, "max_tokens": 4}
    r = api.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    c = strict_json(r.text)  # no NaN or Infinity anywhere
    choice = c["choices"][0]
    assert choice["finish_reason"] == "stop"
    message = choice["message"]
    assert message["content"] == rich_text(0) and message["refusal"] is None
    assert message["reasoning_content"] == "".join(REASONING)
    assert message["annotations"] == [{"type": "url_citation", "url_citation": {
        "url": URL, "title": "Why the sky is blue", "start_index": 0, "end_index": len(rich_text(0))}}]
    tokens = choice["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == message["content"] and len(tokens) == 4
    for t in tokens:
        assert set(t) == {"token", "logprob", "bytes", "top_logprobs"} and t["bytes"] == list(t["token"].encode())
        assert len(t["top_logprobs"]) == 5 and t["top_logprobs"][0]["token"] == t["token"]
        assert [a["logprob"] for a in t["top_logprobs"]] == [-0.25, -1.5, -9999.0, -9999.0, -2.0]
    assert c["system_fingerprint"] == "fp_scripted"
    assert c["usage"] == rich_usage_expectation(c["usage"]["prompt_tokens"])

    parsed = oc.chat.completions.create(**body)
    assert parsed.choices[0].logprobs.content[1].top_logprobs[2].logprob == -9999.0
    assert parsed.usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS
    assert parsed.usage.completion_tokens_details.reasoning_tokens == len(REASONING)
    assert parsed.choices[0].message.model_dump()["annotations"] == message["annotations"]
    assert parsed.choices[0].message.reasoning_content == "".join(REASONING)  # an extra field, kept
    for bad, param in (({"top_logprobs": 21}, "top_logprobs"), ({"logprobs": False, "top_logprobs": 3},
                                                                 "top_logprobs")):
        r = api.post("/v1/chat/completions", json={**body, **bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_rich_answer_streamed(oc, api) -> None:
    """F10 streaming: each content chunk carries its tokens' logprobs; reasoning_content, annotations and the usage
    details arrive as the upstream sent them."""
    body = {"model": "remote/rich", "messages": USER, "logprobs": True, "top_logprobs": 3,
            "stream_options": {"include_usage": True}}
    _, events = post_stream(api, body)
    chunks = chunks_of(events)
    assert joined(chunks, "reasoning_content") == "".join(REASONING)
    assert joined(chunks, "content") == rich_text(0)
    first_content = next(i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["delta"].get("content"))
    last_reasoning = max(i for i, c in enumerate(chunks)
                         if c["choices"] and c["choices"][0]["delta"].get("reasoning_content"))
    assert last_reasoning <= first_content  # no reasoning after the answer began (one read may hold both)
    for c in chunks:
        if c["choices"] and c["choices"][0]["delta"].get("content"):
            lp = c["choices"][0]["logprobs"]["content"]
            assert "".join(t["token"] for t in lp) == c["choices"][0]["delta"]["content"]
            assert all(len(t["top_logprobs"]) == 3 and all_numbers_finite(t) for t in lp)
    annotations = [a for c in chunks if c["choices"] for a in c["choices"][0]["delta"].get("annotations") or []]
    assert [a["url_citation"]["url"] for a in annotations] == [URL]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"] == {**rich_usage_expectation(chunks[-1]["usage"]["prompt_tokens"])}

    # The openai client reads the same stream.
    got = list(oc.chat.completions.create(**body, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in got if c.choices)
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in got if c.choices)
    assert text == rich_text(0) and reasoning == "".join(REASONING)
    assert sum(len(c.choices[0].logprobs.content) for c in got if c.choices and c.choices[0].logprobs) == 4
    assert got[-1].usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS


@pytest.mark.parametrize("stream", [False, True])
def test_refusal_reaches_the_client(oc, stream) -> None:
    messages = [{"role": "user", "content": "Please refuse this."}]
    answer = oc.chat.completions.create(model="remote/rich", messages=messages, stream=stream)
    if stream:
        chunks = [c for c in answer if c.choices]
        refusal = "".join(c.choices[0].delta.refusal or "" for c in chunks)
        assert not "".join(c.choices[0].delta.content or "" for c in chunks)
    else:
        refusal = answer.choices[0].message.refusal
        assert not answer.choices[0].message.content
    assert refusal == "".join(REFUSAL)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_reach_the_client(oc, upstream, stream) -> None:
    answer = oc.chat.completions.create(model="remote/rich", messages=USER, tools=[SQRT_TOOL],
                                        tool_choice="auto", parallel_tool_calls=False, stream=stream)
    if stream:
        chunks = [c for c in answer if c.choices]
        parts = [p for c in chunks for p in c.choices[0].delta.tool_calls or []]
        assert parts[0].id == "call_0" and parts[0].function.name == "sqrt"
        arguments = "".join(p.function.arguments or "" for p in parts)
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks)
    else:
        message = answer.choices[0].message
        assert answer.choices[0].finish_reason == "tool_calls"
        assert [(t.id, t.type, t.function.name) for t in message.tool_calls] == [("call_0", "function", "sqrt")]
        arguments = message.tool_calls[0].function.arguments
        reasoning = message.reasoning_content
    assert json.loads(arguments) == {"q": USER[0]["content"], "choice": 0}
    assert reasoning == "".join(REASONING)
    assert forwarded(upstream).json == upstream_body({"messages": USER, "tools": [SQRT_TOOL], "tool_choice": "auto",
                                                      "parallel_tool_calls": False}, "rich")


def test_n_choices_non_streamed(api, upstream) -> None:
    """F07: n=2 is forwarded; two choices with their index come back, and usage counts both."""
    body = {"model": "remote/rich", "messages": [{"role": "user", "content": "Name a random fruit."}], "n": 2,
            "temperature": 1.0, "max_tokens": 8}
    r = api.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    c = r.json()
    assert [ch["index"] for ch in c["choices"]] == [0, 1]
    assert [ch["message"]["content"] for ch in c["choices"]] == [rich_text(0), rich_text(1)]
    assert all(ch["message"]["reasoning_content"] == "".join(REASONING) for ch in c["choices"])
    assert c["usage"] == rich_usage_expectation(c["usage"]["prompt_tokens"], choices=2)
    assert forwarded(upstream).json["n"] == 2
    record = usage_record(api, r.headers["x-request-id"])
    assert record["completion_tokens"] == c["usage"]["completion_tokens"]
    assert record["reasoning_tokens"] == 2 * len(REASONING)


def test_n_choices_streamed(oc) -> None:
    """F07 streaming: each chunk's choices[].index tells the two sequences apart."""
    chunks = list(oc.chat.completions.create(model="remote/rich", n=2, stream=True, max_tokens=8,
                                             stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "Name a random fruit."}]))
    texts = {0: "", 1: ""}
    finishes = {}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                finishes[ch.index] = ch.finish_reason
    assert texts == {0: rich_text(0), 1: rich_text(1)} and finishes == {0: "stop", 1: "stop"}
    assert chunks[-1].usage.completion_tokens == rich_usage_expectation(0, choices=2)["completion_tokens"]


@pytest.mark.parametrize("stream", [False, True])
def test_cached_and_reasoning_tokens_are_metered_and_priced(api, stream) -> None:
    """Usage records keep cached and reasoning tokens; cached prompt tokens cost price_cached_input."""
    body = {"model": "remote/rich", "messages": USER, "stream_options": {"include_usage": True}}
    if stream:
        headers, events = post_stream(api, body)
        usage = chunks_of(events)[-1]["usage"]
    else:
        r = api.post("/v1/chat/completions", json=body)
        headers, usage = r.headers, r.json()["usage"]
    record = usage_record(api, headers["x-request-id"])
    assert record["model"] == "remote/rich" and record["status_code"] == 200
    assert record["prompt_tokens"] == usage["prompt_tokens"]
    assert record["completion_tokens"] == usage["completion_tokens"]
    assert record["cached_tokens"] == CACHED_TOKENS and record["reasoning_tokens"] == len(REASONING)
    cost = ((usage["prompt_tokens"] - CACHED_TOKENS) * 1.0 + CACHED_TOKENS * 0.25
            + usage["completion_tokens"] * 2.0) / 1e6
    assert record["cost"] == pytest.approx(cost)
    if not stream:
        assert float(headers["x-baimo-cost"]) == pytest.approx(cost)


# --------------------------------------------------------------------------------------------------
# What a model reads: `inputs`
# --------------------------------------------------------------------------------------------------


def test_a_model_that_cannot_read_images_gets_400_naming_the_message(api, upstream) -> None:
    for model, part in (("remote/text-alone", IMAGE), ("remote/vision", AUDIO)):
        messages = [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]}]
        for stream in (False, True):
            r = api.post("/v1/chat/completions", json={"model": model, "messages": messages, "stream": stream})
            assert r.status_code == 400, r.text
            err = r.json()["error"]
            assert err["type"] == "invalid_request_error" and err["param"] == "messages[1].content", err
    assert upstream.requests == []


def test_routing_skips_models_that_cannot_serve_the_request(oc, upstream) -> None:
    """A text-only primary with a vision fallback: images go to the fallback, text stays on the primary."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE]}]
    raw = oc.chat.completions.with_raw_response.create(model="remote/text-only", messages=messages)
    assert raw.parse().model == "remote/vision" and raw.parse().choices[0].message.content == rich_text(0)
    assert "remote/text-only cannot serve it" in raw.headers["x-baimo-route"]
    rec = forwarded(upstream)
    assert rec.model == "rich-vision" and rec.json["messages"] == messages
    upstream.clear()
    chunks = list(oc.chat.completions.create(model="remote/text-only", messages=messages, stream=True))
    assert {c.model for c in chunks} == {"remote/vision"}
    upstream.clear()
    c = oc.chat.completions.create(model="remote/text-only", messages=USER)
    assert c.model == "remote/text-only" and forwarded(upstream).model == "rich"


# --------------------------------------------------------------------------------------------------
# F16: fallbacks for stream: true
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("primary", ["remote/overloaded", "remote/headers-only"])
def test_stream_falls_back_before_the_first_token(api, upstream, primary) -> None:
    """The primary answers 503 (or sends headers and closes): the fallback serves the whole stream, with usage."""
    body = {"model": primary, "messages": [{"role": "user", "content": "Reply with pong."}],
            "stream_options": {"include_usage": True}, "max_tokens": 8}
    headers, events = post_stream(api, body)
    chunks = chunks_of(events)
    assert joined(chunks, "content") == BACKUP_TEXT
    assert {c["model"] for c in chunks} == {"remote/backup"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == len(BACKUP_TEXT.split())
    assert headers["x-request-id"] and headers["x-baimo-route"].endswith("-> remote/backup")
    assert [r.model for r in upstream.requests] == [primary.removeprefix("remote/"), "backup"]
    record = usage_record(api, headers["x-request-id"])
    assert record["model"] == "remote/backup" and record["model_requested"] == primary
    assert record["status_code"] == 200 and record["completion_tokens"] == len(BACKUP_TEXT.split())


def test_stream_that_breaks_after_tokens_ends_with_an_error_event(api, oc, upstream) -> None:
    """The primary sends 2 content chunks, then drops: a clean SSE error event, no fallback text spliced in."""
    body = {"model": "remote/drops", "messages": [{"role": "user", "content": "Reply with pong."}],
            "stream_options": {"include_usage": True}, "max_tokens": 8}
    with api.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["x-request-id"]
        events = sse_events(list(r.iter_lines()))
    assert events[-1] == (None, "[DONE]") and events[-2][0] == "error"
    error = strict_json(events[-2][1])["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "upstream_error"
    chunks = [strict_json(d) for _, d in events[:-2]]
    assert joined(chunks, "content") == "Hello from"  # the scripted default text's first two tokens
    assert {c["model"] for c in chunks} == {"remote/drops"}
    assert [r.model for r in upstream.requests] == ["drops"]  # the fallback was not asked
    record = usage_record(api, r.headers["x-request-id"])
    assert record["model"] == "remote/drops" and record["status_code"] == 502
    with pytest.raises(openai.APIError):
        for _ in oc.chat.completions.create(**body, stream=True):
            pass


# --------------------------------------------------------------------------------------------------
# POST /v1/completions (legacy text completions)
# --------------------------------------------------------------------------------------------------


def test_text_completions_are_forwarded_to_the_upstream(oc, api, upstream) -> None:
    vendor = {"top_k": 3, "repetition_penalty": 1.1}
    raw = oc.completions.with_raw_response.create(model="remote/rich", prompt="Once upon a time", max_tokens=3,
                                                  logprobs=2, temperature=0.5, echo=False, extra_body=vendor)
    c = raw.parse()
    assert c.object == "text_completion" and c.model == "remote/rich"
    assert c.choices[0].text == "Hello from the" and c.choices[0].finish_reason == "length"
    assert c.choices[0].logprobs.tokens == ["Hello", " from", " the"]
    assert c.usage.completion_tokens == 3 and c.usage.prompt_tokens == 4
    rec = forwarded(upstream, "/v1/completions")
    assert rec.json == {"prompt": "Once upon a time", "max_tokens": 3, "logprobs": 2, "temperature": 0.5,
                        "echo": False, **vendor, "model": "rich", **UPSTREAM_STREAM}
    assert upstream.requests_for("/chat/completions") == []
    record = usage_record(api, raw.headers["x-request-id"])
    assert record["endpoint"] == "completions" and record["completion_tokens"] == 3
    assert record["cost"] == pytest.approx((4 * 1.0 + 3 * 2.0) / 1e6)

    upstream.clear()
    chunks = list(oc.completions.create(model="remote/rich", prompt=["A", "B"], n=2, max_tokens=2, stream=True,
                                        stream_options={"include_usage": True}))
    texts: dict[int, str] = {}
    for ch in chunks:
        for choice in ch.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert texts == {i: "Hello from" for i in range(4)}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert forwarded(upstream, "/v1/completions").json["n"] == 2


def test_text_completions_fall_back_before_the_first_token(oc, upstream) -> None:
    c = oc.completions.create(model="remote/overloaded", prompt="ping", max_tokens=4)
    assert c.model == "remote/backup" and c.choices[0].text == "pong from the fallback"
    assert [r.model for r in upstream.requests] == ["overloaded", "backup"]
