"""Tool calls through the server: passed to a remote model that calls tools, routed there by a `tools` rule,
refused clearly by a local model that cannot call tools. The remote model is a real scripted HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.server import SMOLLM_YAML, BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e

WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream({"tooler": Behaviour("tool_call")}) as u:
        yield u


@pytest.fixture(scope="module")
def tools_server(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaimoServer]:
    config = SMOLLM_YAML.replace("embedders:", (
        "  - id: remote/tooler\n    kind: openai\n    base_url: " + upstream.base_url + "\n"
        "    upstream_model: tooler\n    price_input: 1.0\n    price_output: 2.0\n"
        "routers:\n  - id: baimo/auto\n    strategy: rules\n    rules:\n"
        "      - name: tools\n        tools: true\n        model: remote/tooler\n"
        "    default: local/smollm2-135m\nembedders:"))
    with BaimoServer(tmp_path_factory.mktemp("tools"), config) as s:
        yield s


@pytest.fixture
def client(tools_server: BaimoServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=tools_server.base_url, api_key="unused", max_retries=0, timeout=60)


def test_a_tools_rule_routes_and_the_call_comes_back_whole(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="baimo/auto", tools=WEATHER, messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert raw.headers["x-baimo-route"].startswith("rules:tools")
    resp = raw.parse()
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and resp.model == "remote/tooler"
    call = choice.message.tool_calls[0]
    assert call.id == "call_1" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"q": "Weather in Paris?"}
    assert choice.message.content is None


def test_streamed_tool_calls_and_the_tool_result_turn(client: openai.OpenAI, upstream: ScriptedUpstream) -> None:
    stream = client.chat.completions.create(model="baimo/auto", tools=WEATHER, stream=True,
                                            messages=[{"role": "user", "content": "Weather in Oslo?"}])
    name, arguments, finish = "", "", None
    for chunk in stream:
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                name += tc.function.name or ""
                arguments += tc.function.arguments or ""
            finish = c.finish_reason or finish
    assert name == "get_weather" and json.loads(arguments) == {"q": "Weather in Oslo?"} and finish == "tool_calls"

    history = [{"role": "user", "content": "Weather in Oslo?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "-3 C and snow"}]
    upstream.clear()
    resp = client.chat.completions.create(model="baimo/auto", tools=WEATHER, messages=history)
    assert resp.choices[0].message.content == "Tool said: -3 C and snow"
    sent = upstream.last_request.body
    assert sent["tools"] == WEATHER
    assert sent["messages"][1]["tool_calls"][0]["id"] == "call_1" and sent["messages"][2]["tool_call_id"] == "call_1"


def test_a_local_model_calls_tools_too(client: openai.OpenAI, tools_server: BaimoServer) -> None:
    resp = client.chat.completions.create(model="local/smollm2-135m", tools=WEATHER, tool_choice="required",
                                          max_tokens=120, temperature=0,
                                          messages=[{"role": "user", "content": "Weather in Oslo?"}])
    assert resp.choices[0].finish_reason == "tool_calls"
    assert resp.choices[0].message.tool_calls[0].function.name == WEATHER[0]["function"]["name"]
    bad = httpx.post(f"{tools_server.url}/v1/chat/completions", json={
        "model": "remote/tooler", "messages": [{"role": "tool", "content": "x"}]})
    assert bad.status_code == 400 and "tool_call_id" in bad.json()["error"]["message"]
    # without tools the same router still sends plain chat to the local model
    plain = client.chat.completions.with_raw_response.create(
        model="baimo/auto", max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    assert plain.headers["x-baimo-route"].endswith("-> local/smollm2-135m")
