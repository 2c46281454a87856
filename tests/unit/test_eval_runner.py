"""The evaluation runner in-process (baimo/evaluation/runner.py) on a real AppState and database, with the scripted
upstream as the remote models and the judge: judged and pairwise suites, JSON-schema tasks, a router's λ sweep,
the cache and its bypass. The CLI, resumption and the router's served share are in tests/e2e/test_eval_cli.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from baimo.api.state import AppState
from baimo.config import Settings
from baimo.errors import InvalidRequest
from baimo.evaluation.runner import run_suite
from baimo.evaluation.store import EvalStore
from tests.support.upstream import Behaviour, ScriptedUpstream

PERSON = '{"name": "Li Wei", "age": 34}'


def remote(mid: str, upstream: str, price_in: float, price_out: float, url: str) -> str:
    return (f"  - id: {mid}\n    kind: openai\n    base_url: {url}\n    upstream_model: {upstream}\n"
            f"    price_input: {price_in}\n    price_output: {price_out}\n    connect_retries: 0\n")


@pytest.fixture
def up(baimo_home: Path):
    behaviours = {"judge": Behaviour.ok("Accurate and clear. Rating: [[8]]"), "person": Behaviour.ok(PERSON),
                  "always-a": Behaviour.ok("Assistant A is better. [[A]]"), "big": Behaviour.ok("#### 42")}
    with ScriptedUpstream(behaviours) as server:
        url = server.base_url
        baimo_home.mkdir(parents=True, exist_ok=True)
        (baimo_home / "baimo.yaml").write_text(
            "default_model: remote/big\nprivacy:\n  mode: \"off\"\nmodels:\n"
            + remote("remote/big", "big", 5.0, 15.0, url) + remote("remote/small", "echo", 0.05, 0.1, url)
            + remote("remote/json", "person", 0.5, 1.0, url) + remote("remote/judge", "judge", 3.0, 6.0, url)
            + remote("remote/biased", "always-a", 3.0, 6.0, url)
            + "routers:\n  - id: baimo/auto\n    strategy: auto\n    candidates: [remote/big, remote/small]\n")
        yield server


def evaluate(suite: str, targets: list[str], **kw: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        state = AppState.build(Settings())
        try:
            return await run_suite(state, suite, targets, **kw)
        finally:
            await state.close()

    return asyncio.run(go())


def calls(server: ScriptedUpstream, model: str) -> int:
    return sum(1 for r in server.requests_for("/chat/completions") if r.body["model"] == model)


def test_a_judged_run_with_a_scripted_judge(up: ScriptedUpstream) -> None:
    run = evaluate("judged-small", ["remote/small"], judge="remote/judge", limit=3)
    t = run["targets"][0]
    assert t["mean_score"] == 8.0 and t["correct"] == 3 and t["scored"] == 3
    assert [i["score"] for i in run["items"]] == [8.0, 8.0, 8.0]
    judged = [r.body for r in up.requests_for("/chat/completions") if r.body["model"] == "judge"]
    assert len(judged) == 3 and all("[[rating]]" in b["messages"][0]["content"] for b in judged)
    # the judge saw the target's answer (the echo model repeats the question) inside MT-Bench's answer markers
    assert any("[The Start of Assistant's Answer]\nExplain in two sentences why the sky is blue." in
               b["messages"][0]["content"] for b in judged)
    with pytest.raises(InvalidRequest, match="--judge"):
        evaluate("judged-small", ["remote/small"], limit=1)


def test_pairwise_judges_both_orders(up: ScriptedUpstream, tmp_path: Path) -> None:
    path = tmp_path / "pair.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"suite": {"name": "pair", "kind": "pairwise"}},
                                                      {"id": "p1", "question": "Say hello."},
                                                      {"id": "p2", "question": "Say goodbye."}]))
    # a judge that always prefers the first answer shown is caught by the swapped order: every item is a tie
    run = evaluate(str(path), ["remote/big", "remote/small"], judge="remote/biased")
    assert {(i["target"], i["score"], i["correct"], i["extracted"]) for i in run["items"]} == {
        (t, 0.5, None, "A/A") for t in ("remote/big", "remote/small")} and len(run["items"]) == 4
    assert calls(up, "always-a") == 4 and all(t["mean_score"] == 0.5 for t in run["targets"])
    with pytest.raises(InvalidRequest, match="exactly two"):
        evaluate(str(path), ["remote/big"], judge="remote/biased")


def test_json_schema_answers_are_validated(up: ScriptedUpstream) -> None:
    run = evaluate("json-schema", ["remote/json"], limit=4)
    right = {i["item_id"]: i["correct"] for i in run["items"]}
    assert right == {"js01": True, "js02": True, "js03": True, "js04": False}  # js04 wants an array of colours
    assert json.loads(run["items"][0]["extracted"]) == json.loads(PERSON)


def test_lambda_sweep_traces_the_router_curve(up: ScriptedUpstream) -> None:
    run = evaluate("arith-bilingual", ["baimo/auto"], sweep_lam=[0.0, 1000.0], limit=4)
    points = {t["lam"]: t for t in run["targets"]}
    assert set(points) == {0.0, 1000.0} and all(t["router"] == "baimo/auto" for t in points.values())
    assert points[0.0]["id"] == "baimo/auto@lam=0" and points[0.0]["kind"] == "router"
    assert points[0.0]["served_share"] == {"remote/big": 1.0}      # λ = 0: the most capable model
    assert points[1000.0]["served_share"] == {"remote/small": 1.0}  # a huge λ: the cheapest
    assert points[0.0]["cost_usd"] > points[1000.0]["cost_usd"]


def test_a_router_sweep_after_its_candidates_pays_no_model_call_twice(up: ScriptedUpstream) -> None:
    run = evaluate("arith-bilingual", ["remote/big", "remote/small", "baimo/auto"], sweep_lam=[0.0, 1000.0],
                   limit=4)
    assert calls(up, "big") == 4 and calls(up, "echo") == 4  # each candidate answered each item once
    routed = [i for i in run["items"] if i["target"].startswith("baimo/auto")]
    assert len(routed) == 8 and all(i["cached"] for i in routed)
    points = {t["lam"]: t for t in run["targets"] if t["router"]}
    assert points[0.0]["served_share"] == {"remote/big": 1.0}
    big = next(t for t in run["targets"] if t["id"] == "remote/big")
    assert points[0.0]["cost_usd"] == big["cost_usd"] and points[0.0]["correct"] == big["correct"]
    assert points[1000.0]["served_share"] == {"remote/small": 1.0}


def test_cache_across_runs_and_no_cache(up: ScriptedUpstream, baimo_home: Path) -> None:
    first = evaluate("arith-bilingual", ["remote/big"], limit=3)
    assert calls(up, "big") == 3 and first["targets"][0]["correct"] == 0
    cached = evaluate("arith-bilingual", ["remote/big"], limit=3)
    assert calls(up, "big") == 3 and all(i["cached"] for i in cached["items"])
    assert cached["targets"][0]["cost_usd"] == first["targets"][0]["cost_usd"]  # what the answers cost when made
    evaluate("arith-bilingual", ["remote/big"], limit=3, temperature=0.5)  # other parameters: another call
    assert calls(up, "big") == 6
    fresh = evaluate("arith-bilingual", ["remote/big"], limit=3, use_cache=False)
    assert calls(up, "big") == 9 and not any(i["cached"] for i in fresh["items"])
    from baimo.store.database import Database

    db = Database(Settings().db_url)
    try:
        runs = EvalStore(db).list_runs()
    finally:
        db.close()
    assert [r["run_id"] for r in runs][0] == fresh["run_id"] and {r["status"] for r in runs} == {"finished"}


def test_kb_qa_scores_retrieval_hits_and_judges_faithfulness(up: ScriptedUpstream, tmp_path: Path) -> None:
    from baimo.knowledge.ingest import Ingestor, collect_files

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tea.md").write_text("# Tea\n\nLongjing tea is grown near West Lake in Hangzhou and is pan-fired by "
                                 "hand.\n")
    (docs / "bikes.md").write_text("# Bicycles\n\nA fixed-gear bicycle has no freewheel, so the pedals always turn "
                                   "with the rear wheel.\n")
    suite = tmp_path / "kb.jsonl"
    suite.write_text("\n".join(json.dumps(r) for r in [
        {"suite": {"name": "kb", "kind": "kb_qa", "k": 1}},
        {"id": "q1", "question": "Where is Longjing tea grown?", "knowledge": "docs", "expected_source": "tea.md",
         "expected_passage": "West Lake"},
        {"id": "q2", "question": "Why do the pedals of a fixed-gear bicycle always turn?", "knowledge": "docs",
         "expected_source": "tea.md"}]))  # a wrong expectation on purpose: the retrieved passage is bikes.md

    async def go() -> dict[str, Any]:
        state = AppState.build(Settings())
        try:
            state.knowledge.create("docs", fuse_embedders=[])
            files, missing = collect_files([docs])
            assert not missing and Ingestor(state.knowledge).add("docs", files).failed == []
            return await run_suite(state, str(suite), ["remote/small"], judge="remote/judge")
        finally:
            await state.close()

    run = asyncio.run(go())
    items = {i["item_id"]: i for i in run["items"]}
    assert (items["q1"]["correct"], items["q1"]["extracted"]) == (True, "tea.md")  # hit@1
    assert items["q2"]["correct"] is False and items["q2"]["extracted"] is None
    assert items["q1"]["score"] == 8.0 and run["targets"][0]["mean_score"] == 8.0  # faithfulness, judged
    answered = [r.body["messages"] for r in up.requests_for("/chat/completions") if r.body["model"] == "echo"]
    assert any("West Lake" in json.dumps(m) for m in answered)  # the answer was given the passages
    judged = [r.body["messages"][0]["content"] for r in up.requests_for("/chat/completions")
              if r.body["model"] == "judge"]
    assert len(judged) == 2 and all("[Passages]" in j for j in judged)


def test_a_persona_is_evaluated_with_its_instructions_and_metered(up: ScriptedUpstream) -> None:
    async def go() -> dict[str, Any]:
        state = AppState.build(Settings())
        try:
            state.personas.create("tutor", model="remote/small", instructions="You are a patient maths tutor.")
            return await run_suite(state, "arith-bilingual", ["persona/tutor"], limit=2)
        finally:
            await state.close()

    run = asyncio.run(go())
    t = run["targets"][0]
    assert (t["id"], t["kind"], t["n"], t["served_share"]) == ("persona/tutor", "persona", 2, {"remote/small": 1.0})
    sent = [r.body["messages"] for r in up.requests_for("/chat/completions") if r.body["model"] == "echo"]
    assert len(sent) == 2 and all(m[0] == {"role": "system", "content": "You are a patient maths tutor."}
                                  for m in sent)
    from baimo.store.database import Database

    db = Database(Settings().db_url)
    try:
        with db.engine.connect() as c:
            rows = c.exec_driver_sql("SELECT endpoint, persona, model FROM usage").fetchall()
    finally:
        db.close()
    assert sorted(map(tuple, rows)) == [("eval", "tutor", "remote/small")] * 2


def test_a_multi_turn_judged_item_is_asked_in_one_conversation(up: ScriptedUpstream, tmp_path: Path) -> None:
    path = tmp_path / "two-turns.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"suite": {"name": "two-turns", "kind": "judged"}},
        {"id": "t1", "question": "Name a fruit.", "turns": ["Name a fruit.", "Now say why you chose it."]}]))
    run = evaluate(str(path), ["remote/small"], judge="remote/judge")
    item = run["items"][0]
    assert (item["score"], item["extracted"], item["correct"]) == (8.0, "8/8", True)
    asked = [r.body["messages"] for r in up.requests_for("/chat/completions") if r.body["model"] == "echo"]
    assert [m["content"] for m in asked[1]] == ["Name a fruit.", "Name a fruit.", "Now say why you chose it."]
    assert [m["role"] for m in asked[1]] == ["user", "assistant", "user"]  # the follow-up sees the first answer
    judged = [r.body["messages"][0]["content"] for r in up.requests_for("/chat/completions")
              if r.body["model"] == "judge"]
    multi = next(j for j in judged if "### User:" in j)
    assert multi.index("Name a fruit.") < multi.index("Now say why you chose it.") and len(judged) == 2


def test_a_run_whose_process_died_without_a_word_shows_as_interrupted(baimo_home: Path) -> None:
    """kill -9 leaves the stored status "running"; a heartbeat older than STALE_AFTER_S shows it as interrupted."""
    from datetime import UTC, datetime, timedelta

    from baimo.evaluation.store import STALE_AFTER_S
    from baimo.store.database import Database

    db = Database(Settings().db_url)
    try:
        store = EvalStore(db)
        run_id = store.create_run({"name": "s", "kind": "exact"}, {}, [{"id": "remote/big", "kind": "model"}])
        store.set_status(run_id, "running")
        assert store.list_runs()[0]["status"] == "running" and store.load_run(run_id)["status"] == "running"
        store.heartbeat(run_id, datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S + 5))
        assert store.list_runs()[0]["status"] == "interrupted"
        assert store.load_run(run_id)["status"] == store.run_spec(run_id)["status"] == "interrupted"
        store.heartbeat(run_id)  # alive again (a resumed run stamps at once)
        assert store.list_runs()[0]["status"] == "running"
        store.set_status(run_id, "finished")
        store.heartbeat(run_id, datetime.now(UTC) - timedelta(hours=1))
        assert store.list_runs()[0]["status"] == "finished"  # only a running run can go stale
    finally:
        db.close()
