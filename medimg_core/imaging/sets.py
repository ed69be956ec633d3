"""Image sets: folders, ZIP archives and MedMNIST ``.npz`` files, read safely and streamed.

An :class:`ImageSet` is a table of records (one row per image: ``file``, ``label``,
``patient_id``, ``split``, ``source`` ...) plus notes and problems; pixels are loaded one image
at a time by :meth:`ImageSet.load` / :meth:`ImageSet.iter_images`, never all at once (only an
``.npz`` set keeps its arrays in memory, as NumPy already loaded them).

Layouts, detected in this order:

* ``.npz`` in the MedMNIST layout (``train_images``, ``train_labels``, ``val_…``, ``test_…``):
  the splits are kept in a ``split`` column ("train", "val", "test"); read by
  :mod:`medimg_core.imaging.npz`.
* a labels table (the ``labels`` argument, or ``labels.csv`` / ``.tsv`` / ``.xlsx`` /
  ``.parquet`` at the top of the folder) with a ``file`` column, optionally ``label``,
  ``patient_id`` and any clinical columns, which are kept and later joined to the features.
* one sub-folder per class (``normal/``, ``pneumonia/``; deeper folders are allowed).
* a flat folder of images without labels (for prediction, ``min_classes=0``).

A ZIP archive is first unpacked inside the workspace by :mod:`medimg_core.imaging.archives`, then
read as a folder; each image is decoded by :mod:`medimg_core.imaging.pixels`.

Unreadable files do not stop the set: they are listed in :attr:`ImageSet.problems` (file and
reason) and left out; the set is refused only when no image is readable.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from medimg_core.access import Action, Actor, require
from medimg_core.errors import ImageError, LimitError, MedimgError
from medimg_core.imaging import dicom
from medimg_core.imaging.archives import LABEL_FILES, SKIP_NAMES, extract_zip, remove_upload
from medimg_core.imaging.npz import MedmnistDataset, is_npz, read_npz
from medimg_core.imaging.pixels import (
    GRAY_MODES,
    IMAGE_SUFFIXES,
    LUMA_NOTE,
    ImageLimits,
    ImageProblem,
    ImageSource,
    LoadedImage,
    check_format,
    check_pixels,
    load_mask,
    load_task_image,
    open_pil,
    parse_size,
    resize_image,
    resize_mask,
)
from medimg_core.imaging.roots import inside_roots, resolve_image_folder
from medimg_core.imaging.stored import plaintext, readable
from medimg_core.privacy import pseudonym_key
from medimg_core.tables.loading import load_table
from medimg_core.workspace import workspace_home

__all__ = ["RESERVED_COLUMNS", "ImageSet", "open_image_set", "open_server_folder"]

RESERVED_COLUMNS: tuple[str, ...] = (
    "file",
    "label",
    "patient_id",
    "split",
    "source",
    "mask",
    "height",
    "width",
    "format",
)
"""Record columns medimg fills itself; a labels table may provide only file, label, patient_id."""

_LABEL_FILES = LABEL_FILES


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A set of images with their labels, read lazily.

    Attributes
    ----------
    name : display name (folder, archive or file name).
    layout : "npz", "labels-table", "class-folders" or "unlabelled".
    records : one row per usable image: ``file`` (path relative to the set, or
        ``<split>_<index>`` for npz), ``label`` (when known), ``patient_id`` (labels table, or
        the keyed pseudonym of a DICOM PatientID), ``split`` (npz), ``source`` (absolute path,
        or ``npz:<split>:<index>``), ``mask`` (path, when masks were given), ``height``,
        ``width``, ``format``, then the labels table's other columns.
    root : folder the paths live in (None for npz).
    notes : what medimg did (layout, conversions, what was left out), for the user.
    problems : files left out, with the reason.
    missing_files : labels-table rows that name a file that is not in the set.
    unlabelled_files : images that the labels table does not name (left out).
    class_counts : images per label.
    extra_columns : the labels table's clinical columns, joined to the features.
    content_hash : sha256 of the archive / npz bytes, or of the folder listing.
    dataset : the MedMNIST set an ``.npz`` was recognised as, with its published label names
        and the positive class it offers (None otherwise).
    """

    name: str
    layout: str
    records: pd.DataFrame
    root: Path | None
    notes: tuple[str, ...]
    problems: tuple[ImageProblem, ...]
    missing_files: tuple[str, ...]
    unlabelled_files: tuple[str, ...]
    class_counts: dict[str, int]
    extra_columns: tuple[str, ...]
    content_hash: str
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    dataset: MedmnistDataset | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def has_labels(self) -> bool:
        return "label" in self.records.columns and bool(self.records["label"].notna().any())

    @property
    def has_masks(self) -> bool:
        return "mask" in self.records.columns and bool(self.records["mask"].notna().any())

    @property
    def sizes(self) -> dict[tuple[int, int], int]:
        """Image sizes (height, width) and how many images have each, most common first."""
        pairs = zip(self.records["height"], self.records["width"], strict=True)
        counts = Counter((int(h), int(w)) for h, w in pairs)
        return dict(counts.most_common())

    @property
    def common_size(self) -> tuple[int, int]:
        """The most common (height, width); ties go to the larger image."""
        counts = self.sizes
        best = max(counts.values())
        return max(s for s, n in counts.items() if n == best)

    def task(self, position: int) -> tuple[Any, str | None, str, int | None]:
        """What a worker needs to load image ``position``: (path or array, mask path, name, frame)."""
        return self.tasks(range(position, position + 1))[0]

    def tasks(
        self, positions: Iterable[int] | None = None
    ) -> list[tuple[Any, str | None, str, int | None]]:
        """:meth:`task` for many positions (default all), reading the records once."""
        index = list(range(len(self.records))) if positions is None else list(positions)
        # Only the rows asked for: converting whole columns on every call made cutting a set
        # into tasks cost tasks × images (22 s before the workers start at 100,000 images).
        sources = self.records["source"].array.take(index)
        files = self.records["file"].array.take(index)
        masks = (
            self.records["mask"].array.take(index)
            if "mask" in self.records.columns
            else [None] * len(index)
        )
        out: list[tuple[Any, str | None, str, int | None]] = []
        for source, name, mask in zip(sources, files, masks, strict=True):
            mask_path = None if mask is None or pd.isna(mask) else str(mask)
            text = str(source)
            if text.startswith("npz:"):
                _, split, number = text.split(":")
                out.append((self.arrays[split][int(number)], mask_path, str(name), None))
            else:
                out.append((text, mask_path, str(name), None))
        return out

    def load(self, position: int, *, size: int | tuple[int, int] | None = None) -> LoadedImage:
        """Decode image ``position`` (row of :attr:`records`), optionally resized to ``size``.

        Raises
        ------
        ImageError
            When the file cannot be decoded.
        """
        source, _, name, frame = self.task(position)
        img = load_task_image(source, name=name, frame=frame)
        if size is None:
            return img
        target = parse_size(size)
        return replace(img, pixels=resize_image(img.pixels, target))

    def load_mask(
        self, position: int, *, size: int | tuple[int, int] | None = None
    ) -> np.ndarray | None:
        """The mask of image ``position`` (None when it has none), optionally resized."""
        _, mask_path, name, _ = self.task(position)
        if mask_path is None:
            return None
        mask = load_mask(mask_path, name=f"mask of {name}")
        return mask if size is None else resize_mask(mask, parse_size(size))

    def iter_images(
        self, *, size: int | tuple[int, int] | None = None
    ) -> Iterator[tuple[int, LoadedImage | ImageProblem]]:
        """Stream ``(position, image)`` one at a time; an unreadable file yields its problem."""
        for position in range(len(self.records)):
            try:
                yield position, self.load(position, size=size)
            except (ImageError, LimitError) as exc:
                yield position, ImageProblem(str(self.records["file"].iloc[position]), str(exc))

    def thumbnail(self, position: int, *, max_side: int = 96) -> np.ndarray:
        """A uint8 thumbnail (longest side ``max_side``) for galleries."""
        img = self.load(position).pixels
        scale = max_side / max(img.shape)
        target = (max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale)))
        return np.round(resize_image(img, target) * 255).astype(np.uint8)


