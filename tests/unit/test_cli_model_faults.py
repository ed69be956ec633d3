"""Damaged or crafted model directories through `medimg predict`, `evaluate` and `report`: one
clear line on stderr and exit 2 each, never a traceback (issue 12)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medimg_core.cli import main
from medimg_core.encryption import read_decrypted
from medimg_core.tables.loading import load_sample

FAST = ["--model", "logreg", "--cv", "3", "--n-boot", "100"]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def assert_one_line_error(status: int, err: str, pattern: str) -> None:
    assert "Traceback" not in err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("medimg: error: ")
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    base = tmp_path_factory.mktemp("cli_faults")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDIMG_HOME", str(base / "ws"))
        mp.delenv("MEDIMG_DATABASE_URL", raising=False)
        model_dir = base / "models" / "wdbc"
        status, _, err = run(["train", "sample:wdbc", *FAST, "-o", str(model_dir)])
        assert status == 0, err
        data = base / "new.csv"
        load_sample("wdbc").frame.head(30).to_csv(data, index=False)
        yield base / "ws", model_dir, data


@pytest.fixture
def copy(trained: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the trained model directory, in the trained workspace."""
    monkeypatch.setenv("MEDIMG_HOME", str(trained[0]))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    return Path(shutil.copytree(trained[1], tmp_path / "model"))


def _card(model: Path) -> dict[str, Any]:
    return dict(json.loads((model / "card.json").read_text()))


def _write_card(model: Path, card: dict[str, Any]) -> None:
    (model / "card.json").write_text(json.dumps(card))


def _edit_card(**changes: Any) -> Callable[[Path], None]:
    def damage(model: Path) -> None:
        card = _card(model)
        for key, value in changes.items():
            section, _, entry = key.partition("__")
            if entry:
                card[section][entry] = value
            else:
                card[section] = value
        _write_card(model, card)

    return damage


