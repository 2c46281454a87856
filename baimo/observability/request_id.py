"""The id of the request being served, in a context variable, so every log line and span of a request carries it.

Which id a request gets:
1. the client's `x-request-id` header when it is a sane token (`SANE`: 1-128 of `A-Z a-z 0-9 . _ : -`);
2. else, for a completion, its response id (`chatcmpl-...`, `cmpl-...`): the first `claim_response_id()` of the
   request adopts it, so `x-request-id` equals the `id` of the body, as clients and Baimo's tests expect. On the
   completion endpoints the id is made with the response's prefix, so a line logged before the completion starts
   already carries the id the completion then takes;
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
    """One HTTP request's identity: `id` (None until asked for or adopted), whether the client chose it, the
    prefix of an id made here, and whether a response has taken the id as its own (`claimed`)."""

    id: str | None = None
    from_client: bool = False
    prefix: str = "req_"
    claimed: bool = False

    def get(self) -> str:
        if self.id is None:
            self.id = _new(self.prefix)
        return self.id


def _new(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


_current: ContextVar[RequestInfo | None] = ContextVar("baimo_request", default=None)


def begin(incoming: str | None, prefix: str = "req_") -> RequestInfo:
    """Start a request's context: the client's id when sane (see module docstring), else one decided later
    (made with `prefix`: a completion endpoint's response prefix, else `req_`)."""
    info = RequestInfo(incoming, True) if incoming and SANE.match(incoming) else RequestInfo(prefix=prefix)
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
    """A response id, `prefix` + 24 hex digits. The first response of a request whose client gave no id takes
    the request's id (made now if none yet) when it has this prefix; any other response gets a new id."""
    info = _current.get()
    if info is not None and not info.from_client and not info.claimed:
        if info.id is None:
            info.id = _new(prefix)
        if info.id.startswith(prefix):
            info.claimed = True
            return info.id
    return _new(prefix)
