"""Tests for medimg_core.reporting.figures.volumes: three slices of a volume, to scale."""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image
from scipy import ndimage
from skimage.draw import polygon2mask

from medimg_core.errors import ConfigError, DataError
from medimg_core.reporting.figures.volumes import (
    AUTO_WINDOW_NAME,
    CT_WINDOWS,
    MASK_COLOUR,
    Window,
    apply_window,
    default_window,
    lesion_centre,
    orthogonal_slices_figure,
)

from .conftest import assert_house_layout

SPACING = (3.0, 1.0, 0.5)


def _pixels(trace: go.Image) -> np.ndarray:
    header, encoded = trace.source.split(",", 1)
    assert header == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))


def _images(fig: go.Figure) -> list[go.Image]:
    return [t for t in fig.data if t.type == "image"]


def _outlines(fig: go.Figure) -> list[go.Scatter]:
    return [t for t in fig.data if t.type == "scatter"]


def _blob(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """An irregular lesion away from the edges, touching none of them."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=shape), 2.5)
    core = np.zeros(shape, dtype=bool)
    core[tuple(slice(n // 4, 3 * n // 4) for n in shape)] = True
    return core & (smooth > np.percentile(smooth[core], 40))


def test_three_panels_show_the_right_slices_to_scale() -> None:
    volume = np.arange(40 * 30 * 20, dtype=np.float64).reshape(40, 30, 20)
    window = Window(12_000.0, 24_000.0, "Ramp")
    fig = orthogonal_slices_figure(
        volume, spacing=SPACING, centre=(12, 5, 7), window=window, title="Case 7"
    )
    assert_house_layout(fig)
    assert [a.text for a in fig.layout.annotations] == [
        "Axial z=13/40",
        "Coronal y=6/30",
        "Sagittal x=8/20",
    ]
    assert fig.layout.title.text == "Case 7"
    assert fig.layout.title.subtitle.text == "Window: Ramp (L 12000, W 24000)"

    axial, coronal, sagittal = _images(fig)
    np.testing.assert_array_equal(_pixels(axial), apply_window(volume[12], window))
    np.testing.assert_array_equal(_pixels(coronal), apply_window(volume[:, 5, :], window))
    np.testing.assert_array_equal(_pixels(sagittal), apply_window(volume[:, :, 7], window))
    assert (axial.dx, axial.dy) == (0.5, 1.0)
    assert (coronal.dx, coronal.dy) == (0.5, 3.0)
    assert (sagittal.dx, sagittal.dy) == (1.0, 3.0)

    layout = fig.layout
    # Millimetres on both axes, one mm on x as long as one on y.
    assert list(layout.xaxis.range) == [-0.25, 9.75]
    assert list(layout.yaxis.range) == [29.5, -0.5]  # axial: row 0 at the top
    assert list(layout.yaxis2.range) == [-1.5, 118.5]  # coronal: superior (high z) up
    assert list(layout.xaxis3.range) == [-0.5, 29.5]
    assert list(layout.yaxis3.range) == [-1.5, 118.5]
    assert [layout.yaxis.scaleanchor, layout.yaxis2.scaleanchor, layout.yaxis3.scaleanchor] == [
        "x",
        "x2",
        "x3",
    ]
    assert all(ax.scaleratio == 1 for ax in (layout.yaxis, layout.yaxis2, layout.yaxis3))

    # Cross-hairs: where the other two planes cut, in mm (x 7 -> 3.5, y 5 -> 5, z 12 -> 36).
    cuts = {
        (s.xref, s.x0 if s.x0 == s.x1 else None, s.y0 if s.y0 == s.y1 else None)
        for s in layout.shapes
    }
    assert cuts == {
        ("x", 3.5, None), ("x", None, 5.0),
        ("x2", 3.5, None), ("x2", None, 36.0),
        ("x3", 5.0, None), ("x3", None, 36.0),
    }  # fmt: skip
    go.Figure(fig.to_dict())  # the whole figure validates


def test_window_maps_its_edges_to_black_and_white() -> None:
    soft = CT_WINDOWS["soft_tissue"]
    assert (soft.level, soft.width) == (40.0, 400.0)
    assert (CT_WINDOWS["lung"].level, CT_WINDOWS["lung"].width) == (-600.0, 1500.0)
    assert (CT_WINDOWS["bone"].level, CT_WINDOWS["bone"].width) == (300.0, 1500.0)
    assert (CT_WINDOWS["brain"].level, CT_WINDOWS["brain"].width) == (40.0, 80.0)

    ramp = np.linspace(-400.0, 480.0, 45)  # steps of 20 HU
    volume = np.broadcast_to(ramp, (3, 4, 45)).copy()
    fig = orthogonal_slices_figure(volume, spacing=(1, 1, 1), window=soft)
    row = _pixels(_images(fig)[0])[0].astype(int)
    at = {float(v): int(p) for v, p in zip(ramp, row, strict=True)}
    assert at[-160.0] == 0 and at[240.0] == 255
    assert at[40.0] == 128  # the level is mid-grey (127.5 rounds to even)
    assert at[-400.0] == 0 and at[480.0] == 255  # clipped outside the window
    assert at[-140.0] == round(20 / 400 * 255)
    inside = row[(ramp >= -160) & (ramp <= 240)]
    assert np.all(np.diff(inside) > 0)
    assert fig.layout.title.text == "Window: Soft tissue (L 40, W 400)"


def test_default_window_for_ct_and_mr() -> None:
    rng = np.random.default_rng(1)
    ct = np.where(rng.random((10, 32, 32)) < 0.3, -1000.0, rng.normal(40, 30, (10, 32, 32)))
    assert default_window(ct, None, None) == CT_WINDOWS["soft_tissue"]

    mr = rng.uniform(0, 1000, (10, 32, 32))
    assert default_window(mr, None, "CT") == CT_WINDOWS["soft_tissue"]
    auto = default_window(mr, None, "MR")
    low, high = np.percentile(mr, [1, 99])
    assert auto.name == AUTO_WINDOW_NAME == "Auto (1–99%)"
    assert auto.level == pytest.approx((low + high) / 2)
    assert auto.width == pytest.approx(high - low)
    assert default_window(mr - 2000, None, "MR").name == AUTO_WINDOW_NAME  # declared modality wins

    # With a mask, the window fits the lesion's surroundings, not a bright far corner.
    mr_far = rng.uniform(100, 200, (20, 64, 64))
    mr_far[:, 50:, 50:] = 5000.0
    mask = np.zeros(mr_far.shape, dtype=bool)
    mask[8:12, 10:16, 10:16] = True
    fitted = default_window(mr_far, mask, "MR")
    assert fitted.level - fitted.width / 2 >= 100 and fitted.level + fitted.width / 2 <= 200
    assert default_window(mr_far, None, "MR").level + 0 > 200  # the corner pulls it without one

    uniform = default_window(np.full((2, 3, 4), 7.0), None, None)
    assert (uniform.level, uniform.name) == (7.0, AUTO_WINDOW_NAME) and uniform.width > 0


def test_lesion_centre_stays_inside_a_crescent() -> None:
    _, yy, xx = np.ogrid[:9, :64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 <= 20**2
    bite = (yy - 32) ** 2 + (xx - 40) ** 2 <= 18**2
    crescent = np.zeros((9, 64, 64), dtype=bool)
    crescent[3:6] = (disc & ~bite)[0]
    com = ndimage.center_of_mass(crescent)
    assert not crescent[tuple(round(c) for c in com)]  # the naive centre misses it
    z, y, x = lesion_centre(crescent)
    assert crescent[z, y, x]
    assert z == 4 and abs(y - 32) <= 1  # on the axis of symmetry, or next to it
    distances = np.hypot(*(np.argwhere(crescent[4]) - [com[1], com[2]]).T)
    assert np.hypot(y - com[1], x - com[2]) == pytest.approx(distances.min())

    assert lesion_centre(None, shape=(9, 64, 64)) == (4, 32, 32)
    assert lesion_centre(np.zeros((5, 6, 7), dtype=bool)) == (2, 3, 3)
    fig = orthogonal_slices_figure(crescent.astype(float), spacing=(1, 1, 1), mask=crescent)
    assert fig.layout.annotations[0].text == f"Axial z={z + 1}/9"


def test_outline_runs_along_the_mask_boundary() -> None:
    mask = _blob((24, 40, 36))
    volume = np.where(mask, 100.0, 0.0)
    fig = orthogonal_slices_figure(volume, spacing=SPACING, mask=mask)
    z, y, x = lesion_centre(mask, spacing=SPACING)
    planes = (mask[z], mask[:, y, :], mask[:, :, x])
    scales = ((SPACING[1], SPACING[2]), (SPACING[0], SPACING[2]), (SPACING[0], SPACING[1]))
    outlines = _outlines(fig)
    assert len(outlines) == 3
    assert [t.showlegend for t in outlines] == [True, False, False]
    assert {t.name for t in outlines} == {"Lesion mask"} and outlines[0].line.color == MASK_COLOUR
    for trace, plane, (row_mm, col_mm) in zip(outlines, planes, scales, strict=True):
        xs = np.array([np.nan if v is None else v for v in trace.x], dtype=float)
        ys = np.array([np.nan if v is None else v for v in trace.y], dtype=float)
        rows, cols = ys / row_mm, xs / col_mm
        vertex = np.isfinite(rows)
        assert vertex.sum() > 20
        padded = np.pad(plane, 1)  # outside the volume counts as outside the lesion
        r, c = rows[vertex] + 1, cols[vertex] + 1
        # Within half a voxel of each vertex lie a lesion voxel and a background voxel.
        corners = [
            padded[rr, cc]
            for rr in (np.floor(r).astype(int), np.ceil(r).astype(int))
            for cc in (np.floor(c).astype(int), np.ceil(c).astype(int))
        ]
        touching = np.stack(corners)
        assert np.all(touching.any(axis=0) & ~touching.all(axis=0))
        # The outlines enclose exactly the lesion voxels (even-odd over the contours).
        enclosed = np.zeros(plane.shape, dtype=bool)
        for part in np.split(np.c_[rows, cols], np.flatnonzero(~vertex)):
            part = part[np.isfinite(part[:, 0])]
            if len(part):
                enclosed ^= polygon2mask(plane.shape, part)
        np.testing.assert_array_equal(enclosed, plane)


def test_lesion_on_the_edge_gets_a_closed_outline() -> None:
    mask = np.zeros((4, 10, 10), dtype=bool)
    mask[:, :3, :3] = True
    fig = orthogonal_slices_figure(mask.astype(float), spacing=(1, 1, 1), mask=mask)
    axial = _outlines(fig)[0]
    xs, ys = [v for v in axial.x if v is not None], [v for v in axial.y if v is not None]
    assert (xs[0], ys[0]) == (xs[-1], ys[-1])
    assert min(xs) == -0.5 and min(ys) == -0.5 and max(xs) == pytest.approx(2.5)


def test_no_mask_draws_no_outline() -> None:
    volume = np.random.default_rng(3).normal(size=(6, 8, 10))
    fig = orthogonal_slices_figure(volume, spacing=(2, 1, 1), mask=None)
    assert _outlines(fig) == []
    assert len(_images(fig)) == 3
    assert fig.layout.showlegend is False
    assert fig.layout.annotations[0].text == "Axial z=4/6"


def test_figure_embeds_three_slices_not_the_volume() -> None:
    volume = np.random.default_rng(4).normal(40, 200, (100, 256, 256)).astype(np.float32)
    mask = np.zeros(volume.shape, dtype=bool)
    mask[40:60, 100:140, 90:150] = True
    fig = orthogonal_slices_figure(volume, spacing=(2.5, 0.7, 0.7), mask=mask)
    assert len(_images(fig)) == 3
    # Noise does not compress: three slices are ~120 kB of pixels; the volume would be 6.5 MB.
    assert len(fig.to_json()) < 300_000


def test_bad_inputs_are_refused_with_advice() -> None:
    volume = np.zeros((4, 5, 6))
    with pytest.raises(DataError, match=r"3-D array ordered \(z, y, x\), got shape \(5, 6\)"):
        orthogonal_slices_figure(np.zeros((5, 6)), spacing=(1, 1, 1))
    with pytest.raises(DataError, match=r"3-D array .* got shape \(2, 4, 5, 6\)"):
        default_window(np.zeros((2, 4, 5, 6)))
    with pytest.raises(DataError, match=r"mask has shape \(4, 5, 5\) but the volume \(4, 5, 6\)"):
        orthogonal_slices_figure(volume, spacing=(1, 1, 1), mask=np.zeros((4, 5, 5)))
    with pytest.raises(DataError, match=r"centre \(4, 0, 0\) is not .* inside the volume"):
        orthogonal_slices_figure(volume, spacing=(1, 1, 1), centre=(4, 0, 0))
    with pytest.raises(DataError, match="three positive sizes in mm"):
        orthogonal_slices_figure(volume, spacing=(1, 0, 1))
    with pytest.raises(ConfigError, match="width > 0"):
        Window(40.0, 0.0, "Flat")
