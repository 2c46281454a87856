"""Tool calling for local models whose chat template has no tool support (SmolLM2's, for one).

llama.cpp renders tools through the model's own template and, when the template cannot express them,
ignores `tools` altogether. For such a model Baimo describes the tools in the system message and holds
the answer to a JSON schema by grammar: either `{"tool_calls": [{"name", "arguments"}]}` or, when the
model may answer in words (`tool_choice: auto`), `{"content": "..."}`. The answer is then turned back into
OpenAI `tool_calls`. Earlier tool calls and tool results in the history become plain text the template
can render. This is the "generic" tool format llama.cpp itself once used for templates without tools.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from baimo.backends.base import message_text
from baimo.backends.json_schema import check_enforceable
from baimo.errors import InvalidRequest

INSTRUCTIONS = ("You can call these tools. To call tools, answer with JSON "
                "{\"tool_calls\": [{\"name\": TOOL, \"arguments\": {...}}]}.")
ANSWER_NOTE = " To answer the user directly instead, answer with JSON {\"content\": \"your answer\"}."


def _arguments_schema(tool: dict[str, Any]) -> dict[str, Any]:
    params = (tool.get("function") or {}).get("parameters") or {"type": "object"}
    try:
        check_enforceable(params)
    except InvalidRequest:
        return {"type": "object"}  # the grammar still makes it a JSON object; the model sees the full schema
    return params


def named_tools(tools: list[dict[str, Any]], tool_choice: dict[str, Any]) -> list[dict[str, Any]]:
    """The tools a named `tool_choice` ({"type": "function", "function": {"name"}}) allows.

    Raises InvalidRequest (param tool_choice) when the name is not among the tools."""
    name = (tool_choice.get("function") or {}).get("name")
    named = [t for t in tools if (t.get("function") or {}).get("name") == name]
    if not named:
        raise InvalidRequest(f"tool_choice names {name!r}, which is not among `tools`", param="tool_choice")
    return named


def answer_schema(tools: list[dict[str, Any]], tool_choice: Any, parallel: bool | None = None) -> dict[str, Any]:
    """The JSON schema the answer must follow for this `tool_choice` (auto, required, or a named function); with
    `parallel` false, at most one call (else up to 4).

    Raises InvalidRequest when a named function is not among the tools."""
    if isinstance(tool_choice, dict):
        tools = named_tools(tools, tool_choice)
    calls = [{"type": "object", "properties": {"name": {"const": t["function"]["name"]},
                                               "arguments": _arguments_schema(t)},
              "required": ["name", "arguments"], "additionalProperties": False} for t in tools]
    call_schema = calls[0] if len(calls) == 1 else {"anyOf": calls}
    most = 1 if parallel is False else 4
    with_calls = {"type": "object", "properties": {"tool_calls": {"type": "array", "items": call_schema,
                                                                  "minItems": 1, "maxItems": most}},
                  "required": ["tool_calls"], "additionalProperties": False}
    if tool_choice == "auto" or tool_choice is None:
        words = {"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"],
                 "additionalProperties": False}
        return {"anyOf": [with_calls, words]}
    return with_calls


def history_as_text(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls and tool results as text a template without tools can render."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.get("role") == "assistant" and m.get("tool_calls"):
            calls = [{"name": (c.get("function") or {}).get("name"),
                      "arguments": _loads((c.get("function") or {}).get("arguments"))} for c in m["tool_calls"]]
            out.append({"role": "assistant", "content": json.dumps({"tool_calls": calls}, ensure_ascii=False)})
        elif m.get("role") == "tool":
            out.append({"role": "user", "content": f"Tool result ({m.get('name') or m.get('tool_call_id')}): "
                                                   f"{message_text(m)}"})
        else:
            out.append(m)
    return out


def _loads(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def emulate(body: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a chat request with tools for a model whose template cannot express them."""
    tools = body.pop("tools")
    choice = body.pop("tool_choice", None)
    parallel = body.pop("parallel_tool_calls", None)
    listing = "\n".join(json.dumps({"name": t["function"]["name"],
                                    "description": t["function"].get("description", ""),
                                    "parameters": t["function"].get("parameters", {})}, ensure_ascii=False)
                        for t in tools)
    note = INSTRUCTIONS + ("" if choice == "required" or isinstance(choice, dict) else ANSWER_NOTE)
    messages = history_as_text(body["messages"])
    system = f"{note}\nTools:\n{listing}"
    if messages and messages[0]["role"] == "system":
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{system}"}
    else:
        messages.insert(0, {"role": "system", "content": system})
    body["messages"] = messages
    body["response_format"] = {"type": "json_schema",
                               "json_schema": {"name": "tool_answer", "schema": answer_schema(tools, choice, parallel)}}
    return body


def parse_answer(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, tool_calls) from an emulated answer; text that is not the expected JSON is returned as content."""
    try:
        data = json.loads(text)
    except ValueError:
        return text, []
    if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
        calls = [{"index": i, "id": "call_" + uuid.uuid4().hex[:24], "type": "function",
                  "function": {"name": c.get("name", ""), "arguments": json.dumps(c.get("arguments", {}),
                                                                                 ensure_ascii=False)}}
                 for i, c in enumerate(data["tool_calls"]) if isinstance(c, dict)]
        return None, calls
    if isinstance(data, dict) and isinstance(data.get("content"), str):
        return data["content"], []
    return text, []
