"""Turn an uploaded file (txt, md, html, pdf, docx) into titled text sections for the knowledge base.

Each format keeps its own idea of place: pages for PDF, heading paths for md/html/docx. Right-to-left PDF text
is repaired here (see `_fix_rtl_line`), because pypdf's own reordering is only right for some PDF producers.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import statistics
import unicodedata
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"})


class ParseError(Exception):
    """A file that cannot be parsed; str(e) is the human reason ('encrypted PDF', 'unsupported file type .xyz')."""


@dataclass
class Section:
    text: str  # body text, paragraphs separated by "\n\n"
    location: str  # "page 3", "Install > Linux", "paragraphs 1-12" or ""
    heading: str = ""  # heading path "Install > Linux", "" if none


@dataclass
class ParsedDocument:
    source: str  # file name (basename)
    format: str  # "txt" | "md" | "html" | "pdf" | "docx"
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


def parse_bytes(data: bytes, filename: str) -> ParsedDocument:
    """Parse file content; the format comes from the (case-insensitive) suffix of `filename`."""
    name = PurePath(filename.replace("\\", "/")).name
    suffix = PurePath(name).suffix.lower()
    entry = _PARSERS.get(suffix)
    if entry is None:
        shown = suffix or "(no suffix)"
        raise ParseError(f"unsupported file type {shown} (supported: {', '.join(sorted(SUPPORTED_SUFFIXES))})")
    fmt, parser = entry
    try:
        title, sections = parser(data)
    except ParseError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError, LookupError) as exc:
        raise ParseError(f"not a valid {fmt.upper()} file: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # third-party parsers raise anything on corrupt input; always re-raised as ParseError
        raise ParseError(f"could not parse {fmt.upper()}: {type(exc).__name__}: {exc}") from exc
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise ParseError("no text found")
    return ParsedDocument(source=name, format=fmt, title=title.strip() or PurePath(name).stem, sections=sections)


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
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(_decode_html(data))
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


# --- PDF -----------------------------------------------------------------------------------------------------

_RTL_CHAR = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefe]")  # the ranges pypdf itself treats as RTL
_PYPDF_NEUTRAL = re.compile("[\x00-\x2f\x3a-\x40\u0660-\u066d\u06f0-\u06f9\u2000-\u206f\u20a0-\u21ff]")
_PRESENTATION_FORMS = re.compile("[\ufb50-\ufdff\ufe70-\ufefe]+")
_AR_WORD = re.compile("[\u0621-\u063a\u0641-\u064a\u066e-\u06d3\u06fa-\u06ff\u0750-\u077f\u08a0-\u08c9]+")
_HE_WORD = re.compile("[\u05d0-\u05ea]+")
_AR_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")  # harakat, Quranic marks, tatweel
_HE_FINALS = "ךםןףץ"
_AR_PREFIXES = "وفبكل"
_SENTENCE_PUNCT = ".!?:;،؛؟"
_PUNCT_BEFORE_RTL = re.compile(rf"(?:^|\s)[{_SENTENCE_PUNCT}]+(?=[\u0590-\u08ff])")
_PUNCT_AFTER_RTL = re.compile(rf"(?<=[\u0590-\u08ff])[{_SENTENCE_PUNCT}]+(?=\s|$)")
_ARABIC_DIGITS = re.compile("[\u0660-\u0669\u06f0-\u06f9][\u0660-\u066c\u06f0-\u06f9]*")
_CJK_NOSPACE = re.compile("[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def _nfkc_presentation_forms(text: str) -> str:
    """Arabic presentation forms (what some PDFs map glyphs to) become base letters; nothing else is touched."""
    return _PRESENTATION_FORMS.sub(lambda m: unicodedata.normalize("NFKC", m.group(0)), text)


def _reversal_score(line: str) -> float:
    """> 0 when the RTL words of `line` read backwards, < 0 when they read forwards, 0 when there is no clue.

    Arabic: the article "ال" starts many words, reversed it ends them as "لا"; ة and ى only end words.
    Hebrew: final letters (ך ם ן ף ץ) end words. Both: sentence punctuation follows words, it does not lead them.
    """
    text = _AR_MARKS.sub("", _nfkc_presentation_forms(line))
    score = 0.0
    for w in _AR_WORD.findall(text):
        if len(w) < 3:
            continue
        score -= w.startswith("ال") or (w[0] in _AR_PREFIXES and w[1:3] == "ال")
        score += w.endswith("لا") or (w[-1] in _AR_PREFIXES and w[-3:-1] == "لا")
        score += (w[0] in "ةى") - (w[-1] in "ةى")
    for w in _HE_WORD.findall(text):
        if len(w) >= 2:
            score += (w[0] in _HE_FINALS) - (w[-1] in _HE_FINALS)
    score += 0.5 * (len(_PUNCT_BEFORE_RTL.findall(text)) - len(_PUNCT_AFTER_RTL.findall(text)))
    return score


def _is_mostly_rtl(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return bool(letters) and sum(bool(_RTL_CHAR.match(c)) for c in letters) * 2 > len(letters)


def _kind(text: str) -> str:
    """pypdf's view of a run: 'R' (has RTL letters), 'L' (has other strong characters) or 'N' (neutral only)."""
    if _RTL_CHAR.search(text):
        return "R"
    return "L" if _PYPDF_NEUTRAL.sub("", text) else "N"


