"""3D studies: CT / MRI volumes with lesion segmentations, read as a set of cases.

A study is a folder (or a ZIP of one) in either layout:

* **a manifest** ``manifest.csv`` (or ``.tsv``, ``.xlsx``, ``.parquet``, or a table given with
  ``manifest=``) with columns ``case``, ``image``, ``mask``, ``label`` and optionally
  ``patient_id`` and clinical columns. ``image`` and ``mask`` are paths inside the study: a
  NIfTI / NRRD file, or a folder holding one DICOM series; a mask may also be a DICOM SEG or
  RTSTRUCT file. An optional ``mask_label`` column chooses the region per case (a label value,
  a segment number or an ROI name).
* **folders by class**, as for 2D images: ``<class>/<case>.nii.gz`` (or ``<class>/<case>/`` of
  DICOM files) with each case's mask under ``masks/`` at the same relative path (any volume
  ending, or ``.dcm`` for a SEG / RTSTRUCT). ``--masks DIR`` names another masks folder.

Reading is lazy: :meth:`VolumeStudy.load` reads one case's volume and mask when asked.
:func:`extract_volume_features` computes the IBSI radiomic features of every case, in parallel
(:mod:`medimg_core.compute`), into the same :class:`~medimg_core.imaging.features.FeatureTable`
the 2D path produces, with the radiomics settings attached for the model card.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from medimg_core import compute
from medimg_core.errors import ConfigError, ImageError, LimitError, MedimgError
from medimg_core.imaging import dicom
from medimg_core.imaging.archives import (
    MANIFEST_FILES,
    VOLUME_ENDINGS,
    extract_zip,
    remove_upload,
)
from medimg_core.imaging.features import FeatureTable
from medimg_core.imaging.pixels import ImageLimits, ImageProblem
from medimg_core.imaging.radiomics.settings import RadiomicsSettings
from medimg_core.imaging.sets import _file_hash, _listing_hash, _visible
from medimg_core.imaging.stored import plaintext
from medimg_core.imaging.volumes import (
    GeometryTolerance,
    Volume,
    read_dicom_series,
    read_mask,
    read_volume,
)
from medimg_core.privacy import pseudonym_key
from medimg_core.tables.loading import load_table
from medimg_core.workspace import workspace_home

__all__ = [
    "MANIFEST_FILES",
    "VOLUME_ENDINGS",
    "VolumeStudy",
    "extract_volume_features",
    "is_volume_name",
    "looks_like_volume_study",
    "open_volume_study",
]

Progress = Callable[[float, str], None]

_DICOM_ENDINGS = (".dcm", ".dicom")
_MASK_ENDINGS = (*VOLUME_ENDINGS, *_DICOM_ENDINGS)
_RESERVED = ("case", "label", "patient_id", "image", "mask", "mask_label", "source", "mask_source")


def is_volume_name(name: str) -> bool:
    """Whether a file name ends like a NIfTI or NRRD volume."""
    lower = name.lower()
    return any(lower.endswith(e) for e in VOLUME_ENDINGS)


def _stem(name: str) -> str:
    lower = name.lower()
    for ending in (*VOLUME_ENDINGS, *_DICOM_ENDINGS):
        if lower.endswith(ending):
            return name[: -len(ending)]
    return name


def looks_like_volume_study(source: str | os.PathLike[str] | bytes) -> bool:
    """Whether a folder or ZIP holds 3D volumes (NIfTI / NRRD files or a manifest).

    A folder of DICOM files alone stays a 2D image set unless radiomics settings are given
    (``medimg features --params``), since one DICOM file per image is as common as one series
    per case.
    """
    if isinstance(source, bytes):
        if not zipfile.is_zipfile(io.BytesIO(source)):
            return False
        with zipfile.ZipFile(io.BytesIO(source)) as zf:
            return _names_look_volumetric(zf.namelist())
    path = Path(source).expanduser()
    if path.is_dir():
        for p in path.rglob("*"):
            if p.is_file() and (is_volume_name(p.name) or p.name.lower() in MANIFEST_FILES):
                return True
        return False
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return _names_look_volumetric(zf.namelist())
    return False


def _names_look_volumetric(names: Sequence[str]) -> bool:
    return any(is_volume_name(n) or PurePosixPath(n).name.lower() in MANIFEST_FILES for n in names)


@dataclass(frozen=True, eq=False)
class VolumeStudy:
    """A set of 3D cases (volume + segmentation), read lazily.

    Attributes
    ----------
    name : display name (folder or archive name).
    layout : ``manifest``, ``class-folders`` or ``unlabelled``.
    records : one row per case: ``case``, ``label`` (when known), ``patient_id`` (manifest, or
        the keyed pseudonym of a DICOM PatientID), ``image`` and ``mask`` (paths inside the
        study), ``mask_label`` (when given), ``source`` / ``mask_source`` (absolute paths), then
        the manifest's clinical columns.
    root : the study folder.
    notes : what medimg did, for the user.
    problems : cases left out, with the reason.
    class_counts : cases per label.
    extra_columns : the manifest's clinical columns, joined to the features.
    content_hash : sha256 of the archive, or of the folder listing.
    """

    name: str
    layout: str
    records: pd.DataFrame
    root: Path
    notes: tuple[str, ...]
    problems: tuple[ImageProblem, ...]
    class_counts: dict[str, int]
    extra_columns: tuple[str, ...]
    content_hash: str
    missing_files: tuple[str, ...] = ()
    unlabelled_files: tuple[str, ...] = ()

    kind = "volumes"
    dataset = None
    """A 3D study is never a recognised MedMNIST set (as :attr:`ImageSet.dataset` can be)."""

    def __len__(self) -> int:
        return len(self.records)

    @property
    def has_labels(self) -> bool:
        return "label" in self.records.columns and bool(self.records["label"].notna().any())

    @property
    def has_masks(self) -> bool:
        return True

    def case_position(self, case: Any) -> int | None:
        """The row of ``case`` (None when the study has no such case)."""
        matches = np.flatnonzero(self.records["case"].astype(str).to_numpy() == str(case))
        return int(matches[0]) if matches.size else None

    def load(
        self,
        position: int,
        *,
        label: int | str | None = None,
        tolerance: GeometryTolerance | None = None,
        key: bytes | None = None,
    ) -> tuple[Volume, np.ndarray]:
        """Read case ``position``: its volume and its region mask on the volume's grid.

        Raises
        ------
        ImageError
            When the volume or the mask cannot be read, or their geometries differ.
        """
        task = _task(self.records.iloc[position], contents=True)
        return _read_case(task, label=label, tolerance=tolerance or GeometryTolerance(), key=key)

    def thumbnail(self, position: int, *, max_side: int = 96) -> np.ndarray:
        """A uint8 thumbnail for galleries and prediction cards: the axial slice through the
        middle of the case's region, scaled between its 1st and 99th percentiles."""
        from skimage.transform import resize

        volume, mask = self.load(position)
        z = int(np.round(np.flatnonzero(mask.any(axis=(1, 2))).mean()))
        plane = volume.array[z].astype(np.float64)
        low, high = np.percentile(plane, [1, 99])
        scaled = np.clip((plane - low) / max(high - low, 1e-9), 0.0, 1.0)
        scale = max_side / max(scaled.shape)
        target = (max(1, round(scaled.shape[0] * scale)), max(1, round(scaled.shape[1] * scale)))
        small = resize(scaled, target, order=1, anti_aliasing=True, preserve_range=True)
        return np.round(np.clip(small, 0.0, 1.0) * 255).astype(np.uint8)