def open_image_set(
    source: ImageSource,
    *,
    labels: str | os.PathLike[str] | bytes | pd.DataFrame | None = None,
    masks: str | os.PathLike[str] | None = None,
    workspace: Path | None = None,
    limits: ImageLimits | None = None,
    min_classes: int = 2,
    name: str | None = None,
    key: bytes | None = None,
) -> ImageSet:
    """Open a folder, ZIP archive or MedMNIST ``.npz`` as an :class:`ImageSet`.

    Parameters
    ----------
    source : a folder path, a ``.zip`` or ``.npz`` path, or the bytes of a ZIP or npz.
    labels : a labels table (path, bytes or DataFrame) with a ``file`` column and optionally
        ``label``, ``patient_id`` and clinical columns; default ``labels.csv`` (or .tsv, .xlsx,
        .parquet) at the top of the folder when present.
    masks : folder of region-of-interest masks with the images' file names; default a
        ``masks/`` folder at the top of the set when present.
    workspace : where ZIP archives are extracted (``<workspace>/uploads/<hash>/``); default
        :func:`medimg_core.workspace.workspace_home`.
    limits : caps on archive size, compression ratio, member count and image pixels.
    min_classes : fewest labels required (2 for training; 0 to open unlabelled images for
        prediction).
    name : display name.
    key : pseudonymisation key for DICOM patient keys; default
        :func:`medimg_core.privacy.pseudonym_key` of the workspace.

    Returns
    -------
    ImageSet

    Raises
    ------
    ImageError
        No readable image; an unsafe archive member; a labels table without ``file``; a class
        folder without images; fewer than ``min_classes`` classes; a malformed npz.
    LimitError
        The archive's unpacked size or a member's compression ratio exceeds ``limits``.
    """
    limits = limits if limits is not None else ImageLimits()
    if isinstance(source, bytes):
        digest = hashlib.sha256(source).hexdigest()
        display = name or "uploaded archive"
        if not zipfile.is_zipfile(io.BytesIO(source)):
            raise ImageError(
                f"'{display}' is neither a ZIP archive nor a NumPy .npz file; upload a ZIP with "
                "one sub-folder per class (or images plus labels.csv), or a MedMNIST .npz."
            )
        if is_npz(io.BytesIO(source)):
            return _open_npz(io.BytesIO(source), display, digest, min_classes, limits)
        home = _workspace(workspace)
        key = key if key is not None else _key(home)
        return _open_archive(
            io.BytesIO(source), labels, masks, display, digest, home, limits, min_classes, key
        )
    path = Path(source)
    display = name or path.name
    if path.is_dir():
        key = key if key is not None else _key(workspace)
        return _open_folder(
            path, labels, masks, display, _listing_hash(path), limits, min_classes, key, []
        )
    if not path.exists():
        raise ImageError(
            f"'{path}' does not exist; give a folder of images, a .zip or a MedMNIST .npz."
        )
    if not zipfile.is_zipfile(path):
        raise ImageError(
            f"'{display}' is neither a folder, a ZIP archive nor a NumPy .npz file; give a "
            "folder with one sub-folder per class, a .zip of it, or a MedMNIST .npz."
        )
    digest = _file_hash(path)
    if path.suffix.lower() == ".npz" or is_npz(path):
        return _open_npz(path, display, digest, min_classes, limits)
    home = _workspace(workspace)
    key = key if key is not None else _key(home)
    return _open_archive(path, labels, masks, display, digest, home, limits, min_classes, key)


