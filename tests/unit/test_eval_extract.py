"""Answer extraction (baimo/evaluation/extract.py): letters in CJK and English text, numbers in every dress, JSON,
judge ratings and verdicts."""

from __future__ import annotations

import pytest

from baimo.evaluation.extract import (
    extract_choice,
    extract_exact,
    extract_json,
    extract_number,
    extract_rating,
    extract_verdict,
    numbers_match,
)


@pytest.mark.parametrize(("text", "letter"), [
    ("答案是：B", "B"),
    ("答案：Ｃ", "C"),                       # full-width letter and colon
    ("选B", "B"),
    ("我选择 D 选项", "D"),
    ("正确答案为（A）", "A"),                 # full-width parentheses
    ("(C)", "C"),
    ("C", "C"),
    ("B. 李、杏、蕉", "B"),
    ("D、煮酒器", "D"),
    ("分析：A说法错误，B也不对，所以答案是C。", "C"),   # the conclusion, not the options discussed
    ("The answer is (D).", "D"),
    ("Answer: b", "B"),
    ("A good guess would be B", "B"),        # an English article "A" is not an answer
    ("我认为B对", "B"),
    ("\\boxed{C}", "C"),
    ("所以最终答案是 \\boxed{A}", "A"),
    ("答案是 【B】", "B"),
])
def test_choice_letters(text: str, letter: str) -> None:
    assert extract_choice(text) == letter


@pytest.mark.parametrize("text", ["", "我不知道", "None of these apply", "Apple"])
def test_choice_none(text: str) -> None:
    assert extract_choice(text) is None


def test_choice_respects_the_option_set() -> None:
    assert extract_choice("答案是E", letters="ABCDE") == "E"
    assert extract_choice("答案是E") is None


@pytest.mark.parametrize(("text", "number"), [
    ("Janet makes 9 * 2 = $18 every day.\n#### 18", "18"),
    ("#### 1,234", "1234"),
    ("The answer is $1,234.50.", "1234.5"),
    ("She has -5 dollars left", "-5"),
    ("温度是 −3 度", "-3"),                    # Unicode minus
    ("So x = \\boxed{\\frac{3}{4}}", "0.75"),
    ("\\boxed{\\dfrac{1}{3}}", "1/3"),
    ("答案是 12 个苹果", "12"),
    ("答案：１２０元", "120"),                 # full-width digits, a unit
    ("It grows by 50%.", "50"),
    ("First 3 apples, then 4 more, so 7 apples in total.", "7"),
    ("The answer is 3/4 of the cake", "0.75"),
    ("0.5 + .25 = .75", "0.75"),
    ("He paid ¥2,000 for it", "2000"),
    ("Result: 42 km, computed from 6 x 7", "7"),  # last number when nothing is marked
    ("Answer: 42 km, computed from 6 x 7", "42"),
])
def test_numbers(text: str, number: str) -> None:
    assert extract_number(text) == number


def test_number_none() -> None:
    assert extract_number("I cannot tell.") is None
    assert extract_number("") is None


def test_numbers_match() -> None:
    assert numbers_match("18", "18") and numbers_match("18.0", 18) and numbers_match("1,000", "1000")
    assert numbers_match("0.333333334", "1/3")
    assert not numbers_match("17", "18") and not numbers_match(None, "18") and not numbers_match("x", "1")


def test_json_answers() -> None:
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Here you go:\n```json\n{"name": "Li", "age": 3}\n```') == {"name": "Li", "age": 3}
    assert extract_json('Sure! {"s": "a } b", "n": [1, 2]} hope it helps') == {"s": "a } b", "n": [1, 2]}
    assert extract_json("list: [1, 2, 3].") == [1, 2, 3]
    with pytest.raises(ValueError):
        extract_json("no json {here")


@pytest.mark.parametrize(("text", "rating"), [
    ("The answer is helpful. Rating: [[8]]", 8.0),
    ("Rating: [[7.5]]", 7.5),
    ("评分：6", 6.0),
    ("I would give it 9/10", 9.0),
    ("Rating: [[11]]", None),
    ("no rating", None),
])
def test_ratings(text: str, rating: float | None) -> None:
    assert extract_rating(text) == rating


def test_verdicts() -> None:
    assert extract_verdict("Assistant A is better. [[A]]") == "A"
    assert extract_verdict("[[C]]") == "tie"
    assert extract_verdict("both fine") is None


@pytest.mark.parametrize(("text", "answer"), [
    ("Paris", "Paris"),
    ("Let me think. Paris is in France.\nAnswer: Paris.", "Paris"),
    ("答案：“北京”。", "北京"),
    ("The answer is \"blue\"", "blue"),
    ("Answer:", "Answer:"),  # a marker with nothing after it: the whole text
])
def test_exact_answers(text: str, answer: str) -> None:
    assert extract_exact(text) == answer
