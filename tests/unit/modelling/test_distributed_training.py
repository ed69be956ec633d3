"""Cross-validation fits and bootstrap replicates as tasks: the same numbers to the last digit
in this process and on a local Dask cluster of two worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from medimg_core import compute
from medimg_core.modelling import evaluation, selection
from medimg_core.modelling.evaluation import Evaluation, MetricValue, evaluate_scores
from medimg_core.modelling.models import MODEL_KINDS, ModelConfig
from medimg_core.modelling.prediction import predict
from medimg_core.modelling.selection import (
    Candidate,
    Comparison,
    Development,
    bootstrap_auc_acc,
    choose_model,
    cross_validate_candidates,
    selection_free_auc,
)
from medimg_core.modelling.task import FeatureSpec
from medimg_core.modelling.training import TrainingResult, cross_validate_deployed, train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.tables.cleaning import CleaningPlan
from medimg_core.tables.loading import load_sample
from medimg_core.tables.roles import Roles

# One worker runs the whole module: under xdist its module-scoped fixture (a cluster or
# trained runs) would otherwise be built again on the other worker.
pytestmark = pytest.mark.xdist_group("distributed-training")


@pytest.fixture(scope="module")
def cluster() -> Iterator[compute.Engine]:
    with compute.running_on(compute.Scheduler(local_workers=2)) as engine:
        yield engine


def inline() -> AbstractContextManager[compute.Engine]:
    """This process, inside the module whose engine in force is the cluster."""
    return compute.running_on(compute.Scheduler())


def both(cluster: compute.Engine, run: Any) -> tuple[Any, Any]:
    """``run()`` in this process, then on the cluster."""
    with inline() as here:
        assert not here.distributed
        local = run()
    assert compute.current() is cluster and cluster.distributed
    return local, run()


def metric(m: MetricValue) -> tuple[Any, ...]:
    return (*m.to_dict().values(), m.method)


def assert_same_evaluation(a: Evaluation | None, b: Evaluation | None) -> None:
    assert (a is None) == (b is None)
    if a is None or b is None:
        return
    assert {k: metric(m) for k, m in a.metrics.items()} == {
        k: metric(m) for k, m in b.metrics.items()
    }
    assert np.array_equal(a.y_score, b.y_score)
    assert np.array_equal(a.confusion, b.confusion)
    assert (a.threshold, a.n_boot, a.n_boot_requested) == (
        b.threshold,
        b.n_boot,
        b.n_boot_requested,
    )
    assert repr(a.calibration_stats) == repr(b.calibration_stats)
    assert a.per_class == b.per_class


def board(result: TrainingResult) -> list[dict[str, Any]]:
    """Leaderboard rows without their wall-clock seconds (the only figure allowed to differ)."""
    return [
        {k: v for k, v in row.to_dict().items() if k != "seconds"} for row in result.leaderboard
    ]


def assert_same_training(a: TrainingResult, b: TrainingResult, data: pd.DataFrame) -> None:
    assert board(a) == board(b)
    assert a.oof_proba is not None and b.oof_proba is not None
    assert np.array_equal(a.oof_proba, b.oof_proba)
    assert (a.model.kind, a.model.threshold) == (b.model.kind, b.model.threshold)
    assert a.fold_scores == b.fold_scores
    assert_same_evaluation(a.cv, b.cv)
    assert_same_evaluation(a.test, b.test)
    assert repr(a.selection_free) == repr(b.selection_free)
    assert a.warnings == b.warnings
    assert (a.dev_index, a.test_index) == (b.dev_index, b.test_index)
    pd.testing.assert_frame_equal(
        predict(a.model, data).frame, predict(b.model, data).frame, check_exact=True
    )


@pytest.fixture(scope="module")
def wdbc() -> pd.DataFrame:
    return load_sample("wdbc").frame


@pytest.mark.slow
def test_auto_on_the_sample_is_identical_in_this_process_and_on_the_cluster(
    cluster: compute.Engine, wdbc: pd.DataFrame
) -> None:
    roles = Roles(label="diagnosis", id="case_id")
    local, remote = both(cluster, lambda: train(wdbc, roles, config=ModelConfig(model="auto")))
    assert_same_training(local, remote, wdbc)
    assert len(remote.leaderboard) == len(MODEL_KINDS)
    assert remote.cv.metrics["accuracy"].value >= 0.97
    assert remote.cv.metrics["roc_auc"].value >= 0.99
    assert remote.cv.n_boot_requested == 1000


def patients(n_patients: int, per_patient: int, n_classes: int, seed: int) -> pd.DataFrame:
    """Several rows per patient, one class per patient, a reader's score among the features."""
    rng = np.random.default_rng(seed)
    pid = np.repeat([f"P{i:03d}" for i in range(n_patients)], per_patient)
    cls = np.repeat(np.arange(n_patients) % n_classes, per_patient)
    return pd.DataFrame(
        {
            "patient": pid,
            "x1": rng.normal(size=len(pid)) + cls,
            "x2": rng.normal(size=len(pid)) - 0.5 * cls,
            "x3": rng.normal(size=len(pid)),
            "score": np.clip(cls + rng.integers(-1, 2, size=len(pid)), 0, n_classes),
            "label": np.asarray(["normal", "benign", "malignant"])[cls],
        }
    )


