"""Evaluation runs in the database: runs, their item results (written as each item finishes, which is what makes a
run resumable) and the response cache (a paid call is never made twice, across runs too).

`load_run(run_id)` returns the run JSON of the shared contract (README "Evaluation"); reports and `baimo eval
compare` read it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from baimo.errors import InvalidRequest, NotFound
from baimo.evaluation.stats import summarize
from baimo.store.database import Database
from baimo.store.tables import EvalCache, EvalResult, EvalRun

__all__ = ["EvalStore", "cache_key", "list_runs", "load_run"]

JUDGED = ("judged", "pairwise", "kb_qa")
HEARTBEAT_S = 15.0  # how often a running run's process stamps heartbeat_at
STALE_AFTER_S = 90.0  # a "running" run whose heartbeat is older than this has lost its process: "interrupted"


def cache_key(target: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of (target, messages, params): the identity of a model call."""
    blob = json.dumps([target, messages, params], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)  # SQLite gives naive datetimes back


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else _aware(dt).isoformat()


def shown_status(run: EvalRun, now: datetime | None = None, stale_after_s: float = STALE_AFTER_S) -> str:
    """The status to show: the stored one, except that a "running" run whose process has not stamped its heartbeat
    (or, before the first stamp, been created) for `stale_after_s` seconds died without a word (kill -9, power
    loss) and is "interrupted": `--resume` continues it like any interrupted run."""
    if run.status != "running":
        return run.status
    last = run.heartbeat_at or run.created_at
    if last is None:
        return run.status
    age = ((now or datetime.now(UTC)) - _aware(last)).total_seconds()
    return "interrupted" if age > stale_after_s else "running"


