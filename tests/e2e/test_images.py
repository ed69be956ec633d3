"""Images in headless Chromium: upload a ZIP of images, train, and open a case's explanation with
its image and occlusion map; then score new images on Predict.

Screenshots of every step go to ``test-artifacts/screenshots/img-*.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.app.test_images_pages import image_zip
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

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("e2e")]

# Generous allowances for a busy 2-core machine; they only stop a hung run.
PAGE_MS = 300_000
TRAINING_MS = 900_000
N_PER_CLASS = 16


def choose(page: Page, key: str, option: str) -> None:
    """Pick the first option containing ``option`` in the select box with widget key ``key``."""
    box = page.locator(f".st-key-{key} input[role=combobox]")
    item = page.get_by_role("option").filter(has_text=option).first
    box.click()
    if not item.is_visible():
        box.press("ArrowDown")
    item.wait_for(timeout=30_000)
    rerun(page, item.click, timeout=PAGE_MS)


def images_shown(page: Page, n: int) -> None:
    """Wait until at least ``n`` images (``st.image``) are on the page with their source.

    Images below the window may load lazily, so their presence is what counts here.
    """
    page.wait_for_function(
        "(n) => [...document.querySelectorAll('[data-testid=stImage] img')]"
        ".filter(i => i.getAttribute('src')).length >= n",
        arg=n,
        timeout=PAGE_MS,
    )


def test_images_from_upload_to_explained_case(server: str, page: Page, tmp_path: Path) -> None:
    study = tmp_path / "chest-study.zip"
    study.write_bytes(image_zip(n=N_PER_CLASS, size=32, seed=1))
    new = tmp_path / "new-images.zip"
    new.write_bytes(image_zip(n=3, size=32, seed=7, labelled=False))

    open_app(page, server)
    kind = page.locator(".st-key-data_kind label", has_text="Images")
    rerun(page, kind.click, timeout=PAGE_MS)
    upload(page, "upload_images", study, timeout=PAGE_MS)
    page.wait_for_selector(".st-key-confirm_roles button", timeout=PAGE_MS)
    assert metric(page, "Images") == str(2 * N_PER_CLASS)
    assert metric(page, "Classes") == "2"
    assert metric(page, "Image size") == "32×32"
    images_shown(page, N_PER_CLASS)
    assert_no_exception(page)
    screenshot(page, "img-01-data")
    click(page, "confirm_roles", timeout=PAGE_MS)
    page.get_by_text("Roles confirmed.").wait_for(timeout=PAGE_MS)

    go_to(page, "Clean", timeout=PAGE_MS)
    assert_no_exception(page)
    screenshot(page, "img-02-clean")

    go_to(page, "Train", timeout=PAGE_MS)
    choose(page, "train_model", "Logistic regression")
    click(page, "train_go", timeout=TRAINING_MS)
    page.wait_for_selector("h3:has-text('Model in use')", timeout=TRAINING_MS)
    assert_no_exception(page)
    screenshot(page, "img-03-train")

    go_to(page, "Explain", timeout=PAGE_MS)
    for key in ("explain_waterfall", "explain_case_image", "explain_case_occlusion"):
        wait_for_plot(page, key, timeout=PAGE_MS)
    main = page.inner_text("[data-testid=stMain]")
    assert "not a lesion segmentation" in main
    for key in ("explain_case_image", "explain_case_occlusion"):
        drawn = page.locator(f".st-key-{key} [data-testid=stPlotlyChart] svg image")
        assert drawn.count() >= 1, f"{key} shows no image"
    assert_no_exception(page)
    screenshot(page, "img-04-explain")

    go_to(page, "Predict", timeout=PAGE_MS)
    upload(page, "predict_upload", new, timeout=PAGE_MS)
    page.get_by_text("Each image with its prediction").wait_for(timeout=PAGE_MS)
    assert metric(page, "Scored") == "6"
    images_shown(page, 6)
    assert_no_exception(page)
    screenshot(page, "img-05-predict")
