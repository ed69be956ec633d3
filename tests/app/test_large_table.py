"""A table on the server, opened from the Data page: read where heavy work runs, shown through a
sample that the page names, with exact counts over every row."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medimg_core import compute
from medimg_core.jobs import JobManager, JobState
from medimg_core.ui import jobs, state

N_ROWS = 20_000
N_PARTS = 4


def cohort(n: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    """A radiomics-like cohort: patient IDs (two rows each), a diagnosis, numeric features."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 6))
    frame = pd.DataFrame(features, columns=[f"feature_{i}" for i in range(6)])
    risk = features[:, 0] - 0.8 * features[:, 1]
    frame["diagnosis"] = np.where(risk + rng.normal(size=n) > 0.5, "malignant", "benign")
    frame.loc[frame.index % 97 == 0, "feature_2"] = np.nan
    frame.insert(0, "patient_id", [f"P{i // 2:06d}" for i in range(n)])
    return frame


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    folder = root / "cohort"
    folder.mkdir(parents=True)
    frame = cohort()
    for i, part in enumerate(np.array_split(np.arange(N_ROWS), N_PARTS)):
        frame.iloc[part].to_parquet(folder / f"part.{i}.parquet", index=False)
    private = tmp_path / "private"
    private.mkdir()
    (private / "patients-jane-doe.csv").write_text("name\nJane Doe\n")
    monkeypatch.setenv("MEDIMG_DATA_ROOTS", str(root))
    monkeypatch.setattr("medimg_core.ui.large.SAMPLE_ROWS", 5_000)
    return root


def test_no_server_table_without_data_roots(
    open_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDIMG_DATA_ROOTS", raising=False)
    at = open_app("pages/data.py")
    assert not at.exception
    assert not [b for b in at.button if b.key == "server_table_open"]


def test_a_path_outside_the_data_roots_is_one_error_naming_nothing(
    open_app: Callable[..., AppTest], data_root: Path
) -> None:
    at = open_app("pages/data.py")
    at.text_input(key="server_table_path").input("../private/patients-jane-doe.csv").run()
    at.button(key="server_table_open").click().run()
    assert not at.exception
    assert len(at.error) == 1
    assert "is not a table medimg may read" in at.error[0].value
    assert at.error[0].value.count("jane") == 1  # only the path as typed, echoed back


def test_a_parquet_folder_opens_with_exact_counts_and_a_named_sample(
    open_app: Callable[..., AppTest], data_root: Path
) -> None:
    at = open_app("pages/data.py")
    picker = at.selectbox(key="server_table_pick")
    folder = str((data_root / "cohort").resolve())
    assert f"{folder} — Parquet folder of {N_PARTS} files" in "\n".join(picker.options)
    picker.set_value(folder).run()
    at.button(key="server_table_open").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows"] == f"{N_ROWS:,}"
    assert metrics["Columns"] == "8"
    assert metrics["Partitions"] == str(N_PARTS)
    note = f"a random sample of 5,000 of {N_ROWS:,} rows"
    assert any(note in i.value for i in at.info)
    assert sum(note in c.value for c in at.caption) >= 2  # profile and preview
    (profile,) = [d.value for d in at.dataframe if "summary" in d.value.columns]
    exact = cohort()
    row = profile.set_index("column").loc["feature_2"]
    assert row["missing"] == int(exact["feature_2"].isna().sum())
    assert row["min"] == pytest.approx(exact["feature_2"].min())
    assert row["mean"] == pytest.approx(exact["feature_2"].mean())
    # The patient ID is identifying: its values are never summarised.
    assert pd.isna(profile.set_index("column").loc["patient_id", "min"])
    # Roles are proposed on the sample as for an upload; the class counts cover every row.
    assert at.selectbox(key="role_label").value == "diagnosis"
    assert any(f"Every one of the {N_ROWS:,} rows counted" in c.value for c in at.caption)
    at.button(key="confirm_roles").click().run()
    assert not at.exception
    assert any("Roles confirmed" in s.value for s in at.success)
    table = at.session_state["table"]
    assert table.format == "server" and len(table.frame) == 5_000


@pytest.fixture(scope="module")
def job_manager() -> Iterator[JobManager]:
    """One job manager on a local cluster of two worker processes for the module's jobs."""
    manager = JobManager(compute.Scheduler(local_workers=2))
    yield manager
    manager.close()


def opened(open_app: Callable[..., AppTest], data_root: Path) -> AppTest:
    """The Data page with the server folder opened and its proposed roles confirmed."""
    at = open_app("pages/data.py")
    at.text_input(key="server_table_path").input("cohort").run()
    at.button(key="server_table_open").click().run()
    at.button(key="confirm_roles").click().run()
    assert not at.exception
    return at


def test_the_whole_table_is_cleaned_and_trained_as_jobs_then_evaluated_and_explained(
    open_app: Callable[..., AppTest],
    data_root: Path,
    job_manager: JobManager,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobs, "manager", lambda: job_manager)
    at = opened(open_app, data_root)

    at.switch_page("pages/clean.py").run()
    assert not at.exception
    assert any("cleaned as a job" in i.value for i in at.info)
    at.button(key="large_clean_go").click().run()
    (job_id,) = at.session_state["large_clean_jobs"].values()
    assert job_manager.wait(job_id).state is JobState.DONE
    at.run()
    assert not at.exception
    exact = cohort()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows in"] == f"{N_ROWS:,}"
    report = at.session_state[state.CLEANING]
    assert report.n_kept + report.n_removed == N_ROWS
    assert metrics["Kept"] == f"{report.n_kept:,}"
    assert report.class_counts_before == exact["diagnosis"].value_counts().to_dict()
    assert len(report.data) <= 5_000  # only the sample's kept rows are in the server
    assert any("not stored or offered for download" in c.value for c in at.caption)

    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert at.selectbox(key="train_model").options == ["Gradient boosting (histogram)"]
    assert at.number_input(key="train_folds").value == 3
    assert at.select_slider(key="train_n_boot").value == 200
    assert any("only gradient boosting" in c.value for c in at.caption)
    at.button(key="train_go").click().run()
    assert not at.exception
    job = job_manager.wait(at.session_state[jobs.TRAIN_JOB])
    assert job.state is JobState.DONE, job.error
    at.run()
    if [b for b in at.button if b.key == "train_job_open"]:
        at.button(key="train_job_open").click().run()
    assert not at.exception
    active = at.session_state[state.ACTIVE]
    assert active.model.kind == "hgb"
    assert active.card["source"]["table_hash"] == at.session_state[state.TABLE].content_hash
    assert active.card["dataset"]["rows_in"] == N_ROWS
    assert active.card["validation"]["n_cv"] + active.card["validation"]["n_test_evaluated"] == (
        report.n_kept
    )
    assert active.cv.metrics["roc_auc"].value > 0.8

    at.switch_page("pages/evaluate.py").run()
    assert not at.exception
    at.switch_page("pages/explain.py").run()
    assert not at.exception
    assert any("SHAP computed on" in c.value and "sampled cases" in c.value for c in at.caption)
