"""Figures as static images, for documents (the model report's PDF and HTML, the case report).

Plotly's own exporter, ``kaleido``, draws a figure exactly as the dashboard does, in a headless
Chromium. Starting that browser takes about two seconds, so one browser is kept for the process
and reused by every export (about 0.15 s per figure); it is stopped when the process ends.

:func:`print_ready` makes a figure readable when printed in black and white: every trace gets
its own dash pattern and marker symbol as well as its colour, lines are thicker, and the
background is white.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import threading
from typing import Any, Literal

import plotly.graph_objects as go

from medimg_core.errors import ConfigError

__all__ = ["DASHES", "SYMBOLS", "figure_image", "print_ready"]

DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
"""Line patterns given to a figure's traces in order, so printed lines differ without colour."""

SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross")
"""Marker symbols given in the same order."""

_LOCK = threading.Lock()
_SERVER: dict[str, bool] = {"running": False}


def _stop() -> None:
    import kaleido

    with _LOCK:
        if _SERVER["running"]:
            kaleido.stop_sync_server(silence_warnings=True)
            _SERVER["running"] = False


def _ensure_server() -> None:
    import kaleido

    if not _SERVER["running"]:
        kaleido.start_sync_server(silence_warnings=True)
        _SERVER["running"] = True
        atexit.register(_stop)


def print_ready(fig: go.Figure) -> go.Figure:
    """A copy of ``fig`` that reads in black and white: dashes, symbols, thicker lines.

    Traces keep their colours (the PDF is in colour on screen); each line takes a dash pattern
    no earlier line has (its own when it has one, else the first free one of :data:`DASHES`)
    and the n-th marker trace the n-th of :data:`SYMBOLS`, so a printed legend still tells
    them apart.
    """
    out = go.Figure(copy.deepcopy(fig.to_dict()))
    used: set[str] = set()
    marker_i = 0
    for trace in out.data:
        if trace.type != "scatter":
            continue
        mode = trace.mode or "lines+markers"
        if "lines" in mode and trace.fill in (None, "none"):
            # A pattern already taken by an earlier line (unset = solid) gives way to the
            # first free one, so two lines never look alike once the colour is gone.
            dash = trace.line.dash or "solid"
            if dash in used:
                dash = next((d for d in DASHES if d not in used), dash)
            trace.line.dash = dash
            used.add(dash)
            trace.line.width = max(trace.line.width or 2, 2.5)
        if "markers" in mode:
            if trace.marker.symbol is None:
                trace.marker.symbol = SYMBOLS[marker_i % len(SYMBOLS)]
            marker_i += 1
    out.update_layout(template="simple_white", paper_bgcolor="white", plot_bgcolor="white")
    return out


def figure_image(
    fig: go.Figure,
    *,
    width: int = 720,
    height: int = 420,
    scale: float = 2.0,
    fmt: Literal["png", "svg"] = "png",
    printable: bool = True,
) -> bytes:
    """The figure drawn as a PNG (or SVG) by plotly's exporter.

    Parameters
    ----------
    fig : the figure, as the dashboard shows it.
    width, height : size in CSS pixels.
    scale : pixel density of a PNG (2 = sharp when printed at the figure's size).
    fmt : "png" or "svg".
    printable : apply :func:`print_ready` first.

    Returns
    -------
    bytes
        The image.

    Raises
    ------
    ConfigError
        When no Chromium-based browser is available for the exporter.
    """
    import kaleido

    drawn = print_ready(fig) if printable else fig
    options: dict[str, Any] = {"format": fmt, "width": width, "height": height}
    options["scale"] = scale if fmt == "png" else 1
    with _LOCK:
        try:
            _ensure_server()
            # kaleido directly: plotly.io.to_image passes browser options a running server
            # ignores, with a warning.
            return bytes(kaleido.calc_fig_sync(drawn.to_dict(), opts=options))
        except ConfigError:
            raise
        except Exception as exc:  # the exporter raises its own, undocumented, error types
            # Start afresh next time: the browser may have died.
            with contextlib.suppress(Exception):
                kaleido.stop_sync_server(silence_warnings=True)
            _SERVER["running"] = False
            raise ConfigError(
                f"The figures of a report are drawn by a headless Chromium, which failed: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. Install "
                "Chromium (Debian: apt install chromium) or set BROWSER_PATH to a Chrome or "
                "Chromium binary, then try again."
            ) from exc