def _open_archive(
    fh: Any,
    labels: str | os.PathLike[str] | bytes | pd.DataFrame | None,
    masks: str | os.PathLike[str] | None,
    display: str,
    digest: str,
    home: Path,
    limits: ImageLimits,
    min_classes: int,
    key: bytes,
) -> ImageSet:
    """Unpack a ZIP and open it; what this call unpacked is removed again when the set is
    refused, so that a refused upload leaves nothing in the workspace."""
    fresh = not (home / "uploads" / digest[:16]).exists()
    root, problems = extract_zip(fh, digest, display, home, limits, key)
    try:
        return _open_folder(
            root, labels, masks, display, digest, limits, min_classes, key, problems
        )
    except MedimgError:
        if fresh:
            remove_upload(root, home)
        raise


def open_server_folder(
    path: str | os.PathLike[str],
    *,
    actor: Actor,
    roots: Sequence[Path],
    limits: ImageLimits | None = None,
    min_classes: int = 2,
    key: bytes | None = None,
) -> ImageSet:
    """Open a folder on the server as an image set, only inside the configured image roots.

    Parameters
    ----------
    path : the folder, absolute or relative to an image root.
    actor : who asks; only analysts and admins may open server folders
        (:attr:`~medimg_core.access.Action.OPEN_IMAGE_FOLDER`), checked before the file system
        is touched.
    roots : the folders an administrator allowed, normally
        :func:`medimg_core.imaging.roots.image_roots`.
    limits, min_classes, key : as for :func:`open_image_set`.

    Returns
    -------
    ImageSet
        Read as :func:`open_image_set` reads a folder, except that files, a labels table or
        masks that are links pointing outside the roots are left out (counted in the notes,
        never named).

    Raises
    ------
    PermissionDenied
        When ``actor`` is a viewer (or not a member of a project): nothing is read.
    ImageError
        No root is configured, or the folder (with ``..`` and links resolved) is not inside a
        root; the message says nothing about folders outside the roots. Otherwise as
        :func:`open_image_set`.
    """
    # Before any path is resolved: a refused user learns nothing about the server's folders.
    require(actor, Action.OPEN_IMAGE_FOLDER)
    allowed = tuple(Path(r).resolve() for r in roots)
    folder = resolve_image_folder(path, allowed)
    key = key if key is not None else _key(None)
    return _open_folder(
        folder,
        None,
        None,
        folder.name,
        _listing_hash(folder),
        limits if limits is not None else ImageLimits(),
        min_classes,
        key,
        [],
        confine=allowed,
    )


