"""Partitioned loading and cleaning give exactly what the in-memory loader and ``clean`` give."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medimg_core import compute
from medimg_core.errors import DataError
from medimg_core.tables.cleaning import CleaningPlan, clean
from medimg_core.tables.loading import MISSING_TOKENS, load_table
from medimg_core.tables.partitioned import (
    PartitionedTable,
    clean_partitioned,
    open_partitioned,
    profile_partitioned,
    sample_rows,
)
from medimg_core.tables.roles import Roles

ROLES = Roles(label="diagnosis", id="patient_id", quality="quality")


def messy_lines(n: int = 240, seed: int = 0) -> list[str]:
    """CSV rows with missing tokens, repeats, conflicts, out-of-range values and bad quality."""
    rng = np.random.default_rng(seed)
    tokens = ["NA", "?", " n/a ", "", "null", "-"]
    rows = []
    for i in range(n):
        pid = f"P{i:04d}" if rng.random() > 0.1 else rng.choice(tokens)
        size = f"{rng.normal(20, 4):.3f}" if rng.random() > 0.05 else rng.choice(tokens)
        texture = f"{rng.normal(10, 2):.4f}"
        score = str(int(rng.integers(1, 6)))
        age = str(int(rng.integers(30, 80))) if rng.random() > 0.05 else "unknown"
        quality = rng.choice(["good", "good", "good", " OK ", "bad", ""])
        label = rng.choice(["malignant", "benign", "benign"]) if rng.random() > 0.04 else "NA"
        rows.append([pid, size, texture, score, age, quality, label])
    rows[7][1] = "250.0"  # out of range
    rows[8][1] = "900"  # outlier and out of range
    rows[9][2] = "95.5"  # outlier
    # Exact repeats of early rows late in the table (they land in other files).
    rows[200] = list(rows[3])
    rows[201] = list(rows[4])
    rows[230] = list(rows[3])
    # The same patient again with the same features and the other label: a contradiction.
    rows[202] = list(rows[5])
    rows[202][6] = "benign" if rows[5][6] == "malignant" else "malignant"
    # Different patients with identical features and different labels: a conflict.
    rows[203] = list(rows[6])
    rows[203][0] = "P9999"
    rows[203][6] = "benign" if rows[6][6] == "malignant" else "malignant"
    # Rows without an ID repeated elsewhere.
    rows[210] = ["NA", *rows[11][1:]]
    rows[211] = ["NA", *rows[11][1:]]
    rows[120] = [""] * 7  # an empty row
    header = "patient_id,size,texture,score,age,quality,diagnosis"
    return [header, *(",".join(r) for r in rows)]


def write_parts(lines: list[str], folder: Path, parts: int) -> list[Path]:
    """The body split over ``parts`` CSV files, each with the header."""
    folder.mkdir(parents=True, exist_ok=True)
    header, body = lines[0], lines[1:]
    bounds = np.linspace(0, len(body), parts + 1).astype(int)
    paths = []
    for i in range(parts):
        path = folder / f"part{i}.csv"
        path.write_text("\n".join([header, *body[bounds[i] : bounds[i + 1]]]) + "\n")
        paths.append(path)
    return paths


def whole(table: PartitionedTable) -> pd.DataFrame:
    import dask

    with dask.config.set({"dataframe.convert-string": False}):
        return dask.compute(table.frame, scheduler="sync")[0]


def reference(lines: list[str]) -> pd.DataFrame:
    return load_table(("\n".join(lines) + "\n").encode(), name="t.csv").frame


def assert_same_cleaning(tmp: Path, table: PartitionedTable, ref_frame: pd.DataFrame, **plan: Any):
    roles = plan.pop("roles", ROLES)
    expected = clean(ref_frame, roles, CleaningPlan(**plan))
    out = clean_partitioned(table, roles, CleaningPlan(**plan), tmp / "out")
    kept = pd.read_parquet(out.output_dir)
    pd.testing.assert_frame_equal(kept, expected.data, check_exact=True, check_index_type=False)
    assert out.n_kept + out.n_removed == out.n_input == len(ref_frame)
    pd.testing.assert_frame_equal(
        out.removed, expected.removed, check_exact=True, check_index_type=False
    )
    for name in ("duplicates", "across_split", "flags"):
        pd.testing.assert_frame_equal(
            getattr(out, name).reset_index(drop=True),
            getattr(expected, name).reset_index(drop=True),
            check_exact=True,
            check_index_type=False,
            check_dtype=False,
        )
    for name in ("conflicts", "contradictions"):
        ours, theirs = getattr(out, name), getattr(expected, name)
        assert len(ours) == len(theirs)
        if len(theirs):
            pd.testing.assert_frame_equal(ours, theirs, check_exact=True, check_index_type=False)
    assert out.counts == expected.counts
    assert out.class_counts_before == expected.class_counts_before
    assert out.class_counts_after == expected.class_counts_after
    assert out.removed_by_class == expected.removed_by_class
    assert out.missing_by_column == expected.missing_by_column
    assert out.dropped_columns == expected.dropped_columns
    assert out.notes == expected.notes
    ours_dict, theirs_dict = out.to_dict(), expected.to_dict()
    for key in ("output", "computed_on"):
        ours_dict.pop(key)
    assert ours_dict == theirs_dict
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[compute.Engine]:
    with compute.running_on(compute.Scheduler(local_workers=2)) as engine:
        yield engine


@pytest.mark.parametrize("parts", [3, 5])
def test_csv_parts_read_like_the_loader(tmp_path: Path, parts: int) -> None:
    lines = messy_lines()
    table = open_partitioned(write_parts(lines, tmp_path, parts)[0].parent)
    expected = reference(lines)
    got = whole(table)
    assert table.n_partitions == parts
    assert table.n_rows == len(expected)
    assert list(got.index) == list(range(len(expected)))
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected, check_exact=True)
    assert table.notes == load_table(("\n".join(lines) + "\n").encode(), name="t.csv").notes


@pytest.mark.parametrize(
    "plan",
    [
        {},
        {"missing": "drop", "ranges": {"size": (0.0, 100.0)}, "range_action": "drop"},
        {"duplicates": "drop"},
        {"duplicates": "keep", "ranges": {"texture": (None, 20.0)}},
    ],
)
def test_csv_cleaning_matches_clean(tmp_path: Path, plan: dict[str, Any]) -> None:
    lines = messy_lines()
    table = open_partitioned(str(write_parts(lines, tmp_path / "in", 4)[0].parent / "*.csv"))
    out = assert_same_cleaning(tmp_path, table, reference(lines), **plan)
    assert out.counts["duplicate record"] or plan.get("duplicates") == "keep"
    assert len(out.conflicts) and len(out.contradictions) and len(out.flags)
    assert len(out.parts) == 4


def test_without_id_rows_repeat_across_files(tmp_path: Path) -> None:
    lines = messy_lines(seed=3)
    table = open_partitioned(write_parts(lines, tmp_path / "in", 3)[0].parent)
    roles = Roles(label="diagnosis", quality="quality", exclude=("patient_id",))
    out = assert_same_cleaning(tmp_path, table, reference(lines), roles=roles)
    assert (out.duplicates["kind"] == "no ID").any()


@pytest.mark.parametrize("where", ["inline", "cluster"])
@pytest.mark.parametrize("repeats", ["every row", "none"])
def test_only_rows_with_a_repeated_hash_are_compared(
    tmp_path: Path, request: pytest.FixtureRequest, where: str, repeats: str
) -> None:
    # Every row copied into a later file (every row is a candidate), or no row repeated at all
    # (every hash bucket empty): the row-comparing rules give what `clean` gives either way.
    lines = messy_lines(seed=4)
    body = lines[1:150]
    if repeats == "every row":
        body = [*body, *body[::-1]]
    lines = [lines[0], *body]
    folder = write_parts(lines, tmp_path / "in", 4)[0].parent
    if where == "cluster":
        request.getfixturevalue("cluster")
    with compute.running_on(None if where == "cluster" else "inline") as engine:
        assert engine.distributed == (where == "cluster")
        out = assert_same_cleaning(tmp_path, open_partitioned(folder), reference(lines))
    if repeats == "every row":
        assert out.counts["duplicate record"] >= 140
    else:
        assert out.duplicates.empty and out.conflicts.empty


def test_parquet_folder_matches_clean(tmp_path: Path) -> None:
    frame = reference(messy_lines(seed=1))
    folder = tmp_path / "pq"
    folder.mkdir()
    for i, bounds in enumerate([(0, 70), (70, 160), (160, len(frame))]):
        frame.iloc[slice(*bounds)].to_parquet(folder / f"part.{i}.parquet", index=False)
    single = tmp_path / "single.parquet"
    frame.to_parquet(single, index=False)
    table = open_partitioned(folder)
    expected = load_table(single).frame
    pd.testing.assert_frame_equal(whole(table).reset_index(drop=True), expected, check_exact=True)
    assert_same_cleaning(tmp_path, table, expected, ranges={"size": (0.0, 100.0)})


def test_predefined_split_twins_and_limits_from_development_rows(tmp_path: Path) -> None:
    frame = reference(messy_lines(seed=5))
    frame["split"] = pd.Series(
        np.where(np.arange(len(frame)) % 4 == 0, "test", "train"), dtype="str"
    )
    twin = frame.iloc[[8]].copy()
    twin["split"] = "train"
    frame = pd.concat([frame, twin], ignore_index=True)  # row 8 is a test row
    folder = tmp_path / "pq"
    folder.mkdir()
    for i, bounds in enumerate([(0, 100), (100, len(frame))]):
        frame.iloc[slice(*bounds)].to_parquet(folder / f"p{i}.parquet", index=False)
    table = open_partitioned(folder)
    roles = Roles(label="diagnosis", id="patient_id", quality="quality", exclude=("split",))
    out = assert_same_cleaning(tmp_path, table, frame, roles=roles)
    assert len(out.across_split) >= 1


def test_same_result_on_a_local_cluster(tmp_path: Path, cluster: compute.Engine) -> None:
    lines = messy_lines(seed=2)
    folder = write_parts(lines, tmp_path / "in", 4)[0].parent
    plan = CleaningPlan(ranges={"size": (0.0, 100.0)}, range_action="drop")
    on_cluster = clean_partitioned(open_partitioned(folder), ROLES, plan, tmp_path / "a")
    assert "Dask" in on_cluster.where
    with compute.running_on("inline"):
        inline = clean_partitioned(open_partitioned(folder), ROLES, plan, tmp_path / "b")
    assert inline.where == "this process"
    pd.testing.assert_frame_equal(
        pd.read_parquet(on_cluster.output_dir), pd.read_parquet(inline.output_dir), check_exact=True
    )
    pd.testing.assert_frame_equal(on_cluster.removed, inline.removed, check_exact=True)
    pd.testing.assert_frame_equal(on_cluster.flags, inline.flags, check_exact=True)
    same = {"computed_on": "", "output": ""}
    assert on_cluster.to_dict() | same == inline.to_dict() | same
    assert_same_cleaning(tmp_path / "c", open_partitioned(folder), reference(lines))


def test_profile_and_sample(tmp_path: Path) -> None:
    lines = messy_lines()
    table = open_partitioned(write_parts(lines, tmp_path, 3)[0].parent)
    expected = reference(lines)
    profile = profile_partitioned(table, label="diagnosis")
    by_column = profile.columns.set_index("column")
    for column in expected.columns:
        assert by_column.loc[column, "missing"] == expected[column].isna().sum()
    assert by_column.loc["size", "max"] == expected["size"].max()
    assert by_column.loc["size", "mean"] == pytest.approx(expected["size"].mean(), rel=1e-12)
    counts = dict(zip(profile.class_counts["label"], profile.class_counts["rows"], strict=True))
    assert counts == expected["diagnosis"].value_counts().to_dict()
    first = sample_rows(table, 25, seed=4)
    again = sample_rows(table, 25, seed=4)
    assert len(first) == 25 and first.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(
        first.reset_index(drop=True), expected.loc[first.index].reset_index(drop=True)
    )


def test_different_headers_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "b.csv").write_text("x,z\n1,2\n")
    with pytest.raises(DataError, match=r"different columns.*same header"):
        open_partitioned(tmp_path)


def test_failed_cleaning_leaves_no_folder(tmp_path: Path) -> None:
    lines = messy_lines()
    table = open_partitioned(write_parts(lines, tmp_path / "in", 3)[0].parent)
    with pytest.raises(DataError, match="Label column 'nope'"):
        clean_partitioned(table, Roles(label="nope"), CleaningPlan(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_cli_cleans_a_folder_in_partitions(tmp_path: Path, home: Path) -> None:
    import contextlib
    import io
    import json

    from medimg_core.cli import main

    lines = messy_lines()
    folder = write_parts(lines, tmp_path / "in", 3)[0].parent
    (tmp_path / "all.csv").write_text("\n".join(lines) + "\n")
    results = {}
    for name, data in (("parts", str(folder)), ("single", str(tmp_path / "all.csv"))):
        out = io.StringIO()
        argv = ["clean", data, "--label", "diagnosis", "--id", "patient_id"]
        argv += [
            "-o",
            str(tmp_path / f"{name}.parquet"),
            "--report",
            str(tmp_path / f"{name}.json"),
        ]
        with contextlib.redirect_stdout(out), compute.running_on("inline"):
            assert main(argv) == 0
        results[name] = (out.getvalue(), json.loads((tmp_path / f"{name}.json").read_text()))
    printed, report = results["parts"]
    assert "in 3 partition(s) on this process (it is a folder or a set of files)" in printed
    assert "partitioned Parquet folder" in printed
    assert (tmp_path / "parts.parquet").is_dir() and (tmp_path / "single.parquet").is_file()
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "parts.parquet"),
        pd.read_parquet(tmp_path / "single.parquet"),
        check_exact=True,
    )
    single = results["single"][1]
    assert report["rows_in"] == report["rows_kept"] + report["rows_removed"] == single["rows_in"]
    for key in ("removed_by_rule", "class_counts", "duplicate_records", "flagged_cells", "notes"):
        assert report[key] == single[key], key


@pytest.mark.parametrize("gather_max", [1, 200_000])
def test_exact_median_and_mad_by_radix_selection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gather_max: int
) -> None:
    from medimg_core.tables import cleaning, partitioned

    # gather_max=1 walks all four 16-bit levels of the keys; the default gathers one bin.
    monkeypatch.setattr(partitioned, "_GATHER_MAX", gather_max)
    rng = np.random.default_rng(0)
    n = 1001
    frame = pd.DataFrame(
        {
            "a": rng.normal(-3.0, 2.0, n),
            "b": np.where(rng.random(n) < 0.8, 0.0, rng.normal(0, 1, n)),  # MAD 0
            "c": rng.integers(-50, 50, n).astype("float64") * 0.5,  # many ties
        }
    )
    frame.loc[[5, 77], "a"] = [40.0, -60.0]
    frame.loc[9, "c"] = np.nan
    frame.loc[11, "c"] = 300.0
    in_test = np.arange(n) % 5 == 0
    folder = tmp_path / "parts"
    (folder / "_side").mkdir(parents=True)
    names = []
    for i, (lo, hi) in enumerate([(0, 300), (300, 301), (301, n)]):
        name = f"part-{i:05d}.parquet"
        frame.iloc[lo:hi].to_parquet(folder / name)
        side = pd.DataFrame({"row": np.arange(lo, hi), "test": in_test[lo:hi]})
        side.to_parquet(folder / "_side" / name, index=False)
        names.append(name)
    fit = ~in_test
    counts = {c: int(np.isfinite(frame[c].to_numpy()[fit]).sum()) for c in frame.columns}
    ours = partitioned._outliers(str(folder), names, counts, 3.0)
    theirs = cleaning._outlier_flags(frame, list(frame.columns), 3.0, np.ones(n, bool), fit)
    assert len(theirs) and set(theirs["column"]) == {"a", "b", "c"}
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True, check_index_type=False)


CELL = st.one_of(
    st.sampled_from(sorted(MISSING_TOKENS)),
    st.integers(-1000, 1000).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.sampled_from(["007", "x", " y ", "1e3", "inf", "True", "a b"]),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.lists(CELL, min_size=3, max_size=3), min_size=2, max_size=30),
    parts=st.integers(1, 4),
)
def test_parsing_parts_equals_the_loader(tmp_path: Path, rows: list[list[str]], parts: int) -> None:
    lines = ["a,b,c", *(",".join(r) for r in rows)]
    folder = tmp_path / f"h{abs(hash((tuple(lines), parts)))}"
    try:
        expected = reference(lines)
    except DataError:
        with pytest.raises(DataError):
            whole(open_partitioned(write_parts(lines, folder, min(parts, len(rows)))[0].parent))
        return
    table = open_partitioned(write_parts(lines, folder, min(parts, len(rows)))[0].parent)
    pd.testing.assert_frame_equal(whole(table).reset_index(drop=True), expected, check_exact=True)
