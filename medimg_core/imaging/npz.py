"""MedMNIST ``.npz`` files: arrays of images and labels, with their splits.

The MedMNIST layout is ``train_images``, ``train_labels``, ``val_…``, ``test_…``: the splits are
kept in a ``split`` column ("train", "val", "test"). Unlike the other layouts, whose pixels are
loaded one image at a time, an ``.npz`` set keeps its arrays in memory, as NumPy already loaded
them; a record's ``source`` is ``npz:<split>:<index>``. :func:`read_npz` returns the records,
arrays and notes; :func:`medimg_core.imaging.sets.open_image_set` makes them an image set.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from medimg_core.errors import ImageError
from medimg_core.imaging.pixels import LUMA_NOTE

__all__ = ["MEDMNIST", "MedmnistDataset", "NpzContents", "is_npz", "read_npz", "recognise_medmnist"]

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
