"""Two replicas behind nginx on PostgreSQL (+ pgvector) and Redis: whichever replica answers, a client's stream,
its budget, its knowledge base and its ingestion job work; a replica killed with SIGKILL mid-run loses nothing
that was completed."""

from __future__ import annotations

import io
import os
import signal
import threading
import time

import httpx
import openai
import pytest

from tests.scaleout.conftest import ONE_REQUEST, Topology, pids_of_tree

pytestmark = pytest.mark.e2e
USER = [{"role": "user", "content": "Say hi"}]


def replica_of(topology: Topology, upstream_addr: str) -> str:
    return {f"127.0.0.1:{topology.a.port}": "a", f"127.0.0.1:{topology.b.port}": "b"}[upstream_addr]


def test_streams_are_served_by_both_replicas_and_each_is_recorded_once(topology: Topology,
                                                                        client: openai.OpenAI) -> None:
    served, ids = [], []
    for _ in range(6):
        raw = client.chat.completions.with_raw_response.create(
            model="remote/ten", messages=USER, stream=True, stream_options={"include_usage": True})
        served.append(replica_of(topology, raw.headers["x-upstream"]))
        chunks = list(raw.parse())
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        ids.append(chunks[0].id)
    assert set(served) == {"a", "b"}, served  # round robin: both replicas answered streams
    rows = topology.sql("SELECT response_id, count(*) FROM usage WHERE response_id = ANY(%s) GROUP BY 1", ids)
    assert sorted(rows) == sorted((i, 1) for i in ids)


def test_a_budget_holds_whichever_replica_answers(topology: Topology) -> None:
    budget = 3.5 * ONE_REQUEST
    admin = {"authorization": f"Bearer {topology.key}"}
    made = httpx.post(topology.url + "/api/keys", headers=admin, timeout=30,
                      json={"name": "budget", "budget_usd": budget, "period": "day"})
    assert made.status_code == 201, made.text
    key = made.json()
    statuses, served = [], set()
    with httpx.Client(base_url=topology.url, timeout=30,
                      headers={"authorization": f"Bearer {key['key']}"}) as http:
        for i in range(6):
            body = {"model": "remote/ten", "messages": USER, "max_tokens": 10, "stream": i % 2 == 0}
            r = http.post("/v1/chat/completions", json=body)
            statuses.append(r.status_code)
            served.add(replica_of(topology, r.headers["x-upstream"]))
            if r.status_code == 429:
                assert r.json()["error"]["code"] == "insufficient_quota"
    assert statuses == [200, 200, 200, 429, 429, 429] and served == {"a", "b"}, (statuses, served)
    spent = topology.sql("SELECT coalesce(sum(cost), 0) FROM usage WHERE api_key_id = %s", key["id"])[0][0]
    assert 3 * 10 * 1000e-6 < spent <= budget  # three answers charged (10 tokens each, and their prompts), no more


def test_knowledge_and_ingestion_jobs_are_shared(topology: Topology) -> None:
    headers = {"authorization": f"Bearer {topology.key}"}
    with httpx.Client(base_url=topology.url, timeout=120, headers=headers) as http:
        assert http.post("/api/knowledge", json={"name": "handbook"}).status_code == 201
        notes = [f"# Note {i}\n\nThe pump code of room {i} is zx{i:03d}q.".encode() for i in range(12)]
        files = [("files", (f"note{i}.md", io.BytesIO(note), "text/markdown")) for i, note in enumerate(notes)]
        r = http.post("/api/knowledge/handbook/documents", files=files)
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        seen, deadline = set(), time.monotonic() + 90
        while True:  # polled through nginx: both replicas read the same job row
            r = http.get(f"/api/knowledge-jobs/{job}")
            seen.add(replica_of(topology, r.headers["x-upstream"]))
            if r.json()["status"] in ("done", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r.json()["status"] == "done", r.json()
        assert len(r.json()["report"]["added"]) == 12
        for _ in range(2):  # one search on each replica finds what either ingested (pgvector store)
            hits = http.post("/api/knowledge/handbook/search", json={"query": "pump code room 7", "k": 3}).json()
            assert "zx007q" in hits["data"][0]["text"]
        assert not any((topology.a.home.parent / "uploads").iterdir())  # the uploaded files are gone once done
        assert seen  # read through nginx


def test_a_replica_killed_mid_run_loses_nothing_completed_and_its_job_is_finished(topology: Topology) -> None:
    """SIGKILL to one replica (all its processes) while streams are being answered and while an ingestion job it
    queued is waiting or running: every stream that completed has its usage record and its conversation messages,
    the other replica takes the job over and finishes it, and nginx keeps serving."""
    headers = {"authorization": f"Bearer {topology.key}"}
    b = topology.b
    with httpx.Client(base_url=b.url, timeout=120, headers=headers) as http:
        assert http.post("/api/knowledge", json={"name": "manuals"}).status_code == 201
        files = [("files", (f"m{i}.md", io.BytesIO((f"# Manual {i}\n\n" + " ".join(
            f"Step {j} of manual {i} tightens bolt kq{i}{j}." for j in range(30))).encode()), "text/markdown"))
                 for i in range(20)]
        job = http.post("/api/knowledge/manuals/documents", files=files).json()["id"]
    conversations = [httpx.post(topology.url + "/api/conversations", json={"title": f"c{i}"},
                                headers=headers).json()["id"] for i in range(16)]
    completed: list[tuple[str, str, str]] = []  # (conversation, response id, text) of streams that finished
    lock = threading.Lock()

    def one(i: int) -> None:
        client = openai.OpenAI(base_url=topology.url + "/v1", api_key=topology.key, max_retries=0, timeout=60)
        try:
            stream = client.chat.completions.create(
                model="remote/slow" if i % 2 else "remote/ten", messages=USER, stream=True,
                metadata={"conversation_id": conversations[i]})
            chunks = list(stream)
        except (openai.APIError, httpx.HTTPError):
            return  # cut off by the kill: nothing was completed
        if chunks and any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks):
            with lock:
                completed.append((conversations[i], chunks[0].id,
                                  "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    time.sleep(1.0)  # the fast streams have finished, the slow ones (4 s) are mid-answer
    assert b.proc is not None
    for pid in pids_of_tree(b.proc.pid):
        os.kill(pid, signal.SIGKILL)
    b.proc.wait(10)
    for t in threads:
        t.join(90)
    assert len(completed) >= 8, completed  # the fast half, at least, finished before the kill
    for conversation, response_id, text in completed:
        assert topology.sql("SELECT count(*) FROM usage WHERE response_id = %s", response_id)[0][0] == 1
        rows = topology.sql("SELECT role, content FROM messages WHERE conversation_id = %s ORDER BY seq",
                            conversation)
        assert [r[0] for r in rows] == ["user", "assistant"] and rows[1][1] == text, (conversation, rows)
    with httpx.Client(base_url=topology.url, timeout=30, headers=headers) as http:
        deadline = time.monotonic() + 120
        while (state := http.get(f"/api/knowledge-jobs/{job}").json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, state
            time.sleep(0.3)
        assert state["status"] == "done" and state["files_done"] == 20, state
        assert len(http.get("/api/knowledge/manuals/documents").json()["data"]) == 20
    client = openai.OpenAI(base_url=topology.url + "/v1", api_key=topology.key, max_retries=0, timeout=30)
    for _ in range(3):  # the survivor serves through nginx (a dead replica's connection errors go to the next)
        assert client.chat.completions.create(model="remote/ten", messages=USER).choices[0].message.content
