"""The whole walk-through in headless Chromium, from an uploaded CSV to downloaded predictions.

A radiologist's route: upload a messy table through the file uploader, confirm the roles, clean,
train with ``auto``, move the threshold on Evaluate, open a missed cancer on Explain, and score
new cases on Predict. Every page is checked for exceptions and for the plots it should draw, and
screenshotted under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from tests.e2e.conftest import (
    assert_no_exception,
    click,
    go_to,
    metric,
    open_app,
    rerun,
    screenshot,
    settle,
    upload,
    wait_for_plot,
    wait_for_plots,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("e2e")]

# Training with auto cross-validates every model and bootstraps its metrics; on a busy 2-core
# machine that can take minutes, so runs get a generous allowance (not a speed requirement).
TRAINING_MS = 900_000
PAGE_MS = 300_000

FIRST = ["Maria", "John", "Aisha", "Wei", "Olga", "Pedro", "Fatima", "Hans", "Yuki", "Grace"]
LAST = ["Rossi", "Smith", "Khan", "Zhang", "Ivanova", "Silva", "Haddad", "Muller", "Sato", "Okafor"]
N_NEW = 40
POSITIVE = "malignant"


def breast_cancer_tables(directory: Path) -> tuple[Path, Path]:
    """Write the training CSV (messy, labelled) and a CSV of new unlabelled cases.

    The training file has what hospital exports have: a ``case_id``, a ``patient_name``, missing
    values written as "?" and "NA", and one row exported twice. The new cases are other patients
    of the same data set, without the diagnosis, one of them with an ID that a spreadsheet would
    run as a formula.

    Returns
    -------
    (training CSV, new-cases CSV)
    """
    data = load_breast_cancer(as_frame=True)
    frame = data.data.round(5)
    n = len(frame)
    rng = np.random.default_rng(3)
    frame.insert(0, "case_id", [f"BC-{i:04d}" for i in range(1, n + 1)])
    names = [f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(n)]
    frame.insert(1, "patient_name", names)
    frame["diagnosis"] = np.where(data.target == 0, "malignant", "benign")

    known, new = frame.iloc[: n - N_NEW].copy(), frame.iloc[n - N_NEW :].copy()
    for column in ("mean texture", "worst smoothness"):
        known[column] = known[column].astype(object)
    known.loc[known.index[[3, 50, 120]], "mean texture"] = "?"
    known.loc[known.index[[10, 200]], "worst smoothness"] = "NA"
    known = pd.concat([known, known.iloc[[5]]], ignore_index=True)
    training = directory / "breast-masses.csv"
    known.to_csv(training, index=False)

    new = new.drop(columns=["diagnosis"]).reset_index(drop=True)
    new["case_id"] = [f"NEW-{i:03d}" for i in range(1, len(new) + 1)]
    new.loc[0, "case_id"] = "=1+2"
    cases = directory / "new-cases.csv"
    new.to_csv(cases, index=False)
    return training, cases


def page_checked(page: Page, name: str, plots: int) -> int:
    """The checks every page passes: its plots drawn, no exception; then its screenshot."""
    drawn = wait_for_plots(page, plots, timeout=PAGE_MS)
    assert_no_exception(page)
    screenshot(page, name)
    return drawn


def chosen(page: Page, key: str) -> str:
    """The option a select box shows (its combobox input holds the chosen option's text)."""
    return str(page.locator(f".st-key-{key} input[role=combobox]").first.input_value())


def tags(page: Page, key: str) -> list[str]:
    """The options a multiselect shows as chosen."""
    return [str(t) for t in page.locator(f".st-key-{key} [data-tag]").all_inner_texts()]


def choose(page: Page, key: str, option: str) -> None:
    """Pick the first option containing ``option`` in the select box with widget key ``key``."""
    box = page.locator(f".st-key-{key} input[role=combobox]")
    item = page.get_by_role("option").filter(has_text=option).first
    box.click()
    if not item.is_visible():
        box.press("ArrowDown")
    item.wait_for(timeout=30_000)
    rerun(page, item.click, timeout=PAGE_MS)
    assert option in box.input_value()


def missed_count(page: Page) -> int:
    """How many false negatives the Explain page lists ("false negatives (n)")."""
    text = page.locator(".st-key-explain_pick label", has_text="false negatives").inner_text()
    found = re.search(r"\((\d[\d,]*)\)", text)
    assert found, text
    return int(found.group(1).replace(",", ""))


def pick(page: Page, option: str) -> None:
    """Choose the Explain page's case list whose radio label starts with ``option``."""
    choice = page.locator(".st-key-explain_pick label", has_text=option)
    rerun(page, choice.click, timeout=PAGE_MS)
    assert choice.locator("input[type=radio]").is_checked()


def chart_text(page: Page, key: str) -> str:
    return str(page.locator(f".st-key-{key} [data-testid=stPlotlyChart]").first.text_content())


def test_walkthrough_from_uploaded_csv(server: str, page: Page, tmp_path: Path) -> None:
    training_csv, new_csv = breast_cancer_tables(tmp_path)
    open_app(page, server)
    assert_no_exception(page)

    # Data: upload, check the proposed roles, confirm them.
    upload(page, "upload", training_csv, timeout=PAGE_MS)
    page.wait_for_selector(".st-key-confirm_roles button", timeout=PAGE_MS)
    assert "breast-masses.csv" in page.inner_text("[data-testid=stMain]")
    assert "530 rows" in page.inner_text("[data-testid=stMain]")
    assert chosen(page, "role_label") == "diagnosis"
    assert chosen(page, "role_id") == "case_id"
    page.locator(".st-key-role_exclude [data-tag]", has_text="patient_name").wait_for(
        timeout=PAGE_MS
    )
    assert tags(page, "role_exclude") == ["patient_name"]
    assert chosen(page, "role_positive") == POSITIVE
    click(page, "confirm_roles", timeout=PAGE_MS)
    page.get_by_text("Roles confirmed.").wait_for(timeout=PAGE_MS)
    wait_for_plot(page, "class_balance", timeout=PAGE_MS)
    page_checked(page, "01-data", plots=1)

    # Clean: the default plan removes only the repeated export (same ID, same values); the
    # rows with gaps are kept and imputed inside the model's pipeline.
    go_to(page, "Clean", timeout=PAGE_MS)
    assert metric(page, "Rows in") == "530"
    assert metric(page, "Removed") == "1"
    assert metric(page, "Kept") == "529"
    wait_for_plot(page, "cleaning_chart", timeout=PAGE_MS)
    page_checked(page, "02-clean", plots=1)

    # Train: auto, and its leaderboard.
    go_to(page, "Train", timeout=PAGE_MS)
    assert chosen(page, "train_model").lower().startswith("auto")
    click(page, "train_go", timeout=TRAINING_MS)
    page.wait_for_selector("h3:has-text('Model in use')", timeout=TRAINING_MS)
    wait_for_plot(page, "train_board", timeout=PAGE_MS)
    page_checked(page, "03-train", plots=1)

    # Evaluate: the threshold slider moves the confusion matrix and the rates, in place.
    go_to(page, "Evaluate", timeout=PAGE_MS)
    for key in ("eval_confusion", "eval_tradeoff", "eval_roc"):
        wait_for_plot(page, key, timeout=PAGE_MS)
    page_checked(page, "04-evaluate", plots=4)
    counts_before = chart_text(page, "eval_confusion")
    sensitivity_before = metric(page, "Sensitivity")
    called_before = metric(page, "Called positive")
    thumb = page.locator(".st-key-eval_threshold").get_by_role("slider")
    thumb.focus()
    rerun(page, lambda: page.keyboard.press("End"), timeout=PAGE_MS)
    page.wait_for_function(
        "(before) => { const c = document.querySelector("
        "'.st-key-eval_confusion [data-testid=stPlotlyChart]'); return c && c.textContent !== before; }",
        arg=counts_before,
        timeout=PAGE_MS,
    )
    assert float(thumb.input_value()) == 1.0
    assert "Counts at 1.00" in chart_text(page, "eval_confusion")
    assert metric(page, "Sensitivity") != sensitivity_before
    assert metric(page, "Called positive") != called_before
    for _ in range(50):
        page.keyboard.press("ArrowLeft")
    rerun(page, lambda: page.keyboard.press("ArrowLeft"), timeout=PAGE_MS)
    page.wait_for_function(
        "() => document.querySelector('.st-key-eval_threshold input[type=range]').value !== '1'",
        timeout=PAGE_MS,
    )
    settle(page, PAGE_MS)
    threshold = float(thumb.input_value())
    assert threshold < 1.0
    page.wait_for_function(
        "(t) => document.querySelector('.st-key-eval_confusion [data-testid=stPlotlyChart]')"
        ".textContent.includes('Counts at ' + t)",
        arg=f"{threshold:.2f}",
        timeout=PAGE_MS,
    )
    wait_for_plots(page, 4, timeout=PAGE_MS)
    assert_no_exception(page)
    screenshot(page, "04-evaluate-threshold-moved")

    # Explain: a false negative's waterfall (or the page says there is none and any case is shown).
    go_to(page, "Explain", timeout=PAGE_MS)
    for key in ("explain_importance", "explain_beeswarm"):
        wait_for_plot(page, key, timeout=PAGE_MS)
    if missed_count(page) == 0:
        # A small held-out test set may miss no cancer; the development cases, each scored by
        # cross-validation, are the other place the page offers to look.
        choose(page, "explain_partition", "development")
    missed = missed_count(page)
    pick(page, "false negatives")
    if missed:
        wait_for_plot(page, "explain_waterfall", timeout=PAGE_MS)
        assert metric(page, "True diagnosis") == POSITIVE
        assert metric(page, "Outcome") == "FN"
    else:
        page.get_by_text(re.compile(r"^No false negatives among")).wait_for(timeout=PAGE_MS)
        pick(page, "any case by ID")
        wait_for_plot(page, "explain_waterfall", timeout=PAGE_MS)
    wait_for_plot(page, "explain_gauge", timeout=PAGE_MS)
    page_checked(page, "05-explain", plots=4)

    # Predict: new cases through the uploader, then the spreadsheet-safe download.
    go_to(page, "Predict", timeout=PAGE_MS)
    upload(page, "predict_upload", new_csv, timeout=PAGE_MS)
    page.wait_for_selector(".st-key-predict_download button", timeout=PAGE_MS)
    assert metric(page, "Cases in the file") == str(N_NEW)
    wait_for_plot(page, "predict_distribution", timeout=PAGE_MS)
    page_checked(page, "06-predict", plots=1)
    with page.expect_download(timeout=PAGE_MS) as download_info:
        page.locator(".st-key-predict_download").get_by_role(
            "button", name=re.compile("^Download predictions")
        ).click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    raw = Path(download.path()).read_text(encoding="utf-8-sig")
    predictions = pd.read_csv(io.StringIO(raw), dtype=str, keep_default_na=False)
    probability = f"P({POSITIVE})"
    assert probability in predictions.columns
    assert len(predictions) == N_NEW
    values = pd.to_numeric(predictions[probability])
    assert values.between(0, 1).all()
    assert "patient_name" not in predictions.columns
    assert "diagnosis" not in predictions.columns
    names = set(LAST)
    assert not any(any(n in cell for n in names) for cell in predictions.to_numpy().ravel())
    assert not any(str(cell).startswith("=") for cell in predictions.to_numpy().ravel())
    assert not any(str(c).startswith("=") for c in predictions.columns)
    assert "'=1+2" in predictions.to_numpy().ravel()
    assert_no_exception(page)

    # Runs: the model just trained is recorded.
    go_to(page, "Runs", timeout=PAGE_MS)
    page.wait_for_selector(".st-key-runs_pick", timeout=PAGE_MS)
    assert "breast-masses.csv" in page.inner_text("[data-testid=stMain]")
    page_checked(page, "07-runs", plots=0)
