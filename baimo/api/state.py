"""Everything a running server holds, built once at start-up and kept on `app.state.baimo` (no module globals)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from baimo.backends.registry import ModelRegistry
from baimo.chat import ChatService
from baimo.config import BaimoConfig, ModelConfig, Settings, load_config
from baimo.embeddings import EmbedderRegistry
from baimo.metering.keys import KeyStore
from baimo.metering.usage import UsageLog
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
    ready: bool = False

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        settings.home.mkdir(parents=True, exist_ok=True)
        config = load_config(settings)
        db = Database(settings.db_url)
        models = ModelRegistry(config, settings)
        conversations = ConversationStore(db)
        usage = UsageLog(db)
        embedders = EmbedderRegistry(config.embedders)
        routers = RouterSet(config, settings, embedder=embedders.first())
        return cls(settings=settings, config=config, db=db, models=models, routers=routers,
                   embedders=embedders, conversations=conversations, usage=usage,
                   keys=KeyStore(db), chat=ChatService(models, usage, conversations, routers))

    def check_callable(self, model_id: str) -> None:
        """404 unless the id is a model or a router."""
        if model_id not in self.routers:
            self.models.get(model_id)

    def strongest_model(self) -> ModelConfig | None:
        """The most expensive configured model (per output token): the 'send everything there' baseline."""
        return max(self.config.models, key=lambda m: (m.price_output, m.price_input), default=None)

    async def start(self) -> None:
        if self.settings.load_models_at_start:
            for backend in self.models:
                await backend.start()
        self.ready = True

    async def close(self) -> None:
        await self.chat.drain()
        await self.models.close()
        self.db.close()
