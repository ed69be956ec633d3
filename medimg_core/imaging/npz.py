"""MedMNIST ``.npz`` files: arrays of images and labels, with their splits.

The MedMNIST layout is ``train_images``, ``train_labels``, ``val_…``, ``test_…``: the splits are
kept in a ``split`` column ("train", "val", "test"). Unlike the other layouts, whose pixels are
loaded one image at a time, an ``.npz`` set keeps its arrays in memory, as NumPy already loaded
them; a record's ``source`` is ``npz:<split>:<index>``. :func:`read_npz` returns the records,
arrays and notes; :func:`medimg_core.imaging.sets.open_image_set` makes them an image set.
"""

from __future__ import annotations

import math
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from medimg_core.errors import ImageError, LimitError
from medimg_core.imaging.pixels import (
    LUMA_NOTE,
    PIXELS_ENV,
    UPLOAD_BYTES_ENV,
    ImageLimits,
    human_bytes,
)

__all__ = [
    "MEDMNIST",
    "MedmnistDataset",
    "NpyHeader",
    "NpzContents",
    "is_npz",
    "read_npy_header",
    "read_npz",
    "recognise_medmnist",
]

_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class MedmnistDataset:
    """A MedMNIST data set with its published label names (MedMNIST v2, ``medmnist.INFO``).

    Attributes
    ----------
    key : the file-name stem, e.g. "breastmnist".
    title : e.g. "BreastMNIST".
    labels : (code as text, published name) pairs, e.g. (("0", "malignant"), ("1", "normal,
        benign")), the form of :attr:`medimg_core.tables.roles.Roles.class_names`.
    positive : the code of the disease class offered as positive (binary sets only), e.g. "0"
        for BreastMNIST (malignant), "1" for PneumoniaMNIST (pneumonia); None for multi-class.
    n_samples : images per split in the published files (train, val, test).
    """

    key: str
    title: str
    labels: tuple[tuple[str, str], ...]
    positive: str | None
    n_samples: tuple[int, int, int]

    @property
    def positive_name(self) -> str | None:
        """The published name of the positive code."""
        return dict(self.labels).get(self.positive) if self.positive is not None else None


def _organ(key: str, title: str, n_samples: tuple[int, int, int]) -> MedmnistDataset:
    organs = (
        "bladder",
        "femur-left",
        "femur-right",
        "heart",
        "kidney-left",
        "kidney-right",
        "liver",
        "lung-left",
        "lung-right",
        "pancreas",
        "spleen",
    )
    return MedmnistDataset(
        key, title, tuple((str(i), o) for i, o in enumerate(organs)), None, n_samples
    )


def _named(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(i), n) for i, n in enumerate(names))


