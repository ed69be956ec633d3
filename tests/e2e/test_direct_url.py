"""A page URL opened first on a freshly started server runs through the router.

Until some session calls ``st.navigation``, Streamlit serves a ``pages/`` folder beside
``app.py`` in its legacy multipage mode: ``/train`` would run ``pages/train.py`` on its own, with
a sidebar of lower-case file names, no ticks, no sign-in gate and no error boundary. Each test
starts its own server, so that its first request is the page URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import (
    _free_port,
    assert_no_exception,
    medimg_server,
    screenshot,
    settle,
    workspace_env,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

PAGE_MS = 120_000
TITLES = ("Data", "Clean", "Train", "Evaluate", "Explain", "Predict", "Runs", "Jobs")


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[str]:
    """A medimg server started for this test alone, on an empty workspace; nobody has opened
    any page on it yet."""
    home, key = tmp_path / "home", tmp_path / "key" / "key"
    home.mkdir()
    key.parent.mkdir()
    with medimg_server(workspace_env(home, key), _free_port()) as url:
        yield url


def routed_page(page: Page, title: str) -> None:
    """The page shows ``title`` inside the router's frame: the router's sidebar (step titles
    with capitals and the medimg caption), not Streamlit's list of file names."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    settle(page, timeout=PAGE_MS)
    heading = page.locator("h1").filter(has=page.get_by_text(title, exact=True)).first
    try:
        heading.wait_for(timeout=PAGE_MS)
    except PlaywrightTimeout:
        screenshot(page, f"direct-url-{title.lower()}")
        pytest.fail(f"no {title!r} heading at {page.url}: {page.inner_text('body')[:1500]!r}")
    sidebar = page.locator("[data-testid=stSidebar]")
    sidebar.get_by_text("medimg builds honest", exact=False).first.wait_for(timeout=PAGE_MS)
    links = page.locator("[data-testid=stSidebarNav] a")
    links.first.wait_for(timeout=PAGE_MS)
    # A link's text is its Material icon's name, then its title.
    names = [text.split()[-1] for text in links.all_inner_texts() if text.strip()]
    assert [t for t in TITLES if t in names] == list(TITLES), names
    assert not [n for n in names if n in {"app", "train", "evaluate", "data"}], names
    assert_no_exception(page)


def test_a_page_url_opened_first_runs_through_the_router(
    fresh_server: str, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(f"{fresh_server}/train")
    routed_page(page, "Train")
    # The router sent the user to the page asked for, with its guard (no data in this session).
    assert page.url.rstrip("/").endswith("/train")
    # The heading is drawn before the guard's message: wait for the message, not a snapshot
    # taken between the two (a clean-clone CI run read the main area as just "Train").
    page.locator("[data-testid=stMain]").get_by_text("There is no data yet").first.wait_for(
        timeout=PAGE_MS
    )

    # A second user arriving by URL finds the router as well.
    other = new_page()
    other.goto(f"{fresh_server}/evaluate")
    routed_page(other, "Evaluate")


def test_two_first_visitors_by_url_at_once_both_get_the_router(
    fresh_server: str, new_page: Callable[[], Page]
) -> None:
    first, second = new_page(), new_page()
    # Both sessions start their first run before either has left the legacy mode.
    first.goto(f"{fresh_server}/runs", wait_until="commit")
    second.goto(f"{fresh_server}/predict", wait_until="commit")
    routed_page(first, "Runs")
    routed_page(second, "Predict")