@dataclass(frozen=True)
class _Part:
    """One file (or a DICOM series' files) as a worker reads it: a path in clear or bytes."""

    name: str
    path: str | None = None
    data: bytes | None = None
    series: tuple[_Part, ...] = ()

    def source(self) -> str | bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path


def _file_part(path: Path, name: str, *, contents: bool) -> _Part:
    data = plaintext(path)
    if isinstance(data, bytes):
        return _Part(name=name, data=data)
    if contents:
        return _Part(name=name, data=path.read_bytes())
    return _Part(name=name, path=str(path))


def _part(source: str, name: str, *, contents: bool) -> _Part:
    path = Path(source)
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and _visible(p, path) and _is_dicom(p)
        )
        if not files:
            raise ImageError(
                f"'{name}' is a folder without DICOM files; a case's image is a NIfTI / NRRD "
                "file or a folder holding one DICOM series."
            )
        return _Part(
            name=name,
            series=tuple(
                _file_part(p, f"{name}/{p.relative_to(path).as_posix()}", contents=contents)
                for p in files
            ),
        )
    return _file_part(path, name, contents=contents)


def _is_dicom(path: Path) -> bool:
    lower = path.name.lower()
    if lower.endswith(_DICOM_ENDINGS):
        return True
    if "." in path.name:
        return False
    return dicom.is_dicom(plaintext(path))


