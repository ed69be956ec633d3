"""MedMNIST .npz sets: their splits and labels, colour arrays and bad layouts."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medimg_core.errors import ImageError, LimitError, MedimgError
from medimg_core.imaging.npz import MEDMNIST, read_npy_header, read_npz
from medimg_core.imaging.pixels import ImageLimits
from medimg_core.imaging.sets import open_image_set

SHARED_NPZ = Path(__file__).resolve().parents[4] / "shared" / "data" / "pneumoniamnist.npz"


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


@pytest.mark.skipif(not SHARED_NPZ.exists(), reason="shared pneumoniamnist.npz not present")
def test_shared_pneumoniamnist_opens() -> None:
    s = open_image_set(SHARED_NPZ)
    assert len(s) == 3166 and s.common_size == (28, 28)
    assert set(s.records["split"]) == {"train", "val", "test"}


@pytest.mark.parametrize(
    ("file_name", "key", "positive", "names"),
    [
        ("pneumoniamnist.npz", "pneumoniamnist", "1", {"0": "normal", "1": "pneumonia"}),
        ("breastmnist_128.npz", "breastmnist", "0", {"0": "malignant", "1": "normal, benign"}),
        ("BreastMNIST-224.npz", "breastmnist", "0", {"0": "malignant", "1": "normal, benign"}),
    ],
)
def test_medmnist_sets_are_recognised_by_file_name(
    tmp_path: Path, file_name: str, key: str, positive: str, names: dict[str, str]
) -> None:
    s = open_image_set(write_npz(tmp_path / file_name))
    assert s.dataset is not None and s.dataset.key == key
    assert dict(s.dataset.labels) == names and s.dataset.positive == positive
    note = next(n for n in s.notes if n.startswith("Recognised as"))
    assert f"{positive} = {names[positive]}" in note
    assert f"positive class offered is {names[positive]} (code {positive})" in note


def test_unknown_or_mismatched_npz_is_not_named(tmp_path: Path) -> None:
    plain = open_image_set(write_npz(tmp_path / "scans.npz"))
    assert plain.dataset is None
    assert any("not recognised as a MedMNIST set" in n for n in plain.notes)
    # A file named like PneumoniaMNIST whose codes are not 0/1 is not taken for it.
    arrays = {
        "train_images": np.zeros((4, 8, 8), np.uint8),
        "train_labels": np.array([[0], [3], [3], [0]]),
        "test_images": np.zeros((2, 8, 8), np.uint8),
        "test_labels": np.array([[0], [3]]),
    }
    np.savez(tmp_path / "pneumoniamnist.npz", **arrays)
    assert open_image_set(tmp_path / "pneumoniamnist.npz").dataset is None


def test_medmnist_label_names_match_the_published_info() -> None:
    # MedMNIST v2 medmnist/info.py, INFO[...]["label"].
    assert MEDMNIST["breastmnist"].positive_name == "malignant"
    assert MEDMNIST["pneumoniamnist"].positive_name == "pneumonia"
    assert dict(MEDMNIST["octmnist"].labels)["3"] == "normal"
    assert dict(MEDMNIST["dermamnist"].labels)["4"] == "melanoma"
    assert len(MEDMNIST["organsmnist"].labels) == 11
    assert len(MEDMNIST["pathmnist"].labels) == 9
    assert all(d.positive is None for k, d in MEDMNIST.items() if len(d.labels) > 2)
    assert "retinamnist" not in MEDMNIST


@pytest.mark.skipif(not SHARED_NPZ.exists(), reason="shared pneumoniamnist.npz not present")
def test_shared_pneumoniamnist_is_recognised() -> None:
    s = open_image_set(SHARED_NPZ)
    assert s.dataset is not None and s.dataset.key == "pneumoniamnist"


# --- hostile .npz files: every one a clear ImageError / LimitError, nothing allocated first ---


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=True)
    return buf.getvalue()


def lying_npy(shape: tuple[int, ...], descr: str = "|u1", data: bytes = b"\x00" * 64) -> bytes:
    """A .npy member whose header claims ``shape`` but which holds only ``data``."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def npz_of(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def images_and_labels(n: int = 4) -> dict[str, bytes]:
    return {
        "train_images.npy": npy_bytes(np.zeros((n, 8, 8), np.uint8)),
        "train_labels.npy": npy_bytes((np.arange(n) % 2)[:, None]),
    }


