from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import medimg_core.tables.loading as medimg_io
from medimg_core.errors import ConfigError, DataError, LimitError, MedimgError
from medimg_core.tables.loading import (
    MISSING_TOKENS,
    SAMPLES,
    Limits,
    LoadedTable,
    frame_hash,
    load_sample,
    load_table,
    read_data,
)


def load(text: str | bytes, name: str = "table.csv", **kwargs: object) -> LoadedTable:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return load_table(raw, name=name, **kwargs)  # type: ignore[arg-type]


def excel_bytes(frame: pd.DataFrame, **sheets: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        frame.to_excel(writer, index=False, sheet_name="data")
        for name, extra in sheets.items():
            extra.to_excel(writer, index=False, sheet_name=name)
    return buffer.getvalue()


def parquet_bytes(frame: pd.DataFrame, index: bool = False) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=index)
    return buffer.getvalue()


def test_public_names_are_exported() -> None:
    assert set(medimg_io.__all__) == {
        "EXCEL_UNPACKED_ENV",
        "MISSING_TOKENS",
        "SAMPLES",
        "Limits",
        "LoadedTable",
        "frame_hash",
        "load_sample",
        "load_table",
        "read_data",
    }


def test_simple_csv_is_read_with_types_and_provenance() -> None:
    raw = b"patient_id,radius,diagnosis\nP1,1.5,malignant\nP2,2.25,benign\n"
    table = load_table(raw, name="t.csv")
    assert table.format == "csv"
    assert table.delimiter == ","
    assert table.encoding == "utf-8"
    assert table.name == "t.csv"
    assert table.content_hash == hashlib.sha256(raw).hexdigest()
    assert list(table.frame.columns) == ["patient_id", "radius", "diagnosis"]
    assert table.frame["radius"].tolist() == [1.5, 2.25]
    assert table.frame["diagnosis"].tolist() == ["malignant", "benign"]
    assert table.coercion_failures == {}


@pytest.mark.parametrize(
    ("delimiter", "name"), [(",", "comma"), (";", "semicolon"), ("\t", "tab"), ("|", "pipe")]
)
def test_delimiter_is_detected(delimiter: str, name: str) -> None:
    rows = [["id", "x", "label"], ["a", "1", "yes"], ["b", "2", "no"], ["c", "3", "yes"]]
    text = "\n".join(delimiter.join(r) for r in rows) + "\n"
    table = load(text)
    assert table.delimiter == delimiter
    assert list(table.frame.columns) == ["id", "x", "label"]
    assert table.frame["x"].tolist() == [1, 2, 3]
    if delimiter != ",":
        assert any(name in note for note in table.notes)


def test_tsv_extension_prefers_tab_when_both_split() -> None:
    table = load("a,b\tc\n1,2\t3\n", name="t.tsv")
    assert table.delimiter == "\t"
    assert list(table.frame.columns) == ["a,b", "c"]


def test_semicolon_file_with_decimal_commas() -> None:
    table = load("radius;texture\n1,5;10\n2,25;11,5\n3;12\n")
    assert table.delimiter == ";"
    assert table.frame["radius"].tolist() == [1.5, 2.25, 3.0]
    assert table.frame["texture"].tolist() == [10.0, 11.5, 12.0]
    assert any("decimal comma" in note for note in table.notes)


def test_utf8_bom_is_removed_from_the_first_header() -> None:
    table = load(b"\xef\xbb\xbfcase,value\nA,1\n")
    assert list(table.frame.columns) == ["case", "value"]
    assert table.encoding == "utf-8-sig"


def test_latin1_fallback_is_said_in_notes() -> None:
    table = load("site,value\nZ\xfcrich,1\nK\xf6ln,2\n".encode("latin-1"))
    assert table.encoding == "latin-1"
    assert table.frame["site"].tolist() == ["Zürich", "Köln"]
    assert "Read as Latin-1 (the file is not valid UTF-8)." in table.notes


def test_utf16_with_byte_order_mark_is_read() -> None:
    table = load("a,b\n1,x\n".encode("utf-16"))
    assert table.encoding == "utf-16"
    assert table.frame.to_dict("list") == {"a": [1], "b": ["x"]}


