"""medimg on a real cluster topology: ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, and ``medimg --scheduler tcp://...`` as a third process (the client).

``medimg features``, ``medimg train`` and ``medimg predict`` must give exactly what the same
commands give in one process (no ``--scheduler``): the same feature table, the same metrics,
leaderboard, calibration and out-of-fold scores, the same predictions. A worker killed with
SIGKILL in the middle of a run must not change that: Dask runs its tasks again on the other
worker. The workers never get the encryption key, the registry or the workspace.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medimg_core.imaging.features import read_feature_settings
from medimg_core.store.cases import load_cases
from medimg_core.store.persistence import load_model
from medimg_core.tables.loading import load_sample
from tests.cluster.conftest import MEDIMG, DaskCluster, cli_env, medimg

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.xdist_group("cluster")]

IMAGE_TRAIN = ["--model", "logreg", "--cv", "3", "--n-boot", "50"]
TABLE_TRAIN = ["--model", "auto", "--cv", "3", "--n-boot", "50"]
STAMP_COLUMNS = ["run_id", "model_sha256"]
"""Prediction columns naming the model file and run, which differ between two trainings."""
MANIFEST = "_medimg_predictions.json"
"""The summary beside the parts of a partitioned prediction."""


def texture(kind: str, seed: int, size: int) -> np.ndarray:
    """Smooth blocky shading ("normal") or fine-grained speckle ("pneumonia")."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(90, 160)
    if kind == "normal":
        values = level + np.kron(rng.normal(0, 25, (size // 4, size // 4)), np.ones((4, 4)))
    else:
        values = level + rng.normal(0, 35, (size, size))
    return np.clip(values, 0, 255).astype(np.uint8)


def image_folder(root: Path, n: int, seed: int, size: int = 256) -> Path:
    """``2 n`` PNG images in one sub-folder per class (a few seconds of feature extraction
    for a few hundred images at 256×256)."""
    for k, kind in enumerate(("normal", "pneumonia")):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image = Image.fromarray(texture(kind, seed + 1000 * k + i, size))
            image.save(root / kind / f"{kind}_{i:03d}.png")
    return root


@dataclass(frozen=True)
class Outputs:
    """What one set of commands wrote."""

    home: Path
    features: Path
    image_model: Path
    image_predictions: Path
    table_model: Path
    table_predictions: Path


@dataclass(frozen=True)
class Data:
    root: Path
    images: Path
    new_images: Path
    new_cases: Path
    inline: Outputs


def outputs(root: Path) -> Outputs:
    return Outputs(
        home=root / "workspace",
        features=root / "features.parquet",
        image_model=root / "image-model",
        image_predictions=root / "image-predictions.csv",
        table_model=root / "table-model",
        table_predictions=root / "table-predictions",
    )


def features(images: Path, out: Outputs, scheduler: str | None = None) -> None:
    medimg(["features", str(images), "-o", str(out.features)], out.home, scheduler=scheduler)


def train_images(images: Path, out: Outputs, scheduler: str | None = None) -> None:
    args = ["train", str(images), *IMAGE_TRAIN, "-o", str(out.image_model)]
    medimg(args, out.home, scheduler=scheduler)


def predict_images(
    model: Path, images: Path, target: Path, home: Path, scheduler: str | None = None
) -> None:
    args = ["predict", str(model), str(images), "--explain", "2", "-o", str(target)]
    medimg(args, home, scheduler=scheduler)


def train_table(out: Outputs, scheduler: str | None = None) -> None:
    args = ["train", "sample:wdbc", *TABLE_TRAIN, "-o", str(out.table_model)]
    medimg(args, out.home, scheduler=scheduler)


def new_cases(folder: Path, parts: int = 4) -> Path:
    """The sample table as ``parts`` CSV files: batch prediction makes each one task."""
    folder.mkdir(parents=True)
    frame = load_sample("wdbc").frame
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].to_csv(folder / f"cases-{k}.csv", index=False)
    return folder


def predict_table(
    model: Path, cases: Path, target: Path, home: Path, scheduler: str | None = None
) -> None:
    """Batch prediction with reasons: one task per CSV file, a folder of CSV parts."""
    args = ["predict", str(model), str(cases), "--format", "csv", "--explain", "3"]
    medimg([*args, "-o", f"{target}/"], home, scheduler=scheduler)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    """The images, and every command's output run in one process (no ``--scheduler``)."""
    root = tmp_path_factory.mktemp("cluster-data")
    images = image_folder(root / "images", n=200, seed=0)
    new_images = image_folder(root / "new-images", n=20, seed=50_000)
    cases = new_cases(root / "new-cases")
    inline = outputs(root / "inline")
    features(images, inline)
    train_images(images, inline)
    predict_images(inline.image_model, new_images, inline.image_predictions, inline.home)
    train_table(inline)
    predict_table(inline.table_model, cases, inline.table_predictions, inline.home)
    return Data(root, images, new_images, cases, inline)


@pytest.fixture
def cluster(dask_cluster: DaskCluster) -> Iterator[DaskCluster]:
    """The module's cluster with both workers running; afterwards, the workers have left
    nothing in their workspace and never had a key."""
    dask_cluster.restore()
    yield dask_cluster
    assert not dask_cluster.worker_home.exists(), (
        f"a worker wrote to its workspace: {sorted(dask_cluster.worker_home.rglob('*'))}"
    )
    assert not dask_cluster.worker_key_file.parent.exists(), "a worker created an encryption key"


class TasksOnWorkers:
    """Counts the tasks the workers ran during a block (``ran``: by worker name)."""

    def __init__(self, cluster: DaskCluster) -> None:
        self.cluster = cluster
        self.ran: dict[str, int] = {}

    def __enter__(self) -> TasksOnWorkers:
        self.before = self.cluster.executed()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self.cluster.executed()
        self.ran = {name: n - self.before.get(name, 0) for name, n in after.items()}

    @property
    def total(self) -> int:
        return sum(self.ran.values())


VOLATILE = ("created", "training_seconds", "model_sha256")


def comparable_card(model_dir: Path) -> dict[str, Any]:
    """The model card without what differs between two identical trainings: the time it was
    written, timings, and checksums of the model files (their archives carry timestamps)."""
    card = copy.deepcopy(load_model(model_dir).card)
    for key in VOLATILE:
        card.pop(key, None)
    (card.get("out_of_distribution") or {}).pop("sha256", None)
    for row in card.get("leaderboard") or []:
        row.pop("seconds", None)
    return card


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON-like values differ (exact comparison, floats included)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for k in sorted(set(a) | set(b), key=str)
            for d in differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}/{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return []
    return [] if a == b else [f"{path}: {str(a)[:80]} != {str(b)[:80]}"]


def assert_same_model(model_dir: Path, reference: Path) -> None:
    """Same card (metrics with intervals, leaderboard, calibration curves, threshold, top
    features) and the same stored cases with their out-of-fold and test scores, to the bit."""
    diff = differences(comparable_card(model_dir), comparable_card(reference))
    assert not diff, "model cards differ:\n" + "\n".join(diff[:40])
    pd.testing.assert_frame_equal(load_cases(model_dir), load_cases(reference), check_exact=True)


def assert_same_predictions(path: Path, reference: Path, *, same_model: bool) -> None:
    """Byte-identical CSVs from the same model; from two trainings, identical apart from the
    columns that name the run and the model file. For a folder of parts (batch prediction):
    the same parts, each compared so, and the same summary apart from when it was written
    and where it ran."""
    if path.is_dir():
        parts = sorted(p.name for p in path.iterdir())
        assert parts == sorted(p.name for p in reference.iterdir())
        assert MANIFEST in parts and len(parts) > 2, parts
        for name in parts:
            if name != MANIFEST:
                assert_same_predictions(path / name, reference / name, same_model=same_model)
        volatile = {"output", "written_at", "where", "computed_on"}
        if not same_model:
            volatile |= set(STAMP_COLUMNS)
        got, want = (
            {k: v for k, v in json.loads((d / MANIFEST).read_text()).items() if k not in volatile}
            for d in (path, reference)
        )
        diff = differences(got, want)
        assert not diff, "prediction summaries differ:\n" + "\n".join(diff)
        return
    if same_model:
        assert path.read_bytes() == reference.read_bytes()
        return
    got, want = pd.read_csv(path), pd.read_csv(reference)
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(
        got.drop(columns=STAMP_COLUMNS), want.drop(columns=STAMP_COLUMNS), check_exact=True
    )


def test_features_on_the_cluster_are_the_same(
    data: Data, cluster: DaskCluster, tmp_path: Path
) -> None:
    out = outputs(tmp_path)
    with TasksOnWorkers(cluster) as tasks:
        features(data.images, out, cluster.address)
    assert tasks.total > 0, "no image was read on a worker: features ran in the client"
    pd.testing.assert_frame_equal(
        pd.read_parquet(out.features), pd.read_parquet(data.inline.features), check_exact=True
    )
    assert read_feature_settings(out.features) == read_feature_settings(data.inline.features)


def test_image_training_and_prediction_on_the_cluster_are_the_same(
    data: Data, cluster: DaskCluster, tmp_path: Path
) -> None:
    out = outputs(tmp_path)
    with TasksOnWorkers(cluster) as tasks:
        train_images(data.images, out, cluster.address)
    assert tasks.total > 0, "medimg train on images ran no task on the workers"
    assert_same_model(out.image_model, data.inline.image_model)
    # The cluster's model, used on the cluster, predicts what the one-process model predicts.
    with TasksOnWorkers(cluster) as tasks:
        predict_images(
            out.image_model, data.new_images, out.image_predictions, out.home, cluster.address
        )
    assert tasks.total > 0, "medimg predict on images ran no task on the workers"
    assert_same_predictions(out.image_predictions, data.inline.image_predictions, same_model=False)


def test_table_training_and_prediction_on_the_cluster_are_the_same(
    data: Data, cluster: DaskCluster, tmp_path: Path
) -> None:
    out = outputs(tmp_path)
    with TasksOnWorkers(cluster) as tasks:
        train_table(out, cluster.address)
    assert tasks.total > 0, "medimg train ran no cross-validation fit on the workers"
    assert_same_model(out.table_model, data.inline.table_model)
    card = load_model(out.table_model).card
    assert card["metrics"]["cv"]["accuracy"]["value"] >= 0.97
    assert card["metrics"]["cv"]["roc_auc"]["value"] >= 0.99
    with TasksOnWorkers(cluster) as tasks:
        predict_table(
            out.table_model, data.new_cases, out.table_predictions, out.home, cluster.address
        )
    assert tasks.total > 0, "medimg predict ran no prediction task on the workers"
    assert_same_predictions(out.table_predictions, data.inline.table_predictions, same_model=False)


def test_prediction_with_one_model_is_byte_identical_on_the_cluster(
    data: Data, cluster: DaskCluster, tmp_path: Path
) -> None:
    inline = data.inline
    images_csv, table_parts = tmp_path / "images.csv", tmp_path / "table-parts"
    predict_images(inline.image_model, data.new_images, images_csv, inline.home, cluster.address)
    predict_table(inline.table_model, data.new_cases, table_parts, inline.home, cluster.address)
    assert_same_predictions(images_csv, inline.image_predictions, same_model=True)
    assert_same_predictions(table_parts, inline.table_predictions, same_model=True)


@pytest.mark.parametrize("run", ["images", "table"])
def test_a_worker_killed_mid_run_changes_nothing(
    run: str, data: Data, cluster: DaskCluster, tmp_path: Path
) -> None:
    """SIGKILL worker w2 (nanny and worker: a machine lost) while it has tasks of ``medimg
    train``; the run completes on w1 with the same results as in one process."""
    out = outputs(tmp_path)
    if run == "images":
        # The kill lands during feature extraction (the first and longest step).
        source, options, target, reference = (
            str(data.images),
            IMAGE_TRAIN,
            out.image_model,
            data.inline.image_model,
        )
    else:
        # The kill lands among the cross-validation fits and bootstrap replicates.
        source, options, target, reference = (
            "sample:wdbc",
            TABLE_TRAIN,
            out.table_model,
            data.inline.table_model,
        )
    command = [
        *(str(MEDIMG), "--scheduler", cluster.address, "train", source),
        *(*options, "-o", str(target)),
    ]
    before = cluster.executed()
    stdout_file, stderr_file = tmp_path / "train.out", tmp_path / "train.err"
    killed_with: list[str] = []
    with stdout_file.open("w") as stdout, stderr_file.open("w") as stderr:
        proc = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, env=cli_env(out.home), cwd=tmp_path
        )
        try:
            while proc.poll() is None and not killed_with:
                killed_with = cluster.processing_on("w2")
                if killed_with:
                    cluster.kill("w2")
                else:
                    time.sleep(0.02)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = stderr_file.read_text(encoding="utf-8")
    assert killed_with, (
        "medimg train finished before any of its tasks reached worker w2; nothing was killed "
        f"(is the step sent to the cluster?)\n{log}"
    )
    assert proc.returncode == 0, (
        f"the run failed after w2 was killed while it had {killed_with}:\n{log}\n{cluster.logs()}"
    )
    assert "Traceback" not in log
    assert set(cluster.worker_names()) == {"w1"}
    assert cluster.executed()["w1"] > before["w1"]
    assert_same_model(target, reference)
    assert "Saved to" in stdout_file.read_text(encoding="utf-8")
