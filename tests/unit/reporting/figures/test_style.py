"""What every figure module shares: the house layout, no streamlit, a complete ``__all__``."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from types import ModuleType

import numpy as np
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