def _replace_model(content: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    """New plaintext model bytes with a matching checksum: what survives the checksum check."""

    def damage(model: Path) -> None:
        plain = content(read_decrypted(model / "model.skops"))
        (model / "model.skops").write_bytes(plain)
        card = _card(model)
        card["model_sha256"] = hashlib.sha256(plain).hexdigest()
        _write_card(model, card)

    return damage


def _deep_card(model: Path) -> None:
    (model / "card.json").write_text('{"format": ' + "[" * 5000 + "]" * 5000 + "}")


def _huge_card(model: Path) -> None:
    with (model / "card.json").open("r+b") as fh:  # sparse: nothing is written but the size
        fh.truncate(400 << 20)


def _truncated_encrypted_model(model: Path) -> None:
    raw = (model / "model.skops").read_bytes()
    (model / "model.skops").write_bytes(raw[: len(raw) // 2])


def _ood_elsewhere(model: Path) -> None:
    card = _card(model)
    card["out_of_distribution"] = {**(card.get("out_of_distribution") or {}), "file": "/dev/zero"}
    _write_card(model, card)


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "card nested 5000 deep": (_deep_card, r"card.json is nested 5\d\d\d levels deep"),
    "card of 400 MB": (_huge_card, r"card.json is 400 MB, more than the 16 MB"),
    "card not json": (lambda m: (m / "card.json").write_text("{oops"), r"cannot be read as JSON"),
    "card empty": (lambda m: (m / "card.json").write_bytes(b""), r"card.json"),
    "card a list": (lambda m: (m / "card.json").write_text("[1]"), r"has format 'list'"),
    "features a list": (_edit_card(features=[1, 2]), r"card.json is incomplete"),
    "pipeline a string": (_edit_card(pipeline="logreg"), r"card.json is incomplete"),
    "threshold text": (_edit_card(threshold={"value": "high"}), r"card.json is incomplete"),
    "roles a number": (_edit_card(roles=5), r"card.json is incomplete"),
    "classes a number": (_edit_card(features__classes=7), r"card.json is incomplete"),
    "ranges wrong": (_edit_card(features__feature_ranges={"x": 5}), r"card.json is incomplete"),
    "categories a list": (_edit_card(features__categories=[1]), r"card.json is incomplete"),
    "recalibration text": (_edit_card(recalibration="yes"), r"card.json is incomplete"),
    "ood elsewhere": (_ood_elsewhere, r"names '/dev/zero' as its out-of-distribution"),
    "model truncated (encrypted)": (_truncated_encrypted_model, r"model.skops"),
    "model truncated (plaintext)": (
        _replace_model(lambda b: b[: len(b) // 2]),
        r"model.skops is not a skops model file, or it is truncated or damaged",
    ),
    "model empty": (_replace_model(lambda b: b""), r"model.skops is not a skops model file"),
    "model schema nested 5000 deep": (
        _replace_model(
            lambda b: _rezip(b, {"schema.json": b"[" * 5000 + b"]" * 5000}),
        ),
        r"schema.json\) is nested 5000 levels deep",
    ),
    "model missing": (lambda m: (m / "model.skops").unlink(), r"not a medimg model directory"),
}


def _rezip(archive: bytes, replace: dict[str, bytes], *, deflate: bool = False) -> bytes:
    """``archive`` with members replaced or added (compressed with ``deflate``)."""
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(out, "w", method) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, replace.pop(info.filename, src.read(info)))
        for name, data in replace.items():
            dst.writestr(name, data)
    return out.getvalue()


def _argv(command: str, model: Path, data: Path, tmp_path: Path) -> list[str]:
    if command == "predict":
        return ["predict", str(model), str(data), "-o", str(tmp_path / "pred.csv")]
    if command == "evaluate":
        return ["evaluate", str(model), str(data), "--json", str(tmp_path / "m.json")]
    return ["report", str(model), "-o", str(tmp_path / "r.html")]


@pytest.mark.parametrize("command", ["predict", "evaluate", "report"])
@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_a_damaged_model_directory_is_one_clear_error(
    trained: tuple[Path, Path, Path], copy: Path, tmp_path: Path, command: str, damage: str
) -> None:
    change, pattern = DAMAGES[damage]
    change(copy)
    status, _, err = run(_argv(command, copy, trained[2], tmp_path))
    assert_one_line_error(status, err, pattern)
    assert not (tmp_path / "pred.csv").exists()
    assert not (tmp_path / "m.json").exists()
    assert not (tmp_path / "r.html").exists()


def _truncated_plain_cases(model: Path) -> None:
    plain = read_decrypted(model / "cases.parquet")
    (model / "cases.parquet").write_bytes(plain[: len(plain) // 2])


def _cases_without_partition(model: Path) -> None:
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table({"x": [1, 2]}), buffer)
    (model / "cases.parquet").write_bytes(buffer.getvalue().to_pybytes())


def _truncated_encrypted_cases(model: Path) -> None:
    raw = (model / "cases.parquet").read_bytes()
    (model / "cases.parquet").write_bytes(raw[: len(raw) // 2])


CASE_DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "encrypted, truncated": (_truncated_encrypted_cases, r"cases"),
    "plaintext, truncated": (_truncated_plain_cases, r"cases.parquet.*damaged"),
    "empty": (lambda m: (m / "cases.parquet").write_bytes(b""), r"cases.parquet"),
    "not medimg's": (_cases_without_partition, r"no 'partition' column"),
}


@pytest.mark.parametrize("damage", list(CASE_DAMAGES), ids=list(CASE_DAMAGES))
def test_predict_with_damaged_cases_is_one_clear_error(
    trained: tuple[Path, Path, Path], copy: Path, tmp_path: Path, damage: str
) -> None:
    # The cases calibrate the prediction sets: a damaged file is refused, not taken for a
    # model saved without cases (which predicts, with a note).
    assert (copy / "cases.parquet").is_file()
    change, pattern = CASE_DAMAGES[damage]
    change(copy)
    status, _, err = run(_argv("predict", copy, trained[2], tmp_path))
    assert_one_line_error(status, err, pattern)
    assert not (tmp_path / "pred.csv").exists()


def test_predict_without_cases_still_predicts(
    trained: tuple[Path, Path, Path], copy: Path, tmp_path: Path
) -> None:
    (copy / "cases.parquet").unlink()
    status, out, err = run(_argv("predict", copy, trained[2], tmp_path))
    assert status == 0, err
    assert "saved without its cases" in out + err
    assert (tmp_path / "pred.csv").is_file()


@pytest.mark.parametrize("name", ["model.skops", "cases.parquet", "ood.skops"])
def test_a_model_file_beyond_the_setting_is_refused_before_reading(
    trained: tuple[Path, Path, Path],
    copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    monkeypatch.setenv("MEDIMG_MODEL_FILE_MB", "1")
    assert (copy / name).is_file()
    with (copy / name).open("r+b") as fh:  # sparse: nothing is written but the size
        fh.truncate(3 << 20)
    status, _, err = run(_argv("predict", copy, trained[2], tmp_path))
    assert_one_line_error(
        status, err, rf"{name} is 3 MB, more than the 1 MB .*raise MEDIMG_MODEL_FILE_MB"
    )


def test_a_model_that_unpacks_beyond_the_setting_is_refused(
    trained: tuple[Path, Path, Path], copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A few kB on disk, 3 MB unpacked: refused from the ZIP's directory, before skops reads it.
    _replace_model(lambda b: _rezip(b, {"bomb.npy": b"\0" * (3 << 20)}, deflate=True))(copy)
    assert (copy / "model.skops").stat().st_size < 1 << 20
    monkeypatch.setenv("MEDIMG_MODEL_FILE_MB", "1")
    status, _, err = run(_argv("predict", copy, trained[2], tmp_path))
    assert_one_line_error(status, err, r"model.skops unpacks to 3 MB, more than the 1 MB")


def test_train_removes_what_a_killed_save_left_as_it_starts(copy: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a `medimg train` killed while saving: its process is gone
    stale = tmp_path / "models" / f".m.saving-{proc.pid}-a1b2c3"
    stale.mkdir(parents=True)
    (stale / "card.json").write_text("{}")
    os.utime(stale, (time.time() - 300, time.time() - 300))
    # Training then fails on its input: the leftover is gone all the same.
    status, _, err = run(["train", str(tmp_path / "absent.csv"), "-o", str(stale.parent / "m")])
    assert status == 2, err
    assert not stale.exists()


@pytest.mark.parametrize("damage", list(CASE_DAMAGES), ids=list(CASE_DAMAGES))
def test_report_with_damaged_cases_is_one_clear_error(
    copy: Path, tmp_path: Path, damage: str
) -> None:
    # A report quietly missing its case-based sections would look complete: refused instead.
    change, pattern = CASE_DAMAGES[damage]
    change(copy)
    out_file = tmp_path / "report.html"
    status, _, err = run(["report", str(copy), "-o", str(out_file)])
    assert_one_line_error(status, err, pattern)
    assert not out_file.exists()
