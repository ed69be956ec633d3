"""Tests for medimg_core.tables.workbook: an .xlsx is checked before openpyxl parses it."""

from __future__ import annotations

import functools
import io
import zipfile

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medimg_core.tables.workbook as workbook
from medimg_core.errors import DataError, LimitError, MedimgError
from medimg_core.tables.loading import Limits, load_table
from medimg_core.tables.workbook import MAX_XML_DEPTH, column_index, scan_workbook

SHEET = "xl/worksheets/sheet1.xml"
NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'


@functools.cache
def small_workbook() -> bytes:
    """The same bytes every call (the file records when it was written)."""
    buffer = io.BytesIO()
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_excel(buffer, index=False)
    return buffer.getvalue()


def with_part(raw: bytes, name: str, content: bytes, *, level: int = 6) -> bytes:
    """``raw`` with the part ``name`` replaced by (or added as) ``content``."""
    source = zipfile.ZipFile(io.BytesIO(raw))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as out:
        for info in source.infolist():
            if info.filename != name:
                out.writestr(info.filename, source.read(info.filename))
        out.writestr(name, content)
    return buffer.getvalue()


def sheet_xml(body: bytes) -> bytes:
    return b"<worksheet " + NS.encode() + b"><sheetData>" + body + b"</sheetData></worksheet>"


def scan(raw: bytes, *, cap: int = 2**30, ratio: float = 100.0) -> workbook.WorkbookScan:
    return scan_workbook(raw, "t.xlsx", max_unpacked_bytes=cap, max_ratio=ratio, setting="S_ENV")


def test_public_names_are_exported() -> None:
    for name in workbook.__all__:
        assert hasattr(workbook, name)


def test_column_letters_to_index() -> None:
    assert [column_index(c) for c in ("A", "b", "Z", "AA", "AZ", "XFD")] == [
        0,
        1,
        25,
        26,
        51,
        16383,
    ]


def test_an_ordinary_workbook_passes_and_reports_its_size() -> None:
    raw = small_workbook()
    result = scan(raw)
    declared = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(raw)).infolist())
    assert result.unpacked_bytes == declared
    assert result.formulas_without_result == {}


