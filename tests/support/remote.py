"""Remote (kind `openai`) models in a test baimo.yaml, pointed at a scripted upstream; and reading Baimo's SSE."""

from __future__ import annotations

import json
from typing import Any


def remote(id_: str, upstream_model: str, base_url: str, **extra: object) -> str:
    """One `models:` entry of kind openai (prices 1.0/2.0 USD per million, 2 s timeout); `extra` adds settings."""
    lines = [f"  - id: {id_}", "    kind: openai", f"    base_url: {base_url}", f"    upstream_model: {upstream_model}",
             "    price_input: 1.0", "    price_output: 2.0", "    context_window: 8192", "    timeout: 2",
             "    connect_timeout: 1"]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def strict_json(text: str) -> Any:
    """Parse JSON as a strict parser would: NaN and Infinity are errors."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def sse_events(lines: list[str]) -> list[tuple[str | None, str]]:
    """(event name or None, data) for each SSE event of a response's lines."""
    out: list[tuple[str | None, str]] = []
    name: str | None = None
    for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            out.append((name, line[5:].strip()))
            name = None
    return out
