"""The model the Evaluate, Explain and Predict pages work on, whether trained in this session or
opened from the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from medimg_core.evaluation import Evaluation
from medimg_core.models import MedimgModel

__all__ = ["ActiveModel"]


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
    """

    model: MedimgModel
    card: dict[str, Any]
    run_id: str | None
    cv: Evaluation | None
    test: Evaluation | None
    cases: pd.DataFrame | None
    leaderboard: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        """A content key for caches (run id, else the model checksum in the card)."""
        return str(self.run_id or self.card.get("model_sha256") or id(self.model))
