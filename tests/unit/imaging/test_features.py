"""Named image features: definitions, determinism, masks, extraction, settings round trip."""

from __future__ import annotations

import io
import math
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
from skimage.filters import sobel
from skimage.measure import regionprops
from threadpoolctl import threadpool_info

from medimg_core import compute
from medimg_core.encryption import is_encrypted
from medimg_core.errors import ConfigError, ImageError
from medimg_core.imaging import features as features_module
from medimg_core.imaging.features import (
    FEATURE_DESCRIPTIONS,
    FEATURE_VERSION,
    FeatureSettings,
    FeatureTable,
    _Bytes,
    _Chunk,
    _extract_chunk,
    _File,
    compute_features,
    describe_feature,
    extract_features,
    feature_names,
    features_from_pixels,
    read_feature_settings,
)
from medimg_core.imaging.pixels import resize_image
from medimg_core.imaging.sets import open_image_set

KEY = b"features-test-key-0123456789abcd"


def texture(h: int = 24, w: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.1, 0.8, w)[None, :] + np.zeros((h, 1))
    return np.clip(ramp + rng.normal(0, 0.08, (h, w)), 0, 1).astype(np.float32)


def save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(path)


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def image_folder(root: Path, n: int = 3) -> Path:
    for k, label in enumerate(("normal", "pneumonia")):
        for i in range(n):
            img = texture(seed=10 * k + i)
            if label == "pneumonia":
                img = np.clip(img + 0.15, 0, 1)
            save(root / label / f"{label}_{i}.png", img)
    return root


def test_descriptions_cover_every_default_feature_in_one_line() -> None:
    names = feature_names(FeatureSettings(), with_mask=True)
    assert set(FEATURE_DESCRIPTIONS) == set(names)
    assert len(names) == len(set(names))
    for name in names:
        text = FEATURE_DESCRIPTIONS[name]
        assert text and "\n" not in text and len(text) < 160
        assert describe_feature(name) == text
    assert {
        "intensity_mean",
        "glcm_contrast",
        "lbp_uniform_3",
        "gradient_mean",
        "shape_area",
    } <= set(names)
    with pytest.raises(ConfigError, match=r"'volume' is not a medimg image feature"):
        describe_feature("volume")


def test_features_are_deterministic_and_named_in_order() -> None:
    img = texture()
    first = compute_features(img)
    second = compute_features(img.copy())
    assert list(first) == list(feature_names(FeatureSettings()))
    assert first == second
    assert all(math.isfinite(v) for v in first.values())


def test_first_order_values() -> None:
    img = texture()
    f = compute_features(img)
    values = img.astype(np.float64).ravel()
    assert f["intensity_mean"] == pytest.approx(values.mean())
    assert f["intensity_std"] == pytest.approx(values.std())
    assert f["intensity_median"] == pytest.approx(np.median(values))
    assert f["intensity_iqr"] == pytest.approx(
        np.percentile(values, 75) - np.percentile(values, 25)
    )
    z = (values - values.mean()) / values.std()
    assert f["intensity_skewness"] == pytest.approx(np.mean(z**3))
    assert f["intensity_kurtosis"] == pytest.approx(np.mean(z**4) - 3)
    hist = np.bincount(np.minimum((values * 32).astype(int), 31), minlength=32) / values.size
    p = hist[hist > 0]
    assert f["intensity_entropy"] == pytest.approx(-(p * np.log2(p)).sum())
    assert f["intensity_uniformity"] == pytest.approx((p**2).sum())


def test_glcm_lbp_and_gradient_match_scikit_image() -> None:
    img = texture(20, 17, seed=3)
    f = compute_features(img)
    q = np.minimum((img * 32).astype(np.int64), 31).astype(np.uint8)
    angles = [0, math.pi / 4, math.pi / 2, 3 * math.pi / 4]
    matrix = graycomatrix(q, [1, 2], angles, levels=32, symmetric=True, normed=True)
    for prop in ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM"):
        assert f[f"glcm_{prop}"] == pytest.approx(graycoprops(matrix, prop).mean(), rel=1e-9)
    codes = local_binary_pattern(np.round(img * 255).astype(np.uint8), 8, 1, method="uniform")
    interior = codes[1:-1, 1:-1]  # border pixels compare with padding and are left out
    share = np.bincount(interior.astype(int).ravel(), minlength=10) / interior.size
    for k in range(10):
        assert f[f"lbp_uniform_{k}"] == pytest.approx(share[k])
    magnitude = sobel(img.astype(np.float64))
    assert f["gradient_mean"] == pytest.approx(magnitude.mean())
    assert f["edge_density"] == pytest.approx((magnitude > 0.1).mean())


