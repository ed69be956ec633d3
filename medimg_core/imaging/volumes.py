"""3D volumes and their segmentations: NIfTI, NRRD, DICOM series, DICOM SEG and RTSTRUCT.

Every reader takes a path or the file's bytes (uploads are kept encrypted at rest and decrypted
in memory, :func:`medimg_core.imaging.stored.plaintext`); nothing decrypted is written to disk.
A :class:`Volume` holds the voxels as float32 ``(z, y, x)`` and the grid in DICOM patient
coordinates (LPS, millimetres), the convention of DICOM and ITK: ``origin`` is the centre of
voxel ``[0, 0, 0]`` and column ``k`` of ``direction`` is the unit vector of array axis x, y, z
(``k = 0, 1, 2``). NIfTI stores RAS coordinates, so its x and y world axes are negated on
reading; NRRD files in a right- or left-anterior space are converted the same way.

Masks come back as boolean arrays on the reference volume's grid. Mask volumes (NIfTI, NRRD)
must share the reference's grid within a :class:`GeometryTolerance`; DICOM SEG frames are placed
on the grid by their positions; RTSTRUCT contours are filled slice by slice with the even-odd
rule, so a contour inside another is a hole.

DICOM headers are de-identified on reading (:func:`medimg_core.imaging.dicom.deidentify_dataset`);
a volume keeps only the modality and the keyed pseudonymous patient key.
"""

from __future__ import annotations

import bz2
import gzip
import io
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import nibabel as nib
import nrrd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.pixels import pixel_array as _pixel_array
from skimage.draw import polygon

from medimg_core.errors import ImageError, LimitError, MedimgError
from medimg_core.imaging import dicom
from medimg_core.imaging.stored import plaintext
from medimg_core.privacy import pseudonym_key

__all__ = [
    "VOLUME_SUFFIXES",
    "GeometryTolerance",
    "Volume",
    "affine",
    "check_geometry",
    "is_volume_file",
    "read_dicom_series",
    "read_mask",
    "read_volume",
]

Source = str | os.PathLike[str] | bytes

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd")
"""File endings read as volumes: NIfTI-1 / NIfTI-2 single files (optionally gzipped) and NRRD
with attached data. Detached NRRD headers (``.nhdr``) and NIfTI header/image pairs are not
read: they name a second file, which an upload cannot supply safely."""

_MAX_VOXELS = 2**31
_CHUNK = 1 << 24
_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
_RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_NOT_IMAGES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO"})
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_NRRD_SPACES = {
    "left-posterior-superior": (1.0, 1.0, 1.0),
    "lps": (1.0, 1.0, 1.0),
    "right-anterior-superior": (-1.0, -1.0, 1.0),
    "ras": (-1.0, -1.0, 1.0),
    "left-anterior-superior": (1.0, -1.0, 1.0),
    "las": (1.0, -1.0, 1.0),
}
_ORTHOGONALITY = 1e-3
_SHOWN_LABELS = 10
_CONTOUR_PLANE = 0.1
"""How far (in slices) an RTSTRUCT contour may lie from the nearest slice of its image."""


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image on a regular grid in DICOM patient coordinates (LPS, mm).

    Attributes
    ----------
    array : float32 ``(z, y, x)``; rescaled values (CT in Hounsfield units).
    spacing : voxel size ``(z, y, x)`` in mm.
    origin : ``(x, y, z)`` LPS position in mm of the centre of voxel ``[0, 0, 0]``.
    direction : 9 floats, a row-major 3 × 3 matrix whose column ``k`` is the LPS unit vector of
        array axis x, y, z (``k = 0, 1, 2``), as in ITK.
    name : file or series name, for messages.
    modality : ``CT``, ``MR`` ... when the file says (DICOM), else None.
    patient_key : keyed pseudonym of the DICOM PatientID, or None.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    name: str
    modality: str | None = None
    patient_key: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """The array's shape ``(z, y, x)``."""
        z, y, x = self.array.shape
        return int(z), int(y), int(x)

    def geometry_text(self) -> str:
        """The grid in one line: size, spacing, origin and direction, x before y before z."""
        z, y, x = self.shape
        sz, sy, sx = self.spacing
        origin = ", ".join(_num(v) for v in self.origin)
        return (
            f"{x}×{y}×{z} voxels, spacing {_num(sx)}×{_num(sy)}×{_num(sz)} mm (x×y×z), "
            f"origin ({origin}) mm, direction {_direction_text(self.direction)}"
        )


@dataclass(frozen=True)
class GeometryTolerance:
    """How far a mask's grid may differ from its image's and still count as the same grid.

    The meaning follows PyRadiomics' ``geometryTolerance`` (SimpleITK's coordinate and direction
    tolerances), so one setting value can fill all three fields.

    Attributes
    ----------
    spacing : relative difference of each voxel size (``1e-3`` = 0.1 %).
    origin : difference of the origins as a fraction of a voxel, along each of the image's axes
        (``1e-3`` = a thousandth of the voxel size on that axis, so 0.001 mm for 1 mm voxels).
    direction : absolute difference of each element of the direction matrix.
    """

    spacing: float = 1e-3
    origin: float = 1e-3
    direction: float = 1e-4

    def text(self) -> str:
        """The tolerance in force, for messages."""
        return (
            f"spacing {self.spacing:g} (relative), origin {self.origin:g} of a voxel, "
            f"direction {self.direction:g}"
        )


