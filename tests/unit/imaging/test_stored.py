"""Uploaded files stored encrypted, read back in memory; files in clear left to the readers."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from medimg_core.encryption import KEY_ENV, is_encrypted
from medimg_core.errors import EncryptionError
from medimg_core.imaging.pixels import load_image
from medimg_core.imaging.stored import plaintext, readable, store_upload_file
from tests.unit.imaging.synthetic import gradient, png_bytes


def test_an_upload_file_is_written_encrypted_and_read_back(tmp_path: Path) -> None:
    data = png_bytes(gradient(seed=4))
    path = store_upload_file(tmp_path / "scan.png", data)
    assert is_encrypted(path) and data not in path.read_bytes()
    assert plaintext(path) == data
    handle = readable(path)
    assert isinstance(handle, io.BytesIO) and handle.read() == data
    assert load_image(path).pixels.shape == (16, 16)
    assert [p.name for p in tmp_path.iterdir()] == ["scan.png"]  # no temporary file left


def test_files_in_clear_and_bytes_are_passed_through(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(png_bytes(gradient(seed=5)))
    assert plaintext(path) is path
    assert readable(path) == os.fspath(path)
    raw = b"bytes"
    assert plaintext(raw) is raw


def test_an_upload_read_with_another_key_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = store_upload_file(tmp_path / "scan.png", png_bytes(gradient(seed=6)))
    monkeypatch.setenv(KEY_ENV, "A" * 43 + "=")
    with pytest.raises(EncryptionError, match="encrypted with another key"):
        plaintext(path)
