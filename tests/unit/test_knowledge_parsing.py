"""Parsing uploaded files into sections: every format, every encoding, right-to-left PDFs and broken files."""

from __future__ import annotations

import codecs
import io
import os
import re
from pathlib import Path

import pytest

from baimo.knowledge.parsing import SUPPORTED_SUFFIXES, ParseError, parse_bytes, parse_file
from baimo.knowledge.pdf_text import fix_rtl_line, guess_runs, join_lines, nfkc_presentation_forms

DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CJK_FONTS = ["/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
             "/usr/share/fonts/truetype/arphic/uming.ttc",
             "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"]  # fonts-wqy-microhei, installed by make system-deps

CAIRO = "القاهرة هي عاصمة مصر. يبلغ عدد سكانها 10 ملايين نسمة تقريبا."
AUC = ("تأسست الجامعة الأمريكية في القاهرة عام 1919، وهي تقدم برامج في علوم الحاسب (Computer Science) والهندسة "
       "والاقتصاد. يدرس فيها أكثر من 6500 طالب من 60 دولة حول العالم، ويبلغ عدد أعضاء هيئة التدريس نحو 450 عضوا.")
MIXED_AR = "هل تعرف اللغة العربية؟ نعم، أعرف Python و JavaScript أيضا."
HEBREW = ("בשנת 1948 הוכרזה מדינת ישראל. תל אביב היא המרכז הכלכלי, ובה חברות הייטק רבות כמו Google ו-Microsoft. "
          "האוכלוסייה מונה כ-9.5 מיליון תושבים.")


def make_pdf(*pages: str, shaping: bool = False, font: str = DEJAVU) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("dv", "", font)
    pdf.set_font("dv", size=12)
    if shaping:
        pdf.set_text_shaping(True)
    for text in pages:
        pdf.add_page()
        for para in text.split("\n\n"):
            pdf.set_x(10)
            pdf.multi_cell(190, 10, para)
            pdf.ln(6)
    return bytes(pdf.output())


# --- PDF ------------------------------------------------------------------------------------------------------

def test_latin_pdf_has_one_section_per_page_with_paragraphs_and_dehyphenation() -> None:
    first = ("Retrieval augmented generation combines a search step with a language model. The documents are "
             "split into chunks, embedded and stored in a vector index for later lookup by similarity. This is "
             "an exam-\nple of a hyphenated word.\n\nA second paragraph follows after a gap.")
    doc = parse_bytes(make_pdf(first, "Page two talks about something else entirely."), "report.pdf")
    assert doc.format == "pdf" and doc.source == "report.pdf" and doc.title == "report"
    assert [s.location for s in doc.sections] == ["page 1", "page 2"]
    page1 = doc.sections[0].text
    assert "an example of a hyphenated word." in page1
    assert "language model. The documents are split" in page1  # wrapped lines are joined with spaces
    assert page1.split("\n\n")[-1] == "A second paragraph follows after a gap."
    assert doc.sections[1].text == "Page two talks about something else entirely."


def test_pdf_title_comes_from_metadata() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title("Annual Report 2024")
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="Some body text.")
    assert parse_bytes(bytes(pdf.output()), "x.pdf").title == "Annual Report 2024"


@pytest.mark.parametrize("shaping", [False, True], ids=["unshaped-logical-stream", "shaped-visual-stream"])
@pytest.mark.parametrize("text", [CAIRO, AUC, MIXED_AR, HEBREW], ids=["cairo", "auc-multiline", "mixed", "hebrew"])
def test_rtl_pdf_comes_out_in_logical_order(text: str, shaping: bool) -> None:
    # Without shaping fpdf2 stores logical order and pypdf reverses each RTL run; with shaping it stores
    # visual order with Arabic ligatures and the sentence mark at the visual left. Both must read logically.
    section = parse_bytes(make_pdf(text, shaping=shaping), "rtl.pdf").sections[0]
    assert section.text == text


