"""Image sets: formats, layouts, labels tables, masks, npz, ZIP safety and bad input."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medimg_core.errors import ConfigError, ImageError, LimitError
from medimg_core.imaging.features import extract_features
from medimg_core.imaging.sets import (
    ImageLimits,
    ImageProblem,
    LoadedImage,
    array_to_image,
    load_image,
    open_image_set,
    parse_size,
    resize_image,
)
from medimg_core.privacy import pseudonymise

KEY = b"images-test-key-0123456789abcdef"
SHARED_NPZ = Path(__file__).resolve().parents[4] / "shared" / "data" / "pneumoniamnist.npz"


def gradient(h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 200, w)[None, :] + np.zeros((h, 1))
    return np.clip(base + rng.integers(0, 50, (h, w)), 0, 255).astype(np.uint8)


def save(path: Path, array: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


def class_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (16, 16)) -> Path:
    for k, (label, n) in enumerate(counts.items()):
        for i in range(n):
            save(root / label / f"{label}_{i}.png", gradient(*size, seed=10 * k + i))
    return root


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_png_8_bit_grayscale(tmp_path: Path) -> None:
    arr = gradient()
    img = load_image(save(tmp_path / "a.png", arr))
    assert isinstance(img, LoadedImage)
    assert img.pixels.dtype == np.float32 and img.bit_depth == 8 and not img.was_rgb
    np.testing.assert_allclose(img.pixels, arr / 255.0, atol=1e-6)
    assert img.original_size == (16, 16) and img.format == "png"


def test_16_bit_png_and_tiff_use_the_full_16_bit_range(tmp_path: Path) -> None:
    arr = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    for name, fmt in (("b.png", "PNG"), ("b.tif", "TIFF")):
        img = load_image(save(tmp_path / name, arr, fmt))
        assert img.bit_depth == 16
        np.testing.assert_allclose(img.pixels, arr / 65535.0, atol=1e-6)


def test_rgb_becomes_bt601_luminance_and_says_so(tmp_path: Path) -> None:
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    img = load_image(save(tmp_path / "c.png", rgb))
    assert img.was_rgb
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)
    assert "luminance" in img.notes[0]
    jpeg = load_image(save(tmp_path / "c.jpg", rgb, "JPEG"))
    assert jpeg.format == "jpeg" and jpeg.was_rgb
    np.testing.assert_allclose(jpeg.pixels, expected, atol=0.03)
    save(tmp_path / "set" / "a" / "gray.png", gradient())
    save(tmp_path / "set" / "b" / "colour.png", np.repeat(gradient()[..., None], 3, axis=2))
    s = open_image_set(tmp_path / "set", key=KEY)
    assert "1 image(s): RGB images were converted to grayscale luminance (0.299 R" in s.notes[-1]


def test_load_image_from_bytes_and_dicom() -> None:
    img = load_image(png_bytes(gradient()))
    assert img.pixels.shape == (16, 16)
    ct = load_image(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    assert ct.format == "dicom" and ct.dicom is not None and ct.dicom["modality"] == "CT"
    assert set(ct.dicom) == {"modality", "rows", "columns", "frames", "pixel_spacing"}


def test_corrupt_truncated_and_non_image_files_raise_named_errors(tmp_path: Path) -> None:
    good = png_bytes(gradient(32, 32))
    truncated = tmp_path / "broken.png"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(
        ImageError, match=r"'broken.png' could not be decoded .*corrupt or truncated"
    ):
        load_image(truncated)
    text = tmp_path / "readme.png"
    text.write_text("hello", encoding="utf-8")
    with pytest.raises(ImageError, match=r"'readme.png' is not an image medimg can read"):
        load_image(text)
    gif = tmp_path / "anim.gif"
    Image.fromarray(gradient()).save(gif, format="GIF")
    with pytest.raises(ImageError, match=r"'anim.gif' is a GIF image; medimg reads PNG, JPEG"):
        load_image(gif)


def test_pixel_cap(tmp_path: Path) -> None:
    path = save(tmp_path / "big.png", gradient(40, 40))
    with pytest.raises(LimitError, match=r"'big.png' is 40×40 pixels, more than the cap of 100"):
        load_image(path, limits=ImageLimits(max_pixels=100))


def test_class_folders(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "set", {"normal": 3, "pneumonia": 2})
    s = open_image_set(root, key=KEY)
    assert s.layout == "class-folders"
    assert s.class_counts == {"normal": 3, "pneumonia": 2}
    assert list(s.records.columns[:2]) == ["file", "label"]
    assert s.records["file"].iloc[0] == "normal/normal_0.png"
    assert s.problems == ()
    assert any("One sub-folder per class" in n for n in s.notes)
    img = s.load(0)
    assert img.pixels.shape == (16, 16)
    assert s.thumbnail(0, max_side=8).shape == (8, 8)


def test_iter_images_streams_and_reports_problems(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "set", {"a": 2, "b": 2})
    stream = open_image_set(root, key=KEY).iter_images(size=8)
    assert not isinstance(stream, list)
    items = list(stream)
    assert len(items) == 4 and all(isinstance(img, LoadedImage) for _, img in items)
    assert items[0][1].pixels.shape == (8, 8)


def test_unreadable_files_are_listed_and_the_rest_kept(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "set", {"normal": 2, "pneumonia": 2})
    good = png_bytes(gradient(32, 32))
    (root / "normal" / "cut.png").write_bytes(good[: len(good) // 2])
    (root / "pneumonia" / "notes.txt").write_text("not an image", encoding="utf-8")
    s = open_image_set(root, key=KEY)
    assert len(s) == 4
    problems = {p.file: p.reason for p in s.problems}
    assert "not an image" in problems["pneumonia/notes.txt"]
    assert "corrupt or truncated" in problems["normal/cut.png"]
    assert any("2 file(s) were left out" in n for n in s.notes)


def test_nothing_readable_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_text("nope", encoding="utf-8")
    with pytest.raises(ImageError, match=r"No readable image in 'tmp"):
        open_image_set(tmp_path, name="tmp", key=KEY)


def test_empty_class_folder_and_single_class_are_refused(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "one", {"normal": 3})
    (root / "pneumonia").mkdir()
    with pytest.raises(ImageError, match=r"class folder\(s\) \['pneumonia/'\] hold no readable"):
        open_image_set(root, key=KEY)
    (root / "pneumonia").rmdir()
    with pytest.raises(ImageError, match=r"only one class, 'normal' \(3 images\); .* at least 2"):
        open_image_set(root, key=KEY)


def test_flat_folder_is_unlabelled_for_prediction_only(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / f"case{i}.png", gradient(seed=i))
    with pytest.raises(ImageError, match=r"has no labels; put each class's images"):
        open_image_set(tmp_path, key=KEY)
    s = open_image_set(tmp_path, min_classes=0, key=KEY)
    assert s.layout == "unlabelled" and not s.has_labels and len(s) == 3


def test_labels_table_joins_clinical_columns_and_reports_both_mismatches(tmp_path: Path) -> None:
    for i in range(4):
        save(tmp_path / "imgs" / f"img{i}.png", gradient(seed=i))
    pd.DataFrame(
        {
            "file": ["img0.png", "imgs/img1.png", "img2.png", "gone.png"],
            "label": ["benign", "malignant", "malignant", "benign"],
            "patient_id": ["p1", "p1", "p2", "p3"],
            "age": [50, 51, 60, 70],
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    s = open_image_set(tmp_path, key=KEY)
    assert s.layout == "labels-table"
    assert list(s.records["file"]) == ["imgs/img0.png", "imgs/img1.png", "imgs/img2.png"]
    assert list(s.records["patient_id"]) == ["p1", "p1", "p2"]
    assert list(s.records["age"]) == [50, 51, 60]
    assert s.extra_columns == ("age",)
    assert s.missing_files == ("gone.png",)
    assert s.unlabelled_files == ("imgs/img3.png",)
    text = " ".join(s.notes)
    assert "1 labels-table row(s) name a file that is not in the set" in text
    assert "1 image(s) are not in the labels table" in text


def test_labels_table_as_dataframe_without_file_column(tmp_path: Path) -> None:
    class_folder(tmp_path, {"a": 1, "b": 1})
    with pytest.raises(ImageError, match=r"has no 'file' column .* add a column 'file'"):
        open_image_set(tmp_path, labels=pd.DataFrame({"name": ["a/a_0.png"]}), key=KEY)
    dup = pd.DataFrame({"file": ["a_0.png", "a_0.png"], "label": [1, 2]})
    with pytest.raises(ImageError, match=r"names 1 file\(s\) more than once"):
        open_image_set(tmp_path, labels=dup, key=KEY)


def test_masks_folder_is_attached(tmp_path: Path) -> None:
    root = class_folder(tmp_path, {"a": 2, "b": 2})
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 4:12] = 255
    for label in ("a", "b"):
        for i in range(2):
            save(root / "masks" / f"{label}_{i}.png", mask)
    s = open_image_set(root, key=KEY)
    assert s.has_masks and s.class_counts == {"a": 2, "b": 2}
    loaded = s.load_mask(0)
    assert loaded is not None and loaded.sum() == 64
    assert any("Masks from 'masks/' for 4 of 4 images" in n for n in s.notes)


def test_mixed_sizes_are_stated(tmp_path: Path) -> None:
    class_folder(tmp_path, {"a": 2, "b": 1}, size=(16, 16))
    save(tmp_path / "b" / "wide.png", gradient(16, 32))
    s = open_image_set(tmp_path, key=KEY)
    assert s.sizes == {(16, 16): 3, (16, 32): 1}
    assert s.common_size == (16, 16)
    note = next(n for n in s.notes if "sizes" in n)
    assert "most common, 16×16" in note and "nothing is cropped" in note
    assert s.load(3, size=16).pixels.shape == (16, 16)


def test_resize_and_size_parsing() -> None:
    img = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48)
    out = resize_image(img, (16, 16))
    assert out.shape == (16, 16) and out.min() >= 0 and out.max() <= 1
    assert resize_image(img, (32, 48)) is img
    assert parse_size(64) == (64, 64)
    with pytest.raises(ConfigError, match=r"Image size 4 is out of range"):
        parse_size(4)


def test_dicom_folder_keeps_only_a_pseudonymous_patient_key(tmp_path: Path) -> None:
    for label, name in (("ct", "CT_small.dcm"), ("mr", "MR_small.dcm")):
        (tmp_path / label).mkdir()
        (tmp_path / label / "scan.dcm").write_bytes(Path(get_testdata_file(name)).read_bytes())
    s = open_image_set(tmp_path, key=KEY)
    assert list(s.records["patient_id"]) == [
        pseudonymise("1CT1", KEY),
        pseudonymise(str(pydicom.dcmread(get_testdata_file("MR_small.dcm")).PatientID), KEY),
    ]
    features = extract_features(s, size=32, workers=1)
    text = s.records.to_csv() + " ".join(s.notes) + features.frame.to_csv()
    text += " ".join(features.notes) + repr(features.settings) + repr(s.load(0))
    for secret in ("CompressedSamples", "1CT1", "JFK IMAGING", "20040119", "ABCD1234"):
        assert secret not in text
    assert any("de-identified" in n for n in s.notes)


def test_dicom_without_pixels_and_burned_in_text_become_problems(tmp_path: Path) -> None:
    class_folder(tmp_path, {"a": 1, "b": 1})
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    burned = ds.copy()
    burned.BurnedInAnnotation = "YES"
    burned.save_as(tmp_path / "a" / "burned.dcm")
    del ds.PixelData
    ds.save_as(tmp_path / "b" / "nopixels.dcm")
    s = open_image_set(tmp_path, key=KEY)
    problems = {p.file: p.reason for p in s.problems}
    assert "without pixel data" in problems["b/nopixels.dcm"]
    assert "BurnedInAnnotation = YES" in problems["a/burned.dcm"]
    assert len(s) == 2


def write_npz(path: Path, *, rgb: bool = False, labels_shape: str = "column") -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 4)):
        shape = (n, 12, 12, 3) if rgb else (n, 12, 12)
        arrays[f"{split}_images"] = rng.integers(0, 255, shape, dtype=np.uint8)
        labels = np.arange(n) % 2
        arrays[f"{split}_labels"] = labels[:, None] if labels_shape == "column" else labels
    np.savez(path, **arrays)
    return path


def test_npz_keeps_its_splits(tmp_path: Path) -> None:
    s = open_image_set(write_npz(tmp_path / "m.npz"))
    assert s.layout == "npz" and len(s) == 12
    assert s.records["split"].value_counts().to_dict() == {"train": 6, "test": 4, "val": 2}
    assert s.records["file"].iloc[0] == "train_00000"
    assert s.class_counts == {"0": 6, "1": 6}
    assert "'test' is the held-out test set" in s.notes[0]
    img = s.load(7)
    assert img.format == "npz" and img.pixels.shape == (12, 12)
    from_bytes = open_image_set((tmp_path / "m.npz").read_bytes(), name="m.npz")
    assert len(from_bytes) == 12 and from_bytes.content_hash == s.content_hash


def test_npz_rgb_and_bad_layouts(tmp_path: Path) -> None:
    s = open_image_set(write_npz(tmp_path / "rgb.npz", rgb=True))
    assert s.load(0).was_rgb and any("luminance" in n for n in s.notes)
    np.savez(tmp_path / "other.npz", x=np.zeros((2, 4, 4)))
    with pytest.raises(ImageError, match=r"no 'train_images'; medimg reads .npz files in the"):
        open_image_set(tmp_path / "other.npz")
    np.savez(
        tmp_path / "multi.npz",
        train_images=np.zeros((2, 8, 8), np.uint8),
        train_labels=np.zeros((2, 3), np.uint8),
    )
    with pytest.raises(ImageError, match=r"multi-label sets such as ChestMNIST are not supported"):
        open_image_set(tmp_path / "multi.npz")


def test_array_to_image_scaling() -> None:
    assert array_to_image(np.full((4, 4), 255, np.uint8)).pixels.max() == 1.0
    assert array_to_image(np.full((4, 4), 65535, np.uint16)).bit_depth == 16
    with pytest.raises(ImageError, match=r"has shape \(2, 2, 2, 2\)"):
        array_to_image(np.zeros((2, 2, 2, 2)))


@pytest.mark.skipif(not SHARED_NPZ.exists(), reason="shared pneumoniamnist.npz not present")
def test_shared_pneumoniamnist_opens() -> None:
    s = open_image_set(SHARED_NPZ)
    assert len(s) == 3166 and s.common_size == (28, 28)
    assert set(s.records["split"]) == {"train", "val", "test"}


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


def test_not_a_zip_or_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"neither a ZIP archive nor a NumPy .npz"):
        open_image_set(b"plain text", workspace=tmp_path, key=KEY)
    with pytest.raises(ImageError, match=r"does not exist; give a folder of images"):
        open_image_set(tmp_path / "nowhere", key=KEY)


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


def test_problem_text() -> None:
    assert str(ImageProblem("a.png", "corrupt")) == "a.png: corrupt"
