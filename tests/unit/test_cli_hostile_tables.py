"""Issue 12, tables: hostile CSV and Excel files through ``medimg train`` and ``medimg clean``.

Each gives exit status 2 and one line on stderr naming the problem and the fix (or, for formula
cells without a saved result, a note), never a traceback, and no model folder.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.unit.test_cli import FAST, assert_one_line_error, run, wdbc_csv


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    return tmp_path / "ws"


def train(data: Path, model_dir: Path, *extra: str) -> tuple[int, str, str]:
    return run(["train", str(data), "--label", "diagnosis", *FAST, *extra, "-o", str(model_dir)])


def test_a_label_column_without_any_value(tmp_path: Path, home: Path) -> None:
    data = wdbc_csv(tmp_path / "nolabel.csv", rows=60, diagnosis=np.nan)
    status, _, err = train(data, tmp_path / "m")
    assert_one_line_error(status, err, r"label column 'diagnosis' is empty: none of the 60 rows")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("model", ["logreg", "auto"])
def test_values_near_the_float_maximum(tmp_path: Path, home: Path, model: str) -> None:
    frame = pd.read_csv(wdbc_csv(tmp_path / "w.csv", rows=60))
    numeric = [c for c in frame.columns if c not in ("case_id", "diagnosis")]
    signs = np.where(np.arange(60) % 3, 1.0, -1.0)
    for column in numeric:
        frame[column] = signs * 1.79e308
    frame.to_csv(tmp_path / "huge.csv", index=False)
    status, _, err = train(
        tmp_path / "huge.csv", tmp_path / "m", *(["--model", model] if model == "auto" else [])
    )
    assert_one_line_error(
        status, err, r"too large to compute with.*'mean radius': 60 value\(s\), up to 1\.79e\+308"
    )
    assert not (tmp_path / "m").exists()


def test_a_huge_text_cell_is_not_a_category(tmp_path: Path, home: Path) -> None:
    notes = ["x" * 100_000] + ["left", "right"] * 30
    data = wdbc_csv(tmp_path / "text.csv", rows=61, note=notes)
    status, _, err = train(data, tmp_path / "m")
    assert_one_line_error(status, err, r"'note' \(a value of 100,000 characters\) hold free text")
    assert len(err) < 1_000
    assert not (tmp_path / "m").exists()


def _workbook(sheet_xml: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame({"x": [1.0, 2.0], "diagnosis": ["a", "b"]}).to_excel(buffer, index=False)
    if sheet_xml is None:
        return buffer.getvalue()
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out_buffer = io.BytesIO()
    with zipfile.ZipFile(out_buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                content = sheet_xml
            out.writestr(info.filename, content)
    return out_buffer.getvalue()


_ROW = b'<row><c t="n"><v>1</v></c><c t="inlineStr"><is><t>a</t></is></c></row>'
_SHEET = b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'


def test_an_xlsx_that_unpacks_past_the_setting(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_MAX_EXCEL_UNPACKED_MB", "1")
    body = _SHEET + b"<sheetData>" + _ROW * (2 * 2**20 // len(_ROW)) + b"</sheetData></worksheet>"
    data = tmp_path / "big.xlsx"
    data.write_bytes(_workbook(body))
    status, _, err = train(data, tmp_path / "m")
    assert_one_line_error(status, err, r"unpacks to 2\.\d MB.*MEDIMG_MAX_EXCEL_UNPACKED_MB")
    assert not (tmp_path / "m").exists()


def test_an_xlsx_zip_bomb(tmp_path: Path, home: Path) -> None:
    body = _SHEET + b"<sheetData>" + _ROW * (8 * 2**20 // len(_ROW)) + b"</sheetData></worksheet>"
    data = tmp_path / "bomb.xlsx"
    data.write_bytes(_workbook(body))
    assert data.stat().st_size < 100_000
    status, _, err = run(
        ["clean", str(data), "-o", str(tmp_path / "c.parquet"), "--report", str(tmp_path / "r")]
    )
    assert_one_line_error(status, err, r"expands [\d,]+-fold.*zip bomb")
    assert not (tmp_path / "c.parquet").exists()


def test_an_xlsx_nested_too_deep(tmp_path: Path, home: Path) -> None:
    deep = b"<x>" * 100_000 + b"</x>" * 100_000
    data = tmp_path / "deep.xlsx"
    data.write_bytes(_workbook(_SHEET + b"<sheetData>" + deep + b"</sheetData></worksheet>"))
    status, _, err = train(data, tmp_path / "m")
    assert_one_line_error(status, err, r"nests elements more than 100 deep")


def test_formula_cells_without_a_result_are_said(tmp_path: Path, home: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["size", "ratio", "diagnosis"])
    for i in range(40):
        sheet.append([float(i % 7) + i / 10, f"=A{i + 2}*2", "benign" if i % 2 else "malignant"])
    data = tmp_path / "formulas.xlsx"
    book.save(data)
    status, out, err = run(
        [
            "clean",
            str(data),
            "--label",
            "diagnosis",
            "-o",
            str(tmp_path / "c.parquet"),
            "--report",
            str(tmp_path / "r.json"),
        ]
    )
    assert status == 0, err
    assert "40 formula cell(s) have no saved result" in out + err
    assert "'ratio' (40)" in out + err
