"""ZIP uploads: extracted inside the workspace only, unsafe members refused, DICOM de-identified."""

from __future__ import annotations

import io
import os
import stat
import time
import zipfile
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from medimg_core.encryption import is_encrypted, read_decrypted
from medimg_core.errors import ConfigError, ImageError, LimitError
from medimg_core.imaging.archives import clean_stale_uploads, remove_upload, uploads_size
from medimg_core.imaging.pixels import ImageLimits
from medimg_core.imaging.sets import open_image_set
from medimg_core.privacy import pseudonymise
from tests.unit.imaging.synthetic import gradient, png_bytes, zip_bytes
from tests.unit.imaging.test_npz import with_compression_method

KEY = b"images-test-key-0123456789abcdef"


def test_zip_upload_is_extracted_inside_the_workspace_only(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    data = zip_bytes(
        {
            "study/normal/n1.png": png_bytes(gradient(seed=1)),
            "study/normal/n2.png": png_bytes(gradient(seed=2)),
            "study/pneumonia/p1.png": png_bytes(gradient(seed=3)),
            "__MACOSX/study/._n1.png": b"junk",
            "study/.DS_Store": b"junk",
        }
    )
    s = open_image_set(data, workspace=workspace, name="study.zip", key=KEY)
    assert s.class_counts == {"normal": 2, "pneumonia": 1}
    assert s.root is not None and s.root.is_relative_to(workspace / "uploads")
    assert any("wraps the contents" in n for n in s.notes)
    again = open_image_set(data, workspace=workspace, name="study.zip", key=KEY)
    assert again.root == s.root and again.content_hash == s.content_hash
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../evil.png", r"points outside the archive folder \('../evil.png'\)"),
        ("normal/../../evil.png", r"points outside the archive folder"),
        ("/tmp/evil.png", r"absolute path \('/tmp/evil.png'\)"),
        ("C:/evil.png", r"absolute path \('C:/evil.png'\)"),
        ("..\\evil.png", r"points outside the archive folder"),
    ],
)
def test_zip_with_unsafe_paths_is_refused_before_writing(
    tmp_path: Path, member: str, message: str
) -> None:
    workspace = tmp_path / "ws"
    data = zip_bytes({"normal/a.png": png_bytes(gradient()), member: png_bytes(gradient())})
    with pytest.raises(ImageError, match=message):
        open_image_set(data, workspace=workspace, key=KEY)
    assert not list(tmp_path.rglob("evil.png"))
    assert not (workspace / "uploads").exists() or not any((workspace / "uploads").iterdir())


