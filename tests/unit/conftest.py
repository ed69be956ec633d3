"""Fixtures shared by the unit tests of every layer."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty workspace (``MEDIMG_HOME``, not yet created) with the default SQLite registry."""
    home = tmp_path / "ws"
    monkeypatch.setenv("MEDIMG_HOME", str(home))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    return home