def is_volume_file(name: str) -> bool:
    """Whether ``name`` ends like a volume medimg reads (:data:`VOLUME_SUFFIXES`)."""
    lower = name.lower()
    return any(lower.endswith(s) for s in VOLUME_SUFFIXES)


def affine(volume: Volume) -> np.ndarray:
    """The 4 × 4 matrix mapping ``(x_index, y_index, z_index, 1)`` to LPS millimetres."""
    out = np.eye(4)
    sz, sy, sx = volume.spacing
    out[:3, :3] = np.asarray(volume.direction, dtype=np.float64).reshape(3, 3) * [sx, sy, sz]
    out[:3, 3] = volume.origin
    return out


def read_volume(
    source: Source,
    *,
    name: str | None = None,
    key: bytes | None = None,
    max_voxels: int = _MAX_VOXELS,
) -> Volume:
    """Read a NIfTI or NRRD volume (a single DICOM file is read as a one-file series).

    Parameters
    ----------
    source : path or the file's bytes; an encrypted upload is decrypted in memory.
    name : the file name, used to tell the format and in messages (default: the path's name).
    key : pseudonymisation key for a DICOM file's patient key; default
        :func:`medimg_core.privacy.pseudonym_key`. Unused for NIfTI and NRRD.
    max_voxels : most voxels read, checked from the header before the data are decoded.

    Returns
    -------
    Volume
        float32 ``(z, y, x)`` with the file's scaling applied (NIfTI ``scl_slope`` /
        ``scl_inter``), the grid in LPS.

    Raises
    ------
    ImageError
        When the file is not a readable NIfTI, NRRD or DICOM image, or its grid is sheared.
    LimitError
        When the volume has more than ``max_voxels`` voxels.
    """
    label = _label(source, name)
    data = _bytes(source, label)
    kind = _kind(data, label)
    if kind == "dicom":
        return read_dicom_series(
            [(label, data)],
            key=key if key is not None else pseudonym_key(),
            name=label,
            max_voxels=max_voxels,
        )
    return _read_volume_bytes(data, label, kind, max_voxels)


def _read_volume_bytes(data: bytes, label: str, kind: str, max_voxels: int) -> Volume:
    with _guard(label, "NIfTI file" if kind == "nifti" else "NRRD file"):
        if kind == "nifti":
            return _read_nifti(data, label, max_voxels)
        return _read_nrrd(data, label, max_voxels)


def _label(source: Source, name: str | None) -> str:
    if name:
        return name
    return "uploaded file" if isinstance(source, bytes) else Path(source).name


def _bytes(source: Source, label: str) -> bytes:
    data = plaintext(source)
    if isinstance(data, bytes):
        return data
    try:
        return Path(data).read_bytes()
    except OSError as exc:
        raise ImageError(
            f"'{label}' could not be opened ({exc.strerror or type(exc).__name__}); check that "
            "the file exists and can be read."
        ) from exc


