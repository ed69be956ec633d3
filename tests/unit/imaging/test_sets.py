"""Image sets: layouts, labels tables, masks, DICOM folders and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medimg_core.errors import ImageError
from medimg_core.imaging.features import extract_features
from medimg_core.imaging.pixels import LoadedImage
from medimg_core.imaging.sets import open_image_set
from medimg_core.privacy import pseudonymise
from tests.unit.imaging.synthetic import gradient, png_bytes, save

KEY = b"images-test-key-0123456789abcdef"


def class_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (16, 16)) -> Path:
    for k, (label, n) in enumerate(counts.items()):
        for i in range(n):
            save(root / label / f"{label}_{i}.png", gradient(*size, seed=10 * k + i))
    return root


def test_class_folders(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "set", {"normal": 3, "pneumonia": 2})
    s = open_image_set(root, key=KEY)
    assert s.layout == "class-folders"
    assert s.class_counts == {"normal": 3, "pneumonia": 2}
    assert list(s.records.columns[:2]) == ["file", "label"]
    assert s.records["file"].iloc[0] == "normal/normal_0.png"
    assert s.problems == ()
    assert any("One sub-folder per class" in n for n in s.notes)
    img = s.load(0)
    assert img.pixels.shape == (16, 16)
    assert s.thumbnail(0, max_side=8).shape == (8, 8)


def test_iter_images_streams_and_reports_problems(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "set", {"a": 2, "b": 2})
    stream = open_image_set(root, key=KEY).iter_images(size=8)
    assert not isinstance(stream, list)
    items = list(stream)
    assert len(items) == 4 and all(isinstance(img, LoadedImage) for _, img in items)
    assert items[0][1].pixels.shape == (8, 8)


def test_unreadable_files_are_listed_and_the_rest_kept(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "set", {"normal": 2, "pneumonia": 2})
    good = png_bytes(gradient(32, 32))
    (root / "normal" / "cut.png").write_bytes(good[: len(good) // 2])
    (root / "pneumonia" / "notes.txt").write_text("not an image", encoding="utf-8")
    s = open_image_set(root, key=KEY)
    assert len(s) == 4
    problems = {p.file: p.reason for p in s.problems}
    assert "not an image" in problems["pneumonia/notes.txt"]
    assert "corrupt or truncated" in problems["normal/cut.png"]
    assert any("2 file(s) were left out" in n for n in s.notes)


def test_nothing_readable_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_text("nope", encoding="utf-8")
    with pytest.raises(ImageError, match=r"No readable image in 'tmp"):
        open_image_set(tmp_path, name="tmp", key=KEY)


def test_empty_class_folder_and_single_class_are_refused(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "one", {"normal": 3})
    (root / "pneumonia").mkdir()
    with pytest.raises(ImageError, match=r"class folder\(s\) \['pneumonia/'\] hold no readable"):
        open_image_set(root, key=KEY)
    (root / "pneumonia").rmdir()
    with pytest.raises(ImageError, match=r"only one class, 'normal' \(3 images\); .* at least 2"):
        open_image_set(root, key=KEY)


def test_flat_folder_is_unlabelled_for_prediction_only(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / f"case{i}.png", gradient(seed=i))
    with pytest.raises(ImageError, match=r"has no labels; put each class's images"):
        open_image_set(tmp_path, key=KEY)
    s = open_image_set(tmp_path, min_classes=0, key=KEY)
    assert s.layout == "unlabelled" and not s.has_labels and len(s) == 3


def test_labels_table_joins_clinical_columns_and_reports_both_mismatches(tmp_path: Path) -> None:
    for i in range(4):
        save(tmp_path / "imgs" / f"img{i}.png", gradient(seed=i))
    pd.DataFrame(
        {
            "file": ["img0.png", "imgs/img1.png", "img2.png", "gone.png"],
            "label": ["benign", "malignant", "malignant", "benign"],
            "patient_id": ["p1", "p1", "p2", "p3"],
            "age": [50, 51, 60, 70],
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    s = open_image_set(tmp_path, key=KEY)
    assert s.layout == "labels-table"
    assert list(s.records["file"]) == ["imgs/img0.png", "imgs/img1.png", "imgs/img2.png"]
    assert list(s.records["patient_id"]) == ["p1", "p1", "p2"]
    assert list(s.records["age"]) == [50, 51, 60]
    assert s.extra_columns == ("age",)
    assert s.missing_files == ("gone.png",)
    assert s.unlabelled_files == ("imgs/img3.png",)
    text = " ".join(s.notes)
    assert "1 labels-table row(s) name a file that is not in the set" in text
    assert "1 image(s) are not in the labels table" in text


def test_labels_table_as_dataframe_without_file_column(tmp_path: Path) -> None:
    class_folder(tmp_path, {"a": 1, "b": 1})
    with pytest.raises(ImageError, match=r"has no 'file' column .* add a column 'file'"):
        open_image_set(tmp_path, labels=pd.DataFrame({"name": ["a/a_0.png"]}), key=KEY)
    dup = pd.DataFrame({"file": ["a_0.png", "a_0.png"], "label": [1, 2]})
    with pytest.raises(ImageError, match=r"names 1 file\(s\) more than once"):
        open_image_set(tmp_path, labels=dup, key=KEY)


def test_masks_folder_is_attached(tmp_path: Path) -> None:
    root = class_folder(tmp_path, {"a": 2, "b": 2})
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 4:12] = 255
    for label in ("a", "b"):
        for i in range(2):
            save(root / "masks" / f"{label}_{i}.png", mask)
    s = open_image_set(root, key=KEY)
    assert s.has_masks and s.class_counts == {"a": 2, "b": 2}
    loaded = s.load_mask(0)
    assert loaded is not None and loaded.sum() == 64
    assert any("Masks from 'masks/' for 4 of 4 images" in n for n in s.notes)


def test_tasks_of_any_positions_read_those_records(tmp_path: Path) -> None:
    root = class_folder(tmp_path, {"a": 3, "b": 3})
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 4:12] = 255
    save(root / "masks" / "a_1.png", mask)
    s = open_image_set(root, key=KEY)
    records = s.records
    expected = [
        (
            str(records["source"].iloc[i]),
            None if pd.isna(records["mask"].iloc[i]) else str(records["mask"].iloc[i]),
            str(records["file"].iloc[i]),
            None,
        )
        for i in range(len(records))
    ]
    assert s.tasks() == expected
    assert s.tasks([4, 0, 2]) == [expected[4], expected[0], expected[2]]
    assert [s.task(i) for i in range(len(records))] == expected
    assert sum(task[1] is not None for task in expected) == 1


def test_mixed_sizes_are_stated(tmp_path: Path) -> None:
    class_folder(tmp_path, {"a": 2, "b": 1}, size=(16, 16))
    save(tmp_path / "b" / "wide.png", gradient(16, 32))
    s = open_image_set(tmp_path, key=KEY)
    assert s.sizes == {(16, 16): 3, (16, 32): 1}
    assert s.common_size == (16, 16)
    note = next(n for n in s.notes if "sizes" in n)
    assert "most common, 16×16" in note and "nothing is cropped" in note
    assert s.load(3, size=16).pixels.shape == (16, 16)


def test_dicom_folder_keeps_only_a_pseudonymous_patient_key(tmp_path: Path) -> None:
    for label, name in (("ct", "CT_small.dcm"), ("mr", "MR_small.dcm")):
        (tmp_path / label).mkdir()
        (tmp_path / label / "scan.dcm").write_bytes(Path(get_testdata_file(name)).read_bytes())
    s = open_image_set(tmp_path, key=KEY)
    assert list(s.records["patient_id"]) == [
        pseudonymise("1CT1", KEY),
        pseudonymise(str(pydicom.dcmread(get_testdata_file("MR_small.dcm")).PatientID), KEY),
    ]
    features = extract_features(s, size=32, workers=1)
    text = s.records.to_csv() + " ".join(s.notes) + features.frame.to_csv()
    text += " ".join(features.notes) + repr(features.settings) + repr(s.load(0))
    for secret in ("CompressedSamples", "1CT1", "JFK IMAGING", "20040119", "ABCD1234"):
        assert secret not in text
    assert any("de-identified" in n for n in s.notes)


def test_dicom_without_pixels_and_burned_in_text_become_problems(tmp_path: Path) -> None:
    class_folder(tmp_path, {"a": 1, "b": 1})
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    burned = ds.copy()
    burned.BurnedInAnnotation = "YES"
    burned.save_as(tmp_path / "a" / "burned.dcm")
    del ds.PixelData
    ds.save_as(tmp_path / "b" / "nopixels.dcm")
    s = open_image_set(tmp_path, key=KEY)
    problems = {p.file: p.reason for p in s.problems}
    assert "without pixel data" in problems["b/nopixels.dcm"]
    assert "BurnedInAnnotation = YES" in problems["a/burned.dcm"]
    assert len(s) == 2


def test_not_a_zip_or_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"neither a ZIP archive nor a NumPy .npz"):
        open_image_set(b"plain text", workspace=tmp_path, key=KEY)
    with pytest.raises(ImageError, match=r"does not exist; give a folder of images"):
        open_image_set(tmp_path / "nowhere", key=KEY)
