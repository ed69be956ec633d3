"""The package's layout: sub-packages say what they hold, and the tests mirror the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "medimg_core"
# Interfaces are tested through what they drive: ui through the AppTests of every page
# (tests/app), the command's entry point through tests/unit/test_cli.py.
NOT_MIRRORED = {"__main__.py"}
CORE_MODULES = sorted(
    p
    for p in CORE.rglob("*.py")
    if p.name != "__init__.py"
    and p.name not in NOT_MIRRORED
    and "ui" not in p.relative_to(CORE).parts
)
SUB_PACKAGES = sorted(p.parent for p in CORE.rglob("__init__.py") if p.parent != CORE)


def _mirror(module: Path) -> Path:
    relative = module.relative_to(CORE)
    return ROOT / "tests" / "unit" / relative.parent / f"test_{relative.stem.lstrip('_')}.py"


def test_the_walk_finds_every_layer() -> None:
    layers = {
        p.relative_to(CORE).parts[0] for p in CORE_MODULES if len(p.relative_to(CORE).parts) > 1
    }
    assert layers == {"tables", "imaging", "modelling", "store", "reporting"}
    assert CORE / "tables" / "cleaning.py" in CORE_MODULES


@pytest.mark.parametrize("module", CORE_MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_every_core_module_has_its_test_file(module: Path) -> None:
    assert _mirror(module).is_file(), f"add {_mirror(module).relative_to(ROOT)}"


@pytest.mark.parametrize("package", SUB_PACKAGES, ids=lambda p: str(p.relative_to(CORE)))
def test_every_sub_package_says_what_lives_there(package: Path) -> None:
    tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    assert doc, f"{package.name}/__init__.py needs a docstring saying what lives there"
    loads = [
        n
        for n in tree.body
        if not isinstance(n, ast.Expr)
        and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")
    ]
    assert loads == [], "sub-package __init__ files stay light: importing one loads nothing else"
