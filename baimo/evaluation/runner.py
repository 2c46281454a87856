"""Run a suite against models, routers and personas, in-process, exactly as `baimo chat` calls them.

Each call goes through `Assistant.resolve` and `Assistant.open` with `ChatContext(endpoint="eval")`, so routers
route, personas apply their instructions and knowledge, budgets admit, and every call is metered as a usage row
with endpoint "eval" (`baimo usage` shows evaluation spend). Answers are cached in the database by
sha256(target, messages, params) before they are scored, and each scored item is stored at once, so an
interrupted run resumes without repeating a finished item or a paid call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from baimo.errors import BaimoError, InvalidRequest
from baimo.evaluation import prompts
from baimo.evaluation.extract import (
    extract_choice,
    extract_exact,
    extract_json,
    extract_number,
    extract_rating,
    extract_verdict,
    numbers_match,
)
from baimo.evaluation.store import HEARTBEAT_S, EvalStore, cache_key
from baimo.evaluation.suites import JUDGED_KINDS, Suite

log = logging.getLogger(__name__)

__all__ = ["Answer", "EvalParams", "Runner", "Target", "build_targets"]


@dataclass
class EvalParams:
    """How a run asks: the contract's "params" (temperature 0 and a fixed seed, so cached answers are the answers
    a repeated call would give where the model is deterministic)."""

    limit: int | None = None
    few_shot: int = 0
    cot: bool = False
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int = 0
    judge: str | None = None
    concurrency: int = 4
    sweep_lam: list[float] | None = None

    def generation(self) -> dict[str, Any]:
        """The parameters that identify a call in the cache."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed}


@dataclass
class Target:
    """One column of the results: `id` as reported, `call_id` what is called (a λ-sweep point is a router variant
    `<router>@lam=<λ>`), kind model | router | persona."""

    id: str
    kind: str
    call_id: str
    lam: float | None = None
    router: str | None = None

    def entry(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "call_id": self.call_id, "lam": self.lam, "router": self.router}


@dataclass
class Answer:
    """What one call produced: text, the model that served it, route in words, cost in USD, tokens, latency in
    ms, and the knowledge passages it was given ({"source", "text"}, kb_qa)."""

    text: str
    served_model: str | None
    route: str | None
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    passages: list[dict[str, str]] = field(default_factory=list)
    cached: bool = False


def build_targets(state: Any, ids: list[str], sweep_lam: list[float] | None = None) -> list[Target]:
    """Targets for `--models` ids: each checked callable (404 otherwise); a router with `sweep_lam` becomes one
    target per λ (a copy of its config with `lam` set, `RouterSet.variant`)."""
    out: list[Target] = []
    for raw in ids:
        tid = raw.strip()
        if not tid:
            continue
        state.check_callable(tid)
        if tid in state.routers:
            if sweep_lam:
                for lam in sweep_lam:
                    call_id = state.routers.variant(tid, lam=float(lam))
                    out.append(Target(id=call_id, kind="router", call_id=call_id, lam=float(lam), router=tid))
                continue
            out.append(Target(id=tid, kind="router", call_id=tid))
        elif state.personas.resolve(tid) is not None:
            out.append(Target(id=tid, kind="persona", call_id=tid))
        else:
            out.append(Target(id=tid, kind="model", call_id=tid))
    if not out:
        raise InvalidRequest("--models names no model, router or persona", param="models")
    return out


def restore_targets(state: Any, entries: list[dict[str, Any]]) -> list[Target]:
    """The targets of a stored run (re-creating λ-sweep router variants)."""
    out = []
    for e in entries:
        call_id = e.get("call_id") or e["id"]
        if e.get("router") is not None and e.get("lam") is not None:
            call_id = state.routers.variant(e["router"], lam=float(e["lam"]))
        state.check_callable(call_id)
        out.append(Target(id=e["id"], kind=e["kind"], call_id=call_id, lam=e.get("lam"), router=e.get("router")))
    return out


