from __future__ import annotations

import math

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import catalogue, gldzm
from medimg_core.imaging.radiomics.roi import RoiContext
from tests.unit.imaging.radiomics.ibsi_phantom import IMAGE, MASK, SPACING, agrees, reference

PHANTOM = RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0)
CASES = sorted(
    (tag.removesuffix(f"_{agg}"), agg, value, tol)
    for tag, (value, tol) in reference().items()
    if tag.startswith("dzm_")
    for agg in gldzm.AGGREGATIONS
    if tag.endswith(f"_{agg}")
)


def _context(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    resegment: tuple[float | None, float | None] | None = None,
) -> RoiContext:
    image = np.asarray(image, dtype=np.float64)
    mask = np.ones(image.shape, dtype=bool) if mask is None else mask
    return RoiContext.from_arrays(image, mask, (1.0, 1.0, 1.0), bin_width=1.0, resegment=resegment)


def _cube_with_core() -> np.ndarray:
    """A 5 x 5 x 5 cube of level 1 around a 3 x 3 x 3 core of level 2."""
    image = np.ones((5, 5, 5))
    image[1:4, 1:4, 1:4] = 2
    return image


def test_every_feature_and_aggregation_has_a_phantom_reference() -> None:
    assert len(CASES) == 16 * 3
    assert {(tag, agg) for tag, agg, _, _ in CASES} == {
        (tag, agg) for tag in gldzm.FEATURES for agg in gldzm.AGGREGATIONS
    }


@pytest.mark.parametrize(("tag", "aggregation", "value", "tolerance"), CASES)
def test_ibsi_digital_phantom(tag: str, aggregation: str, value: float, tolerance: float) -> None:
    ours = gldzm.compute(PHANTOM, aggregation=aggregation)[tag]
    assert agrees(ours, value, tolerance), f"{tag}_{aggregation}: ours {ours}, IBSI {value}"


def test_edge_distance_is_city_block_with_edge_at_one() -> None:
    mask = np.ones((1, 5, 5), dtype=bool)
    mask[0, 0, 0] = False
    expected = np.array(
        [
            [0, 1, 1, 1, 1],
            [1, 2, 2, 2, 1],
            [1, 2, 3, 2, 1],
            [1, 2, 2, 2, 1],
            [1, 1, 1, 1, 1],
        ]
    )
    np.testing.assert_array_equal(gldzm.edge_distance(mask, in_plane=True)[0], expected)
    # In 3D a single slice is all edge: the slices above and below are outside.
    assert gldzm.edge_distance(mask, in_plane=False).max() == 1
    cube = np.ones((5, 5, 5), dtype=bool)
    distance = gldzm.edge_distance(cube, in_plane=False)
    assert distance[2, 2, 2] == 3 and distance[1, 2, 2] == 2 and distance[0, 0, 0] == 1
    # In-plane distances never step across slices.
    assert gldzm.edge_distance(cube, in_plane=True)[2, 2, 2] == 3
    assert gldzm.edge_distance(cube, in_plane=True)[0, 2, 2] == 3


def test_two_zones_of_known_distance() -> None:
    # One 5 x 5 slice: a ring of level 1 (distance 1) around a 3 x 3 block of level 2, whose
    # nearest voxels are 2 steps from the edge in-plane.
    image = np.ones((1, 5, 5))
    image[0, 1:4, 1:4] = 2
    out = gldzm.compute(_context(image), aggregation="2D")
    assert out["dzm_sde"] == pytest.approx((1 + 1 / 4) / 2)
    assert out["dzm_lde"] == pytest.approx((1 + 4) / 2)
    assert out["dzm_sdlge"] == pytest.approx((1 + 1 / 16) / 2)
    assert out["dzm_ldhge"] == pytest.approx((1 + 16) / 2)
    assert out["dzm_zdnu"] == pytest.approx(1.0)
    assert out["dzm_zd_var"] == pytest.approx(0.25)
    assert out["dzm_zd_entr"] == pytest.approx(1.0)
    assert out["dzm_z_perc"] == pytest.approx(2 / 25)
    # As a volume the slice is one voxel thick, so both zones touch the edge.
    three_d = gldzm.compute(_context(image), aggregation="3D")
    assert three_d["dzm_sde"] == 1 and three_d["dzm_lde"] == 1 and three_d["dzm_zd_var"] == 0


