"""E-mail messages (EML, RFC 5322 / MIME, via the standard library's `email` package).

The message is one section, "message": its From, To, Cc, Subject and Date headers, then the text body (the
text/plain part, else the text/html part read as HTML). Attachments of a supported type are parsed by their own
parsers (`parse_bytes`, so a PDF attachment gets its pages, a scanned one OCR) and located
"attachment report.pdf page 2"; other attachments, inline images (logos, signatures) and attachments that cannot
be parsed are left out, the last with a warning in the log.
"""

from __future__ import annotations

import logging
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import PurePath

from baimo.knowledge.parsing import Section, _html_sections, _paragraphs

log = logging.getLogger(__name__)

HEADERS = ("From", "To", "Cc", "Subject", "Date")
MAX_DEPTH = 5  # messages forwarded as attachments inside messages: deeper ones are not opened


def _part_text(part: EmailMessage) -> str:
    """A text part decoded by its declared charset; an unknown or wrong charset falls back to UTF-8 with
    replacement characters, never an error."""
    try:
        content = part.get_content()
    except (LookupError, UnicodeDecodeError):
        content = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    return content if isinstance(content, str) else ""


def _body(msg: EmailMessage) -> list[str]:
    """The paragraphs of the message's body: text/plain preferred, else HTML turned into text."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return []
    text = _part_text(part)  # type: ignore[arg-type]
    if part.get_content_subtype() == "html":
        return [s.text for s in _html_sections(text)[1]]
    return _paragraphs(text.replace("\r\n", "\n"))


def _attachments(msg: EmailMessage, depth: int) -> list[Section]:
    """Sections of the attachments parse_bytes supports, located 'attachment NAME[ place]'."""
    from baimo.knowledge.parsing import SUPPORTED_SUFFIXES, ParseError, parse_bytes

    sections: list[Section] = []
    for part in msg.iter_attachments():
        ctype = part.get_content_type()
        if ctype.startswith("image/") and not part.is_attachment():
            continue  # inline pictures of the HTML body: logos and signatures
        name = PurePath((part.get_filename() or "").replace("\\", "/")).name
        if ctype == "message/rfc822":
            name = name or "message.eml"
            inner = part.get_content()
            payload = inner.as_bytes() if isinstance(inner, EmailMessage) else b""
        else:
            payload = part.get_payload(decode=True) or b""
        if PurePath(name).suffix.lower() not in SUPPORTED_SUFFIXES:
            continue
        try:
            if name.lower().endswith(".eml"):
                found = _sections(payload, depth + 1)[1]
            else:
                found = parse_bytes(payload, name).sections
        except ParseError as exc:
            log.warning("e-mail attachment %s not indexed: %s", name, exc)
            continue
        for s in found:
            place = s.location.removeprefix("image ")  # "attachment scan.png (OCR, confidence 0.93)"
            where = f"attachment {name}" + (f" {place}" if place else "")
            sections.append(Section(text=s.text, location=where, heading=s.heading))
    return sections


def _sections(data: bytes, depth: int) -> tuple[str, list[Section]]:
    msg = BytesParser(policy=policy.default).parsebytes(data)
    if not any(msg[h] for h in (*HEADERS, "Message-ID", "MIME-Version")):
        from baimo.knowledge.parsing import ParseError

        raise ParseError("not a valid EML file: no e-mail headers (From, To, Subject, Date)")
    subject = " ".join(str(msg["Subject"] or "").split())
    header_lines = [f"{h}: {' '.join(str(msg[h]).split())}" for h in HEADERS if msg[h]]
    body = _body(msg)
    sections = [Section(text="\n\n".join(["\n".join(header_lines), *body]), location="message", heading=subject)]
    if depth < MAX_DEPTH:
        sections += _attachments(msg, depth)
    return subject, sections


def parse_eml(data: bytes) -> tuple[str, list[Section]]:
    """(the Subject, the message section then the attachments' sections). ParseError when the data has no
    e-mail headers at all."""
    return _sections(data, 0)