def _kind(data: bytes, label: str) -> str:
    lower = label.lower()
    if lower.endswith((".nii", ".nii.gz")):
        return "nifti"
    if lower.endswith(".nrrd"):
        return "nrrd"
    if lower.endswith(".nhdr"):
        raise ImageError(
            f"'{label}' is a detached NRRD header (.nhdr) whose voxels are in another file; "
            "save the volume as one .nrrd file (for example with 3D Slicer or SimpleITK)."
        )
    if data[:4] == b"NRRD":
        return "nrrd"
    if data[:2] == b"\x1f\x8b" or data[344:348] in (b"n+1\0", b"ni1\0") or data[4:8] == b"n+2\0":
        return "nifti"
    if data[128:132] == b"DICM" or lower.endswith((".dcm", ".dicom")):
        return "dicom"
    raise ImageError(
        f"'{label}' is neither a NIfTI, an NRRD nor a DICOM file; give a volume ending in "
        f"{', '.join(VOLUME_SUFFIXES)}, or a folder of DICOM files."
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""


@contextmanager
def _guard(label: str, what: str) -> Iterator[None]:
    """Anything a parser raises on a damaged file, as one ImageError; medimg's own pass through.

    nibabel, pynrrd, pydicom and numpy raise many unrelated types on malformed input (struct
    errors, Unicode errors, reshape errors, zlib errors ...); all mean "this file is damaged".
    """
    try:
        yield
    except MedimgError:
        raise
    except Exception as exc:
        detail = _first_line(exc)
        raise ImageError(
            f"'{label}' could not be read as a {what} ({type(exc).__name__}"
            + (f": {detail}" if detail else "")
            + "); check that the file is complete and not damaged, or export it again."
        ) from exc


def _read_upto(stream: io.BufferedIOBase, n: int) -> bytes:
    """At most ``n`` bytes, read in chunks: a header claiming gigabytes allocates nothing."""
    parts: list[bytes] = []
    left = n
    while left > 0:
        part = stream.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _check_voxels(shape: Sequence[int], label: str, max_voxels: int) -> int:
    count = math.prod(int(s) for s in shape)
    if count <= 0:
        raise ImageError(f"'{label}' holds no voxels (size {tuple(shape)}); export it again.")
    if count > max_voxels:
        raise LimitError(
            f"'{label}' has {count:,} voxels (size {tuple(int(s) for s in shape)}), more than "
            f"the cap of {max_voxels:,}; crop or downsample the volume first."
        )
    return count


def _read_nifti(data: bytes, label: str, max_voxels: int) -> Volume:
    stream: io.BufferedIOBase = (
        gzip.GzipFile(fileobj=io.BytesIO(data)) if data[:2] == b"\x1f\x8b" else io.BytesIO(data)
    )
    head = _read_upto(stream, 540)
    klass: Any
    if head[344:348] == b"n+1\0":
        klass, size = nib.Nifti1Image, 348
    elif head[4:8] == b"n+2\0":
        klass, size = nib.Nifti2Image, 540
    elif head[344:348] == b"ni1\0":
        raise ImageError(
            f"'{label}' is the header of a NIfTI header/image pair (.hdr + .img); save the "
            "volume as one .nii or .nii.gz file."
        )
    else:
        raise ImageError(
            f"'{label}' is not a NIfTI file (no NIfTI magic in its header); give a .nii or "
            ".nii.gz volume."
        )
    header = klass.header_class(binaryblock=head[:size])
    shape = header.get_data_shape()
    count = _check_voxels(shape, label, max_voxels)
    dtype = header.get_data_dtype()
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise ImageError(
            f"'{label}' holds {dtype} voxels (colour or complex); give a scalar (grey-level) "
            "volume."
        )
    expected = int(header.get_data_offset()) + count * dtype.itemsize
    full = head + _read_upto(stream, expected - len(head))
    if len(full) < expected:
        raise ImageError(
            f"'{label}' is truncated: its header announces {expected:,} bytes, the file holds "
            f"{len(full):,}; upload the complete file."
        )
    image = klass.from_stream(io.BytesIO(full))
    array = np.asanyarray(image.dataobj)
    array = _three_axes(array, label, spatial=min(3, array.ndim))
    return _volume(array, _RAS_TO_LPS @ np.asarray(image.affine, dtype=np.float64), label)


def _three_axes(array: np.ndarray, label: str, *, spatial: int) -> np.ndarray:
    """``array`` with its first ``spatial`` axes kept and the others (of size 1) dropped."""
    extra = array.shape[spatial:]
    if any(s != 1 for s in extra):
        raise ImageError(
            f"'{label}' has {array.ndim} dimensions {tuple(array.shape)}: a series of volumes "
            "(time points, channels); give one 3D volume."
        )
    array = array.reshape(array.shape[:spatial])
    while array.ndim < 3:
        array = array[..., np.newaxis]
    return array


def _volume(
    array_xyz: np.ndarray,
    lps: np.ndarray,
    label: str,
    *,
    modality: str | None = None,
    patient_key: str | None = None,
) -> Volume:
    """A Volume from an ``(x, y, z)`` array and its 4 × 4 LPS index-to-mm matrix."""
    matrix = lps[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    if not np.all(np.isfinite(lps)) or np.any(spacing <= 0):
        raise ImageError(
            f"'{label}' has an invalid voxel grid (voxel size {_num_list(spacing)} mm); fix "
            "the file's header (spacing and orientation) and export it again."
        )
    direction = matrix / spacing
    skew = np.abs(direction.T @ direction - np.eye(3)).max()
    if skew > _ORTHOGONALITY:
        raise ImageError(
            f"'{label}' has a sheared grid (its axes are not perpendicular: "
            f"{_direction_text(tuple(direction.ravel()))}); resample it to a rectilinear grid."
        )
    values = np.ascontiguousarray(np.transpose(array_xyz, (2, 1, 0)), dtype=np.float32)
    return Volume(
        array=values,
        spacing=(float(spacing[2]), float(spacing[1]), float(spacing[0])),
        origin=(float(lps[0, 3]), float(lps[1, 3]), float(lps[2, 3])),
        direction=tuple(float(v) for v in direction.ravel()),
        name=label,
        modality=modality,
        patient_key=patient_key,
    )


def _read_nrrd(data: bytes, label: str, max_voxels: int) -> Volume:
    fh = io.BytesIO(data)
    header = nrrd.read_header(fh)
    if "data file" in header or "datafile" in header:
        raise ImageError(
            f"'{label}' is an NRRD header whose voxels are in another file; save the volume "
            "as one .nrrd file with the data attached."
        )
    sizes = [int(s) for s in np.atleast_1d(header["sizes"])]
    count = _check_voxels(sizes, label, max_voxels)
    spatial, lps = _nrrd_grid(header, sizes, label)
    array = _nrrd_data(header, fh, label, count)
    order = spatial + [a for a in range(array.ndim) if a not in spatial]
    array = _three_axes(np.transpose(array, order), label, spatial=len(spatial))
    return _volume(array, lps, label)


def _nrrd_grid(header: dict[str, Any], sizes: list[int], label: str) -> tuple[list[int], Any]:
    """The spatial axes and the 4 × 4 LPS matrix of an NRRD header."""
    lps = np.eye(4)
    directions = header.get("space directions")
    if directions is None:
        spacings = np.atleast_1d(header.get("spacings", np.ones(len(sizes))))
        spatial = list(range(min(3, len(sizes))))
        for axis in spatial:
            value = float(spacings[axis])
            lps[axis, axis] = value if math.isfinite(value) else 1.0
        return spatial, lps
    space = str(header.get("space", "left-posterior-superior")).strip().lower()
    if space not in _NRRD_SPACES:
        raise ImageError(
            f"'{label}' uses the NRRD space '{space}'; medimg reads left-posterior-superior, "
            "right-anterior-superior and left-anterior-superior: save it in one of those."
        )
    flip = np.asarray(_NRRD_SPACES[space])
    rows = np.asarray(directions, dtype=np.float64)
    spatial = [a for a in range(rows.shape[0]) if np.all(np.isfinite(rows[a]))]
    if rows.shape[1] != 3 or not 2 <= len(spatial) <= 3:
        raise ImageError(
            f"'{label}' is not a 3D NRRD volume ({len(spatial)} spatial axes in a "
            f"{rows.shape[1]}-dimensional space); give a 3D volume."
        )
    vectors = rows[spatial] * flip
    if len(spatial) == 2:
        normal = np.cross(vectors[0], vectors[1])
        vectors = np.vstack([vectors, normal / max(float(np.linalg.norm(normal)), 1e-12)])
    lps[:3, :3] = vectors.T
    origin = header.get("space origin")
    if origin is not None:
        lps[:3, 3] = np.asarray(origin, dtype=np.float64)[:3] * flip
    return spatial, lps


def _nrrd_data(header: dict[str, Any], fh: io.BytesIO, label: str, count: int) -> np.ndarray:
    encoding = str(header.get("encoding", "raw")).lower()
    if encoding not in ("gzip", "gz", "bzip2", "bz2"):
        return np.asarray(nrrd.read_data(header, fh, index_order="F"))
    # pynrrd would decompress everything before checking the size; decompress just enough.
    for _ in range(int(header.get("line skip", header.get("lineskip", 0)))):
        fh.readline()
    skip = int(header.get("byte skip", header.get("byteskip", 0)))
    if skip < 0:
        raise ImageError(
            f"'{label}' combines a compressed encoding with 'byte skip: {skip}'; save it again "
            "as a plain .nrrd file."
        )
    itemsize = int(nrrd.reader._determine_datatype(header).itemsize)
    stream: io.BufferedIOBase = (
        gzip.GzipFile(fileobj=fh) if encoding.startswith("g") else bz2.BZ2File(fh)
    )
    raw = _read_upto(stream, skip + count * itemsize)[skip:]
    if len(raw) < count * itemsize:
        raise ImageError(
            f"'{label}' is truncated: its header announces {count:,} voxels, the compressed "
            "data hold fewer; upload the complete file."
        )
    plain = {
        k: v
        for k, v in header.items()
        if k not in ("line skip", "lineskip", "byte skip", "byteskip")
    }
    plain["encoding"] = "raw"
    return np.asarray(nrrd.read_data(plain, io.BytesIO(raw), index_order="F"))


@dataclass
class _Slice:
    label: str
    series: str
    series_number: str
    modality: str
    position: np.ndarray
    orientation: np.ndarray
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]
    patient_key: str | None
    dataset: Dataset


def read_dicom_series(
    files: Sequence[str | os.PathLike[str] | tuple[str, bytes]],
    *,
    key: bytes,
    series_uid: str | None = None,
    name: str | None = None,
    max_voxels: int = _MAX_VOXELS,
) -> Volume:
    """Read one DICOM series as a volume, de-identified on reading.

    Files without image pixels or geometry (structure sets, SEGs, reports, DICOMDIR) are
    skipped. The slices are sorted by their position along the slice normal (the cross product
    of ImageOrientationPatient's row and column directions, dotted with ImagePositionPatient),
    which must step evenly; the modality LUT (rescale slope / intercept) is applied per slice.

    Parameters
    ----------
    files : paths, or ``(name, bytes)`` pairs for files held in memory.
    key : pseudonymisation key (:func:`medimg_core.privacy.pseudonym_key`).
    series_uid : which series, when the files hold several: the UID as the error lists it
        (de-identified) or the original one.
    name : the volume's name; default the folder the files share, else "DICOM series".
    max_voxels : most voxels (rows × columns × slices), checked before the pixels are decoded.

    Returns
    -------
    Volume
        Axis x follows the rows (ImageOrientationPatient's first vector), y the columns, z the
        slice normal. Only the modality and the keyed patient key are kept from the headers.

    Raises
    ------
    ImageError
        No image file; several series and none chosen; slices that differ in size,
        orientation or spacing, repeat a position, or leave a gap; undecodable pixels.
    LimitError
        When the series has more than ``max_voxels`` voxels.
    """
    slices: list[_Slice] = []
    skipped = 0
    for item in files:
        label, source = (item[0], item[1]) if isinstance(item, tuple) else (Path(item).name, item)
        found = _read_slice(source, label, key)
        if found is None:
            skipped += 1
        else:
            slices.append(found)
    if not slices:
        raise ImageError(
            f"None of the {len(files)} DICOM file(s) is an image slice with a position "
            "(ImagePositionPatient / ImageOrientationPatient); give the folder of the image "
            "series itself."
        )
    chosen = _choose_series(slices, series_uid, key)
    labels = [s.label for s in chosen]
    return _stack(chosen, name or _common_folder(labels), max_voxels)


def _read_slice(source: Source, label: str, key: bytes) -> _Slice | None:
    data = plaintext(source)
    with dicom._pydicom_quiet(), _guard(label, "DICOM image"):
        ds = dicom._read(data, name=label, header_only=False)
        patient_key = dicom.deidentify_dataset(ds, key=key)
        modality = str(ds.get("Modality", "") or "").upper()
        if (
            modality in _NOT_IMAGES
            or not dicom._has_pixels(ds)
            or "ImagePositionPatient" not in ds
            or "ImageOrientationPatient" not in ds
        ):
            return None
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise ImageError(
                f"'{label}' is a multi-frame DICOM image ({frames} frames); medimg reads "
                "series of single-frame slices: export the series as classic single-frame "
                "images."
            )
        spacing = ds.get("PixelSpacing")
        if spacing is None or len(spacing) != 2:
            raise ImageError(
                f"'{label}' has no PixelSpacing, so its voxel size is unknown; export the "
                "series again with its geometry."
            )
        return _Slice(
            label=label,
            series=str(ds.get("SeriesInstanceUID", "") or "no SeriesInstanceUID"),
            series_number=str(ds.get("SeriesNumber", "") or "?"),
            modality=modality,
            position=np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64),
            orientation=np.asarray(
                [float(v) for v in ds.ImageOrientationPatient], dtype=np.float64
            ),
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            pixel_spacing=(float(spacing[0]), float(spacing[1])),
            patient_key=patient_key,
            dataset=ds,
        )


