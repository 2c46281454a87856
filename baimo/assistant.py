"""Turn a requested id into an answer in flight: a persona becomes its model or router, instructions and
knowledge; knowledge becomes numbered passages in the prompt (or grounded mode's decline); then the chat
service routes and calls the model. Both the OpenAI route and the UI's conversation route use this."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from baimo.backends.base import GenerationParams
from baimo.backends.static import StaticAnswer
from baimo.chat import ChatContext, ChatRun, ChatService
from baimo.config import KnowledgeConfig
from baimo.errors import BudgetExceeded
from baimo.knowledge.answer_stream import checked_answer
from baimo.knowledge.bases import KnowledgeService
from baimo.knowledge.grounding import KnowledgeOptions, prepare
from baimo.knowledge.retrieval import Retriever
from baimo.metering.usage import UsageLog
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

    def knowledge_options(self, bases: list[str], *, k: int | None = None, grounded: bool = False,
                          min_relevance: float | None = None, mode: str = "hybrid") -> KnowledgeOptions:
        for name in bases:
            self.knowledge.get(name)  # 404 for an unknown base, before anything runs
        return KnowledgeOptions(bases=bases, k=k or self.defaults.top_k, grounded=grounded, mode=mode,
                                min_relevance=self.defaults.min_relevance if min_relevance is None else min_relevance)

    def resolve(self, model: str, params: GenerationParams, ctx: ChatContext,
                knowledge: KnowledgeOptions | None = None) -> tuple[str, GenerationParams, KnowledgeOptions | None]:
        """The model or router to call, the persona-adjusted params, and the knowledge to use (the request's
        own knowledge options take precedence over the persona's). Raises 429 when a persona's budget is spent."""
        persona = self.personas.resolve(model)
        if persona is None:
            return model, params, knowledge
        if persona.budget_usd is not None and self.usage.month_cost(persona.name) >= persona.budget_usd:
            raise BudgetExceeded(f"persona {persona.name!r} has spent its monthly budget of "
                                 f"${persona.budget_usd:.2f}")
        ctx.persona = persona.name
        options = knowledge or persona.knowledge_options(self.defaults.top_k, self.defaults.min_relevance)
        return persona.model or self.default_model or "", persona.apply(params), options

    async def open(self, target: str, params: GenerationParams, ctx: ChatContext,
                   options: KnowledgeOptions | None) -> ChatRun:
        """Retrieve (when there is knowledge), then start the answer; `ctx.passages` holds what was cited."""
        if options is None:
            return await self.chat.open(target, params, ctx)
        grounding = await asyncio.to_thread(prepare, self.retriever, params, options)
        ctx.passages = grounding.passages
        if grounding.decline is not None:
            return await self.chat.open_fixed(target, StaticAnswer(grounding.decline), params, ctx,
                                              f"grounded: no passage with similarity >= {options.min_relevance:.2f}")
        run = await self.chat.open(target, grounding.params, ctx)
        check = grounding.check
        if check is not None:
            await run.rewrite(lambda first, rest: checked_answer(first, rest, check, grounding.fallback))
        return run
