"""Time and peak memory of reading hostile and ordinary .xlsx files (issue 12).

Three workbooks, built in memory:

* ``bomb``: a 1.4 MB file whose sheet unpacks to 400 MB (repeated rows, as in the issue, which
  measured 208 s and about 1 GB before the row-limit error). Refused from the ZIP directory.
* ``deep``: a sheet nested 100,000 elements deep. Refused by the streaming XML scan.
* ``ordinary``: the Wisconsin sample repeated to ``--rows`` rows (30 numbers a row), read whole;
  the scan's share of the time is printed separately.

Each case runs in a fresh process so the peak resident memory (``ru_maxrss``) is its own.

Run: ``python benchmarks/bench_excel_guard.py [--rows N]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

_HEADER = b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'


def _with_sheet(write_sheet: object) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["a", "b", "diagnosis"])
    plain = io.BytesIO()
    book.save(plain)
    source, out_buffer = zipfile.ZipFile(plain), io.BytesIO()
    with zipfile.ZipFile(out_buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for info in source.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                out.writestr(info.filename, source.read(info.filename))
                continue
            with out.open(info.filename, "w", force_zip64=True) as fh:
                write_sheet(fh)  # type: ignore[operator]
    return out_buffer.getvalue()


def bomb(target: int = 400 * 2**20) -> bytes:
    row = b'<row><c t="n"><v>1</v></c><c t="n"><v>2</v></c><c t="inlineStr"><is><t>x</t></is></c></row>'

    def write(fh: io.BufferedIOBase) -> None:
        fh.write(_HEADER + b"<sheetData>")
        block, written = row * 10_000, 0
        while written < target:
            fh.write(block)
            written += len(block)
        fh.write(b"</sheetData></worksheet>")

    return _with_sheet(write)


def deep(depth: int = 100_000) -> bytes:
    def write(fh: io.BufferedIOBase) -> None:
        fh.write(_HEADER + b"<sheetData>" + b"<x>" * depth + b"</x>" * depth)
        fh.write(b"</sheetData></worksheet>")

    return _with_sheet(write)


def ordinary(rows: int) -> bytes:
    import pandas as pd

    from medimg_core.tables.loading import load_sample

    frame = load_sample("wdbc").frame
    frame = pd.concat([frame] * (rows // len(frame) + 1)).head(rows)
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False)
    return buffer.getvalue()


def measure(path: str) -> None:
    """Child process: read one file, print seconds, peak memory and the outcome."""
    from medimg_core.errors import MedimgError
    from medimg_core.tables.loading import Limits, load_table
    from medimg_core.tables.workbook import scan_workbook

    raw = Path(path).read_bytes()
    started = time.perf_counter()
    try:
        table = load_table(raw, name="bench.xlsx")
        outcome = f"read {table.frame.shape[0]:,} rows"
    except MedimgError as exc:
        outcome = f"refused: {str(exc)[:90]}..."
    seconds = time.perf_counter() - started
    scan = ""
    if outcome.startswith("read"):
        limits = Limits()
        t0 = time.perf_counter()
        scan_workbook(
            raw,
            "bench.xlsx",
            max_unpacked_bytes=limits.max_excel_unpacked_bytes,
            max_ratio=limits.max_excel_ratio,
            setting="",
        )
        scan = f", of which the pre-parse scan {time.perf_counter() - t0:.2f} s"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {seconds:7.2f} s{scan}; peak RSS {peak:,.0f} MB; {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        for name, build in (
            ("bomb (400 MB sheet)", bomb),
            ("deep (100,000 levels)", deep),
            (f"ordinary ({args.rows:,} rows x 32)", lambda: ordinary(args.rows)),
        ):
            raw = build()
            path = Path(folder) / "bench.xlsx"
            path.write_bytes(raw)
            print(f"{name}: file {len(raw) / 2**20:.1f} MB")
            subprocess.run([sys.executable, __file__, "--measure", str(path)], check=True)


if __name__ == "__main__":
    main()