@pytest.mark.parametrize("token", sorted(MISSING_TOKENS))
def test_missing_tokens_become_nan_in_numeric_and_text_columns(token: str) -> None:
    text = f"n,x,label\n1,1.5,a\n2, {token} ,{token}\n3,2.5,b\n"
    table = load(text)
    assert table.frame["x"].dtype == np.float64
    assert np.isnan(table.frame.loc[1, "x"])
    assert pd.isna(table.frame.loc[1, "label"])
    assert table.coercion_failures == {}


def test_headers_and_string_cells_are_stripped() -> None:
    table = load(" case id , size ,  group \n  P1 , 1 , a b  \n P2,2,c\n")
    assert list(table.frame.columns) == ["case id", "size", "group"]
    assert table.frame["case id"].tolist() == ["P1", "P2"]
    assert table.frame["group"].tolist() == ["a b", "c"]
    assert table.frame["size"].tolist() == [1, 2]


def test_mostly_numeric_column_is_coerced_and_failures_reported() -> None:
    values = [str(i / 4) for i in range(40)]
    for i, bad in zip((3, 9, 15, 21), ("<0.1", "high", "<0.1", "n.d."), strict=True):
        values[i] = bad
    text = "x,y\n" + "\n".join(f"{v},{i}" for i, v in enumerate(values)) + "\n"
    table = load(text)
    assert table.frame["x"].dtype == np.float64
    assert table.frame["x"].isna().sum() == 4
    assert table.frame.loc[4, "x"] == 1.0
    count, examples = table.coercion_failures["x"]
    assert count == 4
    assert examples == ("<0.1", "high", "n.d.")
    assert any("'x' was read as numbers" in note for note in table.notes)


def test_failure_examples_are_capped_at_five() -> None:
    rows = [str(i) for i in range(100)]
    for i in range(7):
        rows[10 * i + 5] = f"bad{i}"
    table = load("v\n" + "\n".join(rows) + "\n")
    count, examples = table.coercion_failures["v"]
    assert count == 7
    assert examples == ("bad0", "bad1", "bad2", "bad3", "bad4")


def test_column_below_the_numeric_share_stays_text_with_a_note() -> None:
    rows = ["1", "2", "3", "x", "4", "y", "5", "6", "7", "8"]
    table = load("v\n" + "\n".join(rows) + "\n")
    assert table.frame["v"].tolist() == rows
    assert "v" not in table.coercion_failures
    assert any("kept as text" in note for note in table.notes)


def test_label_text_codes_and_booleans_stay_strings() -> None:
    table = load("code,flag,diagnosis\n007,True,benign\n010,False,malignant\n123,True,benign\n")
    assert table.frame["code"].tolist() == ["007", "010", "123"]
    assert table.frame["flag"].tolist() == ["True", "False", "True"]
    assert table.frame["diagnosis"].tolist() == ["benign", "malignant", "benign"]


def test_integer_columns_stay_integers() -> None:
    table = load("n,m\n1,a\n2,b\n")
    assert table.frame["n"].dtype == np.int64


def test_late_text_in_a_numeric_looking_column_is_coerced() -> None:
    rows = [str(i) for i in range(400)] + ["oops"]
    table = load("v\n" + "\n".join(rows) + "\n")
    assert table.frame["v"].dtype == np.float64
    assert table.coercion_failures["v"] == (1, ("oops",))


def test_empty_rows_and_unnamed_empty_columns_are_dropped() -> None:
    table = load("a,b,\n1,2,\n,,\n3,4,\n")
    assert list(table.frame.columns) == ["a", "b"]
    assert table.frame["a"].tolist() == [1.0, 3.0]
    assert any("empty row" in note for note in table.notes)
    assert any("empty column" in note for note in table.notes)


def test_unnamed_column_with_values_gets_a_name() -> None:
    table = load("a,,c\n1,2,3\n")
    assert list(table.frame.columns) == ["a", "column_2", "c"]


