"""Tests for medimg_core.reporting.figures.images: an image and its occlusion map, to scale."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_core.errors import DataError
from medimg_core.imaging.occlusion import occlusion_map
from medimg_core.reporting.figures.images import image_figure, occlusion_figure


def test_image_figures_keep_pixel_geometry() -> None:
    pixels = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(40, 30)
    fig = image_figure(pixels, title="x")
    assert fig.data[0].type == "image"
    assert list(fig.layout.yaxis.range) == [39.5, -0.5]

    result = occlusion_map(pixels, lambda b: b.reshape(len(b), -1).mean(axis=1), patch=5)
    overlay = occlusion_figure(pixels, result)
    heat = overlay.data[1]
    assert heat.type == "heatmap"
    assert heat.zmid == 0 and heat.zmin == -heat.zmax

    big = np.zeros((300, 300), dtype=np.float32)
    big_map = occlusion_map(big, lambda b: b.reshape(len(b), -1).mean(axis=1), patch=50)
    assert np.asarray(occlusion_figure(big, big_map).data[1].z).size <= 10_000

    with pytest.raises(DataError, match=r"has shape .* but the image"):
        occlusion_figure(pixels[:10], result)
    with pytest.raises(DataError, match="2-D grayscale array"):
        image_figure(np.zeros((3, 3, 3)))