# Copied from MedMNIST v2's ``medmnist/info.py`` (INFO[...]["label"] and ["n_samples"]).
# RetinaMNIST is left out on purpose: its published names are the grades "0".."4" themselves.
MEDMNIST: dict[str, MedmnistDataset] = {
    d.key: d
    for d in (
        MedmnistDataset(
            "pneumoniamnist", "PneumoniaMNIST", _named("normal", "pneumonia"), "1", (4708, 524, 624)
        ),
        MedmnistDataset(
            "breastmnist", "BreastMNIST", _named("malignant", "normal, benign"), "0", (546, 78, 156)
        ),
        MedmnistDataset(
            "pathmnist",
            "PathMNIST",
            _named(
                "adipose",
                "background",
                "debris",
                "lymphocytes",
                "mucus",
                "smooth muscle",
                "normal colon mucosa",
                "cancer-associated stroma",
                "colorectal adenocarcinoma epithelium",
            ),
            None,
            (89996, 10004, 7180),
        ),
        MedmnistDataset(
            "dermamnist",
            "DermaMNIST",
            _named(
                "actinic keratoses and intraepithelial carcinoma",
                "basal cell carcinoma",
                "benign keratosis-like lesions",
                "dermatofibroma",
                "melanoma",
                "melanocytic nevi",
                "vascular lesions",
            ),
            None,
            (7007, 1003, 2005),
        ),
        MedmnistDataset(
            "octmnist",
            "OCTMNIST",
            _named("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
            None,
            (97477, 10832, 1000),
        ),
        MedmnistDataset(
            "bloodmnist",
            "BloodMNIST",
            _named(
                "basophil",
                "eosinophil",
                "erythroblast",
                "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
                "lymphocyte",
                "monocyte",
                "neutrophil",
                "platelet",
            ),
            None,
            (11959, 1712, 3421),
        ),
        MedmnistDataset(
            "tissuemnist",
            "TissueMNIST",
            _named(
                "Collecting Duct, Connecting Tubule",
                "Distal Convoluted Tubule",
                "Glomerular endothelial cells",
                "Interstitial endothelial cells",
                "Leukocytes",
                "Podocytes",
                "Proximal Tubule Segments",
                "Thick Ascending Limb",
            ),
            None,
            (165466, 23640, 47280),
        ),
        _organ("organamnist", "OrganAMNIST", (34581, 6491, 17778)),
        _organ("organcmnist", "OrganCMNIST", (13000, 2392, 8268)),
        _organ("organsmnist", "OrganSMNIST", (13940, 2452, 8829)),
    )
}
"""The MedMNIST 2D sets medimg recognises, by file-name stem."""

_FILE_NAME = re.compile(r"^([a-z]+mnist)(?:[_-](?:28|64|128|224))?$")


def recognise_medmnist(display: str, records: pd.DataFrame) -> MedmnistDataset | None:
    """Which MedMNIST set an ``.npz`` is, from its file name or, failing that, its split sizes.

    The file name must be the published one (``pneumoniamnist.npz``, ``breastmnist_128.npz``)
    or the split sizes must be exactly the published ones; either way every label code in
    the file must be one of the set's codes. Otherwise None: the codes stay unnamed.
    """
    stem = PurePath(str(display)).stem.lower()
    match = _FILE_NAME.match(stem)
    found = MEDMNIST.get(match.group(1)) if match else None
    if found is None:
        counts = tuple(int((records["split"] == s).sum()) for s in _SPLITS)
        found = next((d for d in MEDMNIST.values() if d.n_samples == counts), None)
    if found is None:
        return None
    if "label" in records.columns:
        codes = {str(int(v)) for v in records["label"].dropna()}
        if not codes <= {code for code, _ in found.labels}:
            return None
    return found


@dataclass(frozen=True, eq=False)
class NpzContents:
    """The images of a MedMNIST ``.npz``, as records for an image set.

    Attributes
    ----------
    records : one row per image: ``file`` (``<split>_<index>``), ``label`` (the integer codes,
        when the file has labels), ``split``, ``source`` (``npz:<split>:<index>``), ``height``,
        ``width``, ``format``.
    arrays : the images of each split, (n, height, width) or (n, height, width, 3).
    notes : what medimg did, for the user.
    dataset : the MedMNIST set recognised (:func:`recognise_medmnist`), with its label names.
    """

    records: pd.DataFrame
    arrays: dict[str, np.ndarray]
    notes: tuple[str, ...]
    dataset: MedmnistDataset | None = None


def is_npz(fh: Any) -> bool:
    """Whether a ZIP (path or binary file object) holds only ``.npy`` arrays."""
    try:
        with zipfile.ZipFile(fh) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False  # not readable as a ZIP: the archive's own reader says so, clearly
    return bool(names) and all(n.endswith(".npy") for n in names)


_MAX_NPY_HEADER = 10_000
# What reading a damaged, truncated, encrypted or oddly compressed member raises.
_UNREADABLE = (
    ValueError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    SyntaxError,
    RuntimeError,
    NotImplementedError,
)
_IMAGE_KINDS = frozenset("biuf")
_LABEL_KINDS = frozenset("biuf")


@dataclass(frozen=True)
class NpyHeader:
    """What the header of one ``.npy`` member of an ``.npz`` claims, read before any data.

    Attributes
    ----------
    name : the array's name (the member name without ``.npy``).
    shape : the claimed shape.
    dtype : the claimed element type.
    data_bytes : shape × itemsize, the bytes the data must take.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    data_bytes: int


def read_npy_header(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    display: str,
    limits: ImageLimits,
    check: Callable[[NpyHeader], None] | None = None,
) -> NpyHeader:
    """Read and check the header of one ``.npy`` member without reading its data.

    The claimed size (shape × itemsize) is checked against ``limits.max_unpacked_bytes`` and
    against the member's real uncompressed size, so that a lying header (a few bytes claiming
    terabytes) is refused before anything is allocated; object arrays (which would need pickle)
    and non-numeric element types are refused too. ``check`` (for example the pixel cap of
    an image array) runs on the claimed header before it is compared with the member's size.

    Raises
    ------
    ImageError
        A header that cannot be read, an object or non-numeric array, or a member shorter than
        its header claims (truncated or lying).
    LimitError
        An array larger than ``limits.max_unpacked_bytes``.
    """
    name = info.filename[: -len(".npy")] if info.filename.endswith(".npy") else info.filename
    fix = "export the arrays again with numpy.savez (numeric arrays, no objects)"
    try:
        with zf.open(info) as fp:
            major, _minor = np.lib.format.read_magic(fp)
            if major == 1:
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(
                    fp, max_header_size=_MAX_NPY_HEADER
                )
            elif major == 2:
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(
                    fp, max_header_size=_MAX_NPY_HEADER
                )
            else:
                raise ValueError(f"unsupported .npy format version {major}")
            header_bytes = fp.tell()
    except _UNREADABLE as exc:
        raise ImageError(
            f"'{display}': the array '{name}' has an unreadable header ({exc}); {fix}."
        ) from exc
    if dtype.hasobject or dtype.kind not in _IMAGE_KINDS or dtype.fields is not None:
        raise ImageError(
            f"'{display}': the array '{name}' holds {dtype} values, not numbers"
            + (
                " (object arrays would need pickle, which medimg never loads)"
                if dtype.hasobject
                else ""
            )
            + f"; {fix}."
        )
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise ImageError(f"'{display}': the array '{name}' has an invalid shape {shape}; {fix}.")
    data_bytes = math.prod(shape) * dtype.itemsize
    if data_bytes > limits.max_unpacked_bytes:
        raise LimitError(
            f"'{display}': the array '{name}' of shape {shape} would take "
            f"{human_bytes(data_bytes)} in memory, more than the cap of "
            f"{human_bytes(limits.max_unpacked_bytes)}; use fewer or smaller images, or ask "
            f"the administrator to raise {UPLOAD_BYTES_ENV}."
        )
    head = NpyHeader(name=name, shape=tuple(shape), dtype=dtype, data_bytes=data_bytes)
    if check is not None:
        check(head)
    if header_bytes + data_bytes > info.file_size:
        raise ImageError(
            f"'{display}': the array '{name}' claims shape {shape} ({data_bytes:,} bytes) but its "
            f"member holds only {max(info.file_size - header_bytes, 0):,} bytes of data; the file "
            "is truncated or damaged: export it again."
        )
    return head


def read_npz(fh: Any, display: str, *, limits: ImageLimits | None = None) -> NpzContents:
    """Read a MedMNIST ``.npz`` (path or binary file object) into records and arrays.

    Every array's header is checked (:func:`read_npy_header`) before its data is read: sizes,
    element types and shapes are known, and bounded by ``limits`` (default
    :class:`~medimg_core.imaging.pixels.ImageLimits` from the settings), before anything is
    allocated.

    Raises
    ------
    ImageError
        When the file is not a readable ``.npz``, has no ``train_images``, holds object or
        non-numeric arrays, is truncated, its images hold NaN or infinite values, or its images
        or labels have an unexpected shape, type or count.
    LimitError
        When an array or all of them together exceed ``limits.max_unpacked_bytes``, or an image
        has more than ``limits.max_pixels`` pixels.
    """
    limits = limits if limits is not None else ImageLimits()
    try:
        zf = zipfile.ZipFile(fh)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ImageError(f"'{display}' could not be read as a NumPy .npz ({exc}).") from exc
    with zf:
        members = {
            i.filename[: -len(".npy")]: i for i in zf.infolist() if i.filename.endswith(".npy")
        }
        present = [s for s in _SPLITS if f"{s}_images" in members]
        if not present:
            raise ImageError(
                f"'{display}' holds {sorted(members)[:10]} but no 'train_images'; medimg reads .npz "
                "files in the MedMNIST layout (train_images, train_labels, val_…, test_…)."
            )
        unlabelled = [s for s in present if f"{s}_labels" not in members]
        if unlabelled and len(unlabelled) < len(present):
            missing = ", ".join(f"{s}_labels" for s in unlabelled)
            raise ImageError(
                f"'{display}' has labels for some splits but no {missing}; every split with "
                "images needs its labels (or leave the labels out of every split to predict)."
            )
        headers = {}
        image_check = partial(_check_image_shape, display=display, limits=limits)
        for split in present:
            key = f"{split}_images"
            headers[key] = read_npy_header(zf, members[key], display, limits, image_check)
            key = f"{split}_labels"
            if key in members:
                headers[key] = read_npy_header(zf, members[key], display, limits)
        total = sum(h.data_bytes for h in headers.values())
        if total > limits.max_unpacked_bytes:
            raise LimitError(
                f"'{display}' holds {human_bytes(total)} of arrays, more than the cap of "
                f"{human_bytes(limits.max_unpacked_bytes)}; use fewer or smaller images, or ask "
                f"the administrator to raise {UPLOAD_BYTES_ENV}."
            )
        arrays: dict[str, np.ndarray] = {}
        rows: list[dict[str, Any]] = []
        for split in present:
            head = headers[f"{split}_images"]
            images = _read_member(zf, members[head.name], display)
            _check_finite(images, head.name, display)
            if images.ndim == 4 and images.shape[-1] == 1:
                images = images[..., 0]
            labels = None
            if f"{split}_labels" in headers:
                raw = _read_member(zf, members[f"{split}_labels"], display)
                labels = _npz_labels(raw, f"{split}_labels", len(images), display)
            arrays[split] = images
            height, width = int(images.shape[1]), int(images.shape[2])
            for i in range(len(images)):
                rows.append(
                    {
                        "file": f"{split}_{i:05d}",
                        "label": None if labels is None else labels[i],
                        "split": split,
                        "source": f"npz:{split}:{i}",
                        "height": height,
                        "width": width,
                        "format": "npz",
                    }
                )
    records = pd.DataFrame(rows)
    if records["label"].isna().all():
        records = records.drop(columns="label")
    else:
        records["label"] = records["label"].astype("Int64")
    counts = {s: int((records["split"] == s).sum()) for s in present}
    notes = [
        "MedMNIST .npz: its own splits are kept in the column 'split' ("
        + ", ".join(f"{s} {n}" for s, n in counts.items())
        + "); 'test' is the held-out test set, 'train' and 'val' form the development data.",
    ]
    dataset = recognise_medmnist(display, records)
    if dataset is not None:
        named = ", ".join(f"{code} = {name}" for code, name in dataset.labels)
        text = (
            f"Recognised as {dataset.title} (file name or split sizes, and its label codes); "
            f"its published label names are used: {named}."
        )
        if dataset.positive is not None:
            text += (
                f" The positive class offered is {dataset.positive_name} (code "
                f"{dataset.positive}); change it if your question is another one."
            )
        notes.append(text)
    elif "label" in records.columns:
        notes.append(
            "Labels are the file's integer codes, and the file was not recognised as a MedMNIST "
            "set: name the codes (class names) and choose the positive class yourself."
        )
    if any(a.ndim == 4 for a in arrays.values()):
        notes.append(LUMA_NOTE)
    return NpzContents(records=records, arrays=arrays, notes=tuple(notes), dataset=dataset)


def _check_image_shape(head: NpyHeader, display: str, limits: ImageLimits) -> None:
    shape = head.shape
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] not in (1, 3)):
        raise ImageError(
            f"'{display}': {head.name} has shape {shape}; expected "
            "(n, height, width) or (n, height, width, 3)."
        )
    n, height, width = shape[:3]
    if n < 1 or height < 1 or width < 1:
        raise ImageError(
            f"'{display}': {head.name} has shape {shape}, so it holds no image; remove the "
            "empty split or export the file again."
        )
    if height * width > limits.max_pixels:
        raise LimitError(
            f"'{display}': the images of {head.name} are {width}×{height} pixels, more than the "
            f"cap of {limits.max_pixels:,}; downsample them first, or ask the administrator to "
            f"raise {PIXELS_ENV}."
        )


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, display: str) -> np.ndarray:
    """The data of one member whose header :func:`read_npy_header` has checked."""
    try:
        with zf.open(info) as fp:
            return np.asarray(
                np.lib.format.read_array(fp, allow_pickle=False, max_header_size=_MAX_NPY_HEADER)
            )
    except _UNREADABLE as exc:
        raise ImageError(
            f"'{display}': the array '{info.filename}' could not be read ({exc}); the file is "
            "truncated or damaged: export it again."
        ) from exc


def _check_finite(images: np.ndarray, key: str, display: str) -> None:
    if images.dtype.kind != "f":
        return
    bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise ImageError(
            f"'{display}': {int(bad.sum()):,} image(s) of {key} hold NaN or infinite values "
            f"(the first is number {first}); replace them with numbers (or remove those images) "
            "and export the file again."
        )


def _npz_labels(labels: np.ndarray, key: str, n: int, display: str) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ImageError(
            f"'{display}': {key} has shape {labels.shape}; medimg handles one label per image "
            "(multi-label sets such as ChestMNIST are not supported)."
        )
    if len(labels) != n:
        raise ImageError(
            f"'{display}': {key} has {len(labels)} labels for {n} images; the counts must match."
        )
    if labels.dtype.kind == "f":
        finite = np.isfinite(labels)
        if not finite.all() or not np.array_equal(labels, np.round(labels)):
            raise ImageError(
                f"'{display}': {key} holds values that are not whole numbers (such as NaN or "
                "0.5); MedMNIST labels are integer class codes: export them as integers."
            )
    if labels.dtype.kind not in _LABEL_KINDS:
        raise ImageError(
            f"'{display}': {key} holds {labels.dtype} values; MedMNIST labels are integer class "
            "codes: export them as integers."
        )
    if len(labels) and (labels.min() < -(2**31) or labels.max() > 2**31 - 1):
        raise ImageError(
            f"'{display}': {key} holds codes outside the range of class codes; MedMNIST labels "
            "are small integers (0, 1, 2, …): export them again."
        )
    return labels.astype(np.int64)
