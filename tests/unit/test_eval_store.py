"""Evaluation storage (baimo/evaluation/store.py) on SQLite and on a real PostgreSQL: runs, results, the cache, the
run JSON of the shared contract, listings."""

from __future__ import annotations

from pathlib import Path

import pytest

from baimo.errors import InvalidRequest, NotFound
from baimo.evaluation.store import EvalStore, cache_key
from baimo.store.database import Database

SUITE = {"name": "s", "kind": "numeric", "items": 2, "source": "builtin:s", "license": "CC0-1.0"}
PARAMS = {"limit": None, "few_shot": 0, "cot": False, "temperature": 0.0, "max_tokens": 512, "seed": 0}
TARGETS = [{"id": "m", "kind": "model", "call_id": "m", "lam": None, "router": None},
           {"id": "r@lam=1", "kind": "router", "call_id": "r@lam=1", "lam": 1.0, "router": "r"}]


def result(target: str, item: str, correct: bool, **kw: object) -> dict:
    return {"target": target, "item_id": item, "correct": correct, "score": None, "extracted": "1",
            "expected": "1", "served_model": "m", "cost_usd": 0.002, "latency_ms": 120.0, "cached": False,
            "error": None, "answer": "#### 1", "prompt_tokens": 11, "completion_tokens": 3, **kw}


def check_store(db: Database) -> None:
    store = EvalStore(db)
    run_id = store.create_run(SUITE, PARAMS, TARGETS, owner="team:t1")
    other = store.create_run({**SUITE, "name": "other"}, PARAMS, TARGETS[:1])
    store.add_result(run_id, result("m", "1", True))
    store.add_result(run_id, result("m", "2", False, cached=True))
    store.add_result(run_id, result("r@lam=1", "1", True, served_model="cheap"))
    store.add_result(run_id, result("m", "1", False))  # stored twice (a late write of a cancelled run): first kept
    assert store.done(run_id) == {("m", "1"), ("m", "2"), ("r@lam=1", "1")}
    store.set_status(run_id, "interrupted")

    run = store.load_run(run_id)
    assert set(run) == {"run_id", "owner", "created_at", "finished_at", "status", "suite", "params", "targets",
                        "items"}
    assert run["status"] == "interrupted" and run["finished_at"] and run["owner"] == "team:t1"
    assert run["suite"] == SUITE and run["params"] == PARAMS
    m, r = run["targets"]
    assert (m["id"], m["kind"], m["n"], m["correct"], m["accuracy"]) == ("m", "model", 2, 1, 0.5)
    assert m["cost_usd"] == pytest.approx(0.004) and m["latency_ms"] == {"p50": 120.0, "p95": 120.0}
    assert (r["lam"], r["router"], r["served_share"]) == (1.0, "r", {"cheap": 1.0})
    assert set(run["items"][0]) == {"target", "item_id", "correct", "score", "extracted", "expected",
                                    "served_model", "cost_usd", "latency_ms", "cached", "error"}
    assert [i["cached"] for i in run["items"]] == [False, True, False]
    assert store.load_run(run_id[:12])["run_id"] == run_id  # a unique prefix

    listed = store.list_runs()
    assert [x["run_id"] for x in listed] == [other, run_id] and listed[1]["results"] == 3
    assert [x["run_id"] for x in store.list_runs(suite="s")] == [run_id]
    assert [x["run_id"] for x in store.list_runs(owner="team:t1", all_owners=False)] == [run_id]
    assert [x["run_id"] for x in store.list_runs(owner=None, all_owners=False)] == [other]

    key = cache_key("m", [{"role": "user", "content": "问题"}], {"temperature": 0.0})
    assert key != cache_key("m", [{"role": "user", "content": "问题"}], {"temperature": 0.5})
    assert store.cache_get(key) is None
    store.cache_put(key, "m", {"text": "答案", "cost_usd": 0.1})
    store.cache_put(key, "m", {"text": "second write is ignored", "cost_usd": 0.0})
    assert store.cache_get(key) == {"text": "答案", "cost_usd": 0.1}

    with pytest.raises(NotFound):
        store.load_run("0" * 32)
    store.delete_run(other)
    with pytest.raises(NotFound):
        store.run_spec(other)


def test_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'eval.db'}")
    try:
        check_store(db)
        store = EvalStore(db)
        first: dict[str, str] = {}
        while True:  # at most 17 runs until two ids share their first hex digit
            rid = store.create_run(SUITE, PARAMS, TARGETS)
            if rid[0] in first:
                break
            first[rid[0]] = rid
        with pytest.raises(InvalidRequest, match="ambiguous"):
            store.load_run(rid[0])
    finally:
        db.close()


def test_postgresql(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        with db.engine.begin() as c:
            c.exec_driver_sql("DELETE FROM eval_results")
            c.exec_driver_sql("DELETE FROM eval_runs")
        check_store(db)
    finally:
        db.close()
