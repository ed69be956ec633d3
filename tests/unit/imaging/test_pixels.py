"""Decoding images and masks: bit depths, colour, DICOM, corrupt files, caps and resizing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
    parse_size,
    resize_image,
)
from medimg_core.imaging.sets import open_image_set
from tests.unit.imaging.synthetic import gradient, png_bytes, save

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
