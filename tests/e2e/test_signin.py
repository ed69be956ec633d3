"""Sign-in in headless Chromium: single sign-on through a real OpenID Connect provider started
by the test (oidc-provider-mock), and local accounts.

Single sign-on: the provider's form is where a user is chosen (its subject); the claims the
provider puts in the token (e-mail, ``groups`` for the role, ``projects``) are set by the test
beforehand. Users sign in each in a browser context of their own, at the same time, and medimg
must keep them apart: each sees only their project, a viewer cannot train or delete, every
action lands in the audit trail an admin reads, and signing out ends the session.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from tests.e2e.conftest import (
    IDLE_MINUTES,
    LOCAL_PASSWORD,
    LOCKOUT_ATTEMPTS,
    OidcProvider,
    SignInServer,
    assert_no_exception,
    click,
    go_to,
    rerun,
    screenshot,
    settle,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

PAGE_MS = 300_000
TRAINING_MS = 900_000

SIDEBAR = "[data-testid=stSidebar]"
MAIN = "[data-testid=stMain]"


def sidebar_text(page: Page) -> str:
    return str(page.inner_text(SIDEBAR))


def current_project(page: Page) -> str:
    """The project chosen in the sidebar's project switch."""
    return str(page.locator(".st-key-sidebar_project input[role=combobox]").first.input_value())


def nav_titles(page: Page) -> list[str]:
    """The titles of the pages the sidebar offers."""
    links = page.locator("[data-testid=stSidebarNav] a").all_inner_texts()
    return [t.strip().splitlines()[-1] for t in links]  # the icon's ligature name comes first


def sign_in_screen(page: Page) -> None:
    """Wait for the sign-in screen (no page of the app is offered before signing in)."""
    page.get_by_role("heading", name=re.compile("Sign in", re.I)).first.wait_for(timeout=60_000)
    settle(page, 60_000)
    assert page.locator("[data-testid=stSidebarNav] a").count() == 0
    assert_no_exception(page)


def oidc_sign_in(
    page: Page,
    server: SignInServer,
    provider: OidcProvider,
    *,
    sub: str,
    email: str,
    groups: Sequence[str],
    projects: Sequence[str],
) -> None:
    """Sign in at the provider's form as ``sub``, whose token carries the given claims."""
    provider.set_user(sub, {"email": email, "groups": list(groups), "projects": list(projects)})
    page.goto(server.url)
    sign_in_screen(page)
    page.get_by_role("button", name=re.compile("Sign in with", re.I)).first.click()
    page.wait_for_selector("input[name=sub]", timeout=60_000)
    page.fill("input[name=sub]", sub)
    page.locator("button[type=submit]", has_text="Authorize").click()
    page.wait_for_url(re.compile(re.escape(server.url)), timeout=60_000)
    page.locator(SIDEBAR).get_by_text(email).first.wait_for(timeout=PAGE_MS)
    settle(page, PAGE_MS)
    assert_no_exception(page)


def oidc_sign_out(page: Page, server: SignInServer) -> None:
    """Sign out in the sidebar; medimg ends the session at the provider too (its end-session
    page, confirmed here), which sends the browser back to medimg's sign-in screen."""
    page.locator(".st-key-sidebar_signout button").click()
    page.get_by_role("button", name="End session").click(timeout=60_000)
    page.wait_for_url(re.compile(re.escape(server.url)), timeout=60_000)
    sign_in_screen(page)


def local_sign_in(page: Page, user: str, password: str) -> None:
    """Type a user name and password into the sign-in form and submit it."""
    page.locator(".st-key-signin_user input").fill(user)
    page.locator(".st-key-signin_password input").fill(password)
    click(page, "signin_submit", timeout=PAGE_MS)


def error_text(page: Page) -> str:
    errors = page.locator("[data-testid=stAlertContentError]")
    errors.first.wait_for(timeout=PAGE_MS)
    return " ".join(errors.all_inner_texts())


def audit_csv(page: Page) -> pd.DataFrame:
    """The audit trail as the Audit page exports it (CSV download)."""
    with page.expect_download(timeout=PAGE_MS) as download_info:
        page.locator(".st-key-audit_download button").first.click()
    raw = Path(download_info.value.path()).read_text(encoding="utf-8-sig")
    return pd.read_csv(io.StringIO(raw), dtype=str, keep_default_na=False)