@pytest.mark.parametrize(("points", "radius"), [(8, 1.0), (8, 2.0), (16, 2.0), (4, 1.0)])
def test_lbp_codes_are_bit_identical_to_scikit_image(points: int, radius: float) -> None:
    from medimg_core.imaging.features import _lbp_codes

    rng = np.random.default_rng(points)
    edge = math.ceil(radius)
    for trial in range(20):
        h, w = rng.integers(2 * edge + 1, 40, 2)
        high = 4 if trial % 2 else 256  # few grey levels: many ties with the centre pixel
        img = rng.integers(0, high, (h, w)).astype(np.uint8)
        expected = local_binary_pattern(img, points, radius, method="uniform")
        np.testing.assert_array_equal(
            _lbp_codes(img, points, radius), expected[edge : h - edge, edge : w - edge]
        )


def test_constant_image_has_flat_texture() -> None:
    f = compute_features(np.full((16, 16), 0.5, dtype=np.float32))
    assert f["intensity_std"] == 0 and f["intensity_entropy"] == 0
    assert f["intensity_skewness"] == 0 and f["intensity_kurtosis"] == 0
    assert f["glcm_contrast"] == 0 and f["glcm_correlation"] == 1 and f["glcm_energy"] == 1
    assert f["lbp_uniform_8"] == 1 and f["gradient_mean"] == 0


def test_grid_cells_read_top_left_to_bottom_right() -> None:
    img = np.zeros((16, 16), dtype=np.float32)
    img[:4, :4] = 1.0
    f = compute_features(img)
    assert f["grid_r1_c1"] == 1.0 and f["grid_r4_c4"] == 0.0
    assert "row 1 of 4 (1 = top)" in FEATURE_DESCRIPTIONS["grid_r1_c1"]


def test_edge_directions_name_the_edges_they_see() -> None:
    vertical = np.zeros((16, 16), dtype=np.float32)
    vertical[:, 8:] = 1.0
    f = compute_features(vertical)
    assert f["edges_vertical_r1_c1"] == 1.0 and f["edges_horizontal_r1_c1"] == 0.0
    assert math.isnan(f["edges_vertical_r2_c1"]) or f["edges_vertical_r2_c1"] == 1.0
    falling = np.tril(np.ones((16, 16), dtype=np.float32))  # bright below the main diagonal
    f = compute_features(falling)
    assert f["edges_falling_r1_c2"] == 1.0 and f["edges_rising_r1_c2"] == 0.0
    assert "top-right quarter" in FEATURE_DESCRIPTIONS["edges_falling_r1_c2"]
    assert math.isnan(compute_features(np.full((16, 16), 0.3))["edges_vertical_r1_c1"])
    with pytest.raises(ConfigError, match=r"do not fit a 3×3 image"):
        compute_features(np.zeros((3, 3)))


def test_mask_restricts_the_region_and_adds_shape() -> None:
    img = texture()
    mask = np.zeros(img.shape, dtype=bool)
    mask[6:18, 4:20] = True
    f = compute_features(img, mask=mask)
    assert f["intensity_mean"] == pytest.approx(img[mask].astype(np.float64).mean())
    props = regionprops(mask.astype(np.uint8))[0]
    assert f["shape_area"] == 12 * 16
    assert f["shape_perimeter"] == pytest.approx(props.perimeter)
    assert f["shape_extent"] == pytest.approx(1.0)
    assert f["shape_major_axis"] > f["shape_minor_axis"]
    assert math.isnan(f["grid_r1_c1"])  # the top-left cell lies outside the mask
    no_mask = compute_features(img, with_mask=True)
    assert math.isnan(no_mask["shape_area"])
    with pytest.raises(ImageError, match=r"The mask marks no pixel at the working size"):
        compute_features(img, mask=np.zeros(img.shape, dtype=bool))
    with pytest.raises(ImageError, match=r"masks must have the image's size"):
        compute_features(img, mask=np.ones((3, 3), dtype=bool))


