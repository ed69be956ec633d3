"""ZIP uploads: extracted inside the workspace only, unsafe members refused, DICOM de-identified."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from medimg_core.errors import ImageError, LimitError
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
    stored = b"".join(p.read_bytes() for p in (tmp_path / "uploads").rglob("*.dcm"))
    for secret in (b"CompressedSamples", b"1CT1", b"JFK IMAGING", b"ABCD1234"):
        assert secret not in stored
    assert s.records["patient_id"].iloc[0] == pseudonymise("1CT1", KEY)
    assert s.load(0).pixels.shape == (128, 128)
