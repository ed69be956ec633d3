"""Checks on an Excel workbook (.xlsx) before openpyxl parses it.

An .xlsx file is a ZIP archive of XML parts. Its size on disk says little about the work of
reading it: a 1 MB file can hold a sheet that unpacks to 400 MB and takes minutes and gigabytes to
parse. :func:`scan_workbook` therefore reads only the ZIP directory first and refuses a workbook
whose parts declare more unpacked bytes than the cap (Python's ``zipfile``, which openpyxl reads
through, never returns more than a member declares), or a large part that expands more than a
zip bomb's ratio. It then streams every XML part once through expat (non-recursive, in C) to
refuse a document type declaration or entities (never in a real workbook; the classic
"billion laughs") and nesting deeper than :data:`MAX_XML_DEPTH` (a real sheet is less than ten
elements deep; a deeply nested part would make openpyxl's element tree grow without bound).

The same pass counts, per worksheet and column, the formula cells that carry no saved result:
openpyxl reads those as empty, so the loader can say how many values are missing and why.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat

from medimg_core.errors import DataError, LimitError

__all__ = [
    "BOMB_MIN_BYTES",
    "MAX_MEMBERS",
    "MAX_XML_DEPTH",
    "WorkbookScan",
    "column_index",
    "scan_workbook",
]

MAX_XML_DEPTH = 100
"""Deepest element nesting accepted in any XML part (real workbooks stay under 20)."""

MAX_MEMBERS = 10_000
"""Most parts in a workbook (a workbook with many sheets, charts and images has a few hundred)."""

BOMB_MIN_BYTES = 2**20
"""Parts smaller than this (unpacked) are not tested for their compression ratio."""

_CHUNK = 1 << 20
_COLUMN = re.compile(r"^\$?([A-Za-z]{1,3})")
_SUFFIX = "re-save it from Excel as .xlsx, or export the sheet as CSV."


@dataclass(frozen=True)
class WorkbookScan:
    """What the pre-parse scan of a workbook found.

    Attributes
    ----------
    unpacked_bytes : total declared unpacked size of the workbook's parts.
    formulas_without_result : per worksheet part (e.g. ``"xl/worksheets/sheet1.xml"``), per
        zero-based column index (A is 0), the number of formula cells that have no saved result.
    """

    unpacked_bytes: int
    formulas_without_result: dict[str, Counter[int]] = field(default_factory=dict)


class _Refused(Exception):
    """Raised inside expat callbacks to stop the parse; carries the reason."""


def column_index(letters: str) -> int:
    """Zero-based index of a spreadsheet column: ``"A"`` -> 0, ``"AA"`` -> 26."""
    index = 0
    for char in letters.upper():
        index = index * 26 + (ord(char) - ord("A") + 1)
    return index - 1


def scan_workbook(
    raw: bytes, display: str, *, max_unpacked_bytes: int, max_ratio: float, setting: str
) -> WorkbookScan:
    """Check a workbook's ZIP directory and XML parts before it is parsed.

    Parameters
    ----------
    raw : the bytes of the .xlsx file.
    display : the file's name, as shown to the user.
    max_unpacked_bytes : most bytes all parts together may declare unpacked.
    max_ratio : largest compression ratio of a part of at least :data:`BOMB_MIN_BYTES`.
    setting : the setting that raises ``max_unpacked_bytes``, named in the message.

    Returns
    -------
    WorkbookScan

    Raises
    ------
    LimitError
        The parts unpack to more than ``max_unpacked_bytes``, a part expands more than
        ``max_ratio``-fold, or there are more than :data:`MAX_MEMBERS` parts.
    DataError
        The file is not a readable ZIP, or an XML part is malformed, declares a document type
        or entities, or nests deeper than :data:`MAX_XML_DEPTH`.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DataError(
            f"'{display}' could not be opened as an Excel workbook (not a readable ZIP: {exc}); "
            + _SUFFIX
        ) from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise LimitError(
                f"'{display}' holds {len(infos):,} parts, more than a workbook needs "
                f"({MAX_MEMBERS:,} at most); {_SUFFIX}"
            )
        total = sum(info.file_size for info in infos)
        if total > max_unpacked_bytes:
            raise LimitError(
                f"'{display}' unpacks to {_size(total)}, over the {_size(max_unpacked_bytes)} "
                "that medimg parses in an Excel file (reading Excel is slow and takes memory). "
                f"Export the sheet as CSV or Parquet, which medimg reads quickly, or ask an "
                f"administrator to raise the setting {setting}."
            )
        for info in infos:
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size >= BOMB_MIN_BYTES and ratio > max_ratio:
                raise LimitError(
                    f"'{display}': its part '{info.filename}' expands {ratio:,.0f}-fold "
                    f"(at most {max_ratio:g}-fold is accepted); this looks like a zip bomb, not "
                    f"a spreadsheet; {_SUFFIX}"
                )
        formulas: dict[str, Counter[int]] = {}
        for info in infos:
            if info.is_dir() or not info.filename.lower().endswith((".xml", ".rels", ".vml")):
                continue
            is_sheet = info.filename.lower().startswith("xl/worksheets/")
            found = _scan_xml(archive, info, display, count_formulas=is_sheet)
            if found:
                formulas[info.filename] = found
    return WorkbookScan(total, formulas)


