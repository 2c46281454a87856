"""File names in HTTP headers, both ways: reading uploaded files' names, writing Content-Disposition.

Reading: Starlette's multipart parser (python-multipart) only reads the plain `filename="..."` parameter and ignores
the RFC 5987/2231 form `filename*=UTF-8''%E6%8A%A5%E5%91%8A.md`, because RFC 7578 tells senders not to use it.
Some clients still do (urllib3 1.x, and so `requests`, for every non-ASCII name), and then the file arrived as a
plain text field without a name. `read_uploads` parses with a subclass that turns `filename*` into the plain
parameter first (preferred over a plain `filename` next to it, as RFC 6266 says); the standard library's `email`
package decodes it.

Writing: `content_disposition` gives the RFC 6266 form, an ASCII `filename` for old clients and the exact name
in `filename*`, so any name (Chinese, emoji) goes into a header without a latin-1 error.
"""

from __future__ import annotations

import unicodedata
from email.message import Message
from email.utils import collapse_rfc2231_value
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from baimo.errors import InvalidRequest

# RFC 5987 attr-char: what may stay unescaped in an ext-value.
_ATTR_CHARS = "!#$&+-.^_`|~"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plain_filename(disposition: bytes, charset: str = "utf-8") -> bytes:
    """A multipart part's Content-Disposition with an RFC 5987 `filename*` rewritten as the plain `filename`
    parameter that python-multipart reads (the name in `charset`, as Starlette decodes it); other values as they
    are. Backslashes in such a name become '/' (upload names are sanitised as paths afterwards anyway)."""
    if b"filename*" not in disposition.lower():
        return disposition
    msg = Message()
    msg["content-disposition"] = disposition.decode("latin-1")  # the bytes as received, one char per byte
    params = msg.get_params(header="content-disposition") or []
    extended = [v for k, v in params[1:] if k.lower() == "filename" and isinstance(v, tuple)]
    if not extended:
        return disposition
    filename = collapse_rfc2231_value(extended[0]).replace("\\", "/")
    filename = "".join(c for c in filename if unicodedata.category(c) != "Cc")
    out = params[0][0].encode("latin-1")
    for key, value in params[1:]:
        if key.lower() == "filename":
            continue
        text = collapse_rfc2231_value(value).encode(charset, "replace") if isinstance(value, tuple) \
            else value.encode("latin-1")
        out += b"; " + key.encode("latin-1") + b"=" + _quoted(text.decode("latin-1")).encode("latin-1")
    return out + b"; filename=" + _quoted(filename).encode(charset, "replace")


class _UploadParser(MultiPartParser):
    """Starlette's multipart parser (its limits, temporary files and errors), also reading `filename*`."""

    def on_header_end(self) -> None:
        if self._current_partial_header_name.lower() == b"content-disposition":
            self._current_partial_header_value = plain_filename(self._current_partial_header_value,
                                                                self._charset or "utf-8")
        super().on_header_end()


async def read_uploads(request: Request, fields: tuple[str, ...] = ("files", "file")) -> list[tuple[str, bytes]]:
    """The (client's file name, bytes) of each file part of a multipart/form-data request under `fields`."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise InvalidRequest(f"send the files as multipart/form-data (one `{fields[0]}` part per file), not "
                             f"{ctype.split(';')[0] or 'an empty content type'}", param=fields[0])
    try:
        form = await _UploadParser(request.headers, request.stream()).parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"bad multipart/form-data body: {exc.message}", param=fields[0]) from exc
    try:
        files: list[tuple[str, bytes]] = []
        for key, value in form.multi_items():
            if key not in fields:
                continue
            if not isinstance(value, UploadFile):
                raise InvalidRequest(f"the `{key}` part is not a file (its Content-Disposition has no filename)",
                                     param=key)
            files.append((value.filename or "", await value.read()))
        return files
    finally:
        await form.close()


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """An RFC 6266 Content-Disposition value: `filename` is an ASCII stand-in for old clients (accents dropped,
    other characters as '_'), `filename*` the exact name, UTF-8 and percent-encoded (RFC 5987)."""
    letters = (c for c in unicodedata.normalize("NFKD", filename) if unicodedata.category(c) != "Mn")
    ascii_name = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in letters).strip() or "download"
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe=_ATTR_CHARS)}"
