"""`baimo eval` end to end: the CLI as a subprocess against the scripted upstream as the remote models, a rules
router, the response cache, a run killed mid-way and resumed, and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from baimo.evaluation.stats import wilson
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
BAIMO = str(Path(sys.executable).parent / "baimo")
STRONG = "The answer is 42.\n#### 42"

# The strong model always answers 42; the echo model repeats the prompt, so its extracted answer is the question's
# last number; the router sends "Write ..." questions to the echo model and the rest to the strong one.
ITEMS = [("a1", "Multiply 6 by 7.", 42), ("a2", "Add 40 and 2.", 42), ("a3", "Take 49 and subtract 7.", 42),
         ("a4", "Halve 14.", 7), ("a5", "Write the number 7.", 7), ("a6", "Write the number 42.", 42)]
CORRECT = {"remote/strong": {"a1", "a2", "a3", "a6"}, "remote/echo": {"a5", "a6"},
           "router/r": {"a1", "a2", "a3", "a5", "a6"}}


def config(upstream_url: str) -> str:
    def remote(mid: str, upstream: str, price_in: float, price_out: float) -> str:
        return (f"  - id: {mid}\n    kind: openai\n    base_url: {upstream_url}\n    upstream_model: {upstream}\n"
                f"    price_input: {price_in}\n    price_output: {price_out}\n    connect_retries: 0\n")

    return ("default_model: remote/strong\nprivacy:\n  mode: \"off\"\nmodels:\n"
            + remote("remote/strong", "strong", 1.0, 2.0) + remote("remote/echo", "echo", 0.1, 0.2)
            + remote("remote/slow", "slowstrong", 1.0, 2.0) + remote("remote/judge", "judge", 3.0, 6.0)
            + "routers:\n  - id: router/r\n    strategy: rules\n    default: remote/strong\n    rules:\n"
              "      - keywords: [Write]\n        model: remote/echo\n")


@pytest.fixture
def upstream(baimo_home: Path):
    behaviours = {"strong": Behaviour.ok(STRONG), "slowstrong": Behaviour("ok", text=STRONG, delay=0.7),
                  "judge": Behaviour.ok("Helpful and correct. Rating: [[8]]")}
    with ScriptedUpstream(behaviours) as up:
        baimo_home.mkdir(parents=True, exist_ok=True)
        (baimo_home / "baimo.yaml").write_text(config(up.base_url))
        yield up


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "forty-two.jsonl"
    lines = [{"suite": {"name": "forty-two", "kind": "numeric", "license": "CC0-1.0"}}]
    lines += [{"id": i, "question": q, "answer": a} for i, q, a in ITEMS]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def baimo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BAIMO, "eval", *args], capture_output=True, text=True, timeout=timeout)


def chat_requests(up: ScriptedUpstream, model: str | None = None) -> list[Any]:
    return [r for r in up.requests_for("/chat/completions") if model is None or r.body["model"] == model]


def eval_usage(home: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(home / "baimo.db")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM usage WHERE endpoint = 'eval'").fetchall()
    finally:
        db.close()


def test_run_scores_models_and_a_router_then_answers_from_the_cache(upstream: ScriptedUpstream, suite_file: Path,
                                                                     baimo_home: Path, tmp_path: Path) -> None:
    routed = baimo("run", str(suite_file), "--models", "router/r", "--json")
    assert routed.returncode == 0, routed.stderr
    first = json.loads(routed.stdout)
    assert first["targets"][0]["served_share"] == pytest.approx({"remote/strong": 4 / 6, "remote/echo": 2 / 6},
                                                                abs=1e-3)
    usage = eval_usage(baimo_home)  # metered like any request, with endpoint "eval"
    assert len(chat_requests(upstream)) == 6 and len(usage) == 6
    assert {u["model_requested"] for u in usage} == {"router/r"} and {u["model"] for u in usage} == {
        "remote/strong", "remote/echo"}

    out = baimo("run", str(suite_file), "--models", "remote/strong,remote/echo,router/r", "--json",
                "--report", str(tmp_path / "report"))
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert run["status"] == "finished" and run["suite"]["name"] == "forty-two" and run["suite"]["items"] == 6
    by_id = {t["id"]: t for t in run["targets"]}
    assert [by_id[t]["kind"] for t in CORRECT] == ["model", "model", "router"]
    for target, right in CORRECT.items():
        t = by_id[target]
        assert t["n"] == 6 and t["correct"] == len(right) and t["errors"] == 0
        assert t["ci95"] == pytest.approx(wilson(len(right), 6), abs=1e-4)
        assert {i["item_id"] for i in run["items"] if i["target"] == target and i["correct"]} == right
        assert t["cost_usd"] > 0 and t["prompt_tokens"] > 0 and t["latency_ms"]["p95"] >= t["latency_ms"]["p50"]
    assert by_id["router/r"]["served_share"] == first["targets"][0]["served_share"]
    assert by_id["remote/echo"]["cost_usd"] < by_id["router/r"]["cost_usd"] < by_id["remote/strong"]["cost_usd"]
    assert {i["extracted"] for i in run["items"] if i["target"] == "remote/strong"} == {"42"}
    assert json.loads((tmp_path / "report" / "run.json").read_text())["run_id"] == run["run_id"]
    # the router's answers come from the first run's cache: only the two models were called, once per item
    assert all(i["cached"] for i in run["items"] if i["target"] == "router/r")
    assert not any(i["cached"] for i in run["items"] if i["target"] != "router/r")
    assert len(chat_requests(upstream)) == 6 + 12 and len(eval_usage(baimo_home)) == 6 + 12

    listed = baimo("list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.index(run["run_id"]) < listed.stdout.index(first["run_id"])  # newest first
    shown = baimo("show", run["run_id"][:10])
    assert shown.returncode == 0, shown.stderr
    assert "router/r" in shown.stdout and "forty-two" in shown.stdout


def test_a_killed_run_resumes_without_repeating_finished_calls(upstream: ScriptedUpstream, suite_file: Path,
                                                              baimo_home: Path) -> None:
    proc = subprocess.Popen([BAIMO, "eval", "run", str(suite_file), "--models", "remote/slow", "--concurrency", "1",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    db_path = baimo_home / "baimo.db"
    deadline = time.monotonic() + 120
    finished = 0
    while time.monotonic() < deadline and finished < 2:
        time.sleep(0.2)
        if db_path.exists():
            with sqlite3.connect(db_path) as db:
                try:
                    finished = db.execute("SELECT count(*) FROM eval_results").fetchone()[0]
                except sqlite3.OperationalError:  # the tables are not there yet
                    pass
    assert finished >= 2, "the run did not get going"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    run_id = stderr.split("--resume ")[-1].strip().strip("`")
    with sqlite3.connect(db_path) as db:
        status = db.execute("SELECT status FROM eval_runs WHERE id = ?", (run_id,)).fetchone()[0]
        done = {r[0] for r in db.execute("SELECT item_id FROM eval_results WHERE run_id = ?", (run_id,))}
    assert status == "interrupted" and 2 <= len(done) < len(ITEMS)
    before = len(chat_requests(upstream, "slowstrong"))

    out = baimo("run", "--resume", run_id, "--json")
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert run["run_id"] == run_id and run["status"] == "finished"
    assert run["targets"][0]["n"] == len(ITEMS) and run["targets"][0]["correct"] == 4
    resumed = chat_requests(upstream, "slowstrong")[before:]
    asked = [r.body["messages"][-1]["content"] for r in resumed]
    questions = {i: q for i, q, _ in ITEMS}
    assert not [i for i in done if any(questions[i] in a for a in asked)]  # no finished item was asked again
    # every item was asked once, plus at most the one call in flight when the process was killed
    assert len(ITEMS) <= len(chat_requests(upstream, "slowstrong")) <= len(ITEMS) + 1


def test_errors_are_one_line(upstream: ScriptedUpstream, suite_file: Path) -> None:
    for args, needle in [(["run", "no-such-suite", "--models", "remote/strong"], "no suite 'no-such-suite'"),
                         (["show", "feedbeef"], "no evaluation run")]:
        out = baimo(*args)
        assert out.returncode == 1, (args, out.stdout)
        lines = out.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and needle in lines[-1] and "Traceback" not in out.stderr, out.stderr
