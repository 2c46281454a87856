"""PII scrubbing of training data: every personal datum the privacy detector finds becomes a typed placeholder.

The detector is the one privacy routing uses (baimo/privacy.py: Microsoft Presidio's analyzer with Chinese and
English recognizers, offline), so what is scrubbed from exported data is exactly what would keep a live request on
premises. Each finding is replaced by `<KIND>`: `<PERSON>`, `<EMAIL_ADDRESS>`, `<PHONE_NUMBER>`, `<CN_ID>`,
`<ADDRESS>`, `<CREDIT_CARD>`, ... (Presidio's entity names; the Chinese resident ID is shortened to CN_ID).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from baimo.privacy import Finding, PersonalDataDetector, default_detector

# Placeholder names that differ from the detector's entity kind.
PLACEHOLDER_NAMES = {"CN_RESIDENT_ID": "CN_ID", "UK_POSTCODE": "ADDRESS"}
# The phrase that introduces a Chinese name (privacy.ZH_NAME_INTRO_PATTERNS matches it with the name): kept in text.
_NAME_INTRO = re.compile(r"(?:我叫|名叫|(?:姓名|联系人|收件人|收货人|患者|客户)\s*[:：])\s*")


def placeholder(kind: str) -> str:
    """The typed placeholder of an entity kind, e.g. `<PHONE_NUMBER>`, `<CN_ID>`."""
    return f"<{PLACEHOLDER_NAMES.get(kind, kind)}>"


def _non_overlapping(findings: Iterable[Finding]) -> list[Finding]:
    """Resolve overlaps: the higher-scoring finding wins, then the longer one; the result is sorted by start."""
    kept: list[Finding] = []
    for f in sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def _without_intro(text: str, f: Finding) -> Finding:
    """A person finding that starts with an introducing phrase (我叫张伟) narrowed to the name itself."""
    intro = _NAME_INTRO.match(text, f.start, f.end) if f.kind == "PERSON" else None
    return Finding(f.kind, intro.end(), f.end, f.score) if intro and intro.end() < f.end else f


def scrub_text(text: str, detector: PersonalDataDetector | None = None) -> tuple[str, dict[str, int]]:
    """`text` with every personal datum replaced by its placeholder, and how many of each kind were replaced
    ({placeholder name: count}). The first call loads Presidio and jieba (~3 s)."""
    findings = _non_overlapping(_without_intro(text, f) for f in (detector or default_detector()).find(text))
    counts: dict[str, int] = {}
    out: list[str] = []
    at = 0
    for f in findings:
        out += [text[at:f.start], placeholder(f.kind)]
        at = f.end
        name = PLACEHOLDER_NAMES.get(f.kind, f.kind)
        counts[name] = counts.get(name, 0) + 1
    out.append(text[at:])
    return "".join(out), counts


def scrub_messages(messages: list[dict[str, Any]], detector: PersonalDataDetector | None = None,
                   totals: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Chat messages with their string contents scrubbed (other fields kept); adds the counts to `totals`."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            content, counts = scrub_text(content, detector)
            if totals is not None:
                for k, n in counts.items():
                    totals[k] = totals.get(k, 0) + n
        out.append({**m, "content": content})
    return out