@dataclass(frozen=True)
class _Task:
    position: int
    case: str
    image: _Part
    mask: _Part
    mask_label: int | str | None

    @property
    def carried(self) -> int:
        """Bytes this task carries (decrypted or sent contents; 0 for paths)."""
        parts = (self.image, self.mask, *self.image.series)
        return sum(len(p.data) for p in parts if p.data is not None)


_WINDOW_BYTES = 256 * 2**20


def _task(row: pd.Series, *, contents: bool, position: int = 0) -> _Task:
    label = row.get("mask_label")
    mask_label = None if label is None or pd.isna(label) else label
    if isinstance(mask_label, float) and mask_label.is_integer():
        mask_label = int(mask_label)
    return _Task(
        position=position,
        case=str(row["case"]),
        image=_part(str(row["source"]), str(row["image"]), contents=contents),
        mask=_part(str(row["mask_source"]), str(row["mask"]), contents=contents),
        mask_label=mask_label,
    )


def _read_case(
    task: _Task,
    *,
    label: int | str | None,
    tolerance: GeometryTolerance,
    key: bytes | None,
) -> tuple[Volume, np.ndarray]:
    if task.image.series:
        files: list[str | os.PathLike[str] | tuple[str, bytes]] = [
            (p.name, p.data) if p.data is not None else str(p.path) for p in task.image.series
        ]
        volume = read_dicom_series(files, key=key if key is not None else pseudonym_key())
    else:
        volume = read_volume(task.image.source(), name=task.image.name, key=key)
    chosen = task.mask_label if task.mask_label is not None else label
    if task.mask.series:
        raise ImageError(
            f"The mask of case '{task.case}' is a folder; give one mask file (NIfTI / NRRD, a "
            "DICOM SEG or an RTSTRUCT)."
        )
    mask = read_mask(
        task.mask.source(), volume, name=task.mask.name, label=chosen, tolerance=tolerance
    )
    if not mask.any():
        raise ImageError(
            f"The mask of case '{task.case}' marks no voxel"
            + (f" with label {chosen}" if chosen is not None else "")
            + "; check the mask file and the label setting."
        )
    return volume, mask


def _extract_case(task: _Task, *, settings: Mapping[str, Any]) -> tuple[int, Any]:
    """Worker task: the features of one case, or the message saying why it was left out."""
    from medimg_core.imaging.radiomics.extract import extract_radiomics

    s = RadiomicsSettings.from_dict(settings)
    try:
        volume, mask = _read_case(
            task,
            label=s.label,
            tolerance=GeometryTolerance(
                spacing=s.geometry_tolerance,
                origin=s.geometry_tolerance,
                direction=s.geometry_tolerance,
            )
            if s.geometry_tolerance is not None
            else GeometryTolerance(),
            key=None,
        )
        values = extract_radiomics(volume.array, mask, volume.spacing, s)
    except (ImageError, LimitError) as exc:
        return task.position, str(exc)
    return task.position, np.fromiter(values.values(), dtype=np.float64, count=len(values))


def _descend(root: Path, notes: list[str]) -> Path:
    while True:
        entries = [p for p in root.iterdir() if _visible(p, root)]
        dirs = [p for p in entries if p.is_dir()]
        if len(entries) == 1 and len(dirs) == 1:
            notes.append(f"Used the folder '{dirs[0].name}/' that wraps the contents.")
            root = dirs[0]
            continue
        return root


