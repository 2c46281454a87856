"""EPUB books (EPUB 2 and 3, via ebooklib): chapters in reading (spine) order, each under its title.

A chapter's title comes from the book's table of contents, else its own first heading, else "chapter N"; its
XHTML is read like any HTML page (`parsing._html_sections`), so headings inside a chapter give paths such as
"The Sea > Tides", the chapter title first.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from baimo.knowledge.parsing import ParseError, Section, _decode_html, _html_sections


def _toc_titles(entries: Iterable[object], titles: dict[str, str]) -> dict[str, str]:
    """File name -> the first table-of-contents title that points into it (nested sections included)."""
    from ebooklib import epub

    for entry in entries:
        if isinstance(entry, tuple):  # (Section, [children])
            section, children = entry
            _toc_titles([section], titles)
            _toc_titles(children, titles)
        elif isinstance(entry, epub.Link | epub.Section) and getattr(entry, "href", None):
            titles.setdefault(entry.href.split("#", 1)[0], " ".join((entry.title or "").split()))
    return titles


def parse_epub(data: bytes) -> tuple[str, list[Section]]:
    """(book title from its metadata, sections of every chapter in spine order). ParseError for a file that is
    not an EPUB (other errors of ebooklib on a broken book are named by `parse_bytes`)."""
    import ebooklib
    from ebooklib import epub

    try:
        book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": False})
    except epub.EpubException as exc:
        raise ParseError(f"not a valid EPUB file: {exc.msg}") from exc
    titles = _toc_titles(book.toc, {})
    sections: list[Section] = []
    chapter = 0
    for idref, *_ in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        html_title, found = _html_sections(_decode_html(item.get_content()))
        if not found:
            continue
        chapter += 1
        name = titles.get(item.get_name()) or html_title or f"chapter {chapter}"
        for s in found:
            path = s.heading if s.heading == name or s.heading.startswith(f"{name} > ") else \
                " > ".join(p for p in (name, s.heading) if p)
            sections.append(Section(text=s.text, location=path, heading=path))
    meta = book.get_metadata("DC", "title")
    return (meta[0][0] if meta and meta[0] and meta[0][0] else ""), sections
