"""Every table and image file of the hostile corpus uploaded through the Data page (issue 12).

Per file: the page raises nothing (``MEDIMG_RAISE=1`` turns an unexpected error into an
exception here); a file the corpus expects refused shows exactly one ``st.error`` that names the
problem (not the "unexpected problem" boundary) and leaves nothing in the workspace; an accepted
file becomes the session's table and shows no error. Files the corpus feeds to ``medimg train``
attack training, which the Data page does not do: they must load or be refused with one error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.ui import state
from tests.app.conftest import upload
from tests.hostile.corpus import PAYLOAD_MARKER, LazyCorpus, build_corpus
from tests.hostile.test_cli_corpus import MAX_GROWTH, files_under, marks, workspace_growth

PAGE = "pages/data.py"
CASES = [
    case
    for case in build_corpus(Path("hostile-corpus"), ("table", "images"), dry_run=True)
    if case.data_page
]
# The error boundary's words for a bug (medimg_core.ui.errors): never shown for bad input.
BUG_WORDS = ("unexpected problem", "Traceback")


# Cases that still fail until another engineer's fix lands (issue 12): name -> who is fixing.
# Strict, so a case that starts passing fails the suite until it is removed from here.
KNOWN_FAILURES: dict[str, str] = {}
"""Corpus cases that fail until their fix lands (strict xfail), by name."""


def params() -> list[object]:
    return [
        pytest.param(case.name, id=case.name, marks=marks(case, KNOWN_FAILURES)) for case in CASES
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> LazyCorpus:
    return LazyCorpus(tmp_path_factory.mktemp("hostile-page"))


@pytest.mark.parametrize("name", params())
def test_upload(
    corpus: LazyCorpus, open_app: Callable[..., AppTest], app_env: Path, name: str
) -> None:
    case = corpus.case(name)
    at = open_app(PAGE)
    if "images" in case.channels:
        at.radio(key="data_kind").set_value("images").run()
        key = "upload_images"
    else:
        key = "upload"
    before = files_under(app_env)
    at = upload(at, case.path.read_bytes(), case.path.name, key=key)

    assert not at.exception, f"{name}: {[e.value for e in at.exception]}"
    errors = [e.value for e in at.error]
    for text in errors:
        assert not any(word in text for word in BUG_WORDS), f"{name}: {text}"
    if case.secret is not None:
        shown = " ".join(
            str(e.value)
            for kind in ("markdown", "caption", "error", "warning", "info")
            for e in at.get(kind)
        )
        assert case.secret not in shown, f"{name}: the DICOM patient name is shown"
    assert not (case.path.parent.parent / PAYLOAD_MARKER).exists()
    after = files_under(app_env)
    growth = workspace_growth(before, after)
    assert growth <= MAX_GROWTH, f"{name}: the workspace grew by {growth:,} bytes"
    loaded = state.TABLE in at.session_state
    if case.command == "train":
        # The attack is on training (refused on the Train page): loading it may work, or
        # say with one error what is wrong (e.g. no usable label column).
        assert len(errors) <= 1, f"{name}: {errors}"
        return
    if case.expect == "refused":
        assert len(errors) == 1, f"{name} ({case.attacks}): expected one error, got {errors}"
        assert len(errors[0]) > 20, errors[0]
        assert not loaded, f"{name}: a refused file became the table"
        left = sorted(set(after) - set(before))
        assert not left, f"{name}: refused upload left files in the workspace: {left[:5]}"
    else:
        assert errors == [], f"{name} ({case.attacks}) was refused: {errors}"
        assert loaded, f"{name}: accepted but no table in the session"
