"""Tests for medimg_core.modelling.image_prediction: predictions named by image file, occlusion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.imaging.feature_table import features_for_prediction
from medimg_core.modelling.image_prediction import image_predictions, occlusion_for_case
from medimg_core.store.persistence import load_model
from tests.unit.imaging.synthetic import CT_SMALL, Trained, image_folder, trained_on_textures


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    yield from trained_on_textures(tmp_path_factory)


def test_predictions_are_named_by_file(trained: Trained, tmp_path: Path) -> None:
    loaded = load_model(trained.model_dir)
    new = image_folder(tmp_path / "new", n=3, seed=500)
    table = features_for_prediction(loaded.card, new / "pneumonia", workers=1)
    assert table.image_set.layout == "unlabelled"
    predictions = image_predictions(loaded.model, table, explain_top=2)
    frame = predictions.frame
    assert list(frame.columns) == [
        "file",
        "p_pneumonia",
        "decision",
        "threshold",
        "ood_range",
        "ood_features",
        "ood_distance",
        "ood_flag",
        "reason_1",
        "reason_2",
    ]
    assert list(frame["file"]) == ["pneumonia_00.png", "pneumonia_01.png", "pneumonia_02.png"]
    assert (frame["decision"] == "pneumonia").all()
    assert frame["reason_1"].str.contains(r" = .*\(").all()


def test_single_image_and_dicom_prediction(trained: Trained, home: Path) -> None:
    loaded = load_model(trained.model_dir)
    one = features_for_prediction(
        loaded.card, trained.root / "train" / "normal" / "normal_03.png", workers=1
    )
    assert list(one.frame["file"]) == ["normal_03.png"]
    ct = features_for_prediction(loaded.card, CT_SMALL, workers=1)
    assert ct.frame["patient_id"].iloc[0] != "1CT1"
    predictions = image_predictions(loaded.model, ct)
    assert "patient_id" not in predictions.frame.columns
    assert list(predictions.frame["file"]) == ["CT_small.dcm"]
    text = predictions.frame.to_csv() + " ".join(ct.notes)
    assert "1CT1" not in text and "CompressedSamples" not in text


def test_occlusion_for_case(trained: Trained) -> None:
    loaded = load_model(trained.model_dir)
    image_set = trained.table.image_set
    position = int(np.flatnonzero(image_set.records["label"] == "pneumonia")[0])
    occlusion = occlusion_for_case(loaded.model, loaded.card, image_set, position)
    assert occlusion.heatmap.shape == (16, 16)
    assert occlusion.target == "pneumonia"
    assert occlusion.base_probability > 0.5
    assert occlusion.n_evaluations == 1 + (16 // occlusion.patch) ** 2
    assert "not a lesion segmentation" in occlusion.caption
    with pytest.raises(ConfigError, match="Case 99 is not in"):
        occlusion_for_case(loaded.model, loaded.card, image_set, 99)
