"""The fleet: builds one backend per configured model through a kind → factory map, and looks them up by id."""

from __future__ import annotations

from collections.abc import Callable

from baimo.backends.base import Backend
from baimo.backends.llamacpp import LlamaCppBackend
from baimo.backends.openai_compat import OpenAICompatBackend
from baimo.config import BaimoConfig, ModelConfig, Settings
from baimo.errors import ConfigError, ModelNotFound

BackendFactory = Callable[[ModelConfig, Settings], Backend]

BACKEND_KINDS: dict[str, BackendFactory] = {
    "llamacpp": LlamaCppBackend,
    "openai": OpenAICompatBackend,
}


def register_kind(kind: str, factory: BackendFactory) -> None:
    """Add a backend kind (the same path the built-in kinds use)."""
    BACKEND_KINDS[kind] = factory


class ModelRegistry:
    """Every configured model, by id, with its backend (loaded lazily on first use)."""

    def __init__(self, config: BaimoConfig, settings: Settings) -> None:
        self.config = config
        self._backends: dict[str, Backend] = {}
        for model in config.models:
            try:
                factory = BACKEND_KINDS[model.kind]
            except KeyError:
                raise ConfigError(f"model {model.id}: unknown kind {model.kind!r}; "
                                  f"known kinds: {', '.join(sorted(BACKEND_KINDS))}") from None
            self._backends[model.id] = factory(model, settings)

    @property
    def default_id(self) -> str | None:
        return self.config.default_model or (self.config.models[0].id if self.config.models else None)

    def ids(self) -> list[str]:
        return list(self._backends)

    def get(self, model_id: str) -> Backend:
        try:
            return self._backends[model_id]
        except KeyError:
            raise ModelNotFound(f"The model '{model_id}' does not exist", param="model") from None

    def __iter__(self):
        return iter(self._backends.values())

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()
