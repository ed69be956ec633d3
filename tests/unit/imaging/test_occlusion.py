"""Occlusion sensitivity maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from medimg_core.errors import ConfigError, DataError
from medimg_core.imaging.features import FeatureSettings, features_from_pixels
from medimg_core.imaging.occlusion import OcclusionMap, model_predict_fn, occlusion_map


def top_left_brightness(batch: np.ndarray) -> np.ndarray:
    return batch[:, :8, :8].mean(axis=(1, 2))


def test_map_marks_the_patches_the_prediction_depends_on() -> None:
    image = np.full((16, 16), 0.8, dtype=np.float32)
    result = occlusion_map(image, top_left_brightness, patch=4, baseline="zero")
    assert isinstance(result, OcclusionMap)
    assert result.heatmap.shape == (16, 16)
    assert result.base_probability == pytest.approx(0.8)
    assert (result.heatmap[:8, :8] > 0).all()
    assert np.allclose(result.heatmap[8:, :], 0) and np.allclose(result.heatmap[:, 8:], 0)
    assert result.heatmap[0, 0] == pytest.approx(0.8 * 16 / 64)
    assert result.n_evaluations == 16 + 1
    assert "not a lesion segmentation" in result.caption
    assert "4×4-pixel patch" in result.caption and "black" in result.caption


def test_all_variants_are_scored_in_one_batch() -> None:
    calls: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return top_left_brightness(batch)

    occlusion_map(np.random.default_rng(0).random((28, 28)), predict, patch=4)
    assert calls == [50]


def test_overlapping_patches_cover_the_border() -> None:
    image = np.random.default_rng(1).random((10, 10))
    result = occlusion_map(image, top_left_brightness, patch=4, stride=3)
    assert result.stride == 3
    # starts 0, 3, 6 per side: every pixel is covered, the last patch touches the border
    assert result.n_evaluations == 3 * 3 + 1
    assert np.isfinite(result.heatmap).all()


def test_two_column_output_explains_the_positive_class_by_default() -> None:
    def predict(batch: np.ndarray) -> np.ndarray:
        p = top_left_brightness(batch)
        return np.column_stack([1 - p, p])

    image = np.full((8, 8), 0.6)
    result = occlusion_map(image, predict, patch=4, baseline=0.0, target_name="pneumonia")
    assert result.base_probability == pytest.approx(0.6)
    assert result.heatmap[0, 0] > 0
    assert "'pneumonia'" in result.caption
    other = occlusion_map(image, predict, patch=4, baseline=0.0, target=0)
    assert other.heatmap[0, 0] < 0


def test_invalid_arguments() -> None:
    image = np.zeros((8, 8))
    with pytest.raises(ConfigError, match=r"patch=9, stride=9 do not fit a 8×8 image"):
        occlusion_map(image, top_left_brightness, patch=9)
    with pytest.raises(ConfigError, match=r"baseline must be 'mean', 'zero' or a number"):
        occlusion_map(image, top_left_brightness, baseline="blur")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"predict_fn returned 1 rows for 5 images"):
        occlusion_map(image, lambda b: np.zeros(1), patch=4)
    with pytest.raises(DataError, match=r"needs a 2-D grayscale image"):
        occlusion_map(np.zeros((2, 8, 8)), top_left_brightness)


class FeatureModel:
    """A fitted classifier over image features plus one clinical column (like MedimgModel)."""

    def __init__(self, settings: FeatureSettings) -> None:
        rng = np.random.default_rng(0)
        images = rng.random((40, 12, 12)).astype(np.float32)
        images[20:, :6, :6] += 0.5
        frame = features_from_pixels(np.clip(images, 0, 1), settings=settings)
        frame.insert(0, "age", 50.0)
        self.columns = list(frame.columns)
        self.model = LogisticRegression(max_iter=2000).fit(frame, [0] * 20 + [1] * 20)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        assert list(frame.columns) == self.columns
        return self.model.predict_proba(frame)


def test_model_predict_fn_composes_features_context_and_model() -> None:
    settings = FeatureSettings(size=(12, 12))
    model = FeatureModel(settings)
    predict = model_predict_fn(model, settings.to_dict(), context={"age": 50.0})
    image = np.clip(np.random.default_rng(3).random((12, 12)), 0, 1)
    result = occlusion_map(image, predict, patch=3)
    assert result.heatmap.shape == (12, 12)
    assert 0 <= result.base_probability <= 1
    assert result.n_evaluations == 17
