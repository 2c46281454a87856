"""Text helpers of the scripted upstream (tests/support/upstream_app.py): tokens, the last user message, a rough
prompt size and deterministic embeddings. Pure functions, no server state."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping
from typing import Any

_TOKEN_RE = re.compile(r"\s*\S+|\s+$")


def split_tokens(text: str) -> list[str]:
    """Word-ish tokens that concatenate back to ``text`` (leading whitespace kept, like BPE)."""
    return _TOKEN_RE.findall(text) if text else []


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def last_user_text(messages: Iterable[Mapping[str, Any]]) -> str:
    for message in reversed(list(messages)):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def count_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Rough prompt size: words of every message plus 4 tokens of overhead per message, plus 3."""
    total = 3
    for message in messages:
        if isinstance(message, Mapping):
            total += 4 + len(_content_text(message.get("content")).split())
    return total


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """Deterministic unit vector for ``text`` (same text, same vector; independent of model)."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    rng = random.Random(seed)
    vec = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return [v / norm for v in vec]
