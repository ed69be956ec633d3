"""Streamlit helpers for image studies: open and extract with a progress bar, the gallery, the
case image and its occlusion map, and prediction cards.

Opened sets and extracted features are kept in server-wide caches keyed on content (the sha256
of an uploaded archive, the listing hash of a server folder, and the feature settings), so two
users only ever share a result when they gave the same images. Everything about the current
session's images lives in ``state.IMAGES`` (an :class:`~medimg_core.ui.session.ImageContext`).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from medimg_core.access import Action, Actor, allowed
from medimg_core.encryption import is_encrypted
from medimg_core.errors import ConfigError, ImageError, MedimgError
from medimg_core.imaging.roots import image_roots
from medimg_core.tables.loading import LoadedTable, frame_hash
from medimg_core.tables.roles import RoleProposal
from medimg_core.ui import cache, state, workflow
from medimg_core.ui.auth import client_address, current_actor
from medimg_core.ui.session import ActiveModel, ImageContext, image_context
from medimg_core.ui.widgets import progress_bar
from medimg_core.workspace import workspace_home

# review, image_prediction and the explaining helpers load scikit-learn and shap, and the
# imaging modules load pydicom and Pillow: they are imported where images or a model are
# needed, so that the Data page opens quickly.
if TYPE_CHECKING:
    from typing_extensions import TypeIs

    from medimg_core.imaging.feature_table import ImageTable
    from medimg_core.imaging.occlusion import OcclusionMap
    from medimg_core.imaging.sets import ImageSet
    from medimg_core.imaging.studies import VolumeStudy
    from medimg_core.reporting import review

__all__ = [
    "ARCHIVE_TYPES",
    "AUTO_SIZE",
    "MAX_AUTO_SIDE",
    "PREDICTION_IMAGES",
    "PREDICT_TYPES",
    "SIZE_CHOICES",
    "CaseImage",
    "case_image",
    "context",
    "display_pixels",
    "extract",
    "feature_descriptions_table",
    "folder_roots",
    "gallery",
    "image_proposal",
    "is_image_model",
    "is_table_file",
    "is_volume_model",
    "is_volume_study",
    "load_folder",
    "load_upload",
    "may_open_folders",
    "occlusion",
    "open_archive",
    "open_folder",
    "predefined_test",
    "prediction_cards",
    "prediction_context",
    "prediction_images",
    "progress_bar",
    "release_uploads",
    "set_image_table",
    "set_key",
    "show_case_image",
    "size_label",
    "take_prediction_images",
    "thumbnails",
    "working_size",
]

ARCHIVE_TYPES = ["zip", "npz"]
"""Uploads the Data page reads as image studies."""

PREDICT_TYPES = ["zip", "npz", "png", "jpg", "jpeg", "tif", "tiff", "dcm", "dicom"]
"""Uploads the Predict page reads as new images (a single image or a set)."""

AUTO_SIZE = "auto"
MAX_AUTO_SIDE = 256
"""With the automatic working size, images larger than this are scaled down to it."""

SIZE_CHOICES: tuple[Any, ...] = (AUTO_SIZE, 28, 64, 128, 224, 256, 512)
"""Working sizes offered on the Data page (side in pixels, or automatic)."""

PREDICTION_IMAGES = "predict_image_table"
"""Session key of the new images (an ImageContext) on the Predict page."""

_STORE_SIZE = 8
_SMALL_SET = 200
_SMALL_UPLOAD = 5 * 2**20
_PREDICT_SEEN = "predict_images_seen"
_TABLE_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".xlsx", ".xls", ".xlsm", ".parquet", ".pq"})


def is_volume_study(image_set: ImageSet | VolumeStudy | None) -> TypeIs[VolumeStudy]:
    """Whether an image context's set is a 3D study (without importing the imaging modules,
    which load Pillow, nibabel and pydicom)."""
    return getattr(image_set, "kind", None) == "volumes"


def size_label(choice: Any) -> str:
    """How a working-size choice reads in the selectbox."""
    if choice == AUTO_SIZE:
        return f"Automatic (≤ {MAX_AUTO_SIDE} px)"
    return f"{choice} × {choice} px"


def working_size(image_set: ImageSet, choice: Any) -> tuple[int, int]:
    """The (height, width) features are computed at, for a working-size choice.

    Automatic keeps the set's most common size, scaled down (aspect kept) so that its longest
    side is at most :data:`MAX_AUTO_SIDE`; a number means a square of that side.
    """
    if choice != AUTO_SIZE:
        side = int(choice)
        return side, side
    height, width = image_set.common_size
    longest = max(height, width)
    if longest <= MAX_AUTO_SIDE:
        return height, width
    scale = MAX_AUTO_SIDE / longest
    return max(8, round(height * scale)), max(8, round(width * scale))


@st.cache_resource(show_spinner="Unpacking and checking the images…", max_entries=8)
def open_archive(
    digest: str, name: str, home: str, _data: bytes, volumes: bool = False
) -> ImageSet | VolumeStudy:
    """Open an uploaded ZIP or ``.npz`` (cached on the sha256 ``digest`` of its bytes and the
    workspace ``home`` it is unpacked into: a cached set never points into another workspace).

    A ZIP of NIfTI / NRRD volumes or with a manifest is a 3D study; ``volumes`` (radiomics
    settings were given) also reads folders of DICOM series as 3D cases."""
    from medimg_core.imaging.sets import open_image_set
    from medimg_core.imaging.studies import looks_like_volume_study, open_volume_study

    if volumes or looks_like_volume_study(_data):
        # NIfTI / NRRD volumes or a manifest: a 3D study, featurised with IBSI radiomics.
        return open_volume_study(_data, name=name)
    return open_image_set(_data, name=name)


def folder_roots() -> tuple[Path, ...]:
    """The server folders image studies may be read from (``MEDIMG_IMAGE_ROOTS``); empty when
    reading server folders is not allowed, and then the Data page does not offer it."""
    return image_roots()


def may_open_folders(actor: Actor) -> bool:
    """Whether ``actor`` may open image folders on the server (analysts and admins)."""
    return allowed(actor, Action.OPEN_IMAGE_FOLDER)


def open_folder(path: str, actor: Actor) -> ImageSet:
    """Open a folder on the server as an image set, only inside the configured image roots and
    only for analysts and admins (the core checks ``actor``).

    Raises
    ------
    PermissionDenied
        When ``actor`` may not open server folders (a viewer).
    ImageError
        When no image root is configured, the folder is not inside one, or it holds no
        readable image.
    """
    from medimg_core.imaging.sets import open_server_folder

    return open_server_folder(path, actor=actor, roots=folder_roots())


@st.cache_resource(show_spinner=False, max_entries=1)
def _feature_store() -> tuple[threading.Lock, OrderedDict[tuple[str, tuple[int, int]], Any]]:
    return threading.Lock(), OrderedDict()


def extract(image_set: ImageSet | VolumeStudy, size: tuple[int, int]) -> ImageTable:
    """The features of ``image_set`` at ``size``, with a progress bar (cached on content).

    Small sets are extracted in this process (starting worker processes would cost more than
    it saves); larger ones use every core.
    """
    from medimg_core.imaging.feature_table import ImageTable
    from medimg_core.imaging.features import extract_features

    if is_volume_study(image_set):
        from medimg_core.ui import volumes

        return volumes.extract(image_set)
    lock, store = _feature_store()
    key = (image_set.content_hash, (int(size[0]), int(size[1])))
    with lock:
        cached = store.get(key) if image_set.content_hash else None
        if cached is not None:
            store.move_to_end(key)
            return ImageTable(
                features=cached,
                image_set=image_set,
                notes=cached.notes,
                problems=cached.problems,
            )
    workers = 1 if len(image_set) < _SMALL_SET else None
    with progress_bar(f"Extracting features from {len(image_set):,} images…") as report:
        # At the set's own size the core says nothing about resizing, which is then true.
        wanted = None if tuple(size) == image_set.common_size else size
        features = extract_features(image_set, size=wanted, workers=workers, progress=report)
    if image_set.content_hash:
        with lock:
            store[key] = features
            while len(store) > _STORE_SIZE:
                store.popitem(last=False)
    return ImageTable(
        features=features, image_set=image_set, notes=features.notes, problems=features.problems
    )


def image_proposal(table: LoadedTable, images: ImageTable) -> RoleProposal:
    """The roles an image table implies: ``label``, ``patient_id`` as the ID, ``file`` (and an
    npz ``split``) excluded, on top of what medimg proposes for any table (identifying
    clinical columns, the positive class)."""
    general = cache.proposal(table.content_hash, table.frame)
    roles = images.roles()
    identifying = dict(general.identifying)
    identifying.pop("label", None)
    identifying.pop("patient_id", None)
    if "file" in table.frame.columns:
        identifying["file"] = "image file name, not a feature"
    if "case" in table.frame.columns:
        identifying["case"] = "case name of a 3D study, not a feature"
    if "split" in table.frame.columns:
        identifying["split"] = "the file's own train / val / test split, not a feature"
    label_candidates = tuple(
        dict.fromkeys([c for c in (roles.label,) if c] + list(general.label_candidates))
    )
    return RoleProposal(
        label_candidates=label_candidates,
        # A case or file name is one row each, never the patient: without a patient_id the
        # split is by case, and the page says so.
        id=roles.id or (general.id if general.id not in ("file", "case") else None),
        quality=general.quality,
        site=general.site,
        identifying=identifying,
        positive_class=general.positive_class,
    )


def set_image_table(images: ImageTable, name: str) -> ImageContext:
    """Make the features of ``images`` the working table, with image roles proposed, and keep
    the image context for the gallery, Explain and Predict."""
    frame = images.frame
    table = LoadedTable(
        frame=frame,
        name=name,
        content_hash=frame_hash(frame),
        encoding=None,
        delimiter=None,
        format="images",
        notes=images.notes,
    )
    workflow.set_table(table)
    st.session_state.pop(workflow.JOIN_RESULT, None)
    state.put(state.PROPOSAL, image_proposal(table, images))
    ctx = image_context(images, table.content_hash, name)
    state.put(state.IMAGES, ctx)
    return ctx


def load_upload(data: bytes, name: str, choice: Any) -> ImageContext:
    """Open an uploaded ZIP / npz, extract its features and make them the working table; what
    the upload it replaces left in the workspace is removed when no session uses it.

    Refused (and audited) before anything is unpacked when the session's user may not upload.
    """
    # Deferred: the audit trail loads the modelling stack, which the first page does not need.
    from medimg_core.store import guarded

    digest = hashlib.sha256(data).hexdigest()
    with guarded.audited(current_actor(), Action.UPLOAD, client=client_address(), object=digest):
        # Radiomics settings uploaded beside the ZIP say it is a 3D study, DICOM series too.
        volumes = st.session_state.get("radiomics_settings") is not None
        image_set = open_archive(digest, name, str(workspace_home()), data, volumes)
    _hold(image_set)
    try:
        size = (0, 0) if is_volume_study(image_set) else working_size(image_set, choice)
        table = extract(image_set, size)
    except MedimgError:
        # Refused after unpacking (e.g. images too small for the features): what it unpacked
        # goes now, unless another session uses the same archive.
        release_uploads()
        raise
    ctx = set_image_table(table, name)
    release_uploads()
    return ctx


def load_folder(path: str, choice: Any, actor: Actor) -> ImageContext:
    """Open a server folder as ``actor``, extract its features and make them the working table."""
    with st.spinner("Reading the folder and checking every image…"):
        image_set = open_folder(path, actor)
    ctx = set_image_table(extract(image_set, working_size(image_set, choice)), image_set.name)
    release_uploads()
    return ctx


def context() -> ImageContext | None:
    """The session's image context, when it belongs to the current working table."""
    return workflow.current_images()