def _guess_runs(line: str) -> list[str]:
    """Cut a line into pypdf's runs when the runs themselves are not known (see `_page_lines`).

    pypdf appends neutrals to the run before them, and an RTL run's trailing neutrals come out at its front:
    in a gap between an LTR and an RTL run, the text up to the first space goes with the LTR run.
    """
    runs: list[list[str]] = []  # [kind, text]; kind "G" is a gap of neutrals between strong runs
    for ch in line:
        kind = "G" if _PYPDF_NEUTRAL.match(ch) else ("R" if _RTL_CHAR.match(ch) else "L")
        if runs and (runs[-1][0] == kind or (kind == "G" and runs[-1][0] == "G")):
            runs[-1][1] += ch
        elif len(runs) >= 2 and runs[-1][0] == "G" and runs[-2][0] == kind:
            gap = runs.pop()[1]
            runs[-1][1] += gap + ch
        else:
            runs.append([kind, ch])
    pieces: list[str] = []
    for i, (kind, text) in enumerate(runs):
        if kind != "G" or not pieces:
            if kind == "G" and not text[-1].isspace() and not _only_punct(text) and i + 1 < len(runs):
                runs[i + 1][1] = text + runs[i + 1][1]  # "-" glued to the word after it ("ו-Microsoft")
                continue
            pieces.append(text)  # a gap at the start stays a neutral run of its own
        elif runs[i - 1][0] == "L" and i + 1 < len(runs):
            cut = next((j + 1 for j, c in enumerate(text) if c.isspace()), len(text))
            pieces[-1] += text[:cut]
            runs[i + 1][1] = text[cut:] + runs[i + 1][1]
        else:
            pieces[-1] += text
    return pieces


def _reorder_visual_runs(pieces: list[str]) -> str:
    """Visual-order producer: pypdf fixed each RTL run but left the runs in visual (left-to-right) order.

    Read the runs right to left: an RTL run is already right; an LTR run keeps its letters in order but its
    neutrals (which pypdf attached on the visual side) move around it; a leading sentence mark goes to the end.
    """
    lead = pieces[0] if pieces and _kind(pieces[0]) == "N" else ""
    parts = []
    for piece in reversed(pieces[1:] if lead else pieces):
        kind = _kind(piece)
        if kind == "R":  # pypdf treats Arabic-Indic digits as neutral and reversed them with the words
            parts.append(_ARABIC_DIGITS.sub(lambda m: m.group(0)[::-1], piece))
        elif kind == "L":
            core = piece.strip("".join(set(_PYPDF_NEUTRAL.findall(piece))))
            before, after = piece.split(core, 1) if core else (piece, "")
            parts.append(after[::-1] + core + before[::-1])
        else:
            parts.append(piece[::-1])
    line = "".join(parts)
    if _only_punct(lead) and line.rstrip()[-1:] not in _SENTENCE_PUNCT:
        return line.rstrip() + lead.strip()
    return lead + line


