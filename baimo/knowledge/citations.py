"""Checking a grounded answer sentence by sentence: instruction echoes out, every citation marker supported.

A small model given numbered passages may cite the wrong number, cite nothing, or answer with a piece of
the prompt's own instructions. `AnswerCheck.fix` takes one sentence of the answer and returns what Baimo
sends instead:

- a sentence that copies the prompt's instruction text (and not a passage) is dropped (an *echo*);
- each `[n]` marker stays only if passage n *supports* the sentence; an unsupported marker is replaced by
  the best supporting passage's number, or dropped when no passage supports the sentence;
- a sentence without markers that a passage supports gets that passage's marker (Baimo cites for the model).

Support (`support_scores`) combines three signals, all language-independent:

- numbers: every number in the sentence must occur in the passage, compared by significant digits so that
  "38 mil", "38,000" and "38 000" agree and "1.2 billion" matches "1.2 مليار" (a wrong number is the
  typical unfaithful citation);
- character 3-gram containment of the sentence in the passage (share of the sentence's 3-grams found in
  the passage): high for quotes and paraphrases in the passage's language, and for names across languages;
- cosine similarity of the multilingual embedder's vectors (the knowledge base's own encoder), which is what
  carries support across languages ("The bridge is 842 m long" for a French passage).

A sentence is supported by a passage when its numbers agree and either the 3-gram containment reaches
`NGRAM_SUPPORT` or the cosine reaches `COSINE_SUPPORT`; a sentence with numbers that all agree needs only
`COSINE_WITH_NUMBERS`. The thresholds were set on the sentences of `tests/fixtures/grounded` (translations of
each article's facts against their own and the other articles' passages, USE encoder; README: Grounded mode).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

NGRAM_SUPPORT = 0.5        # share of the sentence's character 3-grams found in the passage
COSINE_SUPPORT = 0.4       # multilingual encoder cosine, sentence vs passage, with no numbers to check
COSINE_WITH_NUMBERS = 0.25 # the same when every number of the sentence is in the passage
ECHO_CONTAINMENT = 0.5     # share of a sentence's character 4-grams found in the prompt's instruction text
ECHO_MIN_CHARS = 12        # shorter sentences ("Yes.", "[1]") are never taken for echoes

# Markers: [1], [1, 2], [1][2], fullwidth 【1】 and ［1］, and the wordy [Source 1] / [passage 2] small models write.
MARKER = re.compile(r"\s*[\[【［](?:[^\W\d]+\s*)?(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)[\]】］]")
_SPACE = re.compile(r"\s+")
_THOUSANDS = re.compile(r"(?<=\d)[\s,.'\u00a0\u202f\u2009](?=\d{3}(?!\d))")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_END_PUNCT = re.compile(r"[\s.!?。！？…:;：；]*$")

Embed = Callable[[list[str]], np.ndarray]  # texts -> unit vectors, one row per text


def normalise(text: str) -> str:
    """Lower case, NFKC (fullwidth digits and letters to ASCII), Arabic-Indic digits to ASCII, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(str(unicodedata.digit(ch)) if ch.isdigit() and not ch.isascii() else ch for ch in text)
    return _SPACE.sub(" ", text).strip()


def numbers(text: str) -> set[str]:
    """The numbers of two or more digits in a text, by significant digits: '12 000' -> '12', '6,40' -> '64'.

    Single digits are left out: they are as often words of the phrasing ("1 week", "KAI-5") as facts."""
    flat = _THOUSANDS.sub("", normalise(text))
    out = set()
    for n in _NUMBER.findall(flat):
        digits = n.replace(".", "").replace(",", "")
        if len(digits) >= 2 and digits.strip("0"):
            out.add(digits.strip("0"))
    return out


def ngrams(text: str, n: int) -> set[str]:
    t = normalise(text)
    return {t[i:i + n] for i in range(max(len(t) - n + 1, 0))}


def containment(part: str, whole: str, n: int = 3) -> float:
    """Share of `part`'s character n-grams that occur in `whole` (0 when `part` is shorter than n)."""
    grams = ngrams(part, n)
    return len(grams & ngrams(whole, n)) / len(grams) if grams else 0.0


