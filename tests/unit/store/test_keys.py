"""Tests for medimg_core.store.keys: what is encrypted in a workspace, rotation over it, and the
issue's sentinel check (no value of an uploaded table is readable anywhere under the workspace)."""

from __future__ import annotations

import contextlib
import io
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medimg_core import encryption
from medimg_core.access import SINGLE_USER
from medimg_core.cli import main
from medimg_core.encryption import MAGIC, is_encrypted
from medimg_core.imaging.pixels import ImageProblem
from medimg_core.imaging.sets import open_image_set
from medimg_core.store.cases import load_cases
from medimg_core.store.keys import protected_files, rotate_workspace_key
from medimg_core.store.persistence import load_model
from medimg_core.store.registry import Registry
from tests.unit.imaging.synthetic import gradient, png_bytes, zip_bytes

FAST = ["--model", "knn", "--cv", "3", "--n-boot", "50"]
SENTINEL_ID = "ZQXJ7SENTINEL"
SENTINEL_NUMBER = 1234.56789012


def sentinel_table(path: Path) -> Path:
    """A table whose IDs carry a sentinel string and one row a sentinel number (not an extreme,
    so the card's feature ranges do not contain it), in a categorical and numeric feature set."""
    rng = np.random.default_rng(7)
    n = 120
    label = rng.integers(0, 2, n)
    size = rng.normal(2000, 600, n) + 400 * label
    size[17] = SENTINEL_NUMBER
    frame = pd.DataFrame(
        {
            "patient_id": [f"{SENTINEL_ID}-{i:04d}" for i in range(n)],
            "lesion_size": size,
            "density": rng.normal(5, 1, n) + label,
            "site": rng.choice(["left", "right"], n),
            "diagnosis": np.where(label == 1, "malignant", "benign"),
        }
    )
    frame.to_csv(path, index=False)
    return path


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def train(home: Path, table: Path, output: Path) -> str:
    status, out, err = run(
        [
            "train",
            str(table),
            "--label",
            "diagnosis",
            "--id",
            "patient_id",
            "--positive",
            "malignant",
            *FAST,
            "-o",
            str(output),
        ]
    )
    assert status == 0, err
    return out


def test_no_plaintext_of_a_sentinel_value_appears_anywhere_under_the_workspace(
    home: Path, tmp_path: Path
) -> None:
    table = sentinel_table(tmp_path / "upload.csv")
    assert SENTINEL_ID.encode() in table.read_bytes()
    out = train(home, table, home / "models" / "m1")
    assert "Encrypted at rest: the model files, the stored cases" in out
    needles = {
        "sentinel ID": SENTINEL_ID.encode(),
        "sentinel ID (UTF-16)": SENTINEL_ID.encode("utf-16-le"),
        "sentinel number (text)": repr(SENTINEL_NUMBER).encode(),
        "sentinel number (float64)": struct.pack("<d", SENTINEL_NUMBER),
        "sentinel number (float64, big-endian)": struct.pack(">d", SENTINEL_NUMBER),
    }
    files = [p for p in home.rglob("*") if p.is_file()]
    names = {p.relative_to(home).as_posix() for p in files}
    # The k-NN model keeps every training row: the strongest test of the model file.
    assert {"models/m1/model.skops", "models/m1/cases.parquet", "registry.db"} <= names
    assert any(n.startswith("datasets/") for n in names)
    leaks = [
        (what, p.relative_to(home).as_posix())
        for p in files
        for what, needle in needles.items()
        if needle in p.read_bytes()
    ]
    assert leaks == []
    for path in protected_files(home):
        assert path.read_bytes().startswith(MAGIC), path


