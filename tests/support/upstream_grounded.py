"""The scripted upstream's ``extract`` behaviour: a "strong" model for grounded answers, without a model.

It reads the numbered passages Baimo put in the prompt (``[n] (source, location) text``, in any message),
finds the first passage with the behaviour's key term (``Behaviour.extract("mesure")``: a word of the answering
sentence, in the passage's language) and answers that sentence with the passage's marker, ``<sentence> [n].``;
without the term in any passage it answers ``I do not know.``. So the pipeline from retrieval through the
prompt's numbering to the citation check runs for real, with a model that always understands the question.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

LABEL = re.compile(r"(?m)^\[(\d{1,3})\] (?:\([^)\n]*\) )?")
SENTENCE = re.compile(r"(?:[^.!?。！？\n]|[.!?](?!\s|$))+(?:[.!?]+(?=\s|$)|[。！？]+|$)")
NOT_FOUND = "I do not know."


def _texts(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            out.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
        elif content:
            out.append(str(content))
    return out


def passages(messages: Iterable[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """The numbered passages of a prompt, in order: (number, text)."""
    found = []
    for text in _texts(messages):
        labels = list(LABEL.finditer(text))
        for i, m in enumerate(labels):
            end = labels[i + 1].start() if i + 1 < len(labels) else len(text)
            body = text[m.end():end].split("\n\nQuestion:")[0].strip()
            found.append((int(m.group(1)), body))
    return found


def extract_answer(messages: Iterable[Mapping[str, Any]], key: str) -> str:
    """The sentence of the first passage that holds `key`, cited: ``"<sentence> [n]."``."""
    for number, text in passages(messages):
        for sentence in SENTENCE.findall(text):
            if key.lower() in sentence.lower():
                return f"{sentence.strip().rstrip('.。')} [{number}]."
    return NOT_FOUND
