"""Streamlit helpers for 3D studies: radiomic features with a progress bar, the study summary on
the Data page, and a case's volume as three orthogonal slices with its mask outline.

Features are kept in a server-wide store keyed on the study's content hash and the radiomics
settings, so two users share a result only when they gave the same volumes and settings. A
case's volume is read when it is shown and kept in a small per-server cache keyed the same way.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from medimg_core.errors import MedimgError
from medimg_core.ui import widgets

if TYPE_CHECKING:
    import numpy as np

    from medimg_core.imaging.feature_table import ImageTable
    from medimg_core.imaging.radiomics.settings import RadiomicsSettings
    from medimg_core.imaging.studies import VolumeStudy
    from medimg_core.imaging.volumes import Volume
    from medimg_core.ui.session import ImageContext

__all__ = [
    "SETTINGS_KEY",
    "case_label",
    "extract",
    "feature_catalogue_table",
    "is_volume_context",
    "settings",
    "settings_uploader",
    "show_case",
    "study_summary",
    "viewer",
]

SETTINGS_KEY = "radiomics_settings"
"""Session key of the radiomics settings read from an uploaded YAML (default settings without)."""

_STORE_SIZE = 8
_SMALL_STUDY = 24


def is_volume_context(ctx: ImageContext | None) -> bool:
    """Whether an image context holds a 3D study (rather than 2D images)."""
    return ctx is not None and getattr(ctx.table.image_set, "kind", None) == "volumes"


def settings_uploader() -> None:
    """An optional radiomics settings YAML (PyRadiomics' layout) for 3D studies; its settings
    are used for the next study read, saved with the model and reused at prediction."""
    from medimg_core.imaging.radiomics.settings import RadiomicsSettings

    upload = st.file_uploader(
        "Radiomics settings for 3D volumes (optional YAML, PyRadiomics layout)",
        type=["yaml", "yml"],
        key="radiomics_settings_upload",
        help="setting (binWidth or binCount, resampledPixelSpacing, interpolator, "
        "resegmentRange, label, geometryTolerance), imageType: Original, featureClass. Without "
        "a file medimg uses the defaults shown in docs/radiomics.example.yaml. With a file, a "
        "ZIP whose cases are folders of DICOM series is read as 3D cases too. Upload it before "
        "the ZIP.",
    )
    if upload is None:
        st.session_state.pop(SETTINGS_KEY, None)
        return
    try:
        st.session_state[SETTINGS_KEY] = RadiomicsSettings.from_yaml(upload.getvalue())
    except MedimgError as exc:
        st.session_state.pop(SETTINGS_KEY, None)
        st.error(str(exc), icon=":material/error:")


def settings() -> RadiomicsSettings:
    """The session's radiomics settings: an uploaded YAML's, else the defaults."""
    from medimg_core.imaging.radiomics.settings import RadiomicsSettings

    chosen = st.session_state.get(SETTINGS_KEY)
    return chosen if isinstance(chosen, RadiomicsSettings) else RadiomicsSettings()


@st.cache_resource(show_spinner=False, max_entries=1)
def _feature_store() -> tuple[threading.Lock, OrderedDict[tuple[str, str], Any]]:
    return threading.Lock(), OrderedDict()


def extract(study: VolumeStudy) -> ImageTable:
    """The radiomic features of every case of ``study`` with the session's settings (cached on
    content and settings), with a progress bar."""
    from medimg_core.imaging.feature_table import ImageTable
    from medimg_core.imaging.studies import extract_volume_features

    chosen = settings()
    key = (study.content_hash, json.dumps(chosen.to_dict(), sort_keys=True))
    lock, store = _feature_store()
    with lock:
        cached = store.get(key) if study.content_hash else None
        if cached is not None:
            store.move_to_end(key)
            return ImageTable(
                features=cached, image_set=study, notes=cached.notes, problems=cached.problems
            )
    workers = 1 if len(study) < _SMALL_STUDY else None
    with widgets.progress_bar(f"Computing radiomic features of {len(study):,} cases…") as report:
        features = extract_volume_features(study, chosen, workers=workers, progress=report)
    if study.content_hash:
        with lock:
            store[key] = features
            while len(store) > _STORE_SIZE:
                store.popitem(last=False)
    return ImageTable(
        features=features, image_set=study, notes=features.notes, problems=features.problems
    )


@st.cache_resource(show_spinner="Reading the volume and its mask…", max_entries=4)
def _case(content_hash: str, position: int, settings_json: str, _study: VolumeStudy) -> Any:
    from medimg_core.imaging.radiomics.settings import RadiomicsSettings
    from medimg_core.imaging.volumes import GeometryTolerance

    s = RadiomicsSettings.from_dict(json.loads(settings_json))
    tol = s.geometry_tolerance
    tolerance = (
        GeometryTolerance(spacing=tol, origin=tol, direction=tol)
        if tol is not None
        else GeometryTolerance()
    )
    return _study.load(position, label=s.label, tolerance=tolerance)


def _load(
    study: VolumeStudy, position: int, chosen: RadiomicsSettings
) -> tuple[Volume, np.ndarray]:
    payload = json.dumps(chosen.to_dict(), sort_keys=True)
    volume, mask = _case(study.content_hash or study.name, position, payload, study)
    return volume, mask


def case_label(study: VolumeStudy, position: int, *, show_names: bool) -> str:
    """How a case reads in a picker: its number and class, its name only when asked (case names
    can hold patient names or numbers)."""
    record = study.records.iloc[position]
    label = record.get("label")
    cls = "" if label is None or pd.isna(label) else f" · {label}"
    return f"{record['case']}{cls}" if show_names else f"Case #{position + 1}{cls}"


@st.fragment
def viewer(
    study: VolumeStudy,
    position: int,
    *,
    key: str,
    chosen: RadiomicsSettings | None = None,
    height: int = 360,
) -> None:
    """Three orthogonal slices through the case's lesion with the mask outline, and the
    window / level controls (presets for CT, automatic for MR, or set by hand).

    A fragment: moving the slice or the window redraws the slices only, not the page."""
    from medimg_core.reporting.figures.volumes import (
        CT_WINDOWS,
        Window,
        default_window,
        lesion_centre,
        orthogonal_slices_figure,
    )

    try:
        volume, mask = _load(study, position, chosen or settings())
    except MedimgError as exc:
        st.warning(f"This case's volume cannot be shown: {exc}", icon=":material/warning:")
        return
    array = volume.array
    if volume.direction[8] < 0:
        # Slices stored feet first: shown head up, as a reader expects (display only).
        array, mask = array[::-1], mask[::-1]
    automatic = default_window(array, mask, volume.modality)
    presets: dict[str, Window] = {automatic.name: automatic}
    presets.update({w.name: w for w in CT_WINDOWS.values()})
    names = [*presets, "Custom"]
    preset_col, level_col, width_col = st.columns([2, 1.5, 1.5], vertical_alignment="bottom")
    chosen_name = preset_col.selectbox(
        "Window",
        names,
        key=f"{key}_window",
        help="Which intensities are shown from black to white. The first choice is medimg's "
        "default for this volume; CT presets are in Hounsfield units.",
    )
    base = presets.get(chosen_name, automatic)
    level = level_col.number_input(
        "Level (centre)",
        value=float(base.level),
        step=10.0,
        key=f"{key}_level_{chosen_name}",
        disabled=chosen_name != "Custom",
    )
    width = width_col.number_input(
        "Width",
        value=float(base.width),
        min_value=1.0,
        step=10.0,
        key=f"{key}_width_{chosen_name}",
        disabled=chosen_name != "Custom",
    )
    window = (
        Window(level=float(level), width=float(width), name="Custom")
        if chosen_name == "Custom"
        else base
    )
    centre = lesion_centre(mask)
    z, y, x = array.shape
    slice_col, _ = st.columns([3, 2])
    axial = slice_col.slider(
        "Axial slice",
        min_value=1,
        max_value=int(z),
        value=int(centre[0]) + 1,
        key=f"{key}_slice",
        help="Starts at the slice through the lesion's centre.",
    )
    figure = orthogonal_slices_figure(
        array,
        spacing=volume.spacing,
        mask=mask,
        centre=(int(axial) - 1, int(centre[1]), int(centre[2])),
        window=window,
        height=height,
    )
    st.plotly_chart(figure, key=f"{key}_slices")
    sz, sy, sx = volume.spacing
    st.caption(
        f"{x}×{y}×{z} voxels of {sx:.2f}×{sy:.2f}×{sz:.2f} mm (x×y×z); the red line is the "
        f"segmentation's outline ({int(mask.sum()):,} voxels)."
    )


def show_case(study: VolumeStudy, position: int, *, key: str) -> None:
    """The Explain page's view of a 3D case: its slices and mask, and why there is no
    occlusion map."""
    viewer(study, position, key=key, height=380)
    st.caption(
        "The model reads IBSI radiomic features of the segmented region, not the voxels "
        "themselves: the SHAP values name the features that moved this prediction. An occlusion "
        "map would need the features recomputed for every masked block of the volume, which "
        "medimg does not do for 3D studies."
    )


def feature_catalogue_table(table: ImageTable) -> pd.DataFrame:
    """Each radiomic feature of the table with its meaning, IBSI code and PyRadiomics name."""
    from medimg_core.imaging.radiomics.catalogue import catalogue

    by_column = {spec.column: spec for spec in catalogue()}
    rows = []
    for name in table.features.feature_names:
        spec = by_column.get(name)
        rows.append(
            {
                "feature": name,
                "IBSI code": spec.code if spec else "",
                "PyRadiomics": "yes" if spec and spec.pyradiomics else "no (IBSI only)",
                "meaning": spec.meaning if spec else table.descriptions.get(name, ""),
            }
        )
    return pd.DataFrame(rows)


def study_summary(ctx: ImageContext) -> None:
    """The Data page's account of a 3D study: counts, notes, cases left out, a case viewer and
    the feature catalogue."""
    from medimg_core.imaging.studies import VolumeStudy

    study = ctx.table.image_set
    if not isinstance(study, VolumeStudy):
        raise TypeError("study_summary needs the context of a 3D study")
    features = ctx.table.features
    st.markdown(f"**{ctx.name}** · 3D volumes with segmentations, turned into radiomic features")
    m1, m2, m3 = st.columns(3)
    m1.metric("Cases", f"{len(features.frame):,}", help="Cases whose features were computed.")
    m2.metric(
        "Classes",
        f"{len(study.class_counts):,}",
        help=", ".join(f"{k}: {v:,}" for k, v in study.class_counts.items()) or "No labels.",
    )
    m3.metric(
        "Features per case",
        f"{len(features.feature_names):,}",
        help="IBSI-standard radiomic features of each case's segmented region (see the "
        "catalogue below).",
    )
    widgets.notes(ctx.table.notes)
    problems = ctx.table.problems
    if problems:
        with st.expander(f"{len(problems):,} file(s) or case(s) left out, with the reason"):
            st.dataframe(
                {"case": [p.file for p in problems], "reason": [p.reason for p in problems]},
                hide_index=True,
                width="stretch",
                key="volumes_problems",
            )
    st.markdown("**A case's volume**")
    pick_col, names_col = st.columns([3, 1.4], vertical_alignment="bottom")
    show_names = names_col.checkbox(
        "Show case names",
        key="volumes_names",
        help="Case names can contain patient names or numbers; they are hidden by default.",
    )
    # Only the cases whose features were computed (a case left out cannot be read).
    shown = sorted(set(ctx.positions.values())) or list(range(len(study)))
    position = pick_col.selectbox(
        "Case",
        shown,
        format_func=lambda p: case_label(study, p, show_names=show_names),
        key="volumes_case",
    )
    viewer(study, int(position or 0), key="volumes_viewer")
    with st.expander("What the radiomic features mean (IBSI codes)"):
        st.dataframe(
            feature_catalogue_table(ctx.table),
            hide_index=True,
            width="stretch",
            height=320,
            key="volumes_feature_meanings",
            column_config={
                "feature": st.column_config.TextColumn("Feature", width="medium"),
                "meaning": st.column_config.TextColumn("Meaning", width="large"),
            },
        )
