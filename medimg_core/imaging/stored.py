"""Uploaded image files kept in the workspace are encrypted: read them back in memory only.

:mod:`medimg_core.imaging.archives` writes every member of an uploaded archive (images, DICOM
files, masks, a labels table) with :func:`medimg_core.encryption.write_encrypted`, so a copied
disk shows no pixel, header value or label. The readers of the imaging layer do not open such a
path themselves: they ask :func:`plaintext` for the decrypted bytes and decode those. Files that
were never encrypted (a folder on the server, uploads unpacked by an older medimg) are left to
the readers as paths, which keeps large server folders streamed rather than read whole.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO

from medimg_core.encryption import encrypt_bytes, is_encrypted, read_decrypted, write_encrypted

__all__ = ["plaintext", "readable", "store_upload_file"]


def plaintext(source: str | os.PathLike[str] | bytes) -> str | os.PathLike[str] | bytes:
    """The decrypted bytes of an encrypted file; any other source unchanged.

    Raises
    ------
    EncryptionError
        When the file needs a key that is not at hand, or was altered after it was written.
    """
    if isinstance(source, bytes) or not is_encrypted(source):
        return source
    return read_decrypted(source, what="The uploaded file")


def readable(source: str | os.PathLike[str] | bytes) -> str | IO[bytes]:
    """What a decoder can open: a path for a file in clear, an in-memory file otherwise."""
    data = plaintext(source)
    if isinstance(data, bytes):
        return io.BytesIO(data)
    return os.fspath(data)


def store_upload_file(path: Path, data: bytes, *, atomic: bool = True) -> Path:
    """Write one uploaded file under the workspace, encrypted (never in clear, even briefly).

    Parameters
    ----------
    path : where to write.
    data : the file's bytes.
    atomic : write through a flushed temporary file renamed into place. Off for the members of
        an archive, which go to a temporary folder that is itself moved into place when complete
        (a flush per member would cost more than the unpacking).

    Raises
    ------
    OSError
        When the folder cannot be written.
    EncryptionError
        When the key is malformed or its file unsafe.
    """
    if atomic:
        return write_encrypted(path, data)
    path.write_bytes(encrypt_bytes(data))
    return path
