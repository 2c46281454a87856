"""Conversations as the web UI uses them: chat inside one, regenerate, stop, rename, delete, export, paginate."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta

import httpx
import pytest

from tests.support.server import BaimoServer

pytestmark = pytest.mark.e2e
MODEL = "local/smollm2-135m"


def sse_events(response: httpx.Response) -> list:
    out = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def send(server: BaimoServer, cid: str, content: str, **extra) -> list:
    body = {"content": content, "model": MODEL, "max_tokens": 16, **extra}
    with httpx.stream("POST", f"{server.url}/api/conversations/{cid}/messages", json=body, timeout=60) as r:
        assert r.status_code == 200
        return sse_events(r)


def test_chat_in_a_conversation_stores_both_sides_with_meta(server) -> None:
    conv = httpx.post(server.url + "/api/conversations", json={}).json()
    events = send(server, conv["id"], "Tell me a fact about owls.")
    assert events[0]["object"] == "baimo.user_message"
    assert any(e.get("object") == "chat.completion.chunk" for e in events if isinstance(e, dict))
    final = events[-2]["message"]
    assert events[-1] == "[DONE]"
    assert final["role"] == "assistant" and final["model"] == MODEL and final["status"] == "complete"
    assert final["tokens_in"] > 0 and 0 < final["tokens_out"] <= 16 and final["latency_ms"] > 0
    assert final["ttft_ms"] is not None and final["cost"] > 0
    stored = httpx.get(f"{server.url}/api/conversations/{conv['id']}").json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["title"] == "Tell me a fact about owls."
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events
                   if isinstance(e, dict) and e.get("object") == "chat.completion.chunk")
    assert stored["messages"][1]["content"] == text

    regen = []
    with httpx.stream("POST", f"{server.url}/api/conversations/{conv['id']}/regenerate", json={"max_tokens": 16},
                      timeout=60) as r:
        regen = sse_events(r)
    assert regen[0]["object"] == "chat.completion.chunk" and regen[-2]["object"] == "baimo.message"
    after = httpx.get(f"{server.url}/api/conversations/{conv['id']}").json()["messages"]
    assert [m["role"] for m in after] == ["user", "assistant"]
    assert after[1]["id"] == regen[-2]["message"]["id"]


def test_second_turn_sees_the_history(server) -> None:
    conv = httpx.post(server.url + "/api/conversations", json={"title": "memory"}).json()
    send(server, conv["id"], "My name is Zanzibar.")
    send(server, conv["id"], "What is my name?")
    recent = httpx.get(server.url + "/api/usage").json()["recent"]
    assert recent[0]["conversation_id"] == conv["id"] and recent[0]["prompt_tokens"] > recent[1]["prompt_tokens"]


def test_rename_delete_export_and_errors(server) -> None:
    conv = httpx.post(server.url + "/api/conversations", json={}).json()
    send(server, conv["id"], "Hello **markdown**")
    r = httpx.patch(f"{server.url}/api/conversations/{conv['id']}", json={"title": "Renamed"})
    assert r.json()["title"] == "Renamed"
    md = httpx.get(f"{server.url}/api/conversations/{conv['id']}/export", params={"format": "markdown"})
    assert md.text.startswith("# Renamed") and "## user" in md.text and "Hello **markdown**" in md.text
    js = httpx.get(f"{server.url}/api/conversations/{conv['id']}/export").json()
    assert js["id"] == conv["id"] and len(js["messages"]) == 2
    assert httpx.delete(f"{server.url}/api/conversations/{conv['id']}").status_code == 204
    missing = httpx.get(f"{server.url}/api/conversations/{conv['id']}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = httpx.post(f"{server.url}/api/conversations/{conv['id']}/messages", json={"content": "x"})
    assert bad.status_code == 404
    other = httpx.post(server.url + "/api/conversations", json={}).json()
    r = httpx.post(f"{server.url}/api/conversations/{other['id']}/messages", json={"content": "x", "model": "no/such"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = httpx.post(f"{server.url}/api/conversations/{other['id']}/messages", json={"content": ""})
    assert r.status_code == 400 and r.json()["error"]["param"] == "content"
    assert httpx.get(f"{server.url}/api/conversations/{other['id']}").json()["messages"] == []


def test_client_disconnect_stops_generation_and_keeps_the_partial_answer(server) -> None:
    conv = httpx.post(server.url + "/api/conversations", json={}).json()
    body = {"content": "Write a very long essay about the history of bread.", "model": MODEL, "max_tokens": 1500}
    seen = 0
    with httpx.stream("POST", f"{server.url}/api/conversations/{conv['id']}/messages", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if '"chat.completion.chunk"' in line:
                seen += 1
                if seen == 5:
                    break
    # The model is free again at once (generation stopped), and the partial answer was kept as "stopped".
    follow = httpx.post(server.base_url + "/chat/completions", timeout=60, json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert follow.status_code == 200
    messages = httpx.get(f"{server.url}/api/conversations/{conv['id']}").json()["messages"]
    assert messages[-1]["status"] == "stopped" and 0 < messages[-1]["tokens_out"] < 300
    stopped = [u for u in httpx.get(server.url + "/api/usage").json()["recent"] if u["conversation_id"] == conv["id"]]
    assert stopped[0]["finish_reason"] == "stopped" and stopped[0]["status_code"] == 499


def test_pagination_and_search_over_many_conversations(server) -> None:
    db = sqlite3.connect(server.home / "baimo.db")
    base = datetime(2020, 1, 1)
    stamps = [(base + timedelta(seconds=i)).isoformat(sep=" ", timespec="microseconds") for i in range(10_000)]
    rows = [(f"bulk{i:028d}", f"Bulk conversation {i}", stamps[i], stamps[i]) for i in range(10_000)]
    db.executemany("INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(server.url + "/api/conversations", params=params).json()
        seen += [c["id"] for c in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    bulk = [s for s in seen if s.startswith("bulk")]
    assert len(bulk) == 10_000 and len(set(seen)) == len(seen) and pages >= 50
    assert bulk[0] == f"bulk{9999:028d}"  # newest first
    found = httpx.get(server.url + "/api/conversations", params={"q": "conversation 7777"}).json()["data"]
    assert [c["title"] for c in found] == ["Bulk conversation 7777"]
    r = httpx.get(server.url + "/api/conversations", params={"cursor": "garbage!"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "cursor"
