"""PDF pages to text in logical reading order, right-to-left scripts included.

pypdf reverses runs of right-to-left characters itself, which is right for producers that store Arabic or Hebrew
in visual order and wrong for those that store logical order, so every line is scored with script clues (the
article ال at word starts, Hebrew final letters, where punctuation sits) and repaired (`fix_rtl_line`).

Encrypted PDFs (RC4, AES-128, AES-256) are opened with the empty user password, as viewers do (`_decrypt`).
Pages without a text layer that draw images are scans: they are read by OCR (`ocr.py`), and their sections say so
with a confidence ("page 2 (OCR, confidence 0.91)"). A PDF with no text at all says why: a scan OCR could not
read, a scan with OCR unavailable, or pages with no text layer.
"""

from __future__ import annotations

import io
import logging
import re
import statistics
import unicodedata

from baimo.knowledge.parsing import ParseError, Section

log = logging.getLogger(__name__)


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


def nfkc_presentation_forms(text: str) -> str:
    """Arabic presentation forms (what some PDFs map glyphs to) become base letters; nothing else is touched."""
    return _PRESENTATION_FORMS.sub(lambda m: unicodedata.normalize("NFKC", m.group(0)), text)


def _reversal_score(line: str) -> float:
    """> 0 when the RTL words of `line` read backwards, < 0 when they read forwards, 0 when there is no clue.

    Arabic: the article "ال" starts many words, reversed it ends them as "لا"; ة and ى only end words.
    Hebrew: final letters (ך ם ן ף ץ) end words. Both: sentence punctuation follows words, it does not lead them.
    """
    text = _AR_MARKS.sub("", nfkc_presentation_forms(line))
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


def guess_runs(line: str) -> list[str]:
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


def fix_rtl_line(pieces: list[str], page_score: float = 0.0) -> str:
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
        pieces = guess_runs(line)  # not pypdf's runs after all
    pieces = [p for p in pieces if p]
    score = _reversal_score(line) or page_score
    if score > 0:
        line = "".join(p[::-1] if _kind(p) == "R" else p for p in pieces)
    elif _is_mostly_rtl(line):
        line = _reorder_visual_runs(pieces)
    return nfkc_presentation_forms(_tidy_rtl(line))


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
        return [(guess_runs(line) if _RTL_CHAR.search(line) else [line], None) for line in text.split("\n")]
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


def join_lines(lines: list[str]) -> str:
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
                paras.append(join_lines(current))
            current, prev_y = [], None
            continue
        if current:
            prev = current[-1]
            gap_break = usual_gap is not None and prev_y is not None and y is not None and (
                prev_y - y > 1.4 * usual_gap or prev_y - y < -0.5 * usual_gap)
            short_break = longest >= 40 and len(prev) < 0.6 * longest and prev[-1] in ".!?。！？:؟۔।\"'”)"
            if gap_break or short_break:
                paras.append(join_lines(current))
                current = []
        current.append(text)
        prev_y = y
    if current:
        paras.append(join_lines(current))
    return paras


def _decrypt(reader: object) -> None:
    """Open an encrypted PDF with the empty user password, which is what viewers do: most encrypted PDFs only
    carry owner restrictions (no printing, no copying). AES needs the `cryptography` package, a dependency of
    Baimo. A PDF that needs a real password is a ParseError ('encrypted PDF: password required')."""
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    try:
        opened = reader.decrypt("")  # type: ignore[attr-defined]
    except DependencyError as exc:  # only when the installation lost `cryptography`
        log.error("cannot decrypt a PDF: %s", exc)
        raise ParseError(f"encrypted PDF: cannot decrypt ({exc})") from exc
    except (NotImplementedError, FileNotDecryptedError, PdfReadError) as exc:
        raise ParseError(f"encrypted PDF: unsupported encryption ({exc})") from exc
    if not opened:
        raise ParseError("encrypted PDF: password required")


