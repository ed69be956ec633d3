"""Time and peak memory of the image-upload guards of issue 12 (owner B), one subprocess each.

Inputs, generated in a temporary folder (small on disk: compressed or lying headers):

- ``huge-png.zip``: a real, decodable 10,000 × 10,000 grayscale PNG (100 M pixels) in a ZIP;
  refused from its header by ``MEDIMG_MAX_IMAGE_PIXELS`` (25 M) instead of decoded.
- ``bomb.npz``: a MedMNIST-style .npz whose ``train_images`` header claims 9 TiB.
- ``unused-member.zip``: six small PNGs plus a 256 MiB non-image member (compresses ~100-fold,
  so it is not a zip bomb by ratio); only the images are unpacked.

Each input runs ``python -m medimg_core features INPUT -o OUT`` in a fresh workspace; printed:
exit code, wall seconds (including the interpreter's start), peak RSS of the child, bytes
left in ``uploads/``, and stderr's last line.

Usage: python benchmarks/bench_image_guards.py [--pythonpath DIR]
(``--pythonpath`` runs another checkout of medimg, e.g. the previous commit, for comparison.)
"""

from __future__ import annotations

import argparse
import io
import os
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def huge_png(side: int = 10_000) -> bytes:
    """A valid ``side`` × ``side`` 8-bit grayscale PNG of zeros, compressed row by row."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def small_png(seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def build(folder: Path) -> dict[str, Path]:
    files = {}
    path = folder / "huge-png.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("normal/huge.png", huge_png())
        zf.writestr("pneumonia/small.png", small_png(1))
    files["huge-png.zip"] = path

    path = folder / "bomb.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (36864, 16384, 16384)}
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train_images.npy", header.getvalue() + bytes(64))
    files["bomb.npz"] = path

    path = folder / "unused-member.zip"
    rng = np.random.default_rng(0)
    block = bytearray(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, kind in enumerate(("normal", "pneumonia")):
            for i in range(3):
                zf.writestr(f"{kind}/{i}.png", small_png(10 * k + i))
        with zf.open("export/volume.raw", "w", force_zip64=True) as member:
            for _ in range(256):
                block[::100] = rng.integers(0, 255, len(block[::100]), dtype=np.uint8).tobytes()
                member.write(block)
    files["unused-member.zip"] = path
    return files


def run(path: Path, work: Path, pythonpath: str | None) -> tuple[int, float, float, int, str]:
    home = work / f"ws-{path.stem}"
    env = {**os.environ, "MEDIMG_HOME": str(home)}
    env.pop("MEDIMG_DATABASE_URL", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = work / f"{path.stem}.parquet"
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "medimg_core", "features", str(path), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=pythonpath or ROOT,
    )
    assert child.stderr is not None
    err = child.stderr.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    left = sum(p.stat().st_size for p in (home / "uploads").rglob("*") if p.is_file())
    lines = err.strip().splitlines()
    return (
        os.waitstatus_to_exitcode(status),
        seconds,
        usage.ru_maxrss / 1024,
        left,
        lines[-1][:150] if lines else "",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pythonpath", help="run the medimg of this checkout instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = build(work)
        print(f"{'input':<20} {'size':>9} {'exit':>4} {'seconds':>8} {'peak MB':>8} {'left':>12}")
        for name, path in files.items():
            code, seconds, peak, left, last = run(path, work, args.pythonpath)
            size = path.stat().st_size
            print(f"{name:<20} {size:>9,} {code:>4} {seconds:>8.1f} {peak:>8.0f} {left:>12,}")
            print(f"    {last}")


if __name__ == "__main__":
    main()