def predefined_test(data: pd.DataFrame) -> tuple[bool, ...] | None:
    """The ``.npz`` file's own test split over the cleaned ``data`` (None for other data)."""
    ctx = context()
    if ctx is None or "split" not in data.columns or "split" not in ctx.table.frame.columns:
        return None
    mask = tuple(bool(v) for v in (data["split"].astype(str) == "test"))
    return mask if any(mask) else None


def set_key(image_set: ImageSet | VolumeStudy) -> str:
    """A content key for caches: the set's content hash, else (a single uploaded image, stored
    under its own content hash) a hash of where its images are."""
    if image_set.content_hash:
        return image_set.content_hash
    sources = "\n".join(str(s) for s in image_set.records["source"])
    return hashlib.sha256(sources.encode("utf-8")).hexdigest()


@st.cache_data(show_spinner=False, max_entries=64)
def thumbnails(
    content_hash: str,
    positions: tuple[int, ...],
    max_side: int,
    _image_set: ImageSet | VolumeStudy,
) -> list[np.ndarray | None]:
    """uint8 thumbnails of some images of a set (None for one that cannot be decoded).

    ``content_hash`` is :func:`set_key` of ``_image_set`` (the cache key)."""
    out: list[np.ndarray | None] = []
    for position in positions:
        try:
            out.append(_image_set.thumbnail(position, max_side=max_side))
        except ImageError:
            out.append(None)
    return out


