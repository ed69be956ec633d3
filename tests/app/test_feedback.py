"""Readers' feedback through the dashboard: marked on Explain and Predict, counted on Runs."""

from __future__ import annotations

from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from medimg_core.access import SINGLE_USER, Actor, Role
from medimg_core.privacy import pseudonym_key
from medimg_core.reporting.feedback import scored_case_ref
from medimg_core.store.registry import FEEDBACK_NOTE_LIMIT, Registry
from medimg_core.ui import explaining, state

EXPLAIN = "pages/explain.py"
RUNS = "pages/runs.py"


def trained(open_app: Callable[..., AppTest]) -> AppTest:
    """The sample model trained and recorded (through the Evaluate guard)."""
    at = open_app("pages/evaluate.py")
    at.button(key="guard_sample_evaluate").click().run()
    assert not at.exception
    assert at.session_state[state.ACTIVE].run_id is not None
    return at


def feedback_keys(at: AppTest, kind: str) -> str:
    [key] = [
        w.key
        for w in (*at.radio, *at.text_area, *at.button)
        if w.key and w.key.startswith(f"explain_feedback_{kind}_")
    ]
    return str(key)


def test_agree_on_explain_is_stored_and_counted_on_runs(
    open_app: Callable[..., AppTest],
) -> None:
    at = trained(open_app)
    run_id = at.session_state[state.ACTIVE].run_id
    at.switch_page(EXPLAIN).run()
    assert not at.exception
    note = "Margin looks benign to me, but the call fits the numbers."
    at.radio(key=feedback_keys(at, "verdict")).set_value("agree")
    at.text_area(key=feedback_keys(at, "note")).input(note)
    at.run()
    at.button(key=feedback_keys(at, "record")).click().run()
    assert not at.exception
    assert not at.error
    assert any(s.value.startswith("Recorded: agree.") for s in at.success)
    # Reopening the case shows the reader's own mark, with the note and a readable date.
    [marked] = [c.value for c in at.caption if c.value.startswith("You marked this case")]
    assert "**agree**" in marked and "Margin looks benign to me" in marked
    assert " UTC" in marked

    with Registry() as registry:
        [record] = registry.list_feedback(SINGLE_USER, run_id)
    active = at.session_state[state.ACTIVE]
    ids = {str(v) for v in active.cases[active.model.roles.id]}
    assert record.verdict == "agree" and record.source == "explain"
    assert record.note == note
    assert record.predicted in {"malignant", "benign"}
    assert record.case_ref.startswith("case-")
    assert record.case_ref.removeprefix("case-") not in ids

    at.switch_page(RUNS).run()
    assert not at.exception
    metrics = {m.label: str(m.value) for m in at.metric}
    assert metrics["Cases judged"] == "1"
    assert metrics["Agree"] == "1"
    assert metrics["Disagree"] == "0"
    assert metrics["Agreement"] == "100%"
    assert any(
        "1 case judged by 1 reader: 1 agree, 0 disagree, 0 unsure." in c.value for c in at.caption
    )


def test_a_too_long_note_is_refused_with_a_clear_message(
    open_app: Callable[..., AppTest],
) -> None:
    at = trained(open_app)
    run_id = at.session_state[state.ACTIVE].run_id
    at.switch_page(EXPLAIN).run()
    at.radio(key=feedback_keys(at, "verdict")).set_value("disagree")
    at.text_area(key=feedback_keys(at, "note")).input("x" * (FEEDBACK_NOTE_LIMIT + 1))
    at.run()
    at.button(key=feedback_keys(at, "record")).click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert f"keep it to {FEEDBACK_NOTE_LIMIT}" in error
    assert "identifying details" in error
    with Registry() as registry:
        assert registry.list_feedback(SINGLE_USER, run_id) == []


def test_disagree_on_predict_is_stored_under_a_hash_of_the_values(
    open_app: Callable[..., AppTest],
) -> None:
    at = trained(open_app)
    active = at.session_state[state.ACTIVE]
    at.switch_page("pages/predict.py").run()
    at.button(key="predict_try_sample").click().run()
    assert not at.exception
    at.selectbox(key="predict_feedback_case").set_value(2).run()
    [verdict] = [r for r in at.radio if r.key and r.key.startswith("predict_feedback_verdict_")]
    case_ref = verdict.key.removeprefix("predict_feedback_verdict_")
    verdict.set_value("disagree").run()
    at.button(key=f"predict_feedback_record_{case_ref}").click().run()
    assert not at.exception and not at.error
    with Registry() as registry:
        [record] = registry.list_feedback(SINGLE_USER, active.run_id)
    assert record.source == "predict" and record.verdict == "disagree"
    assert record.case_ref == case_ref and case_ref.startswith("scored-")
    # The reference is the keyed hash of the third scored case's feature values, not its ID.
    held_out = at.session_state[explaining.NEW_CASES].frame
    row = held_out.iloc[2]
    values = {c: row[c] for c in active.model.feature_columns}
    assert case_ref == scored_case_ref(values, pseudonym_key())
    assert str(row["case_id"]) not in case_ref
    [table] = [d.value for d in at.dataframe if "decision" in d.value.columns]
    assert record.predicted == str(table["decision"].iloc[2])
    assert any(c.value.startswith("You marked this case: **disagree**") for c in at.caption)


def test_a_viewer_may_record_a_judgement(open_app: Callable[..., AppTest]) -> None:
    at = trained(open_app)
    run_id = at.session_state[state.ACTIVE].run_id
    at.session_state[state.ACTOR] = Actor("vera", Role.VIEWER, frozenset({"default"}), "default")
    at.switch_page(EXPLAIN).run()
    assert not at.exception
    at.radio(key=feedback_keys(at, "verdict")).set_value("unsure").run()
    assert not at.button(key=feedback_keys(at, "record")).disabled
    at.button(key=feedback_keys(at, "record")).click().run()
    assert not at.exception and not at.error
    with Registry() as registry:
        [record] = registry.list_feedback(SINGLE_USER, run_id)
    assert (record.username, record.verdict, record.note) == ("vera", "unsure", "")
    at.switch_page(RUNS).run()
    metrics = {m.label: str(m.value) for m in at.metric}
    assert metrics["Cases judged"] == "1" and metrics["Agreement"] == "n/a"
    assert any(
        "1 case judged by 1 reader: 0 agree, 0 disagree, 1 unsure." in c.value for c in at.caption
    )
