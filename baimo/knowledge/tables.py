"""Spreadsheets (XLSX via openpyxl) and CSV/TSV (the standard `csv` module) as passages of rows.

Each data row becomes one line of "column: value" pairs, its header names spelled out, so a row found on its own
still says what its numbers are ("Product: Widget; Price: 3.5; Stock: 12"). Consecutive rows are grouped into
sections of at most ROW_GROUP_CHARS characters, so a small sheet is one passage and a big one many, each with its
row range: "Sheet1 rows 2-14" (XLSX) or "rows 2-14" (CSV). Row numbers are the sheet's own (the header is row 1).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Sequence

from baimo.knowledge.parsing import ParseError, Section, _decode_text

# Rows are grouped up to about this many characters: below the default chunk size (700, `chunking.py`), so a group
# is usually one chunk and its row range is exactly where the chunk came from.
ROW_GROUP_CHARS = 600
_SNIFF_BYTES = 64 * 1024
_NUMBER = re.compile(r"[-+]?(?:\d[\d,. ]*)?\d(?:[eE][-+]?\d+)?%?|\d{4}-\d\d-\d\d(?:[ T][\d:.]+)?|[\d:.]+")


def column_letter(index: int) -> str:
    """Spreadsheet column name of a 0-based index: 0 -> 'A', 25 -> 'Z', 26 -> 'AA'."""
    from openpyxl.utils import get_column_letter

    return get_column_letter(index + 1)


def cell_text(value: object) -> str:
    """A cell value as text: dates in ISO 8601 (without a midnight time), whole floats without '.0', None -> ''."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return " ".join(str(value).split())


def row_sections(rows: Iterable[tuple[int, Sequence[str]]], *, sheet: str = "") -> list[Section]:
    """Sections of grouped rows from (row number, cell texts) pairs in sheet order.

    The first non-empty row names the columns (an empty header cell is named by its column letter) and is not a
    passage itself, unless it is the only row; a first row of numbers and dates only is data, and then the
    columns are named by letter."""
    sections: list[Section] = []
    group: list[tuple[int, str]] = []
    prefix = f"{sheet} " if sheet else ""

    def flush() -> None:
        if group:
            first, last = group[0][0], group[-1][0]
            where = f"{prefix}row {first}" if first == last else f"{prefix}rows {first}-{last}"
            sections.append(Section(text="\n\n".join(t for _, t in group), location=where, heading=sheet))
            group.clear()

    header: list[str] | None = None  # None until the first non-empty row is seen; [] when it was data
    header_line: tuple[int, str] | None = None
    for number, cells in rows:
        if not any(cells):
            continue
        if header is None:
            if all(_NUMBER.fullmatch(c) for c in cells if c):
                header = []
            else:
                header = [c or column_letter(i) for i, c in enumerate(cells)]
                header_line = (number, "; ".join(c for c in cells if c))
                continue
        line = "; ".join(f"{header[i] if i < len(header) else column_letter(i)}: {c}"
                         for i, c in enumerate(cells) if c)
        if group and sum(len(t) + 2 for _, t in group) + len(line) > ROW_GROUP_CHARS:  # + 2: the "\n\n" between
            flush()
        group.append((number, line))
    if header_line is not None and not group and not sections:
        group.append(header_line)  # a sheet that is only a header row still has text worth finding
    flush()
    return sections


def parse_xlsx(data: bytes) -> tuple[str, list[Section]]:
    """Every worksheet's rows as sections located "Sheet rows a-b" (formulas give their last computed value).
    ParseError for a file that is not a workbook, or a password-protected (encrypted) one."""
    import openpyxl

    if data.startswith(b"\xd0\xcf\x11\xe0"):  # an OLE container: a legacy .xls or an encrypted workbook
        raise ParseError("not a valid XLSX file: an encrypted workbook (needs a password) or a legacy .xls file")
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        sections: list[Section] = []
        for sheet in workbook.worksheets:
            rows = ((n, [cell_text(v) for v in values])
                    for n, values in enumerate(sheet.iter_rows(values_only=True), start=1))
            sections.extend(row_sections(rows, sheet=sheet.title))
        title = workbook.properties.title or ""
    finally:
        workbook.close()
    return title, sections


def parse_csv(data: bytes, *, delimiter: str | None = None) -> tuple[str, list[Section]]:
    """CSV rows as sections located "rows a-b" (row numbers count records, the header is row 1); the dialect
    (delimiter, quoting) is guessed by `csv.Sniffer` among , ; tab and |, or `delimiter` is used (TSV)."""
    text = _decode_text(data)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:_SNIFF_BYTES],
                                                                      delimiters=delimiter or ",;\t|")
    except csv.Error:  # one column, or too little text to tell: the plain dialect
        dialect = csv.excel_tab if delimiter == "\t" else csv.excel
    try:
        rows = [(n, [cell_text(c) for c in row]) for n, row in enumerate(csv.reader(io.StringIO(text), dialect), 1)]
    except csv.Error as exc:
        raise ParseError(f"not a valid CSV file: {exc}") from exc
    return "", row_sections(rows)
