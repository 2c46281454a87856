"""Grounding logic without a model: language of the decline, numbered sources, citation flags, RRF, personas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from baimo.backends.base import GenerationParams
from baimo.knowledge.grounding import DECLINES, citations, decline_message, detect_language, question_of, with_sources
from baimo.knowledge.retrieval import Passage, rrf, zscore_fusion
from baimo.personas import PersonaSpec


def passage(source: str, text: str, location: str = "page 1") -> Passage:
    return Passage(knowledge_base="kb", source=source, location=location, heading="", ordinal=0, text=text,
                   chunk_id=source, score=0.5, similarity=0.6)


@pytest.mark.parametrize(("text", "lang"), [
    ("Who won the football world cup in 1998?", "en"),
    ("Qui a gagné la coupe du monde de football en 1998 ?", "fr"),
    ("¿Quién ganó la copa del mundo de fútbol en 1998?", "es"),
    ("Quem ganhou a copa do mundo de futebol em 1998?", "pt"),
    ("Wer hat die Fußball-Weltmeisterschaft 1998 gewonnen und wo ist das?", "de"),
    ("من فاز بكأس العالم لكرة القدم عام 1998؟", "ar"),
    ("1998年のサッカーワールドカップで優勝したのはどこですか？", "ja"),
    ("1998年世界杯足球赛的冠军是谁？", "zh"),
])
def test_decline_is_in_the_users_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang
    assert decline_message(text) == DECLINES[lang]


def test_prompt_puts_passages_first_then_the_question_and_names_the_answer_language() -> None:
    msgs = [{"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Quel couple pour la QV-9 ?"}]
    out = with_sources(msgs, [passage("a.md", "42 Nm"), passage("b.pdf", "45 Nm max", "page 3")], grounded=True)
    assert out[0]["content"].startswith("You are helpful.") and "do not know" in out[0]["content"]
    user = out[-1]["content"]
    assert user.index("[1] 42 Nm") < user.index("[2] 45 Nm max") \
        < user.index("Quel couple pour la QV-9 ?") < user.index("Answer in French")
    assert msgs[0]["content"] == "You are helpful." and msgs[-1]["content"] == "Quel couple pour la QV-9 ?"
    plain = with_sources([{"role": "user", "content": "q"}], [passage("a.md", "x")], grounded=False)
    assert plain[0]["role"] == "system" and "do not know" not in plain[0]["content"]


def test_prompt_gives_no_example_to_copy() -> None:
    """Only the passages carry [n]: no instruction shows a marked-up sentence a small model could answer with."""
    out = with_sources([{"role": "user", "content": "What torque?"}], [passage("a.md", "42 Nm")], grounded=True)
    prompt = "\n".join(m["content"] for m in out).replace("[1] 42 Nm", "")
    assert not re.search(r"\[\d+\]", prompt)
    assert "40 bar" not in prompt and "for example" not in prompt.lower()
    parts = with_sources([{"role": "user", "content": [{"type": "text", "text": "What torque?"}]}],
                         [passage("a.md", "42 Nm")], grounded=False)[-1]["content"]
    assert [p["type"] for p in parts] == ["text", "text", "text"] and parts[1]["text"] == "What torque?"
    assert "[1] 42 Nm" in parts[0]["text"] and "Answer in English" in parts[2]["text"]


def test_citation_flags_follow_the_answer() -> None:
    cites = citations([passage("a.md", "x"), passage("b.md", "y"), passage("c.md", "z")], "See [3] and [1].")
    assert [c["cited"] for c in cites] == [True, False, True]
    assert [c["index"] for c in cites] == [1, 2, 3]


def test_question_is_the_last_user_message() -> None:
    assert question_of([{"role": "user", "content": "first"}, {"role": "assistant", "content": "a"},
                        {"role": "user", "content": "second"}]) == "second"
    assert question_of([{"role": "system", "content": "s"}]) == ""


def test_rrf_rewards_agreement() -> None:
    scores = rrf([["a", "b", "c"], ["b", "d"]])
    assert max(scores, key=scores.__getitem__) == "b"
    assert scores["a"] > scores["d"]


def test_score_fusion_keeps_a_sure_first_place_that_rrf_gives_away() -> None:
    """One list is sure of "a" (far above its other candidates); a weaker list ranks "a" 17th of 20 with a flat
    spread. Weighted RRF (the weaker list at 0.5) counts ranks alone and puts "b" (2nd and 1st) first; the
    z-scored sum (the weaker list at 0.25) keeps "a", since its gap in the sure list is large."""
    ids = [chr(ord("a") + i) for i in range(20)]
    sure = {"a": 0.60, **{key: 0.30 - 0.001 * i for i, key in enumerate(ids[1:])}}
    weak_order = ids[1:17] + ["a"] + ids[17:]
    weak = {key: 0.86 - 0.001 * i for i, key in enumerate(weak_order)}
    by_rank = rrf([ids, weak_order], weights=[1.0, 0.5])
    assert max(by_rank, key=by_rank.__getitem__) == "b"
    by_score = zscore_fusion([(sure, 1.0), (weak, 0.25)])
    assert max(by_score, key=by_score.__getitem__) == "a"
    # an id one list did not return counts as that list's lowest score; a zero weight ignores the list
    partial = zscore_fusion([({"a": 1.0, "b": 0.0}, 1.0), ({"c": 5.0}, 0.0)])
    assert set(partial) == {"a", "b", "c"} and partial["c"] == partial["b"] < partial["a"]


def test_persona_instructions_come_first_and_request_temperature_wins() -> None:
    p = PersonaSpec(name="x", instructions="Be formal.", temperature=0.2)
    params = p.apply(GenerationParams(messages=[{"role": "system", "content": "client"},
                                                {"role": "user", "content": "hi"}]))
    assert [m["content"] for m in params.messages] == ["Be formal.", "client", "hi"]
    assert params.temperature == 0.2
    assert p.apply(GenerationParams(messages=[{"role": "user", "content": "hi"}], temperature=1.0)).temperature == 1.0
    assert p.knowledge_options(5, 0.3) is None
    opts = PersonaSpec(name="y", knowledge=["kb"], grounded=True, top_k=3).knowledge_options(5, 0.3)
    assert opts is not None and opts.k == 3 and opts.grounded and opts.min_relevance == 0.3


def test_every_fixture_question_gets_its_own_language() -> None:
    """The answer rule and the decline name the question's language: French and Portuguese questions share many
    short words ("de", "a"), which once sent a Portuguese question a French decline."""
    path = Path(__file__).resolve().parents[1] / "fixtures" / "grounded" / "questions.json"
    for q in json.loads(path.read_text(encoding="utf-8"))["questions"]:
        assert detect_language(q["question"]) == q["lang"], q["id"]