def test_arabic_pdf_capital_sentence_is_readable() -> None:
    for shaping in (False, True):
        text = parse_bytes(make_pdf(CAIRO, shaping=shaping), "cairo.pdf").sections[0].text
        assert "القاهرة هي عاصمة مصر" in text
        assert text.endswith("تقريبا.")  # the period that sat at the visual start is back at the end


def test_arabic_presentation_forms_become_base_letters() -> None:
    forms = "ﻣﺮﺣﺒﺎ ﺑﻜﻢ ﻓﻲ ﺍﻟﻘﺎﻫﺮﺓ"  # what some producers map glyphs to
    for shaping in (False, True):
        assert parse_bytes(make_pdf(forms, shaping=shaping), "f.pdf").sections[0].text == "مرحبا بكم في القاهرة"


def test_arabic_indic_digits_and_brackets_keep_their_order() -> None:
    text = "كلمة (أخرى) هنا وعددها ١٢٣ كلمة."
    for shaping in (False, True):
        assert parse_bytes(make_pdf(text, shaping=shaping), "d.pdf").sections[0].text == text


def test_fix_rtl_line_on_pypdf_runs() -> None:
    # pypdf's runs for a logical-order stream: each RTL run reversed in place.
    assert fix_rtl_line([" اهناكس ددع غلبي .رصم ةمصاع يه ةرهاقلا", "10 ", ".ابيرقت ةمسن نييالم"]) == CAIRO
    # ... and for a visual-order stream: runs right, run order visual, period at the visual start.
    assert fix_rtl_line([".", " ملايين نسمة تقريبا", "10 ", "القاهرة هي عاصمة مصر. يبلغ عدد سكانها"]) == CAIRO
    # Hebrew final letters at word starts mean reversed words.
    assert fix_rtl_line([".לארשי לש הריבה ריע איה םילשורי"]) == "ירושלים היא עיר הבירה של ישראל."
    # Lines without RTL letters are left alone.
    assert fix_rtl_line(["plain  Latin text"]) == "plain  Latin text"


def test_guessed_runs_when_pypdf_runs_are_unknown() -> None:
    line = " اهناكس ددع غلبي .رصم ةمصاع يه ةرهاقلا10 .ابيرقت ةمسن نييالم"
    assert fix_rtl_line(guess_runs(line)) == CAIRO


def test_page_score_decides_lines_without_clues() -> None:
    # "مرحبا بكم" alone has no article, no ة, no punctuation: the page's evidence decides.
    assert fix_rtl_line(["مكب ابحرم"], page_score=3.0) == "مرحبا بكم"
    assert fix_rtl_line(["مرحبا بكم"], page_score=-3.0) == "مرحبا بكم"


def test_nfkc_only_touches_arabic_presentation_forms() -> None:
    assert nfkc_presentation_forms("ﬁne ① ﻻ") == "ﬁne ① لا"


def test_cjk_lines_join_without_spaces() -> None:
    assert join_lines(["日本語の文章は", "スペースなしで続きます。"]) == "日本語の文章はスペースなしで続きます。"
    assert join_lines(["exam-", "ple and well-", "Known"]) == "example and well- Known"


def test_japanese_pdf_when_a_cjk_font_is_installed() -> None:
    font = next((f for f in CJK_FONTS if os.path.exists(f)), None)
    if font is None:
        pytest.skip("no CJK font installed (DejaVu has no CJK glyphs)")
    text = "日本語のテキストです。二つ目の文です。"
    assert parse_bytes(make_pdf(text, font=font), "ja.pdf").sections[0].text == text


def test_corrupt_pdf_is_a_parse_error_with_reason() -> None:
    with pytest.raises(ParseError, match="not a valid PDF"):
        parse_bytes(os.urandom(4000), "broken.pdf")
    with pytest.raises(ParseError, match="not a valid PDF"):
        parse_bytes(b"%PDF-1.7\n" + os.urandom(2000), "truncated.pdf")
    with pytest.raises(ParseError, match="^empty file$"):
        parse_bytes(b"", "empty.pdf")


def test_encrypted_pdf() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="secret text")
    pdf.set_encryption(owner_password="owner", user_password="user")
    with pytest.raises(ParseError, match="^encrypted PDF: password required$"):
        parse_bytes(bytes(pdf.output()), "locked.pdf")


