"""Split parsed documents into overlapping chunks of whole sentences, never across a heading, in any script.

Sizes are in weighted characters (`text_length`: a CJK character counts 3). DEFAULT_CHUNK_SIZE = 700 is about
150-200 tokens of English and at most ~350 tokens of Arabic, Russian or Chinese: inside the 512-token window of
e5-class encoders (and near the 256 MiniLM ones keep) with room for the heading we prepend, and small enough that
a chunk holds one idea, so its vector is not an average of topics. DEFAULT_CHUNK_OVERLAP = 120 is one or two
sentences, so a fact that straddles a chunk boundary is still whole in one of the two chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import accumulate
from pathlib import PurePath

from baimo.knowledge.parsing import ParsedDocument

DEFAULT_CHUNK_SIZE = 700
DEFAULT_CHUNK_OVERLAP = 120

# Ideographs, kana and hangul: one character carries about a word (~3 Latin characters).
_WIDE = re.compile("[\u1100-\u11ff\u2e80-\u2fdf\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
                   "\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]")
# Scripts written without spaces between words: a long sentence may be cut between any two characters.
_NO_SPACE = re.compile("[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\u2fdf\u3000-\u30ff\u31f0-\u31ff"
                       "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0002fa1f]")

_CLOSERS = "\"'”’)\\]»」』）】〉》〕"
_BOUNDARY = re.compile(
    r"\n[ \t\f\v]*\n"  # a blank line always ends a sentence
    rf"|[。！？．｡]+[{_CLOSERS}]*"  # CJK full stops need no space after them
    rf"|[.!?؟۔।॥…]+[{_CLOSERS}]*(?=\s|$)"  # Latin, Arabic, Urdu, Devanagari: a mark followed by a space
)
HEADLINE_MAX_LENGTH = 200  # weighted characters; a longer first line is a paragraph, not a title
_HEADLINE_END = re.compile(r"[.!?;:,。！？；：，؟…]$")
# Words whose period never ends a sentence (compared lower-case, without the period).
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs cf fig figs eq no nr vol pp approx dept est gen col capt lt sgt rev hon "
    "jan feb mar apr jun jul aug sep sept oct nov dec ca vgl bzw evtl ggf usw inkl sog str abs art bd hr hrn".split())
_NEXT_CHAR = re.compile(r"\s*(\S)")
_DOTTED = re.compile(r"^(?:[^\W\d_]\.)+[^\W\d_]$")  # e.g, i.e, z.B, d.h, U.S


@dataclass
class Chunk:
    text: str  # chunk body
    heading: str  # heading path of the section it came from ("" if none)
    location: str  # the section's location ("page 3", "Install > Linux", ...)
    ordinal: int  # 0-based position of the chunk in the document


def text_length(text: str) -> float:
    """Weighted length used for sizing: CJK ideographs, kana and hangul count 3, everything else 1."""
    return float(len(text) + 2 * len(_WIDE.findall(text)))


def _ends_sentence(text: str, mark_start: int, mark_end: int) -> bool:
    """Whether a period at `mark_start` ends a sentence (not 3.14, e.g., Dr., J. R. R. Tolkien, 'etc. and')."""
    mark = text[mark_start:mark_end].rstrip(_CLOSERS)
    if mark != text[mark_start:mark_end] and mark[-1] in "。！？．｡":  # 「本当？」と聞いた: a quote goes on
        return text[mark_end:mark_end + 1] in ("", "「", "『") or text[mark_end].isspace()
    if mark.strip(".…"):  # ! ? and the marks of other scripts always end a sentence
        return True
    nxt = _NEXT_CHAR.match(text, mark_end)
    if nxt and nxt.group(1).islower():  # "etc. and", "approx. five", "wait... what"
        return False
    if mark != ".":
        return True
    window = max(0, mark_start - 80)  # the word before the mark, looked for in a short window
    line_start = text.rfind("\n", window, mark_start) + 1 or window
    word_start = max(line_start, max(text.rfind(" ", window, mark_start), text.rfind("\t", window, mark_start)) + 1)
    word = text[word_start:mark_start].lstrip("(\"'“‘[").lower()
    if word in _ABBREVIATIONS or _DOTTED.match(word) or (len(word) == 1 and word.isalpha() and word < "\u0250"):
        return False
    # "1. Install" at the start of a line is a list number, not a sentence.
    return not (word.isdigit() and len(word) <= 3 and word_start == line_start)


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, without surrounding whitespace."""
    spans = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if m.group(0).strip() and not _ends_sentence(text, m.start(), m.end()):
            continue
        end = m.end() if m.group(0).strip() else m.start()
        spans.append((start, end))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            out.append((a, b))
    return out


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each sentence of `text` (see `split_sentences`)."""
    return _sentence_spans(text)


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` with their end marks attached; joined they give back the text modulo whitespace."""
    return [text[a:b] for a, b in _sentence_spans(text)]


