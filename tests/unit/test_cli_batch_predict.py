"""``medimg predict`` writing a folder of parts: the same predictions with and without a
cluster, the same rows as the single CSV file, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from medimg_core.modelling.batch import MANIFEST
from medimg_core.tables.loading import load_sample
from tests.unit.test_cli import Trained, assert_one_line_error, run, trained, wdbc_csv

__all__ = ["trained"]  # the module-scoped model fixture of test_cli, trained once here


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample as a Parquet file of 100-row row groups, without its label."""
    path = tmp_path_factory.mktemp("tables") / "wdbc.parquet"
    frame = load_sample("wdbc").frame.drop(columns="diagnosis")
    frame.to_parquet(path, index=False, row_group_size=100)
    return path


def parts_of(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*"))


def test_predict_in_parts_with_a_local_cluster_equals_without(
    trained: Trained, table: Path, tmp_path: Path
) -> None:
    common = ["--explain", "2", "--abstain-ood", "--rows-per-part", "200"]
    model = str(trained.model_dir)
    status, out, err = run(["predict", model, str(table), "-o", f"{tmp_path}/here/", *common])
    assert status == 0, err
    assert "Wrote 569 prediction(s) in 3 part(s) (Parquet)" in out
    assert "computed on this process" in out
    assert "cases got no decision" in out and "unlike the training data" in out
    assert "[100%] Predicted 3 of 3 partition(s)" in err
    status, out, err = run(
        [
            "predict",
            "--scheduler",
            "local:2",
            model,
            str(table),
            "-o",
            f"{tmp_path}/there/",
            *common,
        ]
    )
    assert status == 0, err
    assert "computed on a local Dask cluster of 2 worker processes" in out
    here, there = parts_of(tmp_path / "here"), parts_of(tmp_path / "there")
    assert (
        [p.name for p in here]
        == [p.name for p in there]
        == [
            "part-00000.parquet",
            "part-00001.parquet",
            "part-00002.parquet",
        ]
    )
    for mine, theirs in zip(here, there, strict=True):
        pd.testing.assert_frame_equal(
            pd.read_parquet(mine), pd.read_parquet(theirs), check_exact=True
        )
    assert (tmp_path / "there" / MANIFEST).is_file()


def test_csv_parts_hold_the_rows_of_the_single_file(trained: Trained, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    wdbc_csv(folder / "a.csv", rows=60, diagnosis=None)
    frame = load_sample("wdbc").frame.iloc[60:100].drop(columns="diagnosis")
    frame.to_csv(folder / "b.csv", index=False)
    pd.concat([pd.read_csv(folder / "a.csv"), pd.read_csv(folder / "b.csv")]).to_csv(
        tmp_path / "all.csv", index=False
    )
    model = str(trained.model_dir)
    status, out, err = run(
        ["predict", model, str(folder), "-o", str(tmp_path / "parts"), "--format", "csv"]
    )
    assert status == 0, err
    assert "Wrote 100 prediction(s) in 2 part(s) (CSV, safe to open in a spreadsheet)" in out
    status, _, err = run(["predict", model, str(tmp_path / "all.csv"), "-o", f"{tmp_path}/one.csv"])
    assert status == 0, err
    texts = [p.read_text(encoding="utf-8") for p in parts_of(tmp_path / "parts")]
    joined = texts[0] + texts[1].split("\n", 1)[1]
    assert joined == (tmp_path / "one.csv").read_text(encoding="utf-8")


def test_predict_refuses_a_folder_holding_other_files(
    trained: Trained, table: Path, tmp_path: Path
) -> None:
    target = tmp_path / "results"
    target.mkdir()
    (target / "report.docx").write_text("keep")
    status, _, err = run(["predict", str(trained.model_dir), str(table), "-o", str(target)])
    assert_one_line_error(status, err, r"already holds other files; choose a new or empty folder")
    assert sorted(p.name for p in target.iterdir()) == ["report.docx"]


def test_missing_column_in_parts_is_one_line_and_writes_nothing(
    trained: Trained, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    wdbc_csv(folder / "a.csv", rows=20, **{"worst area": None})
    wdbc_csv(folder / "b.csv", rows=20, **{"worst area": None})
    status, _, err = run(["predict", str(trained.model_dir), str(folder), "-o", f"{tmp_path}/o/"])
    assert_one_line_error(status, err, r"lacks the feature column\(s\) 'worst area'.*Nothing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--format", "csv"], r"--format and --rows-per-part apply to predictions written as"),
        (["--partitioned"], r"sample:wdbc is a built-in sample"),
    ],
)
def test_options_that_need_a_folder_of_parts(
    trained: Trained, tmp_path: Path, extra: list[str], pattern: str
) -> None:
    target = tmp_path / "p.csv"
    status, _, err = run(
        ["predict", str(trained.model_dir), "sample:wdbc", "-o", str(target), *extra]
    )
    assert_one_line_error(status, err, pattern)
    assert not target.exists()
