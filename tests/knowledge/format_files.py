"""Real files of every supported format, written by the libraries that write them (fpdf2, Pillow, pypdf,
python-pptx, openpyxl, ebooklib, the standard `email` package), for the format tests."""

from __future__ import annotations

import io
from email.message import EmailMessage
from pathlib import Path

DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"  # Debian fonts-wqy-microhei (make system-deps)


def text_image(lines: list[str], *, font: str = DEJAVU, size: int = 34, width: int = 1400) -> object:
    """A white greyscale PIL image with the lines drawn in black, as a 300 dpi scan of 11-12 pt type looks."""
    from PIL import Image, ImageDraw, ImageFont

    face = ImageFont.truetype(font if Path(font).exists() else DEJAVU, size)
    step = int(size * 1.6)
    image = Image.new("L", (width, 2 * size + step * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((size, size + i * step), line, font=face, fill=0)
    return image


def image_bytes(lines: list[str], fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    text_image(lines, **kw).save(buf, format=fmt)  # type: ignore[attr-defined]
    return buf.getvalue()


def scanned_pdf(pages: list[list[str] | str], *, font: str = DEJAVU) -> bytes:
    """A PDF whose pages are images of text (no text layer), except pages given as a str, which are real text."""
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format=(420, 300))
    pdf.add_font("dv", "", DEJAVU)
    for page in pages:
        pdf.add_page()
        if isinstance(page, str):
            pdf.set_font("dv", size=12)
            pdf.multi_cell(380, 16, page)
        else:
            image = text_image(page, font=font)
            pdf.image(image, x=10, y=10, w=400)
    return bytes(pdf.output())


def text_pdf(text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.add_font("dv", "", DEJAVU)
    pdf.set_font("dv", size=12)
    pdf.multi_cell(180, 8, text)
    return bytes(pdf.output())


def encrypted_pdf(text: str, algorithm: str, user_password: str = "") -> bytes:
    """A text PDF encrypted by pypdf's writer: algorithm 'RC4-40', 'RC4-128', 'AES-128' or 'AES-256'."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(text))))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm=algorithm)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def pptx(slides: list[tuple[str, list[str], str]], *, table: list[list[str]] | None = None) -> bytes:
    """A deck with one 'Title and Content' slide per (title, bullets, notes); `table` goes on the last slide."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for title, bullets, notes in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        body = slide.placeholders[1].text_frame
        for i, bullet in enumerate(bullets):
            (body.paragraphs[0] if i == 0 else body.add_paragraph()).text = bullet
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    if table:
        shape = slide.shapes.add_table(len(table), len(table[0]), Inches(1), Inches(5), Inches(6), Inches(1))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                shape.table.cell(r, c).text = value
    buf = io.BytesIO()
    deck.save(buf)
    return buf.getvalue()


def xlsx(sheets: dict[str, list[list[object]]], *, title: str = "") -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.properties.title = title or None
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def epub(title: str, chapters: list[tuple[str, str]]) -> bytes:
    """An EPUB 3 book; each chapter is (toc title, XHTML body) in its own file, listed in the spine and the TOC."""
    from ebooklib import epub as ep

    book = ep.EpubBook()
    book.set_identifier("test-book")
    book.set_title(title)
    book.set_language("en")
    items = []
    for i, (name, body) in enumerate(chapters, start=1):
        item = ep.EpubHtml(title=name, file_name=f"chap_{i}.xhtml", lang="en")
        item.content = f"<html><body>{body}</body></html>"
        book.add_item(item)
        items.append(item)
    book.toc = [ep.Link(item.file_name, name, f"c{i}") for i, (item, (name, _)) in enumerate(zip(items, chapters,
                                                                                                      strict=True))]
    book.add_item(ep.EpubNcx())
    book.add_item(ep.EpubNav())
    book.spine = ["nav", *items]
    buf = io.BytesIO()
    ep.write_epub(buf, book)
    return buf.getvalue()


def eml(subject: str, body: str, *, html: str = "", attachments: list[tuple[str, bytes, str]] = ()) -> bytes:
    """A MIME message from Ada to Grace; `html` makes it multipart/alternative; attachments are (name, data,
    'type/subtype')."""
    msg = EmailMessage()
    msg["From"] = "Ada Lovelace <ada@example.org>"
    msg["To"] = "Grace Hopper <grace@example.org>"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 04 Mar 2025 10:15:00 +0000"
    if body:
        msg.set_content(body)
    if html:
        if body:
            msg.add_alternative(html, subtype="html")
        else:
            msg.set_content(html, subtype="html")
    for name, data, mime in attachments:
        maintype, subtype = mime.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()
