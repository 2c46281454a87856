"""Turn an uploaded file into titled text sections for the knowledge base.

Formats: text (txt, md, html, docx) here; PDF, with its right-to-left repair and OCR of scanned pages, in
`pdf_text.py`; images by OCR in `ocr.py`; PPTX in `office.py`; XLSX, CSV and TSV in `tables.py`; EPUB in
`ebooks.py`; e-mail (EML) in `mail.py`. Each format keeps its own idea of place: "page 3" (PDF),
"page 2 (OCR, confidence 0.91)" (scans), heading paths (md, html, docx, EPUB chapters), "slide 4" (PPTX),
"Sheet1 rows 2-14" (XLSX), "attachment report.pdf page 2" (EML).
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath

log = logging.getLogger(__name__)

class ParseError(Exception):
    """A file that cannot be parsed; str(e) is the human reason, the same words for every client: 'empty file',
    'no extractable text: …' (blank, a scan where OCR found nothing or is not installed), 'encrypted PDF: password
    required', 'not a valid XLSX file: …', 'unsupported file type .xyz (supported: …)'."""


@dataclass
class Section:
    text: str  # body text, paragraphs separated by "\n\n"
    location: str  # "page 3", "Install > Linux", "paragraphs 1-12" or ""
    heading: str = ""  # heading path "Install > Linux", "" if none


@dataclass
class ParsedDocument:
    source: str  # file name (basename)
    format: str  # "txt" | "md" | "html" | "pdf" | "docx" | "pptx" | "xlsx" | "csv" | "epub" | "eml" | "png" | …
    title: str  # first heading / <title> / PDF metadata title, else the file stem
    sections: list[Section]


# A format parser returns (title or "", sections).
_Parser = Callable[[bytes], tuple[str, list[Section]]]


def parse_file(path: Path) -> ParsedDocument:
    """Parse a file on disk; the format comes from its suffix."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ParseError(f"cannot read file: {exc.strerror or exc}") from exc
    return parse_bytes(data, Path(path).name)


def check_file(data: bytes, filename: str) -> None:
    """The checks that need no parsing: a supported suffix and at least one byte (ParseError otherwise)."""
    suffix = PurePath(PurePath(filename.replace("\\", "/")).name).suffix.lower()
    if suffix not in _PARSERS:
        shown = suffix or "(no suffix)"
        raise ParseError(f"unsupported file type {shown} (supported: {', '.join(sorted(SUPPORTED_SUFFIXES))})")
    if not data:
        raise ParseError("empty file")


def parse_bytes(data: bytes, filename: str) -> ParsedDocument:
    """Parse file content; the format comes from the (case-insensitive) suffix of `filename`.

    A file that yields no text at all is a ParseError ('no extractable text: …'), never an empty document."""
    check_file(data, filename)
    name = PurePath(filename.replace("\\", "/")).name
    fmt, parser = _PARSERS[PurePath(name).suffix.lower()]
    if fmt in _ZIP_FORMATS:
        from baimo.knowledge.upload_limits import check_archive

        check_archive(data, fmt)  # ZIP bombs are refused before a parser inflates anything
    try:
        title, sections = parser(data)
    except ParseError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError, LookupError) as exc:
        raise ParseError(f"not a valid {fmt.upper()} file: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # third-party parsers raise anything on corrupt input; always re-raised as ParseError
        raise ParseError(f"could not parse {fmt.upper()}: {type(exc).__name__}: {exc}") from exc
    sections = [s for s in sections if _visible(s.text)]
    if not sections:
        raise ParseError(_no_text_reason(fmt, data))
    return ParsedDocument(source=name, format=fmt, title=title.strip() or PurePath(name).stem, sections=sections)


def _visible(text: str) -> bool:
    """Whether text has a character that shows: not whitespace, not a control or format character (zero-width
    space, BOM, bidi marks)."""
    return any(not c.isspace() and unicodedata.category(c) not in ("Cc", "Cf") for c in text)


def _no_text_reason(fmt: str, data: bytes) -> str:
    """Why a parsed file gave no sections (image-only PDFs say so themselves, in `pdf_text.py`)."""
    if fmt in ("txt", "md", "html"):
        if not _visible(_decode_html(data) if fmt == "html" else _decode_text(data)):
            return "no extractable text: the file contains only whitespace"
        if fmt == "html":
            return "no extractable text: the HTML has no visible text"
    return f"no extractable text: the {fmt.upper()} file has no text"


# --- text decoding -------------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _decode_text(data: bytes) -> str:
    """UTF-8 (BOM optional), UTF-16/32 with a BOM, else cp1252/latin-1; binary junk is refused."""
    for bom, codec in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            text = data.decode(codec).lstrip("\ufeff")
            break
    else:
        if b"\x00" in data:
            raise ParseError("binary file, not text (contains NUL bytes)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
    if len(_CONTROL.findall(text)) > max(8, len(text) // 100):
        raise ParseError("binary file, not text (too many control characters)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each with trailing spaces trimmed and no empty lines."""
    paras = []
    for block in re.split(r"\n[ \t\f\v]*\n", text):
        lines = [line.rstrip() for line in block.split("\n") if line.strip()]
        if lines:
            paras.append("\n".join(lines))
    return paras


