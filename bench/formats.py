"""Parse time per page or file for each knowledge-base format, and OCR accuracy on synthetic A4 scans.

Baseline: an A4 PDF page with a text layer, parsed in the same run; every other row is a ratio against it. The
scans are the same kind of page rendered to a 300 dpi image (DejaVu Sans 11 pt for English, WenQuanYi Micro Hei
for Simplified Chinese) and embedded in a PDF, so OCR has to read the text back. Accuracy is difflib's
similarity ratio of the OCR text to the source text, spaces ignored (1.0 = every character right).

    .venv/bin/python bench/formats.py [--repeat 3]

Measured on the 2-core machine while other jobs ran (repeat 1): text-layer page 0.16 s; English A4 scan 37 s
(232x), accuracy 1.000, confidence 0.96; Chinese A4 scan 39 s (244x), accuracy 0.613, confidence 0.90 (Tesseract's
layout analysis splits each line's last characters "一次。" off into separate junk blocks, read out of order).
"""

from __future__ import annotations

import argparse
import difflib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baimo.knowledge.parsing import parse_bytes  # noqa: E402
from tests.knowledge import format_files as ff  # noqa: E402

EN_LINE = "The coolant pump of line {n} runs at {p} bar and its quartz filter is replaced every 90 days."
ZH_LINE = "第{n}号生产线的冷却泵工作压力为{p}巴，石英过滤器每九十天更换一次。"


def a4_scan(lines: list[str], font: str, size: int) -> bytes:
    """One A4 page (2480 x 3508 px at 300 dpi) of the lines as an image inside a PDF."""
    from fpdf import FPDF

    image = ff.text_image(lines, font=font, size=size, width=2480)
    pdf = FPDF(unit="pt", format="A4")
    pdf.add_page()
    pdf.image(image, x=0, y=0, w=595)
    return bytes(pdf.output())


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def accuracy(source: str, text: str) -> float:
    return difflib.SequenceMatcher(None, "".join(source.split()), "".join(text.split()), autojunk=False).ratio()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    en = [EN_LINE.format(n=i, p=30 + i) for i in range(1, 41)]
    zh = [ZH_LINE.format(n=i, p=30 + i) for i in range(1, 41)]
    rows: list[tuple[str, str, float, str]] = []
    files: list[tuple[str, str, bytes, str]] = [
        ("PDF page, text layer (baseline)", "page.pdf", ff.text_pdf("\n".join(en)), ""),
        ("PDF page, AES-256, empty password", "aes.pdf", ff.encrypted_pdf("\n".join(en), "AES-256"), ""),
        ("scanned A4 page, English (OCR)", "scan_en.pdf", a4_scan(en, ff.DEJAVU, 46), "\n".join(en)),
        ("scanned A4 page, Chinese (OCR)", "scan_zh.pdf", a4_scan(zh, ff.CJK_FONT, 50), "\n".join(zh)),
        ("PPTX, 20 slides", "deck.pptx", ff.pptx([(f"Slide {i}", en[:3], "notes") for i in range(20)]), ""),
        ("XLSX, 1000 rows x 4", "rows.xlsx",
         ff.xlsx({"Sheet1": [["id", "line", "bar", "note"]] + [[i, i % 40, 30.5, en[i % 40]] for i in range(1000)]}),
         ""),
        ("EPUB, 10 chapters", "book.epub", ff.epub("Bench", [(f"Chapter {i}", "".join(f"<p>{s}</p>" for s in en))
                                                           for i in range(10)]), ""),
        ("EML with a PDF attachment", "mail.eml", ff.eml("Pump report", "\n".join(en[:5]), attachments=[
            ("report.pdf", ff.text_pdf("\n".join(en)), "application/pdf")]), ""),
    ]
    for label, name, data, source in files:
        seconds, doc = timed(lambda data=data, name=name: parse_bytes(data, name), args.repeat)
        sections = doc.sections  # type: ignore[attr-defined]
        score = f"{accuracy(source, ' '.join(s.text for s in sections)):.3f}" if source else ""
        where = sections[0].location if source else ""
        rows.append((label, where, seconds, score))
    base = rows[0][2]
    print(f"{'file':38} {'seconds':>8} {'x baseline':>11} {'OCR accuracy':>13}  location")
    for label, where, seconds, score in rows:
        print(f"{label:38} {seconds:8.3f} {seconds / base:11.1f} {score:>13}  {where}")


if __name__ == "__main__":
    main()
