"""Intensity-volume histogram: IBSI digital phantom reference values, the three discretisations,
a brute-force check of the definitions, edge cases."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import catalogue, ivh
from medimg_core.imaging.radiomics.roi import RoiContext
from tests.unit.imaging.radiomics.ibsi_phantom import IMAGE, MASK, SPACING, agrees, reference

PHANTOM_TAGS = sorted(tag for tag in reference() if tag.startswith("ivh_"))


def _region(values: list[float], **kwargs: Any) -> RoiContext:
    image = np.asarray(values, dtype=np.float64).reshape(1, 1, -1)
    return RoiContext.from_arrays(image, np.ones(image.shape, dtype=bool), **kwargs)


def _phantom() -> RoiContext:
    return RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0)


@pytest.fixture(scope="module")
def phantom() -> dict[str, float]:
    return ivh.compute(_phantom())


def test_every_phantom_reference_value_is_tested() -> None:
    # ivh_auc has no consensus reference value in the IBSI reference file.
    assert len(PHANTOM_TAGS) == 6 and "ivh_auc" not in PHANTOM_TAGS


@pytest.mark.parametrize("tag", PHANTOM_TAGS)
def test_phantom_matches_ibsi(phantom: dict[str, float], tag: str) -> None:
    value, tolerance = reference()[tag]
    assert agrees(phantom[tag], value, tolerance), f"{tag}: ours {phantom[tag]}, IBSI {value}"


def test_phantom_curve_matches_the_ibsi_manual_table() -> None:
    curve = ivh.intensity_volume_histogram(_phantom())
    assert curve.intensities.tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(curve.intensity_fractions, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(
        curve.volume_fractions, [1, 24 / 74, 24 / 74, 23 / 74, 7 / 74, 7 / 74]
    )


def test_phantom_area_under_curve_by_the_trapezoidal_rule(phantom: dict[str, float]) -> None:
    nu = np.array([74, 24, 24, 23, 7, 7]) / 74
    assert phantom["ivh_auc"] == pytest.approx(0.2 * float(np.sum(nu[1:] + nu[:-1]) / 2))
    assert phantom["ivh_auc"] == pytest.approx(0.3203, abs=1e-4)


def test_fixed_bin_width_uses_bin_centres() -> None:
    # Continuous intensities, bins of 0.1 from 0: centres 0.05, 0.15, 0.25, 0.35.
    ctx = _region([0.05, 0.15, 0.25, 0.35], bin_width=0.1, resegment=(0.0, None))
    curve = ivh.intensity_volume_histogram(ctx)
    np.testing.assert_allclose(curve.intensities, [0.05, 0.15, 0.25, 0.35])
    np.testing.assert_allclose(curve.intensity_fractions, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve.volume_fractions, [1, 0.75, 0.5, 0.25])
    out = ivh.compute(ctx)
    assert out["ivh_v10"] == 0.75 and out["ivh_v90"] == 0.25
    assert out["ivh_i90"] == pytest.approx(0.15)
    assert out["ivh_i10"] == pytest.approx(0.45)  # a quarter share the top bin: the next centre
    assert out["ivh_auc"] == pytest.approx(0.625)


def test_fixed_bin_count_uses_fractional_bin_numbers() -> None:
    ctx = _region([0.0, 1.0, 2.0, 3.0, 4.0], bin_width=None, bin_count=4)  # levels 1 2 3 4 4
    out = ivh.compute(ctx)
    assert out["ivh_v10"] == pytest.approx(0.8)  # γ = 1/3 at level 2
    assert out["ivh_v90"] == pytest.approx(0.4)
    assert out["ivh_i90"] == 2 and out["ivh_i10"] == 5
    assert out["ivh_diff_i10_i90"] == 3


def test_explicit_bin_count_rediscretises() -> None:
    ctx = _region([0.0, 1.0, 2.0, 3.0, 4.0], bin_width=1.0)
    curve = ivh.intensity_volume_histogram(
        ctx, ivh_discretisation="fixed_bin_count", ivh_bin_count=2
    )
    assert curve.intensities.tolist() == [1, 2]
    np.testing.assert_allclose(curve.volume_fractions, [1, 0.6])


def test_discrete_range_starts_at_the_resegmentation_lower_bound() -> None:
    out = ivh.compute(_region([3.0, 4.0, 5.0, 6.0], resegment=(0.0, None)))
    assert out["ivh_v10"] == 1.0  # γ = 1/6 at intensity 1, which every voxel exceeds
    assert out["ivh_i90"] == 4  # ν(3) = 1, ν(4) = 0.75


def test_matches_a_brute_force_reading_of_the_definitions() -> None:
    rng = np.random.default_rng(14)
    x = rng.integers(-20, 31, size=300).astype(np.float64)
    out = ivh.compute(_region(list(x)))
    grid = np.arange(x.min(), x.max() + 1)
    nu = np.array([np.mean(x >= i) for i in grid])
    gamma = (grid - grid[0]) / (grid[-1] - grid[0])
    for fraction, tag in ((0.1, "ivh_v10"), (0.9, "ivh_v90")):
        assert out[tag] == nu[gamma >= fraction].max()
    for fraction, tag in ((0.1, "ivh_i10"), (0.9, "ivh_i90")):
        assert out[tag] == grid[nu <= fraction].min()
    assert out["ivh_auc"] == pytest.approx(float(np.trapezoid(nu, gamma)))


def test_single_intensity_gives_nan_volume_fractions_and_zero_area() -> None:
    for values in ([4.0], [4.0, 4.0, 4.0]):
        out = ivh.compute(_region(values))
        assert math.isnan(out["ivh_v10"]) and math.isnan(out["ivh_v90"])
        assert math.isnan(out["ivh_diff_v10_v90"])
        assert out["ivh_auc"] == 0  # IBSI
        assert out["ivh_i10"] == 5 and out["ivh_i90"] == 5


def test_bad_options_are_config_errors() -> None:
    ctx = _region([1.0, 2.0], bin_width=None, bin_count=4)
    with pytest.raises(ConfigError, match="Unknown IVH discretisation 'fixed'"):
        ivh.compute(ctx, ivh_discretisation="fixed")
    with pytest.raises(ConfigError, match="Pass ivh_bin_width"):
        ivh.compute(ctx, ivh_discretisation="fixed_bin_width")
    with pytest.raises(ConfigError, match="binCount must be a whole number"):
        ivh.compute(ctx, ivh_discretisation="fixed_bin_count", ivh_bin_count=0)
    with pytest.raises(ConfigError, match="too many to use one by one"):
        ivh.compute(_region([0.0, 5e6]), ivh_discretisation="none")
    # "auto" bins such a range instead (here 25 wide: bin centres 12.5, 37.5 ...).
    assert ivh.compute(_region([0.0, 5e6], bin_width=25.0))["ivh_i90"] == 37.5
    with pytest.raises(ConfigError, match="ivh features"):
        ivh.compute(ctx, aggregation="3D")
    assert ivh.AGGREGATIONS == () and ivh.DEFAULT_AGGREGATION is None


def test_every_feature_is_registered_with_code_name_and_meaning() -> None:
    # catalogue.catalogue() imports every family module; read the registry itself so this test
    # stands on the ivh module alone.
    tags = ivh.compute(_region([1.0, 2.0, 3.0]))
    assert len(tags) == 7
    for tag in tags:
        spec = catalogue._REGISTRY[tag]
        assert spec.family == "ivh" and not spec.pyradiomics
        assert len(spec.code) == 4 and spec.meaning.endswith(".")
