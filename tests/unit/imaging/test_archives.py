"""ZIP uploads: extracted inside the workspace only, unsafe members refused, DICOM de-identified."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from medimg_core.encryption import is_encrypted, read_decrypted
from medimg_core.errors import ImageError, LimitError
from medimg_core.imaging.archives import remove_upload
from medimg_core.imaging.pixels import ImageLimits
from medimg_core.imaging.sets import open_image_set
from medimg_core.privacy import pseudonymise
from tests.unit.imaging.synthetic import gradient, png_bytes, zip_bytes

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
    with pytest.raises(LimitError, match=r"would unpack to more than .* raise ImageLimits"):
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
