"""The id of the request being served, in a context variable, so every log line and span of a request carries it.

Which id a request gets:
1. the client's `x-request-id` header when it is a sane token (`SANE`: 1-128 of `A-Z a-z 0-9 . _ : -`);
2. else, for a completion, its response id (`chatcmpl-...`, `cmpl-...`): the first `claim_response_id()` of the
   request adopts it, so `x-request-id` equals the `id` of the body, as clients and Baimo's tests expect;
3. else `req_` + 24 hex digits, made the first time something asks for it.
The holder is a mutable object in the context variable, so a value adopted deep inside a route is seen by the
middleware and by tasks started from the request (streaming bodies run in their own task with a copied context).
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass
class RequestInfo:
    """One HTTP request's identity: `id` (None until asked for or adopted) and whether the client chose it."""

    id: str | None = None
    from_client: bool = False

    def get(self) -> str:
        if self.id is None:
            self.id = "req_" + uuid.uuid4().hex[:24]
        return self.id


_current: ContextVar[RequestInfo | None] = ContextVar("baimo_request", default=None)


def begin(incoming: str | None) -> RequestInfo:
    """Start a request's context: the client's id when sane (see module docstring), else one decided later."""
    info = RequestInfo(incoming, True) if incoming and SANE.match(incoming) else RequestInfo()
    _current.set(info)
    return info


def current() -> RequestInfo | None:
    """The request being served in this context, or None outside a request."""
    return _current.get()


def current_request_id() -> str | None:
    """The id of the request being served (made now if none yet), or None outside a request."""
    info = _current.get()
    return info.get() if info is not None else None


def claim_response_id(prefix: str) -> str:
    """A new response id `prefix + 24 hex digits`; the request adopts it as its id when it has none yet."""
    response_id = prefix + uuid.uuid4().hex[:24]
    info = _current.get()
    if info is not None and info.id is None:
        info.id = response_id
    return response_id
