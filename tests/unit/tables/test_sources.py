"""Data roots: tables are read only from folders an administrator configured, links and ``..``
resolved, and a refusal names nothing outside the roots."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medimg_core import compute
from medimg_core.errors import Cancelled, DataError
from medimg_core.tables.cleaning import CleaningPlan, clean, suggest_plan
from medimg_core.tables.roles import Roles
from medimg_core.tables.sources import (
    DATA_ROOTS_ENV,
    TableSource,
    class_counts,
    clean_server_table,
    cleaned_rows,
    data_roots,
    list_table_sources,
    resolve_table_source,
    sample_note,
    summarise_source,
    with_sample,
)

REFUSED = "is not a table medimg may read"


def frame(n: int = 5, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {"x": range(start, start + n), "y": ["a", "b"] * (n // 2) + ["a"] * (n % 2)}
    )


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A data root with a CSV, a Parquet dataset folder and a CSV folder; a private folder beside
    it holding a named file."""
    root = tmp_path / "data"
    (root / "dataset").mkdir(parents=True)
    frame().to_csv(root / "cases.csv", index=False)
    for i in range(3):
        frame(start=5 * i).to_parquet(root / "dataset" / f"part.{i}.parquet")
    (root / "dataset" / "_SUCCESS").write_text("")
    (root / "csvs").mkdir()
    for i in range(2):
        frame(start=5 * i).to_csv(root / "csvs" / f"site{i}.csv", index=False)
    private = tmp_path / "private"
    private.mkdir()
    frame().to_csv(private / "patient-jane-doe.csv", index=False)
    return root, private


def test_data_roots_come_from_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.setenv(
        DATA_ROOTS_ENV, os.pathsep.join([str(a), "", str(tmp_path / "gone"), str(b), str(a)])
    )
    assert data_roots() == (a.resolve(), b.resolve())
    monkeypatch.delenv(DATA_ROOTS_ENV)
    assert data_roots() == ()


