"""Tests for medimg_core.modelling.schema: new data compared with the training schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medimg_core.errors import SchemaError
from medimg_core.modelling.schema import check_schema
from medimg_core.modelling.training import TrainingResult


def test_check_schema_cases(trained: TrainingResult, wdbc: pd.DataFrame) -> None:
    model = trained.model
    clean = check_schema(model, wdbc.head(5))
    assert clean.ok and clean.errors == () and clean.warnings == ()
    new = wdbc.head(6).drop(columns=["mean radius"]).copy()
    new["comment"] = "x"
    new["mean area"] = new["mean area"].astype(object)
    new.loc[new.index[0], "mean area"] = "large"
    new.loc[new.index[1], "worst area"] = 1e9
    new.loc[new.index[2], "mean texture"] = np.nan
    report = check_schema(model, new)
    assert report.missing_columns == ("mean radius",)
    assert report.unexpected_columns == ("comment",)
    assert report.non_numeric == {"mean area": ("large",)}
    assert report.out_of_range == {"worst area": 1}
    assert report.rows_with_missing == 1
    assert len(report.errors) == 2
    assert len(report.warnings) == 3
    with pytest.raises(SchemaError, match=r"\['mean radius'\].*'mean area' should hold numbers"):
        report.raise_for_errors()
    assert report.to_dict()["errors"] == list(report.errors)