def test_extract_features_from_class_folders(tmp_path: Path) -> None:
    s = open_image_set(image_folder(tmp_path), key=KEY)
    calls: list[tuple[float, str]] = []
    table = extract_features(s, workers=1, progress=lambda f, m: calls.append((f, m)))
    assert isinstance(table, FeatureTable)
    assert list(table.frame.columns[:2]) == ["file", "label"]
    assert list(table.frame.columns[2:]) == list(table.feature_names)
    assert len(table.frame) == 6
    assert calls[-1][0] == 1.0 and "6 of 6" in calls[-1][1]
    assert table.settings["size"] == [24, 24] and table.settings["version"] == FEATURE_VERSION
    assert table.roles().label == "label" and table.roles().exclude == ("file",)
    assert table.predefined_test() is None
    assert set(table.descriptions) == set(table.feature_names)
    assert not any("shape_" in n for n in table.feature_names)
    table.to_parquet(tmp_path / "features.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "features.parquet"), table.frame)
    assert read_feature_settings(tmp_path / "features.parquet") == table.settings
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "plain.parquet")
    assert read_feature_settings(tmp_path / "plain.parquet") is None


def test_extract_is_identical_with_two_workers_forked_or_from_a_thread(tmp_path: Path) -> None:
    s = open_image_set(image_folder(tmp_path, n=4), key=KEY)
    inline = extract_features(s, workers=1)
    pooled = extract_features(s, workers=2)
    pd.testing.assert_frame_equal(inline.frame, pooled.frame)
    # From a thread (as inside Streamlit) the workers come from a fork server instead.
    with ThreadPoolExecutor(max_workers=1) as host:
        threaded = host.submit(extract_features, s, workers=2).result()
    pd.testing.assert_frame_equal(inline.frame, threaded.frame)


def test_extract_with_masks_labels_table_and_size(tmp_path: Path) -> None:
    root = image_folder(tmp_path)
    images = sorted(root.glob("*/*.png"))
    rows = [
        {"file": p.name, "label": p.parent.name, "patient_id": f"pt{i // 2}", "age": 40 + i}
        for i, p in enumerate(images)
    ]
    mask = np.zeros((24, 24), dtype=np.float32)
    mask[4:20, 4:20] = 1
    for p in images:
        save(root / "masks" / p.name, mask)
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    s = open_image_set(root, key=KEY)
    table = extract_features(s, size=16, workers=1)
    assert list(table.frame.columns[:4]) == ["file", "patient_id", "label", "age"]
    assert "shape_area" in table.feature_names
    # a 16×16 square in 24×24 is about 10.7×10.7 pixels at 16×16 (nearest-neighbour resize)
    assert 90 <= table.frame["shape_area"].iloc[0] <= 130
    assert table.roles().id == "patient_id"
    assert table.settings["size"] == [16, 16]
    assert any("as requested" in n for n in table.notes)


def test_npz_split_becomes_the_predefined_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 10, 10), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2)[:, None]
    np.savez(tmp_path / "m.npz", **arrays)
    table = extract_features(open_image_set(tmp_path / "m.npz"), workers=1)
    assert list(table.frame.columns[:3]) == ["file", "label", "split"]
    assert table.predefined_test() == (False,) * 6 + (True,) * 3
    assert table.roles().exclude == ("file", "split")