def open_volume_study(
    source: str | os.PathLike[str] | bytes,
    *,
    manifest: str | os.PathLike[str] | bytes | pd.DataFrame | None = None,
    masks: str | os.PathLike[str] | None = None,
    workspace: Path | None = None,
    limits: ImageLimits | None = None,
    min_classes: int = 2,
    name: str | None = None,
    key: bytes | None = None,
) -> VolumeStudy:
    """Open a folder or ZIP of 3D cases as a :class:`VolumeStudy`.

    Parameters
    ----------
    source : a folder, a ``.zip`` path or the bytes of a ZIP. An uploaded ZIP is unpacked into
        the workspace with every file encrypted, as 2D uploads are.
    manifest : a manifest table (path, bytes or DataFrame); default ``manifest.csv`` (or .tsv,
        .xlsx, .parquet) at the top of the study when present, else folders by class.
    masks : masks folder for the folders-by-class layout; default ``masks/`` in the study.
    workspace : where ZIP archives are unpacked; default the medimg workspace.
    limits : caps on archive size and members.
    min_classes : fewest labels required (2 to train, 0 to predict).
    name : display name.
    key : pseudonymisation key for DICOM patient keys; default the workspace key.

    Raises
    ------
    ImageError
        No case with both a volume and a mask; a manifest without the needed columns; fewer
        than ``min_classes`` classes; an unsafe archive.
    LimitError
        An archive beyond ``limits``.
    """
    limits = limits if limits is not None else ImageLimits()
    home = workspace if workspace is not None else workspace_home()
    if isinstance(source, bytes) or (Path(source).is_file() and zipfile.is_zipfile(source)):
        if isinstance(source, bytes):
            digest = hashlib.sha256(source).hexdigest()
            fh: Any = io.BytesIO(source)
            display = name or "uploaded archive"
        else:
            # Hashed in blocks and unpacked from the file: a large archive is never read whole.
            digest = _file_hash(Path(source))
            fh = Path(source)
            display = name or Path(source).name
        key = key if key is not None else pseudonym_key(home)
        fresh = not (home / "uploads" / digest[:16]).exists()
        root, problems = extract_zip(fh, digest, display, home, limits, key)
        try:
            return _open_folder(
                root, manifest, masks, display, digest, min_classes, list(problems), key
            )
        except MedimgError:
            if fresh:
                remove_upload(root, home)
            raise
    path = Path(source).expanduser()
    if not path.is_dir():
        raise ImageError(
            f"'{path}' is neither a folder nor a ZIP archive; give a study folder with a "
            "manifest.csv or one sub-folder per class."
        )
    return _open_folder(
        path,
        manifest,
        masks,
        name or path.name,
        _listing_hash(path),
        min_classes,
        [],
        key if key is not None else pseudonym_key(home),
    )


def _open_folder(
    root: Path,
    manifest: str | os.PathLike[str] | bytes | pd.DataFrame | None,
    masks: str | os.PathLike[str] | None,
    display: str,
    digest: str,
    min_classes: int,
    problems: list[ImageProblem],
    key: bytes,
) -> VolumeStudy:
    notes: list[str] = []
    root = _descend(root, notes)
    manifest_file = next((root / n for n in MANIFEST_FILES if (root / n).is_file()), None)
    table = manifest if manifest is not None else manifest_file
    if table is not None:
        layout = "manifest"
        records, extra = _from_manifest(root, table, display, problems)
        notes.insert(
            0,
            f"Cases read from the manifest '{manifest_file.name}'."
            if manifest is None and manifest_file is not None
            else "Cases read from the given manifest.",
        )
    else:
        extra = ()
        layout, records = _from_class_folders(root, masks, display, problems, notes)
    if not len(records):
        shown = "; ".join(str(p) for p in problems[:5]) or "no NIfTI, NRRD or DICOM series"
        raise ImageError(
            f"No case with both an image and a mask in '{display}' ({shown}); give each case's "
            "volume and its segmentation (see the manifest or the masks/ folder layout)."
        )
    if any(records["source"].map(lambda s: Path(str(s)).is_dir())):
        _dicom_patient_keys(records, key, notes)
    if "label" in records.columns:
        records["label"] = records["label"].map(lambda v: v if pd.isna(v) else str(v))
    counts = (
        {str(k): int(v) for k, v in sorted(records["label"].dropna().value_counts().items())}
        if "label" in records.columns
        else {}
    )
    if len(counts) < min_classes:
        if not counts:
            raise ImageError(
                f"'{display}' has no labels; add a 'label' column to the manifest or put each "
                "class's cases in its own sub-folder."
            )
        only = ", ".join(f"'{k}' ({v} cases)" for k, v in counts.items())
        raise ImageError(
            f"'{display}' has only one class, {only}; a classifier needs at least "
            f"{min_classes} classes."
        )
    if problems:
        notes.append(
            f"{len(problems)} file(s) or case(s) were left out (see problems): "
            + "; ".join(p.file for p in problems[:10])
            + ("; …" if len(problems) > 10 else "")
        )
    ordered = [c for c in _RESERVED if c in records.columns]
    records = records[ordered + [c for c in extra if c in records.columns]]
    return VolumeStudy(
        name=display,
        layout=layout,
        records=records.reset_index(drop=True),
        root=root,
        notes=tuple(notes),
        problems=tuple(problems),
        class_counts=counts,
        extra_columns=tuple(extra),
        content_hash=digest,
    )


