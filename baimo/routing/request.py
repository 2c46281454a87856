"""What a router may look at in a request: the prompt text and cheap features (length, script, code, persona)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from baimo.backends.base import message_text

if TYPE_CHECKING:
    from baimo.privacy import PrivateRequest

# Unicode ranges that name a script well enough to route by language without a model.
_SCRIPTS: tuple[tuple[str, str], ...] = (
    ("ja", r"[\u3040-\u30ff]"),          # kana before CJK: Japanese uses both
    ("ko", r"[\uac00-\ud7af]"),
    ("zh", r"[\u4e00-\u9fff]"),
    ("ar", r"[\u0600-\u06ff]"),
    ("he", r"[\u0590-\u05ff]"),
    ("ru", r"[\u0400-\u04ff]"),
    ("el", r"[\u0370-\u03ff]"),
    ("hi", r"[\u0900-\u097f]"),
    ("th", r"[\u0e00-\u0e7f]"),
)
_CODE = re.compile(r"```|^\s*(def|class|import|from|function|const|let|var|public|#include|SELECT|for|while)\b"
                   r"|[{};]\s*$|=>|\)\s*\{", re.MULTILINE)


def detect_script(text: str) -> str:
    """A language code by script ('en' stands for any Latin-script text)."""
    counts = {code: len(re.findall(pattern, text)) for code, pattern in _SCRIPTS}
    best = max(counts, key=lambda c: counts[c])
    letters = sum(ch.isalpha() for ch in text) or 1
    return best if counts[best] / letters >= 0.2 else "en"


@dataclass
class RouteRequest:
    """A chat request as routers see it."""

    messages: list[dict[str, Any]]
    persona: str | None = None
    json_mode: bool = False
    tools: bool = False  # the request offers tools, or its history has tool calls
    max_tokens: int | None = None  # the client's reply cap, when it set one (routers estimate cost with it)
    trail: list[str] = field(default_factory=list)  # routers already visited (loops are config errors)
    private: PrivateRequest | None = None  # set when the request must stay on premises (baimo/privacy.py)

    @cached_property
    def prompt(self) -> str:
        """The last user message: what learned routers embed and rules inspect."""
        for m in reversed(self.messages):
            if m["role"] == "user":
                return message_text(m)
        return message_text(self.messages[-1]) if self.messages else ""

    @cached_property
    def language(self) -> str:
        return detect_script(self.prompt)

    @cached_property
    def has_code(self) -> bool:
        return bool(_CODE.search(self.prompt))
