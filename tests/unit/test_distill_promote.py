"""The router setting that sends a domain to a fine-tuned model: the rule derived from the domain's prompts, and
`promote` writing it into baimo.yaml (kept comments, the previous default as the router's default)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from baimo.config import Settings, load_config
from baimo.distill.promote import ROUTER_ID, common_prefix, coverage, domain_rule, promote
from baimo.distill.tasks import make_task
from baimo.errors import InvalidRequest, NotFound
from baimo.routing.request import RouteRequest
from baimo.routing.rules import first_match

CONFIG = """# operator's note: keep me
default_model: remote/big
models:
  - id: remote/big   # the teacher
    kind: openai
    base_url: http://127.0.0.1:9/v1
    upstream_model: big
    price_input: 2.5
    price_output: 10
  - id: local/travel
    kind: llamacpp
    path: {path}
"""


def settings_with(tmp_path: Path) -> Settings:
    gguf = tmp_path / "travel.gguf"
    gguf.write_bytes(b"GGUF")
    home = tmp_path / "home"
    home.mkdir()
    (home / "baimo.yaml").write_text(CONFIG.format(path=gguf), encoding="utf-8")
    return Settings(home=home)


def test_common_prefix_stops_at_a_word_boundary() -> None:
    assert common_prefix(["Convert the request: fly", "Convert the request: rent"]) == "Convert the request: "
    assert common_prefix(["Convert this", "Convertible"]) == ""
    assert common_prefix([]) == "" and common_prefix(["same", "same"]) == "same"


def test_rule_from_a_synthetic_task_matches_its_held_out_prompts_and_nothing_else() -> None:
    train, suite = make_task("travel-json", train=40, test=30, seed=1)
    rule = domain_rule("travel", [r["messages"][0]["content"] for r in train])
    assert rule.model == "local/travel" and rule.regex.startswith("^Convert")
    held_out = [line["question"] for line in suite[1:]]
    assert coverage(rule, held_out) == 1.0
    assert coverage(rule, ["What is the capital of France?", "Convert 3 miles to km", "请把这句话翻译成英文"]) == 0.0


def test_generic_prompts_need_an_explicit_condition() -> None:
    with pytest.raises(InvalidRequest) as exc:
        domain_rule("x", ["What is 2+2?", "What is the time?"])
    assert exc.value.param == "regex"
    rule = domain_rule("x", [], keywords=["invoice"])
    assert rule.keywords == ["invoice"] and rule.regex is None


def test_promote_writes_a_rules_router_in_front_of_the_previous_default(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    rule = domain_rule("travel", ["Convert the request to JSON: fly", "Convert the request to JSON: rent"])
    config = promote(settings, "travel", rule)
    assert config.default_model == ROUTER_ID
    router = next(r for r in config.routers if r.id == ROUTER_ID)
    assert router.default == "remote/big" and [r.model for r in router.rules] == ["local/travel"]
    text = (settings.home / "baimo.yaml").read_text(encoding="utf-8")
    assert "# operator's note: keep me" in text and "# the teacher" in text
    reloaded = load_config(settings)
    hit = first_match(next(r for r in reloaded.routers if r.id == ROUTER_ID).rules,
                      RouteRequest([{"role": "user", "content": "Convert the request to JSON: fly to Oslo"}]))
    assert hit is not None and hit[1].model == "local/travel"
    assert first_match(router.rules, RouteRequest([{"role": "user", "content": "Write a poem"}])) is None

    again = promote(settings, "travel", domain_rule("travel", [], keywords=["trip"]))  # replaces its own rule
    router = next(r for r in again.routers if r.id == ROUTER_ID)
    assert len(router.rules) == 1 and router.rules[0].keywords == ["trip"] and router.default == "remote/big"
    assert yaml.safe_load((settings.home / "baimo.yaml").read_text())["default_model"] == ROUTER_ID


def test_promoting_an_unregistered_model_changes_nothing(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    before = (settings.home / "baimo.yaml").read_text(encoding="utf-8")
    with pytest.raises(NotFound) as exc:
        promote(settings, "nope", domain_rule("nope", [], keywords=["x"]))
    assert exc.value.param == "name"
    assert (settings.home / "baimo.yaml").read_text(encoding="utf-8") == before


def test_task_suites_ask_the_training_prompt_verbatim_without_the_answer_pinning_schema() -> None:
    from baimo.evaluation.prompts import answer_messages
    from baimo.evaluation.suites import parse_suite

    train, lines = make_task("travel-json", train=5, test=3, seed=2)
    suite = parse_suite([json.dumps(line) for line in lines], "task.jsonl")
    item = suite.items[0]
    assert suite.verbatim and answer_messages(suite, item) == [{"role": "user", "content": item["question"]}]
    assert '"const"' not in answer_messages(suite, item)[0]["content"]
    assert item["question"].startswith(train[0]["messages"][0]["content"][:40])  # the same instruction as training
    plain = parse_suite([json.dumps({"suite": {"name": "s", "kind": "json_schema"}}),
                         json.dumps({"question": "Give a city.", "schema": {"type": "object"}})], "s.jsonl")
    assert "JSON Schema" in answer_messages(plain, plain.items[0])[0]["content"]  # other suites still show it


def test_the_derived_regex_is_readable_and_matches_what_it_escapes() -> None:
    import re

    from baimo.distill.promote import readable_escape

    for text in ('Convert to JSON (YYYY-MM-DD). Reply:\nRequest: ', "a-b # c~&d [x] *y+ ^$ |z| {1}", "问题：\t例"):
        pattern = readable_escape(text)
        assert re.fullmatch(pattern, text) and "\\ " not in pattern and "\n" not in pattern
    assert not re.fullmatch(readable_escape("a.b"), "axb")
