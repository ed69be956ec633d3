"""The model the Evaluate, Explain and Predict pages work on, whether trained in this session or
opened from the registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from medimg_core.imaging.feature_table import ImageTable
    from medimg_core.modelling.evaluation import Evaluation
    from medimg_core.modelling.models import MedimgModel

__all__ = ["ActiveModel", "ImageContext", "image_context"]


@dataclass(frozen=True, eq=False)
class ImageContext:
    """The image set behind the working table, so that pages can show a row's image.

    Attributes
    ----------
    table : the image set and its extracted features.
    table_hash : content hash of the working table built from ``table.frame``; the context
        belongs to that table only.
    name : the set's display name (upload or folder name).
    positions : row label of ``table.frame`` -> position of its image in ``table.image_set``.
    """

    table: ImageTable
    table_hash: str
    name: str
    positions: Mapping[Any, int]

    @property
    def settings(self) -> dict[str, Any]:
        """The feature-extraction settings (saved in the model card)."""
        return self.table.settings

    def position(self, row_key: Any, cases: pd.DataFrame | None = None) -> int | None:
        """The image-set position of the feature-table row ``row_key``, or None.

        Parameters
        ----------
        row_key : a row label of the feature table (cleaning and the saved cases keep it).
        cases : the model's cases; when given, the case's image features must equal the
            feature table's row, so a model trained on other images never borrows this set's
            image under the same row label.
        """
        position = self.positions.get(row_key)
        if position is None or cases is None:
            return position
        if row_key not in cases.index:
            return None
        frame = self.table.frame
        shared = [c for c in self.table.features.feature_names if c in cases.columns]
        if not shared:
            return None
        mine = frame.loc[row_key, shared].to_numpy(dtype=float)
        theirs = cases.loc[row_key, shared].to_numpy(dtype=float)
        same = np.allclose(mine, theirs, rtol=1e-6, atol=1e-9, equal_nan=True)
        return position if same else None


def image_context(table: ImageTable, table_hash: str, name: str) -> ImageContext:
    """An :class:`ImageContext` for ``table``, matching each feature row to its image by file.

    Parameters
    ----------
    table : the image set and its features.
    table_hash : content hash of the working table made from ``table.frame``.
    name : display name.
    """
    # 2D images are matched by file, the cases of a 3D study by case name.
    column = "case" if "case" in table.image_set.records.columns else "file"
    by_file = {str(f): i for i, f in enumerate(table.image_set.records[column])}
    positions = {
        key: by_file[str(f)]
        for key, f in zip(table.frame.index, table.frame[column], strict=True)
        if str(f) in by_file
    }
    return ImageContext(table=table, table_hash=table_hash, name=name, positions=positions)


@dataclass(frozen=True)
class ActiveModel:
    """A model with the evaluations and cases that go with it.

    Attributes
    ----------
    model : the deployable model.
    card : its model card (as written to ``card.json``).
    run_id : registry id, or None when the run could not be recorded.
    cv, test : out-of-fold development and held-out test evaluations (None when unavailable).
    cases : the cleaned rows the model was developed and tested on (feature columns, label and
        ID), indexed like the evaluations' ``row_ids`` when there is no ID column, with a
        ``partition`` column ("development" / "test"); used as SHAP background and for case review.
    leaderboard : ``auto`` candidates as card dictionaries.
    warnings : guard messages from training.
    images : the image set the model was trained on in this session (None for table models
        and for runs reopened from the registry).
    ids_pseudonymous : the ID column of ``cases`` and the evaluations' row IDs already hold
        keyed pseudonyms (a run reopened from its ``cases.parquet``, or a model prepared for
        display by :func:`medimg_core.ui.explaining.displayed_active`).
    """

    model: MedimgModel
    card: dict[str, Any]
    run_id: str | None
    cv: Evaluation | None
    test: Evaluation | None
    cases: pd.DataFrame | None
    leaderboard: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)
    images: ImageContext | None = None
    ids_pseudonymous: bool = False

    @property
    def key(self) -> str:
        """A content key for caches (run id, else the model checksum in the card)."""
        return str(self.run_id or self.card.get("model_sha256") or id(self.model))