def test_without_roots_the_core_refuses(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with pytest.raises(DataError, match=r"no data folder is configured.*MEDIMG_DATA_ROOTS"):
        resolve_table_source(root / "cases.csv", ())


def test_files_and_folders_inside_a_root_open_by_full_or_relative_path(
    layout: tuple[Path, Path],
) -> None:
    root, _ = layout
    single = resolve_table_source(root / "cases.csv", (root,))
    assert single.format == "csv" and single.files == ((root / "cases.csv").resolve(),)
    assert single.describe().startswith("CSV file, ")
    dataset = resolve_table_source("dataset", (root,))
    assert dataset.format == "parquet"
    assert [f.name for f in dataset.files] == ["part.0.parquet", "part.1.parquet", "part.2.parquet"]
    assert dataset.describe().startswith("Parquet folder of 3 files, ")
    assert dataset.n_bytes == sum(f.stat().st_size for f in dataset.files)
    csvs = resolve_table_source(str(root / "csvs") + "/", (root,))
    assert csvs.format == "csv" and len(csvs.files) == 2


def test_outside_dot_dot_and_missing_paths_get_one_message_naming_nothing(
    layout: tuple[Path, Path],
) -> None:
    root, private = layout
    asked = [
        private / "patient-jane-doe.csv",
        str(private),
        root / ".." / "private" / "patient-jane-doe.csv",
        "../private/patient-jane-doe.csv",
        root / "nothing-here.csv",
        "nothing-here",
        "",
    ]
    messages = set()
    for path in asked:
        with pytest.raises(DataError, match=REFUSED) as caught:
            resolve_table_source(path, (root,))
        # The path asked for is echoed back; nothing else about it is told.
        text = str(caught.value).replace(f"'{os.fspath(path).strip()}'", "PATH")
        assert "jane" not in text
        messages.add(text)
    assert len(messages) == 1


def test_a_link_out_of_the_root_is_refused(layout: tuple[Path, Path]) -> None:
    root, private = layout
    (root / "innocent.csv").symlink_to(private / "patient-jane-doe.csv")
    (root / "innocent-folder").symlink_to(private, target_is_directory=True)
    for asked in (
        "innocent.csv",
        "innocent-folder",
        root / "innocent-folder" / "patient-jane-doe.csv",
    ):
        with pytest.raises(DataError, match=REFUSED) as caught:
            resolve_table_source(asked, (root,))
        assert "jane" not in str(caught.value).replace(str(asked), "")


def test_a_folder_with_links_out_is_refused_without_naming_them(layout: tuple[Path, Path]) -> None:
    root, private = layout
    (root / "dataset" / "part.9.parquet").symlink_to(private / "patient-jane-doe.csv")
    with pytest.raises(DataError, match="holds 1 link to files outside") as caught:
        resolve_table_source("dataset", (root,))
    assert "jane" not in str(caught.value)


def test_a_link_inside_the_roots_is_followed(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "alias.csv").symlink_to(root / "cases.csv")
    assert resolve_table_source("alias.csv", (root,)).path == (root / "cases.csv").resolve()


def test_folders_that_are_not_one_table_are_explained(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "empty").mkdir()
    (root / "empty" / "notes.md").write_text("nothing")
    with pytest.raises(DataError, match="holds no table"):
        resolve_table_source("empty", (root,))
    frame().to_parquet(root / "csvs" / "extra.parquet")
    with pytest.raises(DataError, match="mixes CSV and Parquet"):
        resolve_table_source("csvs", (root,))


def test_the_fingerprint_changes_when_a_file_changes(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    before = resolve_table_source("dataset", (root,))
    assert resolve_table_source("dataset", (root,)).fingerprint == before.fingerprint
    frame(7).to_parquet(root / "dataset" / "part.1.parquet")
    os.utime(root / "dataset" / "part.1.parquet", ns=(1, 1))
    assert resolve_table_source("dataset", (root,)).fingerprint != before.fingerprint


def test_listing_finds_files_and_dataset_folders_but_not_links_out(
    layout: tuple[Path, Path],
) -> None:
    root, private = layout
    (root / "innocent.csv").symlink_to(private / "patient-jane-doe.csv")
    listed = {str(s.path.relative_to(root.resolve())) for s in list_table_sources((root,))}
    assert {"cases.csv", "dataset", "csvs", "dataset/part.0.parquet", "csvs/site0.csv"} <= listed
    assert not any("jane" in p or "innocent" in p for p in listed)
    assert len(list_table_sources((root,), limit=2)) == 2


def test_a_source_round_trips_through_plain_values(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    source = resolve_table_source("dataset", (root,))
    assert type(source).from_dict(source.to_dict()) == source


@pytest.fixture
def cohort_source(tmp_path: Path) -> tuple[TableSource, pd.DataFrame]:
    """A Parquet folder of 4 parts (2,002 rows: one missing label, two repeated records)."""
    rng = np.random.default_rng(0)
    n = 2_000
    table = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"f{i}" for i in range(4)])
    table["diagnosis"] = np.where(table["f0"] + rng.normal(size=n) > 0, "malignant", "benign")
    table.loc[::37, "f2"] = np.nan
    table.insert(0, "patient_id", [f"P{i // 2:05d}" for i in range(n)])
    table.loc[5, "diagnosis"] = None
    table = pd.concat([table, table.iloc[[10, 11]]], ignore_index=True)
    root = tmp_path / "root"
    (root / "cohort").mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(table)), 4)):
        table.iloc[part].to_parquet(root / "cohort" / f"part.{i}.parquet", index=False)
    return resolve_table_source("cohort", (root,)), table


ROLES = Roles(label="diagnosis", id="patient_id")