def test_crlf_and_cr_line_endings() -> None:
    assert load("a,b\r\n1,2\r\n").frame.to_dict("list") == {"a": [1], "b": [2]}
    assert load("a,b\r1,2\r3,4\r").frame.to_dict("list") == {"a": [1, 3], "b": [2, 4]}


def test_path_and_file_object_sources(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    path.write_bytes(b"a,b\n1,2\n")
    from_path = load_table(path)
    from_str = load_table(str(path))
    with path.open("rb") as handle:
        from_handle = load_table(handle)
    assert from_path.name == from_str.name == from_handle.name == "cases.csv"
    assert from_path.content_hash == from_handle.content_hash
    pd.testing.assert_frame_equal(from_path.frame, from_handle.frame)


def test_bytes_without_a_name_are_sniffed() -> None:
    table = load_table(b"a;b\n1;2\n")
    assert table.name == "uploaded table"
    assert table.delimiter == ";"


def test_forced_delimiter_is_used() -> None:
    table = load("a;b,c\n1;2,3\n", delimiter=";")
    assert list(table.frame.columns) == ["a", "b,c"]


def test_unsupported_forced_delimiter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"Delimiter ':' is not supported"):
        load("a:b\n1:2\n", delimiter=":")


def test_excel_is_read_and_tidied() -> None:
    frame = pd.DataFrame({" radius ": [1.5, 2.0, None], "label": [" benign", "NA", "malignant"]})
    table = load_table(excel_bytes(frame), name="cases.xlsx")
    assert table.format == "excel"
    assert table.delimiter is None and table.encoding is None
    assert list(table.frame.columns) == ["radius", "label"]
    assert table.frame["radius"].tolist()[:2] == [1.5, 2.0]
    assert table.frame["label"].tolist()[0] == "benign"
    assert pd.isna(table.frame.loc[1, "label"])


def test_excel_text_numbers_are_coerced_and_other_sheets_noted() -> None:
    frame = pd.DataFrame({"x": ["1", "2", "3.5"] * 4, "y": ["a", "b", "c"] * 4})
    table = load_table(excel_bytes(frame, other=pd.DataFrame({"z": [1]})), name="c.xlsx")
    assert table.frame["x"].dtype == np.float64
    assert any("first sheet 'data' of 2" in note for note in table.notes)


def test_excel_bytes_with_a_csv_name_are_read_as_excel() -> None:
    table = load_table(excel_bytes(pd.DataFrame({"a": [1, 2]})), name="export.csv")
    assert table.format == "excel"
    assert table.frame["a"].tolist() == [1, 2]
    assert any("despite its name" in note for note in table.notes)


def test_parquet_is_read_by_magic_bytes() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [" x", "null"]})
    table = load_table(parquet_bytes(frame))
    assert table.format == "parquet"
    assert table.frame["a"].tolist() == [1.0, 2.0]
    assert table.frame["b"].tolist()[0] == "x"
    assert pd.isna(table.frame.loc[1, "b"])


def test_parquet_index_becomes_a_column() -> None:
    frame = pd.DataFrame({"a": [1, 2]}, index=pd.Index(["p", "q"], name="pid"))
    table = load_table(parquet_bytes(frame, index=True), name="t.parquet")
    assert list(table.frame.columns) == ["pid", "a"]


def test_limit_on_bytes_is_checked_before_reading_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * 100)

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("the file was read before its size was checked")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(
        LimitError, match=r"'big.csv' is 404 bytes, over the 100 bytes limit.*Limits\(max_bytes"
    ):
        load_table(path, limits=Limits(max_bytes=100))


def test_limit_on_bytes_for_a_file_object_reads_no_more_than_the_cap() -> None:
    handle = io.BytesIO(b"a\n" + b"1\n" * 1000)
    with pytest.raises(LimitError, match="more than 50 bytes"):
        load_table(handle, name="x.csv", limits=Limits(max_bytes=50))
    assert handle.tell() == 51


