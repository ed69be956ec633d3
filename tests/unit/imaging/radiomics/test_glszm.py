from __future__ import annotations

import math

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import catalogue, glszm
from medimg_core.imaging.radiomics.roi import RoiContext
from tests.unit.imaging.radiomics.ibsi_phantom import (
    IMAGE,
    MASK,
    SPACING,
    agrees,
    phantom_cases,
    unit_context,
)

PHANTOM = RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0)
CASES = phantom_cases("szm_", glszm.AGGREGATIONS)


def test_every_feature_and_aggregation_has_a_phantom_reference() -> None:
    assert len(CASES) == 16 * 3
    assert {(tag, agg) for tag, agg, _, _ in CASES} == {
        (tag, agg) for tag in glszm.FEATURES for agg in glszm.AGGREGATIONS
    }


@pytest.mark.parametrize(("tag", "aggregation", "value", "tolerance"), CASES)
def test_ibsi_digital_phantom(tag: str, aggregation: str, value: float, tolerance: float) -> None:
    ours = glszm.compute(PHANTOM, aggregation=aggregation)[tag]
    assert agrees(ours, value, tolerance), f"{tag}_{aggregation}: ours {ours}, IBSI {value}"


def test_phantom_3d_matrix_matches_ibsi() -> None:
    # The phantom's five 3D zones: level 1 (50 voxels), 3 (1), 4 (2 and 14), 6 (7); their
    # squared sizes average to the reference LZE of 550.
    zones = glszm.label_zones(PHANTOM.levels, in_plane=False)
    matrix = glszm.ZoneMatrix.from_zones(zones.grey, zones.size, int(PHANTOM.int_mask.sum()))
    dense = matrix.dense(6)
    assert dense.shape == (6, 50)
    assert dense[0, 49] == 1  # one zone of level 1 with 50 voxels
    assert dense[2, 0] == 1
    assert dense[3, 1] == 1 and dense[3, 13] == 1
    assert dense[5, 6] == 1
    assert dense.sum() == 5


def test_default_aggregation_is_3d() -> None:
    assert glszm.DEFAULT_AGGREGATION == "3D"
    assert glszm.compute(PHANTOM) == glszm.compute(PHANTOM, aggregation="3D")


def test_one_grey_level_is_one_zone() -> None:
    ctx = unit_context(np.ones((2, 3, 4)))
    three_d = glszm.compute(ctx, aggregation="3D")
    assert three_d["szm_sze"] == pytest.approx(1 / 24**2)
    assert three_d["szm_lze"] == pytest.approx(24**2)
    assert three_d["szm_z_perc"] == pytest.approx(1 / 24)
    assert three_d["szm_glnu"] == 1 and three_d["szm_zsnu_norm"] == 1
    assert three_d["szm_gl_var"] == 0 and three_d["szm_zs_var"] == 0
    assert three_d["szm_zs_entr"] == 0
    # In-plane: one 12-voxel zone per slice; 2.5D sums the two slice matrices.
    two_d = glszm.compute(ctx, aggregation="2D")
    assert two_d["szm_lze"] == pytest.approx(144)
    assert two_d["szm_z_perc"] == pytest.approx(1 / 12)
    merged = glszm.compute(ctx, aggregation="2_5D")
    assert merged["szm_zsnu"] == pytest.approx(2)
    assert merged["szm_z_perc"] == pytest.approx(2 / 24)


def test_two_zones_of_known_size() -> None:
    # One 5 x 5 slice: a 16-voxel ring of level 1 around a 3 x 3 block of level 2.
    image = np.ones((1, 5, 5))
    image[0, 1:4, 1:4] = 2
    out = glszm.compute(unit_context(image), aggregation="3D")
    assert out["szm_sze"] == pytest.approx((1 / 16**2 + 1 / 9**2) / 2)
    assert out["szm_lze"] == pytest.approx((16**2 + 9**2) / 2)
    assert out["szm_hgze"] == pytest.approx((1 + 4) / 2)
    assert out["szm_lzhge"] == pytest.approx((16**2 + 4 * 9**2) / 2)
    assert out["szm_zs_var"] == pytest.approx(3.5**2)
    assert out["szm_gl_var"] == pytest.approx(0.25)
    assert out["szm_zs_entr"] == pytest.approx(1.0)
    assert out["szm_z_perc"] == pytest.approx(2 / 25)


def test_diagonal_neighbours_link_in_plane_and_across_slices() -> None:
    # A two-level checkerboard: 8-connectivity joins each level's squares into one zone.
    board = (np.indices((1, 4, 4)).sum(axis=0) % 2 + 1).astype(float)
    out = glszm.compute(unit_context(board), aggregation="2D")
    assert out["szm_sze"] == pytest.approx(1 / 64)
    assert out["szm_glnu"] == pytest.approx(1.0)
    # Two voxels touching only by a corner across slices: one zone in 3D, two in 2.5D.
    image = np.full((2, 2, 2), 2.0)
    image[0, 0, 0] = image[1, 1, 1] = 1.0
    assert glszm.compute(unit_context(image), aggregation="3D")["szm_z_perc"] == pytest.approx(
        2 / 8
    )
    assert glszm.compute(unit_context(image), aggregation="2_5D")["szm_z_perc"] == pytest.approx(
        4 / 8
    )


def test_one_voxel_region_is_defined() -> None:
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[1, 1, 1] = True
    out = glszm.compute(unit_context(np.full((3, 3, 3), 7.0), mask), aggregation="2D")
    assert out["szm_sze"] == 1 and out["szm_lze"] == 1 and out["szm_z_perc"] == 1
    assert out["szm_gl_var"] == 0 and out["szm_zs_entr"] == 0


def test_empty_intensity_mask_gives_nan() -> None:
    ctx = unit_context(np.ones((2, 2, 2)))
    empty = RoiContext(
        image=ctx.image,
        morph_mask=ctx.morph_mask,
        int_mask=np.zeros_like(ctx.int_mask),
        levels=np.zeros_like(ctx.levels),
        n_levels=1,
        spacing=ctx.spacing,
    )
    for aggregation in glszm.AGGREGATIONS:
        out = glszm.compute(empty, aggregation=aggregation)
        assert set(out) == set(glszm.FEATURES)
        assert all(math.isnan(v) for v in out.values())


def test_bad_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="Unknown GLSZM aggregation '3D_avg'"):
        glszm.compute(PHANTOM, aggregation="3D_avg")
    with pytest.raises(ConfigError, match=r"GLSZM takes no options, got \['distance'\]"):
        glszm.compute(PHANTOM, distance=1)


def test_catalogue_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    # Look at this family alone, whether or not the other family modules exist yet.
    monkeypatch.setattr(catalogue, "_load_families", lambda: None)
    specs = catalogue.catalogue("glszm")
    assert [s.tag for s in specs] == list(glszm.FEATURES)
    assert all(s.pyradiomics and len(s.code) == 4 and s.meaning for s in specs)
    names = {s.tag: s.name for s in specs}
    assert names["szm_sze"] == "SmallAreaEmphasis"
    assert names["szm_zs_entr"] == "ZoneEntropy"
    assert catalogue.spec_for_tag("szm_lzhge").column == (
        "original_glszm_LargeAreaHighGrayLevelEmphasis"
    )
