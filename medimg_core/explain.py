"""SHAP explanations in the clinician's own feature names, for every model kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CaseExplanation", "Explanation"]


@dataclass(frozen=True)
class Explanation:
    """SHAP values for some cases, always over the ORIGINAL feature columns.

    ``values[i].sum() + base_values[i] == model output for case i`` in ``output_space``
    (tested to 1e-6). Columns that the pipeline one-hot encodes or mixes through PCA are folded
    back to the original column.

    Attributes
    ----------
    values : (n, n_features)
    base_values : (n,)
    data : the cases' original feature values (DataFrame, columns = feature_names, index = case ids)
    feature_names : tuple of original feature names
    output_space : "log-odds" or "probability" (the model output the values add up to)
    class_name : the class explained (the positive class for binary tasks)
    method : "linear (exact, folded through the pipeline)", "tree (TreeExplainer)" or
        "permutation (model-agnostic)"
    background_size : rows of background data used (the training-feature means for linear)
    note : plain-language statement of the method, its feature space, background and cost
    """

    values: np.ndarray
    base_values: np.ndarray
    data: pd.DataFrame
    feature_names: tuple[str, ...]
    output_space: str
    class_name: str
    method: str
    background_size: int
    note: str

    def global_importance(self) -> pd.Series:
        """Mean |SHAP| per feature, largest first."""
        imp = np.abs(self.values).mean(axis=0)
        return pd.Series(imp, index=list(self.feature_names)).sort_values(ascending=False)

    def case(self, i: int) -> CaseExplanation:
        """One case's explanation by position."""
        return CaseExplanation(
            case_id=self.data.index[i],
            values=pd.Series(self.values[i], index=list(self.feature_names)),
            base_value=float(self.base_values[i]),
            data=self.data.iloc[i],
            output_space=self.output_space,
            class_name=self.class_name,
            method=self.method,
        )


@dataclass(frozen=True)
class CaseExplanation:
    """One case: contributions per original feature, the base value and the feature values."""

    case_id: Any
    values: pd.Series
    base_value: float
    data: pd.Series
    output_space: str
    class_name: str
    method: str

    @property
    def output(self) -> float:
        """Model output in ``output_space`` (base value + sum of contributions)."""
        return float(self.base_value + self.values.sum())

    def top_reasons(self, k: int = 3) -> list[tuple[str, Any, float]]:
        """The k largest |contributions|: (feature, value, contribution)."""
        order = self.values.abs().sort_values(ascending=False).index[:k]
        return [(str(f), self.data[f], float(self.values[f])) for f in order]