def test_row_and_column_limits_are_checked_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> pd.DataFrame:
        raise AssertionError("read_csv ran before the limits were checked")

    monkeypatch.setattr(pd, "read_csv", refuse)
    with pytest.raises(LimitError, match=r"about 10 rows, over the 5 limit.*Limits\(max_rows"):
        load("a\n" + "1\n" * 10, limits=Limits(max_rows=5))
    with pytest.raises(LimitError, match=r"4 columns, over the 3 limit.*Limits\(max_columns"):
        load("a,b,c,d\n1,2,3,4\n", limits=Limits(max_columns=3))


def test_exactly_at_the_limits_is_accepted() -> None:
    raw = b"a,b\n1,2\n3,4\n"
    table = load_table(
        raw, name="t.csv", limits=Limits(max_bytes=len(raw), max_rows=2, max_columns=2)
    )
    assert table.frame.shape == (2, 2)


def test_excel_and_parquet_limits() -> None:
    frame = pd.DataFrame({"a": range(10), "b": range(10)})
    with pytest.raises(LimitError, match="10 rows, over the 5 limit"):
        load_table(excel_bytes(frame), name="t.xlsx", limits=Limits(max_rows=5))
    with pytest.raises(LimitError, match="2 columns, over the 1 limit"):
        load_table(excel_bytes(frame), name="t.xlsx", limits=Limits(max_columns=1))
    with pytest.raises(LimitError, match="10 rows, over the 5 limit"):
        load_table(parquet_bytes(frame), name="t.parquet", limits=Limits(max_rows=5))
    with pytest.raises(LimitError, match="2 columns, over the 1 limit"):
        load_table(parquet_bytes(frame), name="t.parquet", limits=Limits(max_columns=1))


