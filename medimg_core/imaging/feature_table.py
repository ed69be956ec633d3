"""Images through the core: from an image study to a feature table, a model card and back.

This module joins :mod:`medimg_core.imaging.sets` (reading image sets), :mod:`medimg_core.imaging.features`
(named features) and :mod:`medimg_core.imaging.occlusion` (image-level explanations) to the table path
(cleaning, training, persistence) that the command line and the dashboard share:

* :func:`is_image_source` tells an image study from a table file.
* :func:`image_table` opens an image set and extracts its features in one call; a study of 3D
  volumes with segmentations (:mod:`medimg_core.imaging.studies`) gets IBSI radiomic features.
* The model card keeps the feature-extraction settings (``card["features"]["image_settings"]``)
  and each feature's description (``card["features"]["descriptions"]``), so that
  :func:`features_for_prediction` re-extracts new images exactly as at training time.

Scoring an image table and occlusion maps need a model: they live in
:mod:`medimg_core.modelling.image_prediction`.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from medimg_core.errors import ConfigError, ImageError, MedimgError
from medimg_core.imaging import dicom
from medimg_core.imaging.archives import discard_new_upload, upload_names
from medimg_core.imaging.features import (
    FeatureSettings,
    FeatureTable,
    _descriptions,
    extract_features,
)
from medimg_core.imaging.pixels import IMAGE_SUFFIXES, ImageLimits, ImageProblem, load_image
from medimg_core.imaging.sets import ImageSet, open_image_set
from medimg_core.privacy import pseudonym_key
from medimg_core.tables.roles import Roles
from medimg_core.workspace import workspace_path

# The 3D path (nibabel, pynrrd, the radiomics settings) loads only when a study or a card
# needs it: a table or a 2D image set never pays for it.
if TYPE_CHECKING:
    from medimg_core.imaging.radiomics.settings import RadiomicsSettings
    from medimg_core.imaging.studies import VolumeStudy

__all__ = [
    "IMAGE_ID_COLUMNS",
    "ImageTable",
    "feature_descriptions",
    "features_for_prediction",
    "image_settings_from_card",
    "image_table",
    "is_image_source",
    "is_radiomics_settings",
    "radiomics_settings_from_card",
    "require_image_settings",
    "trained_with_masks",
]

Progress = Callable[[float, str], None]
ImageSource = str | os.PathLike[str] | bytes
LabelsSource = str | os.PathLike[str] | bytes | pd.DataFrame

IMAGE_ID_COLUMNS: tuple[str, ...] = ("file", "case", "split")
"""Columns of an image feature table that are never model inputs."""

_ARCHIVE_SUFFIXES = frozenset({".zip", ".npz"})
_SHAPE_MARKER = "shape_area"


@dataclass(frozen=True, eq=False)
class ImageTable:
    """An image set and its features, ready for cleaning and training.

    Attributes
    ----------
    features : the extracted features (``.frame``, ``.settings``, ``.descriptions``).
    image_set : the set the features came from (records, lazy image loading, gallery): an
        :class:`ImageSet` of 2D images or a :class:`VolumeStudy` of 3D cases.
    notes : what medimg did, for the user (layout, conversions, size, images left out).
    problems : images left out, with the reason.
    """

    features: FeatureTable
    image_set: ImageSet | VolumeStudy
    notes: tuple[str, ...]
    problems: tuple[ImageProblem, ...]

    @property
    def frame(self) -> pd.DataFrame:
        """The feature table: ``file``, ``patient_id``, ``label``, ``split``, clinical, features."""
        return self.features.frame

    @property
    def settings(self) -> dict[str, Any]:
        """The feature settings to save in the model card."""
        return self.features.settings

    @property
    def descriptions(self) -> dict[str, str]:
        """Feature name -> one-line description."""
        return self.features.descriptions

    def roles(self) -> Roles:
        """Label ``label``, patient grouping by ``patient_id`` when present, never ``file``."""
        return self.features.roles()

    def predefined_test(self) -> tuple[bool, ...] | None:
        """The given test split of a MedMNIST ``.npz`` (None for other layouts)."""
        return self.features.predefined_test()


def is_image_source(spec_or_path: str | os.PathLike[str]) -> bool:
    """Whether a data argument names an image study rather than a table.

    Parameters
    ----------
    spec_or_path : a command-line data argument: a path or ``sample:<name>``.

    Returns
    -------
    bool
        True for a folder, a ``.zip`` or ``.npz`` file, and a single PNG / JPEG / TIFF / DICOM
        file (also a DICOM file without an ending); False for table files (CSV, TSV, Excel,
        Parquet) and ``sample:`` specs.
    """
    text = os.fspath(spec_or_path)
    if isinstance(spec_or_path, str) and text.startswith("sample:"):
        return False
    path = Path(text).expanduser()
    if path.is_dir():
        return True
    suffix = path.suffix.lower()
    if suffix in _ARCHIVE_SUFFIXES or suffix in IMAGE_SUFFIXES:
        return True
    return suffix == "" and path.is_file() and dicom.is_dicom(path)


def _single_image_set(path: Path, key: bytes | None) -> ImageSet:
    """One image file as an unlabelled set (prediction on a single case)."""
    name = path.name
    img = load_image(path, name=name)
    row: dict[str, Any] = {
        "file": name,
        "source": str(path.resolve()),
        "height": img.original_size[0],
        "width": img.original_size[1],
        "format": img.format,
    }
    if img.format == "dicom":
        if key is None:
            key = pseudonym_key()
        header = dicom.read_dicom_header(path, key=key, name=name)
        if header.patient_key is not None:
            row["patient_id"] = header.patient_key
    notes = [f"A single image, '{name}' ({img.original_size[0]}×{img.original_size[1]})."]
    if img.was_rgb:
        notes.append("It was converted from RGB to grayscale luminance.")
    return ImageSet(
        name=name,
        layout="unlabelled",
        records=pd.DataFrame([row]),
        root=path.parent,
        notes=tuple(notes),
        problems=(),
        missing_files=(),
        unlabelled_files=(),
        class_counts={},
        extra_columns=(),
        content_hash="",
    )


def _open(
    source: ImageSource,
    *,
    labels: LabelsSource | None,
    masks: str | os.PathLike[str] | None,
    min_classes: int,
    workspace: Path | None,
    limits: ImageLimits | None,
    name: str | None,
    key: bytes | None,
    volumes: bool = False,
) -> ImageSet | VolumeStudy:
    from medimg_core.imaging.studies import looks_like_volume_study, open_volume_study

    if volumes or looks_like_volume_study(source):
        return open_volume_study(
            source,
            manifest=labels,
            masks=masks,
            workspace=workspace,
            limits=limits,
            min_classes=min_classes,
            name=name,
            key=key,
        )
    if not isinstance(source, bytes):
        path = Path(source).expanduser()
        suffix = path.suffix.lower()
        single = path.is_file() and suffix not in _ARCHIVE_SUFFIXES
        if single and (suffix in IMAGE_SUFFIXES or dicom.is_dicom(path)):
            if min_classes > 0:
                raise ImageError(
                    f"'{path.name}' is a single image; training needs a folder or ZIP with "
                    "one sub-folder per class (or images plus labels.csv)."
                )
            return _single_image_set(path, key)
        source = path
    return open_image_set(
        source,
        labels=labels,
        masks=masks,
        workspace=workspace,
        limits=limits,
        min_classes=min_classes,
        name=name,
        key=key,
    )


def image_table(
    source: ImageSource,
    *,
    labels: LabelsSource | None = None,
    masks: str | os.PathLike[str] | None = None,
    size: int | tuple[int, int] | None = None,
    settings: FeatureSettings | Mapping[str, Any] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    min_classes: int = 2,
    workspace: Path | None = None,
    limits: ImageLimits | None = None,
    name: str | None = None,
    key: bytes | None = None,
    radiomics: RadiomicsSettings | Mapping[str, Any] | None = None,
) -> ImageTable:
    """Open an image study and extract its named features in one call.

    A folder or ZIP of 3D volumes (NIfTI / NRRD files, or a ``manifest.csv``) is opened as a
    :class:`~medimg_core.imaging.studies.VolumeStudy` and gets the IBSI radiomic features of
    each case's segmented region; giving ``radiomics`` settings also reads folders of DICOM
    series that way.

    Parameters
    ----------
    source : a folder, a ``.zip`` or ``.npz`` path, the bytes of a ZIP or npz, or (with
        ``min_classes=0``) a single image file.
    labels : a labels table (path, bytes or DataFrame) with ``file``, ``label`` and optionally
        ``patient_id`` and clinical columns; default ``labels.csv`` in the folder when present.
    masks : folder of region-of-interest masks; default a ``masks/`` folder when present.
    size : working size (N or (height, width)); default the set's most common size.
    settings : saved feature settings (re-extract as a model was trained); their size wins.
    workers : extraction processes; default all available cores; 1 runs in this process.
    progress : ``progress(fraction, message)`` callback.
    min_classes : fewest labels required (2 to train, 0 to predict on unlabelled images).
    workspace : where ZIP archives are unpacked; default the medimg workspace.
    limits : caps on archives and image sizes.
    name : display name of the set.
    key : pseudonymisation key for DICOM patient keys; default the workspace key.
    radiomics : radiomics settings for a 3D study (a PyRadiomics-layout YAML read with
        :meth:`RadiomicsSettings.from_yaml`); default the defaults. For a 3D study ``labels``
        is its manifest and ``size`` does not apply.

    Returns
    -------
    ImageTable

    Raises
    ------
    ImageError
        No readable image, an unsafe or damaged archive, a labels table without ``file``, a
        class folder without images, fewer than ``min_classes`` classes.
    LimitError
        An archive that unpacks beyond ``limits``.
    ConfigError
        An invalid ``size`` / ``workers``, or a ``size`` that contradicts ``settings``.
    """
    if progress is not None:
        progress(0.0, "Reading the image set")
    home = workspace if workspace is not None else workspace_path()
    before = upload_names(home)
    image_set = _open(
        source,
        labels=labels,
        masks=masks,
        min_classes=min_classes,
        workspace=workspace,
        limits=limits,
        name=name,
        key=key,
        volumes=radiomics is not None,
    )
    try:
        if not isinstance(image_set, ImageSet):
            from medimg_core.imaging.studies import extract_volume_features

            if size is not None:
                raise ConfigError(
                    "--size resizes 2D images; 3D volumes are resampled with the radiomics "
                    "setting resampledPixelSpacing instead: drop --size."
                )
            table = extract_volume_features(
                image_set, radiomics, workers=workers, progress=progress
            )
        else:
            table = extract_features(
                image_set, size=size, settings=settings, workers=workers, progress=progress
            )
    except MedimgError:
        # A refused set leaves nothing in the workspace: what this call unpacked goes.
        discard_new_upload(image_set.root, home, before)
        raise
    return ImageTable(
        features=table, image_set=image_set, notes=table.notes, problems=table.problems
    )


def is_radiomics_settings(settings: Mapping[str, Any] | FeatureSettings | None) -> bool:
    """Whether saved feature settings are radiomics settings of a 3D study (not 2D images)."""
    return isinstance(settings, Mapping) and settings.get("kind") == "radiomics"


def feature_descriptions(
    settings: FeatureSettings | Mapping[str, Any], columns: Sequence[str] | None = None
) -> dict[str, str]:
    """One-line descriptions of the image features in ``columns`` (default: all of them).

    Parameters
    ----------
    settings : the feature settings (the grid and LBP sizes shape some descriptions), or the
        radiomics settings of a 3D study (each feature's meaning, IBSI code and PyRadiomics name).
    columns : model feature columns; clinical columns that are not image features are skipped.
    """
    if is_radiomics_settings(settings):
        from medimg_core.imaging.radiomics.extract import (
            feature_descriptions as radiomics_descriptions,
        )
        from medimg_core.imaging.radiomics.settings import RadiomicsSettings

        assert isinstance(settings, Mapping)
        described = radiomics_descriptions(RadiomicsSettings.from_dict(settings))
        if columns is None:
            return described
        return {c: described[c] for c in columns if c in described}
    s = settings if isinstance(settings, FeatureSettings) else FeatureSettings.from_dict(settings)
    with_mask = columns is None or _SHAPE_MARKER in columns
    every = _descriptions(s, with_mask)
    if columns is None:
        return every
    return {c: every[c] for c in columns if c in every}


def image_settings_from_card(card: Mapping[str, Any]) -> FeatureSettings | None:
    """The 2D feature-extraction settings a model card records (None for a table model, and
    for a model of 3D radiomic features: see :func:`radiomics_settings_from_card`).

    Raises
    ------
    ConfigError
        When the settings come from a different version of the image features.
    """
    features = card.get("features") or {}
    raw = features.get("image_settings") if isinstance(features, Mapping) else None
    if not raw or is_radiomics_settings(raw):
        return None
    return FeatureSettings.from_dict(raw)


def radiomics_settings_from_card(card: Mapping[str, Any]) -> RadiomicsSettings | None:
    """The radiomics settings of a model trained on 3D volumes (None for other models)."""
    features = card.get("features") or {}
    raw = features.get("image_settings") if isinstance(features, Mapping) else None
    if not is_radiomics_settings(raw):
        return None
    from medimg_core.imaging.radiomics.settings import RadiomicsSettings

    return RadiomicsSettings.from_dict(raw)


def require_image_settings(card: Mapping[str, Any]) -> FeatureSettings:
    """The card's image settings, or a message saying the model was trained on a table."""
    settings = image_settings_from_card(card)
    if settings is not None:
        return settings
    columns = [str(c) for c in (card.get("features") or {}).get("feature_columns", [])]
    shown = ", ".join(repr(c) for c in columns[:8]) + (" …" if len(columns) > 8 else "")
    raise ConfigError(
        "This model was trained on a table, not images: pass a table (CSV, Excel or Parquet) "
        f"with the columns {shown}, or train a model on images first (medimg train IMAGES)."
    )


def trained_with_masks(card: Mapping[str, Any]) -> bool:
    """True when the card's model used region-mask (``shape_*``) features (always for 3D
    radiomics, computed inside each case's segmentation)."""
    if radiomics_settings_from_card(card) is not None:
        return True
    columns = (card.get("features") or {}).get("feature_columns", [])
    return any(str(c).startswith("shape_") for c in columns)


def features_for_prediction(
    card: Mapping[str, Any],
    source: ImageSource,
    *,
    labels: LabelsSource | None = None,
    masks: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    workspace: Path | None = None,
    limits: ImageLimits | None = None,
    name: str | None = None,
    key: bytes | None = None,
    require_labels: bool = False,
) -> ImageTable:
    """Extract features from new images exactly as the model card's model was trained.

    Labels are optional (a folder per class, or a labels table, gives them for evaluation);
    any number of classes, even none, is accepted.

    Parameters
    ----------
    card : the model card (:attr:`medimg_core.store.persistence.LoadedModel.card`).
    source : a folder, ``.zip``, ``.npz`` or a single image / DICOM file.
    labels, masks, workers, progress, workspace, limits, name, key : as in :func:`image_table`.
    require_labels : refuse, before extracting anything, a set without labels (external
        validation needs them).

    Returns
    -------
    ImageTable

    Raises
    ------
    ConfigError
        When the card has no image settings (a table model) or comes from another feature
        version; when the model used region masks and the images have none, or the reverse.
    ImageError
        When no image can be read, or ``require_labels`` is set and the images have no labels.
    """
    radiomics = radiomics_settings_from_card(card)
    if radiomics is not None:
        return _volume_prediction_table(
            radiomics,
            source,
            labels,
            masks,
            workers,
            progress,
            workspace,
            limits,
            name,
            key,
            require_labels,
        )
    settings = require_image_settings(card)
    home = workspace if workspace is not None else workspace_path()
    before = upload_names(home)
    image_set = _open(
        source,
        labels=labels,
        masks=masks,
        min_classes=0,
        workspace=workspace,
        limits=limits,
        name=name,
        key=key,
    )
    if not isinstance(image_set, ImageSet):
        discard_new_upload(image_set.root, home, before)
        raise ConfigError(
            f"'{image_set.name}' holds 3D volumes, but this model was trained on 2D images; "
            "score it with a model trained on volumes (medimg train STUDY), or give 2D images."
        )
    try:
        return _prediction_table(image_set, card, settings, require_labels, workers, progress)
    except MedimgError:
        discard_new_upload(image_set.root, home, before)
        raise


def _volume_prediction_table(
    settings: RadiomicsSettings,
    source: ImageSource,
    labels: LabelsSource | None,
    masks: str | os.PathLike[str] | None,
    workers: int | None,
    progress: Progress | None,
    workspace: Path | None,
    limits: ImageLimits | None,
    name: str | None,
    key: bytes | None,
    require_labels: bool,
) -> ImageTable:
    """New 3D cases, read and featurised with the model's own radiomics settings."""
    single = isinstance(source, (str, os.PathLike)) and Path(source).is_file()
    if single and not zipfile.is_zipfile(source):
        raise ConfigError(
            "This model was trained on 3D volumes with segmentations: give a study folder "
            "or ZIP (NIfTI / NRRD volumes with their masks, and a manifest.csv or masks/), "
            "not a single file."
        )
    home = workspace if workspace is not None else workspace_path()
    before = upload_names(home)
    study = _open(
        source,
        labels=labels,
        masks=masks,
        min_classes=0,
        workspace=workspace,
        limits=limits,
        name=name,
        key=key,
        volumes=True,
    )
    assert not isinstance(study, ImageSet)
    try:
        if require_labels and not study.has_labels:
            raise ImageError(
                f"'{study.name}' has no labels, which external validation needs; add a "
                "'label' column to its manifest or put each class's cases in a sub-folder."
            )
        if progress is not None:
            progress(0.0, "Reading the study")
        from medimg_core.imaging.studies import extract_volume_features

        table = extract_volume_features(study, settings, workers=workers, progress=progress)
    except MedimgError:
        discard_new_upload(study.root, home, before)
        raise
    return ImageTable(features=table, image_set=study, notes=table.notes, problems=table.problems)


def _prediction_table(
    image_set: ImageSet,
    card: Mapping[str, Any],
    settings: FeatureSettings,
    require_labels: bool,
    workers: int | None,
    progress: Progress | None,
) -> ImageTable:
    if require_labels and not image_set.has_labels:
        raise ImageError(
            f"'{image_set.name}' has no labels, which external validation needs; put each "
            "class's images in its own sub-folder (normal/, pneumonia/, …) or give a labels "
            "table with columns file and label."
        )
    wanted = trained_with_masks(card)
    if wanted and not image_set.has_masks:
        raise ConfigError(
            f"This model was trained with region masks, but '{image_set.name}' has none; put "
            "each image's mask under masks/ with the image's file name (or pass --masks DIR)."
        )
    if image_set.has_masks and not wanted:
        raise ConfigError(
            f"'{image_set.name}' has region masks, but this model was trained on whole images; "
            "remove the masks folder so that features are computed as at training time."
        )
    if progress is not None:
        progress(0.0, "Reading the image set")
    table = extract_features(image_set, settings=settings, workers=workers, progress=progress)
    return ImageTable(
        features=table, image_set=image_set, notes=table.notes, problems=table.problems
    )
