"""Answers with knowledge: retrieve passages for the question, number them into the prompt, cite them back.

The prompt is built for small local models: passages first, then the question, then one line naming the
answer language; no example answer to copy. The answer is then checked sentence by sentence
(`citations.AnswerCheck`, streamed by `answer_stream`): instruction echoes dropped, citation markers verified.

In grounded mode a question whose best passage is below the relevance threshold is declined, in the user's
language, without asking any model: a small model cannot be trusted to refuse on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from baimo.backends.base import GenerationParams, message_text, with_text_appended
from baimo.knowledge.citations import AnswerCheck
from baimo.knowledge.retrieval import Passage, Retriever

# The prompt is short and gives no example sentence: a small model copies an example as its answer (Qwen2.5-Coder
# 1.5B answered 4 of 16 questions with the old example "The pump runs at 40 bar [2]."). The passages come first
# and the question last, in the user's message, with the answer language named; the `[n]` labels of the passages
# are the citation convention, and Baimo checks and completes the markers afterwards (citations.AnswerCheck).
RULES = "Answer the question in the user's message from the numbered passages given with it."
GROUNDED_RULE = " If the passages do not contain the answer, say that you do not know."
PASSAGES_HEADING = "Passages:"
QUESTION_HEADING = "Question:"
ANSWER_RULE = ("Answer in {language}, in one or two short sentences, with the facts of the passages; after a fact, "
               "write its passage number in square brackets.")

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
    "fr": "le la les de des du au aux un une et est que qui quel quelle comment où pour avec dans je vous ce en "
          "combien a l d qu il elle ont sont",
    "es": "el la los las es que qué cómo dónde de del un una y para con en por yo usted cuál",
    "pt": "o a os as é que como onde de do da dos das na no nas nos um uma e para com em por eu você qual não "
          "quantos quantas quanto são está",
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


LANGUAGE_NAMES = {"en": "English", "fr": "French", "es": "Spanish", "pt": "Portuguese", "de": "German",
                  "it": "Italian", "ar": "Arabic", "zh": "Chinese", "ja": "Japanese", "ko": "Korean",
                  "ru": "Russian", "hi": "Hindi", "he": "Hebrew"}


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
    """The prompt to send (`params`), the passages in it, and either a decline or the answer's check."""

    params: GenerationParams
    passages: list[Passage] = field(default_factory=list)
    decline: str | None = None  # set when grounded mode found nothing relevant enough
    check: AnswerCheck | None = None  # what every sentence of the answer goes through
    fallback: str = ""  # the answer when every sentence was an instruction echo (the decline, in the user's language)


def question_of(messages: list[dict[str, Any]]) -> str:
    """The text to retrieve for: the last user message (its text parts, when its content is a list)."""
    for m in reversed(messages):
        if m["role"] == "user" and message_text(m).strip():
            return message_text(m)
    return ""


def sources_block(passages: list[Passage]) -> str:
    """The passages as the prompt shows them: `[n] text`, numbered from 1, blank-line separated. No file names or
    locations: small models pasted them back as the start of their answer (the citations list names the sources)."""
    return "\n\n".join(f"[{i}] {p.text}" for i, p in enumerate(passages, start=1))


def answer_rule(question: str) -> str:
    """The line after the question: answer language (the question's, by `detect_language`), length, citations."""
    return ANSWER_RULE.format(language=LANGUAGE_NAMES.get(detect_language(question), "the question's language"))


def rules(grounded: bool) -> str:
    return RULES + (GROUNDED_RULE if grounded else "")


def with_sources(messages: list[dict[str, Any]], passages: list[Passage], grounded: bool) -> list[dict[str, Any]]:
    """The prompt with knowledge: a one-line rule in the system message (after any instructions already there),
    and the last user message rewritten as passages first, then the question, then the answer rule."""
    out = [dict(m) for m in messages]
    if out and out[0]["role"] in ("system", "developer"):
        out[0] = with_text_appended(out[0], rules(grounded))
    else:
        out.insert(0, {"role": "system", "content": rules(grounded)})
    for i in range(len(out) - 1, -1, -1):
        if out[i]["role"] == "user":
            question = message_text(out[i]).strip()
            out[i] = with_text_around(out[i], f"{PASSAGES_HEADING}\n{sources_block(passages)}\n\n{QUESTION_HEADING} ",
                                      "\n\n" + answer_rule(question))
            break
    return out


def with_text_around(message: dict[str, Any], before: str, after: str) -> dict[str, Any]:
    """A copy of the message with `before` put in front of its text and `after` behind it (parts lists too)."""
    out = dict(message)
    content = out.get("content")
    if isinstance(content, list):
        out["content"] = [{"type": "text", "text": before}, *content, {"type": "text", "text": after}]
    else:
        out["content"] = before + (content or "").strip() + after
    return out


def prompt_instructions(messages: list[dict[str, Any]], grounded: bool, question: str) -> list[str]:
    """The prompt's instruction texts an answer must never repeat: Baimo's rules and every system message."""
    texts = [rules(grounded), answer_rule(question)]
    texts += [message_text(m) for m in messages if m["role"] in ("system", "developer") and message_text(m).strip()]
    return texts


def allowed_repeats(question: str) -> list[str]:
    """What the rules ask for in so many words, so an answer may say it: the decline, in English and the user's
    language."""
    return ["I do not know.", "I don't know.", decline_message(question)]


def answer_check(retriever: Retriever, messages: list[dict[str, Any]], passages: list[Passage],
                 grounded: bool, question: str, bases: list[str]) -> AnswerCheck:
    """The checker for this answer, with the first passage's knowledge base encoder for cross-lingual support.
    `bases` are the ids searched (names are unique per owner only, so the base is picked among them)."""
    rows = [retriever.knowledge.get(b) for b in bases]
    base = next((r for r in rows if r.name == passages[0].knowledge_base), rows[0])
    embedder = retriever.knowledge.embedder_for(base)
    return AnswerCheck([p.text for p in passages], prompt_instructions(messages, grounded, question),
                       embed=lambda texts: embedder.embed(texts), allowed=allowed_repeats(question))


def prepare(retriever: Retriever, params: GenerationParams, options: KnowledgeOptions) -> Grounding:
    """Retrieve for the last user message and rewrite the prompt; in grounded mode, decline when nothing passes.
    The returned `check` is what the answer must pass sentence by sentence (see `answer_stream`)."""
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
    messages = with_sources(params.messages, passages, options.grounded)
    return Grounding(replace(params, messages=messages), passages,
                     check=answer_check(retriever, messages, passages, options.grounded, question,
                                        options.bases),
                     fallback=decline_message(question))


_CITE = re.compile(r"\[(\d{1,3})\]")


def citations(passages: list[Passage], answer: str) -> list[dict[str, Any]]:
    """The passages given to the model, numbered as in the prompt; `cited` marks those the answer refers to."""
    cited = {int(n) for n in _CITE.findall(answer)}
    return [{"index": i, "knowledge_base": p.knowledge_base, "source": p.source, "location": p.location,
             "text": p.text, "score": p.score, "similarity": p.similarity, "cited": i in cited}
            for i, p in enumerate(passages, start=1)]
