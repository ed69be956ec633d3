"""Fixtures for end-to-end tests: a real medimg server and headless Chromium driven by Playwright.

Chromium comes from Debian (``/usr/bin/chromium``; ``playwright install`` cannot download browsers
here). Without it these tests skip with the reason; CI installs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

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


# Sign-in: a real OpenID Connect provider (oidc-provider-mock) and medimg servers configured
# for it or for local accounts. The browser reaches medimg as ``localhost`` because that is
# the host of the redirect URI, where Streamlit sets its sign-in cookie.


def medimg_cli(env: Mapping[str, str], *args: str, password: str | None = None) -> str:
    """Run ``medimg ARGS`` in the workspace of ``env`` (a password goes to standard input)."""
    done = subprocess.run(
        [sys.executable, "-m", "medimg_core", *args],
        cwd=ROOT,
        env=dict(env),
        input=None if password is None else f"{password}\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"medimg {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def workspace_env(
    home: Path, key_file: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a medimg server and its CLI: its own workspace and key, nothing
    inherited that would point it at the developer's database, key or user name."""
    extra = extra or {}
    env = {
        **os.environ,
        "MEDIMG_HOME": str(home),
        "MEDIMG_RAISE": "1",
        "MEDIMG_KEY_FILE": str(key_file),
        **extra,
    }
    for name in ("MEDIMG_DATABASE_URL", "MEDIMG_ENCRYPTION_KEY", "MEDIMG_USER"):
        if name not in extra:
            env.pop(name, None)
    return env


