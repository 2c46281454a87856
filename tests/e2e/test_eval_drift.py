"""Drift watch: a scripted remote model answers the canary right, then (a second script) wrong; `baimo eval schedule
--once` flags the drop (exit 3, log line), and so does the server's scheduled round (log line, Prometheus counter).

The canary here is a 20-item suite whose answers are all 42, so one scripted text is right (or wrong) for every
item; the built-in canary has varied answers (see tests/unit/test_eval_drift.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.server import BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
BAIMO = str(Path(sys.executable).parent / "baimo")
RIGHT, WRONG = Behaviour.ok("Six times seven is 42."), Behaviour.ok("Six times seven is 41.")


def _config(upstream: ScriptedUpstream, suite: Path, schedule: bool) -> str:
    models = "".join(f"  - id: remote/{name}\n    kind: openai\n    base_url: {upstream.base_url}\n"
                     f"    upstream_model: {name}\n    price_input: 1.0\n    price_output: 2.0\n"
                     for name in ("watched", "other"))
    local = ("  - id: local/smollm2-135m\n    kind: llamacpp\n    catalogue: smollm2-135m-instruct-q4_1\n"
             "    threads: 1\n")  # not remote: never watched by default
    watch = (f"evaluation:\n  canary_every: 24h\n  canary_suite: {suite}\n  canary_models: [remote/other]\n"
             if schedule else "")
    return f"default_model: remote/watched\nprivacy: {{mode: 'off'}}\nmodels:\n{models}{local}{watch}"


def _schedule(env: dict[str, str], suite: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BAIMO, "eval", "schedule", "--suite", str(suite), "--once", "--json", *args], env=env,
                          capture_output=True, text=True, timeout=180)


def test_a_drop_is_flagged_by_the_cli_and_by_the_servers_schedule(tmp_path: Path) -> None:
    suite = tmp_path / "canary42.jsonl"
    suite.write_text("\n".join([json.dumps({"suite": {"name": "canary42", "kind": "numeric", "license": "MIT"}}),
                                *(json.dumps({"id": f"k{i:02d}", "question": f"Q{i}: what is six times seven?",
                                              "answer": 42}) for i in range(20))]) + "\n")
    with ScriptedUpstream({"watched": RIGHT, "other": RIGHT}) as upstream:
        server = BaimoServer(tmp_path / "home", _config(upstream, suite, schedule=False))
        env = server.env
        first = _schedule(env, suite)  # every remote model (a run each), right: first runs, nothing to compare
        assert first.returncode == 0, first.stderr
        checks = {c["model"]: c for c in json.loads(first.stdout)["checks"]}
        assert set(checks) == {"remote/watched", "remote/other"}  # the local model is not watched
        assert all(c["accuracy"] == 1.0 and c["previous_run_id"] is None for c in checks.values())

        upstream.set_behaviour("watched", WRONG)  # the provider silently changed the model
        second = _schedule(env, suite, "--models", "remote/watched")
        assert second.returncode == 3, second.stderr
        [c] = json.loads(second.stdout)["checks"]
        assert c["dropped"] and (c["previous_accuracy"], c["accuracy"]) == (1.0, 0.0)
        assert (c["paired"], c["lost"], c["gained"]) == (20, 20, 0)
        assert c["p_value"] == pytest.approx(2 * 0.5 ** 20)
        assert c["previous_run_id"] == checks["remote/watched"]["run_id"]
        assert "canary drift: remote/watched dropped from 100.0 % to 0.0 %" in second.stderr

        upstream.set_behaviour("other", WRONG)  # the server's own round, at start-up, watches remote/other
        (server.home / "baimo.yaml").write_text(_config(upstream, suite, schedule=True))
        with server:
            drop = 'baimo_eval_drift_drops_total{model="remote/other"} 1.0'
            metrics = _wait_for_metric(server, drop)
            assert 'baimo_eval_canary_accuracy{model="remote/other"} 0.0' in metrics
            runs = httpx.get(server.url + "/api/eval/runs?suite=canary42").json()["data"]
            assert len(runs) == 4 and runs[0]["targets"] == ["remote/other"] and runs[0]["status"] == "finished"
        assert "canary drift: remote/other dropped from 100.0 % to 0.0 %" in server.log()


def _wait_for_metric(server: BaimoServer, line: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = httpx.get(server.url + "/metrics").text
        if line in metrics:
            return metrics
        time.sleep(0.5)
    raise AssertionError(f"no {line!r} in /metrics after the server's canary round:\n{server.log()}")
