"""MedMNIST .npz sets: their splits and labels, colour arrays and bad layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg_core.errors import ImageError
from medimg_core.imaging.npz import MEDMNIST
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
