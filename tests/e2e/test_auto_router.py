"""The hybrid on by default: `baimo/auto` through the real server, the openai SDK and the CLI.

A fresh install's config routes over the local models that are pulled; a remote model added to baimo.yaml joins
without retraining; every routed answer records its route in words and what the strongest model would have cost;
ratings refine the router (`baimo router retrain baimo/auto`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from baimo.config import default_config_text
from tests.support.server import BaimoServer, models_dir
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
BAIMO = str(Path(sys.executable).parent / "baimo")
EASY = "What is the capital of France?"
HARD = ("A train leaves at 9:40 and travels 312.5 km at 87.5 km/h, then 145 km at 62 km/h after a 17-minute stop; "
        "a second train leaves 35 minutes later at 95 km/h on the same 457.5 km route. Which arrives first, and by "
        "how many minutes? Show each step.")

HYBRID = """
default_model: baimo/auto
routers:
  - {{id: baimo/auto, strategy: auto, retrain_every: null}}
models:
  - id: local/smollm2-135m
    kind: llamacpp
    catalogue: smollm2-135m-instruct-q4_1
    context_window: 2048
    max_output_tokens: 24
    threads: 1
    strength: 0.7
  - id: remote/strong
    kind: openai
    base_url: {url}
    upstream_model: strong
    price_input: 5
    price_output: 15
    strength: 0.95
    timeout: 10
    connect_retries: 0
embedders:
  - {{id: local/multilingual-use, kind: use}}
"""


@pytest.fixture(scope="module")
def upstream():
    with ScriptedUpstream({"strong": Behaviour.ok("The careful answer.")}) as up:
        yield up


@pytest.fixture(scope="module")
def hybrid(upstream, tmp_path_factory):
    server = BaimoServer(tmp_path_factory.mktemp("auto"), HYBRID.format(url=upstream.base_url)).start()
    yield server
    server.stop()


def chat(server: BaimoServer, text: str, model: str = "baimo/auto"):
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}],
                                                           max_tokens=24)
    return raw.headers, raw.parse()


def test_a_fresh_install_defaults_to_the_hybrid(tmp_path: Path) -> None:
    """The shipped default config, as `make serve` writes it: baimo/auto over the local models that are pulled."""
    with BaimoServer(tmp_path / "fresh", default_config_text()) as server:
        models = httpx.get(server.base_url + "/models").json()["data"]
        assert "baimo/auto" in [m["id"] for m in models]
        pulled = {p.name for p in Path(models_dir()).iterdir()}
        headers, reply = chat(server, EASY)
        route = headers["x-baimo-route"]
        assert route.startswith("auto: ") and route.endswith(f"-> {reply.model}"), route
        assert reply.model.startswith("local/") and reply.choices[0].message.content
        if "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" not in pulled:
            assert reply.model == "local/smollm2-135m"  # only what is pulled is a candidate


def test_easy_prompts_stay_local_and_hard_ones_go_to_the_strong_model(hybrid, upstream) -> None:
    upstream.clear()
    headers, reply = chat(hybrid, EASY)
    assert reply.model == "local/smollm2-135m", headers["x-baimo-route"]
    assert "easy prompt" in headers["x-baimo-route"] or "is enough" in headers["x-baimo-route"]
    assert upstream.requests == []  # the remote model was not called at all
    headers, reply = chat(hybrid, HARD)
    assert reply.model == "remote/strong", headers["x-baimo-route"]
    assert [r.body["messages"][-1]["content"] for r in upstream.requests] == [HARD]


def test_each_routed_answer_records_what_the_strongest_model_would_have_cost(hybrid) -> None:
    conv = httpx.post(hybrid.url + "/api/conversations", json={"model": "baimo/auto"}).json()
    with httpx.stream("POST", f"{hybrid.url}/api/conversations/{conv['id']}/messages",
                      json={"content": EASY, "max_tokens": 16}, timeout=120) as r:
        assert r.status_code == 200
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    message = [e["message"] for e in events if e.get("object") == "baimo.message"][0]
    assert message["model"] == "local/smollm2-135m" and message["route"].startswith("auto: ")
    assert message["baseline_model"] == "remote/strong"
    expected = (message["tokens_in"] * 5 + message["tokens_out"] * 15) / 1e6
    assert message["baseline_cost"] == pytest.approx(expected) and message["cost"] == 0
    usage = httpx.get(hybrid.url + "/api/usage").json()["hybrid"]
    assert usage["requests"] >= 1 and usage["baseline_cost"] > usage["cost"]
    assert usage["by_day"] and usage["by_day"][-1]["baseline_cost"] > 0


def test_the_cli_says_which_model_answered_why_and_what_it_saved(hybrid, tmp_path: Path, upstream) -> None:
    env = {**os.environ, "BAIMO_HOME": str(hybrid.home), "BAIMO_MODELS_DIR": models_dir()}
    out = subprocess.run([BAIMO, "chat", "--max-tokens", "16", EASY], capture_output=True, text=True, env=env,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert "local/smollm2-135m" in out.stderr
    assert "route: auto: " in out.stderr
    assert "on remote/strong, saved 100%" in out.stderr


def test_ratings_refine_the_router(hybrid) -> None:
    headers, reply = chat(hybrid, "Name three primary colours.")
    assert httpx.post(hybrid.url + "/api/feedback", json={"response_id": reply.id, "rating": "down"}).status_code == 200
    env = {**os.environ, "BAIMO_HOME": str(hybrid.home), "BAIMO_MODELS_DIR": models_dir()}
    out = subprocess.run([BAIMO, "router", "retrain", "baimo/auto", "--json"], capture_output=True, text=True,
                         env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    row = summary["models"][reply.model]
    assert summary["outcomes"] >= 1 and row["n"] >= 1 and row["theta"] < row["prior"]
    assert (hybrid.home / "routers" / "baimo__auto" / "abilities.json").exists()
