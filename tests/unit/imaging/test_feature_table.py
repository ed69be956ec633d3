"""Images through the core: image tables, card settings, re-extraction, predictions, occlusion."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from medimg_core.errors import ConfigError, ImageError, LimitError
from medimg_core.imaging.feature_table import (
    feature_descriptions,
    features_for_prediction,
    image_settings_from_card,
    image_table,
    is_image_source,
)
from medimg_core.imaging.features import FeatureSettings
from medimg_core.imaging.pixels import ImageLimits
from medimg_core.modelling.training import train
from medimg_core.store.persistence import build_card, load_model
from medimg_core.tables.loading import load_sample
from medimg_core.tables.roles import Roles
from tests.unit.imaging.synthetic import (
    CT_SMALL,
    FAST,
    VALIDATION,
    Trained,
    image_folder,
    png_bytes,
    texture,
    trained_on_textures,
    zip_bytes,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    yield from trained_on_textures(tmp_path_factory)


def test_is_image_source(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "set", n=1)
    raw = tmp_path / "scan"
    shutil.copy(CT_SMALL, raw)
    (tmp_path / "table.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    assert is_image_source(folder)
    assert is_image_source(str(folder / "normal" / "normal_00.png"))
    for name in ("study.zip", "pneumoniamnist.npz", "scan.dcm", "x.TIFF", "x.jpeg"):
        assert is_image_source(tmp_path / name)
    assert is_image_source(raw)
    for spec in ("sample:wdbc", str(tmp_path / "table.csv"), "features.parquet", "t.xlsx"):
        assert not is_image_source(spec)


def test_image_table_from_class_folders(trained: Trained) -> None:
    table = trained.table
    frame = table.frame
    assert len(frame) == 24
    assert list(frame.columns[:2]) == ["file", "label"]
    assert set(frame["label"]) == {"normal", "pneumonia"}
    assert table.settings["size"] == [16, 16]
    assert table.roles() == Roles(label="label", exclude=("file",))
    assert table.predefined_test() is None
    assert table.problems == ()
    assert any("sub-folder per class" in note for note in table.notes)
    assert set(table.descriptions) == set(table.features.feature_names)


def test_model_learns_the_textures(trained: Trained) -> None:
    assert trained.result.cv.metrics["roc_auc"].value >= 0.9


def test_progress_is_reported(tmp_path: Path) -> None:
    calls: list[tuple[float, str]] = []
    image_table(image_folder(tmp_path, n=3), workers=1, progress=lambda f, m: calls.append((f, m)))
    assert calls[0] == (0.0, "Reading the image set")
    assert calls[-1][0] == 1.0
    assert "6 of 6 images" in calls[-1][1]


def test_bad_files_are_left_out_with_their_reason(tmp_path: Path) -> None:
    root = image_folder(tmp_path, n=4)
    good = (root / "normal" / "normal_00.png").read_bytes()
    (root / "normal" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "pneumonia" / "notes.txt").write_text("not an image", encoding="utf-8")
    table = image_table(root, workers=1)
    assert len(table.frame) == 8
    left_out = {p.file: p.reason for p in table.problems}
    assert set(left_out) == {"normal/truncated.png", "pneumonia/notes.txt"}
    assert "not an image" in left_out["pneumonia/notes.txt"]
    assert "corrupt or truncated" in left_out["normal/truncated.png"]


def test_single_class_is_refused(tmp_path: Path) -> None:
    root = image_folder(tmp_path, n=3)
    shutil.rmtree(root / "pneumonia")
    with pytest.raises(ImageError, match=r"only one class, 'normal' \(3 images\)"):
        image_table(root, workers=1)


def test_dicom_without_pixel_data_is_left_out(tmp_path: Path) -> None:
    root = image_folder(tmp_path, n=3)
    ds = pydicom.dcmread(CT_SMALL)
    del ds.PixelData
    ds.save_as(root / "normal" / "report.dcm")
    table = image_table(root, workers=1)
    assert [p.file for p in table.problems] == ["normal/report.dcm"]
    assert "without pixel data" in table.problems[0].reason
    assert "normal/report.dcm" not in set(table.frame["file"])


def test_zip_of_the_folder(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "src", n=4)
    members = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.png")}
    archive = tmp_path / "study.zip"
    archive.write_bytes(zip_bytes(members))
    table = image_table(archive, workers=1, workspace=tmp_path / "ws")
    assert len(table.frame) == 8
    assert table.image_set.root is not None
    assert table.image_set.root.is_relative_to(tmp_path / "ws" / "uploads")


@pytest.mark.parametrize("member", ["../evil.png", "/etc/evil.png"])
def test_zip_with_unsafe_paths_is_refused(tmp_path: Path, member: str) -> None:
    img = png_bytes(texture("normal", 1))
    archive = zip_bytes({"normal/a.png": img, "pneumonia/b.png": img, member: img})
    with pytest.raises(ImageError, match="refusing to unpack"):
        image_table(archive, workers=1, workspace=tmp_path / "ws")
    assert not (tmp_path / "evil.png").exists()
    assert not (tmp_path / "ws" / "uploads").exists() or not any(
        (tmp_path / "ws" / "uploads").iterdir()
    )


def test_a_zip_refused_while_extracting_leaves_nothing_behind(tmp_path: Path) -> None:
    # Every image 1 × 1: opened fine, refused when its features are computed.
    tiny = png_bytes(np.full((1, 1), 128, np.uint8))
    archive = zip_bytes({"normal/a.png": tiny, "pneumonia/b.png": tiny})
    with pytest.raises(ConfigError, match=r"do not fit a 1×1 image"):
        image_table(archive, workers=1, workspace=tmp_path / "ws")
    assert list((tmp_path / "ws" / "uploads").iterdir()) == []
    # An archive unpacked before (by a session using it) is left alone.
    img = png_bytes(texture("normal", 1))
    good = zip_bytes({"normal/a.png": img, "pneumonia/b.png": img})
    kept = image_table(good, workers=1, workspace=tmp_path / "ws")
    with pytest.raises(ConfigError, match=r"Image size 5 is out of range"):
        image_table(good, workers=1, workspace=tmp_path / "ws", size=5)
    assert kept.image_set.root is not None and kept.image_set.root.is_dir()


def test_zip_over_the_cap_is_refused(tmp_path: Path) -> None:
    img = png_bytes(texture("normal", 1))
    archive = zip_bytes({"normal/a.png": img, "pneumonia/b.png": img})
    with pytest.raises(LimitError, match="would unpack to more than"):
        image_table(
            archive,
            workers=1,
            workspace=tmp_path / "ws",
            limits=ImageLimits(max_unpacked_bytes=len(img)),
        )


def test_labels_table_with_missing_and_unlabelled_files(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    rows = []
    for i in range(6):
        kind = "normal" if i % 2 else "pneumonia"
        Image.fromarray(texture(kind, i)).save(root / f"img{i}.png")
        rows.append({"file": f"img{i}.png", "label": kind, "patient_id": f"P{i // 2}"})
    rows.append({"file": "gone.png", "label": "normal", "patient_id": "P9"})
    labels = pd.DataFrame(rows[1:])
    table = image_table(root, labels=labels, workers=1)
    assert table.image_set.missing_files == ("gone.png",)
    assert table.image_set.unlabelled_files == ("img0.png",)
    assert len(table.frame) == 5
    assert table.roles().id == "patient_id"
    assert any("gone.png" in note for note in table.notes)


def test_medmnist_npz_keeps_its_test_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 16, 16), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1)
    path = tmp_path / "tiny.npz"
    np.savez(path, **arrays)
    table = image_table(path, workers=1)
    test = table.predefined_test()
    assert test is not None and sum(test) == 4
    assert list(table.frame.loc[list(test), "split"].unique()) == ["test"]
    assert "split" in table.roles().exclude


def test_card_stores_image_settings_and_descriptions(trained: Trained) -> None:
    card = load_model(trained.model_dir).card
    stored = card["features"]["image_settings"]
    assert stored == trained.table.settings
    settings = image_settings_from_card(card)
    assert isinstance(settings, FeatureSettings)
    assert settings.size == (16, 16)
    descriptions = card["features"]["descriptions"]
    assert set(descriptions) == set(card["features"]["feature_columns"])
    assert descriptions["glcm_contrast"].startswith("texture contrast")


def test_table_cards_have_no_image_settings() -> None:
    frame = load_sample("wdbc").frame.head(120)
    roles = Roles(label="diagnosis", id="case_id")
    result = train(frame, roles, config=FAST, validation=VALIDATION)
    card = build_card(result, cleaning=None, dataset_name="wdbc")
    assert "image_settings" not in card["features"]
    assert "descriptions" not in card["features"]
    assert image_settings_from_card(card) is None
    with pytest.raises(ConfigError, match="trained on a table, not images: pass a table"):
        features_for_prediction(card, "never-opened")


def test_given_descriptions_override_the_defaults(trained: Trained) -> None:
    card = build_card(
        trained.result,
        cleaning=None,
        dataset_name="textures",
        image_settings=trained.table.settings,
        feature_descriptions={"glcm_contrast": "custom", "not_a_column": "dropped"},
    )
    assert card["features"]["descriptions"] == {"glcm_contrast": "custom"}


def test_feature_descriptions_follow_the_settings() -> None:
    every = feature_descriptions(FeatureSettings(grid=2))
    assert "grid_r2_c2" in every and "grid_r3_c3" not in every
    assert "shape_area" in every
    only = feature_descriptions(FeatureSettings(), ["intensity_mean", "age"])
    assert list(only) == ["intensity_mean"]


def test_prediction_re_extracts_identically(trained: Trained, home: Path) -> None:
    card = load_model(trained.model_dir).card
    again = features_for_prediction(card, trained.root / "train", workers=1)
    names = list(trained.table.features.feature_names)
    pd.testing.assert_frame_equal(
        again.frame[["file", *names]], trained.table.frame[["file", *names]]
    )


def test_prediction_resizes_new_images_to_the_model_size(trained: Trained, tmp_path: Path) -> None:
    card = load_model(trained.model_dir).card
    root = image_folder(tmp_path / "big", n=2, size=32)
    table = features_for_prediction(card, root, workers=1)
    assert table.settings["size"] == [16, 16]
    assert any("model's feature settings" in note for note in table.notes)


def test_a_single_image_cannot_be_trained_on() -> None:
    with pytest.raises(ImageError, match="single image; training needs a folder"):
        image_table(CT_SMALL, workers=1)


def test_masks_must_match_how_the_model_was_trained(trained: Trained, tmp_path: Path) -> None:
    card = load_model(trained.model_dir).card
    root = image_folder(tmp_path / "masked", n=2)
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 4:12] = 255
    (root / "masks").mkdir()
    for png in (root / "normal").glob("*.png"):
        Image.fromarray(mask).save(root / "masks" / png.name)
    with pytest.raises(ConfigError, match="has region masks, but this model was trained on whole"):
        features_for_prediction(card, root, workers=1)
    masked_card = {**card, "features": {**card["features"], "feature_columns": ["shape_area"]}}
    with pytest.raises(ConfigError, match="trained with region masks"):
        features_for_prediction(masked_card, trained.root / "train", workers=1)


def test_evaluation_refuses_unlabelled_images_before_extracting(
    trained: Trained, tmp_path: Path
) -> None:
    card = load_model(trained.model_dir).card
    calls: list[float] = []
    with pytest.raises(ImageError, match="'normal' has no labels, which external validation"):
        features_for_prediction(
            card,
            trained.root / "train" / "normal",
            require_labels=True,
            progress=lambda f, m: calls.append(f),
        )
    assert calls == []
