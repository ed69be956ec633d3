"""Decoding images and masks: bit depths, colour, DICOM, corrupt files, caps and resizing."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medimg_core.errors import ConfigError, ImageError, LimitError
from medimg_core.imaging.pixels import (
    ImageLimits,
    ImageProblem,
    LoadedImage,
    array_to_image,
    load_image,
    parse_amount,
    parse_size,
    resize_image,
)
from medimg_core.imaging.sets import open_image_set
from tests.unit.imaging.synthetic import gradient, png_bytes, save, zip_bytes

KEY = b"images-test-key-0123456789abcdef"


def test_png_8_bit_grayscale(tmp_path: Path) -> None:
    arr = gradient()
    img = load_image(save(tmp_path / "a.png", arr))
    assert isinstance(img, LoadedImage)
    assert img.pixels.dtype == np.float32 and img.bit_depth == 8 and not img.was_rgb
    np.testing.assert_allclose(img.pixels, arr / 255.0, atol=1e-6)
    assert img.original_size == (16, 16) and img.format == "png"


def test_16_bit_png_and_tiff_use_the_full_16_bit_range(tmp_path: Path) -> None:
    arr = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    for name, fmt in (("b.png", "PNG"), ("b.tif", "TIFF")):
        img = load_image(save(tmp_path / name, arr, fmt))
        assert img.bit_depth == 16
        np.testing.assert_allclose(img.pixels, arr / 65535.0, atol=1e-6)


def test_rgb_becomes_bt601_luminance_and_says_so(tmp_path: Path) -> None:
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    img = load_image(save(tmp_path / "c.png", rgb))
    assert img.was_rgb
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)
    assert "luminance" in img.notes[0]
    jpeg = load_image(save(tmp_path / "c.jpg", rgb, "JPEG"))
    assert jpeg.format == "jpeg" and jpeg.was_rgb
    np.testing.assert_allclose(jpeg.pixels, expected, atol=0.03)
    save(tmp_path / "set" / "a" / "gray.png", gradient())
    save(tmp_path / "set" / "b" / "colour.png", np.repeat(gradient()[..., None], 3, axis=2))
    s = open_image_set(tmp_path / "set", key=KEY)
    assert "1 image(s): RGB images were converted to grayscale luminance (0.299 R" in s.notes[-1]


def test_load_image_from_bytes_and_dicom() -> None:
    img = load_image(png_bytes(gradient()))
    assert img.pixels.shape == (16, 16)
    ct = load_image(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    assert ct.format == "dicom" and ct.dicom is not None and ct.dicom["modality"] == "CT"
    assert set(ct.dicom) == {"modality", "rows", "columns", "frames", "pixel_spacing"}


def test_corrupt_truncated_and_non_image_files_raise_named_errors(tmp_path: Path) -> None:
    good = png_bytes(gradient(32, 32))
    truncated = tmp_path / "broken.png"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(
        ImageError, match=r"'broken.png' could not be decoded .*corrupt or truncated"
    ):
        load_image(truncated)
    text = tmp_path / "readme.png"
    text.write_text("hello", encoding="utf-8")
    with pytest.raises(ImageError, match=r"'readme.png' is not an image medimg can read"):
        load_image(text)
    gif = tmp_path / "anim.gif"
    Image.fromarray(gradient()).save(gif, format="GIF")
    with pytest.raises(ImageError, match=r"'anim.gif' is a GIF image; medimg reads PNG, JPEG"):
        load_image(gif)


def test_pixel_cap(tmp_path: Path) -> None:
    path = save(tmp_path / "big.png", gradient(40, 40))
    with pytest.raises(LimitError, match=r"'big.png' is 40×40 pixels, more than the cap of 100"):
        load_image(path, limits=ImageLimits(max_pixels=100))


def test_resize_and_size_parsing() -> None:
    img = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48)
    out = resize_image(img, (16, 16))
    assert out.shape == (16, 16) and out.min() >= 0 and out.max() <= 1
    assert resize_image(img, (32, 48)) is img
    assert parse_size(64) == (64, 64)
    with pytest.raises(ConfigError, match=r"Image size 4 is out of range"):
        parse_size(4)


def test_array_to_image_scaling() -> None:
    assert array_to_image(np.full((4, 4), 255, np.uint8)).pixels.max() == 1.0
    assert array_to_image(np.full((4, 4), 65535, np.uint16)).bit_depth == 16
    with pytest.raises(ImageError, match=r"has shape \(2, 2, 2, 2\)"):
        array_to_image(np.zeros((2, 2, 2, 2)))


def test_problem_text() -> None:
    assert str(ImageProblem("a.png", "corrupt")) == "a.png: corrupt"


# --- the pixel cap: a setting, checked from the header before anything is decoded ---


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` but which holds one row of pixels: a
    decoder would fail on it, so only a check of the header refuses it on its size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_the_pixel_cap_fits_a_shared_server_and_is_a_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MEDIMG_MAX_IMAGE_PIXELS", raising=False)
    monkeypatch.delenv("MEDIMG_MAX_UPLOAD_BYTES", raising=False)
    assert ImageLimits().max_pixels == 25_000_000
    assert ImageLimits().max_unpacked_bytes == 2 * 2**30
    monkeypatch.setenv("MEDIMG_MAX_IMAGE_PIXELS", "1_000_000")
    monkeypatch.setenv("MEDIMG_MAX_UPLOAD_BYTES", "500MB")
    assert ImageLimits().max_pixels == 1_000_000
    assert ImageLimits().max_unpacked_bytes == 500_000_000
    assert ImageLimits(max_pixels=7).max_pixels == 7
    for bad in ("0", "-5", "many", "1.5"):
        monkeypatch.setenv("MEDIMG_MAX_IMAGE_PIXELS", bad)
        with pytest.raises(ConfigError, match=r"MEDIMG_MAX_IMAGE_PIXELS=.* not a positive whole"):
            ImageLimits()
    monkeypatch.delenv("MEDIMG_MAX_IMAGE_PIXELS")
    for bad in ("0", "lots", "2 parsecs", "1e400"):
        monkeypatch.setenv("MEDIMG_MAX_UPLOAD_BYTES", bad)
        with pytest.raises(ConfigError, match=r"MEDIMG_MAX_UPLOAD_BYTES=.* not a positive amount"):
            ImageLimits()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1024", 1024),
        ("2GiB", 2 * 2**30),
        ("2 gib", 2 * 2**30),
        ("500MB", 500 * 10**6),
        ("500m", 500 * 10**6),
        ("1.5k", 1500),
        ("3KiB", 3072),
        ("7b", 7),
    ],
)
def test_amounts_of_bytes(text: str, expected: int) -> None:
    assert parse_amount(text, "MEDIMG_X") == expected


def test_a_10000_by_10000_png_is_refused_from_its_header(tmp_path: Path) -> None:
    data = png_claiming(10_000, 10_000)
    assert len(data) < 20_000
    with pytest.raises(LimitError, match=r"10000×10000 pixels, more .* MEDIMG_MAX_IMAGE_PIXELS"):
        load_image(data, name="huge.png")
    (tmp_path / "huge.png").write_bytes(data)
    with pytest.raises(LimitError, match=r"'huge\.png' is 10000×10000 pixels"):
        load_image(tmp_path / "huge.png")


def test_a_zip_of_a_huge_png_leaves_nothing_behind(tmp_path: Path) -> None:
    archive = zip_bytes({"normal/huge.png": png_claiming(10_000, 10_000)})
    with pytest.raises(ImageError, match=r"No readable image .*MEDIMG_MAX_IMAGE_PIXELS"):
        open_image_set(archive, workspace=tmp_path / "ws", name="huge.zip", key=KEY)
    assert list((tmp_path / "ws" / "uploads").iterdir()) == []


def test_a_dicom_frame_above_the_cap_is_refused_from_rows_and_columns(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 6000
    path = tmp_path / "big.dcm"
    ds.save_as(path)
    with pytest.raises(LimitError, match=r"6000×6000 pixels, more .* MEDIMG_MAX_IMAGE_PIXELS"):
        load_image(path)
    (tmp_path / "set" / "a").mkdir(parents=True)
    ds.save_as(tmp_path / "set" / "a" / "big.dcm")
    with pytest.raises(ImageError, match=r"No readable image .*big\.dcm: .* MEDIMG_MAX_IMAGE"):
        open_image_set(tmp_path / "set", key=KEY, min_classes=0)