def _choose_series(slices: list[_Slice], series_uid: str | None, key: bytes) -> list[_Slice]:
    groups: dict[str, list[_Slice]] = {}
    for s in slices:
        groups.setdefault(s.series, []).append(s)
    listing = "; ".join(
        f"{uid} ({g[0].modality or 'no modality'}, series number {g[0].series_number}, "
        f"{len(g)} slice(s))"
        for uid, g in groups.items()
    )
    if series_uid is not None:
        wanted = {series_uid, dicom.pseudonymous_uid(series_uid, key)}
        for uid, group in groups.items():
            if uid in wanted:
                return group
        raise ImageError(
            f"The DICOM files hold no series '{series_uid}'; they hold: {listing}. Choose one "
            "of these UIDs."
        )
    if len(groups) > 1:
        raise ImageError(
            f"The DICOM files hold {len(groups)} series: {listing}. Choose one (series_uid), "
            "or put each series in its own folder."
        )
    return next(iter(groups.values()))


def _common_folder(labels: list[str]) -> str:
    parents = {str(PurePosixPath(label.replace("\\", "/")).parent) for label in labels}
    if len(parents) == 1:
        parent = parents.pop()
        if parent not in ("", "."):
            return parent
    return "DICOM series"


def _stack(slices: list[_Slice], name: str, max_voxels: int) -> Volume:
    first = slices[0]
    for s in slices[1:]:
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise ImageError(
                f"The slices of '{name}' differ in size: '{first.label}' is "
                f"{first.columns}×{first.rows}, '{s.label}' {s.columns}×{s.rows}; give the "
                "files of one series only."
            )
        if np.abs(s.orientation - first.orientation).max() > 1e-4:
            raise ImageError(
                f"The slices of '{name}' differ in orientation ('{first.label}' and "
                f"'{s.label}'); give the files of one series only."
            )
        if not np.allclose(s.pixel_spacing, first.pixel_spacing, rtol=1e-3, atol=0):
            raise ImageError(
                f"The slices of '{name}' differ in pixel spacing: '{first.label}' "
                f"{_num_list(first.pixel_spacing)} mm, '{s.label}' "
                f"{_num_list(s.pixel_spacing)} mm; give the files of one series only."
            )
    _check_voxels((len(slices), first.rows, first.columns), name, max_voxels)
    row, col = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row, col)
    if abs(float(np.linalg.norm(normal)) - 1.0) > 1e-3:
        raise ImageError(
            f"'{first.label}' has an invalid ImageOrientationPatient "
            f"({_num_list(first.orientation)}); export the series again."
        )
    depth = np.array([float(s.position @ normal) for s in slices])
    order = np.argsort(depth, kind="stable")
    slices = [slices[i] for i in order]
    depth = depth[order]
    spacing_z = _slice_spacing(slices, depth, name)
    positions = np.stack([s.position for s in slices])
    along = (depth - depth[0])[:, None] * normal
    shear = np.linalg.norm(positions - positions[0] - along, axis=1).max()
    if shear > max(0.01 * spacing_z, 1e-3):
        raise ImageError(
            f"The slices of '{name}' are not stacked along their normal (shifted in-plane by "
            f"up to {_num(float(shear))} mm: a tilted gantry or a sheared series); resample it "
            "to a regular grid first."
        )
    planes = []
    for s in slices:
        with dicom._pydicom_quiet(), _guard(s.label, "DICOM image"):
            values = apply_modality_lut(_pixel_array(s.dataset), s.dataset)
        planes.append(np.asarray(values, dtype=np.float32))
    keys = {s.patient_key for s in slices if s.patient_key is not None}
    if len(keys) > 1:
        raise ImageError(
            f"The slices of '{name}' belong to {len(keys)} different patients (PatientID "
            "differs); give the files of one patient's series only."
        )
    lps = np.eye(4)
    sy, sx = first.pixel_spacing
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * sx, col * sy, normal * spacing_z
    lps[:3, 3] = positions[0]
    volume_zyx = np.stack(planes)
    return _volume(
        np.transpose(volume_zyx, (2, 1, 0)),
        lps,
        name,
        modality=first.modality or None,
        patient_key=keys.pop() if keys else None,
    )


