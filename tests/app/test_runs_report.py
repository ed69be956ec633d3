"""The Runs page's Report section: stating what a run is for, and the report downloads."""

from __future__ import annotations

from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from medimg_core.access import SINGLE_USER, Actor, Role
from medimg_core.store.audit import AuditFilter, AuditTrail
from medimg_core.store.registry import Registry
from medimg_core.ui import state
from medimg_core.ui.report import report_download

PAGE = "pages/runs.py"


def with_a_run(open_app: Callable[..., AppTest]) -> AppTest:
    at = open_app("pages/evaluate.py")
    at.button(key="guard_sample_evaluate").click().run()
    assert not at.exception
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def test_the_report_can_be_downloaded_as_pdf_and_html(open_app: Callable[..., AppTest]) -> None:
    at = with_a_run(open_app)
    run_id = at.session_state[state.ACTIVE].run_id
    buttons = {b.proto.label: b.proto for b in at.get("download_button")}
    assert "Download PDF" in buttons and "Download HTML" in buttons
    assert not buttons["Download PDF"].disabled
    # What the buttons download is built on click; build it here as the click would.
    pdf = report_download(SINGLE_USER, run_id, "pdf", "local")()
    assert pdf.startswith(b"%PDF-")
    page = report_download(SINGLE_USER, run_id, "html", "local")().decode("utf-8")
    assert "Intended use" in page and "not stated" in page
    with AuditTrail() as trail:
        entries = trail.entries(AuditFilter(action="report"))
    assert list(entries["object"]) == [run_id, run_id]


def test_a_failed_report_downloads_the_reason(open_app: Callable[..., AppTest]) -> None:
    with_a_run(open_app)
    outsider = Actor("bea", Role.ADMIN, frozenset({"b"}), "b")
    data = report_download(outsider, "20260101-000000-000000-abcdef", "pdf", "local")()
    assert data.decode().startswith("The model report could not be made: no such run")


def test_the_owner_states_what_the_run_is_for(open_app: Callable[..., AppTest]) -> None:
    at = with_a_run(open_app)
    run_id = at.session_state[state.ACTIVE].run_id
    at.text_area(key=f"report_ctx_intended_use_{run_id}").input("Triage of aspirates")
    at.text_area(key=f"report_ctx_reference_standard_{run_id}").input("Histology")
    submit = next(b for b in at.button if b.label == "Save what this run is for")
    submit.click().run()
    assert not at.exception
    assert any("the report now states it" in s.value for s in at.success)
    with Registry() as registry:
        context = registry.get_run_context(SINGLE_USER, run_id)
    assert context is not None
    assert context.intended_use == "Triage of aspirates"
    assert context.reference_standard == "Histology"
    assert context.target_population == ""
    at.run()
    assert at.text_area(key=f"report_ctx_intended_use_{run_id}").value == "Triage of aspirates"
