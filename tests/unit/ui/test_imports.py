"""The first page stays light: the Data page's modules must not load the modelling stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("sklearn", "scipy.stats", "skops", "shap", "skimage")


def _data_page_modules() -> list[str]:
    """The medimg modules pages/data.py imports, read from its source so the test follows it."""
    tree = ast.parse((ROOT / "pages" / "data.py").read_text(encoding="utf-8"))
    modules: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medimg"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (ROOT / (candidate.replace(".", "/") + ".py")).exists()
                modules.add(candidate if is_module else node.module)
        elif isinstance(node, ast.Import):
            modules.update(a.name for a in node.names if a.name.startswith("medimg"))
    return sorted(modules)


def test_data_page_modules_are_found() -> None:
    modules = _data_page_modules()
    assert "medimg_core.ui.workflow" in modules
    assert "medimg_core.reporting.figures.data" in modules


def test_data_page_does_not_load_sklearn_skops_shap_or_skimage() -> None:
    modules = _data_page_modules()
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(' '.join(h for h in {HEAVY!r} if h in sys.modules) or 'none')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.split() == ["none"], out.stdout