def _parse_txt(data: bytes) -> tuple[str, list[Section]]:
    return "", [Section(text="\n\n".join(_paragraphs(_decode_text(data))), location="")]


class _Outline:
    """Collects paragraphs under a stack of headings and emits one Section per heading."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, str]] = []
        self.paras: list[str] = []
        self.sections: list[Section] = []
        self.first_heading = ""

    def heading(self, level: int, text: str) -> None:
        text = " ".join(text.split())
        if not text:
            return
        self.flush()
        self.first_heading = self.first_heading or text
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, text))

    def add(self, para: str) -> None:
        if para.strip():
            self.paras.append(para.strip("\n").rstrip())

    def flush(self) -> None:
        if self.paras:
            path = " > ".join(t for _, t in self.stack)
            self.sections.append(Section(text="\n\n".join(self.paras), location=path, heading=path))
        self.paras = []


# --- Markdown ------------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_THEMATIC = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_MD_INLINE = [
    (re.compile(r"<!--.*?-->"), ""),
    (re.compile(r"!\[[^\]]*\]\([^)]*\)|!\[[^\]]*\]\[[^\]]*\]"), ""),  # images are dropped
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # [text](url)
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # [text][ref]
    (re.compile(r"<(https?://[^>\s]+)>"), r"\1"),  # autolinks
    (re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>"), ""),  # HTML tags
    (re.compile(r"`([^`]+)`"), r"\1"),
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),
    (re.compile(r"~~(.+?)~~"), r"\1"),
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])"), r"\1"),
]
_MD_LINE = [
    (re.compile(r"^ {0,3}>[ \t]?"), ""),  # blockquote
    (re.compile(r"^[ \t]*[-*+][ \t]+(?:\[[ xX]\][ \t]+)?"), ""),  # bullets and task boxes
    (re.compile(r"^ {0,3}\[[^\]]+\]:\s+\S.*$"), ""),  # link reference definitions
    (re.compile(r"^\s*\|?(?:\s*:?-{2,}:?\s*\|)+\s*:?-*:?\s*\|?\s*$"), ""),  # table separator rows
]


def _md_inline(text: str) -> str:
    for pattern, repl in _MD_INLINE:
        text = pattern.sub(repl, text)
    return text


def _md_line(line: str) -> str:
    for pattern, repl in _MD_LINE:
        line = pattern.sub(repl, line)
    if line.lstrip().startswith("|"):
        line = " ".join(cell.strip() for cell in line.strip().strip("|").split("|"))
    return _md_inline(line).rstrip()


def _parse_markdown(data: bytes) -> tuple[str, list[Section]]:
    lines = _decode_text(data).split("\n")
    front_title = ""
    if lines and lines[0].strip() == "---":  # YAML front matter
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is not None:
            for line in lines[1:end]:
                m = re.match(r"title:\s*['\"]?(.*?)['\"]?\s*$", line)
                front_title = front_title or (m.group(1) if m else "")
            lines = lines[end + 1:]
    out = _Outline()
    para: list[str] = []
    code: list[str] = []
    fence: str | None = None

    def end_para() -> None:
        out.add("\n".join(x for x in (" ".join(_md_line(p).split()) for p in para) if x))
        para.clear()

    for line in lines:
        if fence is not None:
            if re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", line):
                fence = None
                out.add("\n".join(code).strip("\n"))  # code is kept verbatim as its own paragraph
                code.clear()
            else:
                code.append(line.rstrip())
            continue
        if m := _FENCE.match(line):
            end_para()
            fence = m.group(1)
            continue
        if m := _ATX.match(line):
            end_para()
            out.heading(len(m.group(1)), _md_inline(m.group(2) or ""))
            continue
        if (m := _SETEXT.match(line)) and para and not _THEMATIC.match(para[-1]):
            text = para.pop()
            end_para()
            out.heading(1 if m.group(1)[0] == "=" else 2, _md_inline(text.strip()))
            continue
        if _THEMATIC.match(line) or not line.strip():
            end_para()
            continue
        para.append(line)
    end_para()
    out.add("\n".join(code))  # an unclosed fence runs to the end of the file
    out.flush()
    return out.first_heading or front_title, out.sections


# --- HTML ----------------------------------------------------------------------------------------------------

_HTML_DROP = ["script", "style", "nav", "footer", "head", "noscript", "template", "svg", "canvas", "iframe",
              "object", "select", "button"]
_HTML_BLOCK = frozenset(
    "address article aside blockquote body br caption dd details dialog div dl dt fieldset figcaption figure form "
    "header hr li main ol p pre section summary table tbody td tfoot th thead tr ul".split())
_HTML_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_-]+)""", re.I)