def _slice_spacing(slices: list[_Slice], depth: np.ndarray, name: str) -> float:
    if len(slices) == 1:
        ds = slices[0].dataset
        value = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0
        return abs(float(value)) or 1.0
    gaps = np.diff(depth)
    tight = int(np.argmin(gaps))
    if gaps[tight] < 1e-3:
        raise ImageError(
            f"'{slices[tight].label}' and '{slices[tight + 1].label}' of '{name}' lie at the "
            f"same position ({_num(float(depth[tight]))} mm along the slice normal): the "
            "folder mixes acquisitions or holds a file twice; keep one series, once."
        )
    step = float(np.median(gaps))
    off = np.abs(gaps - step) > max(0.01 * step, 1e-3)
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ImageError(
            f"The slices of '{name}' are not evenly spaced: {_num(float(gaps[i]))} mm between "
            f"'{slices[i].label}' ({_num(float(depth[i]))} mm) and '{slices[i + 1].label}' "
            f"({_num(float(depth[i + 1]))} mm), while most are {_num(step)} mm apart; a "
            "slice is probably missing: export the complete series."
        )
    return step


def check_geometry(image: Volume, mask: Volume, tolerance: GeometryTolerance) -> None:
    """Raise when ``mask`` is not on ``image``'s grid within ``tolerance``.

    Raises
    ------
    ImageError
        Naming what differs (size, spacing, origin, direction), with both grids, the tolerance
        in force and how to change it.
    """
    differs: list[str] = []
    if image.shape != mask.shape:
        differs.append("size")
    a, b = np.asarray(image.spacing), np.asarray(mask.spacing)
    if np.any(np.abs(a - b) > tolerance.spacing * np.maximum(np.abs(a), np.abs(b))):
        differs.append("spacing")
    direction = np.asarray(image.direction).reshape(3, 3)
    shift = direction.T @ (np.asarray(mask.origin) - np.asarray(image.origin))
    if np.any(np.abs(shift) > tolerance.origin * a[::-1]):
        differs.append("origin")
    if np.abs(np.asarray(image.direction) - np.asarray(mask.direction)).max() > tolerance.direction:
        differs.append("direction")
    if differs:
        what = " and ".join([", ".join(differs[:-1]), differs[-1]] if len(differs) > 1 else differs)
        raise ImageError(
            f"The mask '{mask.name}' is not on the grid of the image '{image.name}': {what} "
            f"differ{'s' if len(differs) == 1 else ''}. Image: {image.geometry_text()}. Mask: "
            f"{mask.geometry_text()}. Tolerance: {tolerance.text()}. Resample the mask onto "
            "the image; if the difference is only rounding, raise the tolerance (setting "
            "'geometryTolerance' of the radiomics settings YAML: --params, or the Data page)."
        )


