"""Figure builder for 3-D volumes: three orthogonal slices with the mask outline and a window.

Pure functions (a (z, y, x) array, its voxel spacing and an optional mask in, a
``plotly.graph_objects.Figure`` out), in the style of :mod:`.images`. Each panel embeds one
grayscale PNG (``go.Image``), so a 256 x 256 x 100 volume costs three slices, not the volume.
Panels are drawn in millimetres: every PNG pixel is stretched to its voxel's physical size and
one millimetre on x equals one on y, so a 3 mm slice thickness looks three times as tall as a
1 mm pixel. The slice index ``z`` is taken to grow towards the patient's head (NIfTI RAS and
DICOM LPS both count z that way), so coronal and sagittal panels show superior at the top.

The mask outline is the 0.5 iso-contour of each 2-D mask slice (``skimage.measure.find_contours``):
on a binary mask its vertices lie halfway between a lesion voxel's centre and its neighbour's,
on the voxel boundary the reader sees.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots
from skimage.measure import find_contours

from medimg_core.errors import ConfigError, ImageError
from medimg_core.reporting.figures._style import PALETTE, house_figure, house_layout, top_margin

__all__ = [
    "AUTO_WINDOW_NAME",
    "CT_WINDOWS",
    "HU_MINIMUM",
    "MASK_COLOUR",
    "Window",
    "apply_window",
    "default_window",
    "lesion_centre",
    "orthogonal_slices_figure",
]

MASK_COLOUR = "#FF0D57"
"""The lesion outline: the house red (as in the SHAP figures), visible on any grey."""
_CROSSHAIR_COLOUR = PALETTE[6]  # Okabe-Ito yellow: apart from the red outline, seen on grey

HU_MINIMUM = -500.0
"""A volume whose lowest value is at most this looks like CT in Hounsfield units (air is -1000)."""
AUTO_WINDOW_NAME = "Auto (1–99%)"
_BOX_MARGIN = 10
"""Voxels added around the mask's bounding box (at least) when an automatic window is fitted."""


@dataclass(frozen=True)
class Window:
    """A display window: values from ``level - width/2`` (black) to ``level + width/2`` (white).

    Parameters
    ----------
    level : the value shown mid-grey (the window's centre), in the volume's units (HU for CT).
    width : the range of values spread from black to white; must be > 0.
    name : the preset's name shown with the figure, e.g. "Soft tissue".
    """

    level: float
    width: float
    name: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.level) and math.isfinite(self.width) and self.width > 0):
            raise ConfigError(
                f"A display window needs a finite level and a width > 0, got level {self.level} "
                f"and width {self.width}; pick a preset from CT_WINDOWS or widen the window."
            )

    @property
    def label(self) -> str:
        """The window as shown under the figure: "Soft tissue (L 40, W 400)"."""
        return f"{self.name} (L {_number(self.level)}, W {_number(self.width)})"


CT_WINDOWS: dict[str, Window] = {
    "soft_tissue": Window(40.0, 400.0, "Soft tissue"),
    "lung": Window(-600.0, 1500.0, "Lung"),
    "bone": Window(300.0, 1500.0, "Bone"),
    "brain": Window(40.0, 80.0, "Brain"),
}
"""The standard CT presets, in Hounsfield units."""


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.3g}"


