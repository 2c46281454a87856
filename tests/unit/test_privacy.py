"""Personal-data detection (precision and recall on labelled zh/en cases) and the privacy routing decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baimo.config import BaimoConfig, PrivacyConfig
from baimo.errors import ConfigError
from baimo.metering.keys import KeyStore
from baimo.privacy import (
    PrivacyGuard,
    PrivateRequest,
    PrivateRequestRefused,
    RemoteCallBlocked,
    find_personal_data,
    keep_private,
    mark_private,
    refuse_if_private,
    request_text,
    score_cases,
)
from baimo.routing.strategies import CascadeSpec, RoutePlan
from baimo.store.database import Database

CASES = [json.loads(line) for line in (Path(__file__).parents[1] / "fixtures" / "pii_cases.jsonl").open()]

FLEET = BaimoConfig.model_validate({"models": [
    {"id": "local/qwen", "kind": "llamacpp", "catalogue": "qwen2.5-coder-0.5b-instruct-q4_k_m"},
    {"id": "remote/gpt", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"},
    {"id": "remote/judge", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"},
    {"id": "lan/vllm", "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "on_premises": True},
]})
MODELS = {m.id: m for m in FLEET.models}


def test_labelled_cases_precision_and_recall():
    """Request level (is there any personal data?) is what routing needs; per kind is reported by bench/privacy.py.
    Both sets hold positives in Chinese and English and hard negatives (order numbers, dates, prices, 'Apple')."""
    assert len(CASES) >= 60 and {c["lang"] for c in CASES} == {"zh", "en"}
    assert sum(1 for c in CASES if not c["kinds"]) >= 25
    report = score_cases(CASES, lambda text: find_personal_data(text, min_score=PrivacyConfig().min_score))
    request = report["any"]
    assert request["precision"] >= 0.95 and request["recall"] >= 0.95, report
    for kind in ("PERSON", "PHONE_NUMBER", "EMAIL_ADDRESS", "CN_RESIDENT_ID", "ADDRESS"):
        assert report[kind]["recall"] >= 0.85 and report[kind]["precision"] >= 0.85, (kind, report[kind])


def test_findings_have_spans_and_kinds():
    text = "联系人：陈静，电话13812345678，邮箱chenjing@example.com"
    found = {(f.kind, text[f.start:f.end]) for f in find_personal_data(text)}
    assert ("PHONE_NUMBER", "13812345678") in found
    assert ("EMAIL_ADDRESS", "chenjing@example.com") in found  # not '邮箱chenjing@...': CJK is not part of it
    assert any(kind == "PERSON" and "陈静" in span for kind, span in found)


def test_resident_id_needs_a_valid_check_digit():
    assert [f.kind for f in find_personal_data("身份证号110105198803151232")] == ["CN_RESIDENT_ID"]
    assert find_personal_data("身份证号110105198803151233") == []  # same number, wrong ISO 7064 check digit


def test_kinds_and_min_score_filter():
    text = "Call John Smith at (415) 555-2671."
    assert {f.kind for f in find_personal_data(text)} == {"PERSON", "PHONE_NUMBER"}
    assert {f.kind for f in find_personal_data(text, kinds=["PERSON"])} == {"PERSON"}
    assert {f.kind for f in find_personal_data(text, min_score=0.5)} == {"PERSON"}  # phones score 0.4


def test_request_text_reads_parts_and_tool_arguments():
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"function": {"name": "lookup", "arguments": '{"phone": "13812345678"}'}}]}]
    assert request_text(messages) == 'hi\n{"phone": "13812345678"}'
    assert find_personal_data(request_text(messages))[0].kind == "PHONE_NUMBER"


def guard(**config) -> PrivacyGuard:
    return PrivacyGuard(PrivacyConfig(**config), MODELS, key_confidential=lambda k: k == "k-secret",
                        persona_confidential=lambda p: p == "hr")


def test_inspect_names_kinds_or_the_confidential_caller():
    g = guard()
    assert g.inspect([{"role": "user", "content": "What is TCP?"}]) is None
    assert g.inspect([{"role": "user", "content": "我叫王小明，电话13812345678"}]) == \
        PrivateRequest("person name, phone number")
    assert g.inspect([{"role": "user", "content": "What is TCP?"}], api_key_id="k-secret") == \
        PrivateRequest("the API key is confidential", confidential=True)
    assert g.inspect([{"role": "user", "content": "What is TCP?"}], persona="hr").confidential
    assert guard(entities=["EMAIL_ADDRESS"]).inspect([{"role": "user", "content": "电话13812345678"}]) is None
    assert guard(mode="off").inspect([{"role": "user", "content": "电话13812345678"}], api_key_id="k-secret") is None


def test_unknown_entity_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown kinds PHONE"):
        guard(entities=["PHONE"])


def test_on_premises_defaults_by_kind():
    assert MODELS["local/qwen"].is_on_premises and MODELS["lan/vllm"].is_on_premises
    assert not MODELS["remote/gpt"].is_on_premises


def test_keep_private_filters_plan_and_says_so():
    private = PrivateRequest("phone number")
    plan = RoutePlan(["remote/gpt", "local/qwen"], "auto: p=0.9 -> remote/gpt", probabilities={"remote/gpt": 0.9,
                                                                                                "local/qwen": 0.6})
    kept = keep_private(plan, private, MODELS)
    assert kept.models == ["local/qwen"] and kept.probabilities == {"local/qwen": 0.6}
    assert kept.reason == "private: phone number -> local only | auto: p=0.9 -> remote/gpt | " \
                          "skipped remote remote/gpt -> local/qwen"
    # a rules plan with one remote model: the router's on-premises candidates take its place
    only_remote = RoutePlan(["remote/gpt"], "rules:hard -> remote/gpt")
    assert keep_private(only_remote, private, MODELS, ["remote/gpt", "lan/vllm"]).models == ["lan/vllm"]
    with pytest.raises(PrivateRequestRefused, match="none of the models this router may use runs on premises"):
        keep_private(only_remote, private, MODELS, ["remote/gpt", "remote/judge"])


def test_keep_private_drops_a_remote_verifier():
    plan = RoutePlan(["local/qwen", "remote/gpt"], "cascade", CascadeSpec(0.8, "verifier", "remote/judge"))
    kept = keep_private(plan, PrivateRequest("person name"), MODELS)
    assert kept.models == ["local/qwen"]
    assert kept.cascade == CascadeSpec(0.8, "logprob", None)
    assert kept.reason.endswith("verifier remote/judge is remote: judged by logprob")


def test_direct_requests_and_fallbacks():
    g, pii, secret = guard(), PrivateRequest("phone number"), PrivateRequest("the API key is confidential", True)
    g.check_direct("local/qwen", secret)  # a local model: always fine
    g.check_direct("remote/gpt", None)
    with pytest.raises(PrivateRequestRefused, match="remote/gpt does not run on premises"):
        g.check_direct("remote/gpt", secret)
    with pytest.raises(PrivateRequestRefused):
        guard(enforce_direct=True).check_direct("remote/gpt", pii)
    assert g.fallbacks(["local/qwen", "remote/gpt", "lan/vllm"], ["local/qwen"], pii) == ["local/qwen", "lan/vllm"]
    assert g.fallbacks(["remote/gpt", "remote/judge"], ["remote/gpt"], pii) == ["remote/gpt"]
    assert g.fallbacks(["local/qwen", "remote/gpt"], ["local/qwen"], None) == ["local/qwen", "remote/gpt"]
    assert g.direct_reason("remote/gpt", pii) == "private: phone number (remote, as requested) | direct -> remote/gpt"


def test_remote_backends_refuse_a_marked_request():
    mark_private(PrivateRequest("person name"))
    try:
        refuse_if_private(MODELS["local/qwen"])
        refuse_if_private(MODELS["lan/vllm"])
        with pytest.raises(RemoteCallBlocked):
            refuse_if_private(MODELS["remote/gpt"])
        guard().check_direct("remote/gpt", PrivateRequest("person name"))  # the caller named it: allowed
        refuse_if_private(MODELS["remote/gpt"])
        with pytest.raises(RemoteCallBlocked):
            refuse_if_private(MODELS["remote/judge"])
    finally:
        mark_private(None)
    refuse_if_private(MODELS["remote/gpt"])


def test_confidential_keys_are_stored(tmp_path):
    keys = KeyStore(Database(f"sqlite:///{tmp_path / 'baimo.db'}"))
    plain, _ = keys.create("plain")
    secret, token = keys.create("secret", confidential=True)
    assert secret["confidential"] and not plain["confidential"]
    assert keys.is_confidential(secret["id"]) and not keys.is_confidential(plain["id"])
    assert keys.verify(f"Bearer {token}") == secret["id"]
    assert [k["confidential"] for k in keys.list()] == [False, True]
