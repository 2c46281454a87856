"""The OpenAI-compatible API through the official `openai` client against a real `baimo serve` with SmolLM2."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e
MODEL = "local/smollm2-135m"
EMBEDDER = "local/multilingual-e5-small"


def usage_totals(server) -> dict:
    """The usage report's totals over every row: requests, errors, tokens and cost."""
    return httpx.get(server.url + "/api/usage").json()["report"]["totals"]


def test_health_and_openapi(server) -> None:
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/readyz")
    # ready only once start-up loads are done: the personal-data detector (privacy routing is on by default) is
    # warm, so the first request does not wait seconds for it
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["warming"] == []
    schema = httpx.get(server.url + "/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/embeddings", "/api/conversations",
                 "/api/workers"):
        assert path in schema["paths"]


def test_models_lists_models_and_embedder(client) -> None:
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids and EMBEDDER in ids
    assert client.models.retrieve(MODEL).id == MODEL


def test_chat_non_stream_names_model_route_and_cost(client) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=12, temperature=0, seed=1)
    completion = raw.parse()
    assert completion.model == MODEL
    assert completion.choices[0].message.content.strip()
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens > 5 and 0 < completion.usage.completion_tokens <= 12
    assert raw.headers["x-baimo-route"] == f"direct -> {MODEL}"
    expected = (completion.usage.prompt_tokens * 0.02 + completion.usage.completion_tokens * 0.05) / 1e6
    assert float(raw.headers["x-baimo-cost"]) == pytest.approx(expected, rel=1e-3)


def test_seed_and_zero_temperature_are_repeatable(client) -> None:
    def ask() -> str:
        return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Name a fruit."}],
                                              max_tokens=10, temperature=0.9, seed=42).choices[0].message.content

    assert ask() == ask()


def test_stream_with_usage(client) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count from one to ten."}], max_tokens=24,
        stream=True, stream_options={"include_usage": True}, temperature=0)
    chunks = list(stream)
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) >= 2
    assert all(c.model == MODEL for c in chunks)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens


def test_stop_sequence_and_max_completion_tokens(client) -> None:
    c = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Write a long story."}],
                                       max_completion_tokens=5, temperature=0)
    assert c.usage.completion_tokens <= 5 and c.choices[0].finish_reason == "length"


def test_embeddings_batched_and_multilingual(client) -> None:
    texts = ["The cat sleeps on the sofa.", "Le chat dort sur le canapé.", "Stock markets fell sharply today."]
    result = client.embeddings.create(model=EMBEDDER, input=texts)
    vectors = [d.embedding for d in result.data]
    assert [d.index for d in result.data] == [0, 1, 2] and len(vectors[0]) == 384

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])  # cross-lingual paraphrase beats topic change
    single = client.embeddings.create(model=EMBEDDER, input="hello", encoding_format="base64")
    assert len(base64.b64decode(single.data[0].embedding)) == 384 * 4


# ---- errors ---------------------------------------------------------------------------------------------------


def test_unknown_model_is_404(client) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope/nothing", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope/nothing", input="hi")


@pytest.mark.parametrize("body,param", [
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}, "max_tokens"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "bogus_field": 1}, "bogus_field"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 9}, "temperature"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "n": 9}, "n"),
    ({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "   "}]}, "messages"),
])
def test_invalid_parameters_are_400_with_param(server, body, param) -> None:
    before = usage_totals(server)
    r = httpx.post(server.base_url + "/chat/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]
    after = usage_totals(server)  # a refused request is metered as an error that used no tokens and cost nothing
    assert after["requests"] == before["requests"] + 1 and after["errors"] == before["errors"] + 1
    assert (after["prompt_tokens"], after["completion_tokens"], after["cost"]) == \
        (before["prompt_tokens"], before["completion_tokens"], before["cost"])


def test_malformed_json_wrong_type_and_huge_body(server) -> None:
    url = server.base_url + "/chat/completions"
    r = httpx.post(url, content=b'{"model": "x", "messages": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(url, content=b"model=x", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]
    huge = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024)}]})
    r = httpx.post(url, content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(url, json=["not", "an", "object"])
    assert r.status_code == 400


def test_message_larger_than_window_is_400(client) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 5000}])
    assert e.value.code == "context_length_exceeded"


def test_long_conversation_is_fitted_and_says_so(client) -> None:
    turns = []
    for i in range(40):
        turns += [{"role": "user", "content": f"Question {i}: " + "tell me about rivers " * 10},
                  {"role": "assistant", "content": f"Answer {i}: " + "rivers flow to the sea " * 10}]
    messages = [{"role": "system", "content": "You are terse."}, *turns, {"role": "user", "content": "Bye."}]
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, max_tokens=8)
    dropped = int(raw.headers["x-baimo-context"].split("dropped=")[1])
    assert 0 < dropped < len(messages)
    assert raw.parse().usage.prompt_tokens <= 2048 - 8


def test_concurrent_requests_to_one_local_model_each_get_a_whole_answer(server) -> None:
    """Parallel slots: four streams at once each get their own complete answer, with their own usage."""
    from concurrent.futures import ThreadPoolExecutor

    prompts = [f"Repeat the number {n} three times." for n in (11, 22, 33, 44)]

    def ask(prompt: str):
        c = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=120)
        chunks = list(c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}],
                                                max_tokens=12, temperature=0, stream=True,
                                                stream_options={"include_usage": True}))
        return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices), chunks

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(ask, prompts))
    for streamed, chunks in results:
        assert streamed and chunks[-1].usage.completion_tokens > 0
        assert len({ch.id for ch in chunks}) == 1  # one completion per stream: nothing interleaved
        assert sum(1 for ch in chunks if ch.choices and ch.choices[0].finish_reason) == 1


# ---- embeddings: field cases F08 and F09 -------------------------------------------------------------------------

def test_embeddings_base64_matches_float(server) -> None:
    body = {"model": EMBEDDER, "input": ["hello world", "bonjour le monde"]}
    floats = httpx.post(server.base_url + "/embeddings", json={**body, "encoding_format": "float"}).json()
    packed = httpx.post(server.base_url + "/embeddings", json={**body, "encoding_format": "base64"}).json()
    import numpy as np

    assert packed["object"] == "list" and packed["usage"]["prompt_tokens"] > 0
    for f, b in zip(floats["data"], packed["data"], strict=True):
        raw = base64.b64decode(b["embedding"])
        assert len(raw) == 4 * len(f["embedding"])
        assert np.allclose(np.frombuffer(raw, dtype="<f4"), f["embedding"], atol=1e-6)
    r = httpx.post(server.base_url + "/embeddings", json={**body, "encoding_format": "md5"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "encoding_format"


@pytest.mark.parametrize("value", [[[9906, 1917]], [9906, 1917], "", ["ok", ""], []])
def test_embedding_inputs_that_are_not_text_are_400_naming_input(server, value) -> None:
    r = httpx.post(server.base_url + "/embeddings", json={"model": EMBEDDER, "input": value})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "input" and err["message"]
    if value and isinstance(value[0], int | list):
        assert "send the text" in err["message"]
    after = httpx.post(server.base_url + "/embeddings", json={"model": EMBEDDER, "input": "still fine"})
    assert after.status_code == 200