def _missing(value: Any) -> bool:
    """An empty manifest cell: None, NaN, or blank text."""
    if value is None or (isinstance(value, float) and value != value):
        return True
    try:
        return bool(pd.isna(value)) or not str(value).strip()
    except (TypeError, ValueError):
        return False


def _inside(root: Path, rel: str) -> Path | None:
    """``rel`` resolved inside ``root`` (None when it would leave the study)."""
    text = str(rel).strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    if not text or "\x00" in text or text.startswith("/") or ".." in PurePosixPath(text).parts:
        return None
    try:
        path = (root / text).resolve()
        path.relative_to(root.resolve())
        return path if path.exists() else None
    except (OSError, ValueError):
        # Outside the study, or a name the file system cannot hold.
        return None


def _from_manifest(
    root: Path,
    table: str | os.PathLike[str] | bytes | pd.DataFrame,
    display: str,
    problems: list[ImageProblem],
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    if isinstance(table, pd.DataFrame):
        frame, table_name = table.copy(), "manifest"
    elif isinstance(table, bytes):
        loaded = load_table(table)
        frame, table_name = loaded.frame, loaded.name
    else:
        loaded = load_table(plaintext(table), name=Path(table).name)
        frame, table_name = loaded.frame, loaded.name
    by_lower = {str(c).strip().lower(): c for c in frame.columns}
    needed = [c for c in ("case", "image", "mask") if c not in by_lower]
    if needed:
        raise ImageError(
            f"The manifest '{table_name}' lacks the column(s) {needed} (columns: "
            f"{[str(c) for c in frame.columns][:12]}); it needs case, image and mask (paths "
            "inside the study), and label for training."
        )
    frame = frame.rename(
        columns={
            by_lower[c]: c
            for c in ("case", "image", "mask", "label", "patient_id", "mask_label")
            if c in by_lower
        }
    )
    clash = [c for c in frame.columns if c in ("source", "mask_source")]
    if clash:
        raise ImageError(
            f"The manifest '{table_name}' has column(s) {clash} that medimg fills itself; "
            "rename them."
        )
    cases = frame["case"].map(lambda v: "" if _missing(v) else str(v).strip())
    unnamed = int((cases == "").sum())
    if unnamed:
        raise ImageError(
            f"The manifest '{table_name}' has {unnamed} row(s) without a case name; give every "
            "row a case name (it names the case in results, never a patient)."
        )
    frame = frame.assign(case=cases)
    duplicated = sorted(set(cases[cases.duplicated()]))
    if duplicated:
        raise ImageError(
            f"The manifest '{table_name}' names case(s) {duplicated[:5]} more than once; keep "
            "one row per case (several lesions of one patient: give them distinct case names "
            "and the same patient_id)."
        )
    extra = tuple(
        str(c)
        for c in frame.columns
        if c not in ("case", "image", "mask", "label", "patient_id", "mask_label")
    )
    rows: list[dict[str, Any]] = []
    for _, row in frame.iterrows():
        case = str(row["case"])
        image = None if _missing(row["image"]) else _inside(root, str(row["image"]))
        mask = None if _missing(row["mask"]) else _inside(root, str(row["mask"]))
        if image is None or mask is None:
            which = "image" if image is None else "mask"
            problems.append(
                ImageProblem(
                    case,
                    f"its {which} '{row[which]}' is not in the study (paths are relative to "
                    "the manifest's folder)",
                )
            )
            continue
        out: dict[str, Any] = {
            "case": case,
            "image": str(row["image"]).strip(),
            "mask": str(row["mask"]).strip(),
            "source": str(image),
            "mask_source": str(mask),
        }
        for col in ("label", "patient_id", "mask_label", *extra):
            if col in frame.columns:
                out[col] = row[col]
        rows.append(out)
    return pd.DataFrame(rows), extra


def _case_items(folder: Path) -> list[Path]:
    """The cases under a class folder: volume files, and leaf folders of DICOM files."""
    items: list[Path] = []
    for path in sorted(folder.rglob("*")):
        if not _visible(path, folder):
            continue
        if (path.is_file() and is_volume_name(path.name)) or (
            path.is_dir()
            and not any(p.is_dir() for p in path.iterdir())
            and any(p.is_file() and _is_dicom(p) for p in path.iterdir())
        ):
            items.append(path)
    return items


def _from_class_folders(
    root: Path,
    masks: str | os.PathLike[str] | None,
    display: str,
    problems: list[ImageProblem],
    notes: list[str],
) -> tuple[str, pd.DataFrame]:
    mask_dir = Path(masks).expanduser() if masks is not None else root / "masks"
    if masks is not None and not mask_dir.is_dir():
        raise ImageError(f"The masks folder '{mask_dir}' does not exist; give an existing folder.")
    if not mask_dir.is_dir():
        raise ImageError(
            f"'{display}' has no masks/ folder and no manifest; radiomic features need each "
            "case's segmentation: put it under masks/ at the case's path (masks/<class>/"
            "<case>.nii.gz), or give a manifest.csv with columns case, image, mask, label."
        )
    by_stem: dict[str, Path] = {}
    for path in sorted(mask_dir.rglob("*")):
        if path.is_file() and path.name.lower().endswith(_MASK_ENDINGS):
            rel = path.relative_to(mask_dir).as_posix()
            by_stem.setdefault(_stem(rel), path)
    classes = sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and _visible(p, root) and p.resolve() != mask_dir.resolve()
    )
    rows: list[dict[str, Any]] = []
    layout = "class-folders"
    loose = [p for p in root.iterdir() if p.is_file() and is_volume_name(p.name)]
    if not classes and loose:
        layout = "unlabelled"
        groups: list[tuple[str | None, list[Path]]] = [(None, sorted(loose))]
        notes.append("No class sub-folders and no manifest: the cases have no labels.")
    else:
        groups = [(c.name, _case_items(c)) for c in classes]
        for name, items in groups:
            if not items:
                problems.append(
                    ImageProblem(f"{name}/", "holds no NIfTI / NRRD volume or DICOM series")
                )
        notes.insert(0, f"One sub-folder per class: {', '.join(n for n, i in groups if n and i)}.")
    for label, items in groups:
        for item in items:
            rel = item.relative_to(root).as_posix()
            mask = by_stem.get(_stem(rel))
            if mask is None:
                problems.append(ImageProblem(rel, f"no mask at {mask_dir.name}/{_stem(rel)}.*"))
                continue
            row: dict[str, Any] = {
                "case": _stem(rel),
                "image": rel,
                "mask": f"{mask_dir.name}/{mask.relative_to(mask_dir).as_posix()}",
                "source": str(item.resolve()),
                "mask_source": str(mask.resolve()),
            }
            if label is not None:
                row["label"] = label
            rows.append(row)
    # A case is named by its file name, or by its path inside the study where names repeat.
    names = [PurePosixPath(str(r["case"])).name for r in rows]
    if len(set(names)) == len(names):
        for row, short in zip(rows, names, strict=True):
            row["case"] = short
    notes.append(f"Masks from '{mask_dir.name}/' matched to {len(rows)} case(s) by their path.")
    return layout, pd.DataFrame(rows)


