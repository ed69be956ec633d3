"""AppTests: with IDs shown as pseudonyms, no uploaded patient ID reaches Explain or Predict.

The sample's IDs (``WDBC-0001`` ...) are the raw IDs; every dataframe, text, option, chart and
downloaded CSV of the two pages is searched for them, and the pseudonyms shown must be those
``cases.parquet`` stores (:func:`medimg_core.privacy.pseudonymise_ids` with the workspace key).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.authmode import SignInMode
from medimg_core.privacy import PSEUDONYMISE_IDS_ENV, pseudonym_key, pseudonymise_ids
from medimg_core.tables.loading import load_sample
from medimg_core.ui import auth, explaining, state, widgets
from medimg_core.ui.session import ActiveModel
from tests.app.conftest import APP, RUN_TIMEOUT
from tests.app.test_explain_page import sample_active

RAW_ID = re.compile(r"WDBC-\d{4}")


@pytest.fixture(scope="module")
def active() -> ActiveModel:
    return sample_active()


@pytest.fixture
def csv_exports(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bytes of every CSV the pages offer for download, as the browser would receive them."""
    made: list[bytes] = []
    real = widgets.to_safe_csv

    def spy(df: pd.DataFrame, index: bool = False) -> bytes:
        data = real(df, index=index)
        made.append(data)
        return data

    monkeypatch.setattr(widgets, "to_safe_csv", spy)
    return made


def open_page(page: str, active: ActiveModel, **session: Any) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)
    at.session_state[state.ACTIVE] = active
    for key, value in session.items():
        at.session_state[key] = value
    at.switch_page(page)
    return at.run()


def _frames(at: AppTest) -> Iterator[pd.DataFrame]:
    for element in at.dataframe:
        yield element.value


def shown_text(at: AppTest) -> str:
    """Everything a reader sees on the page, as one text."""
    parts: list[str] = []
    for frame in _frames(at):
        parts.append(frame.to_csv())
        parts.append(" ".join(map(str, frame.index)))
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title"):
        parts.extend(str(e.value) for e in getattr(at, kind))
    for box in at.selectbox:
        parts.extend(str(o) for o in box.options)
        parts.append(str(box.label))
    parts.extend(f"{m.label} {m.value}" for m in at.metric)
    for chart in at.get("plotly_chart"):
        parts.append(json.dumps(json.loads(chart.proto.spec)))
    for button in at.get("download_button"):
        parts.append(f"{button.proto.label} {button.proto.help}")
    return "\n".join(parts)


def stored_pseudonyms(active: ActiveModel) -> set[str]:
    """What ``cases.parquet`` holds in the ID column for these cases."""
    assert active.cases is not None
    return set(pseudonymise_ids(active.cases["case_id"], pseudonym_key()))


def test_explain_shows_pseudonyms_only(
    app_env: Path,
    active: ActiveModel,
    monkeypatch: pytest.MonkeyPatch,
    csv_exports: list[bytes],
) -> None:
    monkeypatch.setenv(PSEUDONYMISE_IDS_ENV, "1")
    # The SHAP-values CSV is built when its button is clicked: keep what the click would call.
    deferred: list[Callable[[], bytes]] = []
    real_csv = explaining.shap_values_csv

    def keep(explanation: Any) -> Callable[[], bytes]:
        deferred.append(real_csv(explanation))
        return deferred[-1]

    monkeypatch.setattr(explaining, "shap_values_csv", keep)
    at = open_page("pages/explain.py", active)
    assert not at.exception
    at.radio(key="explain_pick").set_value("id").run()
    assert not at.exception
    text = shown_text(at)
    assert RAW_ID.findall(text) == []
    stored = stored_pseudonyms(active)
    case_box = next(b for b in at.selectbox if b.key.startswith("explain_case_"))
    listed = {str(o).split(" · ")[0] for o in case_box.options}
    assert listed and listed <= stored
    # The report is named after the same pseudonym, not a pseudonym of a pseudonym.
    references = re.findall(r"case-([0-9a-f]{16})", text)
    assert references and set(references) <= stored
    assert any("keyed pseudonyms" in c.value for c in at.caption)
    # The SHAP values download names no patient either.
    assert deferred
    csv_exports.extend(build() for build in deferred)
    assert csv_exports and all(RAW_ID.findall(d.decode("utf-8")) == [] for d in csv_exports)


def test_explain_shows_uploaded_ids_in_single_user_mode(
    app_env: Path, active: ActiveModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PSEUDONYMISE_IDS_ENV, raising=False)
    at = open_page("pages/explain.py", active)
    assert not at.exception
    assert RAW_ID.search(shown_text(at))
    assert not any("keyed pseudonyms" in c.value for c in at.caption)