class _Weights:
    """Prefix sums of `text_length` over one text, so the length of any slice costs O(1)."""

    def __init__(self, text: str) -> None:
        wide = {m.start() for m in _WIDE.finditer(text)}
        self.prefix = [0, *accumulate(3 if i in wide else 1 for i in range(len(text)))]

    def length(self, start: int, end: int) -> int:
        return self.prefix[end] - self.prefix[start]


def _split_long(text: str, span: tuple[int, int], size: int, weights: _Weights) -> list[tuple[int, int]]:
    """Cut one over-long sentence into pieces of at most `size`: between words, or anywhere in CJK/Thai text."""
    a, end = span
    pieces = []
    while a < end:
        if weights.length(a, end) <= size:
            pieces.append((a, end))
            break
        lo, hi = a + 1, end  # largest cut with length(a, cut) <= size
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if weights.length(a, mid) <= size else (lo, mid - 1)
        cut = lo
        if not (_NO_SPACE.match(text[cut - 1]) or _NO_SPACE.match(text[cut])):
            space = max(text.rfind(" ", a, cut + 1), text.rfind("\n", a, cut + 1))
            if space > a:
                cut = space
        pieces.append((a, cut))
        a = cut
        while a < end and text[a].isspace():
            a += 1
    return [(x, y) for x, y in ((x, _rstrip(text, x, y)) for x, y in pieces) if x < y]


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _chunk_spans(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of each chunk of one section's text; consecutive chunks share whole trailing sentences."""
    weights = _Weights(text)
    units: list[tuple[int, int]] = []
    for span in _sentence_spans(text):
        units.extend([span] if weights.length(*span) <= size else _split_long(text, span, size, weights))
    chunks: list[tuple[int, int]] = []  # (first unit, last unit + 1)
    i = 0
    while i < len(units):
        first = i
        if chunks:  # overlap: the previous chunk's last sentences, never all of them
            prev_first, prev_end = chunks[-1]
            end_pos = units[prev_end - 1][1]
            first = prev_end
            while first - 1 > prev_first and weights.length(units[first - 1][0], end_pos) <= overlap:
                first -= 1
            while first < i and weights.length(units[first][0], units[i][1]) > size:
                first += 1
        j = i + 1
        while j < len(units) and weights.length(units[first][0], units[j][1]) <= size:
            j += 1
        chunks.append((first, j))
        i = j
    if len(chunks) >= 2:  # a tiny last piece joins the chunk before it when that stays under 1.5 x size
        (pf, pe), le = chunks[-2], chunks[-1][1]
        new_text = weights.length(units[pe - 1][1], units[le - 1][1])
        if new_text < size / 4 and weights.length(units[pf][0], units[le - 1][1]) <= 1.5 * size:
            chunks[-2:] = [(pf, le)]
    return [(units[f][0], units[e - 1][1]) for f, e in chunks]


def chunk_document(doc: ParsedDocument, size: int = DEFAULT_CHUNK_SIZE,
                   overlap: int = DEFAULT_CHUNK_OVERLAP) -> list[Chunk]:
    """Chunks of whole sentences of at most `size` (a merged tiny tail may reach 1.5 x size), section by section."""
    if size <= 0:
        raise ValueError(f"chunk size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"chunk overlap must be between 0 and the chunk size {size}, got {overlap}")
    chunks: list[Chunk] = []
    for section in doc.sections:
        for a, b in _chunk_spans(section.text, size, overlap):
            chunks.append(Chunk(text=section.text[a:b], heading=section.heading, location=section.location,
                                ordinal=len(chunks)))
    return chunks


def document_title(doc: ParsedDocument) -> str:
    """The document's title for chunks that have no heading: the parser's title (first heading, <title>, PDF
    metadata) unless it only repeated the file name, else a plain-text headline: a first line of at most
    HEADLINE_MAX_LENGTH that does not end like a sentence and is followed by more text (news and reports in .txt
    files start so). "" when there is none."""
    if doc.title and doc.title != PurePath(doc.source).stem:
        return doc.title
    text = doc.sections[0].text.lstrip() if doc.sections else ""
    first, newline, rest = text.partition("\n")
    first = first.strip()
    if not newline or not rest.strip() or not first or text_length(first) > HEADLINE_MAX_LENGTH:
        return ""
    return "" if _HEADLINE_END.search(first) else first


def sentence_context(chunk: Chunk, title: str) -> str:
    """What is embedded before each sentence of a chunk: its heading path, else the document's title (see
    `document_title`) unless the chunk starts with it, so that a sentence like "The plant cost 31 million." still
    says which plant."""
    if chunk.heading:
        return chunk.heading
    return "" if not title or chunk.text.startswith(title) else title
