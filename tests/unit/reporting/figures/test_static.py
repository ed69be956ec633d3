"""Tests for medimg_core.reporting.figures.static: figures drawn as images for documents."""

from __future__ import annotations

import io
import shutil

import plotly.graph_objects as go
import pytest
from PIL import Image

from medimg_core.errors import ConfigError
from medimg_core.reporting.figures import static
from medimg_core.reporting.figures.static import DASHES, SYMBOLS, figure_image, print_ready


def _figure() -> go.Figure:
    return go.Figure(
        [
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="model"),
            go.Scatter(x=[0, 1], y=[1, 0], mode="lines+markers", name="treat all"),
            go.Scatter(x=[0.5], y=[0.5], mode="markers", name="threshold"),
            go.Scatter(x=[0, 1, 1], y=[0, 0, 1], fill="toself", mode="lines", name="band"),
        ]
    )


def test_print_ready_tells_traces_apart_without_colour() -> None:
    original = _figure()
    ready = print_ready(original)
    model, treat_all, threshold, band = ready.data
    assert (model.line.dash, treat_all.line.dash) == DASHES[:2]
    assert (treat_all.marker.symbol, threshold.marker.symbol) == SYMBOLS[:2]
    assert model.line.width >= 2.5
    # Filled bands keep their outline; the figure itself is not changed.
    assert band.line.dash is None
    assert original.data[0].line.dash is None
    assert ready.layout.paper_bgcolor == "white"
    # The numbers drawn are the numbers given.
    assert list(treat_all.y) == [1, 0]


def test_lines_set_to_the_same_pattern_are_told_apart() -> None:
    fig = go.Figure(
        [go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "solid"}) for _ in range(3)]
    )
    assert [t.line.dash for t in print_ready(fig).data] == ["solid", "dash", "dot"]


def test_a_given_dash_or_symbol_is_kept() -> None:
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], line={"dash": "dot"}, marker={"symbol": "x"}))
    ready = print_ready(fig)
    assert (ready.data[0].line.dash, ready.data[0].marker.symbol) == ("dot", "x")


@pytest.mark.skipif(
    shutil.which("chromium") is None and shutil.which("google-chrome") is None,
    reason="no Chromium for plotly's exporter: apt-get install chromium (CI does)",
)
def test_figures_are_drawn_as_png_and_svg() -> None:
    png = figure_image(_figure(), width=400, height=300, scale=2)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == (800, 600)
    svg = figure_image(_figure(), width=400, height=300, fmt="svg").decode()
    assert svg.lstrip().startswith("<svg") and "treat all" in svg


def test_an_exporter_failure_is_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("no browser found")

    monkeypatch.setattr(static, "_ensure_server", broken)
    with pytest.raises(ConfigError, match="Install Chromium"):
        figure_image(_figure())
