"""Tests of the scripted OpenAI-compatible upstream itself, driven by the official openai client."""

from __future__ import annotations

import base64
import json
import struct
import time

import httpx
import openai
import pytest

from tests.support.upstream import (
    DEFAULT_TEXT,
    Behaviour,
    ScriptedUpstream,
    ScriptedUpstreamProcess,
    embedding_vector,
)

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say something nice"},
]


@pytest.fixture(scope="module")
def upstream():
    behaviours = {
        "tok100": Behaviour.ok(tokens=100),
        "custom": Behaviour.ok("Bonjour tout le monde"),
        "slowish": Behaviour.slow(0.3, text="late but fine"),
        "overloaded": Behaviour.fail(503, "Try later", retry_after=7),
        "broken-stream": Behaviour.midstream_error(chunks=3, tokens=50),
        "dripping": Behaviour.ok(tokens=5, token_delay=0.03),
    }
    with ScriptedUpstream(behaviours) as up:
        yield up


@pytest.fixture
def client(upstream):
    upstream.clear()
    with openai.OpenAI(base_url=upstream.base_url, api_key="sk-test-123", max_retries=0, timeout=5) as c:
        yield c


def collect(stream) -> list:
    return [chunk for chunk in stream]


def content_of(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- healthy answers -------------------------------------------------------------------------------


def test_base_url_and_models(upstream, client):
    assert upstream.base_url.startswith("http://127.0.0.1:")
    assert upstream.base_url.endswith("/v1")
    ids = {m.id for m in client.models.list().data}
    assert {"ok", "slow", "fail", "malformed", "midstream_error", "echo", "tok100", "custom"} <= ids


def test_non_stream_default_answer_and_usage(upstream, client):
    r = client.chat.completions.create(model="ok", messages=MESSAGES)
    assert r.object == "chat.completion"
    assert r.model == "ok"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == DEFAULT_TEXT
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == len(DEFAULT_TEXT.split())
    assert r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_unknown_model_gets_default_behaviour(client):
    r = client.chat.completions.create(model="gpt-something-unknown", messages=MESSAGES)
    assert r.choices[0].message.content == DEFAULT_TEXT
    assert r.model == "gpt-something-unknown"


def test_records_authorization_and_body(upstream, client):
    client.chat.completions.create(model="custom", messages=MESSAGES, temperature=0.2, max_tokens=50)
    rec = upstream.last_request
    assert rec.method == "POST"
    assert rec.path == "/v1/chat/completions"
    assert rec.authorization == "Bearer sk-test-123"
    assert rec.model == "custom"
    assert rec.body["messages"] == MESSAGES
    assert rec.body["temperature"] == 0.2
    assert rec.body["max_tokens"] == 50
    assert len(upstream.requests_for("/chat/completions")) == 1


def test_stream_100_tokens_with_usage(client):
    chunks = collect(
        client.chat.completions.create(
            model="tok100", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = content_of(chunks)
    assert text == "".join(f"tok{i} " for i in range(100))
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 100
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == 100
    assert last.usage.prompt_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_usage_has_no_usage_chunk(client):
    chunks = collect(client.chat.completions.create(model="custom", messages=MESSAGES, stream=True))
    assert content_of(chunks) == "Bonjour tout le monde"
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_wire_format_ends_with_usage_then_done(upstream):
    body = {
        "model": "tok100",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    r = httpx.post(upstream.base_url + "/chat/completions", json=body, timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [line for line in r.text.split("\n\n") if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert '"choices":[]' in events[-2] and '"completion_tokens":100' in events[-2]
    assert len(events) == 1 + 100 + 1 + 1 + 1  # role, tokens, finish, usage, [DONE]


@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_truncates_with_length(client, stream):
    kwargs = {"model": "tok100", "messages": MESSAGES, "max_tokens": 7}
    if stream:
        chunks = collect(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
        text = content_of(chunks)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        usage = chunks[-1].usage
    else:
        r = client.chat.completions.create(**kwargs)
        text, finish, usage = r.choices[0].message.content, [r.choices[0].finish_reason], r.usage
    assert text == "".join(f"tok{i} " for i in range(7))
    assert finish == ["length"]
    assert usage.completion_tokens == 7


def test_max_completion_tokens_is_honoured(client):
    r = client.chat.completions.create(model="tok100", messages=MESSAGES, max_completion_tokens=3)
    assert r.choices[0].message.content == "tok0 tok1 tok2 "
    assert r.choices[0].finish_reason == "length"


@pytest.mark.parametrize("stream", [False, True])
def test_echo_returns_last_user_message(client, stream):
    messages = [
        *MESSAGES,
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "Echo me, please!"},
    ]
    if stream:
        text = content_of(collect(client.chat.completions.create(model="echo", messages=messages, stream=True)))
    else:
        text = client.chat.completions.create(model="echo", messages=messages).choices[0].message.content
    assert text == "Echo me, please!"


def test_echo_content_parts(client):
    messages = [{"role": "user", "content": [{"type": "text", "text": "part one"}]}]
    r = client.chat.completions.create(model="echo", messages=messages)
    assert r.choices[0].message.content == "part one"


def test_token_delay_spaces_out_chunks(client):
    t0 = time.perf_counter()
    chunks = collect(client.chat.completions.create(model="dripping", messages=MESSAGES, stream=True))
    assert content_of(chunks) == "tok0 tok1 tok2 tok3 tok4 "
    assert time.perf_counter() - t0 >= 4 * 0.03


def test_set_behaviour_at_runtime(upstream, client):
    upstream.set_behaviour("runtime-model", Behaviour.ok("changed"))
    assert client.chat.completions.create(model="runtime-model", messages=MESSAGES).choices[0].message.content == (
        "changed"
    )
    upstream.set_behaviour("runtime-model", "fail:502")
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="runtime-model", messages=MESSAGES)
    assert exc.value.status_code == 502


# --- failure modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_fail_500(client, stream):
    with pytest.raises(openai.InternalServerError) as exc:
        r = client.chat.completions.create(model="fail", messages=MESSAGES, stream=stream)
        collect(r) if stream else None
    assert exc.value.status_code == 500
    assert exc.value.body["type"] == "server_error"


def test_fail_429_spec_name(client):
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="fail:429", messages=MESSAGES)
    assert exc.value.status_code == 429
    assert exc.value.body["code"] == "rate_limit_exceeded"


def test_fail_503_with_message_and_retry_after(client):
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="overloaded", messages=MESSAGES)
    assert exc.value.status_code == 503
    assert exc.value.body["message"] == "Try later"
    assert exc.value.response.headers["retry-after"] == "7"


def test_slow_times_out(client):
    t0 = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.5).chat.completions.create(model="slow:5", messages=MESSAGES)
    assert time.perf_counter() - t0 < 3


def test_slow_answers_when_timeout_is_long_enough(client):
    t0 = time.perf_counter()
    r = client.chat.completions.create(model="slowish", messages=MESSAGES)
    assert time.perf_counter() - t0 >= 0.3
    assert r.choices[0].message.content == "late but fine"


def test_malformed_non_stream(upstream, client):
    with pytest.raises((ValueError, openai.APIResponseValidationError)):
        client.chat.completions.create(model="malformed", messages=MESSAGES)
    r = httpx.post(upstream.base_url + "/chat/completions", json={"model": "malformed", "messages": MESSAGES})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()


def test_malformed_stream(upstream, client):
    with pytest.raises((ValueError, openai.APIError)):
        collect(client.chat.completions.create(model="malformed", messages=MESSAGES, stream=True))
    body = {"model": "malformed", "messages": MESSAGES, "stream": True}
    r = httpx.post(upstream.base_url + "/chat/completions", json=body)
    first = r.text.split("\n\n")[0]
    assert r.status_code == 200 and first.startswith("data: ")
    with pytest.raises(ValueError):
        json.loads(first[len("data: ") :])


def test_midstream_error_stream_drops_connection(client):
    received = []
    with pytest.raises((openai.APIConnectionError, httpx.HTTPError)):
        for chunk in client.chat.completions.create(model="broken-stream", messages=MESSAGES, stream=True):
            received.append(chunk)
    assert content_of(received) == "tok0 tok1 tok2 "
    assert not any(c.choices and c.choices[0].finish_reason for c in received)


def test_midstream_error_raw_has_no_done(upstream):
    body = {"model": "midstream_error:2", "messages": MESSAGES, "stream": True}
    seen = []
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", upstream.base_url + "/chat/completions", json=body) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                seen.append(line)
    assert "data: [DONE]" not in seen
    assert sum(1 for s in seen if s.startswith("data: ")) == 3  # role + 2 tokens


def test_midstream_error_non_stream_truncated_body(client):
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="midstream_error", messages=MESSAGES)


def test_api_key_required():
    with ScriptedUpstream(api_key="sk-right") as up:
        bad = openai.OpenAI(base_url=up.base_url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="ok", messages=MESSAGES)
        good = openai.OpenAI(base_url=up.base_url, api_key="sk-right", max_retries=0)
        assert good.chat.completions.create(model="ok", messages=MESSAGES).choices[0].message.content
        assert [r.authorization for r in up.requests] == ["Bearer sk-wrong", "Bearer sk-right"]


def test_bad_request_without_messages(upstream):
    r = httpx.post(upstream.base_url + "/chat/completions", json={"model": "ok"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "messages"


# --- embeddings ------------------------------------------------------------------------------------


def test_embeddings_are_deterministic(upstream, client):
    a = client.embeddings.create(model="emb", input=["alpha", "beta"])  # client asks for base64
    b = client.embeddings.create(model="emb", input="alpha", encoding_format="float")
    assert len(a.data) == 2 and [d.index for d in a.data] == [0, 1]
    assert len(a.data[0].embedding) == 16
    assert a.data[0].embedding == pytest.approx(b.data[0].embedding, abs=1e-6)
    assert a.data[0].embedding != pytest.approx(a.data[1].embedding, abs=1e-3)
    assert sum(v * v for v in b.data[0].embedding) == pytest.approx(1.0)
    assert a.usage.prompt_tokens == 2


def test_embeddings_dimensions_and_raw_base64(upstream, client):
    r = client.embeddings.create(model="emb", input="gamma", dimensions=8, encoding_format="float")
    assert r.data[0].embedding == pytest.approx(embedding_vector("gamma", 8))
    raw = httpx.post(
        upstream.base_url + "/embeddings",
        json={"model": "emb", "input": "gamma", "encoding_format": "base64"},
    ).json()
    vec = struct.unpack("<16f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(vec) == pytest.approx(embedding_vector("gamma", 16), abs=1e-6)


def test_embeddings_failure(client):
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="fail:429", input="x")


# --- subprocess mode -------------------------------------------------------------------------------


def test_subprocess_mode():
    with ScriptedUpstreamProcess({"bad": "fail:503"}, tokens=20) as up:
        c = openai.OpenAI(base_url=up.base_url, api_key="sk-proc", max_retries=0, timeout=5)
        chunks = collect(
            c.chat.completions.create(
                model="ok", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
        assert chunks[-1].usage.completion_tokens == 20
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="bad", messages=MESSAGES)
        reqs = up.requests
        assert [r.model for r in reqs] == ["ok", "bad"]
        assert reqs[0].authorization == "Bearer sk-proc"
        up.clear()
        up.set_behaviour("bad", Behaviour.ok("recovered"))
        assert c.chat.completions.create(model="bad", messages=MESSAGES).choices[0].message.content == "recovered"
        assert len(up.requests) == 1