def read_mask(
    source: Source,
    reference: Volume,
    *,
    name: str | None = None,
    label: int | str | None = None,
    tolerance: GeometryTolerance = GeometryTolerance(),
) -> np.ndarray:
    """Read a segmentation as a boolean mask on ``reference``'s grid.

    Parameters
    ----------
    source : path or bytes of a mask volume (NIfTI / NRRD), a DICOM SEG or an RTSTRUCT.
    reference : the image the mask belongs to.
    name : the file name, for the format and messages.
    label : which region: a voxel value (mask volumes), a segment number or label (SEG), an
        ROI number or name (RTSTRUCT). None takes the only one, and fails when there are
        several.
    tolerance : how far a mask volume's grid may differ from the reference's.

    Returns
    -------
    numpy.ndarray
        bool ``(z, y, x)`` of ``reference.shape`` (all False when the region lies in no voxel).

    Raises
    ------
    ImageError
        Unreadable file; grids that differ; several regions and no label; a label the file
        does not hold; SEG frames or contours off the reference's grid.
    """
    text = _label(source, name)
    data = _bytes(source, text)
    kind = _kind(data, text)
    if kind != "dicom":
        volume = _read_volume_bytes(data, text, kind, _MAX_VOXELS)
        check_geometry(reference, volume, tolerance)
        with _guard(text, "mask"):
            return _volume_label(volume.array, label, text)
    with dicom._pydicom_quiet(), _guard(text, "DICOM segmentation"):
        ds = dicom._read(data, name=text, header_only=False)
        sop = str(ds.get("SOPClassUID", "") or "")
        modality = str(ds.get("Modality", "") or "").upper()
        if sop == _SEG_SOP_CLASS or modality == "SEG":
            return _seg_mask(ds, reference, label, tolerance, text)
        if sop == _RTSTRUCT_SOP_CLASS or modality == "RTSTRUCT":
            return _rtstruct_mask(ds, reference, label, tolerance, text)
    raise ImageError(
        f"'{text}' is a DICOM {modality or 'file'}, not a segmentation; give a DICOM SEG, an "
        "RTSTRUCT or a NIfTI / NRRD mask."
    )


