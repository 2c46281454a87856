"""kill -9 of `baimo serve` while it streams and while it ingests, on SQLite and on PostgreSQL: after a restart the
database passes its integrity checks and every completed message, usage record and catalogued document is there.

(tests/e2e/test_persistence_and_keys.py kills a local llama.cpp stream on SQLite and tests/knowledge/ kills
`baimo kb add`; these add the server's remote streams and background ingestion, on both databases.)
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.support.remote import remote
from tests.support.server import BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
USER = [{"role": "user", "content": "hello"}]
N_FILES = 60


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream({"good": Behaviour.ok("Done and stored."),
                           "endless": Behaviour.ok(tokens=5000, token_delay=0.01)}, record=False) as up:
        yield up


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Server environment for one database: a fresh SQLite file under the test's home, or a fresh PostgreSQL
    database on the session's server (so no other test's rows are counted)."""
    if request.param == "sqlite":
        yield {}
        return
    base = request.getfixturevalue("postgres_url")
    name = "crash_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    yield {"BAIMO_DATABASE_URL": base.rsplit("/", 1)[0] + "/" + name}
    with admin.connect() as c:
        c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def engine_for(home: Path, env: dict[str, str]) -> sa.Engine:
    return sa.create_engine(env.get("BAIMO_DATABASE_URL") or f"sqlite:///{home / 'baimo.db'}")


def check_integrity(home: Path, env: dict[str, str]) -> None:
    """SQLite: PRAGMA integrity_check and foreign_key_check. PostgreSQL: every table reads back whole (a sequential
    scan of each) and the schema is at Alembic's head, as the restarted server will also check."""
    if not env:
        db = sqlite3.connect(home / "baimo.db")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        db.close()
        return
    engine = engine_for(home, env)
    with engine.connect() as c:
        for table in sa.inspect(engine).get_table_names():
            c.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()
        assert c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()


def start_stream(url: str, body: dict, started: threading.Event) -> threading.Thread:
    def run() -> None:
        lines = 0
        try:
            with httpx.stream("POST", url, json=body, timeout=60) as r:
                for _ in r.iter_lines():
                    lines += 1
                    if lines > 10:
                        started.set()
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def document(i: int) -> bytes:
    """File i: its marker zq<i>x in the first paragraph only, then filler enough for several chunks (so that the
    batch takes seconds to embed and the kill lands inside it)."""
    filler = "\n\n".join(f"Paragraph {j} of file {i} is filler about harbours, ships and the weather at sea, "
                         f"written long enough to fill a chunk of its own when it is embedded." for j in range(30))
    return f"# File {i}\n\nThe marker of this file is zq{i:04d}x.\n\n{filler}\n".encode()


def test_kill_9_mid_stream_and_mid_ingestion_loses_nothing_completed(upstream, database, tmp_path) -> None:
    """One kill -9 while an endless stream runs and a batch of files is being ingested, right after four requests
    completed; after the restart: the completed answers and their usage records, every catalogued document whole
    and searchable, and uploading the batch again completes the base without a duplicate chunk."""
    home = tmp_path / "home"
    config = "default_model: good\nmodels:\n" + remote("good", "good", upstream.base_url) + remote(
        "endless", "endless", upstream.base_url)
    files = [("files", (f"doc{i:04d}.md", document(i))) for i in range(N_FILES)]
    server = BaimoServer(home, config, env=database).start()
    try:
        api = httpx.Client(base_url=server.url, timeout=120)
        assert api.post("/api/knowledge", json={"name": "big"}).status_code == 201
        job = api.post("/api/knowledge/big/documents", files=files)
        assert job.status_code == 202
        conv = api.post("/api/conversations", json={}).json()
        started = threading.Event()  # an endless stream stored in the conversation, killed mid-way below
        streaming = start_stream(server.base_url + "/chat/completions", {
            "model": "endless", "stream": True, "messages": [{"role": "user", "content": "never ends"}],
            "metadata": {"conversation_id": conv["id"]}}, started)
        assert started.wait(60)
        deadline = time.monotonic() + 180
        while len(api.get("/api/knowledge/big/documents").json()["data"]) < 2:
            assert time.monotonic() < deadline, "ingestion never got going"
            time.sleep(0.05)
        done_ids = []  # completed while the stream and the ingestion run; the kill follows the last one at once
        for i in range(4):
            r = api.post("/v1/chat/completions", json={
                "model": "good", "messages": [{"role": "user", "content": f"question {i}"}],
                "metadata": {"conversation_id": conv["id"]}, "stream": i % 2 == 1})
            assert r.status_code == 200
            done_ids.append(r.json()["id"] if i % 2 == 0 else r.text.split('"id":"', 1)[1].split('"', 1)[0])
        running = api.get(f"/api/knowledge-jobs/{job.json()['id']}").json()
        assert running["status"] in ("queued", "running"), "ingestion ended before the kill: give it more files"
        server.kill9()
        streaming.join(30)
    finally:
        server.stop()

    check_integrity(home, database)
    with BaimoServer(home, config, env=database) as again:
        api = httpx.Client(base_url=again.url, timeout=120)
        messages = api.get(f"/api/conversations/{conv['id']}").json()["messages"]
        answers = [m for m in messages if m["role"] == "assistant" and m["status"] == "complete"]
        assert [m["content"] for m in answers] == ["Done and stored."] * 4
        assert [m["content"] for m in messages if m["role"] == "user"][-4:] == [f"question {i}" for i in range(4)]
        assert messages[0]["content"] == "never ends"  # committed before generation began
        engine = engine_for(home, database)
        with engine.connect() as c:
            stored = c.execute(sa.text("SELECT response_id FROM usage WHERE model = 'good'")).scalars().all()
        engine.dispose()
        assert set(done_ids) <= set(stored), (done_ids, stored)

        docs = api.get("/api/knowledge/big/documents").json()["data"]
        assert 2 <= len(docs) < N_FILES
        for d in docs[:: max(1, len(docs) // 8)]:  # every catalogued document is whole and searchable
            marker = f"zq{d['source'][3:7]}x"
            hits = api.post("/api/knowledge/big/search", json={"query": marker, "k": 5, "mode": "bm25"}).json()
            assert [h["source"] for h in hits["data"]][:1] == [d["source"]], (marker, hits)
        r = api.post("/api/knowledge/big/documents", params={"wait": "true"}, files=files)  # complete the base
        assert r.status_code == 200 and not r.json()["report"]["failed"], r.text
        assert api.get("/api/knowledge/big").json()["documents"] == N_FILES
        for marker, source in (("zq0000x", "doc0000.md"), (f"zq{N_FILES - 1:04d}x", f"doc{N_FILES - 1:04d}.md")):
            hits = api.post("/api/knowledge/big/search", json={"query": marker, "k": 5, "mode": "bm25"}).json()
            assert [h["source"] for h in hits["data"]].count(source) == 1  # its marker's chunk is there once
