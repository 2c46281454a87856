"""Limits that refuse hostile uploads before a parser opens them: ZIP bombs wearing DOCX, PPTX, XLSX or EPUB
suffixes, and PDFs with more pages than anyone means to index.

A ZIP's central directory declares each member's compressed and uncompressed size, and Python's `zipfile` never
inflates a member past its declared size, so checking the declarations bounds what every parser can inflate
(python-docx, python-pptx, openpyxl and ebooklib all read through `zipfile`). The limits follow Apache POI's
`ZipSecureFile` (the usual defence of office parsers): a member may not inflate more than 100 times
(POI's minimum inflate ratio 0.01) once it is larger than a small threshold, and the whole archive has a cap.
"""

from __future__ import annotations

import io
import zipfile

from baimo.knowledge.parsing import ParseError

MAX_INFLATE_RATIO = 100  # uncompressed / compressed bytes of one member (Apache POI: MIN_INFLATE_RATIO = 0.01)
RATIO_THRESHOLD_BYTES = 1 << 20  # members smaller than 1 MiB may compress as well as they like (tiny XML parts)
MAX_UNCOMPRESSED_BYTES = 1 << 30  # 1 GiB for the whole archive, whatever the ratios
MAX_MEMBERS = 100_000  # a directory of more entries is refused before its sizes are even summed
MAX_PDF_PAGES = 5_000  # a PDF with more pages is refused before any page is read (or OCRed)


def check_archive(data: bytes, fmt: str) -> None:
    """Refuse (ParseError) a ZIP-based upload of format `fmt` whose members would inflate past the limits above.

    Not a ZIP at all is left to the format's parser, which gives its own 'not a valid ...' reason."""
    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return
    what = fmt.upper()
    if len(members) > MAX_MEMBERS:
        raise ParseError(f"refused {what}: {len(members)} archive members (the limit is {MAX_MEMBERS})")
    total = 0
    for m in members:
        total += m.file_size
        if m.file_size > RATIO_THRESHOLD_BYTES and m.file_size > MAX_INFLATE_RATIO * max(1, m.compress_size):
            raise ParseError(f"refused {what}: archive member {m.filename!r} would inflate "
                             f"{m.file_size // max(1, m.compress_size)} times, to {m.file_size} bytes "
                             f"(a ZIP bomb; the limit is {MAX_INFLATE_RATIO} times)")
    if total > MAX_UNCOMPRESSED_BYTES:
        raise ParseError(f"refused {what}: the archive would inflate to {total} bytes "
                         f"(the limit is {MAX_UNCOMPRESSED_BYTES})")


def check_page_count(pages: int) -> None:
    """Refuse (ParseError) a PDF of more than MAX_PDF_PAGES pages."""
    if pages > MAX_PDF_PAGES:
        raise ParseError(f"refused PDF: {pages} pages (the limit is {MAX_PDF_PAGES} pages per file)")