class Runner:
    """Scores a suite's items for each target, `concurrency` calls at a time, storing results as they finish."""

    def __init__(self, state: Any, store: EvalStore, suite: Suite, params: EvalParams, *, use_cache: bool = True,
                 on_item: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.state = state
        self.store = store
        self.suite = suite
        self.params = params
        self.use_cache = use_cache
        self.on_item = on_item or (lambda r: None)
        self.calls_made = 0  # calls that were not answered from the cache
        self._sem = asyncio.Semaphore(max(1, params.concurrency))
        if suite.kind in JUDGED_KINDS and suite.kind != "kb_qa" and not params.judge:
            raise InvalidRequest(f"a {suite.kind} suite needs --judge MODEL", param="judge")

    # Calls ------------------------------------------------------------------------------------------------

    async def call(self, call_id: str, messages: list[dict[str, Any]], *, json_mode: bool = False,
                   knowledge: dict[str, Any] | None = None) -> Answer:
        """One completion of `call_id` (model, router or persona) in-process, from the cache when it was made
        before. Raises BaimoError when no model answers."""
        from baimo.backends.base import GenerationParams
        from baimo.chat import ChatContext

        gen = self.params.generation()
        key = cache_key(call_id, messages, {**gen, "json_mode": json_mode, "knowledge": knowledge})
        if self.use_cache:
            hit = await asyncio.to_thread(self.store.cache_get, key)
            if hit is not None:
                return Answer(**{**hit, "cached": True})
            if knowledge is None:
                routed = await self._routed_from_cache(call_id, messages, gen, json_mode)
                if routed is not None:
                    return routed
        s = self.state
        params = GenerationParams(messages=messages, max_tokens=gen["max_tokens"], temperature=gen["temperature"],
                                  seed=gen["seed"], json_mode=json_mode)
        ctx = ChatContext(endpoint="eval", stream=False, store_message=False)
        options = s.assistant.knowledge_options([knowledge["base"]], k=knowledge.get("k")) if knowledge else None
        async with self._sem:
            target, params, options = s.assistant.resolve(call_id, params, ctx, options)
            run = await s.assistant.open(target, params, ctx, options)
            async for _ in run.events():
                pass
        self.calls_made += 1
        prompt_tokens, completion_tokens = run.tokens
        answer = Answer(text=run.text, served_model=run.model_id, route=run.route, cost_usd=run.total_cost,
                        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        latency_ms=round(run.latency_ms, 1),
                        passages=[{"source": p.source, "text": p.text} for p in (ctx.passages or [])])
        data = asdict(answer)
        data.pop("cached")
        await asyncio.to_thread(self.store.cache_put, key, call_id, data)
        return answer

    async def _routed_from_cache(self, call_id: str, messages: list[dict[str, Any]], gen: dict[str, Any],
                                 json_mode: bool) -> Answer | None:
        """A router whose decision for these messages is a model already answered (cached) for them: that
        answer, with the router's route, without calling the model again. So a router, and each point of a λ
        sweep, costs only its routing decisions once its candidates were evaluated. None for anything else
        (a model, a persona, a cascade, which judges the answer itself, or a choice not cached yet)."""
        from baimo.routing.request import RouteRequest

        routers = getattr(self.state, "routers", None)
        if routers is None or call_id not in routers:
            return None
        chat = self.state.chat
        private = None
        if chat.privacy is not None and chat.privacy.active:
            private = await asyncio.to_thread(chat.privacy.inspect, messages)
        req = RouteRequest(messages, json_mode=json_mode, max_tokens=gen["max_tokens"], private=private)
        plan = await routers.plan(call_id, req)
        if plan.cascade is not None or not plan.models:
            return None
        model = plan.models[0]
        hit = await asyncio.to_thread(self.store.cache_get, cache_key(
            model, messages, {**gen, "json_mode": json_mode, "knowledge": None}))
        if hit is None:
            return None
        return Answer(**{**hit, "route": plan.reason, "cached": True})

    # Scoring ----------------------------------------------------------------------------------------------

    def _score_direct(self, item: dict[str, Any], text: str) -> tuple[bool, str | None, str | None]:
        """(correct, extracted, error) for the kinds scored without a judge."""
        kind = self.suite.kind
        if kind == "multiple_choice":
            got = extract_choice(text, "".join(item["choices"]))
            return got == item["answer"], got, None
        if kind == "numeric":
            got = extract_number(text)
            return numbers_match(got, item["answer"]), got, None
        if kind == "exact":
            got = extract_exact(text)
            return got.casefold() == str(item["answer"]).strip().casefold(), got, None
        # json_schema
        from jsonschema import validators

        try:
            value = extract_json(text)
        except ValueError:
            return False, None, None
        validator = validators.validator_for(item["schema"])(item["schema"])
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        return not errors, json.dumps(value, ensure_ascii=False)[:500], None

    async def _judge(self, messages: list[dict[str, Any]]) -> float | None:
        assert self.params.judge is not None
        verdict = await self.call(self.params.judge, messages)
        return extract_rating(verdict.text)

    async def _judged(self, target: Target, item: dict[str, Any], messages: list[dict[str, Any]], first: Answer,
                      result: dict[str, Any]) -> float | None:
        """The judge's rating of a judged item. With further `turns` (MT-Bench's second question), the target
        answers each in the same conversation and the judge rates every turn (the later ones with MT-Bench's
        multi-turn template); the score is the mean of the turn ratings (MT-Bench's overall score), `extracted`
        lists them, and cost, tokens and latency add up over the turns. None when a rating is missing."""
        turns = [str(t) for t in item.get("turns") or []][1:]
        ratings = [await self._judge(prompts.judge_messages(item, first.text))]
        history = [*messages, {"role": "assistant", "content": first.text}]
        dialogue = [(str(item["question"]), first.text)]
        for turn in turns:
            history.append({"role": "user", "content": turn})
            try:
                ans = await self.call(target.call_id, list(history))
            except BaimoError as exc:
                result["error"] = " ".join(exc.message.split())
                return None
            history.append({"role": "assistant", "content": ans.text})
            dialogue.append((turn, ans.text))
            for key, value in (("cost_usd", ans.cost_usd), ("latency_ms", ans.latency_ms),
                               ("prompt_tokens", ans.prompt_tokens), ("completion_tokens", ans.completion_tokens)):
                result[key] += value
            result["cached"] = result["cached"] and ans.cached
            result["answer"] = ans.text
            ratings.append(await self._judge(prompts.multi_turn_judge_messages(item, dialogue)))
        if len(ratings) > 1:
            result["extracted"] = "/".join("-" if r is None else f"{r:g}" for r in ratings)
        if any(r is None for r in ratings):
            return None
        return round(sum(r for r in ratings if r is not None) / len(ratings), 3)

    async def score(self, target: Target, item: dict[str, Any]) -> dict[str, Any]:
        """The result of one item for one target: the contract's item dict plus answer and tokens."""
        kind = self.suite.kind
        result: dict[str, Any] = {"target": target.id, "item_id": item["id"], "correct": None, "score": None,
                                  "extracted": None, "expected": None, "served_model": None, "cost_usd": 0.0,
                                  "latency_ms": 0.0, "cached": False, "error": None, "answer": None,
                                  "prompt_tokens": 0, "completion_tokens": 0}
        if kind in ("multiple_choice", "numeric", "exact"):
            result["expected"] = str(item["answer"])
        messages = prompts.answer_messages(self.suite, item, few_shot=self.params.few_shot, cot=self.params.cot)
        knowledge = {"base": item["knowledge"], "k": self.suite.k} if kind == "kb_qa" else None
        try:
            ans = await self.call(target.call_id, messages, knowledge=knowledge)
        except BaimoError as exc:
            result["error"] = " ".join(exc.message.split())
            return result
        result.update(answer=ans.text, served_model=ans.served_model, cost_usd=ans.cost_usd,
                      latency_ms=ans.latency_ms, cached=ans.cached, prompt_tokens=ans.prompt_tokens,
                      completion_tokens=ans.completion_tokens)
        try:
            if kind in ("multiple_choice", "numeric", "exact", "json_schema"):
                result["correct"], result["extracted"], result["error"] = self._score_direct(item, ans.text)
            elif kind == "judged":
                rating = await self._judged(target, item, messages, ans, result)
                result["score"] = rating
                result["correct"] = None if rating is None else rating >= self.suite.pass_score
                result["error"] = result["error"] or (None if rating is not None else "the judge gave no rating")
            elif kind == "kb_qa":
                expected = str(item["expected_source"])
                result["expected"] = expected
                hits = [p for p in ans.passages if expected in p["source"]
                        and (not item.get("expected_passage") or item["expected_passage"] in p["text"])]
                result["correct"] = bool(hits)  # retrieval hit@k
                result["extracted"] = hits[0]["source"] if hits else None
                if self.params.judge:  # answer faithfulness, 1-10
                    result["score"] = await self._judge(prompts.faithfulness_messages(
                        item, [p["text"] for p in ans.passages], ans.text))
        except BaimoError as exc:
            result["error"] = "judge: " + " ".join(exc.message.split())
        return result

    async def score_pair(self, targets: list[Target], item: dict[str, Any]) -> list[dict[str, Any]]:
        """Pairwise: both targets answer, the judge compares them in both orders (MT-Bench's guard against position
        bias); a target wins only when both verdicts agree, else it is a tie. score 1 / 0.5 / 0, correct = won
        (None for a tie)."""
        a, b = targets
        ra, rb = await asyncio.gather(self.score(a, item), self.score(b, item))
        if ra["error"] or rb["error"]:
            return [ra, rb]
        try:
            first = await self.call(self.params.judge or "", prompts.pairwise_messages(item, ra["answer"],
                                                                                        rb["answer"]))
            second = await self.call(self.params.judge or "", prompts.pairwise_messages(item, rb["answer"],
                                                                                         ra["answer"]))
        except BaimoError as exc:
            for r in (ra, rb):
                r["error"] = "judge: " + " ".join(exc.message.split())
            return [ra, rb]
        v1, v2 = extract_verdict(first.text), extract_verdict(second.text)
        a_wins = v1 == "A" and v2 == "B"
        b_wins = v1 == "B" and v2 == "A"
        for r, won, lost in ((ra, a_wins, b_wins), (rb, b_wins, a_wins)):
            r["score"] = 1.0 if won else 0.0 if lost else 0.5
            r["correct"] = True if won else False if lost else None
            r["extracted"] = f"{v1}/{v2}"
        return [ra, rb]

    # The run ----------------------------------------------------------------------------------------------

    async def run(self, run_id: str, targets: list[Target], progress: Any = None) -> None:
        """Score every (target, item) not yet stored for `run_id`, storing each result as it finishes. On
        cancellation (Ctrl-C, SIGTERM) the run is marked interrupted and the cancellation goes on."""
        items = self.suite.items[:self.params.limit] if self.params.limit else self.suite.items
        done = await asyncio.to_thread(self.store.done, run_id)
        if self.suite.kind == "pairwise":
            if len(targets) != 2:
                raise InvalidRequest("a pairwise suite compares exactly two --models", param="models")
            jobs = [(None, it) for it in items if any((t.id, it["id"]) not in done for t in targets)]
        else:
            jobs = [(t, it) for t in targets for it in items if (t.id, it["id"]) not in done]
        task = progress.add_task(f"{self.suite.name}", total=len(items) * len(targets),
                                 completed=len(items) * len(targets) - len(jobs) * (
                                     2 if self.suite.kind == "pairwise" else 1)) if progress else None

        async def one(target: Target | None, item: dict[str, Any]) -> None:
            results = await (self.score_pair(targets, item) if target is None else self.score(target, item))
            for r in results if isinstance(results, list) else [results]:
                if (r["target"], r["item_id"]) in done:
                    continue
                await asyncio.to_thread(self.store.add_result, run_id, r)
                self.on_item(r)
                if progress is not None:
                    progress.advance(task)

        await asyncio.to_thread(self.store.set_status, run_id, "running")
        routers = getattr(self.state, "routers", None)
        routed = [t is not None and routers is not None and t.call_id in routers for t, _ in jobs]
        beating = asyncio.create_task(self._heartbeat(run_id))
        try:  # models first, then routers: a router's choice is then usually answered from the cache
            await asyncio.gather(*(one(t, it) for (t, it), r in zip(jobs, routed, strict=True) if not r))
            await asyncio.gather(*(one(t, it) for (t, it), r in zip(jobs, routed, strict=True) if r))
        except BaseException:
            beating.cancel()
            await asyncio.shield(asyncio.to_thread(self.store.set_status, run_id, "interrupted"))
            raise
        beating.cancel()
        await asyncio.to_thread(self.store.set_status, run_id, "finished")

    async def _heartbeat(self, run_id: str) -> None:
        """Stamp the run's heartbeat every HEARTBEAT_S seconds while it runs: a run whose stamps stop (its process
        was killed without a chance to say so) is then shown as interrupted (store.shown_status)."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await asyncio.to_thread(self.store.heartbeat, run_id)
            except Exception:  # a missed stamp is not worth failing the run for: log it, try again
                log.warning("evaluation run %s: heartbeat failed", run_id, exc_info=True)


async def run_suite(state: Any, suite: str, targets: list[str] | None = None, *, params: EvalParams | None = None,
                    resume: str | None = None, owner: str | None = None, use_cache: bool = True,
                    progress: Any = None, on_start: Callable[[str], None] | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """Evaluate `targets` (model, router or persona ids) on `suite` (a SUITE argument: built-in name, path, gsm8k,
    cmmlu[:subject], mt-bench) and return the run JSON (`store.load_run`). `overrides` set EvalParams fields
    (`temperature=0.0`, `limit=20`). With `resume=RUN_ID`, the stored run's suite, targets and parameters are used
    (only `concurrency` may change) and only its missing items are scored. `on_start(run_id)` is called once the
    run exists (the CLI prints it, so an interrupted run can be resumed). Raises BaimoError (NotFound for an
    unknown suite, target or run; InvalidRequest for bad parameters)."""
    from baimo.evaluation.suites import load_suite

    store = EvalStore(state.db)
    if resume is not None:
        spec = await asyncio.to_thread(store.run_spec, resume)
        stored = {k: v for k, v in spec["params"].items() if k in EvalParams.__dataclass_fields__}
        concurrency = (params.concurrency if params else overrides.get("concurrency")) or stored.get("concurrency", 4)
        p = EvalParams(**{**stored, "concurrency": concurrency})
        loaded = load_suite(spec["suite"].get("spec") or spec["suite"]["source"])
        chosen = restore_targets(state, spec["targets"])
        run_id = spec["run_id"]
        runner = Runner(state, store, loaded, p, use_cache=use_cache)
    else:
        p = params or EvalParams()
        for k, v in overrides.items():
            if k not in EvalParams.__dataclass_fields__:
                raise InvalidRequest(f"unknown evaluation parameter {k!r}", param=k)
            setattr(p, k, v)
        loaded = load_suite(suite)
        chosen = build_targets(state, targets or [], p.sweep_lam)
        if p.judge:
            state.check_callable(p.judge)
        runner = Runner(state, store, loaded, p, use_cache=use_cache)  # checks the parameters before a run exists
        described = {**loaded.describe(), "spec": suite}
        if p.limit:
            described["items"] = min(p.limit, len(loaded.items))
        run_id = await asyncio.to_thread(store.create_run, described, asdict(p), [t.entry() for t in chosen], owner)
    if on_start is not None:
        on_start(run_id)
    await runner.run(run_id, chosen, progress)
    return await asyncio.to_thread(store.load_run, run_id)
