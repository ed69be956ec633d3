"""The package's public surface: what ``__all__`` promises is importable and documented."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import medimg_core


@pytest.mark.parametrize("name", medimg_core.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(medimg_core, name) is not None


def test_all_matches_the_submodules_exports() -> None:
    for name, module in medimg_core._LAZY.items():
        assert name in importlib.import_module(f"medimg_core.{module}").__all__, (name, module)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = medimg_core.nope  # type: ignore[attr-defined]


def test_importing_the_package_does_not_load_sklearn_or_streamlit() -> None:
    code = "import sys, medimg_core; print('sklearn' in sys.modules, 'streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
