"""Durability (kill -9 mid-stream leaves a valid database with every completed message) and API keys."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.server import BaimoServer, sqlite_integrity

pytestmark = pytest.mark.e2e
MODEL = "local/smollm2-135m"
BAIMO = str(Path(sys.executable).parent / "baimo")


def test_kill_9_mid_stream_keeps_database_valid(tmp_path) -> None:
    home = tmp_path / "home"
    server = BaimoServer(home).start()
    try:
        conv = httpx.post(server.url + "/api/conversations", json={}).json()
        body = {"content": "Say one short sentence.", "model": MODEL, "max_tokens": 12}
        with httpx.stream("POST", f"{server.url}/api/conversations/{conv['id']}/messages", json=body, timeout=60) as r:
            list(r.iter_lines())
        received: list[str] = []

        def long_stream(started: threading.Event) -> None:
            body = {"model": MODEL, "stream": True, "max_tokens": 1500,
                    "messages": [{"role": "user", "content": "Write a very long story about ships."}],
                    "metadata": {"conversation_id": conv["id"]}}
            try:
                with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60) as r:
                    for line in r.iter_lines():
                        received.append(line)
                        if len(received) > 10:
                            started.set()
            except httpx.HTTPError:
                pass

        server.kill9_during(long_stream)
    finally:
        server.stop()

    assert sqlite_integrity(home / "baimo.db") == "ok"
    with BaimoServer(home, config_yaml=(home / "baimo.yaml").read_text()) as again:
        stored = httpx.get(f"{again.url}/api/conversations/{conv['id']}").json()["messages"]
        assert [m["role"] for m in stored[:2]] == ["user", "assistant"] and stored[1]["status"] == "complete"
        assert stored[2]["content"].startswith("Write a very long story")  # committed before generation began
        r = httpx.post(again.base_url + "/chat/completions", timeout=60,
                       json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        assert r.status_code == 200


def test_api_keys_turn_on_authentication(server) -> None:
    env = {"BAIMO_HOME": str(server.home)}
    out = subprocess.run([BAIMO, "keys", "create", "ci", "--json"], env={**server.env, **env},
                         capture_output=True, text=True, check=True)
    import json

    secret = json.loads(out.stdout)["key"]
    try:
        deadline = time.monotonic() + 10
        while httpx.get(server.base_url + "/models").status_code != 401:
            assert time.monotonic() < deadline, "keys did not take effect"
            time.sleep(0.3)
        anonymous = openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anonymous.models.list()
        r = httpx.get(server.url + "/api/conversations")
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        good = openai.OpenAI(base_url=server.base_url, api_key=secret, max_retries=0)
        c = good.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        assert c.choices[0].message.content is not None
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        subprocess.run([BAIMO, "keys", "revoke", "ci"], env={**server.env, **env}, check=True, capture_output=True)
    deadline = time.monotonic() + 10
    while httpx.get(server.base_url + "/models").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.3)
