"""The feature shift figure shows the SMDs it is given, largest at the top, with the guides."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from medimg_core.errors import DataError
from medimg_core.modelling.shift import feature_shift
from medimg_core.reporting.figures.shift import FLAG_COLOURS, shift_figure


def test_bars_are_the_smds_with_guides_and_flags() -> None:
    ref = pd.DataFrame(
        {"a": [1.0, 2.0, 3.0, 4.0], "b": [0.0, 1.0, 0.0, 1.0], "c": [5.0, 6.0, 7.0, 8.0]}
    )
    new = pd.DataFrame(
        {"a": [2.0, 3.0, 4.0, 5.0], "b": [0.0, 1.0, 0.0, 1.0], "c": [5.2, 6.2, 7.2, 8.2]}
    )
    shifts = feature_shift(ref, new, ["a", "b", "c"])
    fig = shift_figure(shifts)
    shown = {y: x for trace in fig.data for x, y in zip(trace.x, trace.y, strict=True)}
    assert shown == pytest.approx(
        {"a": 1 / math.sqrt(5 / 3), "b": 0.0, "c": 0.2 / math.sqrt(5 / 3)}
    )
    by_name = {trace.name.split(" ")[0]: trace for trace in fig.data}
    assert list(by_name["notable"].y) == ["a"]  # SMD 0.77
    assert list(by_name["small"].y) == ["c"]  # SMD 0.15
    assert list(by_name["no"].y) == ["b"]
    assert by_name["notable"].marker.color == FLAG_COLOURS["notable"]
    assert list(by_name["notable"].text) == ["+0.77"]
    # Largest at the top: plotly draws the last category of the array at the top.
    assert list(fig.layout.yaxis.categoryarray) == ["b", "c", "a"]
    guides = sorted(shape.x0 for shape in fig.layout.shapes)
    assert guides == pytest.approx([-0.2, -0.1, 0.0, 0.1, 0.2])


def test_nothing_to_draw_is_a_clear_error() -> None:
    ref = pd.DataFrame({"x": [float("nan")] * 3})
    shifts = feature_shift(ref, pd.DataFrame({"x": [1.0, 2.0]}), ["x"])
    with pytest.raises(DataError, match="No feature shift can be drawn"):
        shift_figure(shifts)