def _thumbnail_grid(
    image_set: ImageSet,
    positions: Sequence[int],
    captions: Sequence[str],
    *,
    per_row: int,
    max_side: int = 96,
) -> None:
    images = thumbnails(set_key(image_set), tuple(positions), max_side, image_set)
    for start in range(0, len(positions), per_row):
        columns = st.columns(per_row, gap="small")
        for column, image, caption in zip(
            columns,
            images[start : start + per_row],
            captions[start : start + per_row],
            strict=False,
        ):
            if image is None:
                column.caption(f"{caption} (unreadable)")
            else:
                column.image(image, caption=caption, width="stretch", clamp=True)


def gallery(image_set: ImageSet, *, key: str, per_row: int = 8, rows: int = 2) -> None:
    """Thumbnails of one class at a time, one page at a time.

    File names stay hidden unless the user asks: they can hold patient names or numbers.
    """
    records = image_set.records
    counts = image_set.class_counts
    classes = list(counts) if counts else []
    pick_col, page_col, names_col = st.columns([2, 2, 1.4], vertical_alignment="bottom")
    if classes:
        chosen = pick_col.selectbox(
            "Class",
            classes,
            format_func=lambda c: f"{c} ({counts[c]:,} images)",
            key=f"{key}_class",
        )
        positions = np.flatnonzero(records["label"].astype(str).to_numpy() == chosen).tolist()
    else:
        pick_col.markdown(f"**{len(records):,} images** (no labels)")
        positions = list(range(len(records)))
    page_size = per_row * rows
    n_pages = max(1, math.ceil(len(positions) / page_size))
    page = int(
        page_col.number_input(
            f"Page (of {n_pages:,})",
            min_value=1,
            max_value=n_pages,
            value=1,
            step=1,
            key=f"{key}_page",
        )
    )
    show_names = names_col.checkbox(
        "Show file names",
        key=f"{key}_names",
        help="File names can contain patient names or numbers; they are hidden by default.",
    )
    shown = positions[(page - 1) * page_size : page * page_size]
    files = records["file"].astype(str).to_numpy()
    captions = [
        str(files[p]) if show_names else f"#{(page - 1) * page_size + i + 1}"
        for i, p in enumerate(shown)
    ]
    _thumbnail_grid(image_set, shown, captions, per_row=per_row)


