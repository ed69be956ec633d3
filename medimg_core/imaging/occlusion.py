"""Occlusion sensitivity: how the predicted probability changes as patches of the image are
masked out.

The map explains the *model*, not the anatomy: it shows which parts of the image move this
feature-based model's output (through the features computed from them). It is not a lesion
segmentation and must not be read as one; the caption says so wherever the map is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from medimg_core.errors import ConfigError, DataError
from medimg_core.imaging.features import FeatureSettings, features_from_pixels

__all__ = ["OCCLUSION_CAPTION", "OcclusionMap", "model_predict_fn", "occlusion_map"]

PredictFn = Callable[[np.ndarray], np.ndarray]
"""Maps a batch of images (n, height, width) in [0, 1] to probabilities, shape (n,) or (n, k)."""

OCCLUSION_CAPTION = (
    "Occlusion sensitivity: each {patch}×{patch}-pixel patch was replaced by {baseline} and the "
    "change in the predicted probability of '{target}' recorded. Positive values: masking that "
    "area lowers the probability, so it pushes the prediction towards '{target}'; negative "
    "values: the opposite. It shows what drives this feature-based model, not a lesion "
    "segmentation."
)


@dataclass(frozen=True)
class OcclusionMap:
    """An occlusion-sensitivity map over one image.

    Attributes
    ----------
    heatmap : float array, the image's shape: base probability minus the probability with the
        patch(es) covering each pixel masked (averaged over the patches that cover it).
        Positive = that area supports the prediction.
    base_probability : the model's probability for the unmasked image.
    patch, stride : patch side and step in pixels.
    baseline : what masked pixels were replaced with ("mean", "zero" or a number).
    target : the class explained (column of the model output).
    n_evaluations : images scored (the unmasked one included), all in one batch.
    caption : plain-language caption to show with the map.
    """

    heatmap: np.ndarray
    base_probability: float
    patch: int
    stride: int
    baseline: str
    target: str
    n_evaluations: int
    caption: str


def _positions(length: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, max(length - patch, 0) + 1, stride))
    # The last patch is moved to touch the border so that every pixel is covered.
    if starts[-1] + patch < length:
        starts.append(length - patch)
    return starts


def occlusion_map(
    image: np.ndarray,
    predict_fn: PredictFn,
    *,
    patch: int = 4,
    stride: int | None = None,
    baseline: Literal["mean", "zero"] | float = "mean",
    target: int | None = None,
    target_name: str | None = None,
) -> OcclusionMap:
    """Occlusion sensitivity of ``predict_fn`` on ``image``.

    Parameters
    ----------
    image : 2-D grayscale float array in [0, 1] (at the model's working size).
    predict_fn : batch of images (n, h, w) -> probabilities (n,) or (n, k); all occluded
        variants and the original are scored in one call.
    patch : side of the square masked patch in pixels.
    stride : step between patches; default ``patch`` (non-overlapping tiles).
    baseline : replacement value: "mean" (the image's mean brightness), "zero", or a number.
    target : output column explained when ``predict_fn`` returns (n, k); default column 1 for
        two columns (the positive class), otherwise the class predicted for the image.
    target_name : name of the target class for the caption.

    Returns
    -------
    OcclusionMap

    Raises
    ------
    ConfigError
        When patch / stride / baseline are invalid.
    DataError
        When the image is not 2-D or ``predict_fn`` returns the wrong number of rows.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise DataError(f"occlusion_map needs a 2-D grayscale image, got shape {img.shape}.")
    height, width = img.shape
    step = patch if stride is None else stride
    if patch < 1 or patch > min(height, width) or step < 1:
        raise ConfigError(
            f"patch={patch}, stride={step} do not fit a {height}×{width} image; use a patch "
            f"between 1 and {min(height, width)} pixels and a stride of at least 1."
        )
    if baseline == "mean":
        fill, baseline_text = float(img.mean()), "the image's mean brightness"
    elif baseline == "zero":
        fill, baseline_text = 0.0, "black"
    elif isinstance(baseline, int | float) and not isinstance(baseline, bool):
        fill, baseline_text = float(baseline), f"the value {float(baseline):g}"
    else:
        raise ConfigError(f"baseline must be 'mean', 'zero' or a number, got {baseline!r}.")
    boxes = [
        (r, c) for r in _positions(height, patch, step) for c in _positions(width, patch, step)
    ]
    batch = np.repeat(img[None], len(boxes) + 1, axis=0)
    for k, (r, c) in enumerate(boxes, start=1):
        batch[k, r : r + patch, c : c + patch] = fill
    raw = np.asarray(predict_fn(batch), dtype=np.float64)
    if raw.shape[0] != len(batch):
        raise DataError(
            f"predict_fn returned {raw.shape[0]} rows for {len(batch)} images; it must return "
            "one probability (or one row of probabilities) per image."
        )
    if raw.ndim == 2:
        column = target
        if column is None:
            column = 1 if raw.shape[1] == 2 else int(np.argmax(raw[0]))
        scores = raw[:, column]
    else:
        column = 1 if target is None else target
        scores = raw
    base = float(scores[0])
    total = np.zeros((height, width), dtype=np.float64)
    cover = np.zeros((height, width), dtype=np.float64)
    for k, (r, c) in enumerate(boxes, start=1):
        total[r : r + patch, c : c + patch] += base - scores[k]
        cover[r : r + patch, c : c + patch] += 1.0
    heatmap = np.where(cover > 0, total / np.maximum(cover, 1.0), 0.0)
    name = target_name if target_name is not None else f"class {column}"
    return OcclusionMap(
        heatmap=heatmap.astype(np.float32),
        base_probability=base,
        patch=patch,
        stride=step,
        baseline=baseline if isinstance(baseline, str) else f"{float(baseline):g}",
        target=name,
        n_evaluations=len(batch),
        caption=OCCLUSION_CAPTION.format(patch=patch, baseline=baseline_text, target=name),
    )


def model_predict_fn(
    model: Any,
    settings: FeatureSettings | Mapping[str, Any],
    *,
    context: Mapping[str, Any] | None = None,
    mask: np.ndarray | None = None,
) -> PredictFn:
    """A ``predict_fn`` for :func:`occlusion_map`: image features, then the model.

    Parameters
    ----------
    model : a fitted :class:`medimg_core.modelling.models.MedimgModel` (anything with ``predict_proba``
        taking a DataFrame).
    settings : the feature settings the model was trained with (``FeatureTable.settings`` or
        the model card's).
    context : the case's non-image columns (clinical columns from a labels table), repeated for
        every occluded variant so that only the image changes.
    mask : the case's region-of-interest mask, when the model was trained with masks.
    """
    s = settings if isinstance(settings, FeatureSettings) else FeatureSettings.from_dict(settings)

    def predict(batch: np.ndarray) -> np.ndarray:
        masks = None if mask is None else [mask] * len(batch)
        frame = features_from_pixels(batch, settings=s, masks=masks)
        if context:
            extra = pd.DataFrame([dict(context)] * len(frame), index=frame.index)
            frame = pd.concat([extra, frame], axis=1)
        return np.asarray(model.predict_proba(frame), dtype=np.float64)

    return predict
