"""Hostile uploads made on the fly: zip bombs wearing office and e-book suffixes, and a 10,000-page PDF.

Nothing is stored in the repository: each file is built in memory in well under a second.
"""

from __future__ import annotations

import io
import zipfile

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

BOMB_PAD_BYTES = 128 << 20  # 128 MiB of spaces: ~0.6 MiB deflated at level 1 (ratio ~230:1)


def zip_bomb(valid: bytes, member: str, pad: int = BOMB_PAD_BYTES) -> bytes:
    """`valid` (a real DOCX/PPTX/XLSX/EPUB) with `pad` spaces appended to its `member` (an XML part: trailing
    whitespace keeps it well-formed, so an unguarded parser would inflate and read all of it). Written in
    1 MiB pieces, so building it never holds `pad` bytes in memory."""
    src = zipfile.ZipFile(io.BytesIO(valid))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for info in src.infolist():
            if info.filename != member:
                out.writestr(info, src.read(info))
                continue
            with out.open(member, "w", force_zip64=True) as f:
                f.write(src.read(info))
                piece = b" " * (1 << 20)
                for _ in range(pad // len(piece)):
                    f.write(piece)
    return buf.getvalue()


def many_page_pdf(pages: int = 10_000, text: str = "This page says little.") -> bytes:
    """A PDF of `pages` US-letter pages that all show `text` in Helvetica (one shared content stream, so the
    file stays small: about 0.15 KB per page)."""
    writer = PdfWriter()
    content = DecodedStreamObject()
    content.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
    content_ref = writer._add_object(content)
    font = writer._add_object(DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                                                NameObject("/Subtype"): NameObject("/Type1"),
                                                NameObject("/BaseFont"): NameObject("/Helvetica")}))
    resources = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = content_ref
        page[NameObject("/Resources")] = resources
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


__all__ = ["BOMB_PAD_BYTES", "many_page_pdf", "zip_bomb"]
