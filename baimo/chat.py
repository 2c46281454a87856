"""The chat service: resolve a model id, fit the context, call the backend with fallbacks, meter and store.

Fallbacks happen only before the first token: once a client has seen text from one model we never
splice in another, and a later failure is reported as an error (an SSE `error` event for streams).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from baimo.backends.base import Backend, Finish, GenerationParams, StreamEvent, TextDelta, ToolCallDelta, uses_tools
from baimo.backends.openai_compat import merge_delta_fields
from baimo.backends.registry import ModelRegistry
from baimo.context import ContextFitter, Fitted, start_fitted
from baimo.errors import BaimoError, ContextLengthExceeded, InvalidRequest, UpstreamError
from baimo.metering.usage import Usage, UsageLog, cost_usd, token_details
from baimo.observability import tracing
from baimo.observability.request_id import claim_response_id
from baimo.privacy import PrivacyGuard, PrivateRequest, mark_private
from baimo.routing.cascade import Attempt, logprob_confidence, run_to_end, verifier_confidence
from baimo.routing.request import RouteRequest
from baimo.routing.strategies import RoutePlan, RouterSet
from baimo.store.conversations import ConversationStore


@dataclass
class ChatContext:
    """Who asked, through which endpoint, and where to store the exchange."""

    endpoint: str = "chat.completions"
    stream: bool = False
    api_key_id: str | None = None
    conversation_id: str | None = None
    store_message: bool = False
    persona: str | None = None
    response_id: str = field(default_factory=lambda: claim_response_id("chatcmpl-"))  # also the request's id
    route_prompt: str | None = None  # set when a router decided: kept with the usage record for retraining
    passages: list[Any] | None = None  # knowledge passages put in the prompt (stored as the message's citations)
    baseline_model: str | None = None  # routed requests: the strongest model the router could have used
    persona_budget: Any = None  # the persona's monthly budget, budgets.Limits (set by Assistant.resolve)
    ticket: Any = None  # budgets and rate limits: the admission's Ticket (baimo/metering/admission.py)


@dataclass
class ChoiceState:
    """What one choice (`index`) of an answer has produced so far."""

    text_parts: list[str] = field(default_factory=list)
    tool_call_parts: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None   # OpenAI token-logprob objects, when the client asked
    extra: dict[str, Any] | None = None            # other message fields the model sent (reasoning_content, ...)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The streamed tool-call pieces joined into whole calls (by `index`: id, name, then argument text)."""
        calls: dict[int, dict[str, Any]] = {}
        for part in self.tool_call_parts:
            call = calls.setdefault(int(part.get("index", len(calls))),
                                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
            call["id"] = part.get("id") or call["id"]
            call["type"] = part.get("type") or call["type"]
            fn = part.get("function") or {}
            call["function"]["name"] += fn.get("name") or ""
            call["function"]["arguments"] += fn.get("arguments") or ""
        return [calls[i] for i in sorted(calls)]

    def add(self, event: TextDelta | ToolCallDelta) -> None:
        if isinstance(event, ToolCallDelta):
            self.tool_call_parts.extend(event.calls)
            return
        if event.text:
            self.text_parts.append(event.text)
        if event.logprobs:
            self.logprobs = (self.logprobs or []) + event.logprobs
        if event.extra:
            self.extra = merge_delta_fields(self.extra, event.extra)


@dataclass
class ChatRun:
    """One chat completion in flight: the chosen model, its first event, and what it produced so far."""

    service: ChatService
    requested: str
    backend: Backend
    fitted: Fitted
    route: str
    ctx: ChatContext
    started: float
    first: StreamEvent
    _events: AsyncIterator[StreamEvent]
    choices: dict[int, ChoiceState] = field(default_factory=lambda: {0: ChoiceState()})
    finish: Finish | None = None
    ttft_ms: float | None = None
    error: BaimoError | None = None
    stored_message: dict[str, Any] | None = None
    extra_cost: float = 0.0  # what escalated cascade attempts cost before this answer
    consumed: bool = False  # events() was entered: it records the usage row however the stream ends

    @property
    def model_id(self) -> str:
        return self.backend.config.id

    @property
    def text_parts(self) -> list[str]:
        """Choice 0's text pieces (what is stored, cited and judged)."""
        return self.choices[0].text_parts

    @property
    def tool_call_parts(self) -> list[dict[str, Any]]:
        return self.choices[0].tool_call_parts

    @property
    def text(self) -> str:
        return self.choices[0].text

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return self.choices[0].tool_calls

    @property
    def prompt_cost(self) -> float:
        return cost_usd(self.backend.config, self.fitted.prompt_tokens, 0)

    @property
    def tokens(self) -> tuple[int, int]:
        """(prompt, completion) tokens: the model's own count at the end, else the estimate (pieces streamed)."""
        f = self.finish
        if f:
            return f.prompt_tokens, f.completion_tokens
        return self.fitted.prompt_tokens, sum(len(c.text_parts) for c in self.choices.values())

    @property
    def cost(self) -> float:
        f = self.finish
        return cost_usd(self.backend.config, *self.tokens, token_details(f.usage if f else None)[0])

    @property
    def total_cost(self) -> float:
        return self.cost + self.extra_cost

    @property
    def baseline_cost(self) -> float | None:
        """What the same tokens would have cost on the router's strongest model (None for direct requests)."""
        baseline = self.ctx.baseline_model
        if baseline is None or baseline not in self.service.registry.ids():
            return None
        return cost_usd(self.service.registry.get(baseline).config, *self.tokens)

    def citations(self) -> list[dict[str, Any]] | None:
        """The knowledge passages this answer was given, numbered as in the prompt, with `cited` flags."""
        if self.ctx.passages is None:
            return None
        from baimo.knowledge.grounding import citations

        return citations(self.ctx.passages, self.text)

    async def rewrite(self, rewrite: Callable[[StreamEvent, AsyncIterator[StreamEvent]], AsyncIterator[StreamEvent]]
                      ) -> None:
        """Pass the answer's events (first and rest) through `rewrite` before anyone reads them; waits for the
        rewritten first event (knowledge answers are checked sentence by sentence: `knowledge.answer_stream`)."""
        events = rewrite(self.first, self._events)
        self.first = await anext(events)
        self._events = events

    @property
    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Yield the model's events; record usage (and the message) however the stream ends."""
        self.consumed = True
        status = "complete"
        try:
            event: StreamEvent | None = self.first
            while event is not None:
                if isinstance(event, TextDelta | ToolCallDelta):
                    if self.ttft_ms is None:
                        self.ttft_ms = self.latency_ms
                    self.choices.setdefault(event.index, ChoiceState()).add(event)
                else:
                    self.finish = event
                yield event
                event = await anext(self._events, None)
        except BaimoError as exc:
            self.error, status = exc, "error"
            exc.usage_recorded = True  # type: ignore[attr-defined]  # by the finally below
            raise
        except (asyncio.CancelledError, GeneratorExit):
            status = "stopped"
            raise
        finally:
            await self._events.aclose()
            tracing.record_span("baimo.model_call", self.started, **{
                "gen_ai.request.model": self.model_id, "baimo.route": self.route, "baimo.status": status,
                "gen_ai.usage.input_tokens": self.tokens[0], "gen_ai.usage.output_tokens": self.tokens[1]})
            if status == "stopped":
                self.service.record_in_background(self, status)
            else:
                await self.service.record(self, status)

    async def abandon(self) -> None:
        """The client went away before its answer's first event was read (a stream whose response never
        started): close the model's stream and record the run as stopped (499). Does nothing once events() ran,
        which records the run itself."""
        if self.consumed:
            return
        self.consumed = True
        try:
            await self._events.aclose()
        finally:
            self.service.record_in_background(self, "stopped")

    async def collect(self) -> ChatRun:
        async for _ in self.events():
            pass
        return self


class ChatService:
    def __init__(self, registry: ModelRegistry, usage: UsageLog, conversations: ConversationStore,
                 routers: RouterSet | None = None, privacy: PrivacyGuard | None = None) -> None:
        self.registry = registry
        self.routers = routers
        self.privacy = privacy  # keeps requests with personal data (or confidential ones) on premises
        self.usage = usage
        self.conversations = conversations
        self.context = ContextFitter(registry, usage)  # summarises (or drops) turns that overflow a window
        self._pending: set[asyncio.Future[Any]] = set()

    async def open(self, model: str, params: GenerationParams, ctx: ChatContext) -> ChatRun:
        """Start a completion and wait for its first event: resolve routers, then try models in order. Cancelled
        before the first event (the client went away: api/disconnect.py), it records a 499 usage row."""
        started = time.perf_counter()
        try:
            return await self._open(model, params, ctx, started)
        except asyncio.CancelledError:
            self.usage.submit(unanswered_usage(model, ctx, started, route="the client left before the first token",
                                               status_code=499, finish_reason="stopped"))
            raise

    async def _open(self, model: str, params: GenerationParams, ctx: ChatContext, started: float) -> ChatRun:
        private = await self._private(params, ctx)
        if self.routers is not None and model in self.routers:
            req = RouteRequest(params.messages, persona=ctx.persona, json_mode=params.json_mode,
                               tools=uses_tools(params), max_tokens=params.max_tokens, private=private)
            with tracing.span("baimo.route", **{"baimo.router": model}) as span:
                plan = await self.routers.plan(model, req)
                if span is not None:
                    span.set_attribute("baimo.route.models", list(plan.models))
            ctx.route_prompt = req.prompt
            ctx.baseline_model = plan.baseline or self.routers.strongest(model)
            if plan.cascade is not None and not req.tools:  # a cascade judges text; tool calls go straight
                return await self._open_cascade(model, plan, params, ctx, started)
            return await self._open_first(model, self._with_fallbacks(plan.models, private), params, ctx, started,
                                          plan.reason)
        backends = self._with_fallbacks([model], private)
        reason = f"direct -> {model}"
        if self.privacy is not None and private is not None:
            self.privacy.check_direct(model, private)
            reason = self.privacy.direct_reason(model, private)
        return await self._open_first(model, backends, params, ctx, started, reason)

    async def _private(self, params: GenerationParams, ctx: ChatContext) -> PrivateRequest | None:
        """Whether this request must stay on premises; also marks the task so that no remote backend sends it."""
        private = None
        if self.privacy is not None and self.privacy.active:
            private = await asyncio.to_thread(self.privacy.inspect, params.messages, api_key_id=ctx.api_key_id,
                                              persona=ctx.persona)
        mark_private(private)
        return private

    async def open_fixed(self, requested: str, backend: Backend, params: GenerationParams, ctx: ChatContext,
                         reason: str) -> ChatRun:
        """Answer with a backend chosen outside the router (grounded mode's decline), metered like any answer."""
        return await self._open_first(requested, [backend], params, ctx, time.perf_counter(),
                                      f"{reason} -> {backend.config.id}")

    def _with_fallbacks(self, model_ids: list[str], private: PrivateRequest | None = None) -> list[Backend]:
        """Each model followed by its own configured fallbacks, each model once (for a private request, only
        fallbacks on premises)."""
        order: list[str] = []
        for mid in model_ids:
            for m in [mid, *self.registry.get(mid).config.fallbacks]:
                if m not in order:
                    order.append(m)
        if self.privacy is not None:
            order = self.privacy.fallbacks(order, model_ids, private)
        return [self.registry.get(m) for m in order]

    async def _open_first(self, requested: str, backends: list[Backend], params: GenerationParams, ctx: ChatContext,
                          started: float, reason: str, extra_cost: float = 0.0) -> ChatRun:
        """The first backend that starts answering wins; upstream errors fall through to the next, and a
        context overflow falls through to the next model with a larger window."""
        failures: list[str] = []
        last_error: BaimoError | None = None
        refused: InvalidRequest | None = None
        overflow_at = 0
        for backend in backends:
            if overflow_at and backend.config.context_window <= overflow_at:
                continue
            try:
                backend.check(params)
            except InvalidRequest as exc:  # this model cannot honour the request: try the next one
                refused = refused or exc
                failures.append(f"{backend.config.id} cannot serve it ({exc.param})")
                continue
            try:
                fitted, events = await start_fitted(backend, params, self.context)
                first = await anext(events)
            except (UpstreamError, ContextLengthExceeded) as exc:
                overflowed = isinstance(exc, ContextLengthExceeded)
                failures.append(f"{backend.config.id} {'overflowed' if overflowed else 'failed'} ({exc.status_code})")
                last_error = last_error or exc
                if overflowed:
                    overflow_at = backend.config.context_window
                continue
            except StopAsyncIteration:
                failures.append(f"{backend.config.id} failed (empty stream)")
                last_error = last_error or UpstreamError(f"{backend.config.id} returned nothing")
                continue
            route = reason
            if failures:
                decided = reason.rsplit(" -> ", 1)[0]
                route = ("" if decided == "direct" else f"{decided} | ") + \
                    f"fallback: {', '.join(failures)} -> {backend.config.id}"
            return ChatRun(self, requested, backend, fitted, route, ctx, started, first, events,
                           extra_cost=extra_cost + fitted.summary_cost)
        if last_error is None:
            assert refused is not None
            if len(failures) > 1:
                refused.message += f" (no model could serve it: {'; '.join(failures)})"
            raise refused
        await self.record_failure(requested, ctx, last_error, started, f"{reason} | " + "; ".join(failures))
        last_error.usage_recorded = True  # type: ignore[attr-defined]
        if len(failures) > 1:
            last_error.message = f"{last_error.message} (tried: {'; '.join(failures)})"
        raise last_error

    async def _open_cascade(self, requested: str, plan: RoutePlan, params: GenerationParams, ctx: ChatContext,
                            started: float) -> ChatRun:
        """Answer with each model in turn, cheapest first, until one is confident enough; the client sees
        only the kept answer. The last model is streamed live."""
        spec = plan.cascade
        assert spec is not None
        notes: list[str] = []
        extra_cost = 0.0
        for i, model in enumerate(plan.models):
            backend = self.registry.get(model)
            if i == len(plan.models) - 1:
                reason = f"{plan.reason}: " + "".join(f"{n}; " for n in notes) + f"-> {model}"
                return await self._open_first(requested, [backend], params, ctx, started, reason, extra_cost)
            try:
                attempt = await run_to_end(backend, replace(params, logprobs=spec.scorer == "logprob"))
            except (UpstreamError, ContextLengthExceeded) as exc:
                notes.append(f"{model} failed ({exc.status_code})")
                continue
            if spec.scorer == "verifier" and spec.verifier:
                confidence: float | None = await verifier_confidence(
                    self.registry.get(spec.verifier), ctx.route_prompt or "", attempt.text)
            else:
                confidence = logprob_confidence(attempt.finish)
            conf = 0.0 if confidence is None else confidence
            if conf >= spec.threshold:
                reason = (f"{plan.reason}: " + "".join(f"{n}; " for n in notes)
                          + f"{model} conf={conf:.2f}>={spec.threshold:.2f} -> {model}")
                events = _replay(attempt.finish)
                return ChatRun(self, requested, backend, attempt.fitted, reason, ctx, started,
                               TextDelta(attempt.text), events, extra_cost=extra_cost)
            notes.append(f"{model} conf={conf:.2f}<{spec.threshold:.2f}")
            cost = cost_usd(backend.config, attempt.finish.prompt_tokens, attempt.finish.completion_tokens)
            extra_cost += cost
            self._record_escalation(requested, ctx, attempt, cost, notes[-1])
        raise AssertionError("unreachable: the last cascade model always answers")

    def _record_escalation(self, requested: str, ctx: ChatContext, attempt: Attempt, cost: float, note: str) -> None:
        """Queue the escalated attempt's usage now (committed before, or with, the final answer's record: the
        writer commits in order) and its outcome in the background."""
        f = attempt.finish
        cached, reasoning = token_details(f.usage)
        self.usage.submit(Usage(
            endpoint=ctx.endpoint, model_requested=requested, model=attempt.backend.config.id,
            route=f"cascade: {note} escalated", api_key_id=ctx.api_key_id, conversation_id=ctx.conversation_id,
            stream=ctx.stream, prompt_tokens=f.prompt_tokens, completion_tokens=f.completion_tokens,
            cached_tokens=cached, reasoning_tokens=reasoning, cost=cost, status_code=200,
            finish_reason="escalated", prompt=ctx.route_prompt, response_id=ctx.response_id, persona=ctx.persona))
        if ctx.route_prompt is not None:
            self._in_background(self.usage.add_outcome, router=requested, prompt=ctx.route_prompt,
                                model=attempt.backend.config.id, score=0.0, source="cascade",
                                response_id=ctx.response_id, api_key_id=ctx.api_key_id,
                                comment=attempt.text)  # the rejected draft: a DPO pair (baimo/distill/pairs.py)

    def _usage(self, run: ChatRun, status: str) -> Usage:
        f = run.finish
        return Usage(
            endpoint=run.ctx.endpoint, model_requested=run.requested, model=run.model_id, route=run.route,
            api_key_id=run.ctx.api_key_id, conversation_id=run.ctx.conversation_id, stream=run.ctx.stream,
            prompt_tokens=run.tokens[0], completion_tokens=run.tokens[1],
            cached_tokens=token_details(f.usage if f else None)[0],
            reasoning_tokens=token_details(f.usage if f else None)[1], cost=run.cost,
            latency_ms=run.latency_ms, ttft_ms=run.ttft_ms,
            status_code=run.error.status_code if run.error else (499 if status == "stopped" else 200),
            finish_reason=f.reason if f else status, error=run.error.message if run.error else None,
            prompt=run.ctx.route_prompt, response_id=run.ctx.response_id, persona=run.ctx.persona,
            baseline_cost=run.baseline_cost, baseline_model=run.ctx.baseline_model)

    def _store_message(self, run: ChatRun, status: str, usage: Usage) -> None:
        if run.ctx.store_message and run.ctx.conversation_id and (run.text or status == "complete"):
            run.stored_message = self.conversations.append(
                run.ctx.conversation_id, "assistant", run.text, model=run.model_id, route=run.route,
                tokens_in=usage.prompt_tokens, tokens_out=usage.completion_tokens,
                latency_ms=round(usage.latency_ms or 0, 1),
                ttft_ms=round(usage.ttft_ms, 1) if usage.ttft_ms is not None else None,
                cost=usage.cost, status=status, response_id=run.ctx.response_id, citations=run.citations(),
                baseline_cost=usage.baseline_cost, baseline_model=usage.baseline_model)

    async def record(self, run: ChatRun, status: str) -> None:
        """Record the finished run and wait until its usage row (and message) are committed, so that the
        response's end (the JSON body, the final SSE chunks) is sent only for a recorded request."""
        usage = self._usage(run, status)
        committed = self.usage.submit(usage)  # queued now: even if this task is cancelled, the row is written
        if run.ctx.store_message:
            await asyncio.to_thread(self._store_message, run, status, usage)
        await self.usage.durable(committed)

    def record_in_background(self, run: ChatRun, status: str) -> None:
        """Record a run whose client went away (the task is being cancelled: nothing can be awaited)."""
        usage = self._usage(run, status)
        self.usage.submit(usage)
        if run.ctx.store_message:
            self._in_background(self._store_message, run, status, usage)

    def _in_background(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Write without making the client wait (and even if the request task is being cancelled)."""
        future = asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def record_failure(self, model: str, ctx: ChatContext, error: BaimoError, started: float,
                             route: str) -> None:
        """Record a request no model could answer (upstream errors before the first token), before the error
        response is sent."""
        await self.usage.write(unanswered_usage(model, ctx, started, route=route or None,
                                                status_code=error.status_code, error=error.message))

    async def drain(self) -> None:
        """Wait for background writes (at shutdown)."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        await asyncio.to_thread(self.usage.flush)


def unanswered_usage(model: str, ctx: ChatContext, started: float, **fields: Any) -> Usage:
    """The usage row of a request no model answered (failed upstreams, a client gone before the first token): the
    request's identity from `ctx`, latency since `started` (perf_counter seconds), no tokens and no cost; `fields`
    set the route, status and error."""
    return Usage(endpoint=ctx.endpoint, model_requested=model, api_key_id=ctx.api_key_id,
                 conversation_id=ctx.conversation_id, stream=ctx.stream,
                 latency_ms=(time.perf_counter() - started) * 1000, prompt=ctx.route_prompt,
                 response_id=ctx.response_id, persona=ctx.persona, **fields)


async def _replay(*events: StreamEvent) -> AsyncIterator[StreamEvent]:
    for ev in events:
        yield ev
