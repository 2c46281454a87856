"""Chunking parsed documents: sentence splitting in many scripts, sizes, overlap and section boundaries."""

from __future__ import annotations

import re

import pytest

from baimo.knowledge.chunking import (
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_SIZE,
    Chunk,
    chunk_document,
    split_sentences,
    text_length,
)
from baimo.knowledge.parsing import ParsedDocument, Section


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def doc(*sections: Section) -> ParsedDocument:
    return ParsedDocument(source="d.txt", format="txt", title="d", sections=list(sections))


ENGLISH = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(60)]
CHINESE = [f"这是第{i}个句子，它讨论了检索增强生成的一个方面。" for i in range(40)]


# --- sentences ------------------------------------------------------------------------------------------------

def test_english_sentences_keep_abbreviations_decimals_and_initials() -> None:
    text = ("Dr. Smith measured 3.14 units, e.g. more than J. R. R. Tolkien did. Fruits, etc. and more fruits. "
            "She left at 5 p.m. yesterday! Did he? Yes.\nA line break alone does not end a sentence\n\n"
            "But a blank line does")
    assert split_sentences(text) == [
        "Dr. Smith measured 3.14 units, e.g. more than J. R. R. Tolkien did.",
        "Fruits, etc. and more fruits.",
        "She left at 5 p.m. yesterday!",
        "Did he?",
        "Yes.",
        "A line break alone does not end a sentence",
        "But a blank line does",
    ]


def test_german_abbreviations_and_list_numbers() -> None:
    assert split_sentences("Das ist z.B. gut. Er sagt u.a. dies. Ende.") == ["Das ist z.B. gut.",
                                                                              "Er sagt u.a. dies.", "Ende."]
    assert split_sentences("Steps:\n1. Open it.\n2. Close it.") == ["Steps:\n1. Open it.", "2. Close it."]


def test_cjk_sentences_need_no_spaces() -> None:
    assert split_sentences("今日は晴れです。明日は雨でしょう！「本当？」と聞いた。最後") == [
        "今日は晴れです。", "明日は雨でしょう！", "「本当？」と聞いた。", "最後"]
    assert split_sentences("我们喜欢读书。你呢？很好！") == ["我们喜欢读书。", "你呢？", "很好！"]
    assert split_sentences("全角の点．次の文") == ["全角の点．", "次の文"]


def test_arabic_urdu_and_hindi_sentences() -> None:
    assert split_sentences("هل تعرف اللغة العربية؟ نعم، أعرفها جيدا. شكرا لك") == [
        "هل تعرف اللغة العربية؟", "نعم، أعرفها جيدا.", "شكرا لك"]
    assert split_sentences("یہ پہلا جملہ ہے۔ یہ دوسرا ہے۔") == ["یہ پہلا جملہ ہے۔", "یہ دوسرا ہے۔"]
    assert split_sentences("यह पहला वाक्य है। यह दूसरा है।") == ["यह पहला वाक्य है।", "यह दूसरा है।"]


@pytest.mark.parametrize("text", [
    " ".join(ENGLISH), "".join(CHINESE), "  leading and trailing  \n\n\n  spaces. Here.  ", "", "no end mark",
    'He said "stop." Then left.', "Wait... what? OK.",
])
def test_sentences_reproduce_the_text_modulo_whitespace(text: str) -> None:
    sentences = split_sentences(text)
    assert squash("".join(sentences)) == squash(text)
    assert all(s == s.strip() and s for s in sentences)


def test_text_length_weighs_cjk_three_times() -> None:
    assert text_length("abc") == 3
    assert text_length("日本語") == 9
    assert text_length("한국어 text") == 14
    assert text_length("مرحبا") == 5


# --- chunks ---------------------------------------------------------------------------------------------------

def check_chunks(document: ParsedDocument, chunks: list[Chunk], size: int, overlap: int) -> None:
    """The invariants every chunking must keep."""
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for section in document.sections:
        mine = [c for c in chunks if (c.heading, c.location) == (section.heading, section.location)]
        assert mine, "every section with text has chunks"
        sentences = split_sentences(section.text)
        for c in mine:
            assert c.text in section.text, "a chunk never mixes sections"
            assert text_length(c.text) <= 1.5 * size
        # every sentence is in some chunk: together the chunks cover the section
        assert all(any(s in c.text for c in mine) for s in sentences if text_length(s) <= size)
        for prev, nxt in zip(mine, mine[1:], strict=False):
            shared = next((k for k in range(min(len(prev.text), len(nxt.text)), 0, -1)
                           if prev.text.endswith(nxt.text[:k])), 0)
            carried = nxt.text[:shared]
            assert text_length(carried) <= overlap
            assert carried != prev.text, "never the whole previous chunk"
            if carried:  # whole sentences only
                assert split_sentences(carried) == split_sentences(prev.text)[-len(split_sentences(carried)):]