def test_unpacked_size_over_the_cap_is_refused_from_the_directory() -> None:
    # A bomb in miniature: 3 MiB of repeated rows compress to a few kB.
    row = b'<row><c t="n"><v>1</v></c></row>'
    raw = with_part(small_workbook(), SHEET, sheet_xml(row * (3 * 2**20 // len(row))))
    assert len(raw) < 100_000
    with pytest.raises(LimitError, match=r"unpacks to 3\.\d MB, over the 2\.0 MB.*setting S_ENV"):
        scan(raw, cap=2 * 2**20)


def test_a_part_that_expands_like_a_zip_bomb_is_refused() -> None:
    row = b'<row><c t="n"><v>1</v></c></row>'
    raw = with_part(small_workbook(), SHEET, sheet_xml(row * (2 * 2**20 // len(row))), level=9)
    with pytest.raises(LimitError, match=r"'xl/worksheets/sheet1\.xml' expands [\d,]+-fold"):
        scan(raw, ratio=100)
    assert scan(raw, ratio=10**6).unpacked_bytes > 2 * 2**20


def test_deep_nesting_is_refused_without_recursion() -> None:
    depth = 50 * MAX_XML_DEPTH
    deep = b"<x>" * depth + b"</x>" * depth
    raw = with_part(small_workbook(), SHEET, sheet_xml(deep))
    with pytest.raises(DataError, match=rf"nests elements more than {MAX_XML_DEPTH} deep"):
        scan(raw)
    # Through the loader too: one clear message, before openpyxl sees the part.
    with pytest.raises(DataError, match="nests elements"):
        load_table(raw, name="t.xlsx")


@pytest.mark.parametrize(
    ("prolog", "reason"),
    [
        (
            b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>',
            "document type",
        ),
        (b'<!DOCTYPE w SYSTEM "file:///etc/passwd">', "document type"),
    ],
)
def test_document_types_and_entities_are_refused(prolog: bytes, reason: str) -> None:
    raw = with_part(small_workbook(), "xl/workbook.xml", prolog + b"<workbook/>")
    with pytest.raises(DataError, match=rf"'xl/workbook\.xml' declares a {reason}"):
        load_table(raw, name="t.xlsx")


def test_malformed_xml_is_one_clear_error() -> None:
    raw = with_part(small_workbook(), SHEET, b"<worksheet><sheetData><row>")
    with pytest.raises(DataError, match=r"'xl/worksheets/sheet1\.xml' is not well-formed XML"):
        scan(raw)


def test_a_part_that_lies_about_its_size_is_caught() -> None:
    # The directory says 10 bytes; zipfile stops there, so the parse sees truncated XML.
    raw = bytearray(small_workbook())
    assert zipfile.ZipFile(io.BytesIO(bytes(raw))).getinfo(SHEET).file_size > 10
    record = raw.index(b"PK\x01\x02")
    while raw[record + 46 : record + 46 + len(SHEET)] != SHEET.encode():
        record = raw.index(b"PK\x01\x02", record + 4)
    raw[record + 24 : record + 28] = (10).to_bytes(4, "little")  # uncompressed size
    with pytest.raises(DataError, match=r"sheet1\.xml"):
        load_table(bytes(raw), name="t.xlsx")


def test_formula_cells_without_a_result_are_counted_per_column() -> None:
    body = (
        b'<row r="1"><c r="A1" t="inlineStr"><is><t>a</t></is></c></row>'
        b'<row r="2"><c r="A2"><f>1+1</f><v></v></c><c r="B2"><f>1+1</f><v>2</v></c></row>'
        b'<row r="3"><c r="A3"><f>1+1</f></c><c r="AB3"><f t="shared" si="0"/></c></row>'
    )
    raw = with_part(small_workbook(), SHEET, sheet_xml(body))
    assert scan(raw).formulas_without_result == {SHEET: {0: 2, 27: 1}}


def test_cells_without_a_reference_take_the_next_column() -> None:
    body = b"<row><c><v>1</v></c><c><f>A1</f></c></row><row><c><f>1</f></c></row>"
    raw = with_part(small_workbook(), SHEET, sheet_xml(body))
    assert scan(raw).formulas_without_result == {SHEET: {1: 1, 0: 1}}


def test_prefixed_names_are_read_like_plain_ones() -> None:
    body = (
        b'<x:worksheet xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        b'<x:sheetData><x:row r="2"><x:c r="C2"><x:f>1+1</x:f></x:c></x:row></x:sheetData>'
        b"</x:worksheet>"
    )
    raw = with_part(small_workbook(), SHEET, body)
    assert scan(raw).formulas_without_result == {SHEET: {2: 1}}


def test_the_cap_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIMG_MAX_EXCEL_UNPACKED_MB", "1")
    assert Limits().max_excel_unpacked_bytes == 2**20
    row = b'<row><c t="n"><v>1</v></c></row>'
    raw = with_part(small_workbook(), SHEET, sheet_xml(row * (2 * 2**20 // len(row))))
    with pytest.raises(LimitError, match="MEDIMG_MAX_EXCEL_UNPACKED_MB"):
        load_table(raw, name="t.xlsx")
    monkeypatch.setenv("MEDIMG_MAX_EXCEL_UNPACKED_MB", "lots")
    with pytest.raises(MedimgError, match=r"MEDIMG_MAX_EXCEL_UNPACKED_MB='lots' is not a positive"):
        Limits()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_workbooks_give_a_clear_error_or_a_table(data: st.DataObject) -> None:
    raw = bytearray(small_workbook())
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(raw) // 2, len(raw)))
    try:
        table = load_table(bytes(raw[:cut]), name="t.xlsx")
    except MedimgError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(table.frame, pd.DataFrame)


@settings(max_examples=40, deadline=None)
@given(
    body=st.lists(
        st.sampled_from(
            [b"<row>", b"</row>", b"<c r='A1'>", b"</c>", b"<f>1</f>", b"<v>2</v>", b"<x>", b"</x>"]
        ),
        max_size=40,
    )
)
def test_any_sheet_xml_gives_a_scan_or_a_clear_error(body: list[bytes]) -> None:
    raw = with_part(small_workbook(), SHEET, sheet_xml(b"".join(body)))
    try:
        result = scan(raw)
    except DataError as exc:
        assert "xl/worksheets/sheet1.xml" in str(exc)
    else:
        assert all(
            n > 0 for counts in result.formulas_without_result.values() for n in counts.values()
        )