def _as_volume(array: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim != 3 or arr.size == 0:
        raise ImageError(
            f"The {what} must be a non-empty 3-D array ordered (z, y, x), got shape {arr.shape}; "
            "load the volume (NIfTI, NRRD or a DICOM series) rather than one slice."
        )
    return arr


def _as_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    arr = np.asarray(mask)
    if arr.shape != shape:
        raise ImageError(
            f"The mask has shape {arr.shape} but the volume {shape}; pass the segmentation drawn "
            "on this volume (resampled to its grid)."
        )
    if arr.dtype == bool:
        return arr
    return np.asarray(np.nan_to_num(arr.astype(np.float64), nan=0.0) != 0)


def _as_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ImageError(
            f"The voxel spacing must be three positive sizes in mm ordered (z, y, x), got "
            f"{spacing!r}; take it from the image header."
        )
    return values[0], values[1], values[2]


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Values as uint8 grey through ``window``: ``level - width/2`` -> 0, ``level + width/2`` -> 255.

    Values outside the window are clipped to black or white; NaN is shown black.
    """
    low = window.level - window.width / 2
    scaled = (np.asarray(values, dtype=np.float64) - low) / window.width
    return np.round(np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)


def default_window(
    array: np.ndarray, mask: np.ndarray | None = None, modality: str | None = None
) -> Window:
    """The window a volume opens with: soft tissue for CT, its 1st-99th percentiles otherwise.

    Parameters
    ----------
    array : the (z, y, x) volume.
    mask : optional lesion mask of the same shape; the automatic window is then fitted to the
        mask's bounding box widened by half its size (at least 10 voxels) on every side, so the
        lesion and its surroundings get the contrast, not the air around the patient.
    modality : the DICOM modality ("CT", "MR" ...) when known. "CT" gives the soft-tissue window;
        any other modality the automatic one. Without it, a volume whose lowest value is at most
        :data:`HU_MINIMUM` is taken to be CT in Hounsfield units.

    Returns
    -------
    Window
        ``CT_WINDOWS["soft_tissue"]``, or ``Window`` named :data:`AUTO_WINDOW_NAME` spanning the
        1st to the 99th percentile of the finite values considered.

    Raises
    ------
    ImageError
        When ``array`` is not 3-D or the mask's shape differs.
    """
    volume = _as_volume(array, "volume")
    lesion = _as_mask(mask, volume.shape)
    finite = volume[np.isfinite(volume)] if volume.dtype.kind == "f" else volume.ravel()
    if modality is not None:
        is_ct = modality.strip().upper() == "CT"
    else:
        is_ct = finite.size > 0 and float(finite.min()) <= HU_MINIMUM
    if is_ct:
        return CT_WINDOWS["soft_tissue"]
    region = volume
    if lesion is not None and lesion.any():
        region = volume[_widened_box(lesion)]
    values = np.asarray(region, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Window(0.0, 1.0, AUTO_WINDOW_NAME)
    low, high = (float(v) for v in np.percentile(values, [1.0, 99.0]))
    if high - low <= 0:
        # A uniform region: any width shows it; one unit (or 1% of the value) keeps it mid-grey.
        return Window(low, max(1.0, abs(low) / 100), AUTO_WINDOW_NAME)
    return Window((low + high) / 2, high - low, AUTO_WINDOW_NAME)


def _widened_box(mask: np.ndarray) -> tuple[slice, ...]:
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        start, stop = int(hits[0]), int(hits[-1]) + 1
        margin = max(_BOX_MARGIN, (stop - start) // 2)
        box.append(slice(max(0, start - margin), min(mask.shape[axis], stop + margin)))
    return tuple(box)


def lesion_centre(
    mask: np.ndarray | None,
    *,
    shape: tuple[int, int, int] | None = None,
    spacing: Sequence[float] | None = None,
) -> tuple[int, int, int]:
    """The (z, y, x) voxel to centre the slices on: the lesion voxel nearest its centre of mass.

    The centre of mass of a crescent or a ring lies outside it; the nearest lesion voxel keeps
    the cross-hairs on the lesion.

    Parameters
    ----------
    mask : 3-D lesion mask (non-zero = lesion), or None.
    shape : the volume's shape, used when there is no mask (or an empty one).
    spacing : optional (z, y, x) voxel size in mm; "nearest" is then measured in mm.

    Returns
    -------
    tuple of int
        The (z, y, x) index; the middle of the volume when the mask is None or empty.

    Raises
    ------
    ImageError
        When the mask is not 3-D, or neither a mask nor a shape is given.
    """
    if mask is None:
        if shape is None:
            raise ImageError(
                "lesion_centre needs a mask or the volume's shape; pass shape=array.shape."
            )
        return _middle(tuple(shape))
    lesion = _as_mask(mask, _as_volume(mask, "mask").shape)
    assert lesion is not None
    if not lesion.any():
        return _middle(lesion.shape)
    points = np.argwhere(lesion).astype(np.float64)
    scale = np.asarray(_as_spacing(spacing) if spacing is not None else (1.0, 1.0, 1.0))
    offsets = (points - points.mean(axis=0)) * scale
    nearest = np.argmin(np.einsum("ij,ij->i", offsets, offsets))
    z, y, x = (int(v) for v in points[nearest])
    return z, y, x


def _middle(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ImageError(f"A volume's shape has three sizes (z, y, x), got {shape}.")
    return shape[0] // 2, shape[1] // 2, shape[2] // 2


def _data_uri(gray: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(gray), mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _outline(plane: np.ndarray, row_mm: float, col_mm: float) -> tuple[list[Any], list[Any]]:
    """The 0.5 contours of a 2-D mask in mm, as one x/y list with None between contours."""
    # Padding closes the contours of a lesion touching the edge of the volume.
    padded = np.pad(plane.astype(np.float64), 1)
    xs: list[Any] = []
    ys: list[Any] = []
    for contour in find_contours(padded, 0.5):
        rows, cols = contour[:, 0] - 1, contour[:, 1] - 1
        xs.extend((cols * col_mm).tolist())
        ys.extend((rows * row_mm).tolist())
        xs.append(None)
        ys.append(None)
    return xs, ys


@dataclass(frozen=True)
class _Panel:
    title: str
    gray: np.ndarray
    mask: np.ndarray | None
    row_mm: float
    col_mm: float
    cross_col: float  # mm along the panel's horizontal axis
    cross_row: float  # mm along the panel's vertical axis
    superior_up: bool


def orthogonal_slices_figure(
    array: np.ndarray,
    *,
    spacing: Sequence[float],
    mask: np.ndarray | None = None,
    centre: tuple[int, int, int] | None = None,
    window: Window | None = None,
    title: str | None = None,
    height: int = 340,
) -> go.Figure:
    """Axial, coronal and sagittal slices through one point, with the lesion's outline.

    Parameters
    ----------
    array : the (z, y, x) volume.
    spacing : (z, y, x) voxel size in mm; panels are drawn to scale in mm.
    mask : optional lesion mask of the same shape (non-zero = lesion); its outline is drawn in
        red on every panel.
    centre : (z, y, x) index the three planes pass through; by default :func:`lesion_centre`
        (the middle of the volume without a mask).
    window : display window; by default :func:`default_window` (soft tissue for HU-like values,
        the 1st-99th percentiles otherwise).
    title : optional title above the panels; the window is named under it either way.
    height : figure height in pixels.

    Returns
    -------
    go.Figure
        Three panels: axial (the z slice; rows y, columns x), coronal (the y slice; z upwards,
        columns x) and sagittal (the x slice; z upwards, columns y). Panel titles give the
        1-based slice number and the count, e.g. "Axial z=13/40" for index 12. Thin yellow
        cross-hairs mark where the other two planes cut.

    Raises
    ------
    ImageError
        When ``array`` is not 3-D, the mask's shape differs, the spacing is not three positive
        sizes, or ``centre`` lies outside the volume.
    """
    volume = _as_volume(array, "volume")
    sz, sy, sx = _as_spacing(spacing)
    lesion = _as_mask(mask, volume.shape)
    if centre is None:
        centre = lesion_centre(lesion, shape=volume.shape, spacing=(sz, sy, sx))
    cz, cy, cx = _checked_centre(centre, volume.shape)
    if window is None:
        window = default_window(volume, lesion)
    nz, ny, nx = volume.shape

    def plane(index: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray | None]:
        return apply_window(volume[index], window), None if lesion is None else lesion[index]

    axial, axial_mask = plane((cz, slice(None), slice(None)))
    coronal, coronal_mask = plane((slice(None), cy, slice(None)))
    sagittal, sagittal_mask = plane((slice(None), slice(None), cx))
    panels = (
        _Panel(f"Axial z={cz + 1}/{nz}", axial, axial_mask, sy, sx, cx * sx, cy * sy, False),
        _Panel(f"Coronal y={cy + 1}/{ny}", coronal, coronal_mask, sz, sx, cx * sx, cz * sz, True),
        _Panel(
            f"Sagittal x={cx + 1}/{nx}", sagittal, sagittal_mask, sz, sy, cy * sy, cz * sz, True
        ),
    )
    widths = [p.gray.shape[1] * p.col_mm for p in panels]
    fig = make_subplots(
        figure=house_figure(),
        rows=1,
        cols=3,
        subplot_titles=[p.title for p in panels],
        column_widths=[w / sum(widths) for w in widths],
        horizontal_spacing=0.02,
    )
    for col, panel in enumerate(panels, start=1):
        _draw_panel(fig, panel, col, show_legend=col == 1)
    window_line = f"Window: {window.label}"
    legend = "below" if lesion is not None else None
    if title:
        house_layout(fig, title, height, legend=legend, subtitle=window_line)
    else:
        house_layout(fig, window_line, height, legend=legend)
        fig.update_layout(title_font={"size": 13, "color": "#555555"})
    # Room for the panel titles under the heading.
    top = top_margin(True, window_line if title else None) + 24
    fig.update_layout(hovermode="closest", margin={"t": top})
    fig.update_annotations(font_size=13)
    return fig


def _checked_centre(centre: Sequence[int], shape: tuple[int, ...]) -> tuple[int, int, int]:
    values = tuple(int(c) for c in centre)
    if len(values) != 3 or not all(0 <= c < n for c, n in zip(values, shape, strict=False)):
        raise ImageError(
            f"The centre {tuple(centre)} is not a (z, y, x) index inside the volume of shape "
            f"{shape}; pick indices from 0 to size - 1, or leave centre=None for the lesion's."
        )
    return values[0], values[1], values[2]


def _draw_panel(fig: go.Figure, panel: _Panel, col: int, *, show_legend: bool) -> None:
    rows, cols = panel.gray.shape
    fig.add_trace(
        go.Image(
            source=_data_uri(panel.gray),
            x0=0,
            y0=0,
            dx=panel.col_mm,
            dy=panel.row_mm,
            hoverinfo="skip",
            name=panel.title,
        ),
        row=1,
        col=col,
    )
    if panel.mask is not None:
        xs, ys = _outline(panel.mask, panel.row_mm, panel.col_mm)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"color": MASK_COLOUR, "width": 2},
                name="Lesion mask",
                legendgroup="mask",
                showlegend=show_legend,
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
    x_range = [-0.5 * panel.col_mm, (cols - 0.5) * panel.col_mm]
    y_edges = [-0.5 * panel.row_mm, (rows - 0.5) * panel.row_mm]
    # Axial: row 0 at the top, as radiology viewers show it; coronal, sagittal: z grows upwards.
    y_range = y_edges if panel.superior_up else y_edges[::-1]
    line = {"color": _CROSSHAIR_COLOUR, "width": 1}
    fig.add_shape(
        type="line",
        x0=panel.cross_col,
        x1=panel.cross_col,
        y0=y_edges[0],
        y1=y_edges[1],
        line=line,
        opacity=0.6,
        row=1,
        col=col,
    )
    fig.add_shape(
        type="line",
        x0=x_range[0],
        x1=x_range[1],
        y0=panel.cross_row,
        y1=panel.cross_row,
        line=line,
        opacity=0.6,
        row=1,
        col=col,
    )
    suffix = "" if col == 1 else str(col)
    fig.update_xaxes(
        range=x_range,
        visible=False,
        constrain="domain",
        showgrid=False,
        zeroline=False,
        row=1,
        col=col,
    )
    fig.update_yaxes(
        range=y_range,
        visible=False,
        scaleanchor=f"x{suffix}",
        scaleratio=1,
        constrain="domain",
        showgrid=False,
        zeroline=False,
        row=1,
        col=col,
    )
