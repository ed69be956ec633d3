"""Feature shift between development cases and a new file: SMDs checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medimg_core.errors import DataError
from medimg_core.modelling.shift import FeatureShift, feature_shift, shift_flag


def test_numeric_smd_matches_the_hand_computation() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})  # mean 2.5, sample SD sqrt(5/3)
    new = pd.DataFrame({"x": [2.0, 3.0, 4.0, 5.0, np.nan]})  # mean 3.5, same SD, 1 of 5 missing
    (s,) = feature_shift(ref, new, ["x"])
    sd = math.sqrt(5 / 3)
    assert s.mean_reference == pytest.approx(2.5)
    assert s.mean_new == pytest.approx(3.5)
    assert s.sd_reference == pytest.approx(sd)
    assert s.sd_new == pytest.approx(sd)
    assert s.smd == pytest.approx(1.0 / sd)  # 0.7746
    assert s.missing_reference == 0.0
    assert s.missing_new == pytest.approx(0.2)
    assert s.ks == pytest.approx(0.25)  # the cumulative distributions differ by 1/4 at most
    assert s.flag == "notable"
    assert "higher in the new data" in s.sentence


def test_pooled_sd_uses_both_variances() -> None:
    ref = pd.DataFrame({"x": [0.0, 2.0]})  # mean 1, SD sqrt(2)
    new = pd.DataFrame({"x": [0.0, 4.0]})  # mean 2, SD sqrt(8)
    (s,) = feature_shift(ref, new, ["x"])
    assert s.smd == pytest.approx(1.0 / math.sqrt((2 + 8) / 2))  # 0.4472


def test_categorical_uses_the_category_share_that_differs_most() -> None:
    ref = pd.DataFrame({"site": ["a"] * 5 + ["b"] * 5})
    new = pd.DataFrame({"site": ["a"] * 8 + ["b"] * 2})
    (s,) = feature_shift(ref, new, ["site"])
    assert s.kind == "categorical"
    assert s.ks is None
    # Both categories move by 0.3; the first in order ("a") is reported: 0.5 -> 0.8.
    assert s.category == "a"
    assert (s.mean_reference, s.mean_new) == pytest.approx((0.5, 0.8))
    assert s.smd == pytest.approx(0.3 / math.sqrt((0.25 + 0.16) / 2))  # 0.6626
    assert "share of 'a' 80% in the new data vs 50% in development" in s.sentence


def test_largest_shift_first_and_flags() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 400), "b": rng.normal(0, 1, 400)})
    new = ref.copy()
    new["b"] = new["b"] + 0.5
    new["a"] = new["a"] + 0.15
    shifts = feature_shift(ref, new, ["a", "b"])
    assert [s.feature for s in shifts] == ["b", "a"]
    # Same SD on both sides, so the pooled SD is that SD.
    assert shifts[0].smd == pytest.approx(0.5 / ref["b"].std(ddof=1))
    assert shifts[0].flag == "notable"
    assert shifts[1].flag == "small"
    assert shift_flag(0.05) == "none"
    assert shift_flag(-0.25) == "notable"


def test_to_dict_is_json_ready_and_constant_features_do_not_divide_by_zero() -> None:
    ref = pd.DataFrame({"c": [1.0, 1.0, 1.0], "d": [np.nan] * 3})
    new = pd.DataFrame({"c": [1.0, 1.0], "d": [1.0, 2.0]})
    shifts = feature_shift(ref, new, ["c", "d"])
    by_name = {s.feature: s for s in shifts}
    assert by_name["c"].smd == 0.0
    assert math.isnan(by_name["d"].smd) and by_name["d"].flag == "not estimable"
    assert shifts[-1].feature == "d"  # not comparable: last
    as_dict = by_name["d"].to_dict()
    assert as_dict["smd"] is None and as_dict["missing_reference"] == 1.0
    assert isinstance(FeatureShift.to_dict(by_name["c"])["sentence"], str)


def test_refuses_missing_columns_and_empty_sides() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(DataError, match="missing"):
        feature_shift(ref, pd.DataFrame({"y": [1.0]}), ["x"])
    with pytest.raises(DataError, match="empty"):
        feature_shift(ref, ref.iloc[:0], ["x"])