def feature_descriptions_table(images: ImageTable) -> pd.DataFrame:
    """Feature name and its plain-language meaning, one row per image feature."""
    descriptions = images.descriptions
    return pd.DataFrame({"feature": list(descriptions), "meaning": list(descriptions.values())})


def is_image_model(active: ActiveModel) -> bool:
    """Whether the active model was trained on image features (its card has their settings)."""
    from medimg_core.imaging import feature_table

    try:
        return (
            feature_table.image_settings_from_card(active.card) is not None
            or feature_table.radiomics_settings_from_card(active.card) is not None
        )
    except ConfigError:
        return True


def is_volume_model(active: ActiveModel) -> bool:
    """Whether the active model was trained on the radiomic features of 3D volumes."""
    from medimg_core.imaging import feature_table

    return feature_table.radiomics_settings_from_card(active.card) is not None


class CaseImage:
    """Where one case's image is: its context and its position in the image set."""

    def __init__(self, ctx: ImageContext, position: int) -> None:
        self.context = ctx
        self.position = position

    @property
    def image_set(self) -> ImageSet | VolumeStudy:
        return self.context.table.image_set


def case_image(active: ActiveModel, row_key: Any) -> CaseImage | None:
    """The image of case ``row_key`` of the active model, when this session has it.

    The model's own image context comes first; a run reopened from the registry uses the
    session's current image set when its feature settings match the card's and the case's
    feature values are those of the image.
    """
    candidates: list[ImageContext] = []
    if active.images is not None:
        candidates.append(active.images)
    current = context()
    if current is not None and current is not active.images:
        card_settings = (active.card.get("features") or {}).get("image_settings")
        if card_settings == current.settings:
            candidates.append(current)
    for ctx in candidates:
        position = ctx.position(row_key, active.cases)
        if position is not None:
            return CaseImage(ctx, position)
    return None


