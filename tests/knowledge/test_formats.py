"""Every supported format through the real ingest into a real knowledge base (SQLite catalogue, LanceDB, the USE
encoder), then found by hybrid search with its place: scans by OCR with page and confidence, encrypted PDFs,
slides, sheet rows, CSV rows, EPUB chapters, e-mail and its attachments. Unreadable files are named with their
reason and the batch goes on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from baimo.knowledge.ingest import Ingestor, IngestReport, collect_files
from baimo.knowledge.retrieval import Retriever
from tests.knowledge import format_files as ff
from tests.knowledge.conftest import make_service

OCR_LOCATION = re.compile(r"^page (\d+) \(OCR, confidence (0\.\d\d|1\.00)\)$")


def write_files(folder: Path) -> None:
    folder.mkdir()
    (folder / "pump_scan.pdf").write_bytes(ff.scanned_pdf([
        "Page one has a real text layer about the maintenance schedule.",
        ["The coolant pump runs at 40 bar.", "Replace the quartz filter every 90 days."],
        ["采购合同必须由财务部门审批。", "仓库的钥匙由值班经理保管。"],
    ], font=ff.CJK_FONT))
    (folder / "whiteboard.png").write_bytes(ff.image_bytes(["Standup moved to the ochre room"]))
    (folder / "secured_aes128.pdf").write_bytes(ff.encrypted_pdf("The vault code word is marmalade.", "AES-128"))
    (folder / "secured_aes256.pdf").write_bytes(ff.encrypted_pdf("The ferry leaves from pier seventeen.", "AES-256"))
    (folder / "secured_rc4.pdf").write_bytes(ff.encrypted_pdf("The orchard grows medlar trees.", "RC4-128"))
    (folder / "locked.pdf").write_bytes(ff.encrypted_pdf("never read", "AES-256", user_password="secret"))
    (folder / "deck.pptx").write_bytes(ff.pptx([
        ("Quarterly results", ["Revenue grew twelve percent"], "Mention the heron project"),
        ("Hiring plan", ["Two welders join in autumn"], ""),
    ]))
    (folder / "stock.xlsx").write_bytes(ff.xlsx({"Stock": [["Product", "Price", "Warehouse"],
                                                           ["Widget", 3.5, "Lisbon"],
                                                           ["Sprocket", 12, "Tallinn"]]}))
    (folder / "staff.csv").write_text("name,role,office\nMireille,cartographer,Lyon\nTobias,glazier,Graz\n")
    (folder / "sea.epub").write_bytes(ff.epub("Sea Book", [
        ("The Sea", "<h1>The Sea</h1><p>Lanternfish glow in the deep water.</p>"),
        ("Rivers", "<p>The Danube crosses ten countries.</p>")]))
    (folder / "heron.eml").write_bytes(ff.eml("Heron report", "Hello Grace,\n\nThe heron nested on the boathouse.",
                                              attachments=[("count.pdf", ff.text_pdf("We counted 14 pelicans."),
                                                            "application/pdf")]))
    (folder / "blank_scan.pdf").write_bytes(ff.scanned_pdf([[]]))
    (folder / "corrupt.xlsx").write_bytes(b"PK\x03\x04 not a workbook")
    (folder / "empty.csv").write_bytes(b"")
    (folder / "broken.epub").write_bytes(b"not a zip at all")


class Base:
    def __init__(self, report: IngestReport, retriever: Retriever) -> None:
        self.report = report
        self.retriever = retriever

    def top(self, query: str, k: int = 3) -> list[tuple[str, str, str]]:
        return [(p.source, p.location, p.text) for p in self.retriever.search(["formats"], query, k=k)]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    root = tmp_path_factory.mktemp("formats")
    write_files(root / "docs")
    service = make_service(root)
    service.create("formats")
    files, missing = collect_files([root / "docs"])
    assert not missing
    report = Ingestor(service).add("formats", files)
    yield Base(report, Retriever(service))
    service.db.close()


def test_unreadable_files_are_named_with_their_reason_and_the_rest_is_indexed(base: Base) -> None:
    failed = {f["source"]: f["reason"] for f in base.report.failed}
    assert failed == {
        "locked.pdf": "encrypted PDF: password required",
        "blank_scan.pdf": "no extractable text: image-only/scanned PDF, OCR found no text",
        "corrupt.xlsx": "not a valid XLSX file: BadZipFile: File is not a zip file",
        "empty.csv": "empty file",
        "broken.epub": "not a valid EPUB file: Bad Zip file",
    }
    assert sorted(base.report.added) == sorted([
        "pump_scan.pdf", "whiteboard.png", "secured_aes128.pdf", "secured_aes256.pdf", "secured_rc4.pdf",
        "deck.pptx", "stock.xlsx", "staff.csv", "sea.epub", "heron.eml"])


def test_scanned_pdf_pages_are_found_with_page_and_ocr_confidence(base: Base) -> None:
    hits = base.top("coolant pump pressure in bar")
    source, location, text = hits[0]
    assert source == "pump_scan.pdf" and "The coolant pump runs at 40 bar." in text
    match = OCR_LOCATION.match(location)
    assert match and match.group(1) == "2" and float(match.group(2)) >= 0.8, location
    text_layer = [h for h in base.top("maintenance schedule") if h[0] == "pump_scan.pdf"]
    assert text_layer and text_layer[0][1] == "page 1"  # a page with a text layer is not OCR'd


def test_chinese_scan_is_found_by_a_chinese_query(base: Base) -> None:
    source, location, text = base.top("采购合同由哪个部门审批")[0]
    assert source == "pump_scan.pdf" and "采购合同必须由财务部门审批" in text
    match = OCR_LOCATION.match(location)
    assert match and match.group(1) == "3" and float(match.group(2)) >= 0.6, location


def test_image_file_is_found_by_ocr(base: Base) -> None:
    source, location, text = base.top("which room is the standup in")[0]
    assert source == "whiteboard.png" and text == "Standup moved to the ochre room"
    assert re.fullmatch(r"image \(OCR, confidence (0\.\d\d|1\.00)\)", location)


@pytest.mark.parametrize(("query", "source", "fact"), [
    ("vault code word", "secured_aes128.pdf", "marmalade"),
    ("where does the ferry leave", "secured_aes256.pdf", "pier seventeen"),
    ("what trees grow in the orchard", "secured_rc4.pdf", "medlar"),
])
def test_encrypted_pdfs_with_an_empty_password_are_searchable(base: Base, query: str, source: str, fact: str) -> None:
    assert (source, "page 1") == base.top(query)[0][:2] and fact in base.top(query)[0][2]


def test_office_ebook_and_mail_passages_keep_their_place(base: Base) -> None:
    assert base.top("welders join in autumn")[0][:2] == ("deck.pptx", "slide 2")
    source, location, text = base.top("heron project")[0]
    assert (source, location) == ("deck.pptx", "slide 1") and "Notes: Mention the heron project" in text
    assert base.top("sprocket warehouse Tallinn")[0] == (
        "stock.xlsx", "Stock rows 2-3", "Product: Widget; Price: 3.5; Warehouse: Lisbon\n\n"
                                        "Product: Sprocket; Price: 12; Warehouse: Tallinn")
    assert base.top("who is the glazier")[0][:2] == ("staff.csv", "rows 2-3")
    assert base.top("lanternfish glow")[0][:2] == ("sea.epub", "The Sea")
    assert base.top("Danube countries")[0][:2] == ("sea.epub", "Rivers")
    source, location, text = base.top("where did the heron nest")[0]
    assert (source, location) == ("heron.eml", "message") and "Subject: Heron report" in text
    assert base.top("how many pelicans were counted")[0][:2] == ("heron.eml", "attachment count.pdf page 1")
