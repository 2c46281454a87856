"""Answers with knowledge: retrieve passages for the question, number them into the prompt, cite them back.

In grounded mode a question whose best passage is below the relevance threshold is declined, in the user's
language, without asking any model: a small model cannot be trusted to refuse on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from baimo.backends.base import GenerationParams, message_text, with_text_appended
from baimo.knowledge.retrieval import Passage, Retriever

INSTRUCTIONS = ("Answer the user's question using the numbered sources below. After each sentence that uses a "
                "source, write the source's number in square brackets, for example: The pump runs at 40 bar [2].")
CITE_REMINDER = "(Answer from the sources above and cite them like [1].)"
GROUNDED_INSTRUCTIONS = (" Use only these sources: if they do not contain the answer, say that you do not know.")

DECLINES = {
    "en": "I don't know: I found nothing about this in my knowledge base.",
    "fr": "Je ne sais pas : je n'ai rien trouvé à ce sujet dans ma base de connaissances.",
    "es": "No lo sé: no encontré nada sobre esto en mi base de conocimientos.",
    "pt": "Não sei: não encontrei nada sobre isso na minha base de conhecimento.",
    "de": "Das weiß ich nicht: In meiner Wissensdatenbank habe ich dazu nichts gefunden.",
    "it": "Non lo so: non ho trovato nulla su questo nella mia base di conoscenza.",
    "ar": "لا أعرف: لم أجد شيئًا عن هذا في قاعدة معرفتي.",
    "zh": "我不知道：我的知识库中没有找到相关内容。",
    "ja": "わかりません。ナレッジベースに関連する情報が見つかりませんでした。",
    "ko": "모르겠습니다. 제 지식 베이스에서 관련 내용을 찾지 못했습니다.",
    "ru": "Я не знаю: в моей базе знаний ничего об этом не нашлось.",
    "hi": "मुझे नहीं पता: मेरे ज्ञानकोश में इसके बारे में कुछ नहीं मिला।",
    "he": "אני לא יודע: לא מצאתי על כך דבר במאגר הידע שלי.",
}

_SCRIPTS = [("ja", re.compile(r"[\u3040-\u30ff]")), ("ko", re.compile(r"[\uac00-\ud7af]")),
            ("zh", re.compile(r"[\u4e00-\u9fff]")), ("ar", re.compile(r"[\u0600-\u06ff\u0750-\u077f]")),
            ("he", re.compile(r"[\u0590-\u05ff]")), ("ru", re.compile(r"[\u0400-\u04ff]")),
            ("hi", re.compile(r"[\u0900-\u097f]"))]
_STOPWORDS = {
    "en": "the is are what how who when where which do does of to in and you for with this that can",
    "fr": "le la les de des du au aux un une et est que qui quel quelle comment où pour avec dans je vous ce en",
    "es": "el la los las es que qué cómo dónde de del un una y para con en por yo usted cuál",
    "pt": "o a os as é que como onde de do da um uma e para com em por eu você qual não",
    "de": "der die das ist was wie wo wer und ein eine für mit in zu ich sie nicht welche",
    "it": "il lo la gli le è che come dove di del un una e per con in io lei quale",
}
_STOPSETS = {lang: set(words.split()) for lang, words in _STOPWORDS.items()}


def detect_language(text: str) -> str:
    """A small language guess for choosing the decline message: script first, then common words."""
    for lang, pattern in _SCRIPTS:
        if pattern.search(text):
            return lang
    words = re.findall(r"[a-zà-ÿ]+", text.lower())
    best, best_hits = "en", 0
    for lang, stops in _STOPSETS.items():
        hits = sum(w in stops for w in words)
        if hits > best_hits:
            best, best_hits = lang, hits
    return best


def decline_message(question: str) -> str:
    return DECLINES.get(detect_language(question), DECLINES["en"])


@dataclass
class KnowledgeOptions:
    """Which bases to search and how, from a persona or the request's `knowledge` field."""

    bases: list[str]
    k: int = 5
    grounded: bool = False
    min_relevance: float = 0.25
    mode: str = "hybrid"


@dataclass
class Grounding:
    params: GenerationParams
    passages: list[Passage] = field(default_factory=list)
    decline: str | None = None  # set when grounded mode found nothing relevant enough


def question_of(messages: list[dict[str, Any]]) -> str:
    """The text to retrieve for: the last user message (its text parts, when its content is a list)."""
    for m in reversed(messages):
        if m["role"] == "user" and message_text(m).strip():
            return message_text(m)
    return ""


def sources_block(passages: list[Passage]) -> str:
    lines = []
    for i, p in enumerate(passages, start=1):
        where = f"{p.source}, {p.location}" if p.location else p.source
        lines.append(f"[{i}] ({where}) {p.text}")
    return "\n\n".join(lines)


def with_sources(messages: list[dict[str, Any]], passages: list[Passage], grounded: bool) -> list[dict[str, Any]]:
    """Put the numbered sources in a system message (after any instructions already there)."""
    note = INSTRUCTIONS + (GROUNDED_INSTRUCTIONS if grounded else "") + "\n\nSources:\n" + sources_block(passages)
    out = [dict(m) for m in messages]
    if out and out[0]["role"] in ("system", "developer"):
        out[0] = with_text_appended(out[0], note)
    else:
        out.insert(0, {"role": "system", "content": note})
    for i in range(len(out) - 1, -1, -1):  # small models follow a reminder next to the question far better
        if out[i]["role"] == "user":
            out[i] = with_text_appended(out[i], CITE_REMINDER)
            break
    return out


def prepare(retriever: Retriever, params: GenerationParams, options: KnowledgeOptions) -> Grounding:
    """Retrieve for the last user message and rewrite the prompt; in grounded mode, decline when nothing passes."""
    question = question_of(params.messages)
    if not question:
        return Grounding(params)
    passages = retriever.search(options.bases, question, k=options.k, mode=options.mode)
    if options.grounded:
        passages = [p for p in passages if p.similarity >= options.min_relevance]
        if not passages:
            return Grounding(params, decline=decline_message(question))
    if not passages:
        return Grounding(params)
    return Grounding(replace(params, messages=with_sources(params.messages, passages, options.grounded)), passages)


_CITE = re.compile(r"\[(\d{1,3})\]")


def citations(passages: list[Passage], answer: str) -> list[dict[str, Any]]:
    """The passages given to the model, numbered as in the prompt; `cited` marks those the answer refers to."""
    cited = {int(n) for n in _CITE.findall(answer)}
    return [{"index": i, "knowledge_base": p.knowledge_base, "source": p.source, "location": p.location,
             "text": p.text, "score": p.score, "similarity": p.similarity, "cited": i in cited}
            for i, p in enumerate(passages, start=1)]
