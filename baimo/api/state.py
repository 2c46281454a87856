"""Everything a running server holds, built once at start-up and kept on `app.state.baimo` (no module globals)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from baimo.assistant import Assistant
from baimo.backends.registry import ModelRegistry
from baimo.chat import ChatService
from baimo.config import BaimoConfig, ModelConfig, Settings, load_config, vector_store
from baimo.embeddings import EmbedderRegistry
from baimo.errors import ModelNotFound
from baimo.knowledge.bases import KnowledgeService
from baimo.knowledge.ingest import Ingestor
from baimo.knowledge.jobs import IngestJobs
from baimo.knowledge.retrieval import Retriever
from baimo.knowledge.store import store_kind_for
from baimo.metering.admission import build_admission
from baimo.metering.keys import KeyStore, start_keys
from baimo.metering.principal import Principal
from baimo.metering.usage import UsageLog
from baimo.personas import PersonaStore
from baimo.privacy import PrivacyGuard
from baimo.routing.strategies import RouterSet
from baimo.store.conversations import ConversationStore
from baimo.store.database import Database

log = logging.getLogger("baimo")


@dataclass
class AppState:
    settings: Settings
    config: BaimoConfig
    db: Database
    models: ModelRegistry
    routers: RouterSet
    embedders: EmbedderRegistry
    conversations: ConversationStore
    usage: UsageLog
    keys: KeyStore
    chat: ChatService
    knowledge: KnowledgeService
    retriever: Retriever
    ingest_jobs: IngestJobs
    personas: PersonaStore
    assistant: Assistant
    ready: bool = False
    warming: dict[str, asyncio.Task] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        settings.home.mkdir(parents=True, exist_ok=True)
        config = load_config(settings)
        db = Database(settings.db_url)
        models = ModelRegistry(config, settings)
        conversations = ConversationStore(db)
        usage = UsageLog(db, group_commit=config.metering.group_commit, max_batch=config.metering.max_batch,
                         linger_ms=config.metering.linger_ms)
        embedders = EmbedderRegistry(config.embedders)
        routers = RouterSet(config, settings, embedders=embedders.all())
        chunks = vector_store(settings, config)  # LanceDB under BAIMO_HOME, or PostgreSQL with pgvector
        knowledge = KnowledgeService(db, embedders, config.knowledge, chunks, store_kind=store_kind_for(chunks))
        retriever = Retriever(knowledge)
        personas = PersonaStore(db, check_model=lambda m: None, check_knowledge=knowledge.get)
        keys = start_keys(db, required=config.auth.mode == "required", env_admin_key=settings.admin_key)
        privacy = PrivacyGuard(config.privacy, {m.id: m for m in config.models}, keys.is_confidential,
                               personas.is_confidential)
        chat = ChatService(models, usage, conversations, routers, privacy=privacy)
        state = cls(settings=settings, config=config, db=db, models=models, routers=routers,
                    embedders=embedders, conversations=conversations, usage=usage, keys=keys, chat=chat,
                    knowledge=knowledge, retriever=retriever,
                    ingest_jobs=IngestJobs(Ingestor(knowledge), settings.uploads_dir),
                    personas=personas, assistant=Assistant(chat, personas, knowledge, retriever, usage,
                                                           config.knowledge, models.default_id))
        personas.check_model = state.check_model_or_router
        state.assistant.admission = build_admission(db, config, settings, models, routers)  # budgets, limits
        return state

    def delete_knowledge_base(self, name: str, who: Principal | None = None) -> list[str]:
        """Delete a base `who` sees and take it out of its owner's personas that used it (returned)."""
        base = self.knowledge.delete(name, who=who)
        return self.personas.forget_knowledge(base.name, base.owner)

    def check_model_or_router(self, model_id: str) -> None:
        """404 unless the id is a model or a router."""
        if model_id not in self.routers:
            self.models.get(model_id)

    def check_callable(self, model_id: str, who: Principal | None = None) -> None:
        """404 unless the id is a model, a router or a persona `who` sees, and `who`'s key may call it (an id it
        may not call is answered exactly like one that does not exist)."""
        if who is not None and not who.may_call(model_id):
            raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")
        if self.personas.resolve(model_id, who) is None:
            self.check_model_or_router(model_id)

    def strongest_model(self) -> ModelConfig | None:
        """The most expensive configured model (per output token): the 'send everything there' baseline."""
        return max(self.config.models, key=lambda m: (m.price_output, m.price_input), default=None)

    async def start(self) -> None:
        if self.settings.load_models_at_start:
            for backend in self.models:
                await backend.start()
        self._tasks = [asyncio.create_task(self._retrain_every(r.id, r.retrain_every))
                       for r in self.config.routers if r.strategy == "auto" and r.retrain_every]
        if self.chat.privacy is not None:  # load the personal-data detector (Presidio, jieba: seconds) off the loop
            self.warming["privacy"] = asyncio.create_task(asyncio.to_thread(self.chat.privacy.warm))
            self._tasks.append(self.warming["privacy"])
        if self.config.evaluation.canary_every:  # drift watch: a canary round at start-up, then every period
            from baimo.evaluation.drift import watch

            self._tasks.append(asyncio.create_task(watch(self)))
        self.ingest_jobs.start()  # runs queued jobs, and resumes those a stopped process left unfinished
        self.ready = True

    def still_warming(self) -> list[str]:
        """Names of start-up loads not finished yet (e.g. "privacy": the personal-data detector). /readyz answers
        503 until this is empty, so a load balancer or a test sends no request that would wait 5-15 s for them."""
        return [name for name, task in self.warming.items() if not task.done()]

    async def _retrain_every(self, router_id: str, seconds: float) -> None:
        """Refit an auto router from its new outcomes on a schedule (only when some arrived)."""
        from baimo.routing.auto import retrain

        seen = -1
        while True:
            await asyncio.sleep(seconds)
            try:
                count = len(await asyncio.to_thread(self.usage.outcomes, router_id))
                if count != seen:
                    await asyncio.to_thread(retrain, self.routers.strategy(router_id), self.usage)
                    seen = count
            except Exception:  # a failed refit keeps the last abilities; the next tick tries again
                logging.getLogger("baimo").exception("retraining %s failed", router_id)

    async def close(self) -> None:
        for task in getattr(self, "_tasks", []):
            task.cancel()
        await self.chat.drain()
        self.ingest_jobs.close()
        self.knowledge.close()
        await self.models.close()
        self.usage.close()
        self.db.close()
