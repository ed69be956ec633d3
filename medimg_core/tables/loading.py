"""Loading tables: CSV/TSV, Excel and Parquet files, and the built-in samples.

Every problem with the user's file becomes one :class:`~medimg_core.errors.DataError` that names
the problem and the fix; caps on size, rows and columns are checked before the full parse, so an
oversized upload is refused cheaply. An Excel file is a ZIP of XML: its declared unpacked size,
compression ratio and XML nesting are checked (:mod:`medimg_core.tables.workbook`) before
openpyxl parses it, and formula cells without a saved result (read as missing) are noted.
Parsing uses pandas' C parser and vectorised coercion, so a million-row table loads in seconds.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from medimg_core.errors import ConfigError, DataError, LimitError
from medimg_core.tables.workbook import scan_workbook

__all__ = [
    "EXCEL_UNPACKED_ENV",
    "MISSING_TOKENS",
    "SAMPLES",
    "Limits",
    "LoadedTable",
    "frame_hash",
    "load_sample",
    "load_table",
    "read_data",
]

MISSING_TOKENS: frozenset[str] = frozenset(
    {
        "",
        "?",
        "NA",
        "na",
        "N/A",
        "n/a",
        "N/a",
        "#N/A",
        "#NA",
        "null",
        "NULL",
        "Null",
        "NaN",
        "nan",
        "NAN",
        "-",
        "--",
        "---",
        "none",
        "None",
        "NONE",
        "missing",
        "Missing",
        "MISSING",
        ".",
    }
)
"""Cell values read as missing (after surrounding whitespace is stripped)."""

SAMPLES: Mapping[str, str] = {
    "wdbc": (
        "Wisconsin Diagnostic Breast Cancer (scikit-learn): 569 cases, 30 cell-nucleus features "
        "measured on fine-needle aspirate images, diagnosis malignant or benign."
    ),
}
"""Built-in sample data sets: name -> one-line description."""

_DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_TEXT_EXTENSIONS = frozenset({".csv", ".tsv", ".txt", ".tab"})
_EXCEL_EXTENSIONS = frozenset({".xlsx", ".xlsm"})
_PARQUET_EXTENSIONS = frozenset({".parquet", ".pq"})
_SUPPORTED = ".csv, .tsv, .txt, .xlsx or .parquet"
_SAMPLE_BYTES = 1 << 20
_SAMPLE_RECORDS = 200
_NUMERIC_SHARE = 0.9
_CHECK_VALUES = 1000
_NOTE_MIN_VALUES = 10
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"BZh", "a bzip2-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\xd0\xcf\x11\xe0", "an old-style Office file (.xls / .doc)"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ZERO_PADDED = r"0\d"
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_INTEGER = r"^[+-]?\d+$"


EXCEL_UNPACKED_ENV = "MEDIMG_MAX_EXCEL_UNPACKED_MB"
"""Setting: most megabytes (MiB) the parts of an .xlsx file may unpack to before it is parsed."""

DEFAULT_EXCEL_UNPACKED_MB = 256
"""openpyxl parses sheet XML at about 5 MB/s on one core and holds every cell as a Python object:
256 MiB of XML (about 200,000 rows of 30 numbers) is under a minute and well under 1 GB, which
several users of a 2-core, 24 GB server can afford at once. Larger tables load far faster as
CSV or Parquet."""


def _env_excel_unpacked_bytes() -> int:
    text = os.environ.get(EXCEL_UNPACKED_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_EXCEL_UNPACKED_MB * 2**20
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(
            f"{EXCEL_UNPACKED_ENV}={text!r} is not a positive whole number of megabytes; write "
            f"for example {DEFAULT_EXCEL_UNPACKED_MB}, or unset it for the default."
        )
    return int(text) * 2**20


@dataclass(frozen=True)
class Limits:
    """Caps checked before a file is fully parsed.

    Parameters
    ----------
    max_bytes : int
        Largest file accepted, in bytes.
    max_rows : int
        Most data rows accepted (the header does not count).
    max_columns : int
        Most columns accepted.
    max_excel_unpacked_bytes : int
        Most bytes the parts of an .xlsx file (a ZIP of XML) may declare unpacked, checked from
        the ZIP directory before parsing; default from the setting ``MEDIMG_MAX_EXCEL_UNPACKED_MB``
        (:data:`DEFAULT_EXCEL_UNPACKED_MB`), read when the limits are made.
    max_excel_ratio : float
        Largest compression ratio of an .xlsx part of 1 MiB or more (zip-bomb guard; real sheets
        compress 5- to 20-fold).
    """

    max_bytes: int = 200 * 2**20
    max_rows: int = 2_000_000
    max_columns: int = 2_000
    max_excel_unpacked_bytes: int = field(default_factory=_env_excel_unpacked_bytes)
    max_excel_ratio: float = 100.0

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_rows", "max_columns", "max_excel_unpacked_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"Limits.{name} must be a positive whole number, got {value!r}; "
                    f"pass for example Limits({name}=1000)."
                )
        ratio = self.max_excel_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not ratio > 1:
            raise ConfigError(
                f"Limits.max_excel_ratio must be a number above 1, got {ratio!r}; pass for "
                "example Limits(max_excel_ratio=100)."
            )


@dataclass(frozen=True)
class LoadedTable:
    """A table as medimg read it, with everything it did along the way.

    ``content_hash`` is the sha256 of the raw bytes (for samples: :func:`frame_hash` of the frame).
    ``coercion_failures`` maps each column that was converted to numbers to the count of values
    that could not be read (now missing) and up to five examples of them.
    """

    frame: pd.DataFrame
    name: str
    content_hash: str
    encoding: str | None
    delimiter: str | None
    format: str
    notes: tuple[str, ...] = ()
    coercion_failures: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)


def frame_hash(df: pd.DataFrame) -> str:
    """Stable content hash of a DataFrame.

    Parameters
    ----------
    df : pandas.DataFrame
        Any frame.

    Returns
    -------
    str
        sha256 hex over the column names, their dtypes and the values in row order. The index
        is not included, so a filtered frame and a fresh copy of the same rows hash alike.
    """
    digest = hashlib.sha256()
    header = [[str(column), str(dtype)] for column, dtype in df.dtypes.items()]
    digest.update(json.dumps(header, ensure_ascii=False).encode("utf-8"))
    digest.update(str(len(df)).encode("ascii"))
    if df.shape[1]:
        try:
            row_hashes = pd.util.hash_pandas_object(df, index=False)
        except TypeError:
            # Cells holding lists or dicts cannot be hashed as values; their text form is stable.
            row_hashes = pd.util.hash_pandas_object(df.astype(str), index=False)
        digest.update(np.ascontiguousarray(row_hashes.to_numpy(dtype=np.uint64)).tobytes())
    return digest.hexdigest()


def load_table(
    source: str | os.PathLike[str] | bytes | IO[bytes],
    *,
    name: str | None = None,
    limits: Limits | None = None,
    delimiter: str | None = None,
) -> LoadedTable:
    """Read a CSV/TSV, Excel (.xlsx) or Parquet table.

    Parameters
    ----------
    source : str, os.PathLike, bytes or binary file object
        A path, the raw bytes, or an open binary file (for example a Streamlit upload).
    name : str, optional
        Display name; its extension helps detect the format. Defaults to the file's name.
    limits : Limits, optional
        Caps on bytes, rows and columns, checked before the full parse; default ``Limits()``
        (made at each call, so the settings in the environment apply).
    delimiter : str, optional
        Force a delimiter for text files instead of detecting one of ``, ; tab |``.

    Returns
    -------
    LoadedTable
        Headers and string cells stripped of whitespace, missing-value tokens
        (:data:`MISSING_TOKENS`) as NaN, mostly numeric columns as numbers.

    Raises
    ------
    LimitError
        The file exceeds ``limits``.
    DataError
        The file is empty, binary, of an unsupported type, or not a usable table.
    """
    limits = Limits() if limits is None else limits
    raw, display = _read_source(source, name, limits)
    content_hash = hashlib.sha256(raw).hexdigest()
    if not raw or raw.isspace():
        raise DataError(
            f"'{display}' is empty. Choose a file that has a header row and at least one data row."
        )
    file_format, notes = _detect_format(raw, display)
    if file_format == "excel":
        frame, excel_notes = _read_excel(raw, display, limits)
        loaded = _finish(frame, display, content_hash, None, None, "excel", decimal_comma=False)
        notes += excel_notes
    elif file_format == "parquet":
        frame = _read_parquet(raw, display, limits)
        loaded = _finish(frame, display, content_hash, None, None, "parquet", decimal_comma=False)
    else:
        return _read_text(raw, display, content_hash, limits, delimiter, notes)
    return _with_notes(loaded, notes)


def load_sample(name: str = "wdbc") -> LoadedTable:
    """Load a built-in sample data set, laid out as a clinician reads it.

    Parameters
    ----------
    name : str
        One of :data:`SAMPLES`. ``"wdbc"`` is scikit-learn's breast-cancer data: ``case_id``
        (``WDBC-0001`` ...), the 30 features under scikit-learn's names, and ``diagnosis``
        (``"malignant"`` / ``"benign"``).

    Returns
    -------
    LoadedTable
        ``format="sample"``; ``content_hash`` is :func:`frame_hash` of the frame.

    Raises
    ------
    DataError
        ``name`` is not a known sample.
    """
    if name not in SAMPLES:
        available = ", ".join(f"'{key}'" for key in SAMPLES)
        raise DataError(
            f"There is no sample called '{name}'. Available samples: {available} "
            f"(for example read_data('sample:wdbc'))."
        )
    frame = _wdbc_frame()
    return LoadedTable(
        frame=frame.copy(),
        name=name,
        content_hash=frame_hash(frame),
        encoding=None,
        delimiter=None,
        format="sample",
        notes=(SAMPLES[name],),
        coercion_failures={},
    )


def read_data(
    spec: str,
    *,
    limits: Limits | None = None,
) -> LoadedTable:
    """Load ``"sample:<name>"`` or a file path.

    Parameters
    ----------
    spec : str
        ``"sample:wdbc"`` for a built-in sample, otherwise a path to a table file.
    limits : Limits, optional
        Caps applied to files (default ``Limits()``).

    Returns
    -------
    LoadedTable
    """
    if spec.startswith("sample:"):
        return load_sample(spec.removeprefix("sample:").strip())
    return load_table(spec, limits=limits)


@lru_cache(maxsize=1)
def _wdbc_frame() -> pd.DataFrame:
    # Deferred for start-up speed: only the built-in sample needs scikit-learn.
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    features = pd.DataFrame(bunch.data, columns=[str(c) for c in bunch.feature_names])
    # target_names[target] rather than a hand-written mapping: sklearn codes malignant as 0.
    diagnosis = pd.Series(np.asarray(bunch.target_names)[bunch.target], dtype="str")
    case_id = pd.Series([f"WDBC-{i:04d}" for i in range(1, len(features) + 1)], dtype="str")
    frame = pd.concat([case_id.rename("case_id"), features, diagnosis.rename("diagnosis")], axis=1)
    return frame


def _read_source(
    source: str | os.PathLike[str] | bytes | IO[bytes], name: str | None, limits: Limits
) -> tuple[bytes, str]:
    too_big = (
        "'{name}' is {size}, over the {cap} limit. Load a smaller extract (fewer rows or "
        "columns) or raise Limits(max_bytes=...)."
    )
    if isinstance(source, bytes | bytearray | memoryview):
        raw = bytes(source)
        display = name or "uploaded table"
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        display = name or path.name
        if not path.exists():
            raise DataError(f"File '{path}' does not exist. Check the path and try again.")
        if not path.is_file():
            raise DataError(f"'{path}' is a folder, not a file. Give the path of a table file.")
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise LimitError(
                too_big.format(name=display, size=_mb(size), cap=_mb(limits.max_bytes))
            )
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError(
                f"'{path}' could not be read ({exc.strerror}). Check that the file is "
                "readable by you."
            ) from exc
    elif hasattr(source, "read"):
        display = name or Path(str(getattr(source, "name", "") or "uploaded table")).name
        data = source.read(limits.max_bytes + 1)
        if not isinstance(data, bytes | bytearray):
            raise DataError(
                f"'{display}' was opened in text mode. Open it in binary mode ('rb') "
                "or pass its path."
            )
        raw = bytes(data)
    else:
        raise DataError(
            f"Cannot read a table from a {type(source).__name__}. Pass a path, bytes or a "
            "binary file object."
        )
    if len(raw) > limits.max_bytes:
        shown = f"more than {_mb(limits.max_bytes)}" if hasattr(source, "read") else _mb(len(raw))
        raise LimitError(too_big.format(name=display, size=shown, cap=_mb(limits.max_bytes)))
    return raw, display


def _mb(n_bytes: int) -> str:
    if n_bytes < 2**20:
        return f"{n_bytes:,} bytes"
    return f"{n_bytes / 2**20:.1f} MB"


def _detect_format(raw: bytes, display: str) -> tuple[str, tuple[str, ...]]:
    suffix = Path(display).suffix.lower()
    if suffix == ".xls":
        raise DataError(
            f"'{display}' is an old Excel .xls file, which medimg does not read. Open it in "
            "Excel and save it as .xlsx or CSV."
        )
    known = _TEXT_EXTENSIONS | _EXCEL_EXTENSIONS | _PARQUET_EXTENSIONS
    if suffix and suffix not in known:
        hint = " Decompress it first." if suffix in {".gz", ".zip", ".bz2", ".xz", ".7z"} else ""
        raise DataError(
            f"'{display}' has the unsupported extension '{suffix}'.{hint} medimg reads "
            f"{_SUPPORTED} tables; export the table in one of those formats."
        )
    if raw.startswith(b"PK\x03\x04"):
        if suffix in _TEXT_EXTENSIONS:
            return "excel", (f"'{display}' is a ZIP/Excel file despite its name; read as Excel.",)
        return "excel", ()
    if raw.startswith(b"PAR1"):
        if suffix in _TEXT_EXTENSIONS | _EXCEL_EXTENSIONS:
            return "parquet", (f"'{display}' is a Parquet file despite its name; read as Parquet.",)
        return "parquet", ()
    if suffix in _EXCEL_EXTENSIONS:
        raise DataError(
            f"'{display}' is named like an Excel file but is not one (no .xlsx content). "
            "Re-save it from Excel as .xlsx, or rename it to .csv if it is text."
        )
    if suffix in _PARQUET_EXTENSIONS:
        raise DataError(
            f"'{display}' is named like a Parquet file but does not start with the Parquet "
            "signature 'PAR1'. Re-export it as Parquet or CSV."
        )
    return "csv", ()


def _binary_error(display: str, what: str) -> DataError:
    return DataError(
        f"'{display}' is {what}, not a text table. Export the table as CSV (comma-separated "
        f"text) or choose the right file; medimg reads {_SUPPORTED}."
    )


def _decode(raw: bytes, display: str) -> tuple[bytes, str, str, tuple[str, ...]]:
    """Return (utf-8 or latin-1 bytes for pandas, pandas encoding, reported encoding, notes)."""
    for signature, what in _BINARY_SIGNATURES:
        if raw.startswith(signature):
            raise _binary_error(display, what)
    if raw[128:132] == b"DICM":
        raise _binary_error(display, "a DICOM image")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _binary_error(display, "binary data with a UTF-16 marker") from exc
        note = "Read as UTF-16 text."
        return text.encode("utf-8"), "utf-8", "utf-16", (note,)
    if b"\x00" in raw:
        raise _binary_error(display, "binary data (it contains NUL bytes)")
    encoding = "utf-8-sig" if raw.startswith(codecs.BOM_UTF8) else "utf-8"
    if _is_utf8(raw):
        return raw, encoding, encoding, ()
    return raw, "latin-1", "latin-1", ("Read as Latin-1 (the file is not valid UTF-8).",)


def _is_utf8(raw: bytes) -> bool:
    # Decode in chunks so a 200 MB upload is not held twice in memory as text.
    decoder = codecs.getincrementaldecoder("utf-8")()
    step = 16 * 2**20
    try:
        for start in range(0, len(raw), step):
            decoder.decode(raw[start : start + step], final=start + step >= len(raw))
    except UnicodeDecodeError:
        return False
    return True


def _sample_text(raw: bytes, encoding: str) -> str:
    head = raw[:_SAMPLE_BYTES]
    text = head.decode(encoding, errors="replace")
    if len(raw) > _SAMPLE_BYTES and "\n" in text:
        # The last line of the sample is cut in the middle; leave it out.
        text = text[: text.rindex("\n") + 1]
    return text


def _records(sample: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """Up to _SAMPLE_RECORDS non-blank records of the sample, with their starting line numbers."""
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, strict=False)
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            if not _blank_record(row):
                records.append((start, row))
                if len(records) >= _SAMPLE_RECORDS:
                    break
            start = reader.line_num + 1
    except csv.Error:
        pass
    return records


def _blank_record(row: list[str]) -> bool:
    # pandas skips empty and whitespace-only lines, but a line of bare delimiters is a row.
    return len(row) <= 1 and not "".join(row).strip()


def _detect_delimiter(sample: str, preferred: tuple[str, ...]) -> str:
    best: tuple[tuple[bool, float, int], str] | None = None
    for candidate in preferred:
        records = _records(sample, candidate)
        if not records:
            continue
        counts = [len(row) for _, row in records]
        n_header = counts[0]
        body = counts[1:] or counts
        mode, n_mode = Counter(body).most_common(1)[0]
        if max(mode, n_header) < 2:
            continue
        key = (mode == n_header, n_mode / len(body), mode)
        if best is None or key > best[0]:
            best = (key, candidate)
    return best[1] if best else preferred[0]


def _looks_like_json(sample: str) -> bool:
    """Whether a text file's first line is JSON (JSON lines, or the start of a JSON array or
    object) rather than a header row: a header never parses as a JSON object or array."""
    first = sample.lstrip("\ufeff \t\r\n").split("\n", 1)[0].strip()
    if not first.startswith(("{", "[")):
        return False
    if first in ("{", "[") or first.startswith(("[{", "[[")):
        return True
    try:
        return isinstance(json.loads(first), dict | list)
    except ValueError:
        return False


def _read_text(
    raw: bytes,
    display: str,
    content_hash: str,
    limits: Limits,
    forced: str | None,
    notes: tuple[str, ...],
) -> LoadedTable:
    data, pandas_encoding, encoding, decode_notes = _decode(raw, display)
    notes += decode_notes
    sample = _sample_text(data, pandas_encoding)
    if len(_CONTROL.findall(sample[:65536])) > 0.05 * max(1, len(sample[:65536])):
        raise _binary_error(display, "binary data (many control characters)")
    if _looks_like_json(sample):
        raise DataError(
            f"'{display}' holds JSON, not a table of delimited text: read as CSV its column "
            "names would be pieces of JSON. Save it as CSV, Excel or Parquet (in pandas: "
            "pd.read_json(path, lines=True).to_csv(...)) and upload that."
        )
    if forced is not None and forced not in _DELIMITERS:
        raise ConfigError(
            f"Delimiter {forced!r} is not supported; use one of "
            f"{', '.join(repr(d) for d in _DELIMITERS)}."
        )
    suffix = Path(display).suffix.lower()
    preferred = ("\t", ",", ";", "|") if suffix in {".tsv", ".tab"} else _DELIMITERS
    delimiter = forced or _detect_delimiter(sample, preferred)

    records = _records(sample, delimiter)
    if not records:
        raise DataError(f"'{display}' has no header row. Add a first row with the column names.")
    header_line, header = records[0]
    if len(header) > limits.max_columns:
        raise LimitError(
            f"'{display}' has {len(header):,} columns, over the {limits.max_columns:,} limit. "
            "Keep only the columns you need or raise Limits(max_columns=...)."
        )
    n_breaks = data.count(b"\n") or data.count(b"\r")
    n_lines = n_breaks + (0 if data.endswith((b"\n", b"\r")) else 1)
    if n_lines - header_line > limits.max_rows:
        raise LimitError(
            f"'{display}' has about {n_lines - header_line:,} rows, over the "
            f"{limits.max_rows:,} limit. Load a subset of the rows or raise Limits(max_rows=...)."
        )

    names, header_notes = _clean_header(header, display)
    notes += header_notes
    if len(names) == 1:
        _check_single_column(names[0], delimiter, display)
    body = records[1:]
    decimal_comma = delimiter == ";" and _sample_has_decimal_comma(body)
    dtypes = _sample_dtypes(names, body, decimal_comma)
    if any(len(row) > len(names) for _, row in body[:1]):
        # pandas would silently take a long first data row as having an index column.
        raise _ragged_error(data, pandas_encoding, delimiter, names, display)
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            sep=delimiter,
            encoding=pandas_encoding,
            header=0,
            names=names,
            index_col=False,
            dtype=dtypes,
            na_values=sorted(MISSING_TOKENS),
            keep_default_na=False,
            decimal="," if decimal_comma else ".",
            on_bad_lines="error",
            low_memory=False,
            engine="c",
        )
    except pd.errors.ParserError as exc:
        if re.search(r"Expected \d+ fields", str(exc)):
            raise _ragged_error(data, pandas_encoding, delimiter, names, display) from exc
        raise _unparsable(display, delimiter, exc) from exc
    except Exception as exc:
        # Any failure of the parser on user bytes is a problem with the file, not a bug.
        raise _unparsable(display, delimiter, exc) from exc
    if forced is None and delimiter != ",":
        notes += (f"Columns are {_DELIMITER_NAMES[delimiter]}-separated.",)
    if decimal_comma:
        notes += ("Numbers use a decimal comma (1,5 = 1.5).",)
    loaded = _finish(
        frame, display, content_hash, encoding, delimiter, "csv", decimal_comma=decimal_comma
    )
    if len(loaded.frame) > limits.max_rows:
        raise LimitError(
            f"'{display}' has {len(loaded.frame):,} rows, over the {limits.max_rows:,} limit. "
            "Load a subset of the rows or raise Limits(max_rows=...)."
        )
    return _with_notes(loaded, notes)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _unparsable(display: str, delimiter: str, exc: Exception) -> DataError:
    return DataError(
        f"'{display}' could not be read as a {_DELIMITER_NAMES[delimiter]}-separated "
        f"table ({_first_line(exc)}). Check that it is a plain CSV/TSV export with one "
        "header row."
    )


def _ragged_error(
    data: bytes, encoding: str, delimiter: str, names: list[str], display: str
) -> DataError:
    # pandas stops at the first long row; the broken file is scanned once more to name them all.
    ragged, n_ragged = _ragged_lines(data, encoding, delimiter, len(names))
    more = f" and {n_ragged - len(ragged)} more" if n_ragged > len(ragged) else ""
    where = (
        f" (line{'s' if n_ragged > 1 else ''} {', '.join(map(str, ragged))}{more})"
        if ragged
        else ""
    )
    return DataError(
        f"'{display}' has rows with more fields than its {len(names)}-column header{where}. "
        f"Fix those rows (a stray {_DELIMITER_NAMES[delimiter]} or a missing header name) or "
        "quote values that contain the delimiter."
    )


def _ragged_lines(data: bytes, encoding: str, delimiter: str, width: int) -> tuple[list[int], int]:
    """The first ten line numbers of records longer than the header, and how many there are."""
    text = data.decode(encoding, errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    lines: list[int] = []
    count = 0
    start = 1
    seen_header = False
    try:
        for row in reader:
            if not _blank_record(row):
                if not seen_header:
                    seen_header = True
                elif len(row) > width:
                    count += 1
                    if len(lines) < 10:
                        lines.append(start)
            start = reader.line_num + 1
    except csv.Error:
        pass
    return lines, count


def _check_single_column(header: str, delimiter: str, display: str) -> None:
    for other in _DELIMITERS:
        if other != delimiter and other in header:
            raise DataError(
                f"'{display}' was read as a single column named '{header[:60]}', which contains "
                f"the {_DELIMITER_NAMES[other]} character {other!r}: the file is probably "
                f"{_DELIMITER_NAMES[other]}-separated but its rows do not split consistently "
                f"(for example whole lines wrapped in quotes). Re-export it as a plain CSV, or "
                f"load it with delimiter={other!r}."
            )


def _clean_header(header: list[str], display: str) -> tuple[list[str], tuple[str, ...]]:
    names: list[str] = []
    notes: list[str] = []
    for position, cell in enumerate(header, start=1):
        text = str(cell).strip() if cell is not None else ""
        if text.lower() in {"", "nan", "none"} or text.startswith("Unnamed: "):
            text = f"column_{position}"
            notes.append(f"Column {position} has no name; it is called '{text}'.")
        names.append(text)
    duplicates = [n for n, count in Counter(names).items() if count > 1]
    if duplicates:
        listed = ", ".join(f"'{n}'" for n in duplicates[:10])
        raise DataError(
            f"'{display}' has duplicate column names: {listed}. Rename the columns so each "
            "name appears once."
        )
    return names, tuple(notes)


def _looks_numeric(value: str, decimal_comma: bool) -> bool:
    return bool(re.match(_NUMBER, value) or (decimal_comma and _DECIMAL_COMMA.match(value)))


def _sample_has_decimal_comma(body: list[tuple[int, list[str]]]) -> bool:
    return any(_DECIMAL_COMMA.match(cell.strip()) for _, row in body for cell in row)


def _sample_dtypes(
    names: list[str], body: list[tuple[int, list[str]]], decimal_comma: bool
) -> dict[str, str]:
    """Columns that look like text in the sample are read as strings.

    Letting the C parser infer types is several times faster than reading strings and
    converting; but inference would turn codes such as '007' into 7 and 'True' into a boolean,
    so those columns are pinned to strings.
    """
    dtypes: dict[str, str] = {}
    for position, column in enumerate(names):
        values = [row[position].strip() for _, row in body if position < len(row)]
        values = [v for v in values if v not in MISSING_TOKENS]
        numeric = [v for v in values if _looks_numeric(v, decimal_comma)]
        padded = any(re.match(_ZERO_PADDED, v.lstrip("+-")) for v in numeric)
        if not values or padded or len(numeric) < _NUMERIC_SHARE * len(values):
            dtypes[column] = "str"
    return dtypes


def _read_excel(raw: bytes, display: str, limits: Limits) -> tuple[pd.DataFrame, tuple[str, ...]]:
    from openpyxl import load_workbook

    notes: list[str] = []
    # Bound the unpacked size, the compression ratio and the XML depth before openpyxl parses.
    scan = scan_workbook(
        raw,
        display,
        max_unpacked_bytes=limits.max_excel_unpacked_bytes,
        max_ratio=limits.max_excel_ratio,
        setting=EXCEL_UNPACKED_ENV,
    )
    try:
        workbook = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception as exc:
        raise DataError(
            f"'{display}' could not be opened as an Excel workbook ({_first_line(exc)}). "
            "Re-save it from Excel as .xlsx, or export the sheet as CSV."
        ) from exc
    try:
        if not workbook.worksheets:
            raise DataError(f"'{display}' has no worksheets. Add the table to a sheet.")
        sheet = workbook.worksheets[0]
        if len(workbook.worksheets) > 1:
            notes.append(
                f"Read the first sheet '{sheet.title}' of {len(workbook.worksheets)}; move the "
                "sheet you want to the front or export it as CSV to use another."
            )
        n_rows, n_columns = sheet.max_row, sheet.max_column
        if n_columns is not None and n_columns > limits.max_columns:
            raise LimitError(
                f"'{display}' has {n_columns:,} columns, over the {limits.max_columns:,} limit. "
                "Keep only the columns you need or raise Limits(max_columns=...)."
            )
        if n_rows is not None and n_rows - 1 > limits.max_rows:
            raise LimitError(
                f"'{display}' has {n_rows - 1:,} rows, over the {limits.max_rows:,} limit. "
                "Load a subset of the rows or raise Limits(max_rows=...)."
            )
        formulas = scan.formulas_without_result.get(str(getattr(sheet, "_worksheet_path", "")))
        title = sheet.title
        rows: list[tuple[Any, ...]] = []
        try:
            for row in sheet.iter_rows(values_only=True):
                if len(rows) > limits.max_rows + 1:
                    raise LimitError(
                        f"'{display}' has more than {limits.max_rows:,} rows. Load a subset "
                        "of the rows or raise Limits(max_rows=...)."
                    )
                rows.append(row)
        except LimitError:
            raise
        except Exception as exc:
            raise DataError(
                f"The first sheet of '{display}' could not be read ({_first_line(exc)}). "
                "Re-save it from Excel as .xlsx, or export the sheet as CSV."
            ) from exc
    finally:
        workbook.close()
    while rows and all(_blank(cell) for cell in rows[0]):
        rows.pop(0)
    if not rows:
        raise DataError(
            f"The first sheet of '{display}' is empty. Put the table (header row first) on "
            "the first sheet."
        )
    width = max(len(row) for row in rows)
    rows = [tuple(row) + (None,) * (width - len(row)) for row in rows]
    header = ["" if _blank(cell) else str(cell) for cell in rows[0]]
    names, header_notes = _clean_header(header, display)
    frame = pd.DataFrame(rows[1:], columns=names, dtype=object)
    if formulas:
        notes.append(_formula_note(display, title, formulas, names))
    return frame, (*notes, *header_notes)


def _formula_note(
    display: str, title: str, formulas: Counter[int], names: list[str], shown: int = 5
) -> str:
    """Say which columns lost values to formula cells that have no saved result."""
    by_name: Counter[str] = Counter()
    for index, count in formulas.items():
        by_name[names[index] if index < len(names) else f"column {index + 1}"] += count
    parts = [f"'{name}' ({count:,})" for name, count in by_name.most_common(shown)]
    if len(by_name) > shown:
        parts.append(f"and {len(by_name) - shown} more column(s)")
    total = sum(by_name.values())
    return (
        f"'{display}', sheet '{title}': {total:,} formula cell(s) have no saved result and were "
        f"read as missing values, in {', '.join(parts)}. Open the file in Excel or LibreOffice "
        "(which computes the formulas) and save it again, or paste the formulas as values."
    )


def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _read_parquet(raw: bytes, display: str, limits: Limits) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(raw))
        n_rows, n_columns = parquet.metadata.num_rows, parquet.metadata.num_columns
    except Exception as exc:
        raise DataError(
            f"'{display}' could not be read as Parquet ({_first_line(exc)}). Re-export it as "
            "Parquet or CSV."
        ) from exc
    if n_columns > limits.max_columns:
        raise LimitError(
            f"'{display}' has {n_columns:,} columns, over the {limits.max_columns:,} limit. "
            "Keep only the columns you need or raise Limits(max_columns=...)."
        )
    if n_rows > limits.max_rows:
        raise LimitError(
            f"'{display}' has {n_rows:,} rows, over the {limits.max_rows:,} limit. Load a "
            "subset of the rows or raise Limits(max_rows=...)."
        )
    names = [str(n) for n in parquet.schema_arrow.names]
    _clean_header(names, display)
    try:
        frame = parquet.read().to_pandas()
    except Exception as exc:
        raise DataError(
            f"'{display}' could not be read as Parquet ({_first_line(exc)}). Re-export it as "
            "Parquet or CSV."
        ) from exc
    if isinstance(frame.index, pd.RangeIndex):
        return frame
    # A stored index (pandas writes one unless told not to) is data the user expects to see.
    return frame.reset_index()


def _finish(
    frame: pd.DataFrame,
    display: str,
    content_hash: str,
    encoding: str | None,
    delimiter: str | None,
    file_format: str,
    *,
    decimal_comma: bool,
) -> LoadedTable:
    names, header_notes = _clean_header([str(c) for c in frame.columns], display)
    frame = frame.set_axis(names, axis=1)
    notes: list[str] = list(header_notes) if file_format == "parquet" else []
    failures: dict[str, tuple[int, tuple[str, ...]]] = {}
    frame = frame.reset_index(drop=True)
    for column in names:
        series, note, failed = _tidy_column(frame[column], column, decimal_comma)
        if series is not frame[column]:
            # Replacing only the changed columns avoids copying the whole (possibly huge) frame.
            frame[column] = series
        if note:
            notes.append(note)
        if failed is not None:
            failures[column] = failed

    if len(frame) == 0:
        raise DataError(
            f"'{display}' has a header but no data rows. Choose a file with at least one row "
            "of data below the header."
        )
    generated = [c for c in names if re.fullmatch(r"column_\d+", c) and frame[c].isna().all()]
    if generated:
        frame = frame.drop(columns=generated)
        notes.append(f"Dropped {len(generated)} empty column(s) without a name.")
    empty_rows = frame.isna().all(axis=1)
    if frame.shape[1] == 0 or empty_rows.all():
        raise DataError(
            f"Every value in '{display}' is missing (empty or a token such as NA, ?, null). "
            "Check that you chose the right file and that it was exported with its values."
        )
    if empty_rows.any():
        frame = frame.loc[~empty_rows].reset_index(drop=True)
        notes.append(f"Dropped {int(empty_rows.sum())} empty row(s).")
    return LoadedTable(
        frame=frame,
        name=display,
        content_hash=content_hash,
        encoding=encoding,
        delimiter=delimiter,
        format=file_format,
        notes=tuple(notes),
        coercion_failures=failures,
    )


def _with_notes(loaded: LoadedTable, notes: tuple[str, ...]) -> LoadedTable:
    if not notes:
        return loaded
    return replace(loaded, notes=(*notes, *loaded.notes))


def _as_text(series: pd.Series) -> pd.Series | None:
    """The column as a string series, or None when it holds no text to tidy."""
    if pd.api.types.is_string_dtype(series.dtype) and series.dtype != object:
        return series
    if series.dtype != object:
        return None
    values = series.dropna()
    if values.empty:
        return series.astype("str")
    if not pd.api.types.is_string_dtype(series.infer_objects().dtype):
        return None
    return series.map(lambda v: v if v is None or isinstance(v, str) else str(v)).astype("str")


def _tidy_column(
    series: pd.Series, column: str, decimal_comma: bool
) -> tuple[pd.Series, str | None, tuple[int, tuple[str, ...]] | None]:
    """Strip, blank out missing tokens and convert mostly numeric text to numbers."""
    if series.dtype == object:
        inferred = series.infer_objects()
        if not pd.api.types.is_string_dtype(inferred.dtype):
            return inferred, None, None
    text = _as_text(series)
    if text is None:
        return series, None, None
    text = text.str.strip()
    text = text.mask(text.isin(MISSING_TOKENS))
    present = text.dropna()
    if present.empty:
        return pd.Series(np.nan, index=text.index, dtype="float64"), None, None

    step = max(1, len(present) // _CHECK_VALUES)
    probe = present.iloc[::step]
    if _parse_numbers(probe, decimal_comma).notna().mean() < 0.5:
        return text, None, None
    numbers = _parse_numbers(text, decimal_comma)
    parsed = numbers.notna() & text.notna()
    share = float(parsed.sum()) / len(present)
    if share < _NUMERIC_SHARE:
        kept = (
            f"Column '{column}' is mostly numbers ({share:.0%}) but was kept as text because "
            f"too many values are not numbers; correct them to use '{column}' as a number."
        )
        return text, kept if len(present) >= _NOTE_MIN_VALUES else None, None
    if present.str.match(_ZERO_PADDED).any():
        # Codes such as '007' are identifiers; as numbers they would lose their leading zeros.
        return text, None, None
    failed = text[text.notna() & ~parsed]
    report: tuple[int, tuple[str, ...]] | None = None
    note: str | None = None
    if len(failed):
        examples = tuple(dict.fromkeys(failed.tolist()))[:5]
        report = (len(failed), tuple(str(e) for e in examples))
        shown = ", ".join(repr(e) for e in report[1])
        note = (
            f"Column '{column}' was read as numbers; {len(failed)} value(s) that are not "
            f"numbers are now missing (for example {shown})."
        )
    return numbers, note, report


def _parse_numbers(text: pd.Series, decimal_comma: bool) -> pd.Series:
    """Numbers where the text is a plain decimal number, NaN elsewhere.

    Arrow's regex match and cast run several times faster than ``pd.to_numeric`` on strings;
    all-integer columns without gaps come back as int64.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pa.array(text.astype("str").array)
    if decimal_comma:
        comma = pc.match_substring_regex(values, _DECIMAL_COMMA.pattern)
        values = pc.if_else(comma, pc.replace_substring(values, ",", "."), values)
    valid = pc.match_substring_regex(values, _NUMBER)
    numeric = pc.if_else(valid, values, pa.scalar(None, pa.string()))
    floats = pc.cast(numeric, pa.float64()).to_numpy(zero_copy_only=False)
    numbers = pd.Series(floats, index=text.index, dtype="float64")
    if numbers.notna().all() and pc.all(pc.match_substring_regex(values, _INTEGER)).as_py():
        try:
            return pd.Series(
                pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False), index=text.index
            )
        except pa.ArrowInvalid:
            return numbers
    return numbers