def _dicom_patient_keys(records: pd.DataFrame, key: bytes, notes: list[str]) -> None:
    """The keyed pseudonym of each DICOM series' PatientID (first file), as ``patient_id``."""
    found: list[str | None] = []
    for source in records["source"]:
        path = Path(str(source))
        first = next((p for p in sorted(path.rglob("*")) if p.is_file() and _is_dicom(p)), None)
        if not path.is_dir() or first is None:
            found.append(None)
            continue
        try:
            header = dicom.read_dicom_header(plaintext(first), key=key, name=first.name)
        except ImageError:
            found.append(None)
            continue
        found.append(header.patient_key)
    if "patient_id" not in records.columns and any(f is not None for f in found):
        records["patient_id"] = found
    notes.append(
        "DICOM headers were de-identified on reading (PS3.15 Basic Profile); only a keyed "
        "pseudonymous patient key is kept, in 'patient_id'."
    )


def extract_volume_features(
    study: VolumeStudy,
    settings: RadiomicsSettings | Mapping[str, Any] | None = None,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> FeatureTable:
    """The IBSI radiomic features of every case of ``study``, one row per case.

    Each case is one task (:func:`medimg_core.compute.current`): in this process, a local pool
    or the Dask cluster in force. Files in clear travel as paths; encrypted uploads are
    decrypted here and sent as bytes, in windows of about 256 MiB (a large study is never held
    decrypted at once), so workers never need the key. A case whose volume or
    mask cannot be read (or whose geometries differ) is left out and reported.

    Parameters
    ----------
    study : from :func:`open_volume_study`.
    settings : radiomics settings (PyRadiomics-layout YAML read with
        :meth:`RadiomicsSettings.from_yaml`), or a model card's saved settings; default
        :class:`RadiomicsSettings` defaults.
    workers : local processes; default all available cores; 1 runs here.
    progress : ``progress(fraction, message)``.
    cancelled : polled between cases.

    Returns
    -------
    FeatureTable
        ``case``, ``patient_id``, ``label``, clinical columns, then the features; ``settings``
        is the radiomics settings' dict (``kind: radiomics``) for the model card.

    Raises
    ------
    ImageError
        When no case could be read.
    """
    from medimg_core.imaging.radiomics.extract import feature_columns

    if settings is None:
        s = RadiomicsSettings()
    elif isinstance(settings, RadiomicsSettings):
        s = settings
    else:
        s = RadiomicsSettings.from_dict(settings)
    n_workers = compute.default_workers() if workers is None else int(workers)
    if n_workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}; use 1 to run inline.")
    engine = compute.current()
    payload = s.to_dict()
    names = feature_columns(s)
    n = len(study.records)
    results: dict[int, np.ndarray] = {}
    failures: dict[int, str] = {}

    def collect(_: int, outcome: tuple[int, Any]) -> None:
        position, value = outcome
        if isinstance(value, str):
            failures[position] = value
        else:
            results[position] = value
        # Progress starts with the first case read: a study none of whose cases can be read
        # then ends in its one error line.
        if progress is not None and results:
            done = len(results) + len(failures)
            progress(done / max(n, 1), f"Computed radiomic features of {done} of {n} cases")

    # Encrypted uploads are decrypted here and travel as bytes: cases go out in windows of at
    # most about 256 MiB, so a large study never sits decrypted in memory at once.
    def run(window: list[_Task]) -> None:
        engine.map(
            _extract_case,
            window,
            shared={"settings": payload},
            workers=n_workers,
            cancelled=cancelled,
            name="radiomics",
            on_result=collect,
        )

    window: list[_Task] = []
    carried = 0
    for i, (_, row) in enumerate(study.records.iterrows()):
        try:
            task = _task(row, contents=engine.distributed, position=i)
        except ImageError as exc:
            failures[i] = str(exc)
            continue
        window.append(task)
        carried += task.carried
        if carried >= _WINDOW_BYTES:
            run(window)
            window, carried = [], 0
    if window:
        run(window)
    if not results:
        shown = "; ".join(failures[i].rstrip(".") for i in sorted(failures)[:3])
        more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
        raise ImageError(f"No case of '{study.name}' could be read: {shown}{more}.")
    kept = sorted(results)
    features = pd.DataFrame(np.vstack([results[i] for i in kept]), columns=list(names))
    base_cols = [c for c in ("case", "patient_id", "label") if c in study.records.columns]
    base = study.records.iloc[kept][base_cols + list(study.extra_columns)]
    frame = pd.concat([base.reset_index(drop=True), features], axis=1)
    left_out = tuple(
        ImageProblem(str(study.records["case"].iloc[i]), failures[i]) for i in sorted(failures)
    )
    notes = [s.describe()]
    if engine.distributed:
        notes.append(f"Radiomic features were computed on {engine.describe()}.")
    if left_out:
        notes.append(
            f"{len(left_out)} case(s) could not be read and were left out: "
            + ", ".join(p.file for p in left_out[:10])
            + (", …" if len(left_out) > 10 else "")
        )
    return FeatureTable(
        frame=frame,
        feature_names=names,
        settings=payload,
        notes=(*study.notes, *notes),
        problems=(*study.problems, *left_out),
    )
