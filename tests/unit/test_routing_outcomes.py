"""Outcome-file validation (one-line errors naming the line), prices, and the RouteLLM converters' split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baimo.errors import InvalidRequest
from baimo.routing.converters import convert, is_test
from baimo.routing.outcomes import Price, load_outcomes, load_prices, parse_outcome_lines

GOOD = json.dumps({"prompt": "2+2?", "scores": {"a": 0, "b": 1}, "costs": {"a": 0.001, "b": 0.01}})


def lines(*objs: object) -> list[str]:
    return [o if isinstance(o, str) else json.dumps(o) for o in objs]


@pytest.mark.parametrize(("bad", "message"), [
    ("{not json", "line 2: not valid JSON"),
    ([1, 2], "line 2: expected a JSON object"),
    ({"prompt": "", "scores": {"a": 1, "b": 1}}, "line 2: `prompt` must be a non-empty string"),
    ({"prompt": "x", "scores": {"a": 1.5, "b": 1}, "costs": {"a": 0, "b": 0}}, "line 2: scores['a'] = 1.5 is outside"),
    ({"prompt": "x", "scores": {"a": "yes", "b": 1}, "costs": {"a": 0, "b": 0}},
     "line 2: scores['a'] must be a number"),
    ({"prompt": "x", "scores": {"a": 1}, "costs": {"a": 0}}, "line 2: scores are for ['a'], earlier lines for"),
    ({"prompt": "x", "scores": {"a": 1, "b": 0}, "costs": {"a": 0}}, "line 2: costs are for ['a']"),
    ({"prompt": "x", "scores": {"a": 1, "b": 0}, "costs": {"a": -1, "b": 0}}, "line 2: costs['a'] = -1"),
    ({"prompt": "x", "scores": {"a": 1, "b": 0}}, "line 2: no `costs` and no price for a, b (pass --prices)"),
])
def test_bad_lines_name_the_line(bad: object, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_outcome_lines(lines(GOOD, bad), "data.jsonl")
    assert str(info.value).startswith("data.jsonl ") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_good_file_with_prices_for_missing_costs(tmp_path: Path) -> None:
    (tmp_path / "prices.yaml").write_text("a: {input: 1, output: 2, output_tokens: 100}\nb: {input: 10, output: 20}\n")
    prices = load_prices(tmp_path / "prices.yaml")
    assert prices["b"] == Price(10, 20, 256)
    data = tmp_path / "o.jsonl"
    data.write_text(GOOD + "\n\n" + json.dumps({"prompt": "abcdefgh", "scores": {"b": 0.5, "a": 1}}) + "\n")
    o = load_outcomes(data, prices)
    assert o.models == ["a", "b"] and o.scores.tolist() == [[0, 1], [1, 0.5]]
    # 8 characters -> 2 prompt tokens; a: (2*1 + 100*2)/1e6
    assert o.costs[1].tolist() == pytest.approx([202e-6, (2 * 10 + 256 * 20) / 1e6])


def test_prompts_with_unicode_line_separators_stay_one_line(tmp_path: Path) -> None:
    data = tmp_path / "o.jsonl"
    row = {"prompt": "a\u2028b\x85c", "scores": {"a": 1, "b": 0}, "costs": {"a": 0, "b": 1}}
    data.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_outcomes(data).prompts == ["a\u2028b\x85c"]


def test_bad_prices_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("a: {input: 1}\n")
    with pytest.raises(InvalidRequest, match="needs `input` and `output`"):
        load_prices(tmp_path / "p.yaml")
    with pytest.raises(InvalidRequest, match="no such file"):
        load_outcomes(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidRequest, match="at least two models"):
        parse_outcome_lines(lines({"prompt": "x", "scores": {"a": 1}, "costs": {"a": 0}}))


def test_split_is_fixed_and_contaminated_prompts_are_dropped(tmp_path: Path) -> None:
    assert [is_test(p) for p in ("a", "b", "c", "d")] == [is_test(p) for p in ("a", "b", "c", "d")]
    prompts = [f"question {i}" for i in range(200)]
    share = sum(map(is_test, prompts)) / len(prompts)
    assert 0.35 < share < 0.65
    (tmp_path / "gsm8k_responses.csv").write_text(
        "prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\n"
        + "".join(f"{p},{'True' if i % 2 else 'False'},True\n" for i, p in enumerate(prompts)))
    (tmp_path / "gsm8k_contaminated_prompts.jsonl").write_text(json.dumps({"eval_prompt": "question 3"}) + "\n")
    train, test = convert("gsm8k", tmp_path)
    got = {r["prompt"] for r in train} | {r["prompt"] for r in test}
    assert got == set(prompts) - {"question 3"}
    assert all(is_test(r["prompt"]) for r in test) and not any(is_test(r["prompt"]) for r in train)
    row = next(r for r in train + test if r["prompt"] == "question 1")
    assert row["scores"] == {"mixtral-8x7b": 1.0, "gpt-4": 1.0}
    assert row["costs"]["gpt-4"] > 50 * row["costs"]["mixtral-8x7b"]
    with pytest.raises(InvalidRequest, match="unknown dataset"):
        convert("hellaswag", tmp_path)
