"""AppTest of the Clean page: the guard, counts that balance, plan widgets, a bad range."""

from __future__ import annotations

from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from medimg_core.ui import state
from tests.app.conftest import as_int, linked_pages, messy_frame, metric_values, upload

PAGE = "pages/clean.py"


def _counts(at: AppTest) -> tuple[int, int, int]:
    metrics = metric_values(at)
    return as_int(metrics["Rows in"]), as_int(metrics["Kept"]), as_int(metrics["Removed"])


def _messy_clean_page(open_app: Callable[..., AppTest], messy_csv: bytes) -> AppTest:
    at = upload(open_app("pages/data.py"), messy_csv, "messy.csv")
    at.button(key="confirm_roles").click().run()
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def test_guard_offers_the_sample_and_loads_it(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    assert not at.exception
    assert "no data yet" in at.info[0].value
    assert "data" in linked_pages(at)
    assert not at.metric
    at.button(key="guard_sample_clean").click().run()
    assert not at.exception
    assert at.session_state[state.ROLES].label == "diagnosis"
    assert _counts(at) == (569, 569, 0)
    assert at.session_state[state.CLEANING].n_kept == 569


def test_counts_balance_and_report_is_stored(
    open_app: Callable[..., AppTest], messy_csv: bytes
) -> None:
    at = _messy_clean_page(open_app, messy_csv)
    rows_in, kept, removed = _counts(at)
    assert rows_in == 202 and kept + removed == rows_in and removed > 0
    report = at.session_state[state.CLEANING]
    assert (report.n_kept, report.n_removed) == (kept, removed)
    assert report.counts["quality flag"] > 0
    assert "conflicting duplicate" not in report.counts
    assert not [d for d in at.dataframe if "patient_name" in d.value.columns]
    # Row 5 and its copy with the other diagnosis under a new ID are hard cases: both kept
    # (once their "poor" quality flag is accepted).
    at.multiselect(key="clean_acceptable").select("poor").run()
    report = at.session_state[state.CLEANING]
    assert list(report.conflicts.index) == [5, 201]
    assert report.conflicts.index.isin(report.data.index).all()
    assert "1 group of cases has identical features" in at.info[0].value
    assert "all their rows are kept" in at.info[0].value


def test_impute_is_the_default_and_dropping_is_a_choice(
    open_app: Callable[..., AppTest], messy_csv: bytes
) -> None:
    at = _messy_clean_page(open_app, messy_csv)
    assert at.radio(key="clean_missing").value == "impute"
    report = at.session_state[state.CLEANING]
    assert report.plan.missing == "impute" and report.counts["missing values"] == 0
    _, kept_impute, removed_impute = _counts(at)
    missingness = next(d.value for d in at.dataframe if "% missing" in d.value.columns)
    expected = int(messy_frame()["mean texture"].isna().sum())
    assert missingness.set_index("predictor").loc["mean texture", "missing"] == expected
    at.radio(key="clean_missing").set_value("drop").run()
    assert not at.exception
    rows_in, kept, removed = _counts(at)
    assert kept + removed == rows_in
    assert kept < kept_impute and removed > removed_impute
    assert at.session_state[state.CLEANING].counts["missing values"] > 0


def test_quality_values_can_be_widened(open_app: Callable[..., AppTest], messy_csv: bytes) -> None:
    at = _messy_clean_page(open_app, messy_csv)
    assert at.multiselect(key="clean_acceptable").value == ["good"]
    at.multiselect(key="clean_acceptable").select("poor").run()
    assert at.session_state[state.CLEANING].counts["quality flag"] == 0


def test_range_drop_removes_rows_outside(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    at.button(key="guard_sample_clean").click().run()
    at.session_state["clean_ranges"] = {
        "edited_rows": {},
        "added_rows": [{"column": "mean radius", "max": 20.0}],
        "deleted_rows": [],
    }
    at.run()
    at.radio(key="clean_range_action").set_value("drop").run()
    assert not at.exception
    report = at.session_state[state.CLEANING]
    assert report.plan.ranges == {"mean radius": (None, 20.0)}
    assert report.counts["out of range"] > 0
    rows_in, _, removed = _counts(at)
    assert (rows_in, removed) == (569, report.counts["out of range"])


def test_bad_range_shows_one_error(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    at.button(key="guard_sample_clean").click().run()
    at.session_state["clean_ranges"] = {
        "edited_rows": {},
        "added_rows": [{"column": "mean radius", "min": 20.0, "max": 5.0}],
        "deleted_rows": [],
    }
    at.run()
    assert not at.exception
    assert len(at.error) == 1
    assert "'mean radius' has low 20.0 above high 5.0" in at.error[0].value
    assert not at.metric


def test_removed_rows_show_missing_cells_blank_and_flags_are_explained(
    open_app: Callable[..., AppTest], messy_csv: bytes
) -> None:
    at = _messy_clean_page(open_app, messy_csv)
    at.number_input(key="clean_outlier_z").set_value(1.0).run()
    assert not at.exception
    report = at.session_state[state.CLEANING]
    tables = [d.value for d in at.dataframe]
    removed = next(t for t in tables if report.reason_column in t.columns)
    assert not removed.isna().any().any()
    assert "None" not in removed.to_numpy().astype(str)
    assert (removed == "").any().any()
    captions = " ".join(c.value for c in at.caption)
    assert len(report.flags) > 0
    assert "Flagged values are kept in the data (not removed)" in captions
    assert "robust standard deviations" in captions


def test_class_balance_before_and_after_is_shown_and_warned(
    open_app: Callable[..., AppTest], messy_csv: bytes
) -> None:
    at = _messy_clean_page(open_app, messy_csv)
    report = at.session_state[state.CLEANING]
    balance = next(d.value for d in at.dataframe if "share before" in d.value.columns)
    assert balance["class"].tolist() == list(report.class_counts_before)
    assert balance["before"].sum() == 202
    assert balance["after"].sum() == report.n_kept
    assert "removed: quality flag" in balance.columns


def test_class_balance_warning_when_cleaning_moves_it(open_app: Callable[..., AppTest]) -> None:
    frame = messy_frame()
    frame["qc"] = "good"
    benign = frame.index[frame["diagnosis"] == "benign"][:60]
    frame.loc[benign, "qc"] = "poor"
    at = _messy_clean_page(open_app, frame.to_csv(index=False).encode("utf-8"))
    report = at.session_state[state.CLEANING]
    assert report.removed_by_class["quality flag"] == {"benign": 60}
    assert report.prevalence_shift() > 0.03
    warning = next(w.value for w in at.warning if "class balance" in w.value)
    assert warning.startswith("Cleaning changed the class balance: 'benign' went from")


def test_repeated_records_choice_and_listing(
    open_app: Callable[..., AppTest], messy_csv: bytes
) -> None:
    at = _messy_clean_page(open_app, messy_csv)
    assert at.radio(key="clean_duplicates").value == "auto"
    assert not any(r.key == "clean_outlier_action" for r in at.radio)
    assert "Outliers are flagged, never removed" in " ".join(c.value for c in at.caption)
    report = at.session_state[state.CLEANING]
    # Row 3 appears twice with its case ID: one repeated record, removed; the copy of row 5
    # under a new ID is another patient and stays.
    assert report.duplicates[["row", "copy_of", "kind"]].values.tolist() == [[200, 3, "same ID"]]
    assert report.counts["duplicate record"] == 1
    _, _, removed_auto = _counts(at)
    at.radio(key="clean_duplicates").set_value("keep").run()
    assert not at.exception
    report = at.session_state[state.CLEANING]
    assert report.counts["duplicate record"] == 0
    assert report.duplicates["action"].tolist() == ["kept"]
    assert _counts(at)[2] == removed_auto - 1
    assert any(t.label.startswith("Repeated records (1)") for t in at.tabs)


def test_values_too_large_to_compute_with_are_named(
    open_app: Callable[..., AppTest], messy_csv: bytes
) -> None:
    import io

    import pandas as pd

    frame = pd.read_csv(io.BytesIO(messy_csv))
    numeric = [c for c in frame.select_dtypes("number").columns if frame[c].nunique() > 2]
    column = numeric[0]
    frame[column] = 1.79e308
    frame.loc[frame.index[::2], column] = -1.79e308
    at = upload(open_app("pages/data.py"), frame.to_csv(index=False).encode(), "huge.csv")
    at.button(key="confirm_roles").click().run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert len(at.error) == 1
    assert "too large to compute with" in at.error[0].value
    assert repr(column) in at.error[0].value