def test_a_header_claiming_9_tib_is_refused_before_anything_is_allocated() -> None:
    data = npz_of({"train_images.npy": lying_npy((36864, 16384, 16384))})
    with pytest.raises(LimitError, match=r"would take 9,216\.0 GiB .* MEDIMG_MAX_UPLOAD_BYTES"):
        open_image_set(data, name="bomb.npz")


def test_a_header_claiming_more_than_the_member_holds_is_truncated() -> None:
    data = npz_of({"train_images.npy": lying_npy((100, 28, 28))})
    with pytest.raises(ImageError, match=r"claims shape \(100, 28, 28\) .* truncated or damaged"):
        open_image_set(data, name="short.npz")


def test_a_truncated_member_or_file_is_an_image_error() -> None:
    members = images_and_labels()
    cut = npz_of({**members, "train_images.npy": members["train_images.npy"][:-40]})
    with pytest.raises(ImageError, match=r"truncated or damaged: export it again"):
        open_image_set(cut, name="cut.npz")
    whole = npz_of(members)
    with pytest.raises(ImageError, match=r"neither a ZIP archive nor a NumPy \.npz"):
        open_image_set(whole[: len(whole) // 2], name="half.npz")


def test_a_corrupt_compressed_member_is_an_image_error() -> None:
    images = np.random.default_rng(0).integers(0, 255, (20, 16, 16), dtype=np.uint8)
    data = bytearray(
        npz_of(
            {"train_images.npy": npy_bytes(images), "train_labels.npy": npy_bytes(np.zeros(20))},
            zipfile.ZIP_DEFLATED,
        )
    )
    start = data.index(b"train_images.npy") + len("train_images.npy") + 200
    data[start : start + 400] = bytes(400)
    with pytest.raises(ImageError, match=r"'damaged\.npz'"):
        open_image_set(bytes(data), name="damaged.npz")


def test_object_arrays_are_refused_without_pickle() -> None:
    objects = np.array([{"a": 1}, None, "x", 3], dtype=object)
    data = npz_of({**images_and_labels(), "train_labels.npy": npy_bytes(objects)})
    with pytest.raises(ImageError, match=r"holds object values, not numbers .* never loads"):
        open_image_set(data, name="objects.npz")
    data = npz_of({"train_images.npy": npy_bytes(np.array([np.zeros((2, 2))] * 2, dtype=object))})
    with pytest.raises(ImageError, match=r"train_images' holds object values"):
        open_image_set(data, name="objects.npz")


def test_text_images_are_refused() -> None:
    data = npz_of({"train_images.npy": npy_bytes(np.full((2, 4, 4), "a"))})
    with pytest.raises(ImageError, match=r"holds <U1 values, not numbers"):
        open_image_set(data, name="text.npz")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_images_with_nan_or_infinite_values_are_refused(bad: float) -> None:
    images = np.zeros((4, 8, 8), np.float32)
    images[2] = bad
    data = npz_of({**images_and_labels(), "train_images.npy": npy_bytes(images)})
    with pytest.raises(ImageError, match=r"1 image\(s\) of train_images hold NaN or infinite .*"):
        open_image_set(data, name="nan.npz")
    all_nan = np.full((4, 8, 8), np.nan, np.float64)
    data = npz_of({**images_and_labels(), "train_images.npy": npy_bytes(all_nan)})
    with pytest.raises(ImageError, match=r"4 image\(s\) of train_images hold NaN"):
        open_image_set(data, name="nan.npz")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros(3, np.int64), r"has 3 labels for 4 images"),
        (np.zeros((4, 2), np.int64), r"has shape \(4, 2\); medimg handles one label per image"),
        (np.zeros((4, 1, 1), np.int64), r"has shape \(4, 1, 1\)"),
        (np.array([0.0, 1.0, 0.5, 1.0]), r"not whole numbers \(such as NaN or 0\.5\)"),
        (np.array([0.0, np.nan, 1.0, 1.0]), r"not whole numbers"),
        (np.array([0, 1, 2**40, 1]), r"outside the range of class codes"),
        (np.zeros(4, np.complex64), r"holds complex64 values, not numbers"),
    ],
)
def test_labels_of_the_wrong_length_shape_or_type(labels: np.ndarray, message: str) -> None:
    data = npz_of({**images_and_labels(), "train_labels.npy": npy_bytes(labels)})
    with pytest.raises(ImageError, match=message):
        open_image_set(data, name="labels.npz")