@st.cache_data(show_spinner="Masking patches of the image (occlusion sensitivity)…", max_entries=64)
def _occlusion(
    model_key: str,
    content_hash: str,
    position: int,
    context_json: str,
    _active: ActiveModel,
    _image_set: ImageSet,
    _context: dict[str, Any],
) -> OcclusionMap:
    # Deferred for start-up speed: scoring loads scikit-learn and shap.
    from medimg_core.modelling.image_prediction import occlusion_for_case

    return occlusion_for_case(_active.model, _active.card, _image_set, position, context=_context)


def occlusion(
    active: ActiveModel, found: CaseImage, row_key: Any
) -> tuple[np.ndarray, OcclusionMap]:
    """The case's image at the model's working size and its occlusion map (cached).

    The case's non-image model inputs (clinical columns) are held at their values while the
    image is masked, so only the image changes.
    """
    from medimg_core.imaging import feature_table

    settings = feature_table.image_settings_from_card(active.card)
    if is_volume_study(found.image_set):
        raise ConfigError(
            "Occlusion maps are not computed for 3D studies: each masked block would need the "
            "radiomic features recomputed. The case's SHAP values name the features instead."
        )
    if settings is None or settings.size is None:
        raise ConfigError(
            "This model's card has no image settings, so its cases have no image to mask; "
            "train the model on images on the Data page."
        )
    image_columns = set(found.context.table.features.feature_names)
    cases = active.cases
    clinical: dict[str, Any] = {}
    if cases is not None and row_key in cases.index:
        clinical = {
            c: cases.at[row_key, c]
            for c in active.model.feature_columns
            if c not in image_columns and c in cases.columns
        }
    context_json = pd.Series(clinical, dtype=object).to_json()
    result = _occlusion(
        active.key,
        set_key(found.image_set),
        found.position,
        context_json,
        active,
        found.image_set,
        clinical,
    )
    pixels = found.image_set.load(found.position, size=settings.size).pixels
    return pixels, result


def display_pixels(image_set: ImageSet, position: int, max_side: int = 512) -> np.ndarray:
    """An image for display: as stored, scaled down so its longest side is at most ``max_side``."""
    pixels = image_set.load(position).pixels
    longest = max(pixels.shape)
    if longest <= max_side:
        return pixels
    return image_set.thumbnail(position, max_side=max_side)


def show_case_image(active: ActiveModel, row_key: Any, *, key: str, height: int = 330) -> bool:
    """The case's image and its occlusion map side by side, with the honest caption.

    Returns False (showing nothing) when the session does not hold the case's image.
    """
    from medimg_core.reporting.figures.images import image_figure, occlusion_figure

    found = case_image(active, row_key)
    if found is None:
        return False
    if is_volume_study(found.image_set):
        from medimg_core.ui import volumes

        volumes.show_case(found.image_set, found.position, key=key)
        return True
    pixels, result = occlusion(active, found, row_key)
    image_col, map_col = st.columns(2, gap="small")
    record = found.image_set.records.iloc[found.position]
    size = f"{int(record['height'])}×{int(record['width'])}"
    image_col.plotly_chart(
        image_figure(
            display_pixels(found.image_set, found.position),
            title=f"Image ({size} px)",
            height=height - 64,
        ),
        key=f"{key}_image",
    )
    map_col.plotly_chart(
        occlusion_figure(pixels, result, title="Occlusion map", height=height),
        key=f"{key}_occlusion",
    )
    st.caption(
        f"Computed at {pixels.shape[0]}×{pixels.shape[1]} px, the size the model's features "
        f"use; P({result.target}) of the unmasked image is {result.base_probability:.2f}. "
        + result.caption
    )
    return True


def _write_single(data: bytes, name: str) -> Path:
    """A single uploaded image, stored encrypted in the workspace under its content hash."""
    from medimg_core.imaging.stored import store_upload_file

    digest = hashlib.sha256(data).hexdigest()
    folder = workspace_home() / "uploads" / "single" / digest
    folder.mkdir(parents=True, exist_ok=True)
    safe = Path(name).name or "image"
    path = folder / safe
    if not is_encrypted(path):
        store_upload_file(path, data)
    return path


@st.cache_resource(show_spinner=False, max_entries=1)
def _prediction_store() -> tuple[threading.Lock, OrderedDict[tuple[str, str], ImageTable]]:
    return threading.Lock(), OrderedDict()


