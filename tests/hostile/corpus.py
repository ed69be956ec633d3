"""The hostile-input corpus: small files, generated at test time, that attack every way in.

:func:`build_corpus` writes each file into a folder and returns one :class:`HostileCase` per
file: which channel takes it ("table": ``medimg clean``/``train`` and the Data page's table
upload; "images": ``medimg features`` and the Data page's image upload; "model": ``medimg
predict``), what it attacks, and whether medimg must refuse it with one clear message or accept
it. Nothing here is large on disk: a "bomb" is a few hundred KB of compressed data or a header
that lies; the largest file is the 10 MB text cell. Run ``python -m tests.hostile.corpus DIR``
to write the corpus into DIR and list it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image

Channel = Literal["table", "images", "model"]
Expectation = Literal["refused", "accepted"]

# Options that keep a `medimg train` of a small table to a few seconds.
FAST_TRAIN = ("--n-boot", "20", "--cv", "3", "--model", "logreg")
# A marker a pickle payload would create if it ever ran; the harness asserts it never exists.
PAYLOAD_MARKER = "PAYLOAD-RAN"


@dataclass(frozen=True)
class HostileCase:
    """One hostile input.

    Attributes
    ----------
    name : unique, readable test id, e.g. "csv-ragged-rows".
    path : the file (or folder, for model directories) to feed in.
    channels : where it goes in: "table", "images" or "model".
    attacks : what it attacks, in a few words.
    expect : "refused" (one clear error, nothing left behind) or "accepted" (works, maybe with
        notes on stderr).
    command : the CLI command that takes it: "clean", "train", "features" or "predict".
    args : extra CLI arguments after the data (e.g. ``--positive``).
    data : for "model" cases, the table scored with the model.
    secret : text that must never appear in any output (a patient name in a DICOM header).
    data_page : whether the Data page takes it (a ZIP/.npz/table upload; not a folder).
    says : for an accepted file, words its notes must contain (e.g. "formula").
    owner : who fixes it when it fails (issue 12: A tables, B images, C model files).
    """

    name: str
    path: Path
    channels: tuple[Channel, ...]
    attacks: str
    expect: Expectation
    command: str
    args: tuple[str, ...] = ()
    data: Path | None = None
    secret: str | None = None
    data_page: bool = True
    says: str | None = None
    owner: str = field(default="", compare=False)


# --------------------------------------------------------------------------- shared helpers


def base_frame(rows: int = 60) -> pd.DataFrame:
    """A small, valid table: case_id, 5 numeric features, diagnosis (benign/malignant)."""
    rng = np.random.default_rng(12)
    label = np.array(["benign", "malignant"] * (rows // 2) + ["benign"] * (rows % 2))
    shift = (label == "malignant").astype(float)
    frame = pd.DataFrame({"case_id": [f"C{i:04d}" for i in range(rows)]})
    for k, name in enumerate(["radius", "texture", "perimeter", "area", "smoothness"]):
        frame[name] = np.round(rng.normal(10 + k, 1.0, rows) + 1.5 * shift, 4)
    frame["diagnosis"] = label
    return frame


def _csv(frame: pd.DataFrame, **kwargs: object) -> bytes:
    return frame.to_csv(index=False, **kwargs).encode("utf-8")  # type: ignore[call-overload]


def _zip_bytes(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _image_members(per_class: int = 6, size: int = 16) -> dict[str, bytes]:
    """A valid study: normal/ and pneumonia/ with ``per_class`` grey PNGs each."""
    rng = np.random.default_rng(3)
    members = {}
    for cls, offset in (("normal", 60), ("pneumonia", 150)):
        for i in range(per_class):
            pixels = np.clip(rng.normal(offset, 30, (size, size)), 0, 255).astype(np.uint8)
            members[f"{cls}/{cls}_{i:02d}.png"] = _png(Image.fromarray(pixels))
    return members


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_png(width: int, height: int) -> bytes:
    """A genuine greyscale PNG of width × height black pixels: ~100 KB for 10,000 × 10,000."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    parts = [compressor.compress(row * 100) for _ in range(height // 100)]
    parts.append(compressor.compress(row * (height % 100)))
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def _lying_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height but whose data holds only a few rows."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * (width + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def _zero_stream_zip(
    name: str, size: int, extra: dict[str, bytes], *, prefix: bytes = b""
) -> bytes:
    """A ZIP with ``extra`` members plus ``name``: ``prefix`` then ``size`` zero bytes,
    deflated (~1000:1)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in extra.items():
            archive.writestr(member, data)
        with archive.open(name, "w", force_zip64=size > 2**31) as out:
            out.write(prefix)
            chunk = b"\x00" * 2**20
            for _ in range(size // len(chunk)):
                out.write(chunk)
    return buffer.getvalue()


def _lie_about_size(data: bytes, member: str, claimed: int) -> bytes:
    """The ZIP ``data`` with ``member``'s uncompressed size in both headers replaced by
    ``claimed`` (a small lie hides a bomb from a check of the declared size)."""
    raw = bytearray(data)
    encoded = member.encode()
    # Local file header: signature PK\3\4, uncompressed size at offset 22.
    start = 0
    while (start := raw.find(b"PK\x03\x04", start)) != -1:
        (name_len,) = struct.unpack_from("<H", raw, start + 26)
        if bytes(raw[start + 30 : start + 30 + name_len]) == encoded:
            struct.pack_into("<I", raw, start + 22, claimed)
        start += 4
    # Central directory header: signature PK\1\2, uncompressed size at offset 24.
    start = 0
    while (start := raw.find(b"PK\x01\x02", start)) != -1:
        (name_len,) = struct.unpack_from("<H", raw, start + 28)
        if bytes(raw[start + 46 : start + 46 + name_len]) == encoded:
            struct.pack_into("<I", raw, start + 24, claimed)
        start += 4
    return bytes(raw)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npy_header_only(descr: str, shape: tuple[int, ...], payload: bytes = b"") -> bytes:
    """A ``.npy`` member whose header claims ``shape`` but carries only ``payload``."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin-1")
    total = 10 + len(header) + 1
    header += b" " * ((64 - total % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def _medmnist(n: int = 20, *, size: int = 28) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        labels = np.arange(n) % 2
        images = np.clip(rng.normal(80, 30, (n, size, size)) + 60 * labels[:, None, None], 0, 255)
        arrays[f"{split}_images"] = images.astype(np.uint8)
        arrays[f"{split}_labels"] = labels.astype(np.uint8)[:, None]
    return arrays


def _npz(arrays: dict[str, np.ndarray | bytes]) -> bytes:
    """An ``.npz``: arrays saved as ``.npy`` members; bytes are taken as a raw member."""
    members = {
        f"{key}.npy": value if isinstance(value, bytes) else _npy(value)
        for key, value in arrays.items()
    }
    return _zip_bytes(members)


def _dicom(
    *,
    pixels: bool = True,
    transfer_syntax: str = "1.2.840.10008.1.2.1",
    patient: str = "DOE^JANE",
    rows: int = 16,
) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = patient
    ds.PatientID = "MRN-4431-77"
    ds.PatientBirthDate = "19610214"
    ds.InstitutionName = "St Hostile Hospital"
    ds.Modality = "OT"
    if pixels:
        ds.Rows = ds.Columns = rows
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        rng = np.random.default_rng(rows)
        ds.PixelData = rng.integers(0, 255, (rows, rows), dtype=np.uint8).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    raw = buffer.getvalue()
    if transfer_syntax != ExplicitVRLittleEndian:
        # Raw pixels under another transfer syntax's name (same UID length, so the header
        # stays well-formed): what a mislabelled export looks like.
        raw = raw.replace(
            b"1.2.840.10008.1.2.1\x00", transfer_syntax.encode().ljust(20, b"\x00"), 1
        )
    return raw


def _xlsx(sheets: dict[str, pd.DataFrame]) -> bytes:
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=name, index=False)
    return buffer.getvalue()


def _xlsx_with_sheet_xml(sheet: Callable[[io.BufferedIOBase], None] | bytes) -> bytes:
    """A minimal, valid ``.xlsx`` whose one worksheet is ``sheet`` (bytes or a writer)."""
    template = zipfile.ZipFile(io.BytesIO(_xlsx({"Sheet1": base_frame(3)})))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in template.infolist():
            if info.filename == "xl/worksheets/sheet1.xml":
                if isinstance(sheet, bytes):
                    archive.writestr(info.filename, sheet)
                else:
                    with archive.open(info.filename, "w", force_zip64=True) as out:
                        sheet(out)  # type: ignore[arg-type]
            else:
                archive.writestr(info.filename, template.read(info.filename))
    return buffer.getvalue()


_SHEET_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
)
_SHEET_TAIL = b"</sheetData></worksheet>"


