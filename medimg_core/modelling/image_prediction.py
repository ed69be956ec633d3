"""A trained model on image cases: predictions named by image file, and occlusion maps.

The image-side work (opening sets, extracting features as the card says) is
:mod:`medimg_core.imaging.feature_table`; this module adds what needs a model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from medimg_core.errors import ConfigError
from medimg_core.imaging.feature_table import (
    ImageTable,
    require_image_settings,
    trained_with_masks,
)
from medimg_core.imaging.features import feature_names
from medimg_core.imaging.occlusion import OcclusionMap, model_predict_fn, occlusion_map
from medimg_core.imaging.sets import ImageSet
from medimg_core.modelling.models import MedimgModel
from medimg_core.modelling.prediction import Abstention, Predictions, predict

__all__ = ["image_predictions", "occlusion_for_case"]


def image_predictions(
    model: MedimgModel,
    table: ImageTable,
    *,
    explain_top: int = 0,
    background: pd.DataFrame | None = None,
    threshold: float | None = None,
    abstain: Abstention | None = None,
) -> Predictions:
    """Score an image table; each prediction row is named by its image ``file`` (the ``case``
    of a 3D study).

    Parameters
    ----------
    model : the :class:`medimg_core.modelling.models.MedimgModel`.
    table : from :func:`~medimg_core.imaging.feature_table.features_for_prediction`.
    explain_top : add the ``k`` top SHAP reasons per image (``reason_1`` ..).
    background : reference cases for the reasons (default the model's typical case).
    threshold : decision threshold on P(positive) (binary); default the model's.
    abstain : when to give no decision (images unlike the training images, an uncertainty
        band); see :class:`medimg_core.modelling.prediction.Abstention`.

    Returns
    -------
    Predictions
        ``frame`` starts with ``file`` (the path inside the set), then the probabilities,
        decision, threshold, out-of-distribution flags and reasons; no patient key or other
        identifying column.

    Raises
    ------
    SchemaError
        When the images lack columns the model needs (for example clinical columns that a
        labels table provided at training time).
    """
    predictions = predict(
        model,
        table.frame,
        explain_top=explain_top,
        background=background,
        threshold=threshold,
        abstain=abstain,
    )
    frame = predictions.frame
    dropped = [c for c in ("row", "patient_id", model.roles.id) if c and c in frame.columns]
    frame = frame.drop(columns=dropped)
    # 2D images are named by their file, the cases of a 3D study by their case name.
    name = "case" if "case" in table.frame.columns else "file"
    frame.insert(0, name, table.frame[name].astype(str).to_numpy())
    return dataclasses.replace(predictions, frame=frame)


def _default_patch(size: tuple[int, int]) -> int:
    # About 7 × 7 tiles: coarse enough to move the image features, fine enough to localise.
    return max(2, round(min(size) / 7))


def occlusion_for_case(
    model: MedimgModel,
    card: Mapping[str, Any],
    image_set: ImageSet,
    index: int,
    *,
    context: Mapping[str, Any] | None = None,
    patch: int | None = None,
    stride: int | None = None,
    baseline: Literal["mean", "zero"] | float = "mean",
) -> OcclusionMap:
    """The occlusion-sensitivity map of one image, at the model's working size.

    Parameters
    ----------
    model : the :class:`medimg_core.modelling.models.MedimgModel` trained on the image features.
    card : its model card (the feature settings).
    image_set : the set holding the case.
    index : position of the case in ``image_set.records``.
    context : the case's clinical (non-image) model inputs; default taken from the set's
        labels-table columns for that case.
    patch, stride : patch side and step in pixels at the working size; default about a
        seventh of the image side, non-overlapping.
    baseline : what masked pixels become ("mean", "zero" or a value).

    Returns
    -------
    OcclusionMap
        Its ``heatmap`` has the working size; ``caption`` says what it does and does not show.
        For two classes the map explains P(positive class); for more, the predicted class.

    Raises
    ------
    ConfigError
        When the card has no image settings, or ``patch`` does not fit the image.
    ImageError
        When the image cannot be decoded.
    """
    settings = require_image_settings(card)
    if not 0 <= index < len(image_set):
        raise ConfigError(
            f"Case {index} is not in '{image_set.name}', which has {len(image_set)} images; "
            f"choose a position between 0 and {len(image_set) - 1}."
        )
    assert settings.size is not None
    size = settings.size
    pixels = image_set.load(index, size=size).pixels
    mask = image_set.load_mask(index, size=size) if trained_with_masks(card) else None
    image_columns = set(feature_names(settings, with_mask=True))
    if context is None:
        record = image_set.records.iloc[index]
        context = {
            c: record[c]
            for c in image_set.extra_columns
            if c in model.feature_columns and c not in image_columns
        }
    predict_fn = model_predict_fn(model, settings, context=context, mask=mask)
    if model.is_binary:
        target, target_name = 1, str(model.positive_class)
    else:
        base = np.asarray(predict_fn(pixels[None]))
        target = int(np.argmax(base[0]))
        target_name = str(model.classes[target])
    return occlusion_map(
        pixels,
        predict_fn,
        patch=_default_patch(size) if patch is None else patch,
        stride=stride,
        baseline=baseline,
        target=target,
        target_name=target_name,
    )
