"""The direction of imports: pages never compute (no sklearn, shap, numpy, scipy), the core never
draws (no streamlit outside ``medimg_core/ui``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE_FILES = sorted([ROOT / "app.py", *(ROOT / "pages").glob("*.py")])
CORE_FILES = sorted(
    p for p in (ROOT / "medimg_core").rglob("*.py") if "ui" not in p.relative_to(ROOT).parts[1:-1]
)
COMPUTING = {"sklearn", "shap", "numpy", "scipy"}


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every module a file imports (anywhere in it, not only at the top)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def test_the_walk_finds_the_files() -> None:
    assert ROOT / "app.py" in PAGE_FILES
    assert ROOT / "pages" / "data.py" in PAGE_FILES
    assert ROOT / "medimg_core" / "tables" / "cleaning.py" in CORE_FILES
    assert not [p for p in CORE_FILES if p.parent.name == "ui"]


def test_imported_roots_sees_every_form(tmp_path: Path) -> None:
    source = tmp_path / "page.py"
    source.write_text(
        "import numpy as np\nfrom sklearn.metrics import roc_auc_score\n"
        "def f():\n    import scipy.stats\n    importlib.import_module('shap')\n"
        "from . import sibling\n",
        encoding="utf-8",
    )
    assert imported_roots(source) == {"numpy", "sklearn", "scipy", "shap"}


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_do_not_import_computing_libraries(path: Path) -> None:
    bad = imported_roots(path) & COMPUTING
    assert not bad, (
        f"{path.relative_to(ROOT)} imports {sorted(bad)}; move the computation into "
        "medimg_core (a pure function) and call it from the page."
    )


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_does_not_import_streamlit(path: Path) -> None:
    assert "streamlit" not in imported_roots(path), (
        f"{path.relative_to(ROOT)} imports streamlit; only medimg_core/ui may."
    )
