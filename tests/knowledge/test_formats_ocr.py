"""OCR of scans and images with the real Tesseract (Debian tesseract-ocr, eng + chi_sim): pages and frames keep
their number, the confidence follows the quality of the scan, noise is not text, and a machine without the OCR
models says so instead of indexing nothing silently."""

from __future__ import annotations

import io
import random
import re

import pytest

from baimo.knowledge.parsing import ParseError, parse_bytes
from tests.knowledge import format_files as ff

LOCATION = re.compile(r"^(?:page \d+|image) \(OCR, confidence (0\.\d\d|1\.00)\)$")


def confidence(location: str) -> float:
    match = LOCATION.match(location)
    assert match, location
    return float(match.group(1))


def test_pdf_mixing_text_and_scanned_pages_keeps_page_order() -> None:
    data = ff.scanned_pdf(["Alpha page has a text layer.", ["Bravo page is a scan of a letter."],
                           "Charlie page has a text layer too."])
    sections = parse_bytes(data, "mixed.pdf").sections
    assert [s.location.split(" (")[0] for s in sections] == ["page 1", "page 2", "page 3"]
    assert sections[0].location == "page 1" and sections[2].location == "page 3"
    assert sections[1].text == "Bravo page is a scan of a letter." and confidence(sections[1].location) > 0.8


def test_multipage_tiff_frames_are_pages() -> None:
    first = ff.text_image(["First frame mentions the lighthouse."])
    second = ff.text_image(["Second frame mentions the harbour."])
    buf = io.BytesIO()
    first.save(buf, format="TIFF", save_all=True, append_images=[second])  # type: ignore[attr-defined]
    doc = parse_bytes(buf.getvalue(), "fax.tiff")
    assert doc.format == "tiff"
    assert [(s.location.split(" (")[0], s.text) for s in doc.sections] == [
        ("page 1", "First frame mentions the lighthouse."), ("page 2", "Second frame mentions the harbour.")]


def test_transparent_png_and_exif_rotated_jpeg_are_read() -> None:
    from PIL import Image

    mask = ff.text_image(["Transparent sticker text"])
    sticker = Image.new("RGBA", mask.size, (0, 0, 0, 0))  # type: ignore[attr-defined]
    sticker.putalpha(mask.point(lambda v: 255 - v))  # type: ignore[attr-defined]  # black text, clear background
    buf = io.BytesIO()
    sticker.save(buf, format="PNG")
    assert parse_bytes(buf.getvalue(), "sticker.png").sections[0].text == "Transparent sticker text"

    photo = ff.text_image(["Phone photo held sideways"]).rotate(90, expand=True)  # type: ignore[attr-defined]
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the viewer turns the picture 90 degrees clockwise to show it upright
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", exif=exif, quality=95)
    assert parse_bytes(buf.getvalue(), "photo.jpg").sections[0].text == "Phone photo held sideways"


def test_confidence_is_lower_for_a_degraded_scan() -> None:
    from PIL import ImageFilter

    lines = ["Quarterly maintenance report for the northern depot.", "All valves were inspected and logged."]
    clean = ff.text_image(lines)
    rng = random.Random(7)
    degraded = clean.filter(ImageFilter.GaussianBlur(2.2))  # type: ignore[attr-defined]
    pixels = degraded.load()
    for _ in range(degraded.width * degraded.height // 12):
        x, y = rng.randrange(degraded.width), rng.randrange(degraded.height)
        pixels[x, y] = rng.choice((0, 255))
    scores = []
    for image in (clean, degraded):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        scores.append(confidence(parse_bytes(buf.getvalue(), "scan.png").sections[0].location))
    assert 0.0 <= scores[1] < scores[0] <= 1.0, scores


def test_scribbles_and_speckles_are_not_text() -> None:
    """Tesseract reads these scribbles as a paragraph of junk ('SN ~、人 7 一 \\ 以性 ma …', confidence 0.44):
    the junk filter of ocr.py leaves it out, so the file has no text."""
    from PIL import Image, ImageDraw

    rng = random.Random(0)
    scribbles = Image.new("L", (1000, 700), 255)
    draw = ImageDraw.Draw(scribbles)
    for _ in range(300):
        x, y = rng.randrange(1000), rng.randrange(700)
        draw.line((x, y, x + rng.randrange(-30, 30), y + rng.randrange(-30, 30)), fill=0, width=rng.choice((2, 3, 4)))
    speckles = Image.new("L", (900, 600), 255)
    for _ in range(4000):
        speckles.putpixel((rng.randrange(900), rng.randrange(600)), 0)
    for image in (scribbles, speckles):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        with pytest.raises(ParseError, match="^no extractable text: OCR found no text in the image$"):
            parse_bytes(buf.getvalue(), "noise.png")


def test_without_the_ocr_models_a_scan_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAIMO_OCR_LANGUAGES", "klingon")  # a language no Tesseract model exists for
    with pytest.raises(ParseError, match=r"^no extractable text: image-only/scanned PDF and OCR is not available: "
                                         r"no Tesseract model for klingon is installed$"):
        parse_bytes(ff.scanned_pdf([["Unreadable here"]]), "scan.pdf")
    with pytest.raises(ParseError, match="^OCR is not available: no Tesseract model for klingon is installed$"):
        parse_bytes(ff.image_bytes(["Unreadable here"]), "scan.png")
    monkeypatch.setenv("BAIMO_OCR_LANGUAGES", "klingon+eng")  # the installed ones are used
    assert parse_bytes(ff.image_bytes(["Readable here"]), "scan.png").sections[0].text == "Readable here"
