"""Budgets and rate limits end to end: two `baimo serve` processes sharing one database and one Redis (Debian's
redis-server), a scripted upstream with known token counts and prices, the official openai SDK and the CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from baimo.store.database import Database
from tests.support.redis_server import TempRedis
from tests.support.server import BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
BAIMO = str(Path(sys.executable).parent / "baimo")
USER = [{"role": "user", "content": "Say hi"}]
# remote/ten answers 10 tokens; at 100 USD per million prompt tokens and 1,000 per million completion tokens a
# request of USER costs about $0.011 (the upstream's prompt count times 100e-6, plus 10 x 1000e-6).


def config(upstream_url: str) -> str:
    models = "".join(f"  - id: remote/{name}\n    kind: openai\n    base_url: {upstream_url}\n"
                     f"    upstream_model: {name}\n    price_input: 100\n    price_output: 1000\n"
                     "    context_window: 8192\n    timeout: 10\n" for name in ("ten", "broken", "dies"))
    return (f"default_model: remote/ten\nmodels:\n{models}"
            "privacy:\n  mode: \"off\"\n")  # no personal-data detector to load: faster starts


@pytest.fixture(scope="module")
def upstream():
    with ScriptedUpstream({"ten": Behaviour.ok(tokens=10, token_delay=0.01), "broken": Behaviour.fail(500, "boom"),
                           "dies": Behaviour.midstream_error(3)}) as up:
        yield up


@pytest.fixture(scope="module")
def redis():
    with TempRedis() as r:
        yield r


@pytest.fixture(scope="module")
def replicas(upstream, redis, tmp_path_factory):
    """Two servers, one SQLite database file (BAIMO_DATABASE_URL) and one Redis (BAIMO_REDIS_URL)."""
    root = tmp_path_factory.mktemp("replicas")
    env = {"BAIMO_DATABASE_URL": f"sqlite:///{root / 'shared.db'}", "BAIMO_REDIS_URL": redis.url}
    servers = [BaimoServer(root / name, config(upstream.base_url), env=env) for name in ("a", "b")]
    Database(env["BAIMO_DATABASE_URL"]).close()  # migrate once here, then start both at once
    failures: list[BaseException] = []

    def start(server: BaimoServer) -> None:
        try:
            server.start()
        except BaseException as exc:
            failures.append(exc)

    starting = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in starting:
        t.start()
    for t in starting:
        t.join()
    try:
        assert not failures, failures
        yield servers
    finally:
        for s in servers:
            s.stop()


@pytest.fixture(scope="module")
def admin(replicas) -> dict[str, str]:
    """Headers of an admin key, made through the API while auth is still off (the local user is an admin)."""
    r = httpx.post(replicas[0].url + "/api/keys", json={"name": "admin", "admin": True})
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['key']}"}


def api_key(server: BaimoServer, admin: dict[str, str], name: str, limits: dict, team: str | None = None) -> dict:
    """A key made with POST /api/keys, limited with PUT /api/keys/{id}/limits."""
    r = httpx.post(server.url + "/api/keys", json={"name": name, "team": team}, headers=admin)
    assert r.status_code == 201, r.text
    key = r.json()
    if limits:
        r = httpx.put(f"{server.url}/api/keys/{key['id']}/limits", json=limits, headers=admin)
        assert r.status_code == 200, r.text
    return key


def cli(server: BaimoServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BAIMO, *args], env=server.env, capture_output=True, text=True, timeout=60)


def recorded(server: BaimoServer, key_id: str) -> tuple[int, float, float]:
    """(answered requests, the total cost of all its requests, the dearest one's cost) of a key, from usage."""
    db = sqlite3.connect(server.env["BAIMO_DATABASE_URL"].split("///", 1)[1])
    try:
        return db.execute("SELECT coalesce(sum(status_code = 200), 0), coalesce(sum(cost), 0), "
                          "coalesce(max(cost), 0) FROM usage WHERE api_key_id = ?", (key_id,)).fetchone()
    finally:
        db.close()


def test_fifty_concurrent_requests_across_two_replicas_never_overspend_a_budget(replicas, admin) -> None:
    a, b = replicas
    budget = 0.20  # room for 18 requests
    key = api_key(a, admin, "race", {"budget_usd": budget, "period": "day"})
    results: list[tuple[int, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(50)

    def one(i: int) -> None:
        server = (a, b)[i % 2]
        body = {"model": "remote/ten", "messages": USER, "max_tokens": 10, "stream": i % 4 < 2,
                "stream_options": {"include_usage": True}}
        headers = {"authorization": f"Bearer {key['key']}"}
        barrier.wait()
        with httpx.Client(timeout=60) as client, client.stream(
                "POST", server.base_url + "/chat/completions", json=body, headers=headers) as r:
            text = r.read().decode()
        with lock:
            results.append((r.status_code, text))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    ok = [t for s, t in results if s == 200]
    refused = [json.loads(t)["error"] for s, t in results if s == 429]
    assert len(results) == 50 and len(ok) + len(refused) == 50, [s for s, _ in results]
    assert all(e["code"] == "insufficient_quota" and e["type"] == "insufficient_quota" for e in refused)
    assert "daily budget of $0.20" in refused[0]["message"] and refused[0]["message"].startswith("key ")
    assert all("data: [DONE]" in t or '"chat.completion"' in t for t in ok)
    answered, spent, one_request = recorded(a, key["id"])
    assert answered == len(ok) and 0.01 < one_request < 0.012
    assert spent <= budget + one_request  # the overspend is at most one request (here: none)
    assert spent > budget - 2 * one_request  # and the budget is used, not hoarded by reservations
    shown = json.loads(cli(b, "keys", "limit", "race", "--json").stdout)["limits"]
    assert shown["spent_usd"] == pytest.approx(spent) and shown["reserved_usd"] == 0
    assert shown["budget_usd"] == budget and shown["period"] == "day"


def test_rpm_is_shared_by_replicas_through_redis_and_seen_by_the_openai_sdk(replicas, admin) -> None:
    a, b = replicas
    key = api_key(a, admin, "rpm3", {"rpm": 3, "tpm": 100000})
    clients = [openai.OpenAI(base_url=s.base_url, api_key=key["key"], max_retries=0, timeout=30) for s in (a, b)]
    remaining = []
    for i in range(3):
        raw = clients[i % 2].chat.completions.with_raw_response.create(model="remote/ten", messages=USER)
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]  # one count across both processes
    with pytest.raises(openai.RateLimitError) as exc:
        clients[1].chat.completions.create(model="remote/ten", messages=USER, stream=True)
    err = exc.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded" and err.type == "requests"
    assert int(err.response.headers["retry-after"]) >= 1
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert "requests per min (RPM): Limit 3" in err.message


def test_tpm_counts_the_reply_cap_and_streams_carry_the_headers(replicas, admin) -> None:
    a, b = replicas
    key = api_key(a, admin, "tpm", {"tpm": 300})
    client = openai.OpenAI(base_url=b.base_url, api_key=key["key"], max_retries=0, timeout=30)
    with client.chat.completions.with_streaming_response.create(model="remote/ten", messages=USER, max_tokens=100,
                                                                stream=True) as r:
        assert r.headers["x-ratelimit-limit-tokens"] == "300"
        assert int(r.headers["x-ratelimit-remaining-tokens"]) < 300 - 100
        assert "x-ratelimit-limit-requests" not in r.headers  # no RPM on this key
        list(r.iter_lines())
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="remote/ten", messages=USER, max_tokens=500)
    assert exc.value.type == "tokens" and "Request too large" in exc.value.message
    assert httpx.put(f"{a.url}/api/keys/tpm/limits", json={"budget_usd": 0}, headers=admin).status_code == 200
    spent = openai.OpenAI(base_url=a.base_url, api_key=key["key"], timeout=30)  # the SDK's default retries
    with pytest.raises(openai.RateLimitError) as exc:
        spent.chat.completions.create(model="remote/ten", messages=USER, max_tokens=5)
    assert exc.value.code == "insufficient_quota" and exc.value.response.headers["x-should-retry"] == "false"
    assert exc.value.response.headers["x-ratelimit-limit-tokens"] == "300"  # a limited key's headers, even here
    with pytest.raises(openai.RateLimitError) as exc:  # legacy completions are counted the same way
        openai.OpenAI(base_url=b.base_url, api_key=key["key"], max_retries=0).completions.create(
            model="remote/ten", prompt="hi", max_tokens=250)
    assert exc.value.code == "rate_limit_exceeded"


def test_a_team_limit_counts_all_its_keys(replicas, admin) -> None:
    a, b = replicas
    first, second = (api_key(a, admin, name, {}, team="squad") for name in ("squad-1", "squad-2"))
    r = httpx.put(f"{b.url}/api/teams/squad/limits", json={"rpm": 2}, headers=admin)
    assert r.status_code == 200 and r.json()["limits"]["rpm"] == 2
    clients = [openai.OpenAI(base_url=s.base_url, api_key=k["key"], max_retries=0)
               for s, k in ((a, first), (b, second))]
    for c in clients:
        c.chat.completions.create(model="remote/ten", messages=USER)
    with pytest.raises(openai.RateLimitError) as exc:
        clients[0].chat.completions.create(model="remote/ten", messages=USER)
    assert "team " in exc.value.message


def test_failed_requests_give_their_reservation_back_and_cut_streams_pay_what_they_used(replicas, admin) -> None:
    a, b = replicas
    key = api_key(a, admin, "failing", {"budget_usd": 1.0, "period": "month"})
    client = openai.OpenAI(base_url=a.base_url, api_key=key["key"], max_retries=0, timeout=30)
    with pytest.raises(openai.InternalServerError):  # the upstream fails before the first token: 502
        client.chat.completions.create(model="remote/broken", messages=USER, max_tokens=50)
    with httpx.stream("POST", b.base_url + "/chat/completions", headers={"authorization": f"Bearer {key['key']}"},
                      json={"model": "remote/dies", "messages": USER, "max_tokens": 50, "stream": True}) as r:
        text = r.read().decode()
    assert r.status_code == 200 and "error" in text  # the stream broke after 3 tokens
    shown = {}
    for _ in range(50):  # settlement runs off the request's path
        shown = httpx.get(f"{a.url}/api/keys/{key['id']}/limits", headers=admin).json()["limits"]
        if shown["reserved_usd"] == 0:
            break
        time.sleep(0.1)
    assert shown["reserved_usd"] == 0
    answered, spent, _ = recorded(a, key["id"])
    assert shown["spent_usd"] == pytest.approx(spent) and 0 < spent < 0.01  # 3 streamed tokens, not 50 reserved


def test_embeddings_of_a_limited_key_carry_the_headers_too(replicas, admin) -> None:
    a, _ = replicas
    key = api_key(a, admin, "embedder", {"rpm": 5})
    client = openai.OpenAI(base_url=a.base_url, api_key=key["key"], max_retries=0, timeout=120)
    raw = client.embeddings.with_raw_response.create(model="local/multilingual-use", input=["hello", "world"])
    assert len(raw.parse().data) == 2
    assert raw.headers["x-ratelimit-limit-requests"] == "5" and raw.headers["x-ratelimit-remaining-requests"] == "4"


def test_the_web_ui_conversation_stream_carries_the_headers_and_a_refusal(replicas, admin) -> None:
    a, b = replicas
    key = api_key(a, admin, "ui-rpm2", {"rpm": 2})
    auth = {"authorization": f"Bearer {key['key']}"}
    conv = httpx.post(b.url + "/api/conversations", json={"model": "remote/ten"}, headers=auth)
    assert conv.status_code in (200, 201), conv.text
    url = f"{b.url}/api/conversations/{conv.json()['id']}"
    seen = []
    for path, body in (("/messages", {"content": "Say hi"}), ("/regenerate", {})):
        with httpx.stream("POST", url + path, json=body, headers=auth, timeout=30) as r:
            text = r.read().decode()
        assert r.status_code == 200 and "baimo.message" in text, text
        assert r.headers["x-ratelimit-limit-requests"] == "2"
        seen.append(r.headers["x-ratelimit-remaining-requests"])
    assert seen == ["1", "0"]
    with httpx.stream("POST", url + "/messages", json={"content": "Again"}, headers=auth, timeout=30) as r:
        text = r.read().decode()
    assert int(r.headers["retry-after"]) >= 1 and r.headers["x-ratelimit-remaining-requests"] == "0"
    assert "rate_limit_exceeded" in text and "baimo.message" not in text  # the refusal, as the stream's error event


def test_cli_and_api_errors_are_one_line_and_openai_shaped(replicas, admin) -> None:
    a, _ = replicas
    bad = cli(a, "keys", "limit", "no-such-key", "--rpm", "5")
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "no-such-key" in bad.stderr
    neither = cli(a, "keys", "limit", "--rpm", "5")
    assert neither.returncode == 1 and "--team" in neither.stderr
    r = httpx.put(f"{a.url}/api/keys/rpm3/limits", json={"period": "week"}, headers=admin)
    assert r.status_code == 400 and r.json()["error"]["param"] == "period"
    r = httpx.put(f"{a.url}/api/keys/no-such-key/limits", json={"rpm": 5}, headers=admin)
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.get(f"{a.url}/api/keys/rpm3/limits", headers={"authorization": "Bearer bm-wrong"})
    assert r.status_code == 401