def _say_the_setting() -> None:
    import streamlit as st

    from medimg_core.ui import explaining

    st.markdown(f"pseudonyms: {explaining.ids_as_pseudonyms()}")


@pytest.mark.parametrize(
    ("mode", "setting", "expected"),
    [
        (SignInMode.LOCAL.value, None, True),
        (SignInMode.OIDC.value, None, True),
        (SignInMode.SINGLE_USER.value, None, False),
        (None, None, False),
        (SignInMode.LOCAL.value, "0", False),
        (SignInMode.SINGLE_USER.value, "1", True),
    ],
)
def test_ids_are_pseudonymised_by_default_when_the_session_runs_with_sign_in(
    app_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str | None,
    setting: str | None,
    expected: bool,
) -> None:
    if setting is None:
        monkeypatch.delenv(PSEUDONYMISE_IDS_ENV, raising=False)
    else:
        monkeypatch.setenv(PSEUDONYMISE_IDS_ENV, setting)
    at = AppTest.from_function(_say_the_setting, default_timeout=RUN_TIMEOUT)
    if mode is not None:
        at.session_state[auth.MODE] = mode
    at.run()
    assert not at.exception
    assert at.markdown[0].value == f"pseudonyms: {expected}"


def new_cases(n: int = 12) -> bytes:
    frame = load_sample().frame.iloc[:n].drop(columns=["diagnosis"]).copy()
    frame.loc[frame.index[0], "mean radius"] = None  # one gap: imputed, still scored
    return frame.to_csv(index=False).encode("utf-8")


def test_predict_table_and_csv_hold_pseudonyms(
    app_env: Path,
    active: ActiveModel,
    monkeypatch: pytest.MonkeyPatch,
    csv_exports: list[bytes],
) -> None:
    monkeypatch.setenv(PSEUDONYMISE_IDS_ENV, "1")
    at = open_page("pages/predict.py", active)
    at.file_uploader(key="predict_upload").set_value(("new.csv", new_cases(), "text/csv")).run()
    assert not at.exception
    text = shown_text(at)
    assert RAW_ID.findall(text) == []
    raw = load_sample().frame["case_id"].iloc[:12]
    expected = list(pseudonymise_ids(raw, pseudonym_key()))
    table = next(f for f in _frames(at) if "decision" in f.columns)
    assert list(table["case_id"]) == expected
    assert csv_exports, "the page offered no CSV"
    exported = pd.read_csv(io.BytesIO(csv_exports[-1]), dtype=str)
    assert list(exported["case_id"]) == expected
    assert all(RAW_ID.findall(data.decode("utf-8")) == [] for data in csv_exports)
    assert any("keyed pseudonyms" in c.value for c in at.caption)


def test_predict_held_out_demo_is_not_pseudonymised_twice(
    app_env: Path,
    active: ActiveModel,
    monkeypatch: pytest.MonkeyPatch,
    csv_exports: list[bytes],
) -> None:
    monkeypatch.setenv(PSEUDONYMISE_IDS_ENV, "1")
    at = open_page("pages/predict.py", active)
    at.button(key="predict_try_sample").click().run()
    assert not at.exception
    assert RAW_ID.findall(shown_text(at)) == []
    table = next(f for f in _frames(at) if "decision" in f.columns)
    assert set(table["case_id"]) <= stored_pseudonyms(active)
    exported = pd.read_csv(io.BytesIO(csv_exports[-1]), dtype=str)
    assert set(exported["case_id"]) <= stored_pseudonyms(active)


def test_predict_without_the_setting_shows_uploaded_ids(
    app_env: Path, active: ActiveModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PSEUDONYMISE_IDS_ENV, "0")
    at = open_page("pages/predict.py", active)
    at.file_uploader(key="predict_upload").set_value(("new.csv", new_cases(), "text/csv")).run()
    assert not at.exception
    table = next(f for f in _frames(at) if "decision" in f.columns)
    assert list(table["case_id"]) == list(load_sample().frame["case_id"].iloc[:12])


def test_a_pseudonymised_session_matches_a_reopened_run(
    app_env: Path, active: ActiveModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reopened run already holds pseudonyms: shown as stored, never pseudonymised again."""
    monkeypatch.setenv(PSEUDONYMISE_IDS_ENV, "1")
    assert active.cases is not None
    stored = active.cases.copy()
    stored["case_id"] = pseudonymise_ids(stored["case_id"], pseudonym_key())
    reopened = ActiveModel(
        model=active.model,
        card=active.card,
        run_id=None,
        cv=None,
        test=None,
        cases=stored,
        ids_pseudonymous=True,
    )
    at = open_page("pages/predict.py", reopened)
    at.button(key="predict_try_sample").click().run()
    assert not at.exception
    table = next(f for f in _frames(at) if "decision" in f.columns)
    assert set(table["case_id"]) <= set(stored["case_id"])
