"""Property: any corruption of a valid file gets an outcome, never a crash (issue 12).

Hypothesis flips, cuts and splices bytes of a valid CSV, Excel workbook, Parquet file, image ZIP
and MedMNIST ``.npz`` and feeds each result to the command that reads it. Whatever the bytes,
``medimg`` exits 0 or 2 (never 1), prints no traceback, and a refusal is one line.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.corpus import _image_members, _medmnist, _npz, _xlsx, _zip_bytes, base_frame
from tests.hostile.test_cli_corpus import ERROR_PREFIX, run_cli

pytestmark = pytest.mark.slow


def _parquet() -> bytes:
    buffer = io.BytesIO()
    base_frame(20).to_parquet(buffer, index=False)
    return buffer.getvalue()


VALID = {
    "table.csv": base_frame(20).to_csv(index=False).encode(),
    "table.xlsx": _xlsx({"Sheet1": base_frame(20)}),
    "table.parquet": _parquet(),
    "study.zip": _zip_bytes(_image_members(per_class=3)),
    "fuzzmnist.npz": _npz(dict(_medmnist(6))),
}


@st.composite
def corrupted(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few random edits: byte flips, a cut, an inserted run, a spliced copy."""
    raw = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "splice"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            raw = (
                raw[:at] if draw(st.booleans()) else raw[:at] + raw[at + draw(st.integers(1, 64)) :]
            )
        elif kind == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            start = draw(st.integers(0, max(len(raw) - 1, 0)))
            raw[at:at] = raw[start : start + draw(st.integers(1, 256))]
    return bytes(raw)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "ws"
    monkeypatch.setenv("MEDIMG_HOME", str(home))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    yield home


def _check(name: str, payload: bytes, folder: Path) -> None:
    path = folder / name
    path.write_bytes(payload)
    out = folder / "out"
    if name.endswith((".zip", ".npz")):
        argv = ["features", str(path), "-o", str(out / "f.parquet")]
    else:
        argv = ["clean", str(path), "-o", str(out / "c.parquet"), "--report", str(out / "r.json")]
    outcome = run_cli(argv)
    assert outcome.crash is None, outcome.crash
    assert "Traceback" not in outcome.stdout + outcome.stderr, outcome.stderr
    assert outcome.status in (0, 2), outcome.stderr
    if outcome.status == 2:
        lines = outcome.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), outcome.stderr


@pytest.mark.parametrize("name", list(VALID))
def test_corrupted_file_never_crashes(name: str, home: Path, tmp_path: Path) -> None:
    counter = iter(range(10**6))

    @settings(
        max_examples=15,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(payload=corrupted(VALID[name]))
    def check(payload: bytes) -> None:
        folder = tmp_path / f"try{next(counter)}"
        folder.mkdir()
        _check(name, payload, folder)

    check()


def test_valid_files_are_accepted(home: Path, tmp_path: Path) -> None:
    """The fuzz starts from files that work, so a refusal above is the corruption's doing."""
    for name, payload in VALID.items():
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        path = folder / name
        path.write_bytes(payload)
        out = folder / "out"
        if name.endswith((".zip", ".npz")):
            argv = ["features", str(path), "-o", str(out / "f.parquet")]
        else:
            argv = [
                "clean",
                str(path),
                "-o",
                str(out / "c.parquet"),
                "--report",
                str(out / "r.json"),
            ]
        outcome = run_cli(argv)
        assert outcome.status == 0, (name, outcome.stderr)
