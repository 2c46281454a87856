"""Upstream faults: before the first token Baimo falls back (or answers a clean OpenAI error with the right
status); after it, the stream ends with an SSE `error` event and `[DONE]`; never a hang, never a leaked socket."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.reliability.conftest import EARLY_FAULTS, LATE_FAULTS, UPSTREAM_TIMEOUT_S
from tests.support.remote import sse_events
from tests.support.resources import open_sockets, settle_sockets, sockets_by_state, split_sockets

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
USER = [{"role": "user", "content": "hello there"}]
# No request may take longer than the upstream timeout plus the connect retries and some slack: a hang fails.
CLIENT_TIMEOUT_S = UPSTREAM_TIMEOUT_S * 4
# What reached the client of each late fault before it: 3 tokens, or 1 when the upstream stalls after the first.
LATE_TEXT = {"dies_mid_stream": "Hello from the", "stalls_mid_stream": "Hello",
             "malformed_sse_mid_stream": "Hello from the"}


@pytest.fixture(scope="module")
def oc(gateway):
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0, timeout=CLIENT_TIMEOUT_S)


def stream_lines(gateway, model: str) -> tuple[int, list[str]]:
    body = {"model": model, "messages": USER, "stream": True}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=CLIENT_TIMEOUT_S) as r:
        r.read() if r.status_code != 200 else None
        return r.status_code, [line for line in r.iter_lines() if line] if r.status_code == 200 else [r.text]


@pytest.mark.parametrize("fault", list(EARLY_FAULTS))
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_fault_before_first_token_without_fallback_is_a_clean_error(oc, fault, stream) -> None:
    status = EARLY_FAULTS[fault][1]
    with pytest.raises(openai.APIStatusError) as e:
        answer = oc.chat.completions.create(model=f"bare/{fault}", messages=USER, stream=stream)
        if stream:
            list(answer)
    assert e.value.status_code == status
    assert set(e.value.body) == {"message", "type", "param", "code"}  # the SDK unwraps {"error": {...}}
    assert e.value.body["type"] in ("upstream_error", "server_error", "timeout") and f"bare/{fault}" in e.value.message


@pytest.mark.parametrize("fault", list(EARLY_FAULTS))
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_fault_before_first_token_falls_back(oc, fault, stream) -> None:
    raw = oc.chat.completions.with_raw_response.create(model=f"fb/{fault}", messages=USER, stream=stream)
    answer = raw.parse()
    if stream:
        chunks = list(answer)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        model = chunks[0].model
    else:
        text, model = answer.choices[0].message.content, answer.model
    assert text == "The fallback answered." and model == "good"
    status = str(EARLY_FAULTS[fault][1])
    assert raw.headers["x-baimo-route"].startswith(f"fallback: fb/{fault} failed ({status})")


@pytest.mark.parametrize("fault", list(LATE_FAULTS))
@pytest.mark.parametrize("prefix", ["bare", "fb"])
def test_fault_after_first_token_is_an_sse_error_then_done(gateway, fault, prefix) -> None:
    status, lines = stream_lines(gateway, f"{prefix}/{fault}")
    assert status == 200
    assert lines[-1] == "data: [DONE]"
    events = sse_events(lines)
    name, data = events[-2]
    assert name == "error"
    error = json.loads(data)["error"]
    assert set(error) == {"message", "type", "param", "code"} and f"{prefix}/{fault}" in error["message"]
    chunks = [json.loads(d) for n, d in events[:-2] if n is None]
    assert {c["model"] for c in chunks} == {f"{prefix}/{fault}"}  # no other model spliced in after text was sent
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.split() == LATE_TEXT[fault].split()  # every token sent before the fault reached the client


def one_faulted_request(base_url: str, model: str, stream: bool) -> int:
    body = {"model": model, "messages": USER, "stream": stream}
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as c, c.stream("POST", base_url + "/chat/completions",
                                                               json=body) as r:
        r.read()
        return r.status_code


def test_faulted_batches_leak_no_socket(gateway, faulty_upstream) -> None:
    """Every faulty model twice (JSON and SSE) in each of 2 rounds, models in parallel, each model's requests one
    after another: afterwards the server holds no client connection and at most one idle keep-alive connection
    per model that talked to the upstream (each backend has its own pool), so a leak of one socket per faulted
    request (72 of them) cannot hide; nothing may sit in CLOSE_WAIT (a peer's close never noticed)."""
    pid = gateway.proc.pid
    models = [f"{p}/{f}" for p in ("bare", "fb") for f in [*EARLY_FAULTS, *LATE_FAULTS]]
    before = open_sockets(pid)

    def run(model: str) -> list[int]:
        return [one_faulted_request(gateway.base_url, model, stream) for _ in range(2) for stream in (False, True)]

    with ThreadPoolExecutor(len(models)) as pool:
        statuses = [s for got in pool.map(run, models) for s in got]
    assert len(statuses) == 72 and set(statuses) <= {200, 502, 503, 504}, statuses
    pools = len(models) + 1  # + `good`, the fallback
    settle_sockets(pid, at_most=pools)
    from_clients, to_upstream = split_sockets(pid, gateway.port, faulty_upstream.port)
    by_state = sockets_by_state(pid)
    assert from_clients == 0, by_state
    assert to_upstream <= pools and open_sockets(pid) <= before + pools, (before, by_state)
    assert by_state.get("CLOSE_WAIT", 0) == 0, by_state