def test_whole_float_labels_are_read_as_codes() -> None:
    data = npz_of(
        {**images_and_labels(), "train_labels.npy": npy_bytes(np.array([0.0, 1.0, 0.0, 1.0]))}
    )
    s = open_image_set(data, name="floats.npz")
    assert s.class_counts == {"0": 2, "1": 2}


def test_empty_splits_and_empty_images_are_refused() -> None:
    data = npz_of({"train_images.npy": npy_bytes(np.zeros((0, 8, 8), np.uint8))})
    with pytest.raises(ImageError, match=r"has shape \(0, 8, 8\), so it holds no image"):
        open_image_set(data, name="empty.npz")


def test_images_above_the_pixel_cap_are_refused_from_the_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIMG_MAX_IMAGE_PIXELS", "40")
    with pytest.raises(
        LimitError, match=r"8×8 pixels, more than the cap of 40; .* MEDIMG_MAX_IMAGE_PIXELS"
    ):
        open_image_set(npz_of(images_and_labels()), name="small.npz")
    # Checked on the header's shape, before its size: this member holds a few bytes only.
    monkeypatch.delenv("MEDIMG_MAX_IMAGE_PIXELS")
    data = npz_of({"train_images.npy": lying_npy((1, 6000, 6000))})
    with pytest.raises(LimitError, match=r"6000×6000 pixels, more than the cap of 25,000,000"):
        open_image_set(data, name="big.npz")


def test_the_arrays_together_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    members = {
        **images_and_labels(),
        "val_images.npy": npy_bytes(np.zeros((4, 8, 8), np.uint8)),
        "val_labels.npy": npy_bytes(np.zeros(4, np.int64)),
    }
    monkeypatch.setenv("MEDIMG_MAX_UPLOAD_BYTES", "300")
    with pytest.raises(
        LimitError, match=r"holds 576 bytes of arrays, more than the cap of 300 bytes"
    ):
        open_image_set(npz_of(members), name="two.npz")


_DESCRS = st.sampled_from(["|u1", "<u2", "<f4", "<f8", "|b1", "<i8", "|O", "<U3", "<c8", "|V4"])


@settings(max_examples=150, deadline=None)
@given(
    shape=st.lists(st.integers(0, 2**40), min_size=0, max_size=5).map(tuple),
    descr=_DESCRS,
    data=st.binary(max_size=256),
)
def test_any_npy_header_is_checked_before_allocation(
    shape: tuple[int, ...], descr: str, data: bytes
) -> None:
    """Whatever a header claims, reading either refuses it with a MedimgError or reads an
    array no larger than the member itself; nothing is allocated from the claim alone."""
    member = lying_npy(shape, descr, data)
    blob = npz_of({"train_images.npy": member})
    limits = ImageLimits(max_unpacked_bytes=1 << 20, max_pixels=1 << 16)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        info = zf.getinfo("train_images.npy")
        try:
            head = read_npy_header(zf, info, "h.npz", limits)
        except MedimgError:
            head = None
        if head is not None:
            assert head.data_bytes <= min(limits.max_unpacked_bytes, len(member))
            assert not head.dtype.hasobject
    try:
        contents = read_npz(io.BytesIO(blob), "h.npz", limits=limits)
    except MedimgError:
        return
    assert sum(a.nbytes for a in contents.arrays.values()) <= len(member)


def test_a_split_without_its_labels_is_refused_when_others_have_them() -> None:
    members = {
        **images_and_labels(),
        "test_images.npy": npy_bytes(np.zeros((2, 8, 8), np.uint8)),
    }
    with pytest.raises(ImageError, match=r"labels for some splits but no test_labels"):
        open_image_set(npz_of(members), name="partial.npz")
    unlabelled = {"train_images.npy": members["train_images.npy"]}
    s = open_image_set(npz_of(unlabelled), name="new.npz", min_classes=0)
    assert not s.has_labels and len(s) == 4


def with_compression_method(data: bytes, method: int) -> bytes:
    """``data`` (a ZIP of stored members) with every member's compression method changed, as
    an archive made by a tool with a method Python cannot read (e.g. 99, AES)."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = 0
        while (start := out.find(signature, start)) != -1:
            out[start + offset : start + offset + 2] = method.to_bytes(2, "little")
            start += 4
    return bytes(out)


def test_a_member_compressed_with_an_unknown_method_is_an_image_error() -> None:
    data = with_compression_method(npz_of(images_and_labels()), 99)
    with pytest.raises(ImageError, match=r"'odd\.npz': the array 'train_images' has an unread"):
        open_image_set(data, name="odd.npz")
