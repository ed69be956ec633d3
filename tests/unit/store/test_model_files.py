"""Bounded reads of a model directory's files, and the folders an interrupted save leaves."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medimg_core.errors import ConfigError, ModelFileError
from medimg_core.store import model_files
from medimg_core.store.model_files import (
    CARD_MAX_BYTES,
    JSON_MAX_DEPTH,
    check_skops_archive,
    json_depth,
    model_file_limit,
    parse_json_bounded,
    read_json_file,
    remove_stale_staging,
    staging_dir,
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_json_depth_is_the_nesting_of_any_json_value(value: Any, ascii_only: bool) -> None:
    # Strings full of brackets, quotes and escapes must not count.
    data = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    assert json_depth(data) == _depth(value)
    assert parse_json_bounded(data, "x") == value


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_value_or_one_model_file_error(data: bytes) -> None:
    try:
        parse_json_bounded(data, "card.json")
    except ModelFileError as exc:
        assert "card.json" in str(exc)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet='[]{}"\\,:1 a', max_size=300))
def test_bracket_soup_never_recurses_past_the_bound(text: str) -> None:
    deep = "[" * 3000 + text + "]" * 3000
    with pytest.raises(ModelFileError, match=r"nested \d+ levels deep"):
        parse_json_bounded(deep.encode(), "card.json")


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_json_nested_5000_levels_is_refused_without_recursion(opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    data = (opener * 5000 + "1" + closer * 5000).encode()
    with pytest.raises(ModelFileError, match=r"card.json is nested 5000 levels deep"):
        parse_json_bounded(data, "card.json")


def test_json_at_the_depth_bound_is_read() -> None:
    data = ("[" * JSON_MAX_DEPTH + "]" * JSON_MAX_DEPTH).encode()
    assert json_depth(data) == JSON_MAX_DEPTH
    parse_json_bounded(data, "x")


def test_a_huge_integer_is_one_clear_error() -> None:
    with pytest.raises(ModelFileError, match=r"cannot be read as JSON"):
        parse_json_bounded(b'{"n": ' + b"9" * 10_000 + b"}", "card.json")


def test_an_oversized_card_is_refused_before_it_is_read(tmp_path: Path) -> None:
    card = tmp_path / "card.json"
    with card.open("wb") as fh:  # sparse: nothing written but the size
        fh.truncate(CARD_MAX_BYTES + 1)
    with pytest.raises(ModelFileError, match=r"card.json is 16 MB, more than the 16 MB"):
        read_json_file(card)


def test_a_card_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "card.json").symlink_to("/dev/zero")
    with pytest.raises(ModelFileError, match=r"is not a regular file"):
        read_json_file(tmp_path / "card.json")


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_skops_file_that_unpacks_beyond_the_setting_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIMG_MODEL_FILE_MB", "1")
    bomb = _zip({"schema.json": b"{}", "a.npy": b"\0" * (3 << 20)})
    assert len(bomb) < 10_000
    with pytest.raises(
        ModelFileError,
        match=r"model.skops unpacks to 3 MB, more than the 1 MB .*MEDIMG_MODEL_FILE_MB",
    ):
        check_skops_archive(bomb, "model.skops")


def test_a_skops_schema_nested_5000_deep_is_refused() -> None:
    archive = _zip({"schema.json": b"[" * 5000 + b"]" * 5000})
    with pytest.raises(ModelFileError, match=r"schema.json\) is nested 5000 levels deep"):
        check_skops_archive(archive, "model.skops")


@pytest.mark.parametrize("keep", [0, 10, 100, -30, -1])
def test_a_truncated_skops_file_is_refused(keep: int) -> None:
    archive = _zip({"schema.json": b'{"a": 1}', "x.npy": os.urandom(2000)}, zipfile.ZIP_STORED)
    with pytest.raises(ModelFileError, match=r"truncated or damaged"):
        check_skops_archive(archive[:keep], "model.skops")


def test_model_file_limit_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDIMG_MODEL_FILE_MB", raising=False)
    assert model_file_limit() == 2048 << 20
    monkeypatch.setenv("MEDIMG_MODEL_FILE_MB", "64")
    assert model_file_limit() == 64 << 20
    for bad in ("0", "-3", "lots"):
        monkeypatch.setenv("MEDIMG_MODEL_FILE_MB", bad)
        with pytest.raises(ConfigError, match=r"MEDIMG_MODEL_FILE_MB must be a whole number"):
            model_file_limit()


# --- staging folders -------------------------------------------------------------------------


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_staging_dir_names_its_process(tmp_path: Path) -> None:
    staging = staging_dir(tmp_path / "model")
    assert staging.parent == tmp_path
    assert staging.name.startswith(f".model.saving-{os.getpid()}-")
    assert model_files._STAGING.match(staging.name)


def test_stale_staging_folders_are_removed_and_nothing_else(tmp_path: Path) -> None:
    dead = _dead_pid()
    gone_owner = tmp_path / f".m.saving-{dead}-abc123"
    gone_owner.mkdir()
    (gone_owner / "model.skops").write_bytes(b"x")
    (gone_owner / ".card.json.x1.tmp").write_bytes(b"x")
    _age(gone_owner, 120)
    old_legacy = tmp_path / ".other.saving-k2j_3h"  # an older medimg's name: by age only
    old_legacy.mkdir()
    _age(old_legacy, model_files.STALE_STAGING_SECONDS + 10)
    young = tmp_path / f".m.saving-{dead}-young1"  # the owner may be in another container
    young.mkdir()
    running = tmp_path / f".m.saving-{os.getpid()}-live12"  # a save still running
    running.mkdir()
    _age(running, 600)
    user_data = tmp_path / f".m.saving-{dead}-data99"
    user_data.mkdir()
    (user_data / "notes.txt").write_text("mine")
    _age(user_data, model_files.STALE_STAGING_SECONDS + 10)
    unrelated = tmp_path / ".m.saved-abc"
    unrelated.mkdir()
    _age(unrelated, model_files.STALE_STAGING_SECONDS + 10)
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / f".m.saving-{dead}-link12"
    link.symlink_to(target, target_is_directory=True)

    removed = remove_stale_staging(tmp_path)

    assert sorted(removed) == sorted([gone_owner, old_legacy])
    assert not gone_owner.exists() and not old_legacy.exists()
    for kept in (young, running, user_data, unrelated, link, target):
        assert kept.exists(), kept
    assert (user_data / "notes.txt").read_text() == "mine"


def test_remove_stale_staging_of_a_missing_folder_does_nothing(tmp_path: Path) -> None:
    assert remove_stale_staging(tmp_path / "absent") == []


def _model_folder(path: Path, marker: str) -> Path:
    path.mkdir()
    (path / "model.skops").write_text(marker)
    (path / "card.json").write_text("{}")
    return path


def test_a_model_moved_aside_by_an_interrupted_save_is_put_back(tmp_path: Path) -> None:
    # Killed between moving the old model aside and renaming the new one in: the model is
    # missing under its name, the old one is aside, the new one is in staging.
    dead = _dead_pid()
    aside = _model_folder(tmp_path / f".m.old-{dead}-abc123", "old")
    staging = _model_folder(tmp_path / f".m.saving-{dead}-def456", "new")
    _age(staging, 120)
    later = time.time() + 120  # the move aside shows in ctime, which a test cannot set back
    remove_stale_staging(tmp_path, now=later)
    assert (tmp_path / "m" / "model.skops").read_text() == "old"
    assert not aside.exists() and not staging.exists()


def test_a_model_replaced_before_the_save_was_killed_is_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    _model_folder(tmp_path / "m", "new")
    aside = _model_folder(tmp_path / f".m.old-{dead}-abc123", "old")
    assert remove_stale_staging(tmp_path, now=time.time() + 120) == [aside]
    assert (tmp_path / "m" / "model.skops").read_text() == "new"


def test_a_model_aside_is_left_while_its_save_may_run_or_when_in_doubt(tmp_path: Path) -> None:
    dead = _dead_pid()
    running = _model_folder(tmp_path / f".a.old-{os.getpid()}-abc123", "old")  # save running
    fresh = _model_folder(tmp_path / f".b.old-{dead}-abc123", "old")  # moved a moment ago
    _model_folder(tmp_path / "c", "new")
    extra = _model_folder(tmp_path / f".c.old-{dead}-abc123", "old")
    (extra / "notes.txt").write_text("mine")  # not only model files: kept
    remove_stale_staging(tmp_path, now=time.time() + 120)
    assert running.is_dir() and extra.is_dir()
    assert not fresh.exists() and (tmp_path / "b" / "model.skops").read_text() == "old"
    remove_stale_staging(tmp_path)
    assert running.is_dir() and extra.is_dir()
