"""What every figure module shares: the house layout, no streamlit, a complete ``__all__``."""

from __future__ import annotations

import ast
import inspect
import json
import re
import subprocess
import sys
from types import ModuleType

import numpy as np
import plotly.graph_objects as go
import pytest

from medimg_core.reporting.figures import _style, data, evaluation, explanation
from medimg_core.reporting.figures import decision as decision_figures
from medimg_core.reporting.figures.evaluation import (
    calibration_figure,
    confusion_figure,
    leaderboard_figure,
    pr_figure,
    roc_figure,
    threshold_figure,
)
from medimg_core.reporting.figures.explanation import (
    beeswarm_figure,
    importance_figure,
    waterfall_figure,
)
from tests.unit.reporting.figures.conftest import binary_eval, leaderboard, make_explanation

FIGURE_MODULES = [_style, evaluation, explanation, data, decision_figures]


@pytest.mark.parametrize("module", FIGURE_MODULES, ids=lambda m: m.__name__)
def test_no_streamlit_import_in_figure_modules(module: ModuleType) -> None:
    tree = ast.parse(inspect.getsource(module))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported
    assert not any(name.split(".")[0] == "streamlit" for name in imported)


@pytest.mark.parametrize("module", FIGURE_MODULES, ids=lambda m: m.__name__)
def test_importing_figure_modules_does_not_load_streamlit(module: ModuleType) -> None:
    code = f"import sys, {module.__name__}; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("module", FIGURE_MODULES, ids=lambda m: m.__name__)
def test_all_matches_public_functions(module: ModuleType) -> None:
    public = {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and inspect.isfunction(obj)
        and obj.__module__ == module.__name__
    }
    assert public <= set(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name)


@pytest.mark.parametrize(
    "build",
    [
        lambda: roc_figure(binary_eval()),
        lambda: pr_figure(binary_eval()),
        lambda: calibration_figure(binary_eval()),
        lambda: threshold_figure(binary_eval()),
        lambda: importance_figure(make_explanation()),
        lambda: beeswarm_figure(make_explanation()),
        lambda: waterfall_figure(make_explanation().case(0)),
        lambda: confusion_figure(np.eye(2, dtype=int), ("a", "b")),
        lambda: leaderboard_figure(leaderboard()),
    ],
)
def test_fixed_height_and_short_title(build: object) -> None:
    fig = build()  # type: ignore[operator]
    assert 300 <= fig.layout.height <= 600
    assert fig.layout.template.layout.font is not None
    title = re.sub(r"<[^>]+>", "", fig.layout.title.text or "")
    assert 0 < len(title) <= 60


@pytest.mark.parametrize(
    "build",
    [
        lambda: threshold_figure(binary_eval(), threshold=0.37),
        lambda: confusion_figure(np.array([[5, 1], [2, 7]]), ("benign", "malignant")),
        lambda: confusion_figure(np.arange(9).reshape(3, 3), (0, 1, "2"), normalize=True),
    ],
    ids=["threshold", "confusion", "confusion-normalised"],
)
def test_fast_figures_pass_plotly_validation_unchanged(build: object) -> None:
    """Figures built without validation (redrawn on every slider move) are valid plotly: a
    validated copy accepts every property and draws the same figure."""
    import plotly.io as pio

    fig = build()  # type: ignore[operator]
    validated = go.Figure(fig.to_dict())  # raises on any invalid property
    # ... and changes none: validation would expand a named colour scale, for instance, which
    # plotly.js reads differently ("Blues" is not the same scale there).
    sent = json.loads(pio.to_json(fig, validate=False))
    assert sent == json.loads(pio.to_json(validated, validate=False))


@pytest.mark.parametrize(
    "options",
    [
        {"x_title": "x", "y_title": "y"},
        {"legend": None, "subtitle": "a subtitle"},
        {"legend": "inside-br", "x_title": "x"},
    ],
)
def test_house_layout_spec_is_house_layout(options: dict[str, object]) -> None:
    drawn = _style.house_layout(_style.house_figure(), "Title", 400, **options)  # type: ignore[arg-type]
    spec = go.Figure(layout=_style.house_layout_spec("Title", 400, **options))  # type: ignore[arg-type]
    expected, got = drawn.to_plotly_json()["layout"], spec.to_plotly_json()["layout"]
    expected.pop("template")
    got.pop("template")
    for axis in ("xaxis", "yaxis"):  # house_layout leaves an empty title where none is given
        if expected[axis].get("title") == {}:
            del expected[axis]["title"]
    assert got == expected


def test_threshold_marks_are_threshold_line() -> None:
    fig = _style.house_figure()
    _style.threshold_line(fig, 0.42)
    shape, annotation = _style.threshold_marks(0.42)
    assert go.Figure(layout={"shapes": [shape]}).layout.shapes == fig.layout.shapes
    assert go.Figure(layout={"annotations": [annotation]}).layout.annotations == (
        fig.layout.annotations
    )


def test_fast_figure_keeps_the_white_template_for_its_traces() -> None:
    import plotly.io as pio

    fig = _style.fast_figure([{"type": "heatmap", "z": [[1]]}], {"height": 300})
    white = pio.templates["plotly_white"].to_plotly_json()
    template = fig.to_dict()["layout"]["template"]
    off_axes = {"geo", "map", "mapbox", "polar", "scene", "ternary"}
    assert template["layout"] == {k: v for k, v in white["layout"].items() if k not in off_axes}
    assert template["data"] == {"heatmap": white["data"]["heatmap"]}