def _only_punct(text: str) -> bool:
    return bool(text.strip()) and all(c in _SENTENCE_PUNCT or c.isspace() for c in text)


def _tidy_rtl(line: str) -> str:
    """Spaces lost where RTL words meet LTR words or quotes come back; space before a sentence mark goes."""
    out: list[str] = []
    for ch in line:
        if out and ch.isalnum() and out[-1].isalnum() and bool(_RTL_CHAR.match(ch)) != bool(_RTL_CHAR.match(out[-1])):
            out.append(" ")
        out.append(ch)
    text = "".join(out)
    text = re.sub(r"(?<=\w)«", " «", text)
    text = re.sub(r"»(?=\w)", "» ", text)
    text = re.sub(rf"(?<=\w)\s+([{_SENTENCE_PUNCT}]+)(?=\s|$)", r"\1", text)
    return " ".join(text.split())


def _fix_rtl_line(pieces: list[str], page_score: float = 0.0) -> str:
    """Put one line of pypdf output that contains Arabic/Hebrew into logical order.

    `pieces` are pypdf's runs: it reverses every run of RTL characters in place. PDFs that store glyphs in
    visual order (most producers that shape Arabic) come out with each run right but the runs in visual order;
    PDFs that store logical order come out with each RTL run backwards. `_reversal_score` tells which, and
    `page_score` (the page's total) decides when the line alone gives no clue.
    """
    line = "".join(pieces)
    if not _RTL_CHAR.search(line):
        return line
    if any(_RTL_CHAR.search(p) and _kind(_RTL_CHAR.sub("", p)) == "L" for p in pieces):
        pieces = _guess_runs(line)  # not pypdf's runs after all
    pieces = [p for p in pieces if p]
    score = _reversal_score(line) or page_score
    if score > 0:
        line = "".join(p[::-1] if _kind(p) == "R" else p for p in pieces)
    elif _is_mostly_rtl(line):
        line = _reorder_visual_runs(pieces)
    return _nfkc_presentation_forms(_tidy_rtl(line))


