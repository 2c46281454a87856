"""PowerPoint presentations (PPTX, via python-pptx): one section per slide, "slide N", with its title and notes.

A slide's text is read in reading order (shapes sorted top to bottom, then left to right; groups opened), tables
row by row ("cell | cell"), and the speaker notes last as a paragraph starting "Notes:". The slide title is the
section's heading, so it is searched with every chunk of the slide.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from baimo.knowledge.parsing import ParseError, Section


def _shapes(shapes: Iterable[object]) -> Iterator[object]:
    """Shapes in reading order, the members of group shapes in place of the group."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    ordered = sorted(shapes, key=lambda s: (getattr(s, "top", None) or 0, getattr(s, "left", None) or 0))
    for shape in ordered:
        if getattr(shape, "shape_type", None) == MSO_SHAPE_TYPE.GROUP:
            yield from _shapes(shape.shapes)  # type: ignore[attr-defined]
        else:
            yield shape


def _shape_text(shape: object) -> list[str]:
    """The paragraphs of a text shape, or the rows of a table ("a | b"), blank ones left out."""
    lines: list[str] = []
    if getattr(shape, "has_text_frame", False):
        lines = [" ".join(p.text.split()) for p in shape.text_frame.paragraphs]  # type: ignore[attr-defined]
    elif getattr(shape, "has_table", False):
        for row in shape.table.rows:  # type: ignore[attr-defined]
            lines.append(" | ".join(t for c in row.cells if (t := " ".join(c.text.split()))))
    return [line for line in lines if line]


def parse_pptx(data: bytes) -> tuple[str, list[Section]]:
    """(presentation title, one section per slide with text). The title is the document property, else the
    first slide's title. ParseError for a file that is not a presentation."""
    from pptx import Presentation
    from pptx.exc import PackageNotFoundError

    if data.startswith(b"\xd0\xcf\x11\xe0"):  # an OLE container: a legacy .ppt or an encrypted presentation
        raise ParseError("not a valid PPTX file: an encrypted presentation (needs a password) or a legacy .ppt file")
    try:
        deck = Presentation(io.BytesIO(data))
    except PackageNotFoundError as exc:
        raise ParseError(f"not a valid PPTX file: {exc}") from exc
    sections: list[Section] = []
    first_title = ""
    for number, slide in enumerate(deck.slides, start=1):
        title_shape = slide.shapes.title
        title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
        first_title = first_title or title
        paras = [line for shape in _shapes(slide.shapes) if shape is not title_shape
                 and getattr(shape, "shape_id", None) != getattr(title_shape, "shape_id", -1)
                 for line in _shape_text(shape)]
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = " ".join(slide.notes_slide.notes_text_frame.text.split())
            if notes:
                paras.append(f"Notes: {notes}")
        text = "\n\n".join(paras) or title
        if text:
            sections.append(Section(text=text, location=f"slide {number}", heading=title))
    return (deck.core_properties.title or "").strip() or first_title, sections
