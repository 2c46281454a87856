"""Turn a requested id into an answer in flight: a persona becomes its model or router, instructions and
knowledge; knowledge becomes numbered passages in the prompt (or grounded mode's decline); then the chat
service routes and calls the model. Both the OpenAI route and the UI's conversation route use this.

Knowledge is always scoped (baimo/metering/principal.py): a request's own `knowledge` bases resolve among the
caller's bases, a persona's among its owner's, and both become base ids before retrieval, so no text in a message
or a document can name a base of another owner."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from baimo.backends.base import GenerationParams
from baimo.backends.static import StaticAnswer
from baimo.chat import ChatContext, ChatRun, ChatService
from baimo.config import KnowledgeConfig
from baimo.knowledge.answer_stream import checked_answer
from baimo.knowledge.bases import KnowledgeService
from baimo.knowledge.grounding import KnowledgeOptions, prepare
from baimo.knowledge.retrieval import Retriever
from baimo.metering.admission import Admission
from baimo.metering.budgets import persona_limits
from baimo.metering.principal import Principal
from baimo.metering.usage import UsageLog
from baimo.observability import tracing
from baimo.personas import PersonaStore


@dataclass
class Assistant:
    chat: ChatService
    personas: PersonaStore
    knowledge: KnowledgeService
    retriever: Retriever
    usage: UsageLog
    defaults: KnowledgeConfig
    default_model: str | None
    admission: Admission | None = None

    def knowledge_options(self, bases: list[str], *, k: int | None = None, grounded: bool = False,
                          min_relevance: float | None = None, mode: str = "hybrid",
                          who: Principal | None = None) -> KnowledgeOptions:
        """Options for the bases named in a request, as ids of bases `who` sees (404 for any other name)."""
        ids = [self.knowledge.get(name, who=who).id for name in bases]  # 404 before anything runs
        return KnowledgeOptions(bases=ids, k=k or self.defaults.top_k, grounded=grounded, mode=mode,
                                min_relevance=self.defaults.min_relevance if min_relevance is None else min_relevance)

    def resolve(self, model: str, params: GenerationParams, ctx: ChatContext,
                knowledge: KnowledgeOptions | None = None,
                who: Principal | None = None) -> tuple[str, GenerationParams, KnowledgeOptions | None]:
        """The model or router to call, the persona-adjusted params, and the knowledge to use (the request's
        own knowledge options take precedence over the persona's). A persona resolves among those `who` sees
        (404 otherwise) and its bases among its owner's. Raises 429 when a persona's budget is spent."""
        persona = self.personas.resolve(model, who)
        if persona is None:
            return model, params, knowledge
        ctx.persona = persona.name
        ctx.persona_budget = persona_limits(persona.name, persona.owner, persona.budget_usd)
        options = knowledge or persona.knowledge_options(self.defaults.top_k, self.defaults.min_relevance)
        if options is not None and knowledge is None:
            scope = Principal.of_owner(persona.owner)
            options.bases = [self.knowledge.get(name, who=scope).id for name in options.bases]
        return persona.model or self.default_model or "", persona.apply(params), options

    async def open(self, target: str, params: GenerationParams, ctx: ChatContext,
                   options: KnowledgeOptions | None) -> ChatRun:
        """Retrieve (when there is knowledge), admit (budgets and rate limits: 429 when over, on the prompt as the
        model will see it), then start the answer; `ctx.passages` holds what was cited, `ctx.ticket` the
        admission, settled when the answer ends."""
        if options is None:
            return await self._admitted(target, params, ctx, lambda: self.chat.open(target, params, ctx))
        with tracing.span("baimo.retrieval", **{"baimo.knowledge.bases": list(options.bases),
                                                "baimo.knowledge.k": options.k}):
            grounding = await asyncio.to_thread(prepare, self.retriever, params, options)
        ctx.passages = grounding.passages
        if grounding.decline is not None:
            return await self._admitted(target, params, ctx, lambda: self.chat.open_fixed(
                target, StaticAnswer(grounding.decline), params, ctx,
                f"grounded: no passage with similarity >= {options.min_relevance:.2f}"))
        run = await self._admitted(target, grounding.params, ctx,
                                   lambda: self.chat.open(target, grounding.params, ctx))
        check = grounding.check
        if check is not None:
            await run.rewrite(lambda first, rest: checked_answer(first, rest, check, grounding.fallback))
        return run

    async def _admitted(self, target: str, params: GenerationParams, ctx: ChatContext,
                        start: Callable[[], Awaitable[ChatRun]]) -> ChatRun:
        """`start()` once admitted; the reservation is released if no model answers, settled at the run's real
        cost (escalations and summaries included) when its stream ends."""
        if self.admission is None:
            return await start()
        ticket = await self.admission.admit(key_id=ctx.api_key_id, target=target, messages=params.messages,
                                            max_tokens=params.max_tokens, n=int(params.extra.get("n") or 1),
                                            persona=ctx.persona_budget)
        ctx.ticket = ticket
        try:
            run = await start()
        except BaseException:
            if ticket.holds:
                await asyncio.to_thread(ticket.release)
            raise
        if ticket.holds:
            await run.rewrite(lambda first, rest: ticket.settled_stream(first, rest, lambda: run.total_cost))
        return run
