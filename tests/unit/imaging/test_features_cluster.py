"""Image features on a Dask cluster: the same table as in this process, whatever the source.

One ``LocalCluster`` of two worker processes serves the module. Each source kind travels its
own way (paths, npz arrays, decrypted bytes of an upload, bytes when workers cannot see a
path); every way must give exactly the frame computed in this process, alone or with a pool.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medimg_core import compute
from medimg_core.cli import main
from medimg_core.encryption import is_encrypted
from medimg_core.imaging.features import FeatureTable, extract_features
from medimg_core.imaging.sets import ImageSet, open_image_set
from tests.unit.imaging.synthetic import image_folder, png_bytes, texture, zip_bytes

KEY = b"features-cluster-key-0123456789a"


# One worker runs the whole module: under xdist its module-scoped fixture (a cluster or
# trained runs) would otherwise be built again on the other worker.
pytestmark = pytest.mark.xdist_group("features-cluster")


@pytest.fixture(scope="module")
def cluster() -> Iterator[compute.Engine]:
    with compute.running_on(compute.Scheduler(local_workers=2)) as engine:
        yield engine


def here(image_set: ImageSet, workers: int, **kwargs: Any) -> FeatureTable:
    """Extraction in this process (``workers=1``) or its local pool, whatever else is in force."""
    with compute.running_on(compute.Scheduler()):
        return extract_features(image_set, workers=workers, **kwargs)


def assert_same_everywhere(
    image_set: ImageSet,
    cluster: compute.Engine,
    progress: Callable[[float, str], None] | None = None,
    **kwargs: Any,
) -> FeatureTable:
    """The cluster's table, checked equal to this process's alone and with a pool of two."""
    assert compute.current() is cluster
    remote = extract_features(image_set, progress=progress, **kwargs)
    for workers in (1, 2):
        local = here(image_set, workers, **kwargs)
        pd.testing.assert_frame_equal(local.frame, remote.frame, check_exact=True)
        assert local.problems == remote.problems
        assert local.settings == remote.settings
    return remote


def studies_with_masks_labels_and_a_broken_file(root: Path) -> Path:
    image_folder(root, n=9, size=24)
    images = sorted(root.glob("*/*.png"))
    mask = np.zeros((24, 24), dtype=np.uint8)
    mask[3:21, 5:19] = 255
    (root / "masks").mkdir()
    for p in images:
        Image.fromarray(mask).save(root / "masks" / p.name)
    rows = [
        {"file": p.name, "label": p.parent.name, "patient_id": f"pt{i // 3}", "age": 30 + i}
        for i, p in enumerate(images)
    ]
    # A JPEG cut short: its header passes when the set is opened, its pixels fail to decode.
    Image.fromarray(texture("normal", 99, 64)).save(root / "normal" / "cut.jpg", quality=95)
    raw = (root / "normal" / "cut.jpg").read_bytes()
    (root / "normal" / "cut.jpg").write_bytes(raw[: len(raw) // 3])
    rows.append({"file": "cut.jpg", "label": "normal", "patient_id": "pt99", "age": 80})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def test_png_folder_is_identical_and_progress_counts_images_as_tasks_finish(
    tmp_path: Path, cluster: compute.Engine
) -> None:
    s = open_image_set(studies_with_masks_labels_and_a_broken_file(tmp_path / "s"), key=KEY)
    calls: list[tuple[float, str]] = []
    table = assert_same_everywhere(s, cluster, progress=lambda f, m: calls.append((f, m)))
    assert len(table.frame) == 18 and "shape_area" in table.feature_names
    assert list(table.frame.columns[:4]) == ["file", "patient_id", "label", "age"]
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions) > 1
    assert calls[-1] == (1.0, "Extracted features from 19 of 19 images")
    assert "computed on a local Dask cluster of 2 worker processes" in " ".join(table.notes)


def test_a_file_a_worker_cannot_decode_is_a_problem_not_a_crash(
    tmp_path: Path, cluster: compute.Engine
) -> None:
    s = open_image_set(studies_with_masks_labels_and_a_broken_file(tmp_path / "s"), key=KEY)
    table = extract_features(s)
    assert [p.file for p in table.problems] == ["normal/cut.jpg"]
    assert "could not be decoded" in table.problems[0].reason
    assert any("1 image(s) could not be decoded and were left out" in n for n in table.notes)


def test_npz_is_identical(tmp_path: Path, cluster: compute.Engine) -> None:
    rng = np.random.default_rng(3)
    arrays = {}
    for split, n in (("train", 150), ("val", 20), ("test", 40)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2)[:, None]
    np.savez(tmp_path / "m.npz", **arrays)
    table = assert_same_everywhere(open_image_set(tmp_path / "m.npz"), cluster)
    assert len(table.frame) == 210 and table.frame["split"].tolist()[-1] == "test"


def test_dicom_is_identical_with_and_without_preamble(
    tmp_path: Path, cluster: compute.Engine
) -> None:
    root = tmp_path / "dicom"
    for folder, name in (("ct", "CT_small.dcm"), ("mr", "MR_small.dcm")):
        (root / folder).mkdir(parents=True)
        shutil.copy(get_testdata_file(name), root / folder / name)
    # Files without the 128-byte preamble and "DICM" marker are DICOM by their name only.
    bare = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    bare.preamble = None
    bare.save_as(root / "ct" / "bare.dcm", enforce_file_format=False)
    assert (root / "ct" / "bare.dcm").read_bytes()[128:132] != b"DICM"
    s = open_image_set(root, key=KEY)
    table = assert_same_everywhere(s, cluster, size=32)
    assert len(table.frame) == 3 and not table.problems
    ct = table.frame.set_index("file").loc[["ct/CT_small.dcm", "ct/bare.dcm"]]
    pd.testing.assert_series_equal(
        ct.iloc[0][list(table.feature_names)],
        ct.iloc[1][list(table.feature_names)],
        check_names=False,
    )


def test_uploaded_zip_stays_encrypted_and_workers_never_need_the_key(
    tmp_path: Path, cluster: compute.Engine
) -> None:
    members = {
        f"{kind}/{kind}_{i}.png": png_bytes(texture(kind, 10 * k + i, 20))
        for k, kind in enumerate(("normal", "pneumonia"))
        for i in range(6)
    }
    s = open_image_set(zip_bytes(members), workspace=tmp_path / "ws", key=KEY)
    assert s.root is not None and all(is_encrypted(p) for p in s.records["source"])
    saved = cluster.client.run(_forget_the_key)
    try:
        assert set(cluster.client.run(_cannot_decrypt, s.records["source"].iloc[0]).values()) == {
            True
        }
        table = assert_same_everywhere(s, cluster)
    finally:
        cluster.client.run(_remember_the_key, saved)
    assert len(table.frame) == 12 and not table.problems


def test_files_workers_cannot_see_are_sent_to_them(tmp_path: Path, cluster: compute.Engine) -> None:
    s = open_image_set(image_folder(tmp_path / "s", n=7), key=KEY)
    reference = here(s, 1)
    cluster.client.run(_blind)
    try:
        calls: list[float] = []
        table = extract_features(s, progress=lambda f, m: calls.append(f))
    finally:
        cluster.client.run(_unblind)
    pd.testing.assert_frame_equal(reference.frame, table.frame, check_exact=True)
    assert calls == sorted(calls) and calls[-1] == 1.0
    note = next(n for n in table.notes if "not visible to the workers" in n)
    assert note.startswith("14 image file(s)")
    assert not any("not visible" in n for n in extract_features(s).notes)


def test_an_extraction_run_as_one_task_inside_a_worker_runs_there_inline(
    tmp_path: Path, cluster: compute.Engine
) -> None:
    # A job submitted whole to a worker (the dashboard's jobs): a Dask worker is a daemonic
    # process, which may not start the local pool that workers=None would otherwise ask for.
    s = open_image_set(image_folder(tmp_path / "s", n=4), key=KEY)
    inside = cluster.client.submit(_extract_with_defaults, s, pure=False).result()
    pd.testing.assert_frame_equal(here(s, 1).frame, inside.frame, check_exact=True)


def test_cli_features_on_a_local_cluster_writes_the_same_parquet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    images = image_folder(tmp_path / "images", n=10)
    plain, spread = tmp_path / "plain.parquet", tmp_path / "spread.parquet"
    with compute.running_on(compute.Scheduler()):
        assert main(["features", str(images), "-o", str(plain)]) == 0
        assert main(["features", "--scheduler", "local:2", str(images), "-o", str(spread)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(plain), pd.read_parquet(spread), check_exact=True)
    assert pq.read_schema(plain).metadata == pq.read_schema(spread).metadata
    assert not list(tmp_path.glob(".spread.parquet.*"))


def _extract_with_defaults(image_set: ImageSet) -> FeatureTable:
    return extract_features(image_set)


def _forget_the_key() -> dict[str, str | None]:
    saved = {k: os.environ.get(k) for k in ("MEDIMG_KEY_FILE", "MEDIMG_ENCRYPTION_KEY")}
    os.environ["MEDIMG_KEY_FILE"] = "/nonexistent/medimg/key"
    os.environ.pop("MEDIMG_ENCRYPTION_KEY", None)
    return saved


def _remember_the_key(saved: dict[str, dict[str, str | None]], dask_worker: Any) -> None:
    for name, value in saved[dask_worker.address].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _cannot_decrypt(path: str) -> bool:
    from medimg_core.encryption import read_decrypted
    from medimg_core.errors import EncryptionError

    try:
        read_decrypted(path)
    except EncryptionError:
        return True
    return False


def _blind() -> None:
    # As on a cluster that does not mount the folder: no worker finds the files at their path.
    from medimg_core.imaging import features

    features._seeing = features._visible_here
    features._visible_here = lambda file: False


def _unblind() -> None:
    from medimg_core.imaging import features

    features._visible_here = features.__dict__.pop("_seeing")