@contextlib.contextmanager
def medimg_server(
    env: Mapping[str, str],
    port: int,
    *,
    secrets_file: Path | None = None,
    clock_file: Path | None = None,
) -> Iterator[str]:
    """Start ``streamlit run app.py`` on ``port`` with ``env``; yield its ``localhost`` URL.

    ``secrets_file`` replaces the secrets Streamlit would look for (``.streamlit/secrets.toml``
    of the app folder and of the home folder) through its ``secrets.files`` option.
    ``clock_file``: the sign-in clock runs ahead by the minutes written there
    (``tests/e2e/shifted_clock.py``).
    """
    home = Path(env["MEDIMG_HOME"])
    if clock_file is not None:
        env = {**env, "MEDIMG_E2E_CLOCK_FILE": str(clock_file)}
        streamlit = [str(Path(__file__).with_name("shifted_clock.py"))]
    else:
        streamlit = ["-m", "streamlit"]
    command = [
        sys.executable,
        *streamlit,
        "run",
        str(ROOT / "app.py"),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
    ]
    if secrets_file is not None:
        command += ["--secrets.files", str(secrets_file)]
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen(command, cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield f"http://localhost:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@dataclass(frozen=True)
class OidcProvider:
    """The local OpenID Connect provider: its URL, and the users' claims it hands out."""

    url: str

    def _send(self, method: str, path: str, body: object) -> bytes:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def register_client(self, redirect_uri: str) -> tuple[str, str]:
        """Register medimg as a client (dynamic registration); return (client ID, secret)."""
        client = json.loads(
            self._send("POST", "/oauth2/clients", {"redirect_uris": [redirect_uri]})
        )
        return str(client["client_id"]), str(client["client_secret"])

    def set_user(self, sub: str, claims: Mapping[str, object]) -> None:
        """The claims the provider puts in the ID token of ``sub`` (who is typed at its form)."""
        self._send("PUT", f"/users/{sub}", dict(claims))


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    """oidc-provider-mock on a free local port, in a thread: it accepts only registered clients,
    requires a nonce (as Streamlit sends), and signs in whoever is typed at its form."""
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread(require_client_registration=True, require_nonce=True) as provider:
        yield OidcProvider(f"http://localhost:{provider.server_port}")


@dataclass(frozen=True)
class SignInServer:
    """A medimg server with sign-in: its URL and the environment of its workspace (for the CLI)."""

    url: str
    env: Mapping[str, str] = field(repr=False)  # the developer's environment stays out of logs
    clock_file: Path | None = None

    def cli(self, *args: str, password: str | None = None) -> str:
        return medimg_cli(self.env, *args, password=password)

    @contextlib.contextmanager
    def shifted_clock(self) -> Iterator[Callable[[float], None]]:
        """Yield a function that sets how many minutes ahead the server's sign-in clock runs;
        the clock is put right afterwards."""
        if self.clock_file is None:
            raise RuntimeError("this server was started without a movable clock")
        clock_file = self.clock_file

        def shift(minutes: float) -> None:
            clock_file.write_text(f"{minutes}\n")

        try:
            yield shift
        finally:
            shift(0)


# Groups of the identity provider mapped to medimg roles (the site's MEDIMG_ROLE_MAP).
ROLE_MAP = "medimg-viewers=viewer,medimg-analysts=analyst,medimg-admins=admin"
PROJECTS = ("breast", "chest")


def _fresh_workspace(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    extra: Mapping[str, str],
    projects: Sequence[str] = (),
) -> dict[str, str]:
    home = tmp_path_factory.mktemp(f"{name}-home")
    key_file = tmp_path_factory.mktemp(f"{name}-key") / "key"
    env = workspace_env(home, key_file, extra)
    for project in projects:
        medimg_cli(env, "projects", "add", project)
    return env


@pytest.fixture(scope="session")
def oidc_server(
    tmp_path_factory: pytest.TempPathFactory, oidc_provider: OidcProvider
) -> Iterator[SignInServer]:
    """medimg with single sign-on through ``oidc_provider``: an ``[auth]`` section in a
    temporary secrets file, roles from the ``groups`` claim through ``MEDIMG_ROLE_MAP``, and
    projects from the ``projects`` claim alone (no local project or account exists)."""
    port = _free_port()
    client_id, client_secret = oidc_provider.register_client(
        f"http://localhost:{port}/oauth2callback"
    )
    env = _fresh_workspace(tmp_path_factory, "oidc", {"MEDIMG_ROLE_MAP": ROLE_MAP})
    secrets_file = tmp_path_factory.mktemp("oidc-secrets") / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "http://localhost:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
        f'client_id = "{client_id}"\n'
        f'client_secret = "{client_secret}"\n'
        f'server_metadata_url = "{oidc_provider.metadata_url}"\n'
    )
    secrets_file.chmod(0o600)
    with medimg_server(env, port, secrets_file=secrets_file) as url:
        yield SignInServer(url, env)


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Open pages in browser contexts of their own (separate cookies: separate users)."""
    contexts: list[BrowserContext] = []

    def make() -> Page:
        context = browser.new_context(
            viewport={"width": 1280, "height": 800}, accept_downloads=True
        )
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


# Local accounts of the ``local_server`` workspace: name -> (role, project). Each test signs in
# as its own user, so that one test's failed attempts never lock another's account.
LOCAL_PASSWORD = "e2e-correct-horse-battery"
LOCAL_USERS = {
    "ada": ("admin", "breast"),  # added first; the command line then acts as her
    "nora": ("analyst", "breast"),
    "otto": ("viewer", "chest"),
}
LOCKOUT_ATTEMPTS = 2
IDLE_MINUTES = 5


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignInServer]:
    """medimg with local accounts (created with ``medimg users add --password-stdin``); an
    account locks after ``LOCKOUT_ATTEMPTS`` failed sign-ins in a row, a session ends after
    ``IDLE_MINUTES`` without activity, and the server's sign-in clock can be moved forward
    (:meth:`SignInServer.shift_clock`)."""
    env = _fresh_workspace(
        tmp_path_factory,
        "local",
        {
            "MEDIMG_LOCKOUT_ATTEMPTS": str(LOCKOUT_ATTEMPTS),
            "MEDIMG_LOCKOUT_MINUTES": "15",
            "MEDIMG_SESSION_IDLE_MINUTES": str(IDLE_MINUTES),
        },
        PROJECTS,
    )
    for name, (role, project) in LOCAL_USERS.items():
        medimg_cli(
            env,
            "users",
            "add",
            name,
            "--role",
            role,
            "--project",
            project,
            "--password-stdin",
            password=LOCAL_PASSWORD,
        )
        env.setdefault("MEDIMG_USER", name)
    clock_file = Path(env["MEDIMG_HOME"]) / "clock-shift-minutes"
    with medimg_server(env, _free_port(), clock_file=clock_file) as url:
        yield SignInServer(url, env, clock_file)