def test_english_chunks_respect_size_and_overlap_whole_sentences() -> None:
    section = Section(text=" ".join(ENGLISH), location="page 1")
    chunks = chunk_document(doc(section), size=300, overlap=120)
    assert len(chunks) > 5
    check_chunks(doc(section), chunks, 300, 120)
    assert all(text_length(c.text) <= 300 for c in chunks[:-1])
    assert all(c.text.endswith(".") and c.text[0] == "S" for c in chunks)  # whole sentences
    # with overlap the second chunk starts with the last sentence(s) of the first: here two of them
    first = split_sentences(chunks[0].text)
    assert chunks[1].text.startswith(" ".join(first[-2:]))


def test_no_overlap() -> None:
    section = Section(text=" ".join(ENGLISH), location="")
    chunks = chunk_document(doc(section), size=300, overlap=0)
    assert squash("".join(c.text for c in chunks)) == squash(section.text)


def test_chunks_never_cross_headings() -> None:
    document = doc(Section(text=" ".join(ENGLISH[:20]), location="Install", heading="Install"),
                   Section(text="Short section.", location="Install > Linux", heading="Install > Linux"),
                   Section(text=" ".join(ENGLISH[20:]), location="Usage", heading="Usage"))
    chunks = chunk_document(document, size=250, overlap=60)
    check_chunks(document, chunks, 250, 60)
    assert [c for c in chunks if c.heading == "Install > Linux"][0].text == "Short section."
    headings = [c.heading for c in chunks]
    assert headings == sorted(headings, key=["Install", "Install > Linux", "Usage"].index)


def test_chinese_chunks_are_sized_by_weighted_length() -> None:
    section = Section(text="".join(CHINESE), location="page 2")
    chunks = chunk_document(doc(section), size=300, overlap=80)
    check_chunks(doc(section), chunks, 300, 80)
    assert all(c.text.endswith("。") for c in chunks)
    assert all(len(c.text) <= 100 for c in chunks[:-1])  # 300 weighted = at most 100 ideographs


def test_long_cjk_sentence_is_cut_between_characters() -> None:
    sentence = "检索增强生成" * 100 + "。"  # 601 characters, one sentence
    chunks = chunk_document(doc(Section(text=sentence, location="")), size=300, overlap=50)
    assert len(chunks) >= 6
    assert all(text_length(c.text) <= 300 for c in chunks[:-1])
    assert chunks[-1].text.endswith("生成。")  # the lone "。" piece was merged into the last chunk
    assert "".join(c.text for c in chunks) == sentence  # pieces of one sentence do not overlap


def test_long_latin_sentence_is_cut_between_words() -> None:
    sentence = " ".join(f"word{i}" for i in range(300)) + "."
    chunks = chunk_document(doc(Section(text=sentence, location="")), size=200, overlap=50)
    assert all(text_length(c.text) <= 200 for c in chunks)
    words = [w for c in chunks for w in c.text.split()]
    assert words == sentence.split()


def test_tiny_tail_is_merged_into_the_previous_chunk() -> None:
    text = " ".join(ENGLISH[:8]) + " Tail."
    size = text_length(" ".join(ENGLISH[:8])) - 1
    chunks = chunk_document(doc(Section(text=text, location="")), size=int(size), overlap=0)
    assert chunks[-1].text.endswith("Tail.") and chunks[-1].text != "Tail."
    assert text_length(chunks[-1].text) <= 1.5 * size


def test_mixed_paragraphs_and_scripts_with_defaults() -> None:
    paragraphs = [" ".join(ENGLISH[:15]), "".join(CHINESE[:10]),
                  " ".join(f"هل تعرف الدرس {i}؟ نعم، أعرف الدرس {i} جيدا." for i in range(15)),
                  " ".join(f"यह वाक्य संख्या {i} है।" for i in range(30))]
    section = Section(text="\n\n".join(paragraphs), location="page 1")
    chunks = chunk_document(doc(section))
    check_chunks(doc(section), chunks, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP)
    assert DEFAULT_CHUNK_OVERLAP < DEFAULT_CHUNK_SIZE


def test_empty_document_and_bad_arguments() -> None:
    assert chunk_document(doc()) == []
    assert chunk_document(doc(Section(text="  \n ", location=""))) == []
    with pytest.raises(ValueError):
        chunk_document(doc(), size=0)
    with pytest.raises(ValueError):
        chunk_document(doc(), size=100, overlap=100)
