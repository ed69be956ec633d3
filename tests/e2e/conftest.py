"""Fixtures for end-to-end tests: a real medimg server and headless Chromium driven by Playwright.

Chromium comes from Debian (``/usr/bin/chromium``; ``playwright install`` cannot download browsers
here). Without it these tests skip with the reason; CI installs it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MEDIMG_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = pytest.mark.e2e


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` keep each ``xdist_group`` on one worker under pytest 9.

    pytest-xdist groups tests by a ``@group`` suffix it writes to ``item._nodeid``; pytest 9
    keeps node ids in ``item._id``, so the suffix is lost and the e2e tests would each start a
    server and a browser on both workers. The suffix is written where pytest 9 reads it.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:
        return
    for item in items:
        names = sorted(
            {
                str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                for m in item.iter_markers("xdist_group")
            }
        )
        if names and "@" not in item.nodeid and hasattr(item, "_id"):
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"streamlit did not become healthy within {timeout:.0f} s")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A medimg server on a free port with its own empty workspace; yields its URL.

    One per test session (per xdist worker): the e2e tests share the ``e2e`` xdist group, so
    they run on one worker against one server, each in its own browser context (own session).
    """
    port = _free_port()
    home = tmp_path_factory.mktemp("medimg-home")
    # The server encrypts what it stores with a key of its own, outside its workspace, never
    # the developer's (the autouse key fixture is per test; this server lives for the session).
    key_file = tmp_path_factory.mktemp("medimg-server-key") / "key"
    env = {
        **os.environ,
        "MEDIMG_HOME": str(home),
        "MEDIMG_RAISE": "1",
        "MEDIMG_KEY_FILE": str(key_file),
    }
    env.pop("MEDIMG_DATABASE_URL", None)
    env.pop("MEDIMG_ENCRYPTION_KEY", None)
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Debian Chromium, or a skip when it is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    """A fresh 1280×800 page; its console errors are collected on ``page.console_errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)  # type: ignore[attr-defined]
    pg = context.new_page()
    pg.console_errors = []
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
    yield pg
    context.close()


def settle(page: object, timeout: float = 120_000) -> None:
    """Wait until the app is connected and its script has finished running.

    The script state starts as ``initial`` before the first run, so only ``notRunning`` counts as
    finished; a run that an action has yet to start is :func:`rerun`'s business.
    """
    page.wait_for_selector("[data-testid=stApp]", timeout=30_000)  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => { const a = document.querySelector('[data-testid=stApp]');"
        " return a && a.getAttribute('data-test-script-state') === 'notRunning'"
        " && a.getAttribute('data-test-connection-state') === 'CONNECTED'; }",
        timeout=timeout,
    )
    page.wait_for_timeout(300)  # type: ignore[attr-defined]


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot of the whole page under test-artifacts/screenshots/.

    Streamlit scrolls its main area inside ``stMain``, not the document, so a "full page"
    screenshot would stop at the window: the window is stretched to the content for the shot.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size or {"width": 1280, "height": 800}
    height = int(
        page.evaluate(
            "() => Math.max(document.documentElement.scrollHeight,"
            " document.querySelector('[data-testid=stMain]')?.scrollHeight || 0)"
        )
    )
    page.set_viewport_size(
        {"width": size["width"], "height": min(max(height, size["height"]), 8000)}
    )
    try:
        page.wait_for_timeout(600)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    return path


# Counts script runs (full reruns and fragment reruns alike) by watching the app's script-state
# attribute, so that a run which starts and ends between two polls is not missed.
_WATCH_RUNS = """() => {
  if (window.__medimgRuns === undefined) {
    window.__medimgRuns = 0;
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.target.getAttribute('data-test-script-state') === 'running') window.__medimgRuns++;
      }
    }).observe(document, {subtree: true, attributes: true,
                          attributeFilter: ['data-test-script-state']});
  }
  return window.__medimgRuns;
}"""


def rerun(
    page: Page, action: Callable[[], object], timeout: float = 120_000, start: float = 10_000
) -> None:
    """Do ``action`` (a click, a key press, an upload) and wait for the run it starts to finish.

    Parameters
    ----------
    page : the Playwright page.
    action : what triggers the run.
    timeout : milliseconds the run may take (training needs minutes on a busy machine).
    start : milliseconds to wait for the run to begin; an action that starts none (a download)
        only costs this wait.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    before = page.evaluate(_WATCH_RUNS)
    action()
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(f"() => window.__medimgRuns > {before}", timeout=start)
    settle(page, timeout)


def open_app(page: Page, url: str) -> None:
    """Load the app (once per test: reloading would start a new session) and wait for it."""
    page.goto(url)
    settle(page, timeout=60_000)
    page.wait_for_selector("[data-testid=stSidebarNav] a", timeout=60_000)
    page.evaluate(_WATCH_RUNS)


def go_to(page: Page, title: str, timeout: float = 300_000) -> None:
    """Open a step through its sidebar link (the session, and its state, carry over)."""
    link = page.locator("[data-testid=stSidebarNav] a").filter(
        has=page.get_by_text(title, exact=True)
    )
    rerun(page, link.click, timeout=timeout)
    heading = page.locator("h1").filter(has=page.get_by_text(title, exact=True))
    heading.first.wait_for(timeout=timeout)


def upload(page: Page, key: str, path: Path, timeout: float = 120_000) -> None:
    """Put ``path`` into the file uploader with widget key ``key`` and wait for the rerun."""
    field = page.locator(f".st-key-{key} [data-testid=stFileUploaderDropzone] input[type=file]")
    rerun(page, lambda: field.set_input_files(str(path)), timeout=timeout)


def click(page: Page, key: str, timeout: float = 120_000) -> None:
    """Click the button with widget key ``key`` and wait for the run it starts."""
    button = page.locator(f".st-key-{key} button").first
    rerun(page, button.click, timeout=timeout)


def metric(page: Page, label: str) -> str:
    """The shown value of the ``st.metric`` whose label is exactly ``label``."""
    box = page.locator("[data-testid=stMetric]").filter(
        has=page.locator(
            "[data-testid=stMetricLabel]", has_text=re.compile(rf"^{re.escape(label)}$")
        )
    )
    return str(box.first.locator("[data-testid=stMetricValue]").inner_text()).strip()


def wait_for_plots(page: Page, n: int, timeout: float = 60_000) -> int:
    """Wait until at least ``n`` Plotly charts have drawn (their ``.main-svg``); return how many."""
    script = (
        "() => [...document.querySelectorAll('[data-testid=stPlotlyChart]')]"
        ".filter(c => c.querySelector('.main-svg')).length"
    )
    page.wait_for_function(f"() => ({script})() >= {n}", timeout=timeout)
    return int(page.evaluate(script))


def wait_for_plot(page: Page, key: str, timeout: float = 60_000) -> str:
    """Wait until the Plotly chart with element key ``key`` has drawn; return its SVG text."""
    svg = page.locator(f".st-key-{key} [data-testid=stPlotlyChart] .main-svg").first
    svg.wait_for(state="attached", timeout=timeout)
    return str(page.locator(f".st-key-{key} [data-testid=stPlotlyChart]").first.text_content())


def assert_no_exception(page: Page) -> None:
    """No Streamlit exception box and no Python traceback anywhere on the page."""
    exceptions = page.locator("[data-testid=stException]")
    assert exceptions.count() == 0, exceptions.first.inner_text()
    assert "Traceback" not in page.content()
