"""Every OpenAI chat feature on a local model (SmolLM2 in a llama-server worker), through the real HTTP API:
structured output, logprobs, n, tools, samplers, stop, content parts, the developer role, legacy completions.
Field cases from ../shared/field-cases/ are named where they apply."""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import pytest

pytestmark = pytest.mark.e2e
MODEL = "local/smollm2-135m"
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}
SQRT_TOOL = {"type": "function", "function": {"name": "sqrt", "description": "Square root of x",
                                               "parameters": {"type": "object", "properties": {"x": {"type": "number"}},
                                                              "required": ["x"]}}}


def strict_json(text: str):
    """Parse as a strict JSON parser would: NaN and Infinity are errors."""
    def bad(name: str):
        raise ValueError(f"non-finite number {name} in JSON")
    return json.loads(text, parse_constant=bad)


def post(server, body: dict, path: str = "/chat/completions") -> httpx.Response:
    return httpx.post(server.base_url + path, json={"model": MODEL, **body}, timeout=120)


def stream(server, body: dict, path: str = "/chat/completions") -> list[dict]:
    chunks = []
    with httpx.stream("POST", server.base_url + path, json={"model": MODEL, "stream": True, **body},
                      timeout=120) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            assert not line.startswith("event: error"), line
            if line.startswith("data: {"):
                chunks.append(strict_json(line[6:]))
    return chunks


