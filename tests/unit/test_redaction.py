"""Secrets never reach a log line: the redaction patterns, and the logging set-up of `baimo serve` end to end
(a real logging handler writing to a stream, JSON and text)."""

from __future__ import annotations

import hashlib
import io
import json
import logging

import pytest

from baimo.observability import request_id
from baimo.observability.logs import setup_logging
from baimo.observability.redact import REDACTED, redact, redact_value

KEY = "bm-" + "Zx9_q-Lm2PaaBbCcDdEeFfGgHhIiJjKkLl"  # the shape of secrets.token_urlsafe(32) after the prefix
UPSTREAM = "sk-proj-4fT8uV0wQ2eR7yU1iO3pA5sD"


@pytest.mark.parametrize(("text", "secret"), [
    (f"Authorization: Bearer {KEY}", KEY),
    (f"authorization=bearer {UPSTREAM}", UPSTREAM),
    (f"retrying with key {KEY}.", KEY),
    (f"upstream said: Incorrect API key provided: {UPSTREAM}", UPSTREAM),
    ('{"api_key": "plain-secret-value", "model": "m"}', "plain-secret-value"),
    ("api-key: plain-secret-value", "plain-secret-value"),
    ("x-api-key=plain-secret-value&x=1", "plain-secret-value"),
    (f"stored hash {hashlib.sha256(KEY.encode()).hexdigest()}", hashlib.sha256(KEY.encode()).hexdigest()),
    ("Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
])
def test_secrets_are_replaced(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert REDACTED in out


@pytest.mark.parametrize("text", [
    "POST /v1/chat/completions 200 812.4ms",
    "prompt_tokens=12 completion_tokens=7 max_tokens=100",
    "model remote/gpt-4o-mini -> local/qwen; fallback: bm-x failed",
    "a bearer of good news",
    "sk-short",
    "chatcmpl-3f2a9c0e8b7d6a5f4e3d2c1b",
])
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact(text) == text


def test_nested_values_are_redacted_and_keys_kept() -> None:
    value = {"headers": [("authorization", f"Bearer {KEY}")], "n": 3, "note": f"key {KEY}"}
    out = redact_value(value)
    assert out["n"] == 3 and set(out) == {"headers", "n", "note"}
    assert KEY not in json.dumps(out)


@pytest.fixture
def stream():
    buffer = io.StringIO()
    yield buffer
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.name == "baimo-observability"]:
        root.removeHandler(handler)


def test_json_log_lines_carry_the_request_id_and_no_secret(stream: io.StringIO) -> None:
    setup_logging("json", "info", stream=stream)
    log = logging.getLogger("baimo.test")
    request_id.begin("client-id-42")
    log.info("calling upstream with Authorization: Bearer %s", UPSTREAM, extra={"model": "remote/x",
                                                                               "header": f"Bearer {KEY}"})
    try:
        raise RuntimeError(f"upstream rejected {UPSTREAM}")
    except RuntimeError:
        log.exception("upstream failed for key %s", KEY)
    request_id.begin(None)
    log.warning("no id yet")
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    assert [line["request_id"] for line in lines] == ["client-id-42", "client-id-42", lines[2]["request_id"]]
    assert lines[2]["request_id"].startswith("req_")
    assert lines[0]["logger"] == "baimo.test" and lines[0]["level"] == "INFO" and lines[0]["model"] == "remote/x"
    assert "exc_info" in lines[1] and "RuntimeError" in lines[1]["exc_info"]
    for secret in (KEY, UPSTREAM):
        assert secret not in stream.getvalue()


def test_text_format_and_insane_client_ids(stream: io.StringIO) -> None:
    setup_logging("text", "warning", stream=stream)
    log = logging.getLogger("baimo.test")
    request_id.begin("bad id with spaces\r\nx-injected: 1")
    log.info("below the level")
    log.warning("key %s", KEY)
    line = stream.getvalue().strip()
    assert "below the level" not in line and "injected" not in line and KEY not in line
    assert " WARNING baimo.test [req_" in line and line.endswith("key bm-" + REDACTED)


def test_a_completion_id_becomes_the_request_id_unless_the_client_chose_one() -> None:
    request_id.begin(None)
    first = request_id.claim_response_id("chatcmpl-")
    second = request_id.claim_response_id("chatcmpl-")  # a summary or cascade step inside the same request
    assert request_id.current_request_id() == first != second
    request_id.begin("mine")
    assert request_id.claim_response_id("cmpl-").startswith("cmpl-")
    assert request_id.current_request_id() == "mine"
    # on a completion endpoint, a line logged before the completion starts already has the completion's id
    request_id.begin(None, "chatcmpl-")
    early = request_id.current_request_id()
    assert request_id.claim_response_id("chatcmpl-") == early and early.startswith("chatcmpl-")
    request_id.begin(None)  # elsewhere (a conversation's messages) an id made early stays the request's
    early = request_id.current_request_id()
    assert request_id.claim_response_id("chatcmpl-") != early and request_id.current_request_id() == early