def _has_images(page: object) -> bool:
    """Whether a page draws an image (XObject or inline): a textless page with images is a scan."""
    try:
        return bool(len(page.images))  # type: ignore[attr-defined]
    except Exception:  # a broken image dictionary: let OCR (which renders the page) decide
        return True


def _ocr_sections(data: bytes, numbers: list[int]) -> tuple[dict[int, Section], str]:
    """OCR sections for scanned pages, and why there are none when OCR is unavailable ("" otherwise)."""
    from baimo.knowledge.ocr import OcrUnavailable, ocr_pdf_pages

    if not numbers:
        return {}, ""
    try:
        return ocr_pdf_pages(data, numbers), ""
    except OcrUnavailable as exc:
        log.warning("PDF has %d scanned page(s) and %s", len(numbers), exc)
        return {}, str(exc)


def parse_pdf(data: bytes) -> tuple[str, list[Section]]:
    """(title from the metadata or "", one section per page with text, "page N" or "page N (OCR, confidence c)").

    ParseError: not a PDF, encrypted with a real password, or no text on any page (the reason says which)."""
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError, PyPdfError

    from baimo.knowledge.upload_limits import check_page_count

    try:
        reader = PdfReader(io.BytesIO(data))
    except PdfReadError as exc:
        raise ParseError(f"not a valid PDF: {exc}") from exc
    if reader.is_encrypted:
        _decrypt(reader)
    try:
        check_page_count(_declared_pages(reader))  # O(1): listing 10,000 pages alone takes seconds
        pages = list(reader.pages)
        check_page_count(len(pages))  # a /Count that lies low does not get the pages read either
    except (PdfReadError, FileNotDecryptedError) as exc:
        raise ParseError(f"not a valid PDF: {exc}") from exc
    by_page: dict[int, Section] = {}
    scanned: list[int] = []
    failures: list[str] = []
    for number, page in enumerate(pages, start=1):
        try:
            lines = _page_lines(page)
        except _PAGE_ERRORS + (PyPdfError,) as exc:  # one bad page (broken font or stream) must not lose the rest
            log.warning("PDF page %d unreadable: %s: %s", number, type(exc).__name__, exc)
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        page_score = sum(_reversal_score("".join(runs)) for runs, _ in lines)
        fixed = [(fix_rtl_line(runs, page_score), y) for runs, y in lines]
        text = "\n\n".join(_page_paragraphs(fixed))
        if text.strip():
            by_page[number] = Section(text=text, location=f"page {number}")
        elif _has_images(page):
            scanned.append(number)
    ocr, no_ocr = _ocr_sections(data, scanned)
    by_page.update(ocr)
    sections = [by_page[n] for n in sorted(by_page)]
    if not sections:
        if failures and len(failures) == len(pages):
            raise ParseError(f"not a valid PDF: {failures[0]}")
        if no_ocr:
            raise ParseError(f"no extractable text: image-only/scanned PDF and {no_ocr}")
        if scanned:
            raise ParseError("no extractable text: image-only/scanned PDF, OCR found no text")
        raise ParseError("no extractable text: the PDF's pages have no text layer")
    try:
        title = str((reader.metadata or {}).get("/Title") or "")
    except PdfReadError:
        title = ""
    return title, sections


def _declared_pages(reader: object) -> int:
    """The page count the PDF's page tree root declares (/Root /Pages /Count), 0 when it is missing or unreadable."""
    try:
        return int(reader.trailer["/Root"]["/Pages"]["/Count"])  # type: ignore[attr-defined]
    except Exception:  # a damaged tree: the real count is checked after listing the pages
        return 0


# What pypdf raises on a damaged page (besides its own errors); anything else fails the whole file.
_PAGE_ERRORS: tuple[type[Exception], ...] = (KeyError, ValueError, TypeError, AttributeError, IndexError,
                                             ZeroDivisionError, RecursionError)