def test_grouped_svm_with_a_reader_is_identical(cluster: compute.Engine) -> None:
    """Patients' rows kept together, the SVM's own calibration folds grouped by patient too,
    and the model cross-validated again without the reader's score."""
    data = patients(70, 3, 2, seed=1)
    roles = Roles(label="label", id="patient", reader=("score",))
    validation = ValidationConfig(cv=3, n_boot=250)

    def run() -> TrainingResult:
        return train(
            data, roles, config=ModelConfig(model="svm"), validation=validation, positive="benign"
        )

    local, remote = both(cluster, run)
    assert_same_training(local, remote, data)
    assert local.split.grouped_by == "patient"
    assert local.without_reader is not None and remote.without_reader is not None
    assert_same_evaluation(local.without_reader.cv, remote.without_reader.cv)
    assert_same_evaluation(local.without_reader.test, remote.without_reader.test)
    assert local.without_reader.threshold == remote.without_reader.threshold


def test_grouped_multiclass_is_identical(cluster: compute.Engine) -> None:
    data = patients(60, 2, 3, seed=2)

    def run() -> TrainingResult:
        return train(
            data,
            Roles(label="label", id="patient"),
            config=ModelConfig(model="auto"),
            validation=ValidationConfig(cv=3, n_boot=150),
        )

    local, remote = both(cluster, run)
    assert_same_training(local, remote, data)
    assert local.cv.per_class is not None and len(local.cv.per_class) == 3


def development(n: int = 90, n_positive: int = 6) -> Development:
    """A rare positive class: too few positives per training fold for the SVMs' internal
    five-fold probability calibration, which scikit-learn refuses (the others fit)."""
    rng = np.random.default_rng(4)
    y = np.zeros(n, dtype=int)
    y[rng.choice(n, n_positive, replace=False)] = 1
    X = pd.DataFrame({"a": rng.normal(size=n) + 2 * y, "b": rng.normal(size=n)})
    folds = [
        (np.flatnonzero(np.arange(n) % 3 != f), np.flatnonzero(np.arange(n) % 3 == f))
        for f in range(3)
    ]
    spec = FeatureSpec(("a", "b"), ("a", "b"), (), {})
    return Development(X, y, np.arange(n), folds, spec, CleaningPlan())


