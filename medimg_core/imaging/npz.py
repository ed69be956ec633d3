"""MedMNIST ``.npz`` files: arrays of images and labels, with their splits.

The MedMNIST layout is ``train_images``, ``train_labels``, ``val_…``, ``test_…``: the splits are
kept in a ``split`` column ("train", "val", "test"). Unlike the other layouts, whose pixels are
loaded one image at a time, an ``.npz`` set keeps its arrays in memory, as NumPy already loaded
them; a record's ``source`` is ``npz:<split>:<index>``. :func:`read_npz` returns the records,
arrays and notes; :func:`medimg_core.imaging.sets.open_image_set` makes them an image set.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medimg_core.errors import ImageError
from medimg_core.imaging.pixels import LUMA_NOTE

__all__ = ["NpzContents", "is_npz", "read_npz"]

_SPLITS = ("train", "val", "test")


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
    """

    records: pd.DataFrame
    arrays: dict[str, np.ndarray]
    notes: tuple[str, ...]


def is_npz(fh: Any) -> bool:
    """Whether a ZIP (path or binary file object) holds only ``.npy`` arrays."""
    with zipfile.ZipFile(fh) as zf:
        names = zf.namelist()
    return bool(names) and all(n.endswith(".npy") for n in names)


def read_npz(fh: Any, display: str) -> NpzContents:
    """Read a MedMNIST ``.npz`` (path or binary file object) into records and arrays.

    Raises
    ------
    ImageError
        When the file is not a readable ``.npz``, has no ``train_images``, or its images or labels
        have an unexpected shape or count.
    """
    try:
        data = np.load(fh, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ImageError(f"'{display}' could not be read as a NumPy .npz ({exc}).") from exc
    with data:
        keys = set(data.files)
        present = [s for s in _SPLITS if f"{s}_images" in keys]
        if not present:
            raise ImageError(
                f"'{display}' holds {sorted(keys)[:10]} but no 'train_images'; medimg reads .npz "
                "files in the MedMNIST layout (train_images, train_labels, val_…, test_…)."
            )
        arrays: dict[str, np.ndarray] = {}
        rows: list[dict[str, Any]] = []
        for split in present:
            images = np.asarray(data[f"{split}_images"])
            if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
                raise ImageError(
                    f"'{display}': {split}_images has shape {images.shape}; expected "
                    "(n, height, width) or (n, height, width, 3)."
                )
            if images.ndim == 4 and images.shape[-1] == 1:
                images = images[..., 0]
            labels = _npz_labels(data, split, len(images), display)
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
        "Labels are the file's integer codes (for PneumoniaMNIST 0 = normal, 1 = pneumonia).",
    ]
    if any(a.ndim == 4 for a in arrays.values()):
        notes.append(LUMA_NOTE)
    return NpzContents(records=records, arrays=arrays, notes=tuple(notes))


def _npz_labels(data: Any, split: str, n: int, display: str) -> np.ndarray | None:
    key = f"{split}_labels"
    if key not in data.files:
        return None
    labels = np.asarray(data[key])
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
    return labels
