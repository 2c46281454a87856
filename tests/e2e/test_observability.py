"""Observability end to end: request ids, JSON logs, /metrics, OpenTelemetry traces, and no secret anywhere.

One real `baimo serve` (JSON logs at info level, traces exported to a real OTLP/HTTP receiver in this process, as
`observability.otel_endpoint` in baimo.yaml says) in front of the real scripted upstream, which demands an upstream
key. An API key is created first (`baimo keys create`), so every call carries one. Clients: the official openai
SDK and httpx; the CLI as a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.remote import remote
from tests.support.server import BAIMO, BaimoServer, models_dir
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
UPSTREAM_KEY = "sk-upstream-" + "Q7rT2yU8iO0pLkJhGfDs"
WRONG_UPSTREAM_KEY = "sk-wrong-" + "Z1xC2vB3nM4aS5dF6gH7"
USER = [{"role": "user", "content": "Why is the sky blue?"}]


class OtlpReceiver:
    """A tiny OTLP/HTTP trace receiver: POST /v1/traces bodies (protobuf ExportTraceServiceRequest), decoded."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path == "/v1/traces":
                    message = ExportTraceServiceRequest()
                    message.ParseFromString(body)
                    receiver.requests.append(message)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[Any]:
        return [span for request in list(self.requests) for rs in request.resource_spans
                for ss in rs.scope_spans for span in ss.spans]


