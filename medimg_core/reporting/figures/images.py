"""Figure builders for images: a grayscale image, and an occlusion-sensitivity map over it.

Pure functions (pixels and :class:`medimg_core.imaging.occlusion.OcclusionMap` in,
``plotly.graph_objects.Figure`` out), in the style of the other figure modules. The image is
embedded as one PNG (``go.Image``), so a large image costs no more than a small one; the
occlusion heatmap is drawn on top with at most :data:`MAX_CELLS` cells (it has the resolution of
its patches anyway). Red areas push the prediction towards the explained class, blue ones away
from it, as in the SHAP figures; areas that change nothing are transparent.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from medimg_core.errors import DataError
from medimg_core.imaging.occlusion import OcclusionMap

__all__ = ["MAX_CELLS", "image_figure", "occlusion_figure", "to_uint8"]

MAX_CELLS = 10_000
"""Most heatmap cells drawn; larger maps are averaged over blocks of pixels first."""

_RED = "255, 13, 87"
_BLUE = "30, 136, 229"


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Grayscale pixels in [0, 1] as uint8 (0-255), for display.

    Raises
    ------
    DataError
        When ``pixels`` is not a non-empty 2-D array.
    """
    arr = np.asarray(pixels)
    if arr.ndim != 2 or arr.size == 0:
        raise DataError(
            f"An image to show must be a 2-D grayscale array, got shape {arr.shape}; pass "
            "LoadedImage.pixels."
        )
    if arr.dtype == np.uint8:
        return arr
    values = np.nan_to_num(arr.astype(np.float64), nan=0.0)
    return np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)


def _data_uri(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(pixels), mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _image_layout(fig: go.Figure, shape: tuple[int, int], title: str | None, height: int) -> None:
    rows, cols = shape
    fig.update_layout(
        template="plotly_white",
        height=height,
        title={"text": title or "", "x": 0.01, "xanchor": "left", "font": {"size": 14}},
        font={"size": 13},
        margin={"l": 4, "r": 4, "t": 36 if title else 4, "b": 4},
        hoverlabel={"font": {"size": 13}},
        showlegend=False,
    )
    # Pixel coordinates, row 0 at the top; one unit on x equals one on y so nothing is stretched.
    fig.update_xaxes(
        range=[-0.5, cols - 0.5], visible=False, constrain="domain", showgrid=False, zeroline=False
    )
    fig.update_yaxes(
        range=[rows - 0.5, -0.5],
        visible=False,
        scaleanchor="x",
        scaleratio=1,
        constrain="domain",
        showgrid=False,
        zeroline=False,
    )


def _image_trace(pixels: np.ndarray) -> go.Image:
    return go.Image(source=_data_uri(pixels), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip")


def image_figure(pixels: np.ndarray, *, title: str | None = None, height: int = 300) -> go.Figure:
    """A grayscale image at its true aspect ratio, without axes.

    Parameters
    ----------
    pixels : 2-D grayscale array in [0, 1] (``LoadedImage.pixels``) or uint8.
    title : optional title above the image.
    height : figure height in pixels.

    Returns
    -------
    go.Figure

    Raises
    ------
    DataError
        When ``pixels`` is not a 2-D array.
    """
    gray = to_uint8(pixels)
    fig = go.Figure(_image_trace(gray))
    _image_layout(fig, (int(gray.shape[0]), int(gray.shape[1])), title, height)
    return fig


def _block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    rows, cols = values.shape
    padded_rows, padded_cols = math.ceil(rows / factor) * factor, math.ceil(cols / factor) * factor
    padded = np.full((padded_rows, padded_cols), np.nan)
    padded[:rows, :cols] = values
    blocks = padded.reshape(padded_rows // factor, factor, padded_cols // factor, factor)
    return np.asarray(np.nanmean(blocks, axis=(1, 3)))


def occlusion_figure(
    pixels: np.ndarray,
    occlusion: OcclusionMap,
    *,
    title: str | None = None,
    height: int = 300,
) -> go.Figure:
    """The occlusion-sensitivity map drawn over the image it was computed on.

    Parameters
    ----------
    pixels : the image the map was computed on (the model's working size), 2-D in [0, 1].
    occlusion : from :func:`medimg_core.imaging.occlusion.occlusion_map`; ``heatmap`` has the image's
        shape and holds, per pixel, the probability lost when that area is masked.
    title : optional title above the map.
    height : figure height in pixels.

    Returns
    -------
    go.Figure
        The image in grayscale with a symmetric red-blue overlay (red: masking the area lowers
        P(target), so it supports the prediction; blue: the opposite; no change: transparent)
        and a colour bar in probability units.

    Raises
    ------
    DataError
        When the map and the image differ in shape.
    """
    gray = to_uint8(pixels)
    heat = np.asarray(occlusion.heatmap, dtype=np.float64)
    if heat.shape != gray.shape:
        raise DataError(
            f"The occlusion map has shape {heat.shape} but the image {gray.shape}; pass the "
            "image at the model's working size (the one the map was computed on)."
        )
    rows, cols = heat.shape
    factor = max(1, math.ceil(math.sqrt(rows * cols / MAX_CELLS)))
    shown = _block_mean(heat, factor) if factor > 1 else heat
    centres_y = np.arange(shown.shape[0]) * factor + (factor - 1) / 2
    centres_x = np.arange(shown.shape[1]) * factor + (factor - 1) / 2
    finite = shown[np.isfinite(shown)]
    extent = float(np.max(np.abs(finite))) if finite.size else 0.0
    extent = max(extent, 1e-6)
    target = occlusion.target
    colorscale: list[list[Any]] = [
        [0.0, f"rgba({_BLUE}, 0.85)"],
        [0.5, "rgba(255, 255, 255, 0)"],
        [1.0, f"rgba({_RED}, 0.85)"],
    ]
    heatmap = go.Heatmap(
        z=shown,
        x=centres_x,
        y=centres_y,
        zmin=-extent,
        zmax=extent,
        zmid=0.0,
        colorscale=colorscale,
        colorbar={
            "title": {"text": f"P({target}) lost when masked", "side": "top", "font": {"size": 12}},
            "orientation": "h",
            "x": 0.5,
            "xanchor": "center",
            "y": -0.02,
            "yanchor": "top",
            "thickness": 10,
            "len": 0.95,
            "tickvals": [-extent, 0.0, extent],
            "ticktext": [_signed(-extent), "0", _signed(extent)],
            "tickfont": {"size": 11},
        },
        hovertemplate=(
            "row %{y:.0f}, column %{x:.0f}<br>masking here changes P("
            + target
            + ") by %{customdata:+.3f}<extra></extra>"
        ),
        customdata=-shown,
        xgap=0,
        ygap=0,
    )
    fig = go.Figure([_image_trace(gray), heatmap])
    _image_layout(fig, (rows, cols), title, height)
    fig.update_layout(margin={"b": 64})
    return fig


def _signed(value: float) -> str:
    """A signed probability change with enough digits to tell small changes from none."""
    digits = max(2, 1 - math.floor(math.log10(abs(value)))) if value else 2
    return f"{value:+.{min(digits, 6)}f}"