def _as_number(label: int | str) -> int | None:
    if isinstance(label, int | np.integer):
        return int(label)
    text = str(label).strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _volume_label(values: np.ndarray, label: int | str | None, text: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ImageError(f"The mask '{text}' holds NaN or infinite values; fix the mask file.")
    present = np.unique(values[values != 0])
    if present.size and not np.all(present == np.round(present)):
        example = float(present[present != np.round(present)][0])
        raise ImageError(
            f"The mask '{text}' holds non-integer values (e.g. {example:g}), like a "
            "probability map; threshold it into a label mask first."
        )
    shown = _shown([f"{v:g}" for v in present])
    if label is None:
        if present.size > 1:
            raise ImageError(
                f"The mask '{text}' holds {present.size} labels ({shown}); set label to the "
                "value that marks the region."
            )
        return np.asarray(values != 0)
    number = _as_number(label)
    if number is None:
        raise ImageError(
            f"The mask '{text}' is a label volume, so label must be a number, got '{label}'; "
            f"its labels are {shown or 'none (the mask is empty)'}."
        )
    if number not in present:
        raise ImageError(
            f"The mask '{text}' has no voxel with label {number}; its labels are "
            f"{shown or 'none (the mask is empty)'}: set label to one of them."
        )
    return np.asarray(values == number)


def _shown(items: list[str]) -> str:
    extra = len(items) - _SHOWN_LABELS
    return ", ".join(items[:_SHOWN_LABELS]) + (f", … ({extra} more)" if extra > 0 else "")


def _pick(found: dict[int, str], label: int | str | None, text: str, what: str) -> int:
    """The number of the region chosen by ``label`` among ``found`` (number -> name)."""
    shown = _shown([f"{n} '{v}'" for n, v in found.items()])
    if not found:
        raise ImageError(f"'{text}' holds no {what}; export the segmentation again.")
    if label is None:
        if len(found) > 1:
            raise ImageError(
                f"'{text}' holds {len(found)} {what}s ({shown}); set label to the number or "
                "name of the one that marks the region."
            )
        return next(iter(found))
    number = _as_number(label)
    if number is not None and number in found:
        return number
    by_name = [n for n, v in found.items() if v.strip().lower() == str(label).strip().lower()]
    if by_name:
        return by_name[0]
    raise ImageError(
        f"'{text}' has no {what} '{label}'; it holds {shown}: set label to one of these "
        "numbers or names."
    )


def _reference_index(reference: Volume) -> np.ndarray:
    """The 4 × 4 matrix mapping LPS mm to ``(z, y, x)`` voxel indices of ``reference``."""
    to_mm = affine(reference)[:, [2, 1, 0, 3]]
    return np.asarray(np.linalg.inv(to_mm))


def _seg_mask(
    ds: Dataset,
    reference: Volume,
    label: int | str | None,
    tolerance: GeometryTolerance,
    text: str,
) -> np.ndarray:
    import highdicom as hd

    seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    found = {
        int(n): str(seg.get_segment_description(int(n)).segment_label) for n in seg.segment_numbers
    }
    number = _pick(found, label, text, "segment")
    kind = str(ds.get("SegmentationType", "BINARY")).upper()
    frames = np.asarray(_pixel_array(ds))
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        frames = frames[np.newaxis]
    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    mask = np.zeros(reference.shape, dtype=bool)
    to_index = _reference_index(reference)
    for i, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        if kind == "LABELMAP":
            hit = frames[i] == number
        else:
            segment = _functional(
                group, shared, "SegmentIdentificationSequence", "ReferencedSegmentNumber"
            )
            if int(segment) != number:
                continue
            cut = float(ds.get("MaximumFractionalValue", 1) or 1) / 2 if kind == "FRACTIONAL" else 0
            hit = frames[i] > cut
        if not hit.any():
            continue
        iop = _functional(group, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _functional(group, shared, "PixelMeasuresSequence", "PixelSpacing")
        ipp = group.PlanePositionSequence[0].ImagePositionPatient
        frame_mm = np.eye(4)
        row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
        # Frame voxel (slice 0, row r, column c) lies at ipp + c·Δc·row + r·Δr·col.
        frame_mm[:3, 2] = row * float(spacing[1])
        frame_mm[:3, 1] = col * float(spacing[0])
        frame_mm[:3, 0] = np.cross(row, col)
        frame_mm[:3, 3] = [float(v) for v in ipp]
        _paste(mask, np.asarray(hit)[np.newaxis], to_index @ frame_mm, reference, tolerance, text)
    return mask


def _functional(group: Dataset, shared: Dataset, sequence: str, keyword: str) -> Any:
    for source in (group, shared):
        if sequence in source and keyword in source[sequence].value[0]:
            return source[sequence].value[0][keyword].value
    raise ImageError(f"The DICOM SEG lacks {keyword} ({sequence}); export it again.")


def _paste(
    mask: np.ndarray,
    hit: np.ndarray,
    to_reference: np.ndarray,
    reference: Volume,
    tolerance: GeometryTolerance,
    text: str,
) -> None:
    """Set the voxels of ``mask`` that ``hit``'s true voxels map onto.

    ``to_reference`` maps ``hit``'s indices to the reference's ``(z, y, x)`` indices; in-plane
    it must be a one-to-one step (same spacing and orientation) and whole-voxel offsets.
    """
    in_plane = to_reference[1:3, 1:3]
    step = np.abs(in_plane - np.round(in_plane)).max()
    one_to_one = np.array_equal(np.abs(np.round(in_plane)).sum(axis=0), [1.0, 1.0])
    if step > tolerance.spacing + tolerance.direction or not one_to_one:
        raise ImageError(
            f"The frames of '{text}' are not on the pixel grid of '{reference.name}' (other "
            f"pixel spacing or orientation); the image is {reference.geometry_text()}. Give "
            "the segmentation made on this image series."
        )
    start = to_reference[:3, 3]
    off = float(np.abs(start - np.round(start)).max())
    if off > tolerance.origin + 1e-6:
        raise ImageError(
            f"The frames of '{text}' lie between the voxels of '{reference.name}' (off by "
            f"{off:.3f} voxel); give the segmentation made on this image series. The image is "
            f"{reference.geometry_text()}."
        )
    where = np.argwhere(hit).astype(np.float64)
    idx = np.round(where @ to_reference[:3, :3].T + start).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(reference.shape)), axis=1)
    if not inside.all():
        raise ImageError(
            f"{int((~inside).sum())} voxel(s) of '{text}' lie outside the image "
            f"'{reference.name}' ({reference.geometry_text()}); give the segmentation made on "
            "this image series."
        )
    mask[idx[:, 0], idx[:, 1], idx[:, 2]] = True


