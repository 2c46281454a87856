"""The same server on PostgreSQL (BAIMO_DATABASE_URL) instead of SQLite: no code changes, same behaviour."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.server import SMOLLM_YAML, BaimoServer

pytestmark = pytest.mark.e2e
MODEL = "local/smollm2-135m"


def test_server_on_postgresql_persists_across_restarts(postgres_url, tmp_path) -> None:
    env = {"BAIMO_DATABASE_URL": postgres_url}
    with BaimoServer(tmp_path / "a", SMOLLM_YAML, env=env) as server:
        conv = httpx.post(server.url + "/api/conversations", json={"title": "on postgres"}).json()
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        reply = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello from PostgreSQL"}], max_tokens=6,
            metadata={"conversation_id": conv["id"]})
        assert reply.usage.completion_tokens > 0
        assert not (server.home / "baimo.db").exists()
    with BaimoServer(tmp_path / "b", SMOLLM_YAML, env=env) as again:  # another home, same database
        found = httpx.get(again.url + "/api/conversations", params={"q": "from postgresql"}).json()["data"]
        assert [c["id"] for c in found] == [conv["id"]]
        messages = httpx.get(f"{again.url}/api/conversations/{conv['id']}").json()["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[1]["content"] == reply.choices[0].message.content
        usage = httpx.get(again.url + "/api/usage").json()["by_model"]
        assert any(u["model"] == MODEL and u["requests"] >= 1 for u in usage)