def _workspace(workspace: Path | None) -> Path:
    if workspace is not None:
        return Path(workspace)
    return workspace_home()


def _key(home: Path | None) -> bytes:
    return pseudonym_key(home) if home is not None else pseudonym_key()


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _listing_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0".encode())
            digest.update(f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _open_npz(
    fh: Any, display: str, digest: str, min_classes: int, limits: ImageLimits
) -> ImageSet:
    contents = read_npz(fh, display, limits=limits)
    class_counts = _class_counts(contents.records)
    _check_classes(class_counts, min_classes, display)
    return ImageSet(
        name=display,
        layout="npz",
        records=contents.records,
        root=None,
        notes=contents.notes,
        problems=(),
        missing_files=(),
        unlabelled_files=(),
        class_counts=class_counts,
        extra_columns=(),
        content_hash=digest,
        arrays=contents.arrays,
        dataset=contents.dataset,
    )


def _visible(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return not any(p in SKIP_NAMES or p.startswith(".") for p in parts)


def _descend(root: Path, notes: list[str]) -> Path:
    # A ZIP made by compressing a folder wraps everything in that folder: look inside it.
    while True:
        entries = [p for p in root.iterdir() if _visible(p, root)]
        dirs = [p for p in entries if p.is_dir()]
        # A lone folder of images is a single class, not a wrapper: descend only when the folder
        # holds sub-folders or a labels table.
        inner = dirs[0] if len(entries) == 1 and len(dirs) == 1 else None
        if inner is not None and any(
            (p.is_dir() or p.name in _LABEL_FILES) and _visible(p, inner) for p in inner.iterdir()
        ):
            notes.append(f"Used the folder '{inner.name}/' that wraps the contents.")
            root = inner
            continue
        return root


def _open_folder(
    root: Path,
    labels: str | os.PathLike[str] | bytes | pd.DataFrame | None,
    masks: str | os.PathLike[str] | None,
    display: str,
    digest: str,
    limits: ImageLimits,
    min_classes: int,
    key: bytes,
    problems: list[ImageProblem],
    *,
    confine: Sequence[Path] | None = None,
) -> ImageSet:
    notes: list[str] = []
    root = _descend(root, notes)
    mask_dir = Path(masks) if masks is not None else root / "masks"
    if masks is not None and not mask_dir.is_dir():
        raise ImageError(f"The masks folder '{mask_dir}' does not exist; give an existing folder.")
    use_masks = mask_dir.is_dir() and (confine is None or _confined(mask_dir, confine))
    label_file = None
    if labels is None:
        label_file = next(
            (
                root / n
                for n in _LABEL_FILES
                if (root / n).is_file() and (confine is None or _confined(root / n, confine))
            ),
            None,
        )
    files: list[Path] = []
    outside = 0
    for path in sorted(root.rglob("*")):
        if not path.is_file() or not _visible(path, root):
            continue
        if confine is not None and not _confined(path, confine):
            # A link out of the image folders: left out unread, and unnamed, because its name
            # would tell the user something about a folder they may not open.
            outside += 1
            continue
        if path == label_file or (use_masks and path.is_relative_to(mask_dir)):
            continue
        files.append(path)
        if len(files) > limits.max_members:
            raise LimitError(
                f"'{display}' holds more than {limits.max_members:,} files; split it or raise "
                "ImageLimits.max_members."
            )
    rows: list[dict[str, Any]] = []
    formats: set[str] = set()
    n_colour = 0
    for path in files:
        rel = path.relative_to(root).as_posix()
        row = _probe(path, rel, key, limits, problems)
        if row is not None:
            formats.add(row["format"])
            n_colour += bool(row.pop("colour", False))
            rows.append(row)
    if outside:
        notes.append(
            f"{outside} file(s) that link to places outside the image folders configured for "
            "this server were left out unread."
        )
    if not rows:
        shown = "; ".join(str(p) for p in problems[:5]) or "no PNG, JPEG, TIFF or DICOM files"
        raise ImageError(
            f"No readable image in '{display}' ({shown}); add PNG, JPEG, TIFF or DICOM images, "
            "one sub-folder per class."
        )
    table_source = labels if labels is not None else label_file
    if table_source is not None:
        layout = "labels-table"
        rows, extra, missing, unlabelled = _join_labels(rows, table_source, display, notes)
        if not rows:
            raise ImageError(
                f"None of the files named in the labels table was found in '{display}' (for "
                f"example {list(missing[:3])}); the 'file' column must hold each image's name or "
                "its path inside the set."
            )
        if label_file is not None:
            notes.insert(0, f"Labels read from '{label_file.name}'.")
    else:
        extra, missing, unlabelled = (), (), ()
        layout, rows = _class_folders(root, rows, problems, notes, min_classes, confine)
    records = pd.DataFrame(rows)
    if "patient_id" in records.columns and records["patient_id"].isna().all():
        records = records.drop(columns="patient_id")
    if use_masks:
        _attach_masks(records, root, mask_dir, notes, confine)
    if "dicom" in formats:
        notes.append(
            "DICOM headers were de-identified on reading (PS3.15 Basic Profile); only a keyed "
            "pseudonymous patient key is kept, in 'patient_id'."
        )
    if {"png", "jpeg", "tiff"} & formats:
        notes.append(
            "PNG / JPEG / TIFF values are scaled by their bit depth (8-bit / 255, 16-bit / "
            "65535), the same for every image."
        )
    if n_colour:
        notes.append(f"{n_colour} image(s): {LUMA_NOTE}")
    sizes = Counter(zip(records["height"], records["width"], strict=True))
    if len(sizes) > 1:
        (h, w), n = sizes.most_common(1)[0]
        notes.append(
            f"Images come in {len(sizes)} sizes; features are computed after a plain resize to "
            f"one size (default the most common, {h}×{w}, shared by {n} of {len(records)}); "
            "nothing is cropped, so the aspect ratio of the others may change."
        )
    if problems:
        notes.append(
            f"{len(problems)} file(s) were left out (see problems): "
            + "; ".join(p.file for p in problems[:10])
            + ("; …" if len(problems) > 10 else "")
        )
    class_counts = _class_counts(records)
    _check_classes(class_counts, min_classes, display)
    ordered = [c for c in RESERVED_COLUMNS if c in records.columns]
    records = records[ordered + [c for c in extra if c in records.columns]]
    return ImageSet(
        name=display,
        layout=layout,
        records=records.reset_index(drop=True),
        root=root,
        notes=tuple(notes),
        problems=tuple(problems),
        missing_files=tuple(missing),
        unlabelled_files=tuple(unlabelled),
        class_counts=class_counts,
        extra_columns=tuple(extra),
        content_hash=digest,
    )


def _probe(
    path: Path, rel: str, key: bytes, limits: ImageLimits, problems: list[ImageProblem]
) -> dict[str, Any] | None:
    """Header-level check of one file: size, format, DICOM patient key. Decoding comes later."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES and not (suffix == "" and dicom.is_dicom(path)):
        problems.append(
            ImageProblem(rel, "not an image (medimg reads PNG, JPEG, TIFF and DICOM files)")
        )
        return None
    row: dict[str, Any] = {"file": rel, "source": str(path.resolve())}
    try:
        if dicom.is_dicom(path):
            header = dicom.read_dicom_header(path, key=key, name=rel)
            if not header.has_pixels:
                raise ImageError(
                    f"'{rel}' is a DICOM file without pixel data (for example a DICOMDIR or a "
                    "report); remove it from the image set."
                )
            if header.burned_in_annotation:
                raise ImageError(
                    f"'{rel}' declares text burned into its pixels (BurnedInAnnotation = YES), "
                    "which medimg cannot remove; clean the pixels first or leave the file out."
                )
            check_pixels(header.columns, header.rows, rel, limits)
            row.update(
                height=header.rows,
                width=header.columns,
                format="dicom",
                patient_id=header.patient_key,
            )
            return row
        with open_pil(readable(path)) as im:
            fmt = check_format(im, rel, limits)
            width, height = im.size
            colour = im.mode not in GRAY_MODES
            im.verify()
        row.update(height=int(height), width=int(width), format=fmt, colour=colour)
        return row
    except (ImageError, LimitError) as exc:
        problems.append(ImageProblem(rel, str(exc)))
    except UnidentifiedImageError:
        problems.append(ImageProblem(rel, "not an image medimg can read (unknown or corrupt data)"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        problems.append(ImageProblem(rel, f"corrupt or truncated image ({exc})"))
    return None


def _class_folders(
    root: Path,
    rows: list[dict[str, Any]],
    problems: list[ImageProblem],
    notes: list[str],
    min_classes: int,
    confine: Sequence[Path] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    subdirs = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir()
        and _visible(p, root)
        and p.name.lower() != "masks"
        and (confine is None or _confined(p, confine))
    )
    if not subdirs:
        notes.append("No class sub-folders and no labels table: the images have no labels.")
        return "unlabelled", rows
    kept = []
    for row in rows:
        parts = PurePosixPath(row["file"]).parts
        if len(parts) == 1:
            problems.append(
                ImageProblem(row["file"], "not inside a class folder; move it into its class")
            )
            continue
        kept.append({**row, "label": parts[0]})
    present = {row["label"] for row in kept}
    empty = [d for d in subdirs if d not in present]
    if empty and min_classes > 0:
        raise ImageError(
            f"The class folder(s) {[d + '/' for d in empty]} hold no readable image; add their "
            "images (PNG, JPEG, TIFF or DICOM) or remove the folder(s)."
        )
    notes.insert(0, f"One sub-folder per class: {', '.join(sorted(present))}.")
    return "class-folders", kept


def _read_labels(
    table: str | os.PathLike[str] | bytes | pd.DataFrame, display: str
) -> tuple[pd.DataFrame, str]:
    if isinstance(table, pd.DataFrame):
        return table.copy(), "labels table"
    if not isinstance(table, bytes):
        # A labels table unpacked from an upload is stored encrypted: read it in memory.
        loaded = load_table(plaintext(table), name=Path(table).name)
        return loaded.frame, loaded.name
    loaded = load_table(table)
    return loaded.frame, loaded.name


def _join_labels(
    rows: list[dict[str, Any]],
    table: str | os.PathLike[str] | bytes | pd.DataFrame,
    display: str,
    notes: list[str],
) -> tuple[list[dict[str, Any]], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    frame, table_name = _read_labels(table, display)
    by_lower = {str(c).strip().lower(): c for c in frame.columns}
    file_col = by_lower.get("file") or by_lower.get("filename")
    if file_col is None:
        raise ImageError(
            f"The labels table '{table_name}' has no 'file' column (columns: "
            f"{[str(c) for c in frame.columns][:12]}); add a column 'file' with each image's "
            "file name or path inside the set."
        )
    rename = {file_col: "file"}
    for wanted in ("label", "patient_id"):
        if wanted in by_lower:
            rename[by_lower[wanted]] = wanted
    frame = frame.rename(columns=rename)
    clash = [c for c in frame.columns if c in RESERVED_COLUMNS[3:]]
    if clash:
        raise ImageError(
            f"The labels table '{table_name}' has column(s) {clash} that medimg fills itself; "
            "rename them (for example 'site_split')."
        )
    keys = frame["file"].map(lambda v: "" if pd.isna(v) else str(v).strip().lstrip("./"))
    duplicated = sorted(set(keys[keys.duplicated()]))
    if duplicated:
        raise ImageError(
            f"The labels table '{table_name}' names {len(duplicated)} file(s) more than once "
            f"({duplicated[:5]}); keep one row per image."
        )
    by_path = {row["file"]: row for row in rows}
    names = Counter(PurePosixPath(r["file"]).name for r in rows)
    by_name = {
        PurePosixPath(r["file"]).name: r for r in rows if names[PurePosixPath(r["file"]).name] == 1
    }
    extra = tuple(str(c) for c in frame.columns if c not in ("file", "label", "patient_id"))
    joined: list[dict[str, Any]] = []
    missing: list[str] = []
    used: set[str] = set()
    for key, (_, trow) in zip(keys, frame.iterrows(), strict=True):
        match = by_path.get(key) or by_name.get(key)
        if match is None:
            missing.append(key or "(empty)")
            continue
        used.add(match["file"])
        out = dict(match)
        if "label" in frame.columns:
            out["label"] = trow["label"]
        if "patient_id" in frame.columns and not pd.isna(trow["patient_id"]):
            out["patient_id"] = trow["patient_id"]
        for col in extra:
            out[col] = trow[col]
        joined.append(out)
    unlabelled = sorted(r["file"] for r in rows if r["file"] not in used)
    if missing:
        notes.append(
            f"{len(missing)} labels-table row(s) name a file that is not in the set (left out): "
            + ", ".join(missing[:10])
            + (", …" if len(missing) > 10 else "")
        )
    if unlabelled:
        notes.append(
            f"{len(unlabelled)} image(s) are not in the labels table (left out): "
            + ", ".join(unlabelled[:10])
            + (", …" if len(unlabelled) > 10 else "")
        )
    if extra:
        notes.append(
            f"Columns kept from the labels table and joined to the features: {list(extra)}."
        )
    return joined, extra, tuple(missing), tuple(unlabelled)


def _confined(path: Path, roots: Sequence[Path]) -> bool:
    try:
        return inside_roots(path.resolve(strict=True), roots)
    except (OSError, RuntimeError):
        return False


def _attach_masks(
    records: pd.DataFrame,
    root: Path,
    mask_dir: Path,
    notes: list[str],
    confine: Sequence[Path] | None = None,
) -> None:
    by_rel: dict[str, Path] = {}
    by_name: dict[str, Path] = {}
    by_stem: dict[str, Path] = {}
    for path in sorted(mask_dir.rglob("*")):
        if confine is not None and not _confined(path, confine):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and _visible(path, mask_dir):
            by_rel[path.relative_to(mask_dir).as_posix()] = path
            by_name.setdefault(path.name, path)
            by_stem.setdefault(path.stem, path)
    found: list[str | None] = []
    for rel in records["file"]:
        p = PurePosixPath(str(rel))
        match = by_rel.get(p.as_posix()) or by_name.get(p.name) or by_stem.get(p.stem)
        found.append(str(match.resolve()) if match is not None else None)
    records["mask"] = pd.Series(found, index=records.index, dtype=object)
    n = sum(f is not None for f in found)
    notes.append(
        f"Masks from '{mask_dir.name}/' for {n} of {len(found)} images: features are computed "
        "inside each region and region-shape features are added."
        + ("" if n == len(found) else " Images without a mask use the whole image.")
    )


def _class_counts(records: pd.DataFrame) -> dict[str, int]:
    if "label" not in records.columns:
        return {}
    counts = records["label"].dropna().astype(str).value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items())}


def _check_classes(class_counts: dict[str, int], min_classes: int, display: str) -> None:
    if len(class_counts) >= min_classes:
        return
    if not class_counts:
        raise ImageError(
            f"'{display}' has no labels; put each class's images in its own sub-folder "
            "(normal/, pneumonia/, …) or add labels.csv with columns file and label."
        )
    only = ", ".join(f"'{k}' ({v} images)" for k, v in class_counts.items())
    raise ImageError(
        f"'{display}' has only one class, {only}; a classifier needs at least "
        f"{min_classes} classes: add a sub-folder of images for each other class."
    )
