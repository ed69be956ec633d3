"""The model report from the Runs page, in headless Chromium: train the sample, download the
report as PDF and HTML, and read them as text."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import assert_no_exception, click, go_to, open_app, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("e2e")]

TRAINING_MS = 900_000
PAGE_MS = 300_000


def download(page: Page, key: str, target: Path) -> Path:
    with page.expect_download(timeout=PAGE_MS) as info:
        page.locator(f".st-key-{key} button").first.click()
    info.value.save_as(target)
    return target


def test_report_downloaded_from_runs_reads_as_text(server: str, page: Page, tmp_path: Path) -> None:
    if shutil.which("pdftotext") is None:
        if os.environ.get("MEDIMG_REQUIRE_PDFTOOLS") == "1":
            pytest.fail("pdftotext (poppler-utils) is required here but not installed")
        pytest.skip("pdftotext (poppler-utils) is not installed; apt install poppler-utils")
    open_app(page, server)
    go_to(page, "Evaluate")
    click(page, "guard_sample_evaluate", timeout=TRAINING_MS)
    assert_no_exception(page)
    go_to(page, "Runs")
    page.wait_for_selector(".st-key-report_pdf button", timeout=PAGE_MS)
    assert_no_exception(page)
    screenshot(page, "runs-report")

    pdf = download(page, "report_pdf", tmp_path / "report.pdf")
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    flat = " ".join(text.split())
    run_id = re.search(r"run (\d{8}-\d{6}-\d{6}-[0-9a-f]{6})", flat)
    assert run_id is not None
    for title in (
        "1. Model and run",
        "2. Intended use, population and reference standard",
        "Flow of cases",
        "Performance with 95% intervals",
        "Calibration",
        "Reporting checklist (TRIPOD+AI, CLAIM)",
    ):
        assert title in flat
    assert "Intended use not stated" in flat
    assert re.search(r"ROC AUC 0\.9\d\d \(0\.9\d\d–[01]\.\d{3}\)", flat)
    assert re.search(r"page 1 of \d+", flat)

    html = download(page, "report_html", tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html
    assert f"Run {run_id.group(1)}" in html
    assert_no_exception(page)
