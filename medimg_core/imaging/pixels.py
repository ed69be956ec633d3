"""Decoding one image or mask into pixels: PNG, JPEG, TIFF, DICOM files and in-memory arrays.

Pixel values become float32 in [0, 1]: 8-bit / 255, 16-bit / 65535 (the nominal range of the
bit depth, the same for every image, so absolute brightness stays comparable), DICOM through its
rescale and window (:mod:`medimg_core.imaging.dicom`). RGB becomes luminance (ITU-R BT.601:
0.299 R + 0.587 G + 0.114 B), and the notes say so.

This module also resizes images and masks to a working size, and defines :class:`ImageLimits`
(the caps checked before anything is decoded or unpacked) and :class:`ImageProblem` (a file left
out, and why), which :mod:`medimg_core.imaging.archives` and :mod:`medimg_core.imaging.sets` share.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from medimg_core.errors import ConfigError, ImageError, LimitError
from medimg_core.imaging import dicom
from medimg_core.imaging.stored import plaintext

__all__ = [
    "GRAY_MODES",
    "IMAGE_SUFFIXES",
    "LUMA_NOTE",
    "PIXELS_ENV",
    "UPLOAD_BYTES_ENV",
    "ImageLimits",
    "ImageProblem",
    "ImageSource",
    "LoadedImage",
    "array_to_image",
    "check_format",
    "check_pixels",
    "env_max_pixels",
    "env_max_upload_bytes",
    "human_bytes",
    "load_image",
    "load_mask",
    "load_task_image",
    "open_pil",
    "parse_size",
    "resize_image",
    "resize_mask",
]

ImageSource = str | os.PathLike[str] | bytes

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom"}
)
"""File endings read as images (files without an ending are read when they are DICOM)."""

_PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff"}
_LUMA = np.array([0.299, 0.587, 0.114])

GRAY_MODES = frozenset({"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
"""PIL modes that hold grayscale pixels; any other mode is read as colour."""

LUMA_NOTE = "RGB images were converted to grayscale luminance (0.299 R + 0.587 G + 0.114 B)."
"""The note an image set gives when some of its images were colour."""


PIXELS_ENV = "MEDIMG_MAX_IMAGE_PIXELS"
"""Setting: most pixels in one image (width × height), checked from the header before decoding."""

UPLOAD_BYTES_ENV = "MEDIMG_MAX_UPLOAD_BYTES"
"""Setting: most bytes one upload (ZIP members unpacked, or the arrays of an .npz) may take."""

DEFAULT_MAX_PIXELS = 25_000_000
"""25 M pixels (about 5000 × 5000): one such image decodes to ~100 MB of float32 and its
features take a few seconds, so several users of a 2-core, 24 GB server can each work on one at
a time; larger scans are downsampled before upload."""

DEFAULT_MAX_UPLOAD_BYTES = 2 * 2**30
"""2 GiB unpacked per upload."""


_AMOUNT = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?$")
_UNITS = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_amount(text: str, env: str) -> int:
    """A number of bytes written ``2147483648``, ``2GiB``, ``500MB`` or ``500M`` (setting ``env``).

    Raises
    ------
    ConfigError
        When ``text`` is not a positive amount.
    """
    match = _AMOUNT.match(text.strip().lower())
    value = 0.0
    if match:
        unit = match.group(2) or "b"
        scale = 1 if unit == "b" else _UNITS[unit[0]]
        if "i" in unit:
            scale = 2 ** (10 * (" kmgt".index(unit[0])))
        value = float(match.group(1)) * scale
    if not 1 <= value <= 2**62:
        raise ConfigError(
            f"{env}={text!r} is not a positive amount; write a whole number of bytes or an "
            "amount such as 2GiB or 500MB, or unset it for the default."
        )
    return int(value)


def _env_bytes(env: str, default: int) -> int:
    text = os.environ.get(env, "").strip()
    return parse_amount(text, env) if text else default


def human_bytes(n: float) -> str:
    """``n`` bytes for a message: "300 bytes", "12.5 MiB", "2.0 GiB"."""
    if n < 2**20:
        return f"{n:,.0f} bytes"
    if n < 2**30:
        return f"{n / 2**20:,.1f} MiB"
    return f"{n / 2**30:,.1f} GiB"


def env_max_pixels() -> int:
    """``MEDIMG_MAX_IMAGE_PIXELS``, default :data:`DEFAULT_MAX_PIXELS`.

    Raises
    ------
    ConfigError
        When the setting is not a positive whole number.
    """
    text = os.environ.get(PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(
            f"{PIXELS_ENV}={text!r} is not a positive whole number of pixels; write for example "
            f"{DEFAULT_MAX_PIXELS} (5000 × 5000), or unset it for the default."
        )
    return int(text)


def env_max_upload_bytes() -> int:
    """``MEDIMG_MAX_UPLOAD_BYTES`` (e.g. ``2GiB``), default :data:`DEFAULT_MAX_UPLOAD_BYTES`.

    Raises
    ------
    ConfigError
        When the setting is not a positive amount.
    """
    return _env_bytes(UPLOAD_BYTES_ENV, DEFAULT_MAX_UPLOAD_BYTES)


@dataclass(frozen=True)
class ImageLimits:
    """Caps checked before images or archives are unpacked.

    The defaults of ``max_unpacked_bytes`` and ``max_pixels`` come from the settings
    ``MEDIMG_MAX_UPLOAD_BYTES`` and ``MEDIMG_MAX_IMAGE_PIXELS``, read when the limits are made.

    Parameters
    ----------
    max_unpacked_bytes : largest total uncompressed size of a ZIP (sum over the members that
        are unpacked) or of the arrays of an ``.npz``.
    max_ratio : largest compression ratio of a ZIP member larger than 1 MiB (zip-bomb guard).
    max_members : most members in a ZIP, or files in a folder.
    max_pixels : most pixels in one image (width × height), checked from the header.
    """

    max_unpacked_bytes: int = field(default_factory=env_max_upload_bytes)
    max_ratio: float = 200.0
    max_members: int = 200_000
    max_pixels: int = field(default_factory=env_max_pixels)

    def __post_init__(self) -> None:
        for name in ("max_unpacked_bytes", "max_ratio", "max_members", "max_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(
                    f"ImageLimits.{name} must be a positive number, got {value!r}; "
                    f"pass for example ImageLimits({name}=1000)."
                )


@dataclass(frozen=True)
class ImageProblem:
    """A file left out of an image set, and why."""

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass(frozen=True)
class LoadedImage:
    """One decoded image.

    Attributes
    ----------
    pixels : float32 (height, width) in [0, 1], grayscale.
    original_size : (height, width) as stored in the file.
    bit_depth : bits per sample in the file (8, 16, or BitsStored for DICOM).
    was_rgb : the file held colour pixels, converted to luminance.
    format : "png", "jpeg", "tiff", "dicom" or "npz".
    frame : the frame used for multi-frame files, else None.
    dicom : for DICOM only the safe subset (modality, rows, columns, frames, pixel spacing).
    notes : how the values were mapped.
    """

    pixels: np.ndarray
    original_size: tuple[int, int]
    bit_depth: int
    was_rgb: bool
    format: str
    frame: int | None = None
    dicom: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()


def _display(source: ImageSource, name: str | None) -> str:
    if name:
        return name
    return "uploaded image" if isinstance(source, bytes) else Path(source).name


def load_image(
    source: ImageSource,
    *,
    frame: int | None = None,
    name: str | None = None,
    limits: ImageLimits | None = None,
) -> LoadedImage:
    """Decode one PNG, JPEG, TIFF or DICOM image to grayscale float32 in [0, 1].

    Parameters
    ----------
    source : a path or the file's bytes.
    frame : frame of a multi-frame DICOM or TIFF; default the middle one.
    name : how to name the file in messages.
    limits : ``max_pixels`` caps the size, checked from the header before decoding (default
        from the setting ``MEDIMG_MAX_IMAGE_PIXELS``).

    Raises
    ------
    ImageError
        When the file is not an image, is corrupt or truncated, is too large, or is a DICOM file
        without pixel data; the message names the file.
    """
    label = _display(source, name)
    limits = limits if limits is not None else ImageLimits()
    # Checked on the path first: a .dcm name decides, whatever the file is stored as.
    is_dicom = dicom.is_dicom(source)
    source = plaintext(source)
    if is_dicom:
        img = dicom.read_dicom(source, frame=frame, name=label, max_pixels=limits.max_pixels)
        return LoadedImage(
            pixels=img.pixels,
            original_size=(int(img.pixels.shape[0]), int(img.pixels.shape[1])),
            bit_depth=img.bit_depth,
            was_rgb=img.was_rgb,
            format="dicom",
            frame=img.frame,
            dicom=img.header.safe_metadata(),
            notes=img.notes,
        )
    fh: Any = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
    try:
        with open_pil(fh) as im:
            fmt = check_format(im, label, limits)
            n_frames = int(getattr(im, "n_frames", 1) or 1)
            used = None
            if n_frames > 1:
                used = n_frames // 2 if frame is None else frame
                if not 0 <= used < n_frames:
                    raise ImageError(
                        f"Frame {used} does not exist in '{label}', which has {n_frames} "
                        f"frames; choose a frame between 0 and {n_frames - 1}."
                    )
                im.seek(used)
            im.load()
            pixels, bits, was_rgb, notes = _pil_to_gray(im)
    except (ImageError, LimitError):
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"'{label}' is not an image medimg can read; use PNG, JPEG, TIFF or DICOM, or "
            "remove the file."
        ) from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(
            f"'{label}' could not be decoded ({exc}); the file may be corrupt or truncated: "
            "export it again or remove it."
        ) from exc
    return LoadedImage(
        pixels=pixels,
        original_size=(int(pixels.shape[0]), int(pixels.shape[1])),
        bit_depth=bits,
        was_rgb=was_rgb,
        format=fmt,
        frame=used,
        notes=notes,
    )


@contextmanager
def open_pil(fh: Any) -> Iterator[Image.Image]:
    """``PIL.Image.open`` (the header only; pixels are decoded on ``load``) without PIL's own
    decompression-bomb warning, which would reach stderr: medimg's cap, a setting, is checked
    on the header right after (:func:`check_format`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(fh)
    with im:
        yield im


def check_format(im: Image.Image, label: str, limits: ImageLimits) -> str:
    """The format name of an opened PIL image ("png", "jpeg", "tiff"), its size checked.

    Raises
    ------
    ImageError
        When the format is not PNG, JPEG or TIFF, or the image has no pixels.
    LimitError
        When the image has more than ``limits.max_pixels`` pixels.
    """
    fmt = _PIL_FORMATS.get(str(im.format))
    if fmt is None:
        raise ImageError(
            f"'{label}' is a {im.format} image; medimg reads PNG, JPEG, TIFF and DICOM: convert "
            "it to PNG or remove it."
        )
    width, height = im.size
    check_pixels(width, height, label, limits)
    if width < 1 or height < 1:
        raise ImageError(f"'{label}' has no pixels ({width}×{height}); remove it.")
    return fmt


def check_pixels(width: int, height: int, label: str, limits: ImageLimits | None = None) -> None:
    """Refuse an image of more than ``limits.max_pixels`` pixels, from its header's size.

    Raises
    ------
    LimitError
        Naming the image, its size and the setting ``MEDIMG_MAX_IMAGE_PIXELS``.
    """
    cap = (limits if limits is not None else ImageLimits()).max_pixels
    if int(width) * int(height) > cap:
        raise LimitError(
            f"'{label}' is {width}×{height} pixels, more than the cap of {cap:,}; "
            f"downsample it first, or ask the administrator to raise {PIXELS_ENV}."
        )


def _pil_to_gray(im: Image.Image) -> tuple[np.ndarray, int, bool, tuple[str, ...]]:
    mode = im.mode
    notes: tuple[str, ...] = ()
    if mode == "1":
        return np.asarray(im, dtype=np.float32), 1, False, notes
    if mode in {"L", "LA"}:
        arr = np.asarray(im.getchannel(0), dtype=np.float32) / 255.0
        return arr, 8, False, notes
    if mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.float32) / 65535.0
        return arr, 16, False, notes
    if mode == "I":
        raw = np.asarray(im).astype(np.float64)
        if raw.min() >= 0 and raw.max() <= 65535:
            return (raw / 65535.0).astype(np.float32), 16, False, notes
        return _unit(raw), 32, False, ("32-bit integer image min-max scaled",)
    if mode == "F":
        raw = np.asarray(im).astype(np.float64)
        if raw.min() >= 0 and raw.max() <= 1:
            return raw.astype(np.float32), 32, False, notes
        return _unit(raw), 32, False, ("floating-point image min-max scaled",)
    rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
    gray = (rgb @ _LUMA) / 255.0
    return gray.astype(np.float32), 8, True, ("converted from RGB to luminance",)


