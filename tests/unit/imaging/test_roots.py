"""Image roots: only folders an administrator configured may be opened, links and ``..`` resolved."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medimg_core.access import DEFAULT_PROJECT, Actor, Role
from medimg_core.errors import ImageError, PermissionDenied
from medimg_core.imaging.roots import IMAGE_ROOTS_ENV, image_roots, resolve_image_folder
from medimg_core.imaging.sets import open_server_folder
from tests.unit.imaging.synthetic import gradient, save

KEY = b"images-test-key-0123456789abcdef"
ANALYST = Actor("ana", Role.ANALYST, frozenset({DEFAULT_PROJECT}), DEFAULT_PROJECT)
VIEWER = Actor("vic", Role.VIEWER, frozenset({DEFAULT_PROJECT}), DEFAULT_PROJECT)
ADMIN = Actor("ada", Role.ADMIN, frozenset({DEFAULT_PROJECT}), DEFAULT_PROJECT)
REFUSED = "not an image folder medimg may read"


def class_folder(root: Path, counts: dict[str, int]) -> Path:
    for k, (label, n) in enumerate(counts.items()):
        for i in range(n):
            save(root / label / f"{label}_{i}.png", gradient(16, 16, seed=10 * k + i))
    return root


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """An image root with one study, and a private folder beside it with a named file."""
    root = tmp_path / "images"
    class_folder(root / "study", {"normal": 2, "pneumonia": 2})
    private = tmp_path / "private"
    class_folder(private, {"benign": 2, "malignant": 2})
    (private / "patient-jane-doe.txt").write_text("secret")
    return root, private


def test_image_roots_come_from_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.setenv(
        IMAGE_ROOTS_ENV, os.pathsep.join([str(a), "", str(tmp_path / "gone"), str(b)])
    )
    assert image_roots() == (a.resolve(), b.resolve())
    monkeypatch.delenv(IMAGE_ROOTS_ENV)
    assert image_roots() == ()


def test_without_roots_the_core_refuses(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with pytest.raises(ImageError, match=r"no image folder is configured.*MEDIMG_IMAGE_ROOTS"):
        open_server_folder(root / "study", actor=ANALYST, roots=(), key=KEY)


def test_a_folder_inside_a_root_opens_by_full_or_relative_path(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    by_path = open_server_folder(root / "study", actor=ANALYST, roots=(root,), key=KEY)
    assert by_path.class_counts == {"normal": 2, "pneumonia": 2}
    by_name = open_server_folder("study", actor=ANALYST, roots=(root,), key=KEY)
    assert by_name.root == by_path.root == (root / "study").resolve()


def test_dot_dot_out_of_the_root_is_refused_without_naming_anything(
    layout: tuple[Path, Path],
) -> None:
    root, private = layout
    for asked in (root / "study" / ".." / ".." / "private", "../private", str(private)):
        with pytest.raises(ImageError, match=REFUSED) as caught:
            open_server_folder(asked, actor=ANALYST, roots=(root,), key=KEY)
        assert "jane" not in str(caught.value)
        assert "benign" not in str(caught.value)


def test_missing_and_outside_folders_get_the_same_message(layout: tuple[Path, Path]) -> None:
    root, private = layout

    def message(asked: Path) -> str:
        with pytest.raises(ImageError) as caught:
            resolve_image_folder(asked, (root,))
        return str(caught.value).replace(str(asked), "<asked>")

    # Whether a folder outside the roots exists must not be told apart.
    assert message(private) == message(private.parent / "no-such-folder")


def test_a_link_out_of_the_root_is_refused(layout: tuple[Path, Path]) -> None:
    root, private = layout
    (root / "shortcut").symlink_to(private, target_is_directory=True)
    with pytest.raises(ImageError, match=REFUSED) as caught:
        open_server_folder(root / "shortcut", actor=ANALYST, roots=(root,), key=KEY)
    assert "jane" not in str(caught.value)


def test_files_linking_out_of_the_root_are_left_out_unnamed(layout: tuple[Path, Path]) -> None:
    root, private = layout
    (root / "study" / "normal" / "borrowed.png").symlink_to(private / "benign" / "benign_0.png")
    (root / "study" / "labels-elsewhere").symlink_to(private, target_is_directory=True)
    image_set = open_server_folder(root / "study", actor=ANALYST, roots=(root,), key=KEY)
    assert image_set.class_counts == {"normal": 2, "pneumonia": 2}
    assert not any(str(private) in str(s) for s in image_set.records["source"])
    assert any("1 file(s) that link to places outside" in n for n in image_set.notes)
    assert not any("borrowed" in n for n in image_set.notes)


def test_a_labels_table_linking_out_of_the_root_is_not_read(layout: tuple[Path, Path]) -> None:
    root, private = layout
    (private / "labels.csv").write_text("name,dob\nJane Doe,1950-01-01\n")
    (root / "study" / "labels.csv").symlink_to(private / "labels.csv")
    image_set = open_server_folder(root / "study", actor=ANALYST, roots=(root,), key=KEY)
    assert image_set.layout == "class-folders"
    assert "Jane Doe" not in " ".join(image_set.notes)


def test_a_viewer_may_not_open_a_server_folder(
    layout: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = layout
    touched: list[object] = []
    real = Path.resolve

    def spy(self: Path, strict: bool = False) -> Path:
        touched.append(self)
        return real(self, strict=strict)

    monkeypatch.setattr(Path, "resolve", spy)
    with pytest.raises(PermissionDenied, match=r"vic \(viewer\) may not open an image folder"):
        open_server_folder(root / "study", actor=VIEWER, roots=(root,), key=KEY)
    # Refused before the file system was looked at: not even the roots were resolved.
    assert touched == []
    monkeypatch.undo()
    for actor in (ANALYST, ADMIN):
        image_set = open_server_folder(root / "study", actor=actor, roots=(root,), key=KEY)
        assert image_set.class_counts == {"normal": 2, "pneumonia": 2}


def test_an_analyst_outside_every_project_may_not_open_a_server_folder(
    layout: tuple[Path, Path],
) -> None:
    root, _ = layout
    stranger = Actor("sam", Role.ANALYST)
    with pytest.raises(PermissionDenied, match="no project is chosen"):
        open_server_folder(root / "study", actor=stranger, roots=(root,), key=KEY)