@pytest.fixture(scope="module")
def receiver():
    r = OtlpReceiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def upstream():
    with ScriptedUpstream({"ok": Behaviour.ok("The sky scatters blue light.", tokens=6),
                           "broken": Behaviour.fail(500, "internal failure"),
                           "slowly": Behaviour.ok("one two three four", tokens=4, token_delay=0.05),
                           # an upstream that echoes the rejected key in its message, as some do
                           "echo-key": Behaviour.fail(401, f"Incorrect API key provided: {WRONG_UPSTREAM_KEY}")},
                          api_key=UPSTREAM_KEY) as up:
        yield up


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BAIMO_HOME": str(home), "BAIMO_MODELS_DIR": models_dir()}
    return subprocess.run([str(BAIMO), *args], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def gateway(upstream, receiver, tmp_path_factory):
    home = tmp_path_factory.mktemp("observability")
    u = upstream.base_url
    config = ("default_model: remote/ok\nmodels:\n"
              + remote("remote/ok", "ok", u, api_key_env="OBS_UPSTREAM_KEY")
              + remote("remote/slow", "slowly", u, api_key_env="OBS_UPSTREAM_KEY")
              + remote("remote/broken", "broken", u, api_key_env="OBS_UPSTREAM_KEY")
              + remote("remote/wrong-key", "ok", u, api_key_env="OBS_WRONG_KEY")
              + remote("remote/echo-key", "echo-key", u, api_key_env="OBS_UPSTREAM_KEY")
              + "routers:\n  - id: baimo/rules\n    strategy: rules\n    default: remote/ok\n"
              + f"observability:\n  otel_endpoint: {receiver.url}\n")
    server = BaimoServer(home, config, env={"OBS_UPSTREAM_KEY": UPSTREAM_KEY, "OBS_WRONG_KEY": WRONG_UPSTREAM_KEY},
                         args=["--log-level", "info", "--log-format", "json"])
    (home / "baimo.yaml").parent.mkdir(parents=True, exist_ok=True)
    created = _cli(home, "keys", "create", "observer", "--json")
    assert created.returncode == 0, created.stderr
    server.api_key = json.loads(created.stdout)["key"]
    with server:
        yield server


@pytest.fixture(scope="module")
def oc(gateway):
    return openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def api(gateway):
    with httpx.Client(base_url=gateway.url, timeout=30,
                      headers={"authorization": f"Bearer {gateway.api_key}"}) as client:
        yield client


def metric_samples(api: httpx.Client) -> dict[tuple[str, frozenset], float]:
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def log_lines(gateway: BaimoServer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]


def wait_for(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_request_ids_are_echoed_generated_and_on_every_log_line(oc, api, gateway) -> None:
    # a completion without an id from the client: the request's id is the completion's id
    raw = oc.chat.completions.with_raw_response.create(model="remote/ok", messages=USER)
    completion = raw.parse()
    assert raw.headers["x-request-id"] == completion.id and completion.id.startswith("chatcmpl-")
    # the client's sane id is echoed: JSON, stream, and errors
    mine = api.post("/v1/chat/completions", json={"model": "remote/ok", "messages": USER},
                    headers={"x-request-id": "trace-7f3a.2"})
    assert mine.headers["x-request-id"] == "trace-7f3a.2"
    records = {r["request_id"]: r for r in api.get("/api/usage").json()["recent"]}  # written before the answer ends
    assert records["trace-7f3a.2"]["response_id"] == mine.json()["id"]
    assert records[completion.id]["response_id"] == completion.id
    with api.stream("POST", "/v1/chat/completions", headers={"x-request-id": "stream:42"},
                    json={"model": "remote/slow", "messages": USER, "stream": True}) as stream:
        assert stream.headers["x-request-id"] == "stream:42"
        assert "[DONE]" in "".join(stream.iter_lines())
    missing = api.post("/v1/chat/completions", json={"model": "no/such", "messages": USER},
                       headers={"x-request-id": "err-1"})
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "err-1"
    # an id that is not a sane token is replaced; a route without a completion gets req_...
    odd = api.get("/v1/models", headers={"x-request-id": "x" * 129})
    assert odd.headers["x-request-id"].startswith("req_") and len(odd.headers["x-request-id"]) == 28
    unauth = httpx.get(gateway.url + "/v1/models", headers={"x-request-id": "no-key"})
    assert unauth.status_code == 401 and unauth.headers["x-request-id"] == "no-key"

    def access(rid: str) -> dict[str, Any] | None:
        return next((line for line in log_lines(gateway)
                     if line.get("logger") == "baimo.access" and line["request_id"] == rid), None)

    line = wait_for(lambda: access("stream:42"))
    assert line is not None, gateway.log()[-3000:]
    assert line["method"] == "POST" and line["path"] == "/v1/chat/completions" and line["status"] == 200
    assert line["model"] == "remote/slow" and line["latency_ms"] >= 150  # 4 tokens 50 ms apart, at least
    assert access("err-1")["status"] == 404 and access(completion.id)["model"] == "remote/ok"
    assert {"time", "level", "logger", "message", "request_id"} <= set(line)


def test_metrics_count_requests_tokens_cost_latency_and_errors(oc, api) -> None:
    before = metric_samples(api)
    for _ in range(3):
        oc.chat.completions.create(model="remote/ok", messages=USER)
    stream = oc.chat.completions.create(model="baimo/rules", messages=USER, stream=True,
                                        stream_options={"include_usage": True})
    usage = [c.usage for c in stream if c.usage][0]
    with pytest.raises(openai.NotFoundError):
        oc.chat.completions.create(model="no/such-model", messages=USER)
    with pytest.raises(openai.InternalServerError):
        oc.chat.completions.create(model="remote/broken", messages=USER)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    after = wait_for(lambda: (s := metric_samples(api)) and sample(s, "baimo_requests_total", model="remote/ok",
                              route_kind="routed", endpoint="chat.completions", status="200")
                     > sample(before, "baimo_requests_total", model="remote/ok", route_kind="routed",
                              endpoint="chat.completions", status="200") and s)
    assert after, "the routed stream was never counted"
    direct = {"model": "remote/ok", "route_kind": "direct", "endpoint": "chat.completions", "status": "200"}
    assert delta("baimo_requests_total", **direct) == 3
    assert delta("baimo_requests_total", model="remote/ok", route_kind="routed", endpoint="chat.completions",
                 status="200") == 1
    assert delta("baimo_requests_total", model="none", route_kind="none", endpoint="chat.completions",
                 status="502") == 1
    assert delta("baimo_tokens_total", model="remote/ok", kind="completion") == 3 * 6 + usage.completion_tokens
    assert delta("baimo_tokens_total", model="remote/ok", kind="prompt") > 0
    # 1.0 / 2.0 USD per million tokens (tests/support/remote.py)
    assert delta("baimo_cost_usd_total", model="remote/ok") > 0
    assert delta("baimo_request_duration_seconds_count", model="remote/ok", route_kind="direct") == 3
    assert delta("baimo_time_to_first_token_seconds_count", model="remote/ok", route_kind="routed") == 1
    assert delta("baimo_errors_total", type="invalid_request_error", code="model_not_found") == 1
    assert delta("baimo_errors_total", type="upstream_error", code="bad_gateway") == 1
    assert delta("baimo_http_requests_total", method="POST", route="/v1/chat/completions", status="404") == 1
    assert ("baimo_ingest_jobs", frozenset({("status", "running")})) in after
    # label values come from the configuration: the unknown model id is not a label anywhere
    assert not any("no/such-model" in str(labels) for _, labels in after)


def test_traces_have_a_request_span_with_route_and_model_call_children(oc, receiver) -> None:
    raw = oc.chat.completions.with_raw_response.create(model="baimo/rules", messages=USER)
    request_id = raw.headers["x-request-id"]

    def spans_of_request() -> list[Any]:
        spans = receiver.spans()
        roots = [s for s in spans if any(a.key == "baimo.request_id" and a.value.string_value == request_id
                                         for a in s.attributes)]
        return [s for s in spans if roots and s.trace_id == roots[0].trace_id]

    spans = wait_for(lambda: len(spans_of_request()) >= 3 and spans_of_request())
    assert spans, f"no spans of {request_id}: {[s.name for s in receiver.spans()]}"
    by_name = {s.name: s for s in spans}
    root = by_name["POST /v1/chat/completions"]
    assert root.parent_span_id == b""
    for child in ("baimo.route", "baimo.model_call"):
        assert by_name[child].parent_span_id == root.span_id, child
    attributes = {a.key: a.value for a in by_name["baimo.model_call"].attributes}
    assert attributes["gen_ai.request.model"].string_value == "remote/ok"
    assert attributes["gen_ai.usage.output_tokens"].int_value == 6
    assert attributes["baimo.route"].string_value.endswith("-> remote/ok")


def test_a_knowledge_answer_has_a_retrieval_span_and_ingestion_is_counted(api, receiver) -> None:
    assert api.post("/api/knowledge", json={"name": "manual"}).status_code == 201
    files = [("files", ("valves.md", b"# Valves\n\nThe Quorvath valve is inspected every 400 hours.\n",
                        "text/markdown"))]
    job = api.post("/api/knowledge/manual/documents?wait=true", files=files, timeout=120).json()
    assert job["status"] == "done", job
    r = api.post("/v1/chat/completions", json={"model": "remote/ok", "messages": [
        {"role": "user", "content": "How often is the Quorvath valve inspected?"}],
        "knowledge": {"bases": ["manual"], "k": 2}})
    assert r.status_code == 200 and r.json()["citations"]
    request_id = r.headers["x-request-id"]

    def spans_of_request() -> dict[str, Any]:
        spans = receiver.spans()
        root = next((s for s in spans if any(a.key == "baimo.request_id" and a.value.string_value == request_id
                                             for a in s.attributes)), None)
        return {s.name: s for s in spans if root is not None and s.trace_id == root.trace_id}

    spans = wait_for(lambda: "baimo.retrieval" in (found := spans_of_request()) and found)
    assert spans, f"no retrieval span for {request_id}: {[s.name for s in receiver.spans()]}"
    root = spans["POST /v1/chat/completions"]
    assert spans["baimo.retrieval"].parent_span_id == root.span_id
    assert spans["baimo.model_call"].parent_span_id == root.span_id
    assert {a.key: a.value.int_value for a in spans["baimo.retrieval"].attributes}["baimo.knowledge.k"] == 2
    assert sample(metric_samples(api), "baimo_ingest_jobs", status="done") >= 1


def test_no_key_hash_or_upstream_credential_appears_anywhere(oc, api, gateway, upstream) -> None:
    secrets = {gateway.api_key, UPSTREAM_KEY, WRONG_UPSTREAM_KEY}
    secrets |= {hashlib.sha256(s.encode()).hexdigest() for s in list(secrets)}
    bodies: list[str] = []
    # a wrong Baimo key, an upstream refusing Baimo's key (401), an upstream failing (500), all logged
    for key in ("bm-" + "W" * 43, f"{gateway.api_key}x"):
        r = httpx.post(gateway.base_url + "/chat/completions", json={"model": "remote/ok", "messages": USER},
                       headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 401
        bodies.append(r.text)
    for model in ("remote/wrong-key", "remote/echo-key", "remote/broken"):
        r = api.post("/v1/chat/completions", json={"model": model, "messages": USER})
        assert r.status_code >= 400
        bodies.append(r.text)
    with api.stream("POST", "/v1/chat/completions", json={"model": "remote/wrong-key", "messages": USER,
                                                          "stream": True}) as s:
        bodies.append(s.read().decode())
    # a stored conversation, then its export through the CLI
    conv = api.post("/api/conversations", json={}).json()
    answered = api.post("/v1/chat/completions", json={"model": "remote/ok", "messages": USER,
                                                      "metadata": {"conversation_id": conv["id"]}})
    assert answered.status_code == 200
    assert upstream.requests_for("/chat/completions")[-1].authorization == f"Bearer {UPSTREAM_KEY}"
    exported = _cli(gateway.home, "conversations", "export", conv["id"])
    assert exported.returncode == 0 and "sky" in exported.stdout, exported.stderr
    places = {"server log": gateway.log(), "metrics": api.get("/metrics").text, "error bodies": "\n".join(bodies),
              "export": exported.stdout + exported.stderr,
              "usage": api.get("/api/usage").text, "models": api.get("/v1/models").text}
    assert "invalid_api_key" in places["error bodies"]
    assert "Incorrect API key provided: sk-[REDACTED]" in places["error bodies"]  # the echoed key, redacted
    assert '"status": 401' in places["server log"]
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:6]}...) appears in the {where}"