def _page_lines(page: object) -> list[tuple[list[str], float | None]]:
    """pypdf's plain text of a page as lines of runs with the line's baseline y.

    pypdf reports each run through its visitor; when the visitor's pieces do not add up to the page text, the
    runs are guessed from the text and the y positions are unknown.
    """
    pieces: list[tuple[str, float]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        pieces.append((text, tm[4] * cm[1] + tm[5] * cm[3] + cm[5]))

    text = page.extract_text(visitor_text=visit)  # type: ignore[attr-defined]
    if "".join(t for t, _ in pieces) != text:
        return [(_guess_runs(line) if _RTL_CHAR.search(line) else [line], None) for line in text.split("\n")]
    lines: list[tuple[list[str], float | None]] = [([], None)]
    for piece, y in pieces:
        for k, part in enumerate(piece.split("\n")):
            if k:
                lines.append(([], None))
            runs, line_y = lines[-1]
            runs.append(part)
            if line_y is None and part.strip():
                lines[-1] = (runs, y)
    return lines


def _join_lines(lines: list[str]) -> str:
    """Join the lines of one paragraph: de-hyphenate Latin words, no space between CJK characters."""
    out = lines[0]
    for nxt in lines[1:]:
        if len(out) > 1 and out[-1] in "-\u00ad\u2010" and out[-2].isalpha() and nxt[:1].islower():
            out = out[:-1] + nxt
        elif _CJK_NOSPACE.match(out[-1]) and _CJK_NOSPACE.match(nxt[0]):
            out += nxt
        else:
            out += " " + nxt
    return out


def _page_paragraphs(lines: list[tuple[str, float | None]]) -> list[str]:
    """Group lines into paragraphs: a blank line, a larger vertical gap or a short last line ends one."""
    kept = [(" ".join(t.split()), y) for t, y in lines]
    gaps = [a[1] - b[1] for a, b in zip(kept, kept[1:], strict=False)
            if a[0] and b[0] and a[1] is not None and b[1] is not None and a[1] > b[1]]
    usual_gap = statistics.median(gaps) if len(gaps) >= 2 else None
    longest = max((len(t) for t, _ in kept), default=0)
    paras: list[str] = []
    current: list[str] = []
    prev_y: float | None = None
    for text, y in kept:
        if not text:
            if current:
                paras.append(_join_lines(current))
            current, prev_y = [], None
            continue
        if current:
            prev = current[-1]
            gap_break = usual_gap is not None and prev_y is not None and y is not None and (
                prev_y - y > 1.4 * usual_gap or prev_y - y < -0.5 * usual_gap)
            short_break = longest >= 40 and len(prev) < 0.6 * longest and prev[-1] in ".!?。！？:؟۔।\"'”)"
            if gap_break or short_break:
                paras.append(_join_lines(current))
                current = []
        current.append(text)
        prev_y = y
    if current:
        paras.append(_join_lines(current))
    return paras


def _parse_pdf(data: bytes) -> tuple[str, list[Section]]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
    except PdfReadError as exc:
        raise ParseError(f"not a valid PDF: {exc}") from exc
    if reader.is_encrypted:
        try:
            if not reader.decrypt(""):
                raise ParseError("encrypted PDF")
        except (DependencyError, FileNotDecryptedError, NotImplementedError) as exc:
            raise ParseError("encrypted PDF") from exc
    try:
        pages = list(reader.pages)
    except (PdfReadError, FileNotDecryptedError) as exc:
        raise ParseError(f"not a valid PDF: {exc}") from exc
    sections: list[Section] = []
    failures: list[str] = []
    for number, page in enumerate(pages, start=1):
        try:
            lines = _page_lines(page)
        except _PAGE_ERRORS + (PyPdfError,) as exc:  # one bad page (broken font or stream) must not lose the rest
            log.warning("PDF page %d unreadable: %s: %s", number, type(exc).__name__, exc)
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        page_score = sum(_reversal_score("".join(runs)) for runs, _ in lines)
        fixed = [(_fix_rtl_line(runs, page_score), y) for runs, y in lines]
        text = "\n\n".join(_page_paragraphs(fixed))
        if text.strip():
            sections.append(Section(text=text, location=f"page {number}"))
    if not sections:
        if failures and len(failures) == len(pages):
            raise ParseError(f"not a valid PDF: {failures[0]}")
        raise ParseError("no text found (scanned PDF without a text layer?)")
    try:
        title = str((reader.metadata or {}).get("/Title") or "")
    except PdfReadError:
        title = ""
    return title, sections


# What pypdf raises on a damaged page (besides its own errors); anything else fails the whole file.
_PAGE_ERRORS: tuple[type[Exception], ...] = (KeyError, ValueError, TypeError, AttributeError, IndexError,
                                             ZeroDivisionError, RecursionError)

_PARSERS: dict[str, tuple[str, _Parser]] = {
    ".txt": ("txt", _parse_txt),
    ".md": ("md", _parse_markdown),
    ".markdown": ("md", _parse_markdown),
    ".html": ("html", _parse_html),
    ".htm": ("html", _parse_html),
    ".pdf": ("pdf", _parse_pdf),
    ".docx": ("docx", _parse_docx),
}