def _bomb_sheet(out: io.BufferedIOBase, rows: int = 1_000_000) -> None:
    """~130 MB of sheet XML (header row + ``rows`` identical rows) that deflates ~1000:1."""
    out.write(_SHEET_HEAD)
    out.write(b'<row r="1"><c r="A1" t="inlineStr"><is><t>x</t></is></c></row>')
    row = b'<row><c t="n"><v>1</v></c><c t="n"><v>2</v></c><c t="n"><v>3</v></c></row>'
    block = row * 10_000
    for _ in range(rows // 10_000):
        out.write(block)
    out.write(_SHEET_TAIL)


# --------------------------------------------------------------------------- the cases


class _Builder:
    def __init__(self, directory: Path, *, dry_run: bool = False) -> None:
        self.directory = directory
        self.dry_run = dry_run
        self.cases: list[HostileCase] = []

    def add(
        self,
        name: str,
        filename: str,
        data: bytes | Callable[[], bytes] | None,
        channel: Channel,
        attacks: str,
        expect: Expectation,
        **kwargs: object,
    ) -> None:
        path = self.directory / channel / filename
        if data is not None and not self.dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data() if callable(data) else data)
        command = kwargs.pop(
            "command", {"table": "clean", "images": "features", "model": "predict"}[channel]
        )
        if command == "train":
            kwargs["args"] = (*FAST_TRAIN, *kwargs.get("args", ()))  # type: ignore[misc]
        self.cases.append(
            HostileCase(
                name=name,
                path=path,
                channels=(channel,),
                attacks=attacks,
                expect=expect,
                command=str(command),
                **kwargs,  # type: ignore[arg-type]
            )
        )