class EvalStore:
    """Runs, results and cached answers in Baimo's database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # Runs -------------------------------------------------------------------------------------------------

    def create_run(self, suite: dict[str, Any], params: dict[str, Any], targets: list[dict[str, Any]],
                   owner: str | None = None) -> str:
        """A new run (status running); returns its id (32 hex digits)."""
        with self.db.session() as s:
            run = EvalRun(owner=owner, suite=json.dumps(suite, ensure_ascii=False), params=json.dumps(params),
                          targets=json.dumps(targets, ensure_ascii=False), status="running")
            s.add(run)
            s.flush()
            return run.id

    def _find(self, s: Any, run_id: str) -> EvalRun:
        run = s.get(EvalRun, run_id)
        if run is None and run_id and len(run_id) < 32:  # a unique prefix, as printed in `baimo eval list`
            found = s.scalars(select(EvalRun).where(EvalRun.id.startswith(run_id, autoescape=True)).limit(2)).all()
            if len(found) > 1:
                raise InvalidRequest(f"run id prefix {run_id!r} is ambiguous", param="run_id")
            run = found[0] if found else None
        if run is None:
            raise NotFound(f"no evaluation run {run_id!r}", param="run_id")
        return run

    def run_spec(self, run_id: str) -> dict[str, Any]:
        """{"run_id", "status", "suite", "params", "targets"} of a stored run (NotFound otherwise)."""
        with self.db.session() as s:
            run = self._find(s, run_id)
            return {"run_id": run.id, "status": shown_status(run), "suite": json.loads(run.suite),
                    "params": json.loads(run.params), "targets": json.loads(run.targets)}

    def set_status(self, run_id: str, status: str) -> None:
        """running | finished | interrupted (finished and interrupted also stamp finished_at)."""
        with self.db.session() as s:
            run = self._find(s, run_id)
            run.status = status
            run.finished_at = None if status == "running" else datetime.now(UTC)
            if status == "running":
                run.heartbeat_at = datetime.now(UTC)

    def heartbeat(self, run_id: str, at: datetime | None = None) -> None:
        """Stamp a running run's heartbeat_at (now, or `at`): its process is alive."""
        with self.db.session() as s:
            self._find(s, run_id).heartbeat_at = at or datetime.now(UTC)

    def list_runs(self, limit: int = 100, *, suite: str | None = None, owner: str | None = None,
                  all_owners: bool = True) -> list[dict[str, Any]]:
        """Run summaries, newest first: run_id, created_at, finished_at, status, owner, suite (name), kind,
        targets (ids), results (items stored). `suite` keeps one suite's runs; `all_owners=False` keeps `owner`'s."""
        with self.db.session() as s:
            q = select(EvalRun).order_by(EvalRun.created_at.desc(), EvalRun.id)
            if not all_owners:
                q = q.where(EvalRun.owner.is_(None) if owner is None else EvalRun.owner == owner)
            counts = dict(s.execute(select(EvalResult.run_id, func.count()).group_by(EvalResult.run_id)).all())
            out = []
            for r in s.scalars(q):
                meta = json.loads(r.suite)
                if suite is not None and meta.get("name") != suite:
                    continue
                out.append({"run_id": r.id, "created_at": _iso(r.created_at), "finished_at": _iso(r.finished_at),
                            "status": shown_status(r), "owner": r.owner, "suite": meta.get("name"),
                            "kind": meta.get("kind"),
                            "targets": [t["id"] for t in json.loads(r.targets)], "results": counts.get(r.id, 0)})
                if len(out) >= limit:
                    break
            return out

    def delete_run(self, run_id: str) -> None:
        with self.db.session() as s:
            run = self._find(s, run_id)
            s.execute(delete(EvalResult).where(EvalResult.run_id == run.id))
            s.delete(run)

    # Results ----------------------------------------------------------------------------------------------

    def done(self, run_id: str) -> set[tuple[str, str]]:
        """(target, item_id) pairs already scored in a run: what a resumed run skips."""
        with self.db.session() as s:
            rows = s.execute(select(EvalResult.target, EvalResult.item_id).where(EvalResult.run_id == run_id))
            return {(t, i) for t, i in rows}

    def add_result(self, run_id: str, r: dict[str, Any]) -> None:
        """Store one item's result (the contract's item dict plus "answer", "prompt_tokens", "completion_tokens").
        An item already stored (a cancelled run's last write landing after its resumption began) is kept."""
        try:
            self._add_result(run_id, r)
        except IntegrityError:
            pass

    def _add_result(self, run_id: str, r: dict[str, Any]) -> None:
        with self.db.session() as s:
            s.add(EvalResult(
                run_id=run_id, target=r["target"], item_id=r["item_id"], correct=r.get("correct"),
                score=r.get("score"), extracted=r.get("extracted"), expected=r.get("expected"),
                answer=r.get("answer"), served_model=r.get("served_model"), cost=r.get("cost_usd") or 0.0,
                latency_ms=r.get("latency_ms") or 0.0, prompt_tokens=r.get("prompt_tokens") or 0,
                completion_tokens=r.get("completion_tokens") or 0, cached=bool(r.get("cached")),
                error=r.get("error")))

    def results(self, run_id: str) -> list[dict[str, Any]]:
        """Every item result of a run, in the order they finished."""
        with self.db.session() as s:
            rows = s.scalars(select(EvalResult).where(EvalResult.run_id == run_id).order_by(EvalResult.id)).all()
            return [{"target": r.target, "item_id": r.item_id, "correct": r.correct, "score": r.score,
                     "extracted": r.extracted, "expected": r.expected, "served_model": r.served_model,
                     "cost_usd": r.cost, "latency_ms": round(r.latency_ms, 1), "cached": r.cached, "error": r.error,
                     "answer": r.answer, "prompt_tokens": r.prompt_tokens,
                     "completion_tokens": r.completion_tokens} for r in rows]

    # Cache ------------------------------------------------------------------------------------------------

    def cache_get(self, key: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            row = s.get(EvalCache, key)
            return json.loads(row.response) if row else None

    def cache_put(self, key: str, target: str, response: dict[str, Any], owner: str | None = None) -> None:
        """Keep the first answer stored under `key`; a concurrent writer of the same key (two runs making the same
        call, or a cancelled run's last write landing during its resumption) is not an error."""
        try:
            with self.db.session() as s:
                if s.get(EvalCache, key) is None:
                    s.add(EvalCache(key=key, target=target, owner=owner,
                                    response=json.dumps(response, ensure_ascii=False)))
        except IntegrityError:
            pass

    # The run JSON -----------------------------------------------------------------------------------------

    def load_run(self, run_id: str) -> dict[str, Any]:
        """The contract's run JSON (plus "owner"): run_id, created_at, finished_at, status, suite, params, targets
        (with their statistics computed from the stored results), items."""
        with self.db.session() as s:
            run = self._find(s, run_id)
            head = {"run_id": run.id, "owner": run.owner, "created_at": _iso(run.created_at),
                    "finished_at": _iso(run.finished_at), "status": shown_status(run), "suite": json.loads(run.suite),
                    "params": json.loads(run.params)}
            targets = json.loads(run.targets)
        results = self.results(head["run_id"])
        judged = head["suite"].get("kind") in JUDGED
        entries = []
        for t in targets:
            mine = [r for r in results if r["target"] == t["id"]]
            entry = {"id": t["id"], "kind": t["kind"], "lam": t.get("lam"), "router": t.get("router")}
            entries.append(summarize(entry, mine, judged=judged))
        items = [{k: r[k] for k in ("target", "item_id", "correct", "score", "extracted", "expected",
                                    "served_model", "cost_usd", "latency_ms", "cached", "error")} for r in results]
        return {**head, "targets": entries, "items": items}


def load_run(run_id: str) -> dict[str, Any]:
    """The run JSON of a stored run, from the database the environment configures (BAIMO_HOME or
    BAIMO_DATABASE_URL). Raises NotFound for an unknown id."""
    from baimo.config import Settings

    db = Database(Settings().db_url)
    try:
        return EvalStore(db).load_run(run_id)
    finally:
        db.close()


def list_runs(limit: int = 100, *, suite: str | None = None, owner: str | None = None,
              all_owners: bool = True) -> list[dict[str, Any]]:
    """`EvalStore.list_runs` on the database the environment configures."""
    from baimo.config import Settings

    db = Database(Settings().db_url)
    try:
        return EvalStore(db).list_runs(limit, suite=suite, owner=owner, all_owners=all_owners)
    finally:
        db.close()