def test_a_summary_counts_every_row_and_samples_reproducibly(
    cohort_source: tuple[TableSource, pd.DataFrame],
) -> None:
    source, table = cohort_source
    summary = summarise_source(source, sample_size=300, seed=3)
    assert (summary.n_rows, summary.n_columns, summary.n_partitions) == (len(table), 6, 4)
    assert summary.sample_note() == f"Shown: a random sample of 300 of {len(table):,} rows."
    assert summary.sampled and len(summary.sample) == 300
    again = summarise_source(source, sample_size=300, seed=3)
    pd.testing.assert_frame_equal(summary.sample, again.sample, check_exact=True)
    pd.testing.assert_frame_equal(
        summary.sample.reset_index(drop=True),
        table.iloc[summary.sample.index].reset_index(drop=True),
        check_exact=True,
        check_dtype=False,
    )
    profile = summary.exact_profile(hidden=("patient_id",)).set_index("column")
    assert profile.loc["f2", "missing"] == table["f2"].isna().sum()
    assert profile.loc["f1", "mean"] == pytest.approx(table["f1"].mean())
    assert profile.loc["f1", "max"] == table["f1"].max()
    assert np.isnan(profile.loc["patient_id", "min"])
    counts = class_counts(summary.table, "diagnosis")
    assert counts == {
        **table["diagnosis"].value_counts().to_dict(),
        "(missing)": 1,
    }
    assert sample_note(10, 10) == "Shown: all 10 rows."


def test_cleaning_a_server_table_matches_cleaning_it_in_memory(
    cohort_source: tuple[TableSource, pd.DataFrame],
) -> None:
    source, _ = cohort_source
    summary = summarise_source(source, sample_size=500)
    plan = suggest_plan(summary.sample, ROLES)
    in_memory = clean(summary.table.frame.compute(), ROLES, plan)
    seen: list[tuple[float, str]] = []
    report = clean_server_table(
        summary.table, ROLES, plan, progress=lambda f, m: seen.append((f, m))
    )
    assert report.n_kept == in_memory.n_kept and report.n_kept + report.n_removed == report.n_input
    assert report.counts == in_memory.counts
    assert report.counts["missing label"] == 1 and report.counts["duplicate record"] == 2
    pd.testing.assert_frame_equal(report.removed, in_memory.removed, check_exact=True)
    assert report.class_counts_after == in_memory.class_counts_after
    assert len(report.data) == 0
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0 < fractions[-1] < 1
    assert "Cleaning: pass 1" in seen[0][1]
    rows, again = cleaned_rows(summary.table, ROLES, plan)
    pd.testing.assert_frame_equal(rows, in_memory.data, check_exact=True)
    assert again.n_kept == len(rows)
    shown = with_sample(report, summary.sample)
    assert shown.n_kept == report.n_kept and shown.sample_rows == 500
    assert not shown.data.index.isin(report.removed.index).any()


def test_cancelling_a_server_cleaning_leaves_nothing_behind(
    cohort_source: tuple[TableSource, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    source, _ = cohort_source
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    summary = summarise_source(source, sample_size=100)

    def stop(fraction: float, message: str) -> None:
        if fraction > 0.3:
            raise Cancelled("Stopped at your request; nothing was saved.")

    with pytest.raises(Cancelled):
        clean_server_table(summary.table, ROLES, CleaningPlan(), progress=stop)
    with pytest.raises(Cancelled):
        cleaned_rows(summary.table, ROLES, CleaningPlan(), progress=stop)
    assert list(scratch.iterdir()) == []


def test_server_tables_read_the_same_on_a_local_cluster(
    cohort_source: tuple[TableSource, pd.DataFrame],
) -> None:
    source, _ = cohort_source
    here = summarise_source(source, sample_size=400, seed=1)
    plan = suggest_plan(here.sample, ROLES)
    rows_here, _ = cleaned_rows(here.table, ROLES, plan)
    with compute.running_on(compute.Scheduler(local_workers=2)):
        there = summarise_source(source, sample_size=400, seed=1)
        rows_there, report_there = cleaned_rows(there.table, ROLES, plan)
    pd.testing.assert_frame_equal(here.sample, there.sample, check_exact=True)
    pd.testing.assert_frame_equal(here.exact_profile(), there.exact_profile(), check_exact=True)
    pd.testing.assert_frame_equal(rows_here, rows_there, check_exact=True)
    assert report_there.n_kept == len(rows_there)
