"""`baimo distill compare` and `promote` as subprocesses, with the real local model and a scripted strong teacher:
the three models are scored on a held-out task split, the domain's rule is proposed, promotion writes it into
baimo.yaml, and an evaluation through the promoted router is served by the local model at no cost while other
traffic still reaches the previous default.

The "fine-tuned" model here is SmolLM2-135M registered under a new name (training is tests/e2e/test_distill_train.py
and bench/flywheel.py): this tests the comparison and the routing, not a learning gain.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.server import BAIMO, models_dir
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def baimo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BAIMO_HOME": str(home), "BAIMO_MODELS_DIR": models_dir()}
    return subprocess.run([str(BAIMO), *args], env=env, capture_output=True, text=True, timeout=300)


def test_compare_promote_and_route_the_domain_to_the_tuned_model(baimo_home: Path, tmp_path: Path) -> None:
    with ScriptedUpstream({"solve": Behaviour("solve", text="I cannot help with that.")}) as up:
        baimo_home.mkdir(parents=True, exist_ok=True)
        (baimo_home / "baimo.yaml").write_text(
            "default_model: remote/strong\nmodels:\n"
            "  - id: local/smollm2-135m\n    kind: llamacpp\n    catalogue: smollm2-135m-instruct-q4_1\n"
            "    max_output_tokens: 64\n    threads: 1\n"
            f"  - id: remote/strong\n    kind: openai\n    base_url: {up.base_url}\n    upstream_model: solve\n"
            "    price_input: 2.5\n    price_output: 10\n", encoding="utf-8")
        task = tmp_path / "task"
        made = baimo(baimo_home, "distill", "task", "make", "travel-json", "--train", "10", "--test", "4",
                     "--out", str(task))
        assert made.returncode == 0, made.stderr
        reg = baimo(baimo_home, "distill", "register", "travel", "--gguf", str(Path(models_dir()) / GGUF),
                    "--base", "local/smollm2-135m")
        assert reg.returncode == 0, reg.stderr

        out = baimo(baimo_home, "distill", "compare", "travel", "--suite", str(task / "test.jsonl"),
                    "--base", "local/smollm2-135m", "--teacher", "remote/strong", "--max-tokens", "48", "--json")
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert {t["id"] for t in result["run"]["targets"]} == {"local/travel", "local/smollm2-135m", "remote/strong"}
        assert result["teacher"]["accuracy"] == 1.0 and result["teacher"]["cost_per_item_usd"] > 0
        assert result["model"]["cost_per_item_usd"] == 0 and result["saving_per_1k_usd"] > 0
        # the same weights: never separable from its base, and the paired test sees no discordant item
        assert not result["base"]["beats_outside_ci"] and result["base"]["mcnemar_p"] == 1.0
        assert result["rule"]["regex"].startswith("^Convert") and result["coverage"] == 1.0
        assert result["model"]["accuracy"] < result["teacher"]["accuracy"]  # a 135M base cannot do the task
        table = baimo(baimo_home, "distill", "compare", "travel", "--suite", str(task / "test.jsonl"),
                      "--base", "local/smollm2-135m", "--teacher", "remote/strong", "--max-tokens", "48")
        assert table.returncode == 0 and "worse than its teacher remote/strong" in table.stdout, table.stdout

        promoted = baimo(baimo_home, "distill", "promote", "travel", "--suite", str(task / "test.jsonl"), "--json")
        assert promoted.returncode == 0, promoted.stderr
        config = yaml.safe_load((baimo_home / "baimo.yaml").read_text(encoding="utf-8"))
        assert config["default_model"] == "baimo/distilled"
        router = next(r for r in config["routers"] if r["id"] == "baimo/distilled")
        assert router["default"] == "remote/strong" and router["rules"][0]["model"] == "local/travel"

        asked = len(up.requests)
        routed = baimo(baimo_home, "eval", "run", str(task / "test.jsonl"), "--models", "baimo/distilled",
                       "--max-tokens", "48", "--json")
        assert routed.returncode == 0, routed.stderr
        (target,) = json.loads(routed.stdout)["targets"]
        assert target["served_share"] == {"local/travel": 1.0} and target["cost_usd"] == 0
        assert len(up.requests) == asked  # the domain's prompts never reached the teacher

        other = baimo(baimo_home, "chat", "-m", "baimo/distilled", "What is a fjord?")
        assert other.returncode == 0, other.stderr
        assert len(up.requests) == asked + 1  # everything else goes where it went before: the previous default


def test_promote_without_a_domain_is_one_line_error(baimo_home: Path) -> None:
    baimo_home.mkdir(parents=True, exist_ok=True)
    (baimo_home / "baimo.yaml").write_text(
        f"models:\n  - id: local/travel\n    kind: llamacpp\n    path: {Path(models_dir()) / GGUF}\n", encoding="utf-8")
    out = baimo(baimo_home, "distill", "promote", "travel")
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and "--regex" in out.stderr
