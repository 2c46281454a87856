"""A backend that answers with a fixed text: grounded mode's decline goes through the normal chat path with it,
so it is streamed, stored and metered (at zero cost) like any answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from baimo.backends.base import Finish, GenerationParams, StreamEvent, TextDelta, estimate_tokens
from baimo.config import ModelConfig

DECLINE_MODEL_ID = "baimo/grounded-decline"


class StaticAnswer:
    def __init__(self, text: str, model_id: str = DECLINE_MODEL_ID) -> None:
        self.text = text
        self.config = ModelConfig(id=model_id, kind="static", context_window=1_000_000,
                                  description="fixed answer (grounded mode found no relevant passage)")

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def ready(self) -> bool:
        return True

    def count_tokens(self, messages: list[dict[str, Any]]) -> int:
        return estimate_tokens(messages)

    def check(self, params: GenerationParams) -> None:
        return None

    async def stream(self, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        yield TextDelta(self.text)
        yield Finish("stop", self.count_tokens(params.messages), estimate_tokens([{"content": self.text}]) - 7)
