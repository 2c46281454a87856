"""How requests are shaped for local models: enforceable schemas, emulated tool calls, messages for templates."""

from __future__ import annotations

import json

import jsonschema
import pytest

from baimo.backends import tool_emulation
from baimo.backends.json_schema import check_enforceable, response_schema
from baimo.backends.llamacpp import legacy_logprobs, local_messages
from baimo.backends.openai_compat import add_usage, finite_logprobs
from baimo.errors import InvalidRequest

TOOLS = [{"type": "function", "function": {"name": "sqrt", "parameters": {
    "type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}}},
         {"type": "function", "function": {"name": "weather", "parameters": {
             "type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_enforceable_schemas_pass_and_others_name_the_keyword() -> None:
    check_enforceable({"type": "object", "title": "T", "properties": {"a": {"type": "string", "pattern": "^a",
                                                                             "format": "date"}},
                       "$defs": {"B": {"type": "integer", "minimum": 1}}, "required": ["a"]})
    with pytest.raises(InvalidRequest) as e:
        check_enforceable({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}})
    assert e.value.param == "response_format"
    assert "uniqueItems" in e.value.message and "#/properties/tags" in e.value.message
    with pytest.raises(InvalidRequest, match="format: email"):
        check_enforceable({"type": "string", "format": "email"})
    with pytest.raises(InvalidRequest, match="remote"):
        check_enforceable({"$ref": "https://example.com/s.json"})


def test_response_format_shapes() -> None:
    assert response_schema(None) is None and response_schema({"type": "json_object"}) is None
    assert response_schema({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}) == \
        {"type": "object"}
    for bad in ({"type": "xml"}, {"type": "json_schema"}, "json"):
        with pytest.raises(InvalidRequest):
            response_schema(bad)


@pytest.mark.parametrize("choice,parallel,answer,ok", [
    ("required", None, {"tool_calls": [{"name": "sqrt", "arguments": {"x": 4}}]}, True),
    ("required", None, {"content": "hi"}, False),
    ("auto", None, {"content": "hi"}, True),
    ({"type": "function", "function": {"name": "weather"}}, None,
     {"tool_calls": [{"name": "sqrt", "arguments": {"x": 4}}]}, False),
    ("required", False, {"tool_calls": [{"name": "sqrt", "arguments": {"x": 1}},
                                        {"name": "sqrt", "arguments": {"x": 2}}]}, False),
])
def test_the_emulated_answer_schema(choice, parallel, answer, ok) -> None:
    schema = tool_emulation.answer_schema(TOOLS, choice, parallel)
    if ok:
        jsonschema.validate(answer, schema)
    else:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(answer, schema)


def test_emulated_answers_become_tool_calls_or_text() -> None:
    content, calls = tool_emulation.parse_answer('{"tool_calls": [{"name": "sqrt", "arguments": {"x": 101}}]}')
    assert content is None and calls[0]["function"]["name"] == "sqrt" and calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["function"]["arguments"]) == {"x": 101} and calls[0]["index"] == 0
    assert tool_emulation.parse_answer('{"content": "Hello"}') == ("Hello", [])
    assert tool_emulation.parse_answer('{"tool_calls": [{"na') == ('{"tool_calls": [{"na', [])  # cut by length


def test_emulation_rewrites_the_request_and_history() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "sqrt", "arguments": "{\"x\": 101}"}}
    body = {"messages": [{"role": "user", "content": "root of 101?"},
                         {"role": "assistant", "content": "", "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": "c1", "content": "10.05"}],
            "tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": True}
    out = tool_emulation.emulate(body)
    assert "tools" not in out and "tool_choice" not in out and out["response_format"]["type"] == "json_schema"
    roles = [m["role"] for m in out["messages"]]
    assert roles == ["system", "user", "assistant", "user"] and "sqrt" in out["messages"][0]["content"]
    assert json.loads(out["messages"][2]["content"])["tool_calls"][0]["arguments"] == {"x": 101}
    assert "10.05" in out["messages"][3]["content"]


def test_local_messages_for_chat_templates() -> None:
    parts = [{"type": "text", "text": "Be "}, {"type": "text", "text": "terse."}]
    out = local_messages([{"role": "system", "content": "Persona."},
                          {"role": "developer", "content": parts},
                          {"role": "user", "content": [{"type": "text", "text": "Say"},
                                                       {"type": "text", "text": " hi"}]},
                          {"role": "assistant", "tool_calls": [{"id": "c"}]}])
    assert out[0] == {"role": "system", "content": "Persona.\n\nBe terse."}
    assert out[1] == {"role": "user", "content": "Say hi"} and out[2]["content"] == ""


def test_logprobs_are_finite_and_usage_adds_up() -> None:
    tokens = finite_logprobs([{"token": "a", "logprob": float("-inf"), "top_logprobs": [
        {"token": "b", "logprob": -3.4e38}, {"token": "c", "logprob": float("nan")}]}])
    assert tokens[0]["logprob"] == -9999.0 and [t["logprob"] for t in tokens[0]["top_logprobs"]] == [-9999.0] * 2
    total = add_usage(add_usage(None, {"prompt_tokens": 5, "completion_tokens": 3}),
                      {"prompt_tokens": 5, "completion_tokens": 4})
    assert total == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    legacy = legacy_logprobs([{"token": "Pa", "logprob": -0.1, "top_logprobs": [{"token": "Pa", "logprob": -0.1}]},
                              {"token": "ris", "logprob": -0.2, "top_logprobs": []}], {0: 10}, 0)
    assert legacy == {"tokens": ["Pa", "ris"], "token_logprobs": [-0.1, -0.2], "top_logprobs": [{"Pa": -0.1}, {}],
                      "text_offset": [10, 12]}