def test_single_sign_on_shows_the_signed_in_user(
    oidc_server: SignInServer, oidc_provider: OidcProvider, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(oidc_server.url)
    sign_in_screen(page)
    assert "localhost" in page.inner_text(MAIN)  # the button names the identity provider
    screenshot(page, "20-sign-in-sso")

    oidc_sign_in(
        page,
        oidc_server,
        oidc_provider,
        sub="smoke",
        email="smoke.test@hospital.example",
        groups=["staff", "medimg-analysts"],
        projects=["breast"],
    )
    side = sidebar_text(page)
    assert "smoke.test@hospital.example" in side
    assert "analyst" in side.lower()
    assert current_project(page) == "breast"
    assert "Train" in nav_titles(page)
    screenshot(page, "21-signed-in-sidebar")


def test_single_sign_on_without_a_medimg_group_is_refused(
    oidc_server: SignInServer, oidc_provider: OidcProvider, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    oidc_provider.set_user(
        "olga", {"email": "olga@hospital.example", "groups": ["staff"], "projects": ["breast"]}
    )
    page.goto(oidc_server.url)
    sign_in_screen(page)
    page.get_by_role("button", name=re.compile("Sign in with", re.I)).first.click()
    page.fill("input[name=sub]", "olga")
    page.locator("button[type=submit]", has_text="Authorize").click()
    page.wait_for_url(re.compile(re.escape(oidc_server.url)), timeout=60_000)
    # Signed in at the provider, but no group maps to a medimg role: no page of the app opens.
    message = error_text(page)
    assert "olga@hospital.example is signed in but has no medimg role" in message
    assert "'groups'" in message
    assert "staff" not in message  # the claim's values are not shown
    assert page.locator("[data-testid=stSidebarNav] a").count() == 0
    assert_no_exception(page)


def choose(page: Page, key: str, option: str) -> None:
    """Pick the option starting with ``option`` in the select box with widget key ``key``."""
    box = page.locator(f".st-key-{key} input[role=combobox]")
    item = page.get_by_role("option").filter(has_text=re.compile(f"^{re.escape(option)}")).first
    box.click()
    item.wait_for(timeout=30_000)
    rerun(page, item.click, timeout=PAGE_MS)
    assert box.input_value().startswith(option)


def train_quick_model(page: Page) -> str:
    """Load the built-in sample, clean it, train a logistic regression (200 bootstrap
    replicates); return the run ID the Runs page shows for it."""
    click(page, "use_sample", timeout=PAGE_MS)
    page.get_by_text("Roles confirmed.").wait_for(timeout=PAGE_MS)
    go_to(page, "Clean", timeout=PAGE_MS)
    go_to(page, "Train", timeout=PAGE_MS)
    choose(page, "train_model", "Logistic regression")
    thumb = page.locator(".st-key-train_n_boot").get_by_role("slider")
    thumb.focus()
    rerun(page, lambda: page.keyboard.press("Home"), timeout=PAGE_MS)
    assert thumb.get_attribute("aria-valuetext") == "200"
    click(page, "train_go", timeout=TRAINING_MS)
    page.wait_for_selector("h3:has-text('Model in use')", timeout=TRAINING_MS)
    assert_no_exception(page)
    go_to(page, "Runs", timeout=PAGE_MS)
    picked = page.locator(".st-key-runs_pick input[role=combobox]").first.input_value()
    found = re.match(r"^(\S+) — ", picked)
    assert found, picked
    return found.group(1)


def test_two_users_of_different_projects_and_roles_at_once(
    oidc_server: SignInServer, oidc_provider: OidcProvider, new_page: Callable[[], Page]
) -> None:
    analyst, viewer = new_page(), new_page()
    oidc_sign_in(
        analyst,
        oidc_server,
        oidc_provider,
        sub="ann",
        email="ann.analyst@hospital.example",
        groups=["medimg-analysts"],
        projects=["breast"],
    )
    oidc_sign_in(
        viewer,
        oidc_server,
        oidc_provider,
        sub="vic",
        email="vic.viewer@hospital.example",
        groups=["medimg-viewers"],
        projects=["chest"],
    )
    # Both sessions are open at once, each with its own user, role and project.
    assert "ann.analyst@hospital.example" in sidebar_text(analyst)
    assert "vic.viewer@hospital.example" not in sidebar_text(analyst)
    assert "vic.viewer@hospital.example" in sidebar_text(viewer)
    assert "viewer" in sidebar_text(viewer)
    assert current_project(analyst) == "breast"
    assert current_project(viewer) == "chest"

    # The viewer is offered no step that changes data: no Data, Clean or Train page.
    assert "Train" in nav_titles(analyst)
    offered = nav_titles(viewer)
    assert "Runs" in offered
    assert not {"Data", "Clean", "Train"} & set(offered), offered
    assert "Audit" not in offered
    # Nor can an address lead there: the Train page's URL gives the viewer no Train page.
    viewer.goto(f"{oidc_server.url}/train")
    settle(viewer, PAGE_MS)
    assert viewer.locator(".st-key-train_go").count() == 0
    assert "Train is not available to you" in viewer.inner_text(MAIN)
    assert "vic.viewer@hospital.example" in sidebar_text(viewer)

    run_id = train_quick_model(analyst)
    screenshot(analyst, "22-runs-analyst")

    # The viewer of "chest" does not see the run of "breast", even by its ID.
    go_to(viewer, "Runs", timeout=PAGE_MS)
    assert_no_exception(viewer)
    assert run_id not in viewer.content()
    assert viewer.locator(".st-key-runs_pick").count() == 0

    # A viewer of "breast" sees the run but cannot delete it.
    reader = new_page()
    oidc_sign_in(
        reader,
        oidc_server,
        oidc_provider,
        sub="vera",
        email="vera.viewer@hospital.example",
        groups=["medimg-viewers"],
        projects=["breast"],
    )
    go_to(reader, "Runs", timeout=PAGE_MS)
    assert run_id in reader.locator(".st-key-runs_pick").inner_text() or run_id in (
        reader.locator(".st-key-runs_pick input[role=combobox]").first.input_value()
    )
    reader.get_by_text("Delete this run", exact=True).click()
    assert reader.locator(".st-key-runs_delete button").is_disabled()
    assert reader.locator(f".st-key-runs_confirm_{run_id} input").is_disabled()
    refusal = reader.locator(MAIN).get_by_text("can delete this run").inner_text()
    assert "vera.viewer@hospital.example (viewer)" in refusal
    assert_no_exception(reader)
    # What a viewer may do: open the run to evaluate it.
    click(reader, "runs_open_evaluate", timeout=PAGE_MS)
    reader.locator("h1").filter(has=reader.get_by_text("Evaluate", exact=True)).wait_for(
        timeout=PAGE_MS
    )
    assert_no_exception(reader)

    # Signing out ends the session: reloading shows the sign-in screen, not the app.
    oidc_sign_out(analyst, oidc_server)
    analyst.reload()
    sign_in_screen(analyst)
    assert "ann.analyst@hospital.example" not in analyst.content()
    # ... and only that session: the viewer is still signed in.
    go_to(viewer, "Evaluate", timeout=PAGE_MS)
    assert "vic.viewer@hospital.example" in sidebar_text(viewer)

    # An admin of both projects finds every one of these actions on the Audit page.
    admin = new_page()
    oidc_sign_in(
        admin,
        oidc_server,
        oidc_provider,
        sub="adam",
        email="adam.admin@hospital.example",
        groups=["medimg-admins"],
        projects=["breast", "chest"],
    )
    assert "Audit" in nav_titles(admin)
    go_to(admin, "Audit", timeout=PAGE_MS)
    assert_no_exception(admin)
    admin.get_by_text("The audit trail is intact").wait_for(timeout=PAGE_MS)
    screenshot(admin, "23-audit")
    trail = audit_csv(admin)
    done = set(zip(trail["user"], trail["action"], trail["outcome"], strict=True))
    for user in (
        "ann.analyst@hospital.example",
        "vic.viewer@hospital.example",
        "vera.viewer@hospital.example",
        "adam.admin@hospital.example",
    ):
        assert (user, "sign-in", "ok") in done, user
    assert ("ann.analyst@hospital.example", "sign-out", "ok") in done
    assert ("ann.analyst@hospital.example", "clean", "ok") in done
    opened = trail[(trail["action"] == "open run") & (trail["outcome"] == "ok")]
    assert list(zip(opened["user"], opened["object"], strict=True)) == [
        ("vera.viewer@hospital.example", run_id)
    ]
    assert ("vera.viewer@hospital.example", "evaluate", "ok") in done
    # An entry names its object by run ID or content hash only, never by a file name.
    objects = {o for o in trail["object"] if o not in ("", "None")}
    assert objects, "no entry names its object"
    for value in objects:
        assert value == run_id or re.fullmatch(r"[0-9a-f]{64}", value), value
    # Nobody was refused anything: the viewers were never offered what they may not do.
    ours = trail[
        trail["user"].str.endswith(("analyst@hospital.example", "viewer@hospital.example"))
    ]
    assert "refused" not in set(ours["outcome"])
    trained = trail[(trail["action"] == "train") & (trail["outcome"] == "ok")]
    assert list(trained["user"]) == ["ann.analyst@hospital.example"]
    assert list(trained["object"]) == [run_id]
    assert set(trained["project"]) == {"breast"}
    assert set(trained["role"]) == {"analyst"}
    # Switching project in the sidebar: the admin's Runs page then lists "chest" runs only.
    go_to(admin, "Runs", timeout=PAGE_MS)
    assert run_id in admin.locator(".st-key-runs_pick input[role=combobox]").first.input_value()
    choose(admin, "sidebar_project", "chest")
    go_to(admin, "Runs", timeout=PAGE_MS)
    assert current_project(admin) == "chest"
    assert run_id not in admin.content()
    assert admin.locator(".st-key-runs_pick").count() == 0
    assert_no_exception(admin)
    # The core's chain check agrees with the page.
    assert "intact" in oidc_server.cli("audit", "verify").lower()


def locked_until(server: SignInServer, user: str) -> str | None:
    """When ``medimg users list`` says ``user``'s account is locked until, or None."""
    line = next(
        line for line in server.cli("users", "list").splitlines() if line.split()[:1] == [user]
    )
    found = re.search(r"until (\S+ \S+ UTC)", line)
    return found.group(1) if found else None


def test_local_wrong_password_is_refused_with_a_message(
    local_server: SignInServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(local_server.url)
    sign_in_screen(page)
    screenshot(page, "24-sign-in-local")

    local_sign_in(page, "nora", "not-her-password-at-all")
    message = error_text(page)
    assert "Sign-in failed" in message
    assert f"After {LOCKOUT_ATTEMPTS} failed attempts" in message
    assert LOCAL_PASSWORD not in page.content()
    assert page.locator("[data-testid=stSidebarNav] a").count() == 0
    # The form is emptied: the wrong password is not left in the page.
    assert page.locator(".st-key-signin_password input").input_value() == ""

    local_sign_in(page, "nora", LOCAL_PASSWORD)
    page.locator(SIDEBAR).get_by_text("nora").first.wait_for(timeout=PAGE_MS)
    assert "analyst" in sidebar_text(page)
    assert current_project(page) == "breast"
    assert locked_until(local_server, "nora") is None
    assert_no_exception(page)


def test_local_account_locks_after_repeated_failures(
    local_server: SignInServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(local_server.url)
    sign_in_screen(page)
    for attempt in range(LOCKOUT_ATTEMPTS):
        local_sign_in(page, "otto", f"wrong-password-{attempt}")
        assert "Sign-in failed" in error_text(page)
    assert locked_until(local_server, "otto") is not None

    # Locked: not even the right password signs in, and the message says why it may fail.
    local_sign_in(page, "otto", LOCAL_PASSWORD)
    message = error_text(page)
    assert "locked" in message
    assert "ask an admin" in message
    assert page.locator("[data-testid=stSidebarNav] a").count() == 0
    assert_no_exception(page)


def test_local_session_expires_after_the_idle_time(
    local_server: SignInServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(local_server.url)
    sign_in_screen(page)
    local_sign_in(page, "nora", LOCAL_PASSWORD)
    page.locator(SIDEBAR).get_by_text("nora").first.wait_for(timeout=PAGE_MS)

    with local_server.shifted_clock() as shift:
        # Active within the idle time: still signed in, and the idle time starts again.
        shift(IDLE_MINUTES - 1)
        go_to(page, "Runs", timeout=PAGE_MS)
        assert "nora" in sidebar_text(page)
        # Then idle for longer than the idle time: the next click lands on the sign-in screen.
        shift(2 * IDLE_MINUTES)
        link = page.locator("[data-testid=stSidebarNav] a").filter(
            has=page.get_by_text("Evaluate", exact=True)
        )
        rerun(page, link.click, timeout=PAGE_MS)
        sign_in_screen(page)
        notice = page.locator("[data-testid=stAlertContentInfo]").inner_text()
        assert f"after {IDLE_MINUTES} minutes without activity" in notice
        assert "Sign in again" in notice
        assert page.locator(SIDEBAR).get_by_text("nora").count() == 0
        page.reload()
        sign_in_screen(page)
    assert_no_exception(page)
