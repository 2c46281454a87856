"""Logging set-up for `baimo serve`: JSON lines (python-json-logger) or plain text, a request id on every line,
and secrets redacted from every line.

A JSON line looks like::

    {"time": "2026-12-01T02:40:00.123Z", "level": "INFO", "logger": "baimo.access",
     "message": "POST /v1/chat/completions 200 812.4ms", "request_id": "chatcmpl-3f...", "method": "POST",
     "path": "/v1/chat/completions", "status": 200, "latency_ms": 812.4, "model": "remote/gpt"}

`request_id` comes from the request's context (baimo/observability/request_id.py); lines logged outside a
request have none. Redaction (baimo/observability/redact.py) runs twice: a filter on the handler rewrites the
message and its arguments, and the formatter redacts the finished line (tracebacks and extra fields included).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

from baimo.observability.redact import redact, redact_value
from baimo.observability.request_id import current_request_id

LogFormat = Literal["json", "text"]
HANDLER_NAME = "baimo-observability"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# uvicorn's own loggers: their lines go through the same handler (uvicorn's access log is replaced by ours)
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi")


class RequestIdFilter(logging.Filter):
    """Adds `record.request_id`: the current request's id, or the one already set (`extra=`), or '-'; drops
    uvicorn's `color_message` (the same message with terminal colour codes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        record.__dict__.pop("color_message", None)
        return True


class RedactFilter(logging.Filter):
    """Replaces the message (with its %-arguments merged) and string `extra` values by redacted text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed %-format: keep the raw message
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str | dict | list | tuple):
                record.__dict__[key] = redact_value(value)
        return True


_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class _Redacting(logging.Formatter):
    """Redacts the finished line; times are UTC ISO 8601 with milliseconds (2026-12-01T02:40:00.123Z)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RedactingJsonFormatter(_Redacting, JsonFormatter):
    pass


class RedactingTextFormatter(_Redacting):
    pass


def make_formatter(fmt: LogFormat) -> logging.Formatter:
    if fmt == "json":
        return RedactingJsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                                      rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                                      json_ensure_ascii=False)
    return RedactingTextFormatter(TEXT_FORMAT)


def default_format(stream: Any = None) -> LogFormat:
    """json unless the stream (stderr) is a terminal, where people read text."""
    stream = stream if stream is not None else sys.stderr
    return "text" if getattr(stream, "isatty", lambda: False)() else "json"


def setup_logging(fmt: LogFormat | None, level: str = "info", stream: Any = None) -> None:
    """Send the root logger's and uvicorn's lines to `stream` (stderr) in `fmt`, at `level` (a logging level name,
    case-insensitive) for Baimo's and uvicorn's loggers, warnings and above for other libraries. Idempotent: a
    second call replaces the handler it installed."""
    fmt = fmt or default_format(stream)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.name = HANDLER_NAME
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactFilter())
    handler.setFormatter(make_formatter(fmt))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    numeric = numeric if isinstance(numeric, int) else logging.INFO
    root.setLevel(max(numeric, logging.WARNING))  # other libraries' info lines (httpx, alembic...) stay off
    logging.getLogger("baimo").setLevel(numeric)
    for name in UVICORN_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
        lg.setLevel(numeric)
