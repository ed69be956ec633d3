"""The distance check's statistics: Mahalanobis distance with a Ledoit–Wolf precision matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import mahalanobis

from medimg_core.modelling.ood import (
    DISTANCE_QUANTILE,
    MIN_ROWS,
    DistanceReference,
    fit_distance_reference,
)


def correlated(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(10, 2, n)
    b = a * 3 + rng.normal(0, 0.5, n)  # strongly correlated with a
    c = rng.normal(-5, 1, n)
    return pd.DataFrame({"a": a, "b": b, "c": c})


def test_distance_matches_scipy_mahalanobis_on_the_standardised_values() -> None:
    dev = correlated(400)
    ref = fit_distance_reference(dev, ["a", "b", "c"], seed=1)
    assert ref is not None
    new = correlated(5, seed=9)
    z = (new.to_numpy() - ref.center) / ref.scale
    expected = [mahalanobis(row, np.zeros(3), ref.precision) for row in z]
    np.testing.assert_allclose(ref.distances(new), expected, rtol=1e-10)
    np.testing.assert_allclose(ref.center, dev.mean().to_numpy())


def test_a_case_that_breaks_the_correlation_is_far_though_each_value_is_ordinary() -> None:
    dev = correlated(500)
    ref = fit_distance_reference(dev, ["a", "b", "c"])
    assert ref is not None
    # a and b each within their usual range, but b no longer follows 3 * a.
    odd = pd.DataFrame({"a": [8.0], "b": [36.0], "c": [-5.0]})
    usual = pd.DataFrame({"a": [12.0], "b": [36.0], "c": [-5.0]})
    assert ref.distances(odd)[0] > ref.cutoff > ref.distances(usual)[0]


def test_the_cutoff_is_an_out_of_fold_quantile_so_about_one_in_a_hundred_fresh_cases_is_flagged() -> (
    None
):
    ref = fit_distance_reference(correlated(2000), ["a", "b", "c"], seed=3)
    assert ref is not None and ref.quantile == DISTANCE_QUANTILE
    fresh = correlated(20_000, seed=11)
    share = float(np.mean(ref.distances(fresh) > ref.cutoff))
    assert 0.005 <= share <= 0.02


def test_missing_values_count_as_the_development_mean_and_constant_columns_do_not_divide_by_zero() -> (
    None
):
    dev = correlated(100).assign(flat=1.0)
    ref = fit_distance_reference(dev, ["a", "b", "c", "flat"])
    assert ref is not None
    assert ref.scale[-1] == 1.0
    at_centre = pd.DataFrame([dict(zip(ref.columns, ref.center, strict=True))]).assign(a=np.nan)
    assert ref.distances(at_centre)[0] == pytest.approx(0.0, abs=1e-9)


def test_too_few_rows_or_no_numeric_column_gives_no_reference() -> None:
    assert fit_distance_reference(correlated(MIN_ROWS - 1), ["a", "b"]) is None
    assert fit_distance_reference(correlated(50), []) is None
    assert fit_distance_reference(correlated(50), ["not a column"]) is None


def test_saved_parts_rebuild_the_same_reference_and_mismatched_parts_are_refused() -> None:
    ref = fit_distance_reference(correlated(200), ["a", "b", "c"])
    assert ref is not None
    again = DistanceReference.from_parts(ref.summary(), ref.arrays())
    new = correlated(7, seed=5)
    np.testing.assert_array_equal(again.distances(new), ref.distances(new))
    assert again.cutoff == ref.cutoff and again.n_development == 200
    broken = dict(ref.arrays(), precision=np.eye(2))
    with pytest.raises(ValueError, match="do not match"):
        DistanceReference.from_parts(ref.summary(), broken)