def prediction_images(active: ActiveModel, data: bytes, name: str) -> ImageTable:
    """New images (a ZIP, an npz, or one image / DICOM file) with features extracted exactly as
    the active model's were, with a progress bar (cached on content and settings).

    Raises
    ------
    ConfigError
        When the model was not trained on images, or masks do not match its training.
    ImageError
        When no image can be read.
    """
    from medimg_core.imaging import feature_table

    digest = hashlib.sha256(data).hexdigest()
    settings = json.dumps((active.card.get("features") or {}).get("image_settings"), sort_keys=True)
    lock, store = _prediction_store()
    key = (digest, settings)
    with lock:
        cached = store.get(key)
        if cached is not None:
            store.move_to_end(key)
            return cached
    suffix = Path(name).suffix.lower()
    source: bytes | Path = data if suffix in {".zip", ".npz"} else _write_single(data, name)
    workers = 1 if len(data) < _SMALL_UPLOAD else None
    with progress_bar("Reading the new images…") as report:
        table = feature_table.features_for_prediction(
            active.card, source, name=name, workers=workers, progress=report
        )
    with lock:
        store[key] = table
        while len(store) > _STORE_SIZE:
            store.popitem(last=False)
    return table


def is_table_file(name: str) -> bool:
    """Whether an upload's name says it is a table (CSV, TSV, Excel, Parquet), not images."""
    return Path(name).suffix.lower() in _TABLE_SUFFIXES


def take_prediction_images(uploaded: Any, active: ActiveModel) -> None:
    """Read new images from the Predict page's uploader once, when a new file arrives, and make
    their features the cases to score (their images kept for the prediction cards)."""
    # Deferred for start-up speed: the explaining helpers load scikit-learn and shap.
    from medimg_core.ui import explaining

    if uploaded is None:
        return
    seen = f"{uploaded.name}:{uploaded.size}:{getattr(uploaded, 'file_id', '')}:{active.key}"
    if st.session_state.get(_PREDICT_SEEN) == seen:
        return
    st.session_state[_PREDICT_SEEN] = seen
    images = prediction_images(active, uploaded.getvalue(), uploaded.name)
    _hold(images.image_set)
    frame = images.frame
    table = LoadedTable(
        frame=frame,
        name=uploaded.name,
        content_hash=frame_hash(frame),
        encoding=None,
        delimiter=None,
        format="images",
        notes=images.notes,
    )
    explaining.set_new_cases(table)
    st.session_state[PREDICTION_IMAGES] = image_context(images, table.content_hash, uploaded.name)
    release_uploads()


@st.cache_resource(show_spinner=False)
def _upload_holds() -> tuple[threading.Lock, dict[str, set[Path]], set[Path]]:
    """Shared by every session: the upload folders each session uses, and every upload folder
    a session of this server has used (only those are ever removed)."""
    return threading.Lock(), {}, set()


def _upload_folder(image_set: ImageSet | VolumeStudy | None, home: Path) -> Path | None:
    """The workspace folder an uploaded image set was unpacked into (None for a server folder
    or an npz, which leave nothing on disk)."""
    from medimg_core.imaging.archives import is_upload_folder

    root = None if image_set is None else image_set.root
    if root is None:
        return None
    root = root.resolve()
    base = home.resolve()
    for candidate in (root, *root.parents):
        if is_upload_folder(candidate, base):
            return candidate
        if candidate == base:
            break
    return None


def _session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "bare"


def _session_alive(session: str) -> bool:
    try:
        return not Runtime.exists() or bool(Runtime.instance().is_active_session(session))
    except Exception:  # the runtime's internals changed: keep the folders rather than guess
        return True


def _contexts_in_session() -> list[ImageContext]:
    active = state.get(state.ACTIVE)
    found = [
        state.get(state.IMAGES),
        getattr(active, "images", None),
        st.session_state.get(PREDICTION_IMAGES),
    ]
    return [ctx for ctx in found if isinstance(ctx, ImageContext)]


def _hold(image_set: ImageSet | VolumeStudy) -> None:
    """Mark an upload's folder as used by this session before its features are extracted, so
    that another session's clean-up cannot remove it meanwhile."""
    home = workspace_home()
    folder = _upload_folder(image_set, home)
    if folder is None:
        return
    lock, holds, known = _upload_holds()
    with lock:
        holds.setdefault(_session_id(), set()).add(folder)
        known.add(folder)


