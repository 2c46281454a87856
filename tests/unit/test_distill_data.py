"""Distillation data: PII scrubbing (Chinese and English), de-duplication, the data mix, the synthetic task."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from baimo.distill.dedup import dedupe
from baimo.distill.mix import apportion, largest_size, mix, parse_mix
from baimo.distill.scrub import scrub_messages, scrub_text
from baimo.distill.tasks import check, make_task
from baimo.errors import InvalidRequest, NotFound


@pytest.mark.parametrize(("text", "placeholders", "gone"), [
    ("Hi, I am John Smith, email john.smith@example.com, call +1 415-555-0134.",
     ["<PERSON>", "<EMAIL_ADDRESS>", "<PHONE_NUMBER>"], ["John", "Smith", "john.smith", "555-0134"]),
    ("Ship it to 1600 Main Street, Springfield, IL 62704 please.", ["<ADDRESS>"], ["1600 Main", "62704"]),
    ("我叫张伟，电话13812345678，身份证110105198803151232。", ["<PERSON>", "<PHONE_NUMBER>", "<CN_ID>"],
     ["张伟", "13812345678", "110105198803151232"]),
    ("收件人：李娜，地址：上海市浦东新区世纪大道100号，邮箱lina@example.cn",
     ["<PERSON>", "<ADDRESS>", "<EMAIL_ADDRESS>"], ["李娜", "世纪大道100号", "lina@"]),
])
def test_scrub_replaces_personal_data_with_typed_placeholders(text: str, placeholders: list[str],
                                                              gone: list[str]) -> None:
    scrubbed, counts = scrub_text(text)
    for p in placeholders:
        assert p in scrubbed, scrubbed
    for g in gone:
        assert g not in scrubbed, scrubbed
    assert sum(counts.values()) >= len(placeholders)


def test_scrub_keeps_what_introduces_a_name_and_text_without_personal_data() -> None:
    assert scrub_text("我叫张伟。")[0] == "我叫<PERSON>。"
    clean = "Order 20231015 shipped; the weather in Paris is mild."
    assert scrub_text(clean) == (clean, {})


def test_scrub_messages_keeps_roles_and_totals_counts() -> None:
    totals: dict[str, int] = {}
    out = scrub_messages([{"role": "user", "content": "mail zw@example.com"}, {"role": "assistant", "content": None}],
                         totals=totals)
    assert out == [{"role": "user", "content": "mail <EMAIL_ADDRESS>"}, {"role": "assistant", "content": None}]
    assert totals == {"EMAIL_ADDRESS": 1}


def _row(user: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def test_dedupe_drops_exact_and_near_duplicates_keeping_the_first() -> None:
    long = ("The Rhine rises in the Swiss Alps, flows through Germany and the Netherlands, and reaches the North "
            "Sea near Rotterdam after about 1,230 kilometres.")
    rows = [_row("Tell me about the Rhine.", long),
            _row("tell me about   the RHINE.", long),                                  # same after normalising
            _row("Tell me about the Rhine!", long.replace("Sea near", "Sea, near")),   # near: two marks
            _row("莱茵河有多长？", "莱茵河全长约1230公里，发源于瑞士阿尔卑斯山，流经德国和荷兰，注入北海。"),
            _row("Tell me about the Danube.", long.replace("Rhine", "Danube").replace("North Sea", "Black Sea")),
            _row("Tell me about the Rhine?", long.replace("1,230", "1,232"))]  # similar text, another number
    kept, exact, near = dedupe(rows)
    assert (exact, near) == (1, 1)
    assert kept == [rows[0], rows[3], rows[4], rows[5]]
    assert dedupe(rows, near=False)[0] == [rows[0], rows[2], rows[3], rows[4], rows[5]]


def test_dedupe_keeps_distinct_rows_of_a_templated_prompt() -> None:
    train, _ = make_task("travel-json", 300, 0, seed=5)  # a 200-character instruction, a short varying request
    assert dedupe(train) == (train, 0, 0)
    from baimo.distill.tasks.travel import INSTRUCTION

    twins = [_row(f"{INSTRUCTION}I need a rental car in {city} on 2027-07-11.",
                  json.dumps({"intent": "rent_car", "city": city, "date": "2027-07-11"}))
             for city in ("Sydney", "Helsinki")]
    assert dedupe(twins) == (twins, 0, 0)  # LSH proposes the pair; the answers' similarity is below the threshold


def test_mix_counts_are_exact_by_largest_remainder() -> None:
    ratios = parse_mix("general=0.7,domain=0.3")
    assert apportion(ratios, 11) == {"general": 8, "domain": 3}  # 7.7 + 3.3: the larger remainder gets the 11th
    assert apportion(parse_mix("a=1,b=1,c=1"), 10) == {"a": 4, "b": 3, "c": 3}  # ties go in the mix's order
    assert parse_mix("a=2,b=6") == {"a": 0.25, "b": 0.75}
    assert largest_size(ratios, {"general": 100, "domain": 20}) == 66  # 20 / 0.3 rows, domain is the limit


def test_mix_is_deterministic_by_seed_and_labels_sources() -> None:
    sources = {"general": [{"i": i} for i in range(50)], "domain": [{"i": 100 + i} for i in range(50)]}
    ratios = parse_mix("general=0.7,domain=0.3")
    rows, counts = mix(sources, ratios, size=40, seed=7)
    assert counts == {"general": 28, "domain": 12}
    assert Counter(r["meta"]["source"] for r in rows) == counts
    assert len({r["i"] for r in rows}) == 40  # no row twice
    assert mix(sources, ratios, size=40, seed=7)[0] == rows
    assert mix(sources, ratios, size=40, seed=8)[0] != rows


def test_mix_refuses_a_source_too_small_unless_repeats_are_allowed() -> None:
    sources = {"general": [{"i": i} for i in range(100)], "domain": [{"i": -i} for i in range(5)]}
    with pytest.raises(InvalidRequest, match="domain needs 30 rows and has 5"):
        mix(sources, parse_mix("general=0.7,domain=0.3"), size=100)
    rows, counts = mix(sources, parse_mix("general=0.7,domain=0.3"), size=100, allow_repeat=True)
    domain = Counter(r["i"] for r in rows if r["meta"]["source"] == "domain")
    assert counts["domain"] == 30 and set(domain.values()) == {6}  # six whole passes over the five rows
    for bad in ("general=0.7,domain", "a=-1", "a=0", "a=1,a=2"):
        with pytest.raises(InvalidRequest):
            parse_mix(bad)
    with pytest.raises(InvalidRequest, match="names web"):
        mix(sources, parse_mix("web=1"), size=3)


def test_task_is_deterministic_disjoint_and_checked_exactly() -> None:
    from baimo.evaluation.suites import parse_suite

    train, suite = make_task("travel-json", 200, 50, seed=3)
    assert (train, suite) == make_task("travel-json", 200, 50, seed=3)
    assert make_task("travel-json", 200, 50, seed=4)[0] != train
    prompts = {r["messages"][0]["content"] for r in train}
    assert len(prompts) == 200 and not prompts & {item["question"] for item in suite[1:]}
    loaded = parse_suite([json.dumps(line) for line in suite], "test.jsonl")
    assert (loaded.kind, len(loaded.items), loaded.verbatim) == ("json_schema", 50, True)  # no schema shown
    row = train[0]
    expected = row["meta"]["expected"]
    assert set(expected) == {"intent", "city", "date"}
    assert check(row["messages"][1]["content"], expected)
    assert check("Here you go:\n```json\n" + json.dumps(expected, indent=2) + "\n```", expected)
    assert not check(json.dumps({**expected, "city": "Nowhere"}), expected)
    assert not check("intent: book_flight", expected)
    with pytest.raises(NotFound):
        make_task("no-such-task", 1, 1)


def test_task_items_validate_only_their_own_answer() -> None:
    import jsonschema

    _, suite = make_task("travel-json-iso", 0, 2)
    first, second = suite[1], suite[2]
    jsonschema.validate(json.loads(first["answer"]), first["schema"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(second["answer"]), first["schema"])


def test_strong_models_are_the_remote_ones_and_the_largest_local_one() -> None:
    from baimo.config import BaimoConfig
    from baimo.distill.export import strong_models

    config = BaimoConfig.model_validate({"models": [
        {"id": "local/small", "kind": "llamacpp", "catalogue": "smollm2-135m-instruct-q4_1"},
        {"id": "local/big", "kind": "llamacpp", "catalogue": "qwen2.5-coder-0.5b-instruct-q4_k_m"},
        {"id": "remote/gpt", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}]})
    assert strong_models(config) == ["remote/gpt", "local/big"]
    assert strong_models(config, only=["local/small"]) == ["local/small"]
    with pytest.raises(InvalidRequest, match="unknown model"):
        strong_models(config, only=["local/none"])
