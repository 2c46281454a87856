"""Remote OpenAI-compatible models against a real scripted upstream HTTP server: streaming, errors, fallbacks."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.support.remote import remote
from tests.support.server import BaimoServer, free_port
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
USER = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def upstream():
    with ScriptedUpstream({"good": Behaviour.ok("Remote models answer well.", token_delay=0.1),
                           "hundred": Behaviour.ok(tokens=100),
                           "broken": Behaviour.fail(500, "boom"),
                           "busy": Behaviour.fail(429, "slow down"),
                           "slow": Behaviour.slow(10),
                           "garbage": Behaviour.malformed(),
                           "dies": Behaviour.midstream_error(3),
                           "echo": Behaviour.echo()}, api_key="sk-upstream") as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    u = upstream.base_url
    config = (
        "default_model: remote/good\nmodels:\n"
        + remote("remote/good", "good", u, api_key_env="UPSTREAM_KEY")
        + remote("remote/hundred", "hundred", u, api_key_env="UPSTREAM_KEY")
        + remote("remote/echo", "echo", u, api_key_env="UPSTREAM_KEY")
        + remote("remote/broken", "broken", u, api_key_env="UPSTREAM_KEY")
        + remote("remote/busy", "busy", u, api_key_env="UPSTREAM_KEY")
        + remote("remote/slow", "slow", u, api_key_env="UPSTREAM_KEY")
        + remote("remote/garbage", "garbage", u, api_key_env="UPSTREAM_KEY")
        + remote("remote/dies", "dies", u, api_key_env="UPSTREAM_KEY")
        + remote("remote/nokey", "good", u)
        + remote("remote/dead", "good", dead, connect_retries=2)
        + remote("remote/flaky", "broken", u, api_key_env="UPSTREAM_KEY", fallbacks="[remote/dead, remote/good]")
        + remote("remote/slow-with-fallback", "slow", u, api_key_env="UPSTREAM_KEY", fallbacks="[remote/echo]")
    )
    with BaimoServer(tmp_path_factory.mktemp("gw"), config, env={"UPSTREAM_KEY": "sk-upstream"}) as s:
        yield s


@pytest.fixture
def oc(gateway):
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0, timeout=30)


def test_non_stream_through_remote(oc, upstream) -> None:
    raw = oc.chat.completions.with_raw_response.create(model="remote/good", messages=USER, max_tokens=50)
    c = raw.parse()
    assert c.choices[0].message.content == "Remote models answer well."
    assert c.model == "remote/good"
    forwarded = upstream.last_request
    assert forwarded.model == "good" and forwarded.authorization == "Bearer sk-upstream"
    assert forwarded.json["max_tokens"] == 50
    cost = (c.usage.prompt_tokens * 1.0 + c.usage.completion_tokens * 2.0) / 1e6
    assert float(raw.headers["x-baimo-cost"]) == pytest.approx(cost)


def test_stream_is_passed_through_as_it_arrives(gateway) -> None:
    # 4 tokens 100 ms apart upstream: the first must reach the client long before the last is produced.
    arrivals = []
    body = {"model": "remote/good", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:") and '"content":"' in line and '"content":""' not in line:
                arrivals.append(time.perf_counter() - start)
    assert len(arrivals) >= 4
    assert arrivals[-1] - arrivals[0] > 0.2


def test_hundred_token_stream_with_usage(oc) -> None:
    chunks = list(oc.chat.completions.create(model="remote/hundred", messages=USER, stream=True,
                                              stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.count("tok") == 100
    assert chunks[-1].usage.completion_tokens == 100


def test_upstream_errors_map_to_gateway_statuses(oc) -> None:
    with pytest.raises(openai.APIStatusError) as e:
        oc.chat.completions.create(model="remote/broken", messages=USER)
    assert e.value.status_code == 502 and "boom" in e.value.message
    with pytest.raises(openai.APIStatusError) as e:
        oc.chat.completions.create(model="remote/busy", messages=USER)
    assert e.value.status_code == 503
    with pytest.raises(openai.APIStatusError) as e:
        oc.chat.completions.create(model="remote/slow", messages=USER)
    assert e.value.status_code == 504
    with pytest.raises(openai.APIStatusError) as e:
        oc.chat.completions.create(model="remote/garbage", messages=USER, stream=True).__next__()
    assert e.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as e:
        oc.chat.completions.create(model="remote/nokey", messages=USER)
    assert e.value.status_code == 502 and e.value.body["type"] == "upstream_error"


def test_unreachable_upstream_is_retried_then_503(oc) -> None:
    started = time.perf_counter()
    with pytest.raises(openai.APIStatusError) as e:
        oc.chat.completions.create(model="remote/dead", messages=USER)
    assert e.value.status_code == 503 and "after 3 attempts" in e.value.message
    assert time.perf_counter() - started >= 0.6  # backoff 0.2 s + 0.4 s between the three attempts


def test_fallbacks_recover_and_the_route_says_so(oc, gateway) -> None:
    raw = oc.chat.completions.with_raw_response.create(model="remote/flaky", messages=USER)
    assert raw.parse().model == "remote/good"
    route = raw.headers["x-baimo-route"]
    assert route.startswith("fallback: remote/flaky failed (502), remote/dead failed (503)")
    assert route.endswith("-> remote/good")
    raw = oc.chat.completions.with_raw_response.create(model="remote/slow-with-fallback", messages=USER,
                                                       stream=True)
    chunks = list(raw.parse())
    assert chunks[0].model == "remote/echo" and "504" in raw.headers["x-baimo-route"]
    recent = httpx.get(gateway.url + "/api/usage").json()["recent"]
    flaky = next(r for r in recent if r["model_requested"] == "remote/flaky")
    assert flaky["model"] == "remote/good" and "fallback" in flaky["route"]


def test_mid_stream_failure_is_an_sse_error_before_done(gateway, oc) -> None:
    body = {"model": "remote/dies", "messages": USER, "stream": True}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert lines[-3] == "event: error" and "mid-stream" in lines[-2]
    chunks = [json.loads(line[6:]) for line in lines[:-3] if line.startswith("data: ")]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert len(text.split()) == 3  # the three tokens sent before the upstream died reached the client
    with pytest.raises(openai.APIError):
        for _ in oc.chat.completions.create(model="remote/dies", messages=USER, stream=True):
            pass
    recent = httpx.get(gateway.url + "/api/usage").json()["recent"]
    assert recent[0]["model"] == "remote/dies" and recent[0]["status_code"] == 502


def test_echo_sees_the_fitted_conversation(oc, upstream) -> None:
    c = oc.chat.completions.create(model="remote/echo", messages=[
        {"role": "developer", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "ping"}]}])
    assert c.choices[0].message.content == "ping"
    assert upstream.last_request.json["messages"][0] == {"role": "developer", "content": "be brief"}  # as sent