def release_uploads() -> tuple[Path, ...]:
    """Remove what uploads left in the workspace once no session uses them.

    A session uses the images of its working table, of its active model (for the case images
    on Explain) and of its new cases on Predict. An upload is removed when every session that
    used it has replaced it or has ended (sessions that ended are noticed at the next upload by
    anyone). Only folders unpacked for sessions of this server are removed, never one the
    command line is using.

    Returns
    -------
    tuple of Path
        The folders removed.
    """
    from medimg_core.imaging.archives import remove_upload

    home = workspace_home()
    mine = {f for ctx in _contexts_in_session() if (f := _upload_folder(ctx.table.image_set, home))}
    lock, holds, known = _upload_holds()
    session = _session_id()
    with lock:
        holds[session] = mine
        known.update(mine)
        for other in [s for s in holds if s != session and not _session_alive(s)]:
            del holds[other]
        in_use: set[Path] = set().union(*holds.values())
        unused = sorted(known - in_use)
        removed = tuple(f for f in unused if remove_upload(f, home.resolve()))
        known.difference_update(unused)
    if removed:
        # Cached image sets of a removed folder would point at nothing: forget them.
        open_archive.clear()
        plock, store = _prediction_store()
        with plock:
            for key in [
                k for k, t in store.items() if _upload_folder(t.image_set, home) in removed
            ]:
                del store[key]
    return removed


def prediction_context(table: LoadedTable | None) -> ImageContext | None:
    """The images behind the new cases ``table`` on the Predict page (None for a table file)."""
    ctx: ImageContext | None = st.session_state.get(PREDICTION_IMAGES)
    if ctx is None or table is None or ctx.table_hash != table.content_hash:
        return None
    return ctx


def prediction_cards(
    scored: review.ScoredCases, ctx: ImageContext, *, key: str, per_row: int = 4, rows: int = 3
) -> None:
    """Each scored image with its decision, probability and top reasons, one page at a time."""
    # Deferred for start-up speed: the explaining helpers load scikit-learn and shap.
    from medimg_core.ui import explaining

    if scored.cleaning is None or scored.n_scored == 0:
        return
    # Scored rows follow the kept input rows, whose index is the 1-based row of the input.
    input_rows = [int(i) - 1 for i in scored.cleaning.data.index]
    frame_keys = list(ctx.table.frame.index)
    positions = [ctx.positions.get(frame_keys[r]) for r in input_rows]
    id_column = "case" if "case" in ctx.table.frame.columns else "file"
    files = ctx.table.frame[id_column].astype(str).to_numpy()
    page_size = per_row * rows
    n = len(positions)
    n_pages = max(1, math.ceil(n / page_size))
    top_col, names_col = st.columns([3, 1], vertical_alignment="bottom")
    page = 1
    if n_pages > 1:
        page = int(
            top_col.number_input(
                f"Page (of {n_pages:,})", min_value=1, max_value=n_pages, value=1, key=f"{key}_page"
            )
        )
    show_names = names_col.checkbox(
        "Show file names",
        key=f"{key}_names",
        help="File names can contain patient names or numbers; they are hidden by default.",
    )
    start = (page - 1) * page_size
    shown = list(range(start, min(n, start + page_size)))
    wanted = tuple(p for p in (positions[j] for j in shown) if p is not None)
    pictures = dict(
        zip(
            wanted,
            thumbnails(set_key(ctx.table.image_set), wanted, 128, ctx.table.image_set),
            strict=True,
        )
    )
    reasons = [c for c in scored.table.columns if str(c).startswith("reason_")]
    probability = scored.probability_column
    for row_start in range(0, len(shown), per_row):
        columns = st.columns(per_row, gap="small")
        for column, j in zip(columns, shown[row_start : row_start + per_row], strict=False):
            row = scored.table.iloc[j]
            position = positions[j]
            unit = "Case" if id_column == "case" else "Image"
            name = files[input_rows[j]] if show_names else f"{unit} {input_rows[j] + 1}"
            with column.container(border=True):
                picture = pictures.get(position) if position is not None else None
                if picture is not None:
                    st.image(picture, width="stretch", clamp=True)
                st.markdown(
                    f"**{row['decision']}** · {probability} = {float(row[probability]):.2f}"
                )
                st.caption(name)
                lines = [str(row[c]) for c in reasons if str(row[c]).strip()]
                if lines:
                    st.caption("\n".join(f"- {explaining.markdown_text(t)}" for t in lines))
