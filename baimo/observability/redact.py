"""Secret redaction for anything Baimo writes out (logs above all): API keys and bearer credentials.

Patterns (each replaced by `<kind>-[REDACTED]` keeping only what identifies the kind, never any secret character):
- Baimo keys: `bm-` followed by 8+ URL-safe base64 characters (`secrets.token_urlsafe`, baimo/metering/keys.py).
- OpenAI-style keys: `sk-` (and `sk-proj-`, ...) followed by 8+ key characters.
- `Bearer <token>` and `Basic <token>` (tokens of 8+ RFC 6750 §2.1 token68 characters).
- `api_key`/`api-key`/`x-api-key`/`authorization`/`password`/`secret`/`token` fields in `key=value`, `key: value`
  and `"key": "value"` form.
- 64-hex-digit strings: SHA-256 digests, the form in which keys are stored (`key_hash`).
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[REDACTED]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    (re.compile(r"(?i)((?<![A-Za-z0-9_])[\"']?(?:x-)?(?:api[_-]?key|authorization|password|secret|token)[\"']?"
                r"\s*[:=]\s*[\"']?)(?!\[REDACTED\]|(?:bearer|basic)\s)[^\s\"',}]+"), r"\1" + REDACTED),
    (re.compile(r"\bbm-[A-Za-z0-9_-]{8,}"), "bm-" + REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-" + REDACTED),
    (re.compile(r"\b[0-9a-fA-F]{64}\b"), REDACTED),
)


def redact(text: str) -> str:
    """`text` with every secret-looking token (see the module docstring) replaced; other text unchanged."""
    if not text:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    """Redact strings, and strings inside lists, tuples and dicts (keys kept); other values unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value
