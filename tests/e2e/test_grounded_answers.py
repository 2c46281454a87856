"""Grounded answers through the real server: retrieval over the fixture articles (LanceDB, the USE encoder), the
prompt, a scripted model over real HTTP, and the answer check, seen by the official openai client.

The scripted model plays a strong model (`extract`: it answers with the sentence of its passages that holds a
key term, cited), a model that answers with the prompt's own instructions, and one that cites the wrong passage.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from baimo.knowledge.grounding import DECLINES, answer_rule
from tests.support.server import BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "grounded"
BRIDGE_EN = "How long is the Darbois bridge in Valmorin?"


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream({}) as u:
        yield u


@pytest.fixture(scope="module")
def server(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaimoServer]:
    config = ("default_model: remote/scripted\nmodels:\n  - id: remote/scripted\n    kind: openai\n"
              f"    base_url: {upstream.base_url}\n    upstream_model: scripted\n    on_premises: true\n")
    with BaimoServer(tmp_path_factory.mktemp("grounded"), config) as s:
        assert httpx.post(f"{s.url}/api/knowledge", json={"name": "news"}).status_code == 201
        files = [("files", (p.name, p.read_bytes(), "text/markdown")) for p in sorted(FIXTURES.glob("*.md"))]
        job = httpx.post(f"{s.url}/api/knowledge/news/documents", files=files, timeout=60).json()
        for _ in range(600):
            job = httpx.get(f"{s.url}/api/knowledge-jobs/{job['id']}").json()
            if job["status"] in ("done", "failed"):
                break
            import time

            time.sleep(0.1)
        assert job["status"] == "done" and len(job["report"]["added"]) == 6, job
        assert httpx.post(f"{s.url}/api/personas", json={"name": "newsdesk", "model": "remote/scripted",
                                                         "knowledge": ["news"], "grounded": True}).status_code == 201
        yield s


@pytest.fixture()
def client(server: BaimoServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def ask(client: openai.OpenAI, question: str, stream: bool = False) -> tuple[str, list[dict]]:
    messages = [{"role": "user", "content": question}]
    if not stream:
        resp = client.chat.completions.create(model="persona/newsdesk", messages=messages)
        return resp.choices[0].message.content or "", resp.model_extra["citations"]
    text, cites = "", []
    for chunk in client.chat.completions.create(model="persona/newsdesk", messages=messages, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        cites = (chunk.model_extra or {}).get("citations") or cites
    return text, cites


def bridge_index(cites: list[dict]) -> int:
    return next(c["index"] for c in cites if c["source"] == "valmorin-pont.md" and "842" in c["text"])


def test_strong_model_answers_across_languages_with_a_supported_citation(client: openai.OpenAI,
                                                                         upstream: ScriptedUpstream) -> None:
    upstream.set_behaviour("scripted", Behaviour.extract("mesure"))
    for stream in (False, True):
        text, cites = ask(client, BRIDGE_EN, stream)
        n = bridge_index(cites)
        assert "842 mètres" in text and text.endswith(f"[{n}].")
        assert [c["index"] for c in cites if c["cited"]] == [n]
    prompt = upstream.last_request.body["messages"][-1]["content"]
    assert prompt.index("[1] ") < prompt.index(BRIDGE_EN) < prompt.index("Answer in English")


def test_an_answer_copying_the_instructions_is_never_returned(client: openai.OpenAI,
                                                             upstream: ScriptedUpstream) -> None:
    question = "Combien mesure le pont Darbois de Valmorin ?"
    upstream.set_behaviour("scripted", Behaviour.ok(answer_rule(question)))
    for stream in (False, True):
        text, cites = ask(client, question, stream)
        assert text == DECLINES["fr"]
        assert not any(c["cited"] for c in cites)
    upstream.set_behaviour("scripted", Behaviour.ok(f"Le pont mesure 842 mètres. {answer_rule(question)}"))
    text, _ = ask(client, question)
    assert text.startswith("Le pont mesure 842 mètres") and "square brackets" not in text


def test_wrong_and_unsupported_citation_markers_are_fixed(client: openai.OpenAI, upstream: ScriptedUpstream) -> None:
    upstream.set_behaviour("scripted", Behaviour.ok("The Darbois bridge is 842 metres long [9]. "
                                                    "It cost 99 million euros [1]."))
    for stream in (False, True):
        text, cites = ask(client, BRIDGE_EN, stream)
        n = bridge_index(cites)
        assert text == f"The Darbois bridge is 842 metres long [{n}]. It cost 99 million euros."
        assert [c["index"] for c in cites if c["cited"]] == [n]
