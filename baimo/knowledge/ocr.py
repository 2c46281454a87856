"""Optical character recognition for scanned PDF pages and image files, with a confidence per passage.

Engine: Tesseract 5 (Debian `tesseract-ocr`, `tesseract-ocr-eng`, `tesseract-ocr-chi-sim`), called through
`pytesseract`. Chosen for reliability and offline-ness: its trained models come in Debian packages, so nothing is
ever downloaded at run time (the `rapidocr` package, the other candidate, fetches its models from a model hub on
first use unless pinned to its old `rapidocr-onnxruntime` wheels), it runs on the CPU with no extra runtime, and it
reports a confidence (0-100) for every word. Languages: `eng+chi_sim` by default, i.e. English and Simplified
Chinese in one pass; `BAIMO_OCR_LANGUAGES` (Tesseract's `a+b` form) changes it, and languages whose model is not
installed are left out. When Tesseract itself is missing, OCR is unavailable and a scan is reported as such.

Pages are rendered for OCR at 300 dpi, the resolution Tesseract's documentation recommends (its models expect
a capital-letter height of about 20-30 px); small images are enlarged to reach it (`_MIN_SIDE_PX`).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass

from baimo.knowledge.parsing import ParseError, Section

log = logging.getLogger(__name__)

DEFAULT_LANGUAGES = "eng+chi_sim"
RENDER_DPI = 300  # Tesseract's recommended input resolution ("Improving the quality of the output", tessdoc)
_MAX_SIDE_PX = 5000  # a page rendered larger than this (posters, A0 plans) is scaled down to keep OCR bounded
_MIN_SIDE_PX = 1200  # images smaller than this (screenshots, phone crops) are enlarged 2x before OCR
# Tesseract "reads" photos, scribbles and stamps as strings of junk. A paragraph is kept as text when its mean
# word confidence is at least MIN_PARAGRAPH_CONFIDENCE and at least MIN_TEXT_SHARE of its characters are letters,
# digits or ordinary punctuation. Both are Baimo's own thresholds, measured on the scans of
# tests/knowledge/test_formats_ocr.py: scribbles read as junk score confidence 0.44 with a text share of 0.69; a
# blurred, speckled scan of real text 0.60 and 0.99; a scanned table ("North | 12.5 | 13.0") has a share of 0.87.
MIN_PARAGRAPH_CONFIDENCE = 0.30
MIN_TEXT_SHARE = 0.80
_ORDINARY_PUNCTUATION = frozenset(".,;:!?'\"()%-‘’“”。，！？：；（）《》")


class OcrUnavailable(ParseError):
    """Tesseract is not installed (or has none of the wanted languages): scans cannot be read."""


@dataclass
class OcrText:
    """The text Tesseract read on one page or image.

    paragraphs: in reading order (Tesseract's block/paragraph layout), words joined with spaces except between
    CJK characters; confidence: 0..1, the mean of the kept words' confidences weighted by their length in
    characters (0.0 when nothing was read)."""

    paragraphs: list[str]
    confidence: float


def ocr_location(where: str, confidence: float) -> str:
    """The location shown for OCR text: 'page 2 (OCR, confidence 0.91)'."""
    return f"{where} (OCR, confidence {confidence:.2f})"


@functools.lru_cache(maxsize=1)
def _installed_languages() -> frozenset[str]:
    """Tesseract's installed language models; empty when the tesseract program is missing."""
    import pytesseract

    if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
        return frozenset()
    try:
        return frozenset(pytesseract.get_languages(config=""))
    except (pytesseract.TesseractError, OSError) as exc:
        log.warning("tesseract --list-langs failed: %s", exc)
        return frozenset()


def languages() -> str:
    """The Tesseract language string to use ('eng+chi_sim'), from BAIMO_OCR_LANGUAGES or the default, restricted
    to installed models. Raises OcrUnavailable when Tesseract or all of the languages are missing."""
    wanted = [lang for lang in os.environ.get("BAIMO_OCR_LANGUAGES", DEFAULT_LANGUAGES).split("+") if lang.strip()]
    installed = _installed_languages()
    if not installed:
        raise OcrUnavailable("OCR is not available: the tesseract-ocr program is not installed")
    usable = [lang.strip() for lang in wanted if lang.strip() in installed]
    missing = sorted(set(wanted) - set(usable))
    if missing:
        log.warning("OCR languages not installed (tesseract-ocr-<lang> packages): %s", ", ".join(missing))
    if not usable:
        raise OcrUnavailable(f"OCR is not available: no Tesseract model for {'+'.join(wanted)} is installed")
    return "+".join(usable)


def available() -> bool:
    """Whether OCR can run here (Tesseract and at least one wanted language model installed)."""
    try:
        languages()
    except OcrUnavailable:
        return False
    return True


def _prepared(image: object) -> object:
    """Greyscale on a white background (transparent PNGs otherwise read as black), upright per its EXIF
    orientation, and scaled into [_MIN_SIDE_PX, _MAX_SIDE_PX] on its longer side."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(image)  # type: ignore[arg-type]
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    img = img.convert("L")
    side = max(img.size)
    if side and side < _MIN_SIDE_PX:
        img = img.resize((img.width * 2, img.height * 2), Image.Resampling.LANCZOS)
    elif side > _MAX_SIDE_PX:
        factor = _MAX_SIDE_PX / side
        img = img.resize((max(1, int(img.width * factor)), max(1, int(img.height * factor))),
                         Image.Resampling.LANCZOS)
    return img


def ocr_image(image: object) -> OcrText:
    """Read the text of one PIL image. Raises OcrUnavailable when Tesseract is missing."""
    import pytesseract

    from baimo.knowledge.pdf_text import join_lines

    lang = languages()
    try:
        data = pytesseract.image_to_data(_prepared(image), lang=lang, output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractError as exc:
        raise ParseError(f"OCR failed: {exc.message or exc}") from exc
    # Words grouped by (block, paragraph), then by line: Tesseract's layout analysis gives the reading order.
    paragraphs: dict[tuple[int, int], dict[int, list[str]]] = {}
    weights: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for word, conf, block, par, line in zip(data["text"], data["conf"], data["block_num"], data["par_num"],
                                            data["line_num"], strict=True):
        word = word.strip()
        if not word or float(conf) < 0:  # -1 marks layout boxes, not words
            continue
        paragraphs.setdefault((block, par), {}).setdefault(line, []).append(word)
        weights.setdefault((block, par), []).append((float(conf) / 100.0, len(word)))
    kept: list[str] = []
    total = chars = 0.0
    for key, lines in paragraphs.items():
        confs = weights[key]
        size = sum(n for _, n in confs)
        mean = sum(c * n for c, n in confs) / size
        text = join_lines([join_lines(words) for _, words in sorted(lines.items())])
        if mean < MIN_PARAGRAPH_CONFIDENCE or _text_share(text) < MIN_TEXT_SHARE:
            continue
        kept.append(text)
        total += mean * size
        chars += size
    return OcrText(paragraphs=kept, confidence=round(total / chars, 2) if chars else 0.0)


def _text_share(text: str) -> float:
    """The share of non-space characters that are letters, digits (any script) or ordinary punctuation."""
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalnum() or c in _ORDINARY_PUNCTUATION for c in chars) / len(chars) if chars else 0.0


def _section(where: str, text: OcrText) -> Section | None:
    if not text.paragraphs:
        return None
    return Section(text="\n\n".join(text.paragraphs), location=ocr_location(where, text.confidence))


def parse_image(data: bytes) -> tuple[str, list[Section]]:
    """An image file (PNG, JPEG, TIFF, WebP, BMP, GIF) as OCR sections: one 'image (OCR, confidence c)' section,
    or 'page N (OCR, …)' per frame of a multi-page TIFF. ParseError when the image is unreadable or has no text."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    languages()  # fail early, before decoding, when OCR is unavailable
    try:
        image = Image.open(io.BytesIO(data))
        frames = [frame.copy() for frame in ImageSequence.Iterator(image)]
    except UnidentifiedImageError as exc:
        raise ParseError("not a valid image: the image format is not recognised") from exc
    except Image.DecompressionBombError as exc:
        raise ParseError(f"image too large: {exc}") from exc
    except (OSError, EOFError, SyntaxError) as exc:  # Pillow's decoders report truncated or corrupt data so
        raise ParseError(f"not a valid image: {exc}") from exc
    if image.format != "TIFF":
        frames = frames[:1]  # a TIFF's frames are pages; a GIF's or WebP's are an animation of one picture
    multi = len(frames) > 1
    sections = [s for n, frame in enumerate(frames, start=1)
                if (s := _section(f"page {n}" if multi else "image", ocr_image(frame))) is not None]
    if not sections:
        raise ParseError("no extractable text: OCR found no text in the image")
    return "", sections


def ocr_pdf_pages(data: bytes, numbers: Iterable[int]) -> dict[int, Section]:
    """OCR sections for the given 1-based pages of a PDF, rendered with PDFium (`pypdfium2`, which decodes every
    image filter scanners use: JBIG2, CCITT G4, JPEG 2000). Pages where OCR found nothing are left out.
    Raises OcrUnavailable when Tesseract is missing; an encrypted PDF opens with the empty password."""
    import pypdfium2 as pdfium

    languages()
    found: dict[int, Section] = {}
    try:
        pdf = pdfium.PdfDocument(data, password="")
    except pdfium.PdfiumError as exc:
        raise ParseError(f"OCR could not render the PDF: {exc}") from exc
    try:
        for number in numbers:
            page = pdf[number - 1]
            width, height = page.get_size()  # in points (1/72 inch)
            scale = min(RENDER_DPI / 72, _MAX_SIDE_PX / max(width, height, 1))
            image = page.render(scale=scale, grayscale=True).to_pil()
            section = _section(f"page {number}", ocr_image(image))
            if section is not None:
                found[number] = section
            else:
                log.info("OCR found no text on PDF page %d", number)
    finally:
        pdf.close()
    return found