def _unit(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


def array_to_image(array: np.ndarray, *, name: str = "array") -> LoadedImage:
    """An in-memory image (an ``.npz`` entry) as a :class:`LoadedImage`.

    ``uint8`` is divided by 255, ``uint16`` by 65535, floats in [0, 1] are kept (other floats
    min-max scaled); (h, w, 3) is converted to luminance.

    Raises
    ------
    ImageError
        When the array is not 2-D grayscale or (h, w, 3) colour.
    """
    arr = np.asarray(array)
    was_rgb = arr.ndim == 3 and arr.shape[-1] == 3
    if not (arr.ndim == 2 or was_rgb):
        raise ImageError(
            f"Image '{name}' has shape {arr.shape}; medimg expects (height, width) grayscale or "
            "(height, width, 3) colour images."
        )
    if arr.dtype == np.uint8:
        scaled, bits = arr.astype(np.float64) / 255.0, 8
    elif arr.dtype == np.uint16:
        scaled, bits = arr.astype(np.float64) / 65535.0, 16
    else:
        raw = arr.astype(np.float64)
        inside = raw.size > 0 and raw.min() >= 0 and raw.max() <= 1
        scaled, bits = (raw if inside else _unit(raw).astype(np.float64)), 32
    if was_rgb:
        scaled = scaled @ _LUMA
    pixels = np.ascontiguousarray(scaled, dtype=np.float32)
    return LoadedImage(
        pixels=pixels,
        original_size=(int(pixels.shape[0]), int(pixels.shape[1])),
        bit_depth=bits,
        was_rgb=bool(was_rgb),
        format="npz",
    )


def load_mask(source: ImageSource, *, name: str | None = None) -> np.ndarray:
    """A region-of-interest mask as a boolean array (any non-zero pixel is inside).

    Raises
    ------
    ImageError
        When the mask cannot be read or marks no pixel.
    """
    label = _display(source, name)
    mask = load_image(source, name=label).pixels > 0
    if not mask.any():
        raise ImageError(
            f"The mask '{label}' marks no pixel; draw the region (non-zero pixels) or remove "
            "the mask to use the whole image."
        )
    return mask


def resize_image(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Plain resize to ``size`` (height, width) with bilinear interpolation.

    Nothing is cropped; when the aspect ratio differs it changes. Downsampling is anti-aliased.
    """
    if tuple(pixels.shape) == tuple(size):
        return pixels
    # Deferred for start-up speed: scikit-image loads only when features are computed.
    from skimage.transform import resize

    shrink = pixels.shape[0] > size[0] or pixels.shape[1] > size[1]
    out = resize(
        pixels, size, order=1, mode="edge", anti_aliasing=shrink, preserve_range=True
    ).astype(np.float32)
    return np.clip(out, 0.0, 1.0)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to ``size`` (height, width)."""
    if tuple(mask.shape) == tuple(size):
        return mask
    # Deferred for start-up speed: scikit-image loads only when features are computed.
    from skimage.transform import resize

    out = resize(mask.astype(np.float32), size, order=0, anti_aliasing=False, mode="edge")
    return np.asarray(out > 0.5)


def load_task_image(source: Any, *, name: str, frame: int | None = None) -> LoadedImage:
    """Load what :meth:`ImageSet.task` describes (a path or an in-memory array)."""
    if isinstance(source, np.ndarray):
        return array_to_image(source, name=name)
    return load_image(source, name=name, frame=frame)


def parse_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``N`` or ``(height, width)`` as a checked (height, width) pair.

    Raises
    ------
    ConfigError
        When a side is outside 8 to 4096 pixels.
    """
    if isinstance(size, int | np.integer):
        pair = (int(size), int(size))
    else:
        pair = (int(size[0]), int(size[1]))
    if pair[0] < 8 or pair[1] < 8 or pair[0] > 4096 or pair[1] > 4096:
        raise ConfigError(
            f"Image size {size!r} is out of range; choose a side between 8 and 4096 pixels "
            "(for example --size 128)."
        )
    return pair