def test_zip_with_symlink_is_refused(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("normal/a.png", png_bytes(gradient()))
        link = zipfile.ZipInfo("normal/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ImageError, match=r"contains a symbolic link \('normal/link.png'\)"):
        open_image_set(out.getvalue(), workspace=tmp_path, key=KEY)


def test_zip_size_cap_and_bomb_ratio(tmp_path: Path) -> None:
    data = zip_bytes({"a/x.png": png_bytes(gradient()), "b/y.png": png_bytes(gradient(seed=4))})
    with pytest.raises(
        LimitError, match=r"would unpack to more than 300 bytes .* raise MEDIMG_MAX_UPLOAD_BYTES"
    ):
        open_image_set(
            data, workspace=tmp_path, limits=ImageLimits(max_unpacked_bytes=300), key=KEY
        )
    bomb = zip_bytes({"a/zeros.png": b"\x00" * (4 << 20), "b/y.png": png_bytes(gradient())})
    with pytest.raises(LimitError, match=r"member 'a/zeros.png' expands .* zip bomb"):
        open_image_set(bomb, workspace=tmp_path, key=KEY)
    assert not (tmp_path / "uploads").exists()


def test_zip_dicom_members_are_stored_de_identified(tmp_path: Path) -> None:
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    data = zip_bytes(
        {"ct/a.dcm": raw, "mr/b.dcm": Path(get_testdata_file("MR_small.dcm")).read_bytes()}
    )
    s = open_image_set(data, workspace=tmp_path, key=KEY)
    # Decrypted: de-identification is checked on what the files hold, not on their ciphertext.
    stored = b"".join(read_decrypted(p) for p in (tmp_path / "uploads").rglob("*.dcm"))
    for secret in (b"CompressedSamples", b"1CT1", b"JFK IMAGING", b"ABCD1234"):
        assert secret not in stored
    assert s.records["patient_id"].iloc[0] == pseudonymise("1CT1", KEY)
    assert s.load(0).pixels.shape == (128, 128)


def test_zip_members_are_stored_encrypted_and_read_back(tmp_path: Path) -> None:
    data = zip_bytes(
        {
            "normal/Doe_Jane_n1.png": png_bytes(gradient(seed=1)),
            "pneumonia/p1.png": png_bytes(gradient(seed=3)),
            "masks/p1.png": png_bytes(gradient(seed=3) * 0 + 255),
        }
    )
    s = open_image_set(data, workspace=tmp_path, name="Doe_Jane_scans.zip", key=KEY)
    files = [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()]
    members = [p for p in files if not p.name.startswith(".")]
    assert len(members) == 3 and all(is_encrypted(p) for p in members)
    # The completion marker does not keep the archive's name, which may carry a patient's.
    assert not any(b"Doe_Jane" in p.read_bytes() for p in files)
    assert s.has_masks and s.load_mask(1) is not None
    assert s.load(0).pixels.shape == (16, 16)


def test_an_upload_unpacked_in_clear_by_an_older_medimg_is_unpacked_again_encrypted(
    tmp_path: Path,
) -> None:
    data = zip_bytes(
        {"normal/n1.png": png_bytes(gradient(seed=1)), "pneumonia/p1.png": png_bytes(gradient())}
    )
    first = open_image_set(data, workspace=tmp_path, key=KEY)
    assert first.root is not None
    # What an older medimg left: members in clear, and a marker holding the archive's name.
    for path in first.root.rglob("*.png"):
        path.write_bytes(read_decrypted(path))
    (first.root / ".medimg-complete").write_text("scans.zip", encoding="utf-8")
    again = open_image_set(data, workspace=tmp_path, key=KEY)
    assert again.root == first.root
    assert all(is_encrypted(p) for p in again.root.rglob("*.png"))
    assert again.load(1).pixels.shape == (16, 16)


def test_an_encrypted_dicom_member_without_a_suffix_is_still_read_as_dicom(
    tmp_path: Path,
) -> None:
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    data = zip_bytes({"ct/IM0001": raw, "mr/b.png": png_bytes(gradient(seed=2))})
    s = open_image_set(data, workspace=tmp_path, key=KEY)
    stored = next((tmp_path / "uploads").rglob("IM0001"))
    assert is_encrypted(stored)
    row = s.records.set_index("file").loc["ct/IM0001"]
    assert row["format"] == "dicom" and row["patient_id"] == pseudonymise("1CT1", KEY)
    position = list(s.records["file"]).index("ct/IM0001")
    assert s.load(position).pixels.shape == (128, 128)


def test_remove_upload_deletes_only_upload_folders_of_the_workspace(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    s = open_image_set(
        zip_bytes({"a/n1.png": png_bytes(gradient(seed=1)), "b/p1.png": png_bytes(gradient())}),
        workspace=home,
        key=KEY,
    )
    assert s.root is not None
    folder = s.root
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    (home / "uploads" / "link").symlink_to(outside, target_is_directory=True)
    for never in (outside, home / "uploads", home, home / "uploads" / "link"):
        assert not remove_upload(never, home)
    assert (outside / "keep.txt").exists() and (home / "uploads").is_dir()
    assert remove_upload(folder, home)
    assert not folder.exists()
    assert not remove_upload(folder, home)  # already gone
    assert [p.name for p in (home / "uploads").iterdir()] == ["link"]
    # The same archive uploaded again is unpacked afresh.
    again = open_image_set(
        zip_bytes({"a/n1.png": png_bytes(gradient(seed=1)), "b/p1.png": png_bytes(gradient())}),
        workspace=home,
        key=KEY,
    )
    assert again.root == folder and again.load(0).pixels.shape == (16, 16)


# --- only what is used is unpacked; uploads are bounded and cleaned up ---


def two_classes(**extra: bytes) -> bytes:
    return zip_bytes(
        {
            "normal/n1.png": png_bytes(gradient(seed=1)),
            "pneumonia/p1.png": png_bytes(gradient()),
            **extra,
        }
    )


def stored_names(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "uploads").rglob("*") if p.is_file())


def test_members_that_are_not_used_are_never_unpacked(tmp_path: Path) -> None:
    noise = os.urandom(2 << 20)  # incompressible: not a zip bomb, just large and useless
    data = two_classes(
        **{"scan.raw": noise, "normal/notes.txt": b"x", "normal/README": b"no DICOM marker"}
    )
    s = open_image_set(data, workspace=tmp_path, name="study.zip", key=KEY)
    assert s.class_counts == {"normal": 1, "pneumonia": 1}
    problems = {p.file: p.reason for p in s.problems}
    assert set(problems) == {"scan.raw", "normal/notes.txt", "normal/README"}
    assert all("left out without unpacking" in r for r in problems.values())
    assert stored_names(tmp_path) == [".medimg-complete", "n1.png", "p1.png"]
    again = open_image_set(data, workspace=tmp_path, name="study.zip", key=KEY)
    assert {p.file for p in again.problems} >= {"scan.raw", "normal/notes.txt"}


def test_an_unused_member_is_not_refused_as_a_bomb_or_counted(tmp_path: Path) -> None:
    # 64 MiB of zeros compress ~1000-fold: a bomb if it were unpacked, harmless when it is not.
    data = two_classes(**{"dump/zeros.bin": b"\x00" * (64 << 20)})
    limits = ImageLimits(max_unpacked_bytes=10 << 20)
    s = open_image_set(data, workspace=tmp_path, limits=limits, key=KEY)
    assert len(s) == 2 and [p.file for p in s.problems] == ["dump/zeros.bin"]


def test_the_labels_table_is_unpacked_with_the_images(tmp_path: Path) -> None:
    data = zip_bytes(
        {
            "set/a.png": png_bytes(gradient(seed=1)),
            "set/b.png": png_bytes(gradient(seed=2)),
            "set/labels.csv": b"file,label\na.png,x\nb.png,y\n",
        }
    )
    s = open_image_set(data, workspace=tmp_path, key=KEY)
    assert s.layout == "labels-table" and s.class_counts == {"x": 1, "y": 1}


def test_the_per_upload_cap_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIMG_MAX_UPLOAD_BYTES", "0.1KiB")
    with pytest.raises(LimitError, match=r"more than 102 bytes .* raise MEDIMG_MAX_UPLOAD_BYTES"):
        open_image_set(two_classes(), workspace=tmp_path, key=KEY)
    assert not (tmp_path / "uploads").exists()


def test_the_uploads_of_a_workspace_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = two_classes()
    open_image_set(first, workspace=tmp_path, key=KEY)
    used = uploads_size(tmp_path)
    monkeypatch.setenv("MEDIMG_MAX_WORKSPACE_UPLOAD_BYTES", str(used + 100))
    second = two_classes(**{"normal/n2.png": png_bytes(gradient(seed=5))})
    with pytest.raises(LimitError, match=r"already take .* MEDIMG_MAX_WORKSPACE_UPLOAD_BYTES"):
        open_image_set(second, workspace=tmp_path, key=KEY)
    assert uploads_size(tmp_path) == used  # nothing of the second was written
    open_image_set(first, workspace=tmp_path, key=KEY)  # the same archive again: no new bytes
    monkeypatch.setenv("MEDIMG_MAX_WORKSPACE_UPLOAD_BYTES", "nonsense")
    with pytest.raises(ConfigError, match=r"MEDIMG_MAX_WORKSPACE_UPLOAD_BYTES='nonsense'"):
        open_image_set(second, workspace=tmp_path, key=KEY)


def test_stale_uploads_and_leftovers_are_removed_at_the_next_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = open_image_set(two_classes(), workspace=tmp_path, key=KEY)
    kept = open_image_set(
        two_classes(**{"normal/n3.png": png_bytes(gradient(seed=7))}), workspace=tmp_path, key=KEY
    )
    assert old.root is not None and kept.root is not None
    uploads = tmp_path / "uploads"
    interrupted = uploads / ".tmp-0123456789abcdef-deadbeef"
    interrupted.mkdir()
    (interrupted / "half.png").write_bytes(b"x")
    single = uploads / "single" / ("ab" * 32)
    single.mkdir(parents=True)
    (single / "one.png").write_bytes(b"x")
    two_days_ago = time.time() - 48 * 3600
    for folder in (old.root, kept.root, interrupted, single):
        os.utime(folder, (two_days_ago, two_days_ago))
    # Opening an unpacked archive again marks it as used.
    open_image_set(
        two_classes(**{"normal/n3.png": png_bytes(gradient(seed=7))}), workspace=tmp_path, key=KEY
    )
    monkeypatch.setenv("MEDIMG_UPLOAD_MAX_AGE_HOURS", "24")
    new = open_image_set(
        two_classes(**{"normal/n4.png": png_bytes(gradient(seed=8))}), workspace=tmp_path, key=KEY
    )
    assert new.root is not None and new.root.is_dir() and kept.root.is_dir()
    assert not old.root.exists() and not interrupted.exists() and not single.exists()
    assert sorted(p.name for p in uploads.iterdir()) == sorted(
        [kept.root.name, new.root.name, "single"]
    )


def test_the_age_setting_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIMG_UPLOAD_MAX_AGE_HOURS", "-3")
    with pytest.raises(ConfigError, match=r"MEDIMG_UPLOAD_MAX_AGE_HOURS='-3' is not a positive"):
        clean_stale_uploads(tmp_path)


def test_a_refused_upload_leaves_nothing_in_the_workspace(tmp_path: Path) -> None:
    data = zip_bytes({"a/broken.png": png_bytes(gradient())[:40], "a/notes.txt": b"x"})
    with pytest.raises(ImageError, match=r"No readable image"):
        open_image_set(data, workspace=tmp_path, name="broken.zip", key=KEY)
    assert list((tmp_path / "uploads").iterdir()) == []


def test_a_member_compressed_with_an_unknown_method_is_left_out(tmp_path: Path) -> None:
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("normal/a.png", png_bytes(gradient(seed=1)))
        zf.writestr("pneumonia/b.png", png_bytes(gradient(seed=2)))
    data = with_compression_method(stored.getvalue(), 99)
    with pytest.raises(ImageError, match=r"No readable image .*could not be unpacked"):
        open_image_set(data, workspace=tmp_path, name="odd.zip", key=KEY)
    assert list((tmp_path / "uploads").iterdir()) == []