def test_pdf_with_only_an_owner_password_opens() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="readable text")
    pdf.set_encryption(owner_password="owner")
    assert parse_bytes(bytes(pdf.output()), "owner.pdf").sections[0].text == "readable text"


def test_pdf_without_text() -> None:
    """A page with only drawings has no text layer; a page that draws an image is a scan (F18 in
    tests/e2e/test_knowledge_field_cases.py has a real one)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 100, 100, style="F")
    with pytest.raises(ParseError, match=r"^no extractable text: the PDF's pages have no text layer$"):
        parse_bytes(bytes(pdf.output()), "drawing.pdf")


# --- DOCX -----------------------------------------------------------------------------------------------------

def make_docx(build) -> bytes:  # type: ignore[no-untyped-def]
    import docx

    document = docx.Document()
    build(document)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def test_docx_headings_tables_and_body_order() -> None:
    def build(d) -> None:  # type: ignore[no-untyped-def]
        d.add_heading("User Manual", 0)
        d.add_paragraph("Welcome to the manual.")
        d.add_heading("Install", 1)
        d.add_paragraph("Download the installer.")
        table = d.add_table(rows=2, cols=2)
        table.cell(0, 0).text, table.cell(0, 1).text = "OS", "Command"
        table.cell(1, 0).text, table.cell(1, 1).text = "Linux", "apt install baimo"
        d.add_paragraph("After the table.")
        d.add_heading("Linux", 2)
        d.add_paragraph("Use apt.")
        d.add_heading("Usage", 1)
        d.add_paragraph("Run baimo serve.")

    doc = parse_bytes(make_docx(build), "manual.docx")
    assert doc.format == "docx" and doc.title == "User Manual"
    assert [(s.location, s.heading) for s in doc.sections] == [
        ("User Manual", "User Manual"),
        ("User Manual > Install", "User Manual > Install"),
        ("User Manual > Install > Linux", "User Manual > Install > Linux"),
        ("User Manual > Usage", "User Manual > Usage"),
    ]
    assert doc.sections[1].text == ("Download the installer.\n\nOS | Command\n\nLinux | apt install baimo\n\n"
                                    "After the table.")


def test_docx_without_headings_uses_paragraph_numbers() -> None:
    def build(d) -> None:  # type: ignore[no-untyped-def]
        for i in range(3):
            d.add_paragraph(f"Paragraph number {i + 1}.")
        d.add_paragraph("")
        d.add_paragraph("x" * 4000)

    doc = parse_bytes(make_docx(build), "notes.docx")
    assert doc.title == "notes"
    assert [s.location for s in doc.sections] == ["paragraphs 1-3", "paragraph 4"]
    assert doc.sections[0].text.startswith("Paragraph number 1.\n\nParagraph number 2.")


def test_docx_merged_cells_are_read_once() -> None:
    def build(d) -> None:  # type: ignore[no-untyped-def]
        table = d.add_table(rows=1, cols=3)
        table.cell(0, 0).text = "left"
        table.cell(0, 1).merge(table.cell(0, 2)).text = "merged"

    assert parse_bytes(make_docx(build), "t.docx").sections[0].text == "left | merged"


def test_corrupt_docx() -> None:
    with pytest.raises(ParseError, match="not a valid DOCX"):
        parse_bytes(b"PK\x03\x04 not really a zip", "bad.docx")
    buf = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "not a word document")
    with pytest.raises(ParseError, match="DOCX"):
        parse_bytes(buf.getvalue(), "zip.docx")


# --- HTML -----------------------------------------------------------------------------------------------------

PAGE = """<!doctype html><html><head><title> Baimo   Guide </title><style>p { color: red }</style>
<script>var secret = "script text";</script></head><body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<p>Intro with <b>bold</b> and <a href="#">a link</a>.</p>
<h1>Install</h1><p>First line<br>second line</p>
<h2>Linux</h2><ul><li>apt</li><li>snap</li></ul>
<table><tr><td>cell 1</td><td>cell 2</td></tr></table>
<h3>Debian</h3><div>Debian &amp; Ubuntu<div>nested div</div></div>
<h2>Windows</h2><p hidden>hidden text</p><p>Use   the
   installer.</p>
