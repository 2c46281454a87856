"""Which JSON Schemas a local model can be held to: llama.cpp turns a schema into a grammar, and a keyword its
converter does not know is ignored there, so the output would be silently less constrained than asked.
Baimo refuses such a schema with a 400 naming the keyword instead.

The supported keywords are those read by llama.cpp's schema parser (common/json-schema.cpp and
common/json-schema-to-grammar.cpp in the vendored source); annotations that never constrain output
(title, description, ...) are accepted.
"""

from __future__ import annotations

from typing import Any

from baimo.errors import InvalidRequest

ENFORCED = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "pattern", "minLength", "maxLength", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "format",
}
CONTAINERS = {"$defs", "definitions"}
ANNOTATIONS = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly", "strict", "name",
}
FORMATS = {"date", "time", "date-time", "uuid"}
SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def _fail(path: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"response_format: the JSON schema uses {what} at {path}, which local models cannot "
                          "enforce; remove it, or send the request to a remote model that supports it",
                          param="response_format", code="unsupported_schema")


def check_enforceable(schema: Any, path: str = "#") -> None:
    """Raise InvalidRequest (400, param response_format) if `schema` needs a keyword llama.cpp does not enforce.

    `schema` is a JSON Schema (a dict, or a boolean); `path` is where it sits, for the message."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise InvalidRequest(f"response_format: a JSON schema must be an object (at {path})",
                             param="response_format")
    for key, value in schema.items():
        if key in ANNOTATIONS:
            continue
        if key in CONTAINERS:
            for name, sub in (value or {}).items():
                check_enforceable(sub, f"{path}/{key}/{name}")
            continue
        if key not in ENFORCED:
            raise _fail(path, f"`{key}`")
        if key == "format" and value not in FORMATS:
            raise _fail(path, f"`format: {value}` (enforced formats: {', '.join(sorted(FORMATS))})")
        if key == "$ref" and not (isinstance(value, str) and value.startswith("#")):
            raise _fail(path, f"a remote `$ref` ({value})")
        if key == "properties" and isinstance(value, dict):
            for name, sub in value.items():
                check_enforceable(sub, f"{path}/properties/{name}")
        elif key in ("items", "additionalProperties") and isinstance(value, dict | bool):
            check_enforceable(value, f"{path}/{key}")
        elif key in SUBSCHEMA_LISTS and isinstance(value, list):
            for i, sub in enumerate(value):
                check_enforceable(sub, f"{path}/{key}/{i}")


def response_schema(response_format: Any) -> dict[str, Any] | bool | None:
    """The schema a `response_format` asks for (json_schema), or None for text/json_object.

    Raises InvalidRequest for a malformed response_format."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise InvalidRequest("response_format must be an object such as {\"type\": \"json_object\"}",
                             param="response_format")
    kind = response_format.get("type")
    if kind in ("text", "json_object"):
        return None
    if kind != "json_schema":
        raise InvalidRequest(f"response_format.type must be text, json_object or json_schema, not {kind!r}",
                             param="response_format")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name", ""), str):
        raise InvalidRequest("response_format.json_schema must be an object with a `name` and a `schema`",
                             param="response_format")
    schema = spec.get("schema", {})
    if not isinstance(schema, dict | bool):
        raise InvalidRequest("response_format.json_schema.schema must be a JSON Schema object",
                             param="response_format")
    return schema