def _scan_xml(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, display: str, *, count_formulas: bool
) -> Counter[int]:
    # Without namespace processing names arrive as written ("c" or "x:c"); that is faster, and
    # the local name is all the formula count needs.
    parser = expat.ParserCreate()
    parser.buffer_text = True
    counts: Counter[int] = Counter()
    depth = 0
    # Column index, has a formula, has a result; then the next column when a cell has no "r".
    cell: list[Any] = [0, False, False, 0]
    local_names: dict[str, str] = {}

    def local_name(name: str) -> str:
        local = local_names.get(name)
        if local is None:
            local = local_names[name] = name.rpartition(":")[2]
        return local

    def refuse_doctype(*_: Any) -> None:
        raise _Refused("declares a document type (DTD), which a workbook never does")

    def refuse_entity(*_: Any) -> None:
        raise _Refused("declares XML entities, which a workbook never does")

    def on_text(text: str) -> None:
        if text.strip():
            cell[2] = True

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_XML_DEPTH:
            raise _Refused(f"nests elements more than {MAX_XML_DEPTH} deep")
        if not count_formulas:
            return
        local = local_name(name)
        if local == "c":
            match = _COLUMN.match(attrs.get("r") or "")
            column = column_index(match.group(1)) if match else cell[3]
            cell[0], cell[1], cell[2], cell[3] = column, False, False, column + 1
        elif local == "row":
            cell[3] = 0
        elif local == "f":
            cell[1] = True
        elif local == "v" and cell[1]:
            parser.CharacterDataHandler = on_text
        elif local == "is" and cell[1]:
            cell[2] = True  # an inline string result

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        if not count_formulas:
            return
        local = local_name(name)
        if local == "v":
            parser.CharacterDataHandler = None
        elif local == "c":
            if cell[1] and not cell[2]:
                counts[cell[0]] += 1
            cell[1] = False

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_entity
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except _Refused as exc:
        raise DataError(f"'{display}': its part '{info.filename}' {exc}; {_SUFFIX}") from None
    except expat.ExpatError as exc:
        raise DataError(
            f"'{display}': its part '{info.filename}' is not well-formed XML "
            f"({expat.errors.messages.get(exc.code, 'unreadable')}, line {exc.lineno}); {_SUFFIX}"
        ) from None
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        NotImplementedError,
        RuntimeError,  # an encrypted part
    ) as exc:
        raise DataError(
            f"'{display}': its part '{info.filename}' cannot be unpacked ({exc}); {_SUFFIX}"
        ) from None
    return counts


def _size(n_bytes: int) -> str:
    if n_bytes < 2**20:
        return f"{n_bytes:,} bytes"
    return f"{n_bytes / 2**20:,.1f} MB"
