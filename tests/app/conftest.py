"""Shared AppTest fixtures: an isolated workspace, the app opened on a page, test tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit import config
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from medimg_core import compute
from medimg_core.jobs import JobManager
from medimg_core.tables.loading import load_sample
from medimg_core.ui import jobs

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"

# AppTest stops a script run after a per-run timeout. It is set far above any real run so that
# a busy machine never turns into a failing test; it only catches a script that hangs.
RUN_TIMEOUT = 900


@pytest.fixture(autouse=True)
def route_through_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``AppTest.switch_page`` run ``app.py`` (router, sidebar, error boundary) every time.

    AppTest resets ``PagesManager.uses_pages_directory`` before each run; with a ``pages/`` folder
    beside ``app.py`` Streamlit then takes its legacy multipage path and runs the page file on
    its own. A real server leaves that path at the first ``st.navigation`` call, so tests pin it
    off to see what users see.
    """
    original = PagesManager.__init__

    def init(self: PagesManager, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture(autouse=True)
def localhost_server() -> Iterator[None]:
    """Serve as ``make run`` does, on localhost (AppTest leaves ``server.address`` unset, which on
    a real server means every network interface and would refuse single-user mode)."""
    before = config.get_option("server.address")
    config.set_option("server.address", "localhost")
    yield
    config.set_option("server.address", before)


@pytest.fixture(scope="module")
def job_manager() -> Iterator[JobManager]:
    """The server's job manager for a module's tests: a local cluster of two worker processes,
    started by the module's first job (modules that train nothing start nothing)."""
    manager = JobManager(compute.Scheduler(local_workers=2))
    yield manager
    manager.close()


@pytest.fixture(autouse=True)
def server_jobs(job_manager: JobManager, monkeypatch: pytest.MonkeyPatch) -> JobManager:
    """Pages reach the module's job manager (``st.cache_resource`` would keep one per process,
    with a cluster nobody closes)."""
    monkeypatch.setattr(jobs, "manager", lambda: job_manager)
    return job_manager


def finish_training(at: AppTest) -> AppTest:
    """After a click on Train: wait for the session's training job, show its outcome, and open
    its run with the page's "Open this run" (a browser that stays on the page opens it by
    itself; AppTest has no timer to run the page's follower)."""
    if jobs.TRAIN_JOB not in at.session_state:  # refused before anything was queued
        return at
    job_id = at.session_state[jobs.TRAIN_JOB]
    jobs.manager().wait(job_id)
    at.run()
    if [b for b in at.button if b.key == "train_job_open"]:
        at.button(key="train_job_open").click().run()
    return at


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty medimg workspace for this test, and unexpected exceptions raised, not hidden."""
    home = tmp_path / "medimg-home"
    monkeypatch.setenv("MEDIMG_HOME", str(home))
    monkeypatch.setenv("MEDIMG_RAISE", "1")
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    return home


@pytest.fixture
def open_app(app_env: Path) -> Callable[..., AppTest]:
    """Open the app (the router, as a user sees it) on a page: ``open_app("pages/clean.py")``."""

    def open_page(page: str | None = None) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)
        if page is not None:
            at.switch_page(page)
        at.run()
        return at

    return open_page


def messy_frame() -> pd.DataFrame:
    """200 sample cases with what real tables have: gaps, a quality flag, names, repeats.

    25 rows miss ``mean texture``; ``qc`` is "poor" for about a quarter of the rows;
    ``patient_name`` identifies a person; row 3 appears twice; row 5 appears again with the
    other diagnosis under a new ID (a conflict: kept as a hard case).
    """
    sample = load_sample().frame
    df = sample.iloc[:200, :8].copy()
    df["diagnosis"] = sample["diagnosis"].iloc[:200]
    rng = np.random.default_rng(0)
    df.loc[rng.choice(200, 25, replace=False), "mean texture"] = np.nan
    df["qc"] = rng.choice(["good", "good", "good", "poor"], 200)
    df["patient_name"] = [f"Person {i}" for i in range(200)]
    flipped = df.iloc[[5]].copy()
    flipped["diagnosis"] = "benign" if flipped["diagnosis"].iloc[0] == "malignant" else "malignant"
    flipped["case_id"] = "WDBC-X001"
    return pd.concat([df, df.iloc[[3]], flipped], ignore_index=True)


@pytest.fixture
def messy_csv() -> bytes:
    """:func:`messy_frame` as CSV bytes, as a user would upload it."""
    return messy_frame().to_csv(index=False).encode("utf-8")


def upload(at: AppTest, data: bytes, name: str, key: str = "upload") -> AppTest:
    """Put a file into a file uploader of the Data page and rerun."""
    at.file_uploader(key=key).set_value((name, data, "application/octet-stream"))
    return at.run()


def metric_values(at: AppTest) -> dict[str, str]:
    """The page's metrics: label -> displayed value."""
    return {m.label: str(m.value) for m in at.metric}


def as_int(text: str) -> int:
    """A displayed count ("1,234") as a number."""
    return int(text.replace(",", ""))


def linked_pages(at: AppTest) -> set[str]:
    """Stems of the page files that the page's ``st.page_link``s point to (e.g. ``{"data"}``)."""
    registered = getattr(at, "_registered_pages", {}) or {}
    stems = set()
    for link in at.get("page_link"):
        info = registered.get(link.proto.page_script_hash, {})
        path = info.get("script_path") or link.proto.page
        stems.add(Path(str(path)).stem)
    return stems