def strip_markers(sentence: str) -> tuple[str, list[int]]:
    """The sentence without its citation markers, and the passage numbers they named, in order."""
    cited: list[int] = []
    for m in MARKER.finditer(sentence):
        cited.extend(int(x) for x in re.split(r"\s*[,，、]\s*", m.group(1)))
    return MARKER.sub("", sentence), cited


def with_markers(body: str, cited: Sequence[int]) -> str:
    """Put `[n]` markers before the sentence's closing punctuation and trailing space: 'It is 42 Nm [1].'"""
    if not cited:
        return body
    end = _END_PUNCT.search(body)
    cut = end.start() if end else len(body)
    marks = "".join(f"[{n}]" for n in dict.fromkeys(cited))
    space = "" if cut and body[cut - 1] in "。！？（「" or _is_cjk(body[cut - 1:cut]) else " "
    return body[:cut] + space + marks + body[cut:]


def _is_cjk(ch: str) -> bool:
    return bool(ch) and ("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff")


def _has_content(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


@dataclass
class AnswerCheck:
    """Checks one answer's sentences against the passages it was given (numbered from 1, as in the prompt).

    `instructions` are the texts of the prompt that are not passages and not the question (Baimo's own rules
    and the system messages): an answer sentence copied from them is an echo, unless it is closer to one of the
    `allowed` texts (what the rules ask for in so many words: "I do not know"). `embed` is the knowledge base's
    encoder (unit vectors); without it support rests on numbers and 3-grams only. Counters say what was changed.
    """

    passages: list[str]
    instructions: list[str] = field(default_factory=list)
    embed: Embed | None = None
    allowed: list[str] = field(default_factory=list)
    echoes: int = 0
    markers_dropped: int = 0
    markers_added: int = 0
    kept: int = 0  # sentences with content that were sent
    _passage_vectors: np.ndarray | None = None

    def is_echo(self, body: str) -> bool:
        """Does this sentence repeat the prompt's instructions (more than it repeats any passage)?"""
        if len(normalise(body)) < ECHO_MIN_CHARS or not self.instructions:
            return False
        echo = max(containment(body, t, 4) for t in self.instructions)
        if echo < ECHO_CONTAINMENT or echo <= max((containment(body, t, 4) for t in self.allowed), default=0.0):
            return False
        return echo > max((containment(body, p, 4) for p in self.passages), default=0.0)

    def support_scores(self, body: str) -> list[float]:
        """Per passage: 0 when unsupported, else a support strength in (0, 2] (3-gram containment + cosine)."""
        if not self.passages:
            return []
        nums = numbers(body)
        cosines = self._cosines(body)
        scores = []
        for i, text in enumerate(self.passages):
            if nums and not nums <= numbers(text):
                scores.append(0.0)
                continue
            grams = containment(body, text)
            cos = float(cosines[i]) if cosines is not None else 0.0
            supported = grams >= NGRAM_SUPPORT or cos >= (COSINE_WITH_NUMBERS if nums else COSINE_SUPPORT)
            scores.append(grams + max(cos, 0.0) if supported else 0.0)
        return scores

    def _cosines(self, body: str) -> np.ndarray | None:
        if self.embed is None:
            return None
        if self._passage_vectors is None:
            self._passage_vectors = self.embed(self.passages)
        return self._passage_vectors @ self.embed([body])[0]

    def fix(self, sentence: str) -> str:
        """The sentence as Baimo sends it: '' for an echo, else with supported markers only (maybe added)."""
        body, cited = strip_markers(sentence)
        if not _has_content(body):
            self.markers_dropped += len(cited)
            return body
        if self.is_echo(body):
            self.echoes += 1
            self.markers_dropped += len(cited)
            return ""
        self.kept += 1
        scores = self.support_scores(body)
        valid = [n for n in cited if 1 <= n <= len(scores) and scores[n - 1] > 0]
        best = max(range(len(scores)), key=scores.__getitem__) + 1 if scores and max(scores) > 0 else None
        if not valid and best is not None:
            valid = [best]
        self.markers_dropped += len([n for n in dict.fromkeys(cited) if n not in valid])
        self.markers_added += len([n for n in valid if n not in cited])
        return with_markers(body, valid)
