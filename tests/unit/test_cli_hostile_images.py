"""Hostile image uploads through the command line: exit 2, one clear line, nothing left behind.

Each file is generated here, small (a lying header, a few KB of compressed data); see
tests/unit/imaging for the unit tests of each guard.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medimg_core.cli import main
from tests.unit.imaging.synthetic import gradient, png_bytes, zip_bytes
from tests.unit.imaging.test_npz import images_and_labels, lying_npy, npy_bytes, npz_of
from tests.unit.imaging.test_pixels import png_claiming


def run(argv: list[str]) -> tuple[int, str, str, list[str]]:
    out, err = io.StringIO(), io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        warnings.simplefilter("always")
        status = main(argv)
    return status, out.getvalue(), err.getvalue(), [str(w.message) for w in caught]


def nan_images() -> bytes:
    images = np.full((4, 8, 8), np.nan, np.float32)
    return npz_of({**images_and_labels(), "train_images.npy": npy_bytes(images)})


def truncated_member() -> bytes:
    members = images_and_labels()
    return npz_of({**members, "train_images.npy": members["train_images.npy"][:-40]})


def big_dicom_zip() -> bytes:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 6000
    out = io.BytesIO()
    ds.save_as(out)
    return zip_bytes({"a/big.dcm": out.getvalue(), "b/big.dcm": out.getvalue()})


HOSTILE: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "npz-9-tib-header": (
        "bomb.npz",
        lambda: npz_of({"train_images.npy": lying_npy((36864, 16384, 16384))}),
        r"would take 9,216\.0 GiB in memory.*MEDIMG_MAX_UPLOAD_BYTES",
    ),
    "npz-object-labels": (
        "objects.npz",
        lambda: npz_of(
            {**images_and_labels(), "train_labels.npy": npy_bytes(np.array([None] * 4))}
        ),
        r"holds object values, not numbers",
    ),
    "npz-truncated-member": ("cut.npz", truncated_member, r"truncated or damaged"),
    "npz-all-nan": ("nan.npz", nan_images, r"4 image\(s\) of train_images hold NaN"),
    "npz-labels-length": (
        "short.npz",
        lambda: npz_of({**images_and_labels(), "train_labels.npy": npy_bytes(np.zeros(3))}),
        r"has 3 labels for 4 images",
    ),
    "npz-labels-shape": (
        "multi.npz",
        lambda: npz_of({**images_and_labels(), "train_labels.npy": npy_bytes(np.zeros((4, 14)))}),
        r"has shape \(4, 14\)",
    ),
    "zip-10000x10000-png": (
        "huge.zip",
        lambda: zip_bytes(
            {"a/huge.png": png_claiming(10_000, 10_000), "b/h.png": png_claiming(9000, 9000)}
        ),
        r"No readable image .*10000×10000 pixels.*MEDIMG_MAX_IMAGE_PIXELS",
    ),
    "zip-6000x6000-dicom": (
        "dicom.zip",
        big_dicom_zip,
        r"No readable image .*6000×6000 pixels",
    ),
    "zip-only-non-images": (
        "notes.zip",
        lambda: zip_bytes({"a/notes.txt": b"x" * 5000, "b/scan.raw": bytes(1 << 20)}),
        r"No readable image .*left out without unpacking",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("command", ["features", "train"])
def test_hostile_images_exit_2_with_one_line(
    case: str, command: str, tmp_path: Path, home: Path
) -> None:
    name, make, message = HOSTILE[case]
    path = tmp_path / name
    path.write_bytes(make())
    out = tmp_path / ("features.parquet" if command == "features" else "model")
    status, _stdout, stderr, caught = run([command, str(path), "-o", str(out)])
    assert status == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in stderr and caught == []
    assert not out.exists()
    uploads = home / "uploads"
    assert not uploads.exists() or [p for p in uploads.rglob("*") if p.is_file()] == []


def test_an_archive_with_a_large_unused_member_unpacks_only_the_images(
    tmp_path: Path, home: Path
) -> None:
    images = {
        f"{kind}/{kind}_{i}.png": png_bytes(gradient(seed=i + 10 * k))
        for k, kind in enumerate(("normal", "pneumonia"))
        for i in range(3)
    }
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in images.items():
            zf.writestr(member, data)
        zf.writestr("export/volume.raw", bytes(32 << 20))  # 32 MiB of zeros: ~32 KB zipped
    out = tmp_path / "features.parquet"
    status, _stdout, stderr, caught = run(["features", str(archive), "-o", str(out)])
    assert status == 0, stderr
    assert "left out export/volume.raw: not an image" in stderr and caught == []
    stored = [p for p in (home / "uploads").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in stored) < 1 << 20
    assert not any(p.name == "volume.raw" for p in stored)
