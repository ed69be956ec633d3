"""3D studies: layouts (folders by class, manifest, ZIP), masks, refusals and extraction."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medimg_core.encryption import is_encrypted
from medimg_core.errors import ImageError
from medimg_core.imaging.radiomics.settings import RadiomicsSettings
from medimg_core.imaging.studies import (
    extract_volume_features,
    looks_like_volume_study,
    open_volume_study,
)
from tests.unit.imaging.synthetic_volumes import (
    SHAPE,
    lesion_case,
    nifti_bytes,
    study_zip,
    write_study,
)

# Few families keep these tests quick; the families themselves are tested on the IBSI phantom.
FAST = RadiomicsSettings.from_mapping(
    {
        "setting": {"binWidth": 25},
        "featureClass": {"shape": None, "firstorder": None, "glcm": ["Contrast", "JointEnergy"]},
    }
)


def test_a_folder_by_class_with_masks_is_a_study_of_cases(tmp_path: Path) -> None:
    root = write_study(tmp_path / "study", 3, seed=1)
    assert looks_like_volume_study(root)
    study = open_volume_study(root, workspace=tmp_path / "ws")
    assert study.layout == "class-folders"
    assert len(study) == 6
    assert study.class_counts == {"benign": 3, "malignant": 3}
    assert study.records["case"].tolist()[:2] == ["ben00", "ben01"]
    assert study.records["mask"].iloc[0] == "masks/benign/ben00.nii.gz"
    volume, mask = study.load(0)
    assert volume.array.shape == SHAPE
    assert volume.spacing == pytest.approx((2.0, 1.0, 1.0))
    assert mask.dtype == bool and 100 < mask.sum() < 3000


def test_a_manifest_names_images_masks_labels_and_patients(tmp_path: Path) -> None:
    root = write_study(tmp_path / "study", 2, seed=2, manifest=True)
    study = open_volume_study(root, workspace=tmp_path / "ws")
    assert study.layout == "manifest"
    assert set(study.records.columns) >= {"case", "label", "patient_id", "image", "mask"}
    assert study.records["patient_id"].tolist() == ["P000b", "P001b", "P000m", "P001m"]
    assert "manifest" in study.notes[0]


def test_an_uploaded_zip_is_stored_encrypted_and_still_read(tmp_path: Path) -> None:
    data = study_zip(2, seed=3)
    assert looks_like_volume_study(data)
    study = open_volume_study(data, name="up.zip", workspace=tmp_path / "ws")
    source = Path(study.records["source"].iloc[0])
    assert is_encrypted(source)
    assert b"\x1f\x8b" not in source.read_bytes()[:2]  # not the gzip of the NIfTI in clear
    volume, mask = study.load(0)
    assert volume.array.shape == SHAPE and mask.any()


def test_a_2d_image_zip_is_not_a_volume_study() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("a/x.png", b"\x89PNG")
    assert not looks_like_volume_study(buffer.getvalue())


def test_a_case_without_its_mask_is_left_out_and_named(tmp_path: Path) -> None:
    root = write_study(tmp_path / "study", 2, seed=4)
    (root / "masks" / "benign" / "ben01.nii.gz").unlink()
    study = open_volume_study(root, workspace=tmp_path / "ws")
    assert len(study) == 3
    assert [p.file for p in study.problems] == ["benign/ben01.nii.gz"]
    assert "no mask" in study.problems[0].reason


def test_no_masks_at_all_says_how_to_give_them(tmp_path: Path) -> None:
    root = write_study(tmp_path / "study", 2, seed=5)
    for path in sorted((root / "masks").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "masks").rmdir()
    with pytest.raises(ImageError, match="no masks/ folder and no manifest"):
        open_volume_study(root, workspace=tmp_path / "ws")


def test_a_manifest_without_mask_column_is_refused_with_the_columns_it_needs(
    tmp_path: Path,
) -> None:
    root = write_study(tmp_path / "study", 2, seed=6, manifest=True)
    frame = pd.read_csv(root / "manifest.csv").drop(columns="mask")
    frame.to_csv(root / "manifest.csv", index=False)
    with pytest.raises(ImageError, match=r"lacks the column\(s\) \['mask'\]"):
        open_volume_study(root, workspace=tmp_path / "ws")


def test_manifest_paths_may_not_leave_the_study(tmp_path: Path) -> None:
    root = write_study(tmp_path / "study", 2, seed=7, manifest=True)
    (tmp_path / "outside.nii.gz").write_bytes(nifti_bytes(np.zeros(SHAPE, np.int16)))
    frame = pd.read_csv(root / "manifest.csv")
    frame.loc[0, "image"] = "../outside.nii.gz"
    frame.to_csv(root / "manifest.csv", index=False)
    study = open_volume_study(root, workspace=tmp_path / "ws")
    assert len(study) == 3
    assert "is not in the study" in study.problems[0].reason


def test_one_class_is_refused_for_training(tmp_path: Path) -> None:
    root = write_study(tmp_path / "study", 2, seed=8)
    for path in sorted((root / "malignant").rglob("*")):
        path.unlink()
    (root / "malignant").rmdir()
    with pytest.raises(ImageError, match="only one class"):
        open_volume_study(root, workspace=tmp_path / "ws")


def test_features_one_row_per_case_with_settings_for_the_card(tmp_path: Path) -> None:
    root = write_study(tmp_path / "study", 3, seed=9)
    study = open_volume_study(root, workspace=tmp_path / "ws")
    table = extract_volume_features(study, FAST, workers=1)
    assert table.settings["kind"] == "radiomics"
    assert list(table.frame.columns[:2]) == ["case", "label"]
    assert len(table.frame) == 6
    assert "original_shape_MeshVolume" in table.feature_names
    assert "original_glcm_Contrast" in table.feature_names
    assert table.roles().exclude == ("case",)
    volume = table.frame["original_shape_MeshVolume"]
    by_class = volume.groupby(table.frame["label"]).mean()
    assert by_class["malignant"] > 2 * by_class["benign"]  # larger lesions, as generated
    descriptions = table.descriptions
    assert set(descriptions) == set(table.feature_names)
    assert "IBSI" in descriptions["original_glcm_Contrast"]


def test_two_workers_give_exactly_the_serial_table(tmp_path: Path) -> None:
    root = write_study(tmp_path / "study", 2, seed=10)
    study = open_volume_study(root, workspace=tmp_path / "ws")
    one = extract_volume_features(study, FAST, workers=1)
    two = extract_volume_features(study, FAST, workers=2)
    pd.testing.assert_frame_equal(one.frame, two.frame)


def test_a_case_whose_mask_geometry_differs_is_left_out_with_both_geometries(
    tmp_path: Path,
) -> None:
    root = write_study(tmp_path / "study", 2, seed=11)
    rng = np.random.default_rng(0)
    _, mask = lesion_case(rng, "benign", shape=(SHAPE[0], SHAPE[1], SHAPE[2] + 2))
    (root / "masks" / "benign" / "ben00.nii.gz").write_bytes(nifti_bytes(mask))
    study = open_volume_study(root, workspace=tmp_path / "ws")
    table = extract_volume_features(study, FAST, workers=1)
    assert len(table.frame) == 3
    left = [p for p in table.problems if p.file == "ben00"]
    assert left and "34" in left[0].reason and "32" in left[0].reason


def test_thumbnail_is_the_lesion_slice(tmp_path: Path) -> None:
    root = write_study(tmp_path / "study", 1, seed=12)
    study = open_volume_study(root, workspace=tmp_path / "ws")
    thumb = study.thumbnail(0, max_side=64)
    assert thumb.dtype == np.uint8 and max(thumb.shape) == 64
    assert thumb.std() > 10


_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["../x.nii.gz", "/etc/passwd", "", " ", "./", "images/ben00.nii.gz"]),
    st.none(),
    st.floats(allow_nan=True),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.fixed_dictionaries({"case": _TEXT, "image": _TEXT, "mask": _TEXT}), max_size=6
    ),
    extra=st.booleans(),
)
def test_any_manifest_is_read_or_refused_with_an_image_error(
    tmp_path: Path, rows: list[dict[str, object]], extra: bool
) -> None:
    root = tmp_path / "prop"
    if not root.exists():
        write_study(root, 1, seed=13, manifest=True)
    frame = pd.DataFrame(rows, columns=["case", "image", "mask"])
    if extra:
        frame["label"] = "benign"
    try:
        study = open_volume_study(root, manifest=frame, workspace=tmp_path / "ws", min_classes=0)
    except ImageError:
        return
    # Whatever was accepted points inside the study.
    for column in ("source", "mask_source"):
        for path in study.records[column]:
            assert Path(path).resolve().is_relative_to(root.resolve())


def test_an_upload_in_small_windows_gives_the_table_of_the_folder_in_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medimg_core.imaging import studies

    folder = open_volume_study(write_study(tmp_path / "study", 2, seed=14), workspace=tmp_path)
    upload = open_volume_study(study_zip(2, seed=14), name="up.zip", workspace=tmp_path / "ws")
    monkeypatch.setattr(studies, "_WINDOW_BYTES", 1)  # every case decrypted in its own window
    in_clear = extract_volume_features(folder, FAST, workers=1).frame
    uploaded = extract_volume_features(upload, FAST, workers=1).frame
    pd.testing.assert_frame_equal(uploaded, in_clear)
