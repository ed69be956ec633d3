"""The workspace folder every layer writes under (``MEDIMG_HOME``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimg_core.errors import RegistryError
from medimg_core.workspace import workspace_home, workspace_path


def test_workspace_home_follows_env_and_is_created(home: Path) -> None:
    assert not home.exists()
    assert workspace_home() == home
    assert home.is_dir()


def test_workspace_home_defaults_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDIMG_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert workspace_home() == tmp_path / "medimg-workspace"


def test_workspace_that_cannot_be_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("MEDIMG_HOME", str(blocker / "ws"))
    with pytest.raises(RegistryError, match=r"cannot create the medimg workspace .*MEDIMG_HOME"):
        workspace_home()


def test_workspace_path_does_not_create(home: Path) -> None:
    assert workspace_path() == home
    assert not home.exists()
