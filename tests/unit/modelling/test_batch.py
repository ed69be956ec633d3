"""Batch prediction over partitions: the parts equal ``predict`` on the whole table, exactly,
in this process and on a local Dask cluster; CSV parts are stamped and formula-safe; a failed or
cancelled run leaves nothing behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from medimg_core import compute
from medimg_core.errors import Cancelled, ConfigError, SchemaError
from medimg_core.modelling.batch import (
    MANIFEST,
    BatchPrediction,
    is_prediction_folder,
    predict_partitioned,
)
from medimg_core.modelling.models import MedimgModel
from medimg_core.modelling.prediction import Abstention, predict, stamp_export
from medimg_core.modelling.training import TrainingResult
from medimg_core.privacy import to_safe_csv
from medimg_core.tables.loading import load_table

OPTIONS = {"explain_k": 3, "abstain_ood": True, "abstain_band": (0.4, 0.6)}
STAMP = {"run_id": "run-1", "model_sha256": "abc123"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[compute.Engine]:
    with compute.running_on(compute.Scheduler(local_workers=2)) as engine:
        yield engine


@pytest.fixture(scope="module")
def model(trained: TrainingResult) -> MedimgModel:
    return trained.model


@pytest.fixture(scope="module")
def cases(wdbc: pd.DataFrame) -> pd.DataFrame:
    """The sample without its label, with some cases made unusual (flagged, abstained)."""
    frame = wdbc.drop(columns="diagnosis").copy()
    frame.loc[frame.index[::50], "worst area"] = frame["worst area"].max() * 3
    return frame


def csv_folder(frame: pd.DataFrame, folder: Path, sizes: tuple[int, ...]) -> Path:
    folder.mkdir(parents=True)
    start = 0
    for i, size in enumerate(sizes):
        frame.iloc[start : start + size].to_csv(folder / f"part{i}.csv", index=False)
        start += size
    frame.iloc[start:].to_csv(folder / f"part{len(sizes)}.csv", index=False)
    return folder


def parquet_file(frame: pd.DataFrame, path: Path, row_group: int = 100) -> Path:
    frame.to_parquet(path, index=False, row_group_size=row_group)
    return path


def expected(model: MedimgModel, whole: pd.DataFrame) -> pd.DataFrame:
    """What ``medimg predict`` exports for the whole table in one piece."""
    out = predict(
        model,
        whole,
        explain_top=OPTIONS["explain_k"],
        abstain=Abstention(ood=True, band=(0.4, 0.6)),
    )
    return stamp_export(
        out.frame,
        threshold=out.threshold,
        positive_class=out.positive_class,
        **STAMP,
    )


def read_parts(result: BatchPrediction) -> pd.DataFrame:
    assert result.parts, "no part was written"
    if result.format == "csv":
        frames = [pd.read_csv(result.output / name) for name in result.parts]
    else:
        frames = [pd.read_parquet(result.output / name) for name in result.parts]
    return pd.concat(frames, ignore_index=True)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_predict_does_not_depend_on_how_the_table_is_cut(
    model: MedimgModel, cases: pd.DataFrame
) -> None:
    whole = predict(model, cases, explain_top=3).frame
    # One row at a time over the first 40 rows (a part of one row is the edge case; all 500
    # one by one took most of a minute), then whole tables cut in parts of 33 and 100.
    for size, rows in ((1, 40), (33, len(cases)), (100, len(cases))):
        parts = [
            predict(
                model, cases.iloc[s : min(s + size, rows)], explain_top=3, first_row=s + 1
            ).frame
            for s in range(0, rows, size)
        ]
        pd.testing.assert_frame_equal(
            pd.concat(parts, ignore_index=True), whole.iloc[:rows], check_exact=True
        )


def test_csv_folder_parts_equal_predict_on_the_whole_table(
    model: MedimgModel, cases: pd.DataFrame, tmp_path: Path
) -> None:
    folder = csv_folder(cases, tmp_path / "in", (200, 150))
    result = predict_partitioned(model, folder, tmp_path / "out", **OPTIONS, **STAMP)
    whole = pd.concat(
        [load_table(folder / f"part{i}.csv").frame for i in range(3)], ignore_index=True
    )
    reference = expected(model, whole)
    pd.testing.assert_frame_equal(read_parts(result), reference, check_exact=True)
    assert result.parts == ("part-00000.parquet", "part-00001.parquet", "part-00002.parquet")
    assert (result.rows, result.partitions) == (len(cases), 3)
    assert result.ood_flagged == int(reference["ood_flag"].sum()) > 0
    assert result.abstained == int((reference["decision"] == "abstained").sum()) > 0
    assert result.positives == int((reference["decision"] == "malignant").sum())
    assert result.where == "this process"
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["rows"] == len(cases) and manifest["model_sha256"] == "abc123"
    assert any("no decision" in note for note in result.notes)
    assert leftovers(tmp_path) == []


def test_rows_without_an_id_are_numbered_as_in_the_whole_table(
    model: MedimgModel, cases: pd.DataFrame, tmp_path: Path
) -> None:
    frame = cases.drop(columns="case_id")
    source = parquet_file(frame, tmp_path / "cases.parquet", row_group=64)
    result = predict_partitioned(
        model, source, tmp_path / "out", explain_k=2, rows_per_partition=128, **STAMP
    )
    assert result.partitions == 5
    got = read_parts(result)
    assert got["row"].tolist() == list(range(1, len(frame) + 1))
    reference = predict(model, pd.read_parquet(source), explain_top=2)
    pd.testing.assert_frame_equal(
        got.drop(columns=["run_id", "model_sha256", "threshold", "positive_class"]),
        reference.frame.drop(columns="threshold"),
        check_exact=True,
    )


def test_parts_on_a_local_cluster_equal_this_process(
    model: MedimgModel, cases: pd.DataFrame, tmp_path: Path, cluster: compute.Engine
) -> None:
    source = parquet_file(cases, tmp_path / "cases.parquet", row_group=50)
    with compute.running_on(None) as engine:
        assert engine.distributed
        remote = predict_partitioned(
            model, source, tmp_path / "remote", rows_per_partition=100, **OPTIONS, **STAMP
        )
    assert "2 worker processes" in remote.where
    with compute.running_on("") as engine:
        assert not engine.distributed
        local = predict_partitioned(
            model, source, tmp_path / "local", rows_per_partition=100, **OPTIONS, **STAMP
        )
    assert remote.parts == local.parts and len(remote.parts) == 6
    got = read_parts(remote)
    pd.testing.assert_frame_equal(got, read_parts(local), check_exact=True)
    pd.testing.assert_frame_equal(got, expected(model, pd.read_parquet(source)), check_exact=True)
    for name in remote.parts:
        assert (tmp_path / "remote" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_csv_parts_are_stamped_and_safe_in_a_spreadsheet(
    model: MedimgModel, cases: pd.DataFrame, tmp_path: Path, cluster: compute.Engine
) -> None:
    frame = cases.copy()
    frame["case_id"] = [f'=HYPERLINK("http://x","{i}")' for i in range(len(frame))]
    frame.loc[frame.index[1], "case_id"] = "+SUM(A1:A9)"
    folder = csv_folder(frame, tmp_path / "in", (300,))
    result = predict_partitioned(
        model, folder, tmp_path / "out", output_format="csv", **OPTIONS, **STAMP
    )
    assert result.parts == ("part-00000.csv", "part-00001.csv")
    texts = [(result.output / name).read_text(encoding="utf-8") for name in result.parts]
    header = texts[0].splitlines()[0]
    assert header.startswith("run_id,model_sha256,threshold,positive_class,case_id,")
    assert all(text.splitlines()[0] == header for text in texts)
    got = read_parts(result)
    assert got["case_id"].str.startswith("'=").sum() == len(frame) - 1
    assert got.loc[1, "case_id"] == "'+SUM(A1:A9)"
    assert set(got["run_id"]) == {"run-1"} and set(got["model_sha256"]) == {"abc123"}
    assert set(got["positive_class"]) == {"malignant"}
    # The parts, one header kept, are byte for byte the single CSV file of the whole table.
    whole = pd.concat(
        [load_table(folder / f"part{i}.csv").frame for i in range(2)], ignore_index=True
    )
    joined = texts[0] + "".join(text.split("\n", 1)[1] for text in texts[1:])
    assert joined.encode("utf-8") == to_safe_csv(expected(model, whole))


@pytest.mark.parametrize("where", ["", None])
def test_cancelled_run_leaves_no_output_folder(
    model: MedimgModel,
    cases: pd.DataFrame,
    tmp_path: Path,
    cluster: compute.Engine,
    where: str | None,
) -> None:
    source = parquet_file(cases, tmp_path / "cases.parquet")
    asked: list[int] = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 2

    with compute.running_on(where) as engine, pytest.raises(Cancelled, match="nothing was saved"):
        assert engine.distributed == (where is None)
        predict_partitioned(
            model, source, tmp_path / "out", rows_per_partition=100, cancelled=cancelled
        )
    assert len(asked) == 3
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_missing_column_is_one_schema_error_before_anything_is_written(
    model: MedimgModel, cases: pd.DataFrame, tmp_path: Path, cluster: compute.Engine
) -> None:
    folder = csv_folder(cases.drop(columns="worst area"), tmp_path / "in", (300,))
    calls: list[tuple[int, int]] = []
    with pytest.raises(SchemaError, match=r"lacks the feature column\(s\) 'worst area'"):
        predict_partitioned(
            model, folder, tmp_path / "out", progress=lambda d, t: calls.append((d, t))
        )
    assert calls == []
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_text_in_a_numeric_column_fails_on_the_cluster_without_leaving_parts(
    model: MedimgModel, cases: pd.DataFrame, tmp_path: Path, cluster: compute.Engine
) -> None:
    frame = cases.copy()
    frame["mean radius"] = frame["mean radius"].astype(str)
    frame.loc[frame.index[400:], "mean radius"] = "large"
    source = parquet_file(frame, tmp_path / "cases.parquet")
    with pytest.raises(SchemaError, match="'mean radius' should hold numbers"):
        predict_partitioned(model, source, tmp_path / "out", rows_per_partition=100)
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_an_earlier_prediction_folder_is_replaced_other_folders_are_refused(
    model: MedimgModel, cases: pd.DataFrame, tmp_path: Path
) -> None:
    source = parquet_file(cases, tmp_path / "cases.parquet", row_group=300)
    out = tmp_path / "out"
    first = predict_partitioned(model, source, out, rows_per_partition=300)
    assert is_prediction_folder(out) and len(first.parts) == 2
    second = predict_partitioned(model, source, out, rows_per_partition=1000)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "part-00000.parquet"]
    assert second.rows == first.rows
    assert leftovers(tmp_path) == []

    (tmp_path / "empty").mkdir()
    predict_partitioned(model, source, tmp_path / "empty")
    assert is_prediction_folder(tmp_path / "empty")

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="already holds other files"):
        predict_partitioned(model, source, other)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="is a file"):
        predict_partitioned(model, source, other / "notes.txt")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"output_format": "xlsx"}, "Unknown prediction format 'xlsx'"),
        ({"abstain_band": (0.6, 0.8)}, "must contain the threshold"),
        ({"threshold": 1.5}, "between 0 and 1"),
    ],
)
def test_bad_options_are_refused_before_reading(
    model: MedimgModel, tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        predict_partitioned(model, tmp_path / "missing.parquet", tmp_path / "out", **options)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_manifest_lists_what_was_written(
    model: MedimgModel, cases: pd.DataFrame, tmp_path: Path
) -> None:
    source = parquet_file(cases, tmp_path / "cases.parquet")
    result = predict_partitioned(model, source, tmp_path / "out", **STAMP)
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["parts"] == list(result.parts)
    assert manifest["run_id"] == "run-1"
    assert manifest["computed_on"] == result.where
    assert manifest["notes"] == list(result.notes)
    assert json.loads(json.dumps(result.to_dict()))["rows"] == len(cases)