@pytest.mark.parametrize("field", ["max_bytes", "max_rows", "max_columns"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(
        ConfigError, match=rf"Limits.{field} must be a positive whole number, got 0"
    ):
        Limits(**{field: 0})


@pytest.mark.parametrize("raw", [b"", b"   \n\n", b"\r\n"])
def test_empty_file(raw: bytes) -> None:
    with pytest.raises(
        DataError, match=r"'table.csv' is empty\. Choose a file that has a header row"
    ):
        load(raw)


def test_header_only_file() -> None:
    with pytest.raises(DataError, match=r"has a header but no data rows\. Choose a file"):
        load("a,b\n")


def test_all_missing_file() -> None:
    with pytest.raises(DataError, match=r"Every value in 'table.csv' is missing.*right file"):
        load("a,b\nNA,?\n,\nnull,-\n")


def test_nul_bytes_mean_binary() -> None:
    with pytest.raises(
        DataError, match=r"binary data \(it contains NUL bytes\).*Export the table as CSV"
    ):
        load(b"a,b\n1,\x002\n")


def test_png_renamed_to_csv() -> None:
    with pytest.raises(DataError, match=r"'scan.csv' is a PNG image, not a text table"):
        load(b"\x89PNG\r\n\x1a\n" + bytes(range(256)), name="scan.csv")


def test_gzip_file_says_so() -> None:
    with pytest.raises(DataError, match="gzip-compressed file, not a text table"):
        load(b"\x1f\x8b\x08\x00rest", name="t.csv")


@pytest.mark.parametrize(
    "text",
    [
        '{"size": 1.2, "diagnosis": "benign"}\n{"size": 3.4, "diagnosis": "malignant"}\n',
        '[{"size": 1.2, "diagnosis": "benign"},\n {"size": 3.4, "diagnosis": "malignant"}]',
        "[\n  [1, 2],\n  [3, 4]\n]\n",
    ],
    ids=["json-lines", "json-array", "nested-arrays"],
)
def test_json_named_as_text_is_refused_not_read_as_columns(text: str) -> None:
    with pytest.raises(DataError, match=r"'t.txt' holds JSON.*Save it as CSV"):
        load(text.encode(), name="t.txt")


def test_a_header_with_braces_is_still_a_header() -> None:
    frame = load(b"{a},[b]\n1,2\n", name="t.csv").frame
    assert list(frame.columns) == ["{a}", "[b]"]


def test_control_characters_mean_binary() -> None:
    with pytest.raises(DataError, match=r"binary data \(many control characters\)"):
        load(bytes([1, 2, 3, 4, 5, 6, 7, 8]) * 20 + b"\n")


def test_wrong_delimiter_names_the_likely_one() -> None:
    with pytest.raises(
        DataError, match=r"single column named 'a;b;c'.*semicolon character ';'.*delimiter=';'"
    ):
        load('"a;b;c"\n"1;2;3"\n"4;5;6"\n')


def test_forced_wrong_delimiter_is_explained() -> None:
    with pytest.raises(DataError, match=r"single column named 'a,b'.*probably comma-separated"):
        load("a,b\n1,2\n", delimiter=";")


def test_ragged_rows_name_their_line_numbers() -> None:
    with pytest.raises(
        DataError, match=r"more fields than its 2-column header \(lines 3, 5\)\. Fix those rows"
    ):
        load("a,b\n1,2\n3,4,5\n6,7\n8,9,10,11\n")


def test_ragged_first_data_row_is_caught() -> None:
    # pandas would silently take an extra first-row field as the index.
    with pytest.raises(DataError, match=r"\(line 2\)"):
        load("a,b\n1,2,3\n4,5\n")


def test_many_ragged_rows_are_summarised() -> None:
    text = "a,b\n" + "1,2,3\n" * 15
    with pytest.raises(DataError, match=r"lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 5 more"):
        load(text)


def test_duplicate_column_names_are_named() -> None:
    with pytest.raises(
        DataError, match=r"duplicate column names: 'id', 'radius'\. Rename the columns"
    ):
        load("id,radius,radius , id,x\n1,2,3,4,5\n")


def test_duplicate_columns_in_excel() -> None:
    raw = excel_bytes(pd.DataFrame([[1, 2]], columns=["a", "b"]).rename(columns={"b": "a "}))
    with pytest.raises(DataError, match="duplicate column names: 'a'"):
        load_table(raw, name="t.xlsx")


@pytest.mark.parametrize("name", ["table.json", "table.docx", "table.csv.gz"])
def test_unsupported_extension(name: str) -> None:
    suffix = Path(name).suffix
    with pytest.raises(DataError, match=rf"unsupported extension '\{suffix}'.*medimg reads \.csv"):
        load("a,b\n1,2\n", name=name)


def test_old_excel_format() -> None:
    with pytest.raises(DataError, match=r"old Excel \.xls file.*save it as \.xlsx or CSV"):
        load("a\n1\n", name="t.xls")


def test_text_named_xlsx_or_parquet() -> None:
    with pytest.raises(DataError, match="named like an Excel file but is not one"):
        load("a\n1\n", name="t.xlsx")
    with pytest.raises(DataError, match="named like a Parquet file"):
        load("a\n1\n", name="t.parquet")


def test_corrupt_excel_and_parquet() -> None:
    with pytest.raises(DataError, match="could not be opened as an Excel workbook"):
        load(b"PK\x03\x04not really a zip", name="t.xlsx")
    with pytest.raises(DataError, match="could not be read as Parquet"):
        load(b"PAR1 not really parquet", name="t.parquet")


def test_unterminated_quote_is_a_data_error_not_a_pandas_error() -> None:
    with pytest.raises(
        DataError, match=r"could not be read as a comma-separated table \(.*EOF inside string"
    ):
        load('a,b\n"1,2\n3,4\n')


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist\. Check the path"):
        load_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"is a folder, not a file"):
        load_table(tmp_path)


def test_text_mode_file_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a\n1\n")
    with path.open("r") as handle, pytest.raises(DataError, match="opened in text mode"):
        load_table(handle)  # type: ignore[arg-type]


def test_every_error_is_a_medimg_error() -> None:
    assert issubclass(LimitError, DataError)
    assert issubclass(DataError, MedimgError)


def test_wdbc_sample_reads_like_a_clinical_table() -> None:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    table = load_sample("wdbc")
    frame = table.frame
    assert table.format == "sample"
    assert frame.shape == (569, 32)
    assert list(frame.columns) == ["case_id", *bunch.feature_names, "diagnosis"]
    assert frame["case_id"].iloc[0] == "WDBC-0001"
    assert frame["case_id"].iloc[-1] == "WDBC-0569"
    assert frame["case_id"].is_unique
    np.testing.assert_array_equal(frame[list(bunch.feature_names)].to_numpy(), bunch.data)


def test_wdbc_diagnosis_follows_sklearn_target_names() -> None:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    frame = load_sample().frame
    assert list(bunch.target_names) == ["malignant", "benign"]
    expected = [bunch.target_names[t] for t in bunch.target]
    assert frame["diagnosis"].tolist() == expected
    assert frame["diagnosis"].value_counts().to_dict() == {"benign": 357, "malignant": 212}
    assert (frame.loc[bunch.target == 0, "diagnosis"] == "malignant").all()


def test_sample_hash_is_the_frame_hash_and_copies_are_independent() -> None:
    first = load_sample("wdbc")
    assert first.content_hash == frame_hash(first.frame)
    first.frame.loc[0, "diagnosis"] = "changed"
    second = load_sample("wdbc")
    assert second.frame.loc[0, "diagnosis"] != "changed"
    assert second.content_hash == first.content_hash


def test_read_data_sample_and_path(tmp_path: Path) -> None:
    assert read_data("sample:wdbc").frame.shape == (569, 32)
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    assert read_data(str(path)).frame.to_dict("list") == {"a": [1], "b": [2]}


def test_unknown_sample_lists_the_available_ones() -> None:
    assert "wdbc" in SAMPLES
    with pytest.raises(DataError, match=r"no sample called 'mnist'\. Available samples: 'wdbc'"):
        read_data("sample:mnist")
    with pytest.raises(DataError, match="Available samples"):
        load_sample("other")


def test_frame_hash_is_stable_and_sensitive() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})
    same = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})
    assert frame_hash(frame) == frame_hash(same)
    assert len(frame_hash(frame)) == 64
    assert frame_hash(frame) == frame_hash(frame.set_axis([10, 11, 12]))
    assert frame_hash(frame) != frame_hash(frame.assign(a=[1, 2, 4]))
    assert frame_hash(frame) != frame_hash(frame.rename(columns={"a": "c"}))
    assert frame_hash(frame) != frame_hash(frame.astype({"a": "float64"}))
    assert frame_hash(frame) != frame_hash(frame.iloc[::-1])
    assert frame_hash(frame) != frame_hash(frame.iloc[:0])