def test_a_candidate_that_fails_on_the_cluster_is_reported_as_in_this_process(
    cluster: compute.Engine,
) -> None:
    dev = development()
    kinds = ("logreg", "svm", "knn")

    def run() -> tuple[Comparison, list[tuple[int, str]]]:
        seen: list[tuple[int, str]] = []
        comparison = cross_validate_candidates(
            kinds, ModelConfig(model="auto"), dev, progress=lambda d, m: seen.append((d, m))
        )
        return comparison, seen

    (local, seen_here), (remote, seen_there) = both(cluster, run)
    assert [c.kind for c in remote.candidates] == ["logreg", "knn"]
    assert remote.failures == local.failures
    assert len(remote.failures) == 1 and remote.failures[0].startswith(
        "Model 'svm' was left out of the comparison: "
    )
    for a, b in zip(local.candidates, remote.candidates, strict=True):
        assert np.array_equal(a.oof, b.oof)
        assert (a.fold_aucs, a.fold_scores) == (b.fold_aucs, b.fold_scores)
    # Progress reaches the total wherever the fits ran, failed fits included.
    assert [d for d, _ in seen_here] == [d for d, _ in seen_there] == list(range(1, 10))
    assert sorted(m for _, m in seen_here) == sorted(m for _, m in seen_there)
    assert "svm: fold 2 of 3 could not be fitted (model 2 of 3)" in [m for _, m in seen_there]
    # Asked for alone, the model's own error reaches the user, the same from the cluster.
    with inline(), pytest.raises(ValueError) as here:
        cross_validate_candidates(("svm",), ModelConfig(model="svm"), dev)
    with pytest.raises(ValueError) as there:
        cross_validate_candidates(("svm",), ModelConfig(model="svm"), dev)
    assert type(there.value) is type(here.value) and str(there.value) == str(here.value)


def test_training_progress_reaches_the_end_on_the_cluster(
    cluster: compute.Engine, wdbc: pd.DataFrame
) -> None:
    calls: list[tuple[float, str]] = []
    train(
        wdbc.iloc[::3],
        Roles(label="diagnosis", id="case_id"),
        validation=ValidationConfig(cv=2, n_boot=20),
        progress=lambda f, m: calls.append((f, m)),
    )
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    fold_messages = {m.split(" (")[0] for _, m in calls if ": fold " in m}
    assert fold_messages == {f"{k}: fold {f} of 2 done" for k in MODEL_KINDS for f in (1, 2)}


def test_the_full_forest_is_cross_validated_again_identically(cluster: compute.Engine) -> None:
    dev = development(n=120, n_positive=40)
    light = Candidate("rf", np.zeros((120, 2)), (), (), 0.0)
    local, remote = both(
        cluster, lambda: cross_validate_deployed(light, ModelConfig(model="auto"), dev)
    )
    assert np.array_equal(local.oof, remote.oof) and local.oof.any()
    assert (local.fold_aucs, local.fold_scores) == (remote.fold_aucs, remote.fold_scores)


def scores(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    groups = np.asarray([f"P{i // 3}" for i in range(n)], dtype=object)
    return y, proba, groups


@pytest.mark.parametrize("grouped", [False, True])
def test_bootstrap_auc_acc_is_identical(cluster: compute.Engine, grouped: bool) -> None:
    y, proba, groups = scores(300, 2, seed=5)
    local, remote = both(
        cluster, lambda: bootstrap_auc_acc(y, proba, groups if grouped else None, 250, 7)
    )
    assert [metric(m) for m in local] == [metric(m) for m in remote]
    assert local[0].ci95[0] < local[0].value < local[0].ci95[1]


def test_the_leaderboard_bootstraps_every_candidate_as_alone(cluster: compute.Engine) -> None:
    """``choose_model`` sends every candidate's replicates as one set of tasks; each candidate
    still gets exactly the intervals of its own :func:`bootstrap_auc_acc`."""
    y, proba, groups = scores(200, 2, seed=12)
    comparison = Comparison(
        (
            Candidate("knn", proba, (0.8, 0.9), (0.8, 0.9), 0.0),
            Candidate("logreg", np.sqrt(proba) / np.sqrt(proba).sum(axis=1)[:, None], (), (), 0.0),
        )
    )
    config = ModelConfig(model="auto")
    _, rows = choose_model(comparison, y, groups, config=config, n_boot=230)
    for row in rows:
        oof = next(c.oof for c in comparison.candidates if c.kind == row.kind)
        alone = bootstrap_auc_acc(y, oof, groups, 230, config.seed)
        assert (metric(row.roc_auc), metric(row.accuracy)) == tuple(metric(m) for m in alone)
        with inline():
            here = bootstrap_auc_acc(y, oof, groups, 230, config.seed)
        assert tuple(metric(m) for m in here) == tuple(metric(m) for m in alone)


def test_selection_free_auc_is_identical(cluster: compute.Engine) -> None:
    y, _, groups = scores(240, 2, seed=6)
    rng = np.random.default_rng(6)
    folds = [(np.flatnonzero(np.arange(240) % 4 != f), np.arange(240)[f::4]) for f in range(4)]
    candidates = []
    for kind, signal in (("logreg", 1.0), ("rf", 1.2), ("mlp", 0.3)):
        s = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(size=240))))
        candidates.append(Candidate(kind, np.column_stack([1 - s, s]), (), (), 0.0))
    comparison = Comparison(tuple(candidates))
    local, remote = both(
        cluster,
        lambda: selection_free_auc(comparison, y, groups, folds, n_boot=250, seed=3),
    )
    assert metric(local) == metric(remote)
    assert 0.5 < local.value < 1.0