<footer>Copyright footer</footer><script>more()</script></body></html>"""


def test_html_sections_follow_nested_headings() -> None:
    doc = parse_bytes(PAGE.encode(), "guide.HTML")
    assert doc.format == "html" and doc.title == "Baimo Guide"
    assert [s.location for s in doc.sections] == ["", "Install", "Install > Linux", "Install > Linux > Debian",
                                                  "Install > Windows"]
    by_loc = {s.location: s.text for s in doc.sections}
    assert by_loc[""] == "Intro with bold and a link."
    assert by_loc["Install"] == "First line\n\nsecond line"
    assert by_loc["Install > Linux"] == "apt\n\nsnap\n\ncell 1 cell 2"
    assert by_loc["Install > Linux > Debian"] == "Debian & Ubuntu\n\nnested div"
    assert by_loc["Install > Windows"] == "Use the installer."
    everything = " ".join(by_loc.values())
    for dropped in ("script text", "more()", "color", "Home", "Copyright", "hidden text"):
        assert dropped not in everything


def test_html_title_falls_back_to_h1_and_rtl_text_is_kept() -> None:
    page = ('<html dir="rtl" lang="ar"><body><h1>دليل المستخدم</h1><p>القاهرة هي عاصمة مصر.</p>'
            '<h2>التثبيت</h2><p>استخدم Python 3.11 أو أحدث.</p></body></html>')
    doc = parse_bytes(page.encode(), "ar.htm")
    assert doc.title == "دليل المستخدم"
    assert [(s.location, s.text) for s in doc.sections] == [
        ("دليل المستخدم", "القاهرة هي عاصمة مصر."),
        ("دليل المستخدم > التثبيت", "استخدم Python 3.11 أو أحدث."),
    ]


def test_html_declared_charset() -> None:
    page = '<html><head><meta charset="windows-1252"></head><body><p>Caf\xe9 cr\xe8me</p></body></html>'
    assert parse_bytes(page.encode("cp1252"), "c.html").sections[0].text == "Café crème"


# --- Markdown -------------------------------------------------------------------------------------------------

MARKDOWN = """---
title: Front matter title
---
Preamble with a [link](https://example.com), ![logo](logo.png)an image, **bold**, *emphasis*, `code`
and snake_case_name <span>html</span>.

# Guide

## Install

Run this:

```bash
# not a heading
pip install baimo  # *not* emphasis
```

### Linux
Use apt.

Windows
-------
Use the installer.

Reference
=========
| Key | Value |
|-----|-------|
| a   | 1     |

- first item
- second item
"""


def test_markdown_sections_code_fences_and_setext_headings() -> None:
    doc = parse_bytes(MARKDOWN.encode(), "guide.md")
    assert doc.format == "md" and doc.title == "Guide"
    assert [s.heading for s in doc.sections] == ["", "Guide > Install", "Guide > Install > Linux",
                                                 "Guide > Windows", "Reference"]
    assert [s.location for s in doc.sections] == [s.heading for s in doc.sections]
    by_heading = {s.heading: s.text for s in doc.sections}
    assert by_heading[""] == ("Preamble with a link, an image, bold, emphasis, code\n"
                              "and snake_case_name html.")
    assert by_heading["Guide > Install"] == "Run this:\n\n# not a heading\npip install baimo  # *not* emphasis"
    assert by_heading["Guide > Windows"] == "Use the installer."
    assert by_heading["Reference"] == "Key Value\na 1\n\nfirst item\nsecond item"


def test_markdown_title_from_front_matter_or_stem() -> None:
    assert parse_bytes(b"---\ntitle: My Notes\n---\nJust text.", "n.markdown").title == "My Notes"
    doc = parse_bytes(b"Just text, no heading.", "plain-notes.md")
    assert doc.title == "plain-notes" and doc.sections[0].location == ""


# --- TXT and encodings ----------------------------------------------------------------------------------------

TEXT = "Première ligne — café.\n\nSecond paragraph: naïve façade."


@pytest.mark.parametrize("data", [
    TEXT.encode("utf-8"),
    codecs.BOM_UTF8 + TEXT.encode("utf-8"),
    TEXT.encode("utf-16"),  # with BOM
    codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
    TEXT.replace("—", "-").encode("latin-1"),
    TEXT.encode("cp1252"),
], ids=["utf8", "utf8-bom", "utf16", "utf16-be", "latin1", "cp1252"])
def test_txt_encodings(data: bytes) -> None:
    doc = parse_bytes(data, "notes.txt")
    assert doc.format == "txt" and doc.title == "notes"
    assert len(doc.sections) == 1 and doc.sections[0].location == "" and doc.sections[0].heading == ""
    assert doc.sections[0].text.replace("-", "—") == TEXT


def test_txt_windows_newlines_and_blank_lines() -> None:
    doc = parse_bytes(b"line one\r\nline two\r\n\r\n\r\n  \r\nnext para\r\n", "w.txt")
    assert doc.sections[0].text == "line one\nline two\n\nnext para"


def test_binary_junk_and_empty_files() -> None:
    with pytest.raises(ParseError, match="binary"):
        parse_bytes(b"\x00\x01\x02binary\x00junk", "blob.txt")
    with pytest.raises(ParseError, match="^no extractable text: the file contains only whitespace$"):
        parse_bytes(b"  \n\n \t ", "blank.txt")
    with pytest.raises(ParseError, match="^no extractable text: the file contains only whitespace$"):
        parse_bytes(codecs.BOM_UTF8 + "\u3000\n\u200b".encode(), "blank.md")
    with pytest.raises(ParseError, match="^empty file$"):
        parse_bytes(b"", "empty.txt")
    with pytest.raises(ParseError, match="^empty file$"):
        parse_bytes(b"", "empty.docx")
    with pytest.raises(ParseError, match="^no extractable text: the HTML has no visible text$"):
        parse_bytes(b"<html><body><script>x()</script></body></html>", "empty.html")
    with pytest.raises(ParseError, match="^no extractable text: the MD file has no text$"):
        parse_bytes(b"![diagram](diagram.png)\n", "only-image.md")


def test_unsupported_suffix() -> None:
    with pytest.raises(ParseError, match=r"unsupported file type \.xyz \(supported: .*\.pdf"):
        parse_bytes(b"data", "file.xyz")
    with pytest.raises(ParseError, match="unsupported file type"):
        parse_bytes(b"data", "README")
    assert {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".pptx", ".xlsx", ".csv", ".tsv", ".epub",
            ".eml", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"} == SUPPORTED_SUFFIXES


def test_parse_file_uses_basename_and_case_insensitive_suffix(tmp_path: Path) -> None:
    path = tmp_path / "Report.PDF"
    path.write_bytes(make_pdf("Hello from a file on disk."))
    doc = parse_file(path)
    assert doc.source == "Report.PDF" and doc.format == "pdf" and doc.title == "Report"
    assert doc.sections[0].text == "Hello from a file on disk."
    with pytest.raises(ParseError, match="cannot read file"):
        parse_file(tmp_path / "missing.txt")


# --- encrypted PDFs, PPTX, XLSX, CSV, EPUB, EML (files written by the libraries that write them) ------------------

@pytest.mark.parametrize("algorithm", ["RC4-40", "RC4-128", "AES-128", "AES-256"])
def test_pdf_encrypted_with_an_empty_user_password_opens(algorithm: str) -> None:
    from tests.knowledge.format_files import encrypted_pdf

    doc = parse_bytes(encrypted_pdf(f"The secret word is pelican ({algorithm}).", algorithm), "secured.pdf")
    assert [(s.location, s.text) for s in doc.sections] == [("page 1", f"The secret word is pelican ({algorithm}).")]


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_pdf_needing_a_user_password_is_named(algorithm: str) -> None:
    from tests.knowledge.format_files import encrypted_pdf

    with pytest.raises(ParseError, match="^encrypted PDF: password required$"):
        parse_bytes(encrypted_pdf("hidden", algorithm, user_password="secret"), "locked.pdf")


def test_pptx_one_section_per_slide_with_title_body_table_and_notes() -> None:
    from tests.knowledge.format_files import pptx

    data = pptx([("Quarterly results", ["Revenue grew 12 %", "Costs fell in March"], "Mention the heron project"),
                 ("Roadmap", ["Launch in May"], "")], table=[["Region", "Sales"], ["North", "120"]])
    doc = parse_bytes(data, "deck.pptx")
    assert doc.format == "pptx" and doc.title == "Quarterly results"
    assert [(s.location, s.heading) for s in doc.sections] == [("slide 1", "Quarterly results"),
                                                                ("slide 2", "Roadmap")]
    assert doc.sections[0].text == "Revenue grew 12 %\n\nCosts fell in March\n\nNotes: Mention the heron project"
    assert doc.sections[1].text == "Launch in May\n\nRegion | Sales\n\nNorth | 120"


def test_pptx_slide_with_only_a_title_keeps_it() -> None:
    from tests.knowledge.format_files import pptx

    doc = parse_bytes(pptx([("Thank you", [], "")]), "end.pptx")
    assert [(s.location, s.text) for s in doc.sections] == [("slide 1", "Thank you")]


def test_xlsx_rows_as_header_value_pairs_per_sheet() -> None:
    import datetime as dt

    from tests.knowledge.format_files import xlsx

    data = xlsx({"Stock": [["Product", "Price", None, "Added"], ["Widget", 3.5, "spare", dt.datetime(2024, 5, 1)],
                           [], ["Gadget", 10.0, None, None]],
                 "Empty": [], "Labels": [["north", "south"]], "Numbers": [[1, 2], [3, 4]]}, title="Inventory")
    doc = parse_bytes(data, "book.xlsx")
    assert doc.format == "xlsx" and doc.title == "Inventory"
    assert [(s.location, s.heading, s.text) for s in doc.sections] == [
        ("Stock rows 2-4", "Stock",
         "Product: Widget; Price: 3.5; C: spare; Added: 2024-05-01\n\nProduct: Gadget; Price: 10"),
        ("Labels row 1", "Labels", "north; south"),  # a sheet that is only a header row
        ("Numbers rows 1-2", "Numbers", "A: 1; B: 2\n\nA: 3; B: 4"),  # no header: columns named by letter
    ]


def test_xlsx_big_sheet_is_cut_into_row_ranges() -> None:
    from baimo.knowledge.tables import ROW_GROUP_CHARS
    from tests.knowledge.format_files import xlsx

    rows = [["id", "note"]] + [[i, f"note number {i} about the heron colony"] for i in range(1, 101)]
    sections = parse_bytes(xlsx({"Log": rows}), "log.xlsx").sections
    assert len(sections) > 1 and all(len(s.text) <= ROW_GROUP_CHARS for s in sections)
    ranges = [tuple(map(int, re.fullmatch(r"Log rows? (\d+)(?:-(\d+))?", s.location).groups(-1))) for s in sections]
    ranges = [(a, a if b == -1 else b) for a, b in ranges]
    assert ranges[0][0] == 2 and ranges[-1][1] == 101
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))  # contiguous, no row lost
    assert "id: 57; note: note number 57 about the heron colony" in "\n\n".join(s.text for s in sections)


def test_csv_dialects_and_encodings() -> None:
    doc = parse_bytes(b'name,city,age\r\nAlice,Paris,30\r\nBob,"Rome, Italy",41\r\n', "people.csv")
    assert doc.format == "csv"
    assert [(s.location, s.text) for s in doc.sections] == [
        ("rows 2-3", "name: Alice; city: Paris; age: 30\n\nname: Bob; city: Rome, Italy; age: 41")]
    semi = parse_bytes("Name;Stadt\nJürgen;München\n".encode("cp1252"), "de.csv").sections
    assert [(s.location, s.text) for s in semi] == [("row 2", "Name: Jürgen; Stadt: München")]
    tsv = parse_bytes("产品\t价格\n水泵\t40\n".encode(), "cn.tsv").sections
    assert [(s.location, s.text) for s in tsv] == [("row 2", "产品: 水泵; 价格: 40")]
    numbers = parse_bytes(b"1,2\n3,4\n", "n.csv").sections
    assert [(s.location, s.text) for s in numbers] == [("rows 1-2", "A: 1; B: 2\n\nA: 3; B: 4")]


def test_epub_chapters_in_spine_order_under_their_toc_titles() -> None:
    from tests.knowledge.format_files import epub

    data = epub("Sea Book", [("The Sea", "<h1>The Sea</h1><p>Waves are tall.</p><h2>Tides</h2><p>Twice a day.</p>"),
                             ("Rivers", "<p>Rivers flow to the sea.</p>")])
    doc = parse_bytes(data, "book.epub")
    assert doc.format == "epub" and doc.title == "Sea Book"
    assert [(s.location, s.text) for s in doc.sections] == [
        ("The Sea", "Waves are tall."), ("The Sea > Tides", "Twice a day."), ("Rivers", "Rivers flow to the sea.")]


def test_eml_headers_body_and_attachments() -> None:
    from tests.knowledge.format_files import eml, text_pdf

    data = eml("Heron report", "Hello Grace,\n\nThe heron came back.",
               attachments=[("report.pdf", text_pdf("The attached report counts 14 pelicans."), "application/pdf"),
                            ("notes.md", b"# Counts\n\nSix egrets.", "text/markdown"),
                            ("blob.bin", b"\x00\x01", "application/octet-stream"),
                            ("broken.docx", b"PK not a zip", "application/octet-stream")])
    doc = parse_bytes(data, "mail.eml")
    assert doc.format == "eml" and doc.title == "Heron report"
    assert [(s.location, s.text) for s in doc.sections] == [
        ("message", "From: Ada Lovelace <ada@example.org>\nTo: Grace Hopper <grace@example.org>\n"
                    "Subject: Heron report\nDate: Tue, 04 Mar 2025 10:15:00 +0000\n\n"
                    "Hello Grace,\n\nThe heron came back."),
        ("attachment report.pdf page 1", "The attached report counts 14 pelicans."),
        ("attachment notes.md Counts", "Six egrets."),
    ]


def test_eml_html_body_becomes_text_and_plain_is_preferred() -> None:
    from tests.knowledge.format_files import eml

    html_only = parse_bytes(eml("Hi", "", html="<html><body><p>Hello <b>there</b></p><script>x()</script>"
                                               "<p>Second</p></body></html>"), "h.eml")
    assert html_only.sections[0].text.endswith("\n\nHello there\n\nSecond")
    both = parse_bytes(eml("Hi", "Plain words.", html="<p>HTML words.</p>"), "b.eml")
    assert both.sections[0].text.endswith("\n\nPlain words.") and "HTML words" not in both.sections[0].text


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("bad.xlsx", b"PK\x03\x04junk", "^not a valid XLSX file: "),
    ("legacy.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "^not a valid XLSX file: an encrypted workbook"),
    ("bad.pptx", b"not a zip", "^not a valid PPTX file: "),
    ("bad.epub", b"not a zip", "^not a valid EPUB file: "),
    ("bad.eml", b"just some words, no headers", "^not a valid EML file: no e-mail headers"),
    ("bad.png", b"\x89PNG\r\n\x1a\n junk", "^not a valid image"),
    ("bin.csv", b"\x00\x01\x02\x00binary", "^binary file, not text"),
    ("blank.csv", b" ,  ,\n,,\n", "^no extractable text"),
])
def test_broken_files_of_the_new_formats_are_named(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_bytes(data, name)


def test_empty_workbook_and_deck_have_no_text() -> None:
    from tests.knowledge.format_files import pptx, xlsx

    with pytest.raises(ParseError, match="^no extractable text: the XLSX file has no text$"):
        parse_bytes(xlsx({"Sheet1": []}), "empty.xlsx")
    with pytest.raises(ParseError, match="^no extractable text: the PPTX file has no text$"):
        parse_bytes(pptx([]), "empty.pptx")