def say(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def error_of(r: httpx.Response, status: int = 400) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    return err


# ---- structured output ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("streamed", [False, True])
def test_json_schema_strict_output_validates(server, streamed) -> None:
    body = {"messages": say("Invent a person. Answer in JSON."), "max_tokens": 60, "temperature": 0.7, "seed": 3,
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": True,
                                                                      "schema": PERSON}}}
    if streamed:
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in stream(server, body) if c["choices"])
    else:
        text = post(server, body).json()["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(text), PERSON)


def test_json_object_output_parses(server) -> None:
    r = post(server, {"messages": say("Answer with a JSON object with one key, ok, set to true."), "max_tokens": 200,
                      "temperature": 0,
                      "response_format": {"type": "json_object"}})
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice  # ended on its own, so the grammar's JSON is complete
    assert isinstance(json.loads(choice["message"]["content"]), dict)


@pytest.mark.parametrize("schema", [
    {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    {"type": "object", "properties": {"mail": {"type": "string", "format": "email"}}},
    {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
    {"not": {"type": "string"}},
])
def test_a_schema_local_models_cannot_enforce_is_400(server, schema) -> None:
    r = post(server, {"messages": say("hi"), "response_format": {
        "type": "json_schema", "json_schema": {"name": "s", "strict": True, "schema": schema}}})
    assert error_of(r)["param"] == "response_format"


# ---- logprobs (F10) -------------------------------------------------------------------------------------------

def test_logprobs_in_the_chat_shape_and_finite(server) -> None:
    r = post(server, {"messages": say("Say yes."), "logprobs": True, "top_logprobs": 5, "top_p": 0.1,
                      "temperature": 1, "max_tokens": 4})
    body = strict_json(r.text)
    tokens = body["choices"][0]["logprobs"]["content"]
    assert 1 <= len(tokens) <= 4
    for t in tokens:
        assert isinstance(t["token"], str) and math.isfinite(t["logprob"]) and t["logprob"] <= 0
        assert isinstance(t["bytes"], list) and 1 <= len(t["top_logprobs"]) <= 5
        assert all(math.isfinite(a["logprob"]) for a in t["top_logprobs"])


def test_logprobs_streamed_and_without_alternatives(server) -> None:
    chunks = stream(server, {"messages": say("Say yes."), "logprobs": True, "max_tokens": 4})
    tokens = [t for c in chunks if c["choices"] and c["choices"][0].get("logprobs")
              for t in c["choices"][0]["logprobs"]["content"]]
    assert tokens and all(t["top_logprobs"] == [] for t in tokens)  # none asked for: none given, as OpenAI


@pytest.mark.parametrize("patch,param", [({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
                                         ({"logprobs": False, "top_logprobs": 3}, "top_logprobs")])
def test_logprobs_out_of_range_is_400(server, patch, param) -> None:
    assert error_of(post(server, {"messages": say("hi"), **patch}))["param"] == param


# ---- n (F07) --------------------------------------------------------------------------------------------------

def test_n_gives_that_many_choices(server) -> None:
    r = post(server, {"messages": say("Name a random fruit."), "n": 2, "temperature": 1.0, "max_tokens": 8})
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert all(c["message"]["content"] for c in body["choices"])
    single = post(server, {"messages": say("Name a random fruit."), "temperature": 1.0, "max_tokens": 8}).json()
    assert body["usage"]["completion_tokens"] > single["usage"]["completion_tokens"] - 1  # both choices counted
    chunks = stream(server, {"messages": say("Name a random fruit."), "n": 2, "max_tokens": 8,
                             "stream_options": {"include_usage": True}})
    indices = {c["choices"][0]["index"] for c in chunks if c["choices"]}
    assert indices == {0, 1}
    finals = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert sorted(f["index"] for f in finals) == [0, 1]


def test_n_above_the_maximum_is_400(server) -> None:
    assert error_of(post(server, {"messages": say("hi"), "n": 9}))["param"] == "n"


# ---- tools (F03) ----------------------------------------------------------------------------------------------

def test_a_named_tool_choice_calls_that_function(server) -> None:
    other = {"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    r = post(server, {"messages": say("What is the square root of 101?"), "tools": [other, SQRT_TOOL],
                      "tool_choice": {"type": "function", "function": {"name": "sqrt"}}, "max_tokens": 120,
                      "temperature": 0})
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "sqrt" and call["id"]
    assert isinstance(json.loads(call["function"]["arguments"])["x"], int | float)


def test_tool_choice_required_streams_tool_call_deltas(server) -> None:
    chunks = stream(server, {"messages": say("Square root of 16?"), "tools": [SQRT_TOOL],
                             "tool_choice": "required", "max_tokens": 120, "temperature": 0})
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls = [tc for d in deltas for tc in d.get("tool_calls") or []]
    assert calls and calls[0]["function"]["name"] == "sqrt"
    assert any(c["choices"][0]["finish_reason"] == "tool_calls" for c in chunks if c["choices"])


@pytest.mark.parametrize("assistant", [
    {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                          "function": {"name": "sqrt", "arguments": "{\"x\": 101}"}}]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "sqrt", "arguments": "{\"x\": 101}"}}]},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "sqrt", "arguments": "{\"x\": 101}"}}]},
])
@pytest.mark.parametrize("tool_choice", [None, "none", "auto"])
def test_a_tool_round_trip_history_is_answered(server, assistant, tool_choice) -> None:
    messages = [{"role": "user", "content": "What is the square root of 101? Use the tool."}, assistant,
                {"role": "tool", "tool_call_id": "call_1", "content": "10.05"}]
    body = {"messages": messages, "tools": [SQRT_TOOL], "max_tokens": 32}
    if tool_choice:
        body["tool_choice"] = tool_choice
    r = post(server, body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")


# ---- samplers, stop (F06), max_tokens null (F05) ---------------------------------------------------------------

def test_every_sampler_is_accepted(server) -> None:
    r = post(server, {"messages": say("Name a colour."), "max_tokens": 8, "top_k": 20, "min_p": 0.05,
                      "repeat_penalty": 1.1, "frequency_penalty": 0.5, "presence_penalty": 0.3,
                      "logit_bias": {"42": -100}, "seed": 7, "top_p": 0.9, "temperature": 0.8})
    assert r.status_code == 200, r.text


def test_an_argument_a_local_model_does_not_use_is_400(server) -> None:
    err = error_of(post(server, {"messages": say("hi"), "guided_json": {"type": "object"}}))
    assert err["param"] == "guided_json" and err["code"] == "unknown_parameter"


@pytest.mark.parametrize("as_list", [False, True])
def test_stop_ends_before_the_sequence(server, as_list) -> None:
    base = {"messages": say("Write three short sentences about the sea."), "max_tokens": 40, "temperature": 0}
    free = post(server, base).json()["choices"][0]["message"]["content"]
    words = [w for w in free.split() if w.isalpha() and len(w) > 3]
    word = words[min(2, len(words) - 1)]
    stop = [word, "zzzq"] if as_list else word
    cut = post(server, {**base, "stop": stop}).json()["choices"][0]
    assert word not in cut["message"]["content"] and cut["finish_reason"] == "stop"
    assert free.startswith(cut["message"]["content"].rstrip()[:10])


@pytest.mark.parametrize("stop", [[], None])
def test_empty_stop_keeps_the_models_own_end(server, stop) -> None:
    c = post(server, {"messages": say("Say hi."), "stop": stop, "max_tokens": 64}).json()["choices"][0]
    for marker in ("<|im_end|>", "</s>", "<|eot_id|>", "<|endoftext|>"):
        assert marker not in c["message"]["content"]


def test_more_than_four_stops_is_400(server) -> None:
    err = error_of(post(server, {"messages": say("hi"), "stop": ["a", "b", "c", "d", "e"]}))
    assert err["param"] == "stop" and "4" in err["message"]


def test_null_limits_mean_no_limit(server) -> None:
    r = post(server, {"messages": say("Say hi."), "max_tokens": None, "max_completion_tokens": None, "temperature": 0})
    c = r.json()
    assert c["choices"][0]["finish_reason"] in ("stop", "length") and c["usage"]["completion_tokens"] > 0
    long = post(server, {"messages": say("word " * 5000), "max_tokens": None})
    assert error_of(long)["code"] == "context_length_exceeded"


# ---- content parts (F01), developer role (F02), stream_options (F12) ---------------------------------------------

PARTS = [{"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
         {"role": "user", "content": [{"type": "text", "text": "Say the word"}, {"type": "text", "text": "apple."}]}]


def test_text_parts_work_in_every_role(server) -> None:
    c = post(server, {"messages": PARTS, "max_tokens": 16}).json()
    assert c["choices"][0]["message"]["content"] and c["usage"]["prompt_tokens"] > 0
    chunks = stream(server, {"messages": PARTS, "max_tokens": 16})
    assert any(ch["choices"] and ch["choices"][0]["delta"].get("content") for ch in chunks)


def test_an_image_to_a_text_only_model_is_400_naming_the_content(server) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]
    err = error_of(post(server, {"messages": messages}))
    assert err["param"] == "messages[0].content" and "image" in err["message"]


@pytest.mark.parametrize("streamed", [False, True])
def test_the_developer_role(server, streamed) -> None:
    body = {"messages": [{"role": "developer", "content": "Answer in exactly one word."},
                         {"role": "user", "content": "What colour is the sky on a clear day?"}],
            "max_tokens": 8, "temperature": 0}
    if streamed:
        assert stream(server, body)
    else:
        assert post(server, body).json()["choices"][0]["message"]["content"]


def test_developer_and_parts_through_a_persona(server) -> None:
    r = httpx.post(server.url + "/api/personas", json={"name": "terse", "instructions": "Be brief.",
                                                       "model": MODEL}, timeout=30)
    assert r.status_code in (200, 201), r.text
    body = {"model": "persona/terse", "max_tokens": 8,
            "messages": [{"role": "developer", "content": "One word."}, *PARTS[1:]]}
    assert httpx.post(server.base_url + "/chat/completions", json=body, timeout=120).status_code == 200


def test_stream_options_on_a_non_streaming_request_is_ignored(server) -> None:
    r = post(server, {"messages": say("Hi"), "stream": False, "stream_options": {"include_usage": True},
                      "max_tokens": 8})
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    no_usage = stream(server, {"messages": say("Hi"), "max_tokens": 8, "stream_options": None})
    assert all(c["choices"] for c in no_usage)  # no usage-only chunk unless asked


# ---- many users at once (F14), abandoned streams (F15) -----------------------------------------------------------

def test_concurrent_streams_complete_and_the_server_stays_responsive(server) -> None:
    body = {"messages": say("Count from 1 to 30."), "max_tokens": 96}
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(stream, server, body) for _ in range(4)]
        time.sleep(0.3)
        models = httpx.get(server.base_url + "/models", timeout=5)
        small = post(server, {"messages": say("hi"), "max_tokens": 4})
        results = [f.result() for f in futures]
    assert models.status_code == 200 and small.status_code == 200
    for chunks in results:
        assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]) == 1
    for _ in range(3):
        assert stream(server, body)