def _decode_html(data: bytes) -> str:
    m = _CHARSET.search(data[:4096])
    if m and not data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode(m.group(1).decode("ascii")).replace("\r\n", "\n")
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong or unknown declared charset: fall back to detection below
    return _decode_text(data)


def _parse_html(data: bytes) -> tuple[str, list[Section]]:
    return _html_sections(_decode_html(data))


def _html_sections(html: str) -> tuple[str, list[Section]]:
    """(the <title> or first heading, one section per heading) of an HTML document already decoded to text."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    title = " ".join(title_node.text().split()) if title_node is not None else ""
    tree.strip_tags(_HTML_DROP)
    for hidden in tree.css("[hidden], [aria-hidden=true]"):
        hidden.decompose()
    out = _Outline()
    buf: list[str] = []

    def end_para() -> None:
        out.add(" ".join("".join(buf).split()))
        buf.clear()

    body = tree.body
    stack: list[object] = [body] if body is not None else []
    while stack:  # iterative walk: real-world HTML can nest deeper than Python's recursion limit
        node = stack.pop()
        if node == "cell-end":
            buf.append(" ")
            continue
        if node == "block-end":
            end_para()
            continue
        tag = node.tag  # type: ignore[attr-defined]
        if tag == "-text":
            buf.append(node.text_content or "")  # type: ignore[attr-defined]
        elif tag in _HTML_HEADINGS:
            end_para()
            out.heading(_HTML_HEADINGS[tag], node.text(separator=" "))  # type: ignore[attr-defined]
        elif tag and not tag.startswith("-"):  # elements; comments ("-comment") are skipped
            if tag in ("td", "th"):
                stack.append("cell-end")
            elif tag in _HTML_BLOCK:
                end_para()
                stack.append("block-end")
            stack.extend(reversed(list(node.iter(include_text=True))))  # type: ignore[attr-defined]
    end_para()
    out.flush()
    return title or out.first_heading, out.sections


# --- DOCX ----------------------------------------------------------------------------------------------------

_DOCX_GROUP_CHARS = 4000  # headingless documents are cut into sections of about this many characters


def _docx_heading_level(paragraph: object) -> int | None:
    """0 for the Title style, N for 'Heading N' (also via a custom style based on one), else None."""
    style = getattr(paragraph, "style", None)
    for _ in range(5):
        if style is None:
            return None
        name = (style.name or "").strip().lower()
        if name == "title":
            return 0
        if m := re.fullmatch(r"heading\s*([1-9])", name):
            return int(m.group(1))
        style = style.base_style
    return None


def _docx_blocks(document: object) -> Iterable[tuple[int | None, str]]:
    """(heading level or None, text) for body paragraphs and table rows, in document order."""
    from docx.table import Table

    for item in document.iter_inner_content():  # type: ignore[attr-defined]
        if isinstance(item, Table):
            for row in item.rows:
                cells: list[object] = []
                for cell in row.cells:  # merged cells repeat: keep each underlying cell once
                    if not any(cell._tc is seen._tc for seen in cells):  # type: ignore[attr-defined]
                        cells.append(cell)
                texts = [" ".join(c.text.split()) for c in cells]  # type: ignore[attr-defined]
                yield None, " | ".join(t for t in texts if t)
        else:
            yield _docx_heading_level(item), item.text


def _parse_docx(data: bytes) -> tuple[str, list[Section]]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except PackageNotFoundError as exc:
        raise ParseError(f"not a valid DOCX file: {exc}") from exc
    out = _Outline()
    preamble: list[Section] = []  # text before the first heading, cut into numbered-paragraph sections
    group: list[tuple[int, str]] = []

    def flush_group() -> None:
        if group:
            first, last = group[0][0], group[-1][0]
            where = f"paragraph {first}" if first == last else f"paragraphs {first}-{last}"
            preamble.append(Section(text="\n\n".join(t for _, t in group), location=where))
            group.clear()

    title = ""
    number = 0
    for level, text in _docx_blocks(document):
        text = text.strip()
        if not text:
            continue
        number += 1
        if level is not None:
            title = title or (text if level == 0 else "")
            out.heading(level, text)
        elif out.stack:
            out.add(text)
        else:
            if group and sum(len(t) for _, t in group) + len(text) > _DOCX_GROUP_CHARS:
                flush_group()
            group.append((number, text))
    flush_group()
    out.flush()
    core_title = (document.core_properties.title or "").strip()
    return title or out.first_heading or core_title, preamble + out.sections


def _parse_pdf(data: bytes) -> tuple[str, list[Section]]:
    from baimo.knowledge.pdf_text import parse_pdf  # pypdf and the right-to-left repair load only for PDFs

    return parse_pdf(data)


# The other formats' parsers live in their own modules, imported only when such a file comes.

def _parse_image(data: bytes) -> tuple[str, list[Section]]:
    from baimo.knowledge.ocr import parse_image

    return parse_image(data)


def _parse_pptx(data: bytes) -> tuple[str, list[Section]]:
    from baimo.knowledge.office import parse_pptx

    return parse_pptx(data)


def _parse_xlsx(data: bytes) -> tuple[str, list[Section]]:
    from baimo.knowledge.tables import parse_xlsx

    return parse_xlsx(data)


def _parse_csv(data: bytes) -> tuple[str, list[Section]]:
    from baimo.knowledge.tables import parse_csv

    return parse_csv(data)


def _parse_tsv(data: bytes) -> tuple[str, list[Section]]:
    from baimo.knowledge.tables import parse_csv

    return parse_csv(data, delimiter="\t")


def _parse_epub(data: bytes) -> tuple[str, list[Section]]:
    from baimo.knowledge.ebooks import parse_epub

    return parse_epub(data)


def _parse_eml(data: bytes) -> tuple[str, list[Section]]:
    from baimo.knowledge.mail import parse_eml

    return parse_eml(data)


_PARSERS: dict[str, tuple[str, _Parser]] = {
    ".txt": ("txt", _parse_txt),
    ".md": ("md", _parse_markdown),
    ".markdown": ("md", _parse_markdown),
    ".html": ("html", _parse_html),
    ".htm": ("html", _parse_html),
    ".pdf": ("pdf", _parse_pdf),
    ".docx": ("docx", _parse_docx),
    ".pptx": ("pptx", _parse_pptx),
    ".xlsx": ("xlsx", _parse_xlsx),
    ".csv": ("csv", _parse_csv),
    ".tsv": ("tsv", _parse_tsv),
    ".epub": ("epub", _parse_epub),
    ".eml": ("eml", _parse_eml),
    ".png": ("png", _parse_image),
    ".jpg": ("jpeg", _parse_image),
    ".jpeg": ("jpeg", _parse_image),
    ".tif": ("tiff", _parse_image),
    ".tiff": ("tiff", _parse_image),
    ".webp": ("webp", _parse_image),
    ".bmp": ("bmp", _parse_image),
    ".gif": ("gif", _parse_image),
}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_PARSERS)
_ZIP_FORMATS = frozenset({"docx", "pptx", "xlsx", "epub"})  # checked for ZIP bombs (upload_limits.py)