@pytest.mark.parametrize(("k", "grouped"), [(2, False), (2, True), (3, True)])
def test_evaluation_bootstrap_is_identical(cluster: compute.Engine, k: int, grouped: bool) -> None:
    y, proba, groups = scores(400, k, seed=8)

    def run() -> Evaluation:
        return evaluate_scores(
            y,
            proba[:, 1] if k == 2 else proba,
            class_names=[f"c{j}" for j in range(k)],
            positive_class="c1",
            threshold=0.4,
            groups=groups if grouped else None,
            n_boot=250,
            seed=11,
        )

    local, remote = both(cluster, run)
    assert_same_evaluation(local, remote)
    assert local.n_boot_requested == 250 and local.n_boot > 200


def test_the_memory_bound_does_not_change_the_replicates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blocks are cut into pieces of at most ``_CHUNK_CELLS`` weights; the pieces draw from the
    block's generator in turn, so where they are cut never changes a replicate."""
    y, proba, groups = scores(300, 2, seed=9)
    folds = [(np.flatnonzero(np.arange(300) % 3 != f), np.arange(300)[f::3]) for f in range(3)]
    comparison = Comparison(
        (Candidate("logreg", proba, (), (), 0.0), Candidate("knn", proba[:, ::-1], (), (), 0.0))
    )

    def run() -> tuple[Any, ...]:
        ev = evaluate_scores(
            y, proba[:, 1], class_names=["a", "b"], positive_class="b", groups=groups, n_boot=230
        )
        return (
            {k: metric(m) for k, m in ev.metrics.items()},
            [metric(m) for m in bootstrap_auc_acc(y, proba, groups, 230, 1)],
            metric(selection_free_auc(comparison, y, groups, folds, n_boot=230, seed=1)),
        )

    with inline():
        whole = run()
        monkeypatch.setattr(evaluation, "_CHUNK_CELLS", 7 * 300)
        pieces = run()
    assert pieces == whole


def test_blocks_depend_on_the_replicate_count_only() -> None:
    assert evaluation._boot_blocks(250) == [(0, 100), (1, 100), (2, 50)]
    assert evaluation._boot_blocks(0) == []
    first = evaluation._block_rng(3, 0).integers(0, 1000, size=5)
    assert np.array_equal(first, evaluation._block_rng(3, 0).integers(0, 1000, size=5))
    assert not np.array_equal(first, evaluation._block_rng(3, 1).integers(0, 1000, size=5))


def test_a_fold_task_returns_the_error_instead_of_raising() -> None:
    dev = development()
    tr, va = dev.folds[0]
    task = selection.FoldTask(ModelConfig(model="svm"), 1, tr, va)
    shared = {
        "X": dev.X,
        "y": dev.y,
        "groups": None,
        "features": dev.features,
        "plan": dev.plan,
        "n_classes": 2,
    }
    failed = selection.fit_fold(task, **shared)
    assert failed.proba is None and isinstance(failed.error, ValueError)
    fitted = selection.fit_fold(replace(task, config=ModelConfig(model="logreg")), **shared)
    assert fitted.error is None and fitted.proba is not None and fitted.proba.shape == (30, 2)
