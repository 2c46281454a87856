"""Suites (baimo/evaluation/suites.py) and prompts (prompts.py): the JSONL format, the built-ins, the shared
datasets' loaders, few-shot and chain-of-thought prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baimo.errors import InvalidRequest, NotFound
from baimo.evaluation.extract import extract_choice, extract_number
from baimo.evaluation.prompts import answer_messages, judge_messages, pairwise_messages
from baimo.evaluation.suites import KINDS, builtin_suites, eval_data_dir, load_suite, parse_suite


def lines(*rows: object) -> list[str]:
    return [json.dumps(r, ensure_ascii=False) for r in rows]


def test_builtins_parse_and_cover_several_kinds() -> None:
    suites = {s.name: s for s in builtin_suites()}
    assert {"arith-bilingual", "mc-bilingual", "json-schema", "judged-small"} <= set(suites)
    for s in suites.values():
        assert s.kind in KINDS and s.license and 10 <= len(s.items) <= 60 and s.source == f"builtin:{s.name}"
        assert len({i["id"] for i in s.items}) == len(s.items)
    mc = suites["mc-bilingual"]
    assert all(i["answer"] in i["choices"] for i in mc.items) and any("中国" in i["question"] for i in mc.items)
    assert load_suite("arith-bilingual").items == suites["arith-bilingual"].items


def test_a_suite_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines({"suite": {"name": "mine", "kind": "multiple_choice", "license": "CC0-1.0"}},
                                    {"question": "2+2?", "choices": ["3", "4"], "answer": "b"},
                                    {"id": "x", "prompt": "1+1?", "choices": {"A": "2", "B": "3"}, "answer": "A"})))
    suite = load_suite(str(path))
    assert (suite.name, suite.kind, suite.license) == ("mine", "multiple_choice", "CC0-1.0")
    assert suite.items[0] == {"id": "1", "question": "2+2?", "choices": {"A": "3", "B": "4"}, "answer": "B"}
    assert suite.items[1]["id"] == "x" and suite.items[1]["question"] == "1+1?"


@pytest.mark.parametrize(("rows", "message"), [
    ([{"question": "q", "answer": 1}], "first line must declare"),
    ([{"suite": {"name": "s", "kind": "essay"}}], "unknown suite kind 'essay'"),
    ([{"suite": {"name": "s", "kind": "numeric"}}, {"question": "q"}], "lacks answer"),
    ([{"suite": {"name": "s", "kind": "multiple_choice"}}, {"question": "q", "choices": ["a"], "answer": "C"}],
     "is not one of its choices"),
    ([{"suite": {"name": "s", "kind": "json_schema"}}, {"question": "q"}], "lacks schema"),
])
def test_malformed_suites(rows: list[dict], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as info:
        parse_suite(lines(*rows), "bad.jsonl")
    assert info.value.param == "suite"


def test_not_json_and_unknown_names() -> None:
    with pytest.raises(InvalidRequest, match="line 2 is not JSON"):
        parse_suite(['{"suite": {"name": "s", "kind": "exact"}}', "{nope"], "bad.jsonl")
    with pytest.raises(NotFound, match="no suite 'nothing-here'"):
        load_suite("nothing-here")
    with pytest.raises(NotFound, match="no CMMLU subject 'astrology'"):
        load_suite("cmmlu:astrology")


def test_shared_datasets() -> None:
    assert (eval_data_dir() / "gsm8k" / "test.jsonl").exists(), "../shared/data/eval is missing"
    gsm = load_suite("gsm8k")
    assert gsm.kind == "numeric" and len(gsm.items) == 1319 and gsm.license == "MIT"
    assert gsm.items[0]["answer"] == "18" and gsm.items[0]["solution"].endswith("#### 18")
    assert len(gsm.few_shot) == 8
    cm = load_suite("cmmlu:marketing")
    assert cm.kind == "multiple_choice" and "NC" in (cm.license or "") and cm.items[0]["group"] == "marketing"
    assert set(cm.items[0]["choices"]) == set("ABCD") and len(cm.few_shot) == 5
    assert len(load_suite("cmmlu").items) > len(cm.items)
    mt = load_suite("mt-bench")
    assert mt.kind == "judged" and len(mt.items) == 80 and mt.items[0]["id"] == "81"
    assert len(mt.items[0]["turns"]) == 2 and mt.items[0]["turns"][0] == mt.items[0]["question"]


def test_data_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "so\n#### 2"}) + "\n")
    monkeypatch.setenv("BAIMO_EVAL_DATA", str(tmp_path))
    suite = load_suite("gsm8k")
    assert [i["answer"] for i in suite.items] == ["2"] and suite.few_shot == []
    with pytest.raises(NotFound, match="BAIMO_EVAL_DATA"):
        load_suite("cmmlu")


def test_few_shot_and_cot_prompts() -> None:
    cm = load_suite("cmmlu:marketing")
    item = cm.items[0]
    plain = answer_messages(cm, item)
    assert len(plain) == 1 and "A. " in plain[0]["content"] and "请只回答选项字母" in plain[0]["content"]
    shots = answer_messages(cm, item, few_shot=3, cot=True)
    assert [m["role"] for m in shots] == ["user", "assistant"] * 3 + ["user"]
    assert all(extract_choice(m["content"]) in "ABCD" for m in shots if m["role"] == "assistant")
    assert "逐步思考" in shots[-1]["content"]
    gsm = load_suite("gsm8k")
    cot = answer_messages(gsm, gsm.items[0], few_shot=2, cot=True)
    worked = cot[1]["content"]
    assert "<<" not in worked and extract_number(worked) == gsm.few_shot[0]["answer"]
    assert "step by step" in cot[-1]["content"]
    assert answer_messages(gsm, gsm.items[0], few_shot=1)[1]["content"] == f"#### {gsm.few_shot[0]['answer']}"


def test_judge_prompts() -> None:
    item = {"question": "Why is the sky blue?", "rubric": "Mentions Rayleigh scattering."}
    single = judge_messages(item, "Because of scattering.")[0]["content"]
    assert "[[rating]]" in single and "Rayleigh" in single and "Because of scattering." in single
    pair = pairwise_messages(item, "first", "second")[0]["content"]
    assert pair.index("first") < pair.index("second") and "[[C]]" in pair