def test_decode_failures_are_reported_and_the_rest_extracted(tmp_path: Path) -> None:
    root = image_folder(tmp_path)
    Image.fromarray(np.round(texture(64, 64) * 255).astype(np.uint8)).save(
        root / "normal" / "cut.jpg", quality=95
    )
    raw = (root / "normal" / "cut.jpg").read_bytes()
    (root / "normal" / "cut.jpg").write_bytes(raw[: len(raw) // 3])
    s = open_image_set(root, key=KEY)
    table = extract_features(s, size=24, workers=1)
    assert len(table.frame) == 6
    assert [p.file for p in table.problems] == ["normal/cut.jpg"]
    assert any("could not be decoded and were left out: normal/cut.jpg" in n for n in table.notes)


def test_settings_round_trip_and_conflicts(tmp_path: Path) -> None:
    s = FeatureSettings(size=(28, 28))
    assert FeatureSettings.from_dict(s.to_dict()) == s
    old = {**s.to_dict(), "version": "medimg-image-features/0"}
    with pytest.raises(ConfigError, match=r"extracted with 'medimg-image-features/0'.*retrain"):
        FeatureSettings.from_dict(old)
    with pytest.raises(ConfigError, match=r"grey_levels must be between 2 and 256"):
        FeatureSettings(grey_levels=1)
    images = open_image_set(image_folder(tmp_path), key=KEY)
    with pytest.raises(ConfigError, match=r"differs from the saved feature settings' size"):
        extract_features(images, size=16, settings=s.to_dict(), workers=1)
    with pytest.raises(ConfigError, match=r"workers must be at least 1"):
        extract_features(images, workers=0)
    again = extract_features(images, settings=s.to_dict(), workers=1)
    assert again.settings["size"] == [28, 28]


def test_features_from_pixels_resizes_to_the_settings_size() -> None:
    batch = np.stack([texture(32, 32, seed=i) for i in range(3)])
    frame = features_from_pixels(batch, settings=FeatureSettings(size=(16, 16)))
    assert frame.shape == (3, len(feature_names(FeatureSettings())))
    direct = compute_features(resize_image(batch[0], (16, 16)))
    assert list(frame.iloc[0]) == pytest.approx(list(direct.values()))
    with pytest.raises(ConfigError, match=r"needs settings with a size"):
        features_from_pixels(batch, settings=FeatureSettings())


def test_pool_progress_counts_images_as_each_task_finishes(tmp_path: Path) -> None:
    s = open_image_set(image_folder(tmp_path, n=5), key=KEY)
    calls: list[tuple[float, str]] = []
    extract_features(s, workers=2, progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and len(calls) == 10
    assert calls[-1] == (1.0, "Extracted features from 10 of 10 images")


def test_two_workers_give_the_serial_path_row_for_row_over_many_tasks(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "set", n=35)  # 70 images: 35 tasks of 2
    for k, path in enumerate(sorted(root.glob("*/*.png"))):
        mask = np.zeros((24, 24), dtype=np.float32)
        mask[2 + k % 5 : 20, 3 : 12 + k % 9] = 1
        save(root / "masks" / path.name, mask)
    s = open_image_set(root, key=KEY)
    # A file replaced after the set was opened fails to decode in its task: left out, reported.
    Path(s.records["source"].iloc[5]).write_bytes(b"not an image any more")
    pooled = extract_features(s, workers=2)
    inline = extract_features(s, workers=1)
    pd.testing.assert_frame_equal(pooled.frame, inline.frame, check_exact=True)
    assert pooled.problems == inline.problems
    assert [p.file for p in pooled.problems] == [s.records["file"].iloc[5]]
    settings = FeatureSettings.from_dict(pooled.settings)
    assert settings.size is not None
    kept = [i for i in range(len(s)) if i != 5]
    serial = [
        compute_features(
            resize_image(s.load(i).pixels, settings.size),
            mask=s.load_mask(i, size=settings.size),
            settings=settings,
            with_mask=True,
        )
        for i in kept
    ]
    assert pooled.frame["file"].tolist() == s.records["file"].iloc[kept].tolist()
    pd.testing.assert_frame_equal(
        pooled.frame[list(pooled.feature_names)],
        pd.DataFrame(serial, columns=list(pooled.feature_names)),
        check_exact=True,
    )


def _blas_threads_after_a_task(chunk: _Chunk) -> int:
    _extract_chunk(chunk, settings=FeatureSettings(size=(16, 16)).to_dict(), with_mask=False)
    return max(info["num_threads"] for info in threadpool_info())


def test_pool_workers_run_blas_on_one_thread_and_the_caller_keeps_its_own() -> None:
    chunk = _Chunk(((0, np.zeros((16, 16), dtype=np.uint8), None, "zeros", None),))
    before = max(info["num_threads"] for info in threadpool_info())
    pooled = compute.current().map(_blas_threads_after_a_task, [chunk, chunk], workers=2)
    assert pooled == [1, 1]
    assert compute.current().map(_blas_threads_after_a_task, [chunk], workers=1) == [before]


def test_task_boundaries_do_not_depend_on_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = open_image_set(image_folder(tmp_path, n=4), key=KEY)
    seen: list[list[int]] = []
    original = compute.Engine.map

    def recording(self: compute.Engine, fn: Any, items: Any, **kwargs: Any) -> Any:
        seen.append([len(chunk.entries) for chunk in items])
        return original(self, fn, items, **kwargs)

    monkeypatch.setattr(compute.Engine, "map", recording)
    extract_features(s, workers=1)
    extract_features(s, workers=2)
    assert seen[0] == seen[1] == [1] * 8


def test_a_file_not_visible_where_the_task_runs_is_reported_not_read(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    save(path, texture())
    stat = path.stat()
    settings = FeatureSettings(size=(16, 16)).to_dict()
    here = _File(str(path), stat.st_size, stat.st_mtime_ns, False)
    moved = _File(str(tmp_path / "elsewhere.png"), stat.st_size, stat.st_mtime_ns, False)
    other = _File(str(path), stat.st_size + 1, stat.st_mtime_ns, False)
    sent = _Bytes(path.read_bytes(), False)
    out = _extract_chunk(
        _Chunk(
            (
                (0, here, None, "a.png", None),
                (1, moved, None, "a.png", None),
                (2, other, None, "a.png", None),
                (3, sent, None, "a.png", None),
            )
        ),
        settings=settings,
        with_mask=False,
    )
    assert out.extracted == (0, 3)
    assert out.unseen == (1, 2)
    assert out.failed == ()
    assert out.values.shape == (2, len(feature_names(FeatureSettings(size=(16, 16)))))
    assert np.array_equal(out.values[0], out.values[1])


def test_dicom_sent_as_bytes_is_read_as_from_its_path_and_no_key_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("MEDIMG_PSEUDONYM_KEY", raising=False)
    bare = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    bare.preamble = None
    path = tmp_path / "bare.dcm"
    bare.save_as(path, enforce_file_format=False)
    settings = FeatureSettings(size=(32, 32)).to_dict()
    stat = path.stat()
    by_path = _File(str(path), stat.st_size, stat.st_mtime_ns, True)
    by_bytes = _Bytes(path.read_bytes(), True)
    out = _extract_chunk(
        _Chunk(((0, by_path, None, "bare.dcm", None), (1, by_bytes, None, "bare.dcm", None))),
        settings=settings,
        with_mask=False,
    )
    assert out.extracted == (0, 1)
    assert np.array_equal(out.values[0], out.values[1])
    assert not (tmp_path / "ws").exists()  # tasks never read or create a pseudonym key


def test_uploaded_images_travel_decrypted_in_bounded_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = {
        f"{label}/{label}_{i}.png": png_bytes(texture(seed=10 * k + i))
        for k, label in enumerate(("normal", "pneumonia"))
        for i in range(4)
    }
    s = open_image_set(zip_bytes(members), workspace=tmp_path / "ws", key=KEY)
    assert all(is_encrypted(p) for p in s.records["source"])
    whole = extract_features(s, workers=1)
    windows: list[int] = []
    original = compute.Engine.map

    def recording(self: compute.Engine, fn: Any, items: Any, **kwargs: Any) -> Any:
        windows.append(len(items))
        return original(self, fn, items, **kwargs)

    monkeypatch.setattr(compute.Engine, "map", recording)
    monkeypatch.setattr(features_module, "_WINDOW_BYTES", 1)
    pooled = extract_features(s, workers=2)
    assert windows == [1] * 8
    pd.testing.assert_frame_equal(whole.frame, pooled.frame, check_exact=True)
