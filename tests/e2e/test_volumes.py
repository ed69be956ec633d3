"""3D studies in headless Chromium: upload a ZIP of NIfTI volumes with their masks, train, and
open a case on Explain with its three orthogonal slices and the mask outline.

Screenshots of every step go to ``test-artifacts/screenshots/vol-*.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import (
    assert_no_exception,
    click,
    go_to,
    metric,
    open_app,
    rerun,
    screenshot,
    upload,
    wait_for_plot,
)
from tests.e2e.test_images import PAGE_MS, TRAINING_MS, choose
from tests.unit.imaging.synthetic_volumes import study_zip

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("e2e")]

N_PER_CLASS = 8


def test_volumes_from_upload_to_the_case_slices_on_explain(
    server: str, page: Page, tmp_path: Path
) -> None:
    study = tmp_path / "lesions.zip"
    study.write_bytes(study_zip(N_PER_CLASS, seed=41))

    open_app(page, server)
    kind = page.locator(".st-key-data_kind label", has_text="Images")
    rerun(page, kind.click, timeout=PAGE_MS)
    upload(page, "upload_images", study, timeout=PAGE_MS)
    page.wait_for_selector(".st-key-confirm_roles button", timeout=PAGE_MS)
    assert metric(page, "Cases") == str(2 * N_PER_CLASS)
    assert metric(page, "Classes") == "2"
    wait_for_plot(page, "volumes_viewer_slices", timeout=PAGE_MS)
    assert_no_exception(page)
    screenshot(page, "vol-01-data")
    click(page, "confirm_roles", timeout=PAGE_MS)
    page.get_by_text("Roles confirmed.").wait_for(timeout=PAGE_MS)

    go_to(page, "Clean", timeout=PAGE_MS)
    assert_no_exception(page)

    go_to(page, "Train", timeout=PAGE_MS)
    choose(page, "train_model", "Logistic regression")
    click(page, "train_go", timeout=TRAINING_MS)
    page.wait_for_selector("h3:has-text('Model in use')", timeout=TRAINING_MS)
    assert_no_exception(page)
    screenshot(page, "vol-02-train")

    go_to(page, "Explain", timeout=PAGE_MS)
    for key in ("explain_waterfall", "explain_case_slices"):
        wait_for_plot(page, key, timeout=PAGE_MS)
    chart = page.locator(".st-key-explain_case_slices [data-testid=stPlotlyChart]")
    # Three slices drawn as images, and the mask outline as lines over them.
    assert chart.locator("svg image").count() >= 3
    assert chart.locator("g.trace.scatter path.js-line").count() >= 3
    main = page.inner_text("[data-testid=stMain]")
    assert "segmentation's outline" in main
    assert_no_exception(page)
    screenshot(page, "vol-03-explain")
