"""A file that is not a table gives one clear error in the browser, and no traceback."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import assert_no_exception, open_app, screenshot, upload

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

# A complete 1×1 PNG: the bytes a scan export would hold, whatever the file is called.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def test_png_renamed_csv_shows_one_clear_error(server: str, page: Page, tmp_path: Path) -> None:
    bogus = tmp_path / "scan-features.csv"
    bogus.write_bytes(PNG)
    open_app(page, server)

    upload(page, "upload", bogus)

    errors = page.locator("[data-testid=stAlertContentError]")
    errors.first.wait_for(timeout=60_000)
    assert errors.count() == 1
    message = errors.first.inner_text()
    assert "scan-features.csv" in message
    assert "PNG image" in message
    assert "not a text table" in message
    assert "Export the table as CSV" in message
    assert_no_exception(page)
    assert "Traceback" not in page.inner_text("body")
    # Nothing was loaded: the page still asks for a table, and no roles are offered.
    assert page.locator(".st-key-confirm_roles").count() == 0
    screenshot(page, "00-bad-upload")