def _tables(b: _Builder) -> None:
    base = base_frame()
    t = "table"

    def csv_case(
        name: str,
        data: bytes | Callable[[], bytes],
        attacks: str,
        expect: Expectation,
        **kw: object,
    ) -> None:
        b.add(name, f"{name}.csv", data, t, attacks, expect, **kw)

    csv_case("csv-valid", _csv(base), "control: a valid table", "accepted")
    csv_case("csv-valid-train", _csv(base), "control: a valid table", "accepted", command="train")
    tokens = base.astype(object).copy()
    for i, token in enumerate(["NA", "?", "null", "-", "", "N/A", "NaN", "nan", "#N/A", "None"]):
        tokens.iloc[3 * i + 1, 1 + i % 5] = token
    csv_case("csv-missing-tokens", _csv(tokens), "missing-value tokens", "accepted")
    mixed = base.astype(object).copy()
    mixed.loc[[2, 7, 11], "radius"] = ["abc", "12,5", "1e3x"]
    csv_case("csv-mixed-types", _csv(mixed), "text among numbers", "accepted", command="train")
    csv_case("csv-utf8-bom", b"\xef\xbb\xbf" + _csv(base), "UTF-8 byte-order mark", "accepted")
    latin = base.copy()
    latin["région"] = ["Genève", "Zürich"] * 30
    csv_case(
        "csv-latin1",
        latin.to_csv(index=False).encode("latin-1"),
        "latin-1 encoding",
        "accepted",
    )
    csv_case(
        "csv-utf16",
        latin.to_csv(index=False).encode("utf-16"),
        "UTF-16 with BOM (Excel 'Unicode text')",
        "accepted",
    )
    csv_case(
        "csv-nul-bytes",
        _csv(base).replace(b"\n", b"\x00\x00\n", 5),
        "NUL bytes in the text",
        "refused",
    )
    ragged = _csv(base).splitlines(keepends=True)
    ragged[5] = ragged[5].rstrip(b"\n") + b",1,2,3\n"
    csv_case("csv-ragged-rows", b"".join(ragged), "a row with extra fields", "refused")
    short = _csv(base).splitlines(keepends=True)
    short[9] = b"C9999,1.0\n"
    csv_case("csv-short-row", b"".join(short), "a row with missing fields", "accepted")
    csv_case(
        "csv-one-column",
        _csv(base[["diagnosis"]]),
        "only a label, no features",
        "refused",
        command="train",
    )
    csv_case("csv-header-only", _csv(base.head(0)), "header without rows", "refused")
    csv_case("csv-empty", b"", "0-byte file", "refused")
    csv_case("csv-blank-lines", b"\n\n  \n\r\n", "only blank lines", "refused")
    huge = base.copy()
    huge["radius"] = huge["radius"] * 1e300
    csv_case("csv-huge-numbers", _csv(huge), "values near 1e301", "refused", command="train")
    infs = base.astype(object).copy()
    infs.loc[[1, 4, 9], "texture"] = ["inf", "-inf", "Infinity"]
    csv_case("csv-infinities", _csv(infs), "±inf in a numeric column", "refused", command="train")
    extreme = base.copy()
    sign = np.where(np.arange(len(extreme)) % 2 == 0, 1.0, -1.0)
    for column in ["radius", "texture", "perimeter", "area", "smoothness"]:
        extreme[column] = sign * (1.7e308 + extreme[column] * 1e305)
    csv_case(
        "csv-near-max-float",
        _csv(extreme),
        "every value near ±1.8e308 (overflow when scaling)",
        "refused",
        command="train",
        owner="A",
    )
    overflow = base.astype(object).copy()
    overflow.loc[3, "radius"] = "1.8e308"
    overflow.loc[8, "area"] = "-1.8e308"
    csv_case(
        "csv-overflow-literal",
        _csv(overflow),
        "1.8e308 overflows to inf",
        "refused",
        command="train",
    )
    no_label = base.copy()
    no_label["diagnosis"] = np.nan
    csv_case(
        "csv-all-missing-label",
        _csv(no_label),
        "label column entirely missing",
        "refused",
        command="train",
        args=("--label", "diagnosis"),
        owner="A",
    )
    one_class = base.copy()
    one_class["diagnosis"] = "benign"
    csv_case(
        "csv-one-class",
        _csv(one_class),
        "a single class",
        "refused",
        command="train",
        args=("--label", "diagnosis"),
    )
    numeric_codes = base.copy()
    numeric_codes["outcome"] = (numeric_codes.pop("diagnosis") == "malignant").astype(int)
    csv_case(
        "csv-numeric-label-no-positive",
        _csv(numeric_codes),
        "0/1 label without --positive",
        "refused",
        command="train",
        args=("--label", "outcome"),
    )
    dup = _csv(base).replace(b"texture", b"radius", 1)
    csv_case("csv-duplicate-columns", dup, "two columns with the same name", "refused")
    formula = base.copy()
    formula["note"] = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "ok", "=HYPERLINK(x)"] * 10
    csv_case(
        "csv-formula-injection",
        _csv(formula),
        "spreadsheet formula cells (=, +, -, @)",
        "accepted",
        command="train",
    )

    def big_cell() -> bytes:
        frame = base.copy()
        frame["note"] = ["short"] * 60
        frame.loc[7, "note"] = "x" * (10 * 2**20)
        return _csv(frame)

    csv_case(
        "csv-10mb-cell",
        big_cell,
        "a 10 MB text cell (category length)",
        "refused",
        command="train",
        owner="A",
    )
    many_cats = base.copy()
    many_cats["free_text"] = [f"comment number {i} " + "y" * 200 for i in range(60)]
    csv_case(
        "csv-free-text-column",
        _csv(many_cats),
        "a text column with a distinct value per row",
        "accepted",
        command="train",
    )
    wide = ",".join(f"c{i}" for i in range(20_000)) + "\n" + (",".join(["0"] * 20_000) + "\n") * 3
    csv_case("csv-20k-columns", wide.encode(), "20,000 columns", "refused")
    deep = _csv(base).rstrip(b"\n") + b"\n" + b'C9000,1,2,3,4,5,"' + b'""' * 5000 + b'"\n'
    csv_case("csv-deep-quoting", deep, "10,000 doubled quotes in one cell", "accepted")
    csv_case(
        "csv-unterminated-quote",
        _csv(base) + b'C9001,1,2,3,4,5,"benign\n' + _csv(base).split(b"\n", 1)[1],
        "a quote that never closes",
        "refused",
    )
    multiline = base.copy()
    multiline["note"] = ["line one\nline two, with comma", 'say "hi"'] * 30
    csv_case("csv-quoted-newlines", _csv(multiline), "newlines inside quoted cells", "accepted")
    csv_case("csv-crlf", _csv(base, lineterminator="\r\n"), "Windows line endings", "accepted")
    csv_case("csv-cr-only", _csv(base, lineterminator="\r"), "old Mac line endings", "accepted")
    csv_case(
        "csv-semicolon", _csv(base, sep=";", decimal=","), "; separator, decimal comma", "accepted"
    )
    odd_names = base.rename(
        columns={"radius": "ra\u202edius", "texture": "tex\tture", "area": "🩻 area"}
    )
    csv_case(
        "csv-odd-column-names", _csv(odd_names), "RTL override, tab, emoji in names", "accepted"
    )
    long_name = base.rename(columns={"radius": "r" * 100_000})
    csv_case("csv-100k-column-name", _csv(long_name), "a 100,000-character column name", "accepted")
    rng = np.random.default_rng(9)
    csv_case("csv-binary-garbage", rng.bytes(4096), "random bytes", "refused")
    csv_case(
        "csv-png-disguised",
        _huge_png(64, 64),
        "a PNG named .csv",
        "refused",
    )
    csv_case("csv-gzip-disguised", gzip.compress(_csv(base)), "gzip data named .csv", "refused")
    csv_case(
        "csv-html-page",
        b"<!DOCTYPE html><html><body><table><tr><td>a</td></tr></table></body></html>\n",
        "an HTML page saved as .csv",
        "refused",
    )
    csv_case(
        "csv-single-row",
        _csv(base.head(1)),
        "one case",
        "refused",
        command="train",
        args=("--label", "diagnosis"),
    )
    constant = base.copy()
    for column in ["radius", "texture", "perimeter", "area", "smoothness"]:
        constant[column] = 1.0
    csv_case(
        "csv-constant-features",
        _csv(constant),
        "every feature constant",
        "refused",
        command="train",
    )
    b.add("tsv-valid", "tsv-valid.tsv", _csv(base, sep="\t"), t, "control: TSV", "accepted")
    b.add(
        "txt-json-lines",
        "txt-json-lines.txt",
        "\n".join(base.head(20).to_json(orient="records", lines=True).splitlines()).encode(),
        t,
        "JSON lines named .txt",
        "refused",
    )
    b.add(
        "json-array",
        "json-array.json",
        base.head(20).to_json(orient="records").encode(),
        t,
        "a JSON file (not a supported format)",
        "refused",
        data_page=False,  # the uploader's own type filter refuses it before medimg sees it
    )
    b.add(
        "csv-json-inside",
        "csv-json-inside.csv",
        json.dumps({"a": [[[[1]]]] * 3, "b": "x"}).encode(),
        t,
        "a JSON object named .csv",
        "refused",
    )

    # Excel
    b.add("xlsx-valid", "xlsx-valid.xlsx", _xlsx({"Sheet1": base}), t, "control: xlsx", "accepted")
    b.add(
        "xlsx-multiple-sheets",
        "xlsx-multiple-sheets.xlsx",
        _xlsx({"Cases": base, "Notes": pd.DataFrame({"x": ["y"]}), "Empty": base.head(0)}),
        t,
        "three sheets",
        "accepted",
    )
    formulas = base.copy().astype(object)
    formulas.loc[[0, 5, 9], "radius"] = ["=1+1", "=SUM(B2:B4)", '=WEBSERVICE("http://x")']
    b.add(
        "xlsx-formula-cells",
        "xlsx-formula-cells.xlsx",
        _xlsx({"Sheet1": formulas}),
        t,
        "formula cells (no cached values)",
        "accepted",
        says="formula",
        owner="A",
    )
    b.add(
        "xlsx-bomb",
        "xlsx-bomb.xlsx",
        lambda: _xlsx_with_sheet_xml(_bomb_sheet),
        t,
        "sheet XML deflated ~1000:1 (~130 MB unpacked)",
        "refused",
        owner="A",
    )
    b.add(
        "xlsx-bomb-lying-size",
        "xlsx-bomb-lying-size.xlsx",
        lambda: _lie_about_size(
            _xlsx_with_sheet_xml(lambda out: _bomb_sheet(out, rows=200_000)),
            "xl/worksheets/sheet1.xml",
            1000,
        ),
        t,
        "sheet XML whose header claims 1 KB",
        "refused",
    )
    deep_xml = _SHEET_HEAD + b"<x>" * 200_000 + b"</x>" * 200_000 + _SHEET_TAIL
    b.add(
        "xlsx-deep-xml",
        "xlsx-deep-xml.xlsx",
        _xlsx_with_sheet_xml(deep_xml),
        t,
        "sheet XML nested 200,000 levels",
        "refused",
        owner="A",
    )
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
            for i in range(1, 10)
        )
        + b']><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        + b'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&lol9;</t></is></c></row>'
        + _SHEET_TAIL
    )
    b.add(
        "xlsx-billion-laughs",
        "xlsx-billion-laughs.xlsx",
        _xlsx_with_sheet_xml(laughs),
        t,
        "XML entity expansion",
        "refused",
    )
    b.add("xlsx-not-a-zip", "xlsx-not-a-zip.xlsx", _csv(base), t, "CSV text named .xlsx", "refused")
    b.add(
        "xlsx-truncated",
        "xlsx-truncated.xlsx",
        _xlsx({"Sheet1": base})[:3000],
        t,
        "cut off mid-file",
        "refused",
    )
    b.add(
        "xlsx-encrypted",
        "xlsx-encrypted.xlsx",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504 + rng.bytes(2048),
        t,
        "password-protected (OLE2 container) workbook",
        "refused",
    )
    b.add(
        "xlsx-empty-sheet",
        "xlsx-empty-sheet.xlsx",
        _xlsx({"Sheet1": pd.DataFrame()}),
        t,
        "a workbook with an empty sheet",
        "refused",
    )
    b.add(
        "xlsm-macro-named",
        "xlsm-macro-named.xlsm",
        _xlsx({"Sheet1": base}),
        t,
        "macro-enabled extension",
        "accepted",
    )

    # Parquet
    buffer = io.BytesIO()
    base.to_parquet(buffer, index=False)
    parquet = buffer.getvalue()
    b.add("parquet-valid", "parquet-valid.parquet", parquet, t, "control: Parquet", "accepted")
    b.add(
        "parquet-truncated",
        "parquet-truncated.parquet",
        parquet[: len(parquet) // 2],
        t,
        "cut in half",
        "refused",
    )
    b.add(
        "parquet-wrong-magic",
        "parquet-wrong-magic.parquet",
        b"XXXX" + parquet[4:-4] + b"XXXX",
        t,
        "PAR1 magic replaced",
        "refused",
    )
    lying_footer = bytearray(parquet)
    struct.pack_into("<I", lying_footer, len(lying_footer) - 8, 2**31 - 1)
    b.add(
        "parquet-lying-footer",
        "parquet-lying-footer.parquet",
        bytes(lying_footer),
        t,
        "footer length claims 2 GB",
        "refused",
    )
    buffer = io.BytesIO()
    base.head(0).to_parquet(buffer, index=False)
    b.add(
        "parquet-no-rows",
        "parquet-no-rows.parquet",
        buffer.getvalue(),
        t,
        "schema without rows",
        "refused",
    )
    nested = base.copy().astype(object)
    nested["radius"] = [[1.0, 2.0]] * 60
    buffer = io.BytesIO()
    nested.to_parquet(buffer, index=False)
    b.add(
        "parquet-list-column",
        "parquet-list-column.parquet",
        buffer.getvalue(),
        t,
        "a column of lists",
        "accepted",
        command="train",
    )


def _images(b: _Builder) -> None:
    valid = _image_members()
    i = "images"

    def zip_case(
        name: str, members: dict[str, bytes], attacks: str, expect: Expectation, **kw: object
    ) -> None:
        b.add(name, f"{name}.zip", lambda: _zip_bytes(members), i, attacks, expect, **kw)

    zip_case("zip-valid", valid, "control: a valid study", "accepted")
    zip_case(
        "zip-slip",
        {**valid, "../../evil.png": valid["normal/normal_00.png"]},
        "zip-slip path ../../",
        "refused",
    )
    zip_case(
        "zip-absolute-path",
        {**valid, "/tmp/medimg-evil.png": valid["normal/normal_00.png"]},
        "absolute member path",
        "refused",
    )
    zip_case(
        "zip-backslash-slip",
        {**valid, "..\\..\\evil.png": valid["normal/normal_00.png"]},
        "Windows-style ..\\ path",
        "refused",
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in valid.items():
            archive.writestr(name, data)
        link = zipfile.ZipInfo("normal/link.png")
        link.create_system = 3
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
    b.add(
        "zip-symlink",
        "zip-symlink.zip",
        buffer.getvalue(),
        i,
        "a symlink member to /etc/passwd",
        "refused",
    )
    zip_case(
        "zip-nested-zip",
        {**valid, "more/inner.zip": _zip_bytes(valid)},
        "a ZIP inside the ZIP",
        "accepted",
    )
    b.add(
        "zip-member-bomb-unused",
        "zip-member-bomb-unused.zip",
        lambda: _zero_stream_zip("extras/padding.bin", 300 * 2**20, valid),
        i,
        "a non-image member of 300 MB zeros (never needed)",
        "accepted",
        owner="B",
    )
    b.add(
        "zip-member-bomb-image",
        "zip-member-bomb-image.zip",
        lambda: _zero_stream_zip("normal/zzz.png", 300 * 2**20, valid),
        i,
        "an 'image' member of 300 MB zeros",
        "refused",
    )
    huge_png = b"" if b.dry_run else _huge_png(10_000, 10_000)
    zip_case(
        "zip-10000x10000-png",
        {"normal/huge.png": huge_png, "pneumonia/huge.png": huge_png},
        "only 10,000 × 10,000 PNGs (100 KB compressed)",
        "refused",
        owner="B",
    )
    zip_case(
        "zip-png-lying-header",
        {**valid, "normal/liar.png": _lying_png(60_000, 60_000)},
        "PNG header claims 60,000 × 60,000 (left out, with a note)",
        "accepted",
        says="left out",
    )
    zip_case(
        "zip-truncated-png",
        {**valid, "normal/cut.png": valid["normal/normal_01.png"][:60]},
        "a truncated PNG",
        "accepted",
    )
    jpeg = io.BytesIO()
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(jpeg, format="JPEG")
    zip_case(
        "zip-truncated-jpeg",
        {**valid, "normal/cut.jpg": jpeg.getvalue()[:200]},
        "a truncated JPEG",
        "accepted",
    )
    tiny = {k: _png(Image.new("L", (1, 1), 7 * n)) for n, k in enumerate(valid)}
    zip_case("zip-1x1-images", tiny, "every image 1 × 1", "refused")
    sixteen = {}
    for n, k in enumerate(valid):
        sixteen[k] = _png(Image.fromarray(np.full((16, 16), 1000 * n + 7, np.uint16)))
    zip_case("zip-16-bit", sixteen, "16-bit greyscale PNGs", "accepted")
    palette = {
        k: _png(Image.new("RGB", (16, 16), (n * 20, 40, 90)).convert("P"))
        for n, k in enumerate(valid)
    }
    zip_case("zip-palette", palette, "palette PNGs", "accepted")
    cmyk = {}
    for n, k in enumerate(valid):
        out = io.BytesIO()
        Image.new("CMYK", (16, 16), (n * 10, 30, 50, 5)).save(out, format="JPEG")
        cmyk[k.replace(".png", ".jpg")] = out.getvalue()
    zip_case("zip-cmyk-jpeg", cmyk, "CMYK JPEGs", "accepted")
    gif = io.BytesIO()
    frames = [Image.new("L", (16, 16), v) for v in (10, 120, 250)]
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    zip_case(
        "zip-animated-gif",
        {**valid, "normal/anim.gif": gif.getvalue()},
        "an animated GIF among PNGs",
        "accepted",
    )
    zip_case(
        "zip-non-image-files",
        {
            **valid,
            "normal/notes.txt": b"hello",
            "pneumonia/.DS_Store": b"\x00\x00\x00\x01Bud1",
            "normal/fake.png": b"not an image",
        },
        "text and junk in the class folders",
        "accepted",
    )
    zip_case("zip-empty", {}, "an empty ZIP", "refused")
    zip_case("zip-no-images", {"readme.txt": b"nothing here"}, "a ZIP without images", "refused")
    b.add(
        "zip-not-a-zip",
        "zip-not-a-zip.zip",
        b"PK\x03\x04" + rng_bytes(1000),
        i,
        "garbage after a ZIP signature",
        "refused",
    )
    b.add(
        "zip-truncated",
        "zip-truncated.zip",
        _zip_bytes(valid)[:-200],
        i,
        "central directory cut off",
        "refused",
    )
    many = {f"junk/{n:05d}.txt": b"" for n in range(20_000)}
    zip_case("zip-20k-members", {**valid, **many}, "20,000 empty members", "accepted")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in valid.items():
            archive.writestr(name, data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            archive.writestr("normal/normal_00.png", b"different bytes")
    b.add(
        "zip-duplicate-names",
        "zip-duplicate-names.zip",
        buffer.getvalue(),
        i,
        "two members with one name",
        "accepted",
    )
    encrypted = bytearray(_zip_bytes(valid))
    # Set the "encrypted" flag bit on every member (local and central headers).
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := encrypted.find(signature, start)) != -1:
            (flags,) = struct.unpack_from("<H", encrypted, start + offset)
            struct.pack_into("<H", encrypted, start + offset, flags | 1)
            start += 4
    b.add(
        "zip-encrypted",
        "zip-encrypted.zip",
        bytes(encrypted),
        i,
        "password-protected members",
        "refused",
    )
    labels = "file,label\n" + "".join(f"{k.split('/')[1]},{k.split('/')[0]}\n" for k in valid)
    flat = {k.split("/")[1]: v for k, v in valid.items()}
    zip_case(
        "zip-labels-missing-files",
        {**flat, "labels.csv": (labels + "ghost_1.png,normal\n../../etc/passwd,normal\n").encode()},
        "labels.csv naming missing and escaping files",
        "accepted",
    )
    zip_case(
        "zip-labels-bad-csv",
        {**flat, "labels.csv": b"\x00\x01garbage\xff\xfe"},
        "a binary labels.csv",
        "refused",
    )
    # DICOM
    secret = "DOE^JANE"
    dcm = {k.replace(".png", ".dcm"): _dicom(rows=16 + n % 3) for n, k in enumerate(valid)}
    zip_case("dicom-patient-tags", dcm, "identifying DICOM tags", "accepted", secret=secret)
    zip_case(
        "dicom-truncated",
        {**valid, "normal/cut.dcm": _dicom()[:300]},
        "a truncated DICOM file",
        "accepted",
        secret=secret,
    )
    zip_case(
        "dicom-no-pixel-data",
        {**valid, "normal/nopix.dcm": _dicom(pixels=False)},
        "a DICOM file without pixel data",
        "accepted",
        secret=secret,
    )
    zip_case(
        "dicom-wrong-transfer-syntax",
        {**valid, "normal/j2k.dcm": _dicom(transfer_syntax="1.2.840.10008.1.2.5")},
        "raw pixels declared as RLE Lossless",
        "accepted",
        secret=secret,
    )
    zip_case(
        "dicom-only-bad",
        {k.replace(".png", ".dcm"): _dicom(pixels=False) for k in valid},
        "every DICOM file without pixel data",
        "refused",
        secret=secret,
    )
    zip_case(
        "dicom-garbage",
        {**valid, "normal/junk.dcm": b"\x00" * 128 + b"DICM" + rng_bytes(400)},
        "a DICM preamble then garbage",
        "accepted",
    )

    # MedMNIST .npz
    def npz_case(
        name: str,
        arrays: dict[str, np.ndarray | bytes],
        attacks: str,
        expect: Expectation,
        **kw: object,
    ) -> None:
        b.add(name, f"{name.replace('npz-', '')}mnist.npz", _npz(arrays), i, attacks, expect, **kw)

    good = _medmnist()
    npz_case("npz-valid", dict(good), "control: MedMNIST layout", "accepted")
    rgb = _medmnist()
    for split in ("train", "val", "test"):
        rgb[f"{split}_images"] = np.repeat(rgb[f"{split}_images"][..., None], 3, axis=3)
    npz_case("npz-rgb", dict(rgb), "colour images (N, H, W, 3)", "accepted")
    objects = dict(good)
    objects["train_images"] = np.array(
        [np.zeros((28, 28)) for _ in range(20)] + [None], dtype=object
    )
    npz_case("npz-object-array", objects, "an object (pickle) array", "refused", owner="B")
    truncated = dict(good)
    truncated["train_images"] = _npy(good["train_images"])[:500]
    npz_case("npz-truncated-member", truncated, "a member cut off", "refused", owner="B")
    lying = dict(good)
    lying["train_images"] = _npy_header_only("|u1", (1_200_000, 2048, 4096), b"\x00" * 64)
    npz_case("npz-9tib-header", lying, "a header claiming a 9 TiB array", "refused", owner="B")
    nan = {k: v.astype(np.float32) if k.endswith("images") else v for k, v in good.items()}
    for k in ("train_images", "val_images", "test_images"):
        nan[k][:] = np.nan
    npz_case("npz-nan-images", nan, "all-NaN float images", "refused", owner="B")
    inf = {k: v.astype(np.float64) if k.endswith("images") else v for k, v in good.items()}
    inf["train_images"][3] = np.inf
    npz_case("npz-inf-images", inf, "an image of +inf", "refused")
    short = dict(good)
    short["train_labels"] = good["train_labels"][:7]
    npz_case("npz-wrong-label-length", short, "fewer labels than images", "refused", owner="B")
    wide = dict(good)
    wide["train_labels"] = np.zeros((20, 5, 3), np.uint8)
    npz_case("npz-wrong-label-shape", wide, "labels of shape (N, 5, 3)", "refused", owner="B")
    missing = {k: v for k, v in good.items() if k != "train_labels"}
    npz_case("npz-missing-keys", missing, "train_labels missing", "refused")
    npz_case(
        "npz-unrelated-keys", {"a": np.zeros(3), "b": np.ones(3)}, "no MedMNIST keys", "refused"
    )
    strings = dict(good)
    strings["train_images"] = np.array(["x"] * 20)
    npz_case("npz-string-images", strings, "images as text", "refused")
    complex_ = dict(good)
    complex_["test_images"] = good["test_images"].astype(np.complex64)
    npz_case("npz-complex-images", complex_, "complex-valued images", "refused")
    flat = dict(good)
    flat["train_images"] = good["train_images"].reshape(20, -1)[:, :10]
    npz_case("npz-1d-images", flat, "images of shape (N, 10)", "refused")
    b.add(
        "npz-not-a-zip",
        "npz-not-a-zipmnist.npz",
        _npy(good["train_images"]),
        i,
        "a bare .npy named .npz",
        "refused",
    )
    b.add(
        "npz-member-bomb",
        "bombmnist.npz",
        lambda: _zero_stream_zip(
            "val_images.npy",
            400_000 * 28 * 28,
            {f"{k}.npy": _npy(v) for k, v in good.items() if k != "val_images"},
            prefix=_npy_header_only("|u1", (400_000, 28, 28)),
        ),
        i,
        "an honest 300 MB array of zeros (400,000 images) in 300 KB",
        "refused",
    )
    _volumes(b)


def _nifti_header_bomb() -> bytes:
    """A gzipped NIfTI whose header claims 32,000³ voxels and holds 1 KB of data."""
    import gzip

    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((32_000, 32_000, 32_000))
    raw = header.binaryblock + b"\x00" * 4 + b"\x00" * 1024
    return gzip.compress(raw, mtime=0)


def _volumes(b: _Builder) -> None:
    """3D studies (issue 14): NIfTI volumes with masks in a ZIP."""
    from tests.unit.imaging.synthetic_volumes import SHAPE, nifti_bytes, study_files

    i = "images"
    valid = study_files(2, seed=3)

    def zip_case(
        name: str, members: dict[str, bytes], attacks: str, expect: Expectation, **kw: object
    ) -> None:
        b.add(name, f"{name}.zip", lambda: _zip_bytes(members), i, attacks, expect, **kw)

    zip_case("vol-valid", valid, "control: NIfTI volumes with masks", "accepted")
    truncated = dict(valid)
    truncated["benign/ben00.nii.gz"] = valid["benign/ben00.nii.gz"][:300]
    zip_case(
        "vol-truncated-nifti",
        truncated,
        "one volume cut off after 300 bytes",
        "accepted",
        says="could not be read",
    )
    garbage = {k: (rng_bytes(4000) if not k.startswith("masks/") else v) for k, v in valid.items()}
    zip_case("vol-garbage-volumes", garbage, "every volume random bytes named .nii.gz", "refused")
    zip_case(
        "vol-header-bomb",
        {"ben00.nii.gz": _nifti_header_bomb(), "masks/ben00.nii.gz": _nifti_header_bomb()},
        "a NIfTI header claiming 32,000³ voxels (65 TB) in 1 KB",
        "refused",
    )
    shifted = dict(valid)
    shifted["masks/benign/ben01.nii.gz"] = nifti_bytes(
        np.ones((SHAPE[0], SHAPE[1], SHAPE[2] + 3), np.uint8)
    )
    zip_case(
        "vol-mask-geometry",
        shifted,
        "a mask of another size than its volume",
        "accepted",
        says="differ",
    )
    manifest = study_files(2, seed=4, manifest=True)
    manifest["manifest.csv"] += b"evil,../../../../etc/passwd,../../etc/shadow,benign,P9\n"
    zip_case(
        "vol-manifest-traversal",
        manifest,
        "manifest paths leaving the study (../../etc/passwd)",
        "accepted",
        says="not in the study",
    )
    b.add(
        "vol-settings-typo",
        "vol-settings-typo.zip",
        lambda: _zip_bytes(valid),
        i,
        "a radiomics settings YAML with a misspelt key",
        "refused",
        args=("--params", str(b.directory / i / "typo.yaml")),
        data_page=False,
    )
    if not b.dry_run:
        (b.directory / i / "typo.yaml").write_text("setting:\n  binWidht: 25\n")


def rng_bytes(n: int, seed: int = 17) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def train_genuine_model(directory: Path) -> Path:
    """Train a small genuine model with ``medimg train`` in a subprocess (its own workspace) and
    return its folder, with the table it was trained on beside it (``predict.csv``)."""
    directory.mkdir(parents=True, exist_ok=True)
    table = directory / "predict.csv"
    base_frame().to_csv(table, index=False)
    model = directory / "genuine-model"
    env = {**os.environ, "MEDIMG_HOME": str(directory / "genuine-home")}
    env.pop("MEDIMG_DATABASE_URL", None)
    subprocess.run(
        [sys.executable, "-m", "medimg_core", "train", str(table), *FAST_TRAIN, "-o", str(model)],
        env=env,
        check=True,
        capture_output=True,
    )
    return model


def _models(b: _Builder, genuine: Path) -> None:
    data = genuine.parent / "predict.csv"
    m = "model"

    def model_case(
        name: str,
        change: Callable[[Path], None] | None,
        attacks: str,
        expect: Expectation,
        **kw: object,
    ) -> None:
        target = b.directory / m / name
        if not b.dry_run:
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(genuine, target)
            if change is not None:
                change(target)
        b.cases.append(
            HostileCase(
                name=name,
                path=target,
                channels=(m,),
                attacks=attacks,
                expect=expect,
                command="predict",
                data=data,
                data_page=False,
                **kw,  # type: ignore[arg-type]
            )
        )

    def card(target: Path) -> dict[str, object]:
        return json.loads((target / "card.json").read_text(encoding="utf-8"))

    def nested(target: Path) -> None:
        content = card(target)
        content["schema"] = "__DEEP__"
        text = json.dumps(content).replace('"__DEEP__"', "[" * 5000 + "]" * 5000)
        (target / "card.json").write_text(text, encoding="utf-8")

    def nested_dict(target: Path) -> None:
        text = json.dumps(card(target))
        (target / "card.json").write_text(
            text[:-1] + ', "x": ' + '{"a": ' * 5000 + "1" + "}" * 5001, encoding="utf-8"
        )

    def huge(target: Path) -> None:
        # 40 MB on paper, nothing on disk: the genuine card followed by a sparse hole.
        with (target / "card.json").open("r+b") as handle:
            handle.truncate(40 * 2**20)

    def rehash(target: Path, model: bytes) -> None:
        """Replace model.skops with ``model`` (plaintext, as files saved before encryption
        are read) and record its hash in the card, as an attacker who edits both would."""
        (target / "model.skops").write_bytes(model)
        content = card(target)
        content["model_sha256"] = hashlib.sha256(model).hexdigest()
        (target / "card.json").write_text(json.dumps(content), encoding="utf-8")

    def skops_with_schema(schema: Callable[[io.BufferedIOBase], None]) -> Callable[[Path], None]:
        def change(target: Path) -> None:
            buffer = io.BytesIO()
            with (
                zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
                archive.open("schema.json", "w", force_zip64=True) as out,
            ):
                schema(out)  # type: ignore[arg-type]
            rehash(target, buffer.getvalue())

        return change

    def deep_schema(out: io.BufferedIOBase) -> None:
        out.write(b'{"__class__": "Pipeline", "content": ' + b"[" * 5000 + b"]" * 5000 + b"}")

    def bomb_schema(out: io.BufferedIOBase) -> None:
        out.write(b'{"__class__": "Pipeline", "content": "')
        block = b"x" * 2**20
        for _ in range(400):
            out.write(block)
        out.write(b'"}')

    def pickled_rehashed(target: Path) -> None:
        rehash(target, pickle.dumps(_Payload(str(b.directory / PAYLOAD_MARKER))))

    def foreign_skops(target: Path) -> None:
        import skops.io as sio

        rehash(target, sio.dumps({"not": "a pipeline", "numbers": [1, 2, 3]}))

    def tamper(target: Path) -> None:
        raw = bytearray((target / "model.skops").read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (target / "model.skops").write_bytes(bytes(raw))

    def pickled(target: Path) -> None:
        marker = b.directory / PAYLOAD_MARKER
        (target / "model.skops").write_bytes(pickle.dumps(_Payload(str(marker))))

    def unlink(name: str) -> Callable[[Path], None]:
        return lambda target: (target / name).unlink()

    def write(name: str, data: bytes) -> Callable[[Path], None]:
        return lambda target: (target / name).write_bytes(data)

    def wrong_format(target: Path) -> None:
        content = card(target)
        content["format"] = "medimg-model-card/99"
        (target / "card.json").write_text(json.dumps(content), encoding="utf-8")

    def card_list(target: Path) -> None:
        (target / "card.json").write_text("[1, 2, 3]", encoding="utf-8")

    def schema_wrong_type(target: Path) -> None:
        content = card(target)
        content["schema"] = {"numeric": 5, "categorical": "x"}
        (target / "card.json").write_text(json.dumps(content), encoding="utf-8")

    def skops_symlink(target: Path) -> None:
        (target / "model.skops").unlink()
        (target / "model.skops").symlink_to("/etc/passwd")

    def emptied(target: Path) -> None:
        for child in target.iterdir():
            child.unlink()

    def leftover(target: Path) -> None:
        (target.parent / f".{target.name}.saving-12345").mkdir(exist_ok=True)

    model_case("model-valid", None, "control: a genuine model", "accepted")
    model_case(
        "model-card-nested-5000", nested, "card schema nested 5,000 levels", "refused", owner="C"
    )
    model_case(
        "model-card-nested-dict",
        nested_dict,
        "card object nested 5,000 levels",
        "refused",
        owner="C",
    )
    model_case("model-card-huge", huge, "a 40 MB card (sparse file)", "refused")
    model_case(
        "model-skops-schema-nested",
        skops_with_schema(deep_schema),
        "skops schema nested 5,000 levels (hash updated)",
        "refused",
        owner="C",
    )
    model_case(
        "model-skops-schema-bomb",
        skops_with_schema(bomb_schema),
        "skops schema unpacking to 400 MB (hash updated)",
        "refused",
        owner="C",
    )
    model_case(
        "model-pickle-rehashed",
        pickled_rehashed,
        "a pickle with payload as model.skops, hash updated",
        "refused",
    )
    model_case(
        "model-skops-foreign", foreign_skops, "a skops file of a dict, hash updated", "refused"
    )
    model_case("model-skops-tampered", tamper, "one byte of model.skops flipped", "refused")
    model_case(
        "model-pickle-renamed", pickled, "a pickle (with payload) named model.skops", "refused"
    )
    model_case("model-missing-skops", unlink("model.skops"), "model.skops deleted", "refused")
    model_case("model-missing-card", unlink("card.json"), "card.json deleted", "refused")
    model_case("model-empty-dir", emptied, "an empty folder", "refused")
    model_case(
        "model-card-not-json", write("card.json", b"{not json"), "card.json not JSON", "refused"
    )
    model_case("model-card-empty", write("card.json", b""), "card.json of 0 bytes", "refused")
    model_case(
        "model-card-binary",
        write("card.json", b"\xff\xfe\x00garbage"),
        "card.json binary",
        "refused",
    )
    model_case("model-card-list", card_list, "card.json is a list", "refused")
    model_case("model-card-wrong-format", wrong_format, "a future card format", "refused")
    model_case(
        "model-schema-wrong-type", schema_wrong_type, "card schema hand-edited (unused)", "accepted"
    )
    model_case("model-skops-empty", write("model.skops", b""), "model.skops of 0 bytes", "refused")
    model_case("model-skops-symlink", skops_symlink, "model.skops links to /etc/passwd", "refused")
    model_case(
        "model-saving-leftover", leftover, "an interrupted save's folder beside it", "accepted"
    )

    # A genuine model scoring hostile tables (predict reads tables on its own path).
    def scored(
        name: str,
        table: bytes | Callable[[], bytes],
        suffix: str,
        attacks: str,
        expect: Expectation,
        says: str | None = None,
    ) -> None:
        target = b.directory / m / f"{name}{suffix}"
        if not b.dry_run:
            target.write_bytes(table() if callable(table) else table)
        b.cases.append(
            HostileCase(
                name=name,
                path=genuine,
                channels=(m,),
                attacks=attacks,
                expect=expect,
                command="predict",
                data=target,
                data_page=False,
                says=says,
            )
        )

    new_cases = base_frame(20)
    scored("predict-valid-table", _csv(new_cases), ".csv", "control: new cases", "accepted")
    scored(
        "predict-no-label",
        _csv(new_cases.drop(columns=["diagnosis"])),
        ".csv",
        "new cases without a label",
        "accepted",
    )
    scored(
        "predict-missing-feature",
        _csv(new_cases.drop(columns=["radius", "area"])),
        ".csv",
        "two feature columns missing",
        "refused",
    )
    text = new_cases.astype(object)
    text["radius"] = "large"
    scored("predict-text-feature", _csv(text), ".csv", "a numeric feature holding text", "refused")
    huge = new_cases.copy()
    huge["texture"] = 1.7e308
    scored(
        "predict-near-max-float",
        _csv(huge),
        ".csv",
        "values near 1.8e308 (scored, flagged as extrapolation)",
        "accepted",
        says="outside the training range",
    )
    scored("predict-empty-table", b"", ".csv", "a 0-byte table", "refused")
    scored("predict-png-as-csv", _huge_png(32, 32), ".csv", "a PNG named .csv", "refused")
    scored(
        "predict-20k-columns",
        lambda: (
            ",".join(f"c{i}" for i in range(20_000)) + "\n" + ",".join(["0"] * 20_000) + "\n"
        ).encode(),
        ".csv",
        "20,000 columns",
        "refused",
    )
    scored(
        "predict-truncated-parquet",
        b"PAR1" + rng_bytes(500) + b"PAR1",
        ".parquet",
        "a broken Parquet file",
        "refused",
    )

    not_dir = b.directory / m / "model-is-a-file"
    if not b.dry_run:
        not_dir.write_bytes(b"not a folder")
    b.cases.append(
        HostileCase(
            name="model-is-a-file",
            path=not_dir,
            channels=(m,),
            attacks="MODEL_DIR is a file",
            expect="refused",
            command="predict",
            data=data,
            data_page=False,
        )
    )


class _Payload:
    """Unpickling this creates a marker file: proof that a pickle was executed."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (Path.touch, (Path(self.marker),))  # type: ignore[return-value]


def build_corpus(
    directory: Path,
    channels: tuple[Channel, ...] = ("table", "images", "model"),
    *,
    genuine_model: Path | None = None,
    dry_run: bool = False,
) -> list[HostileCase]:
    """Write the hostile corpus into ``directory`` and describe each file.

    Parameters
    ----------
    directory : an empty or new folder; a sub-folder per channel is made.
    channels : which channels' files to write (model cases train one genuine model first).
    genuine_model : a model folder to tamper with instead of training one (it must have a
        ``predict.csv`` beside it).
    dry_run : describe the cases without writing anything (for test collection).

    Returns
    -------
    list[HostileCase]
        At least 80 cases over all channels, with unique names.
    """
    if not dry_run:
        directory.mkdir(parents=True, exist_ok=True)
    builder = _Builder(directory, dry_run=dry_run)
    if "table" in channels:
        _tables(builder)
    if "images" in channels:
        _images(builder)
    if "model" in channels:
        if dry_run:
            model = directory / "genuine" / "genuine-model"
        else:
            model = genuine_model or train_genuine_model(directory / "genuine")
        _models(builder, model)
    names = [case.name for case in builder.cases]
    duplicates = {name for name in names if names.count(name) > 1}
    assert not duplicates, f"duplicate case names: {duplicates}"
    return builder.cases


def cli_argv(case: HostileCase, out: Path) -> list[str]:
    """The ``medimg`` arguments that feed ``case`` to its command, writing outputs into ``out``."""
    path = str(case.path)
    if case.command == "clean":
        return ["clean", path, "-o", str(out / "clean.parquet"), "--report", str(out / "r.json")]
    if case.command == "train":
        return ["train", path, *case.args, "-o", str(out / "model")]
    if case.command == "features":
        return ["features", path, *case.args, "-o", str(out / "features.parquet")]
    assert case.command == "predict" and case.data is not None
    return ["predict", path, str(case.data), *case.args, "-o", str(out / "predictions.csv")]


class LazyCorpus:
    """The corpus written on first use, one channel at a time, into ``base``: test modules
    describe the cases at collection (``dry_run``) and write only the channels they run."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.described = {case.name: case for case in build_corpus(base, dry_run=True)}
        self.built: dict[str, dict[str, HostileCase]] = {}

    def case(self, name: str) -> HostileCase:
        channel = self.described[name].channels[0]
        if channel not in self.built:
            cases = build_corpus(self.base, (channel,))
            self.built[channel] = {c.name: c for c in cases}
        return self.built[channel][name]


def iter_summary(cases: list[HostileCase]) -> Iterator[str]:
    for case in cases:
        size = (
            sum(p.stat().st_size for p in case.path.rglob("*") if p.is_file())
            if case.path.is_dir()
            else case.path.stat().st_size
        )
        yield f"{case.name:34} {case.channels[0]:7} {case.expect:9} {size:>11,}  {case.attacks}"


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    corpus = build_corpus(target)
    for line in iter_summary(corpus):
        print(line)
    print(f"{len(corpus)} cases in {target}")