def test_an_abandoned_stream_stops_generating(server) -> None:
    body = {"model": MODEL, "messages": say("Count from 1 to 5000, one number per line."), "stream": True,
            "max_tokens": 1500, "temperature": 0}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60) as r:
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data: {")
            if seen == 3:
                break
    started = time.monotonic()
    assert post(server, {"messages": say("hi"), "max_tokens": 4}).status_code == 200
    assert time.monotonic() - started < 10
    time.sleep(1.5)
    recent = httpx.get(server.url + "/api/usage").json()["recent"]
    stopped = [u for u in recent if u.get("status_code") == 499]
    assert stopped and stopped[0]["completion_tokens"] < 200  # metered what was produced, not max_tokens


# ---- legacy completions ------------------------------------------------------------------------------------------

def test_text_completions_with_echo_logprobs_and_n(server) -> None:
    prompt = "The capital of France is"
    r = post(server, {"prompt": prompt, "max_tokens": 6, "temperature": 0, "echo": True, "logprobs": 2, "n": 2},
             path="/completions")
    body = strict_json(r.text)
    assert body["object"] == "text_completion" and [c["index"] for c in body["choices"]] == [0, 1]
    first = body["choices"][0]
    assert first["text"].startswith(prompt) and len(first["text"]) > len(prompt)
    lp = first["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"])
    assert all(len(alts) <= 2 for alts in lp["top_logprobs"]) and body["usage"]["completion_tokens"] > 0
    chunks = stream(server, {"prompt": prompt, "max_tokens": 6}, path="/completions")
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"])


def test_text_completion_suffix_is_400(server) -> None:
    assert error_of(post(server, {"prompt": "def f(", "suffix": "return 1"}, path="/completions"))["param"] == "suffix"
