"""`baimo distill generate` as a subprocess against a scripted teacher: answers become SFT rows, a rerun pays
nothing (the scripted upstream sees no new request), a new prompt is the only one asked, usage rows are metered."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support.server import BAIMO
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "BAIMO_HOME": str(home)}
    return subprocess.run([str(BAIMO), "distill", "generate", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _chat_requests(up: ScriptedUpstream) -> int:
    return sum(1 for r in up.requests if r.path.endswith("/chat/completions"))


def test_generate_caches_resumes_and_meters(baimo_home: Path, tmp_path: Path) -> None:
    with ScriptedUpstream({"teacher": Behaviour.echo()}) as up:
        baimo_home.mkdir(parents=True, exist_ok=True)
        (baimo_home / "baimo.yaml").write_text(
            "privacy:\n  mode: \"off\"\nmodels:\n  - id: remote/teacher\n    kind: openai\n"
            f"    base_url: {up.base_url}\n    upstream_model: teacher\n    price_input: 1\n    price_output: 2\n",
            encoding="utf-8")
        prompts, out = tmp_path / "prompts.txt", tmp_path / "data.jsonl"
        prompts.write_text("What is a fjord?\n{\"prompt\": \"Name a river.\"}\nWhat is a fjord?\n", encoding="utf-8")
        args = ("--prompts", str(prompts), "--teacher", "remote/teacher", "--out", str(out), "--system", "Be brief.",
                "--json")
        first = _run(baimo_home, *args)
        assert first.returncode == 0, first.stderr
        assert _chat_requests(up) == 2  # the repeated prompt is asked once
        assert json.loads(first.stdout)["called"] == 2
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert sorted(r["messages"][-1]["content"] for r in rows) == ["Name a river.", "What is a fjord?"]
        assert all(r["messages"][0] == {"role": "system", "content": "Be brief."} for r in rows)
        assert {r["meta"]["model"] for r in rows} == {"remote/teacher"}

        again = _run(baimo_home, *args)  # everything is in the output already
        assert again.returncode == 0 and json.loads(again.stdout)["present"] == 3
        out.unlink()
        cached = _run(baimo_home, *args)  # the output is gone, the cache is not: nothing is paid for
        assert cached.returncode == 0 and json.loads(cached.stdout)["cached"] == 2
        assert _chat_requests(up) == 2
        assert all(json.loads(line)["meta"]["cached"] for line in out.read_text(encoding="utf-8").splitlines())

        with prompts.open("a", encoding="utf-8") as f:
            f.write("Why is the sea salty?\n")
        resumed = _run(baimo_home, *args)
        assert resumed.returncode == 0 and json.loads(resumed.stdout)["called"] == 1
        assert _chat_requests(up) == 3
        assert len(out.read_text(encoding="utf-8").splitlines()) == 3

    db = sqlite3.connect(baimo_home / "baimo.db")
    try:
        metered = db.execute("SELECT count(*), sum(cost) FROM usage WHERE endpoint = 'distill'").fetchone()
    finally:
        db.close()
    assert metered[0] == 3 and metered[1] > 0


def test_generate_errors_are_one_line(baimo_home: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("{\"prompt\": 3}\n", encoding="utf-8")
    proc = _run(baimo_home, "--prompts", str(prompts), "--teacher", "x", "--out", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 1 and "line 1: needs `prompt`" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