def sentinel_image_archive() -> bytes:
    """A ZIP of PNGs and a DICOM file with a labels table: the sentinel is in a DICOM tag that
    de-identification keeps (Manufacturer), and in the table's patient IDs and a note."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Manufacturer = f"{SENTINEL_ID} SCANNERS"
    dcm = io.BytesIO()
    ds.save_as(dcm)
    members = {"scan.dcm": dcm.getvalue()}
    rows = ["file,label,patient_id,referral"]
    for i in range(6):
        members[f"img_{i}.png"] = png_bytes(gradient(16, 16, seed=i))
        rows.append(
            f"img_{i}.png,{'ab' if i % 2 else 'normal'},{SENTINEL_ID}-{i},from {SENTINEL_ID}"
        )
    rows.append(f"scan.dcm,normal,{SENTINEL_ID}-9,from {SENTINEL_ID}")
    members["labels.csv"] = ("\n".join(rows) + "\n").encode()
    return zip_bytes(members)


def test_no_plaintext_of_a_sentinel_value_of_an_image_upload_appears_under_the_workspace(
    home: Path,
) -> None:
    image_set = open_image_set(sentinel_image_archive(), name="upload.zip", workspace=home)
    assert image_set.layout == "labels-table" and len(image_set) == 7
    assert all(not isinstance(p, ImageProblem) for _, p in image_set.iter_images())
    stored = [p for p in (home / "uploads").rglob("*") if p.is_file()]
    members = {p.name for p in stored}
    assert {"scan.dcm", "labels.csv", "img_0.png"} <= members
    # The sentinel is on disk (de-identification keeps Manufacturer), but only encrypted.
    dcm = next(p for p in stored if p.name == "scan.dcm")
    assert SENTINEL_ID.encode() in encryption.read_decrypted(dcm)
    needles = [SENTINEL_ID.encode(), SENTINEL_ID.encode("utf-16-le")]
    leaks = [
        p.relative_to(home).as_posix()
        for p in home.rglob("*")
        if p.is_file() and any(n in p.read_bytes() for n in needles)
    ]
    assert leaks == []
    assert all(is_encrypted(p) for p in stored if not p.name.startswith("."))
    # Encrypted uploads are brought under a new key with everything else.
    assert set(stored) - {p for p in stored if p.name.startswith(".")} <= set(protected_files(home))


def test_protected_files_lists_model_files_cases_and_datasets_but_not_hidden_ones(
    home: Path,
) -> None:
    (home / "datasets").mkdir(parents=True)
    (home / "datasets" / "abc.parquet").write_bytes(b"PAR1 old")
    model = home / "models" / "x"
    model.mkdir(parents=True)
    for name in ("model.skops", "ood.skops", "cases.parquet", "card.json"):
        (model / name).write_bytes(b"{}")
    parked = home / "models" / ".y.deleting-123"
    parked.mkdir()
    (parked / "model.skops").write_bytes(b"old")
    (home / "uploads").mkdir()
    upload = encryption.write_encrypted(home / "uploads" / "scan.png", b"pixels")
    (home / "uploads" / "notes.txt").write_text("plain")
    (home / "registry.db").write_bytes(b"SQLite format 3")
    assert [p.relative_to(home).as_posix() for p in protected_files(home)] == [
        "datasets/abc.parquet",
        "models/x/cases.parquet",
        "models/x/model.skops",
        "models/x/ood.skops",
        upload.relative_to(home).as_posix(),
    ]


def test_rotation_covers_the_workspace_and_recorded_runs_outside_it(
    home: Path, tmp_path: Path, encryption_key_file: Path
) -> None:
    table = sentinel_table(tmp_path / "upload.csv")
    train(home, table, home / "models" / "inside")
    outside = tmp_path / "elsewhere" / "m"
    train(home, table, outside)
    before = {p: p.read_bytes()[8:16] for p in protected_files(home, model_dirs=(outside,))}
    assert len(before) == 7 and len(set(before.values())) == 1

    status, out, err = run(["keys", "rotate"])
    assert status == 0, err
    assert "Rotated the key" in out and "7 file(s) are now encrypted with it" in out
    after = {p: p.read_bytes()[8:16] for p in before}
    assert len(set(after.values())) == 1 and set(after.values()) != set(before.values())
    for directory in (home / "models" / "inside", outside):
        assert load_model(directory).model.kind == "knn"
        assert len(load_cases(directory)) == 120
    with Registry() as registry:
        run_record = registry.list_runs(SINGLE_USER)[0]
        assert len(registry.load_dataset(SINGLE_USER, run_record.stored_dataset_hash)) == 120


def test_an_interrupted_rotation_is_finished_by_running_it_again(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = sentinel_table(tmp_path / "upload.csv")
    model_dir = home / "models" / "m"
    train(home, table, model_dir)
    real_write = encryption._write_blob
    calls = 0

    def fail_on_second(path: Path, blob: bytes) -> Path:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(28, "No space left on device")
        return real_write(path, blob)

    monkeypatch.setattr(encryption, "_write_blob", fail_on_second)
    with pytest.raises(OSError, match="No space left"):
        rotate_workspace_key(home)
    monkeypatch.setattr(encryption, "_write_blob", real_write)
    # Half-rotated: every file is still readable, with either key.
    assert load_model(model_dir).model.kind == "knn"
    assert len(load_cases(model_dir)) == 120

    status, out, err = run(["keys", "rotate"])
    assert status == 0, err
    assert "Finished an interrupted key rotation" in out and "1 already done" in out
    assert len({p.read_bytes()[8:16] for p in protected_files(home)}) == 1
    assert load_model(model_dir).model.kind == "knn"


def test_rotation_encrypts_files_left_in_clear_by_an_older_medimg(home: Path) -> None:
    (home / "datasets").mkdir(parents=True)
    frame = pd.DataFrame({"x": [1.5, 2.5]})
    path = home / "datasets" / "0123456789abcdef.parquet"
    frame.to_parquet(path)
    rotation = rotate_workspace_key(home)
    assert rotation.encrypted == 1 and is_encrypted(path)
    with Registry() as registry:
        pd.testing.assert_frame_equal(registry.load_dataset(SINGLE_USER, path.stem), frame)


def test_a_wrong_key_is_one_line_on_the_command_line(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = sentinel_table(tmp_path / "upload.csv")
    model_dir = home / "models" / "m"
    train(home, table, model_dir)
    monkeypatch.setenv("MEDIMG_KEY_FILE", str(tmp_path / "another" / "key"))
    status, _, err = run(["predict", str(model_dir), str(table), "-o", str(tmp_path / "p.csv")])
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("medimg: error: The model file ")
    assert "is encrypted" in lines[0] and "MEDIMG_KEY_FILE" in lines[0]
    assert not (tmp_path / "p.csv").exists()
