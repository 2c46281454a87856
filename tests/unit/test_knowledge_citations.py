"""The answer check: instruction echoes dropped, citation markers kept only where the passage supports the
sentence, markers added where the model cited nothing, sentence by sentence while the answer streams."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from baimo.backends.base import Finish, StreamEvent, TextDelta, ToolCallDelta
from baimo.config import EmbedderConfig
from baimo.embeddings import UseEmbedder
from baimo.knowledge.answer_stream import checked_answer, split_sentences
from baimo.knowledge.citations import AnswerCheck, numbers, strip_markers, with_markers
from baimo.knowledge.grounding import allowed_repeats, answer_rule, prompt_instructions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "grounded"
VALVE = "The Quorvath valve QV-9 must be tightened to 42 Nm. Never exceed 45 Nm or the seal cracks."
CANTEEN = "La cantine de Lumora ouvre à 11 h 30 et ferme à 14 h. Le plat du jour coûte 6,40 euros."
OLD_EXAMPLE = ("Answer the user's question using the numbered sources below. After each sentence that uses a source, "
               "write the source's number in square brackets, for example: The pump runs at 40 bar [2].")


def check(**kw: object) -> AnswerCheck:
    return AnswerCheck([VALVE, CANTEEN], **kw)  # type: ignore[arg-type]


def test_numbers_compare_by_significant_digits_across_spellings() -> None:
    assert numbers("12 000 véhicules") == numbers("12,000 cars") == numbers("12.000 carros") == {"12"}
    assert numbers("38 mil pessoas") == numbers("38000 people") == {"38"}
    assert numbers("6,40 euros") == {"64"} and numbers("١٢٣ and ４５") == {"123", "45"}
    assert numbers("KAI-5 runs 9 hours") == set()  # single digits are phrasing as often as facts


def test_markers_are_read_in_every_spelling_and_written_before_the_full_stop() -> None:
    assert strip_markers("It is 42 Nm [1][2].") == ("It is 42 Nm.", [1, 2])
    assert strip_markers("It is 42 Nm. [1, 3]") == ("It is 42 Nm.", [1, 3])
    assert strip_markers("42 Nm【2】 [Source 1]") == ("42 Nm", [2, 1])
    assert with_markers("It is 42 Nm.", [1]) == "It is 42 Nm [1]."
    assert with_markers("扭矩为42牛米。", [2]) == "扭矩为42牛米[2]。"
    assert with_markers("No marker", []) == "No marker"


def test_wrong_marker_is_moved_to_the_supporting_passage() -> None:
    c = check()
    assert c.fix("The QV-9 must be tightened to 42 Nm [2].") == "The QV-9 must be tightened to 42 Nm [1]."
    assert c.markers_dropped == 1 and c.markers_added == 1


def test_unsupported_markers_are_dropped() -> None:
    c = check()
    assert c.fix("The QV-9 must be tightened to 60 Nm [1].") == "The QV-9 must be tightened to 60 Nm."  # wrong number
    assert c.fix("Le plat du jour coûte 6,40 euros [7].") == "Le plat du jour coûte 6,40 euros [2]."  # no passage 7
    assert c.fix("Bananas are yellow [1].") == "Bananas are yellow."


def test_baimo_cites_a_supported_sentence_the_model_left_uncited() -> None:
    c = check()
    assert c.fix("La cantine ouvre à 11 h 30 et ferme à 14 h.") == "La cantine ouvre à 11 h 30 et ferme à 14 h [2]."
    assert c.markers_added == 1 and c.fix("Sure!") == "Sure!"


def test_a_sentence_copied_from_the_instructions_is_dropped() -> None:
    question = "What pressure does the pump run at?"
    rules = prompt_instructions([{"role": "system", "content": OLD_EXAMPLE}], True, question)
    c = check(instructions=rules, allowed=allowed_repeats(question))
    assert c.fix("The pump runs at 40 bar [2].") == ""  # the old prompt's example, answered back
    assert c.fix(answer_rule(question)) == ""
    assert c.fix("If the passages do not contain the answer, say that you do not know.") == ""
    assert c.echoes == 3
    assert c.fix("The QV-9 must be tightened to 42 Nm.") == "The QV-9 must be tightened to 42 Nm [1]."
    assert c.fix("I do not know.") == "I do not know."  # a short decline is an answer, not an echo


def test_sentences_split_where_they_end_and_keep_their_markers() -> None:
    assert split_sentences("It is 42 Nm [1]. Never exceed 45 Nm. [1] Also") == (
        ["It is 42 Nm [1]. ", "Never exceed 45 Nm. [1] "], "Also")
    assert split_sentences("扭矩为42牛米[1]。不要超过45牛米") == (["扭矩为42牛米[1]。"], "不要超过45牛米")
    assert split_sentences("Price 6.40 euros") == ([], "Price 6.40 euros")
    assert split_sentences("- one\n- two") == (["- one\n"], "- two")
    assert split_sentences("Done.") == ([], "Done.")  # the end of a sentence is known once more text follows


async def _events(*items: StreamEvent) -> AsyncIterator[StreamEvent]:
    for item in items:
        yield item


def _run(deltas: list[StreamEvent], c: AnswerCheck, fallback: str = "I don't know.") -> list[StreamEvent]:
    async def go() -> list[StreamEvent]:
        first, *rest = deltas
        return [e async for e in checked_answer(first, _events(*rest), c, fallback)]

    return asyncio.run(go())


def test_stream_is_checked_sentence_by_sentence() -> None:
    finish = Finish("stop", 10, 12)
    out = _run([TextDelta("The QV-9 must be tightened "), TextDelta("to 42 Nm [2]. The pump runs"),
                TextDelta(" at 40 bar [2]. Never exceed 45 Nm", logprobs=[{"token": "x", "logprob": -0.1}]),
                ToolCallDelta([{"index": 0, "function": {"name": "f"}}]), finish],
               check(instructions=[OLD_EXAMPLE]))
    texts = [e.text for e in out if isinstance(e, TextDelta)]
    assert texts == ["The QV-9 must be tightened to 42 Nm [1]. ", "Never exceed 45 Nm [1]"]
    assert [e.logprobs for e in out if isinstance(e, TextDelta)][-1] == [{"token": "x", "logprob": -0.1}]
    assert any(isinstance(e, ToolCallDelta) for e in out) and out[-1] is finish


def test_an_answer_made_only_of_echoes_becomes_the_decline() -> None:
    out = _run([TextDelta("The pump runs at 40 bar [2]."), Finish("stop", 10, 9)], check(instructions=[OLD_EXAMPLE]),
               fallback="Je ne sais pas.")
    assert [e.text for e in out if isinstance(e, TextDelta)] == ["Je ne sais pas."]
    empty = _run([TextDelta(""), Finish("stop", 10, 0)], check(instructions=[OLD_EXAMPLE]))
    assert [e.text for e in empty if isinstance(e, TextDelta)] == []  # nothing echoed: nothing invented


@pytest.fixture(scope="module")
def use() -> UseEmbedder:
    return UseEmbedder(EmbedderConfig(id="use", kind="use"))


def test_answers_in_another_language_are_cited_to_their_article(use: UseEmbedder) -> None:
    """Each reference answer of the fixture QA (in the question's language) against every paragraph of the six
    articles: Baimo cites a paragraph of the right article; with its number changed it cites nothing."""
    paragraphs, sources = [], []
    for path in sorted(FIXTURES.glob("*.md")):
        for para in path.read_text(encoding="utf-8").split("\n\n")[1:]:
            paragraphs.append(para.strip())
            sources.append(path.name)
    c = AnswerCheck(paragraphs, embed=use.embed)
    questions = json.loads((FIXTURES / "questions.json").read_text(encoding="utf-8"))["questions"]
    for q in questions:
        body, cited = strip_markers(c.fix(q["reference"]))
        assert cited and sources[cited[0] - 1] == q["source"], (q["id"], cited)
        wrong = re.sub(r"\d{2,}", lambda m: str(int(m.group()) + 7), q["reference"], count=1)
        if wrong != q["reference"]:
            assert strip_markers(c.fix(wrong))[1] == [], (q["id"], wrong)