def test_frame_hash_handles_empty_and_unhashable_frames() -> None:
    assert frame_hash(pd.DataFrame()) == frame_hash(pd.DataFrame())
    lists = pd.DataFrame({"a": [[1, 2], [3]]})
    assert frame_hash(lists) == frame_hash(pd.DataFrame({"a": [[1, 2], [3]]}))


def test_blank_lines_are_skipped_like_pandas_does() -> None:
    table = load("\n   \na,b\n\n1,2\n  \n3,4\n")
    assert table.frame.to_dict("list") == {"a": [1, 3], "b": [2, 4]}


def _formula_workbook() -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "visits"
    sheet.append(["age", "ratio", "diagnosis"])
    for i in range(4):
        # openpyxl saves formulas without their result, as some exporters do.
        sheet.append([50 + i, f"=A{i + 2}/10", "benign" if i % 2 else "malignant"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_formula_cells_without_a_saved_result_are_named_in_a_note() -> None:
    table = load_table(_formula_workbook(), name="visits.xlsx")
    assert table.frame["ratio"].isna().all()
    (note,) = [n for n in table.notes if "formula" in n]
    assert "sheet 'visits': 4 formula cell(s) have no saved result" in note
    assert "read as missing values, in 'ratio' (4)" in note
    assert "save it again" in note


def test_formulas_with_saved_results_are_read_without_a_note() -> None:
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(_formula_workbook()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                assert content.count(b"<v />") == 4
                content = content.replace(b"<v />", b"<v>5.5</v>")  # as Excel saves them
            out.writestr(info.filename, content)
    table = load_table(buffer.getvalue(), name="visits.xlsx")
    assert table.frame["ratio"].tolist() == [5.5] * 4
    assert not [n for n in table.notes if "formula" in n]