def test_aggregations_of_a_cube_with_a_core() -> None:
    ctx = _context(_cube_with_core())
    # 3D: shell at distance 1, core at distance 2.
    assert gldzm.compute(ctx, aggregation="3D")["dzm_lde"] == pytest.approx((1 + 4) / 2)
    # 2D: end slices hold one zone at distance 1 (LDE 1); middle slices a ring at 1 and a core
    # at 2 (LDE 2.5); averaged over the 5 slices.
    assert gldzm.compute(ctx, aggregation="2D")["dzm_lde"] == pytest.approx((2 + 3 * 2.5) / 5)
    # 2.5D: 5 zones at distance 1 and 3 at distance 2 in one merged matrix.
    merged = gldzm.compute(ctx, aggregation="2_5D")
    assert merged["dzm_lde"] == pytest.approx((5 + 3 * 4) / 8)
    assert merged["dzm_z_perc"] == pytest.approx(8 / 125)


def test_distance_comes_from_the_morphological_mask() -> None:
    # Re-segmentation drops the bright shell from the intensity mask only: the core keeps its
    # distance 2 to the edge of the morphological mask.
    image = _cube_with_core()
    image[image == 1] = 100
    ctx = _context(image, resegment=(None, 50))
    assert int(ctx.int_mask.sum()) == 27 and bool(ctx.morph_mask.all())
    out = gldzm.compute(ctx, aggregation="3D")
    assert out["dzm_sde"] == pytest.approx(1 / 4)
    assert out["dzm_lde"] == pytest.approx(4)
    assert out["dzm_z_perc"] == pytest.approx(1 / 27)


def test_one_voxel_region_is_defined() -> None:
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[1, 1, 1] = True
    for aggregation in gldzm.AGGREGATIONS:
        out = gldzm.compute(_context(np.full((3, 3, 3), 7.0), mask), aggregation=aggregation)
        assert out["dzm_sde"] == 1 and out["dzm_lde"] == 1 and out["dzm_z_perc"] == 1
        assert out["dzm_zd_var"] == 0 and out["dzm_zd_entr"] == 0


def test_empty_intensity_mask_gives_nan() -> None:
    ctx = _context(np.ones((2, 2, 2)))
    empty = RoiContext(
        image=ctx.image,
        morph_mask=ctx.morph_mask,
        int_mask=np.zeros_like(ctx.int_mask),
        levels=np.zeros_like(ctx.levels),
        n_levels=1,
        spacing=ctx.spacing,
    )
    for aggregation in gldzm.AGGREGATIONS:
        out = gldzm.compute(empty, aggregation=aggregation)
        assert set(out) == set(gldzm.FEATURES)
        assert all(math.isnan(v) for v in out.values())


def test_bad_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="Unknown GLDZM aggregation '2D_comb'"):
        gldzm.compute(PHANTOM, aggregation="2D_comb")
    with pytest.raises(ConfigError, match=r"GLDZM takes no options, got \['distance'\]"):
        gldzm.compute(PHANTOM, distance=1)


def test_catalogue_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    # Look at this family alone, whether or not the other family modules exist yet.
    monkeypatch.setattr(catalogue, "_load_families", lambda: None)
    specs = catalogue.catalogue("gldzm")
    assert [s.tag for s in specs] == list(gldzm.FEATURES)
    assert not any(s.pyradiomics for s in specs)
    assert all(len(s.code) == 4 and s.meaning for s in specs)
    assert catalogue.spec_for_tag("dzm_sde").column == "original_gldzm_SmallDistanceEmphasis"
    assert catalogue.spec_for_tag("dzm_zd_entr").code == "GBDU"