def _rtstruct_mask(
    ds: Dataset,
    reference: Volume,
    label: int | str | None,
    tolerance: GeometryTolerance,
    text: str,
) -> np.ndarray:
    found = {
        int(item.ROINumber): str(item.get("ROIName", "") or "")
        for item in ds.get("StructureSetROISequence", [])
    }
    number = _pick(found, label, text, "ROI")
    contours = [
        contour
        for roi in ds.get("ROIContourSequence", [])
        if int(roi.ReferencedROINumber) == number
        for contour in roi.get("ContourSequence", [])
        if str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).upper() == "CLOSED_PLANAR"
    ]
    if not contours:
        raise ImageError(
            f"ROI {number} '{found[number]}' of '{text}' has no closed planar contour to fill; "
            "choose another ROI (label) or export the structure set again."
        )
    to_index = _reference_index(reference)
    nz, ny, nx = reference.shape
    mask = np.zeros(reference.shape, dtype=bool)
    for contour in contours:
        points = np.asarray([float(v) for v in contour.ContourData], dtype=np.float64)
        if points.size < 9 or points.size % 3:
            continue
        xyz = points.reshape(-1, 3)
        index = np.c_[xyz, np.ones(len(xyz))] @ to_index.T
        z = index[:, 0]
        plane = round(float(z.mean()))
        if np.abs(z - plane).max() > max(_CONTOUR_PLANE, tolerance.origin):
            raise ImageError(
                f"A contour of ROI {number} '{found[number]}' in '{text}' does not lie on a "
                f"slice of '{reference.name}' (up to {_num(float(np.abs(z - plane).max()))} "
                "slice(s) away); give the structure set drawn on this image series."
            )
        if not 0 <= plane < nz:
            continue
        rr, cc = polygon(index[:, 1], index[:, 2], shape=(ny, nx))
        filled = np.zeros((ny, nx), dtype=bool)
        filled[rr, cc] = True
        mask[plane] ^= filled
    return mask


def _num(value: float) -> str:
    """2 decimals when they say it all, else up to 6 (so small differences show)."""
    if abs(value - round(value, 2)) < 1e-9:
        return f"{value:.2f}"
    return f"{value:.6f}".rstrip("0")


def _num_list(values: Any) -> str:
    return "×".join(_num(float(v)) for v in np.ravel(values))


def _direction_text(direction: tuple[float, ...]) -> str:
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    if np.allclose(matrix, np.eye(3), atol=1e-6):
        return "identity (axial, LPS)"
    columns = ", ".join(
        "(" + ", ".join(_short(float(v)) for v in matrix[:, k]) + ")" for k in range(3)
    )
    return f"x, y, z axes {columns}"


def _short(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if float(text) == 0 else text
