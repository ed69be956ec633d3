"""External validation in the dashboard: the Evaluate page's section (evaluate a new site's file,
record it, calibration and feature shift, save a recalibrated version) and the Runs page's list
of a run's recorded external evaluations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from medimg_core.access import Action, Actor
from medimg_core.errors import DataError, MedimgError
from medimg_core.modelling.calibration import calibration_line
from medimg_core.modelling.evaluation import summary_frame
from medimg_core.modelling.shift import SHIFT_CONVENTION
from medimg_core.reporting.external import (
    OPTIMISM_NOTE,
    ExternalValidation,
    RecalibratedRun,
    evaluation_history,
    save_recalibrated_run,
    validate_external,
)
from medimg_core.reporting.figures.evaluation import calibration_figure
from medimg_core.reporting.figures.shift import shift_figure
from medimg_core.store import guarded
from medimg_core.store.persistence import LoadedModel
from medimg_core.store.registry import RunRecord
from medimg_core.ui import cache, widgets
from medimg_core.ui.auth import client_address, current_actor
from medimg_core.ui.session import ActiveModel

__all__ = [
    "EXTERNAL_RESULT",
    "TABLE_TYPES",
    "render_external_validation",
    "render_run_evaluations",
    "shift_frame",
]

TABLE_TYPES = ["csv", "tsv", "txt", "xlsx", "xls", "parquet"]
EXTERNAL_RESULT = "external_validation_result"
"""Session key of the last external validation (for the model it was made with)."""
_RECALIBRATED = "external_recalibrated"
EXTERNAL_N_BOOT = 1000

_FLAG_WORDS = {
    "notable": "notable shift",
    "small": "small shift",
    "none": "no meaningful shift",
    "not estimable": "cannot be compared",
}


@dataclass(frozen=True)
class _Done:
    model_key: str
    dataset_name: str
    validation: ExternalValidation


def shift_frame(validation: ExternalValidation) -> pd.DataFrame:
    """The feature shift table, largest shift first, with plain-language flags."""
    rows: list[dict[str, Any]] = []
    for s in validation.shift:
        rows.append(
            {
                "feature": s.feature if s.category is None else f"{s.feature} = {s.category}",
                "shift": _FLAG_WORDS.get(s.flag, s.flag),
                "SMD": s.smd,
                "development": s.mean_reference,
                "new file": s.mean_new,
                "SD development": s.sd_reference,
                "SD new": s.sd_new,
                "missing development": s.missing_reference,
                "missing new": s.missing_new,
                "KS": s.ks,
                "in words": s.sentence,
            }
        )
    return pd.DataFrame(rows)


def _model_dir(actor: Actor, run_id: str | None) -> Path | None:
    if run_id is None:
        return None
    try:
        return Path(guarded.open_run(actor, run_id, client=client_address()).model_dir)
    except MedimgError:
        return None


def _evaluate(active: ActiveModel, uploaded: Any) -> None:
    actor = current_actor()
    table = cache.uploaded_table(uploaded.getvalue(), uploaded.name)
    frame = table.frame
    label = active.model.roles.label
    if label is None or label not in frame.columns:
        raise DataError(
            f"{table.name} has no label column {label!r}, which external validation needs; "
            "add it (same name as in training) and upload the file again."
        )
    frame = frame[frame[label].notna()]
    directory = _model_dir(actor, active.run_id)
    if directory is None:
        raise DataError(
            "This model is not a recorded run, so its evaluation cannot be kept in a run's "
            "history; open the run on the Runs page, or train it here, then evaluate again."
        )
    loaded = LoadedModel(model=active.model, card=active.card, directory=directory)
    with st.spinner("Evaluating the model on the new cases…"):
        done = validate_external(
            actor,
            loaded,
            frame,
            dataset_name=table.name,
            dataset_hash=table.content_hash,
            client=client_address(),
            run_id=active.run_id,
            n_boot=EXTERNAL_N_BOOT,
        )
    st.session_state[EXTERNAL_RESULT] = _Done(active.key, table.name, done)
    st.session_state.pop(_RECALIBRATED, None)


def _recalibrate(active: ActiveModel, done: _Done) -> RecalibratedRun:
    actor = current_actor()
    directory = _model_dir(actor, active.run_id)
    if directory is None:
        raise DataError(
            "The run of this model can no longer be opened; reopen it on the Runs page."
        )
    loaded = LoadedModel(model=active.model, card=active.card, directory=directory)
    with st.spinner("Saving the recalibrated version…"):
        return save_recalibrated_run(
            actor,
            loaded,
            done.validation.evaluation,
            dataset_name=done.dataset_name,
            client=client_address(),
            parent_run_id=active.run_id,
            evaluation_id=done.validation.evaluation_id,
        )


def render_external_validation(active: ActiveModel) -> None:
    """The Evaluate page's "External validation" section."""
    st.subheader(
        "External validation",
        help="Score this saved model, without refitting, on labelled cases from another site "
        "or period. The result is recorded in the run's history and appears on the Runs page "
        "and in the model report.",
    )
    actor = current_actor()
    refusal = widgets.refusal_note(actor, Action.EXTERNAL_VALIDATION)
    uploaded = st.file_uploader(
        "Labelled cases from another site (same feature and label columns as in training)",
        type=TABLE_TYPES,
        key="external_upload",
        disabled=refusal is not None,
    )
    if refusal is not None:
        st.caption(refusal)
    if st.button(
        "Evaluate and record",
        key="external_run",
        icon=":material/fact_check:",
        disabled=uploaded is None or refusal is not None,
    ):
        try:
            _evaluate(active, uploaded)
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
    done = st.session_state.get(EXTERNAL_RESULT)
    if not isinstance(done, _Done) or done.model_key != active.key:
        st.caption(
            "Upload a file and press “Evaluate and record” to see the model's metrics, "
            "calibration and feature shift on those cases."
        )
        return
    _show(active, done)


def _show(active: ActiveModel, done: _Done) -> None:
    validation = done.validation
    evaluation = validation.evaluation
    if validation.evaluation_id:
        st.success(
            f"{done.dataset_name}: {evaluation.n:,} cases, recorded as evaluation "
            f"{validation.evaluation_id} of run {active.run_id}.",
            icon=":material/check_circle:",
        )
    for note in validation.notes:
        st.info(note, icon=":material/info:")
    shown = [ev for ev in (active.cv, active.test) if ev is not None] + [evaluation]
    table = summary_frame(*shown)
    st.dataframe(table, width="stretch", height=38 + 35 * len(table), key="external_metrics")
    st.caption(
        table.attrs["caption"]
        + (
            f". At the saved threshold {evaluation.threshold:.3f}; 95% intervals by bootstrap "
            f"over {'patients' if evaluation.groups_resampled else 'cases'}."
            if evaluation.is_binary
            else "."
        )
    )
    for warning in validation.result.get("warnings") or []:
        st.warning(warning, icon=":material/warning:")
    # Full width each: side by side, the calibration curve was too narrow to read.
    calibration_tab, shift_tab = st.tabs(["Calibration on the new cases", "Feature shift"])
    with calibration_tab:
        if evaluation.is_binary:
            st.plotly_chart(
                calibration_figure(evaluation), width="stretch", key="external_calibration"
            )
            st.caption(calibration_line("on the new cases", validation.result.get("calibration")))
        else:
            st.caption("Calibration slope and intercept apply to two-class models.")
    with shift_tab:
        if validation.shift:
            try:
                st.plotly_chart(
                    shift_figure(validation.shift), width="stretch", key="external_shift_chart"
                )
            except MedimgError as exc:
                st.info(str(exc), icon=":material/info:")
    if validation.shift:
        st.markdown("**Feature shift, largest first**")
        st.dataframe(
            shift_frame(validation),
            hide_index=True,
            width="stretch",
            key="external_shift_table",
            column_config={
                name: st.column_config.NumberColumn(format="%.3g")
                for name in ("SMD", "development", "new file", "SD development", "SD new", "KS")
            }
            | {
                name: st.column_config.NumberColumn(format="percent")
                for name in ("missing development", "missing new")
            },
        )
        st.caption(SHIFT_CONVENTION)
    if evaluation.is_binary:
        _recalibration_part(active, done)


def _recalibration_part(active: ActiveModel, done: _Done) -> None:
    st.markdown("**Recalibrate for this site**")
    st.caption(
        "Fits a logistic recalibration, P' = expit(a + b × logit(P)), on these cases and saves "
        "the model with it as a new run. The threshold is mapped through the same formula, so "
        f"the same cases are called positive. {OPTIMISM_NOTE}"
    )
    if active.model.recalibration is not None:
        st.caption("This model is already a recalibrated version; recalibrate its parent run.")
        return
    refusal = widgets.refusal_note(current_actor(), Action.TRAIN)
    if st.button(
        "Save a recalibrated version",
        key="external_recalibrate",
        icon=":material/tune:",
        disabled=refusal is not None or not done.validation.evaluation_id,
    ):
        try:
            st.session_state[_RECALIBRATED] = _recalibrate(active, done)
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
    if refusal is not None:
        st.caption(refusal)
    saved = st.session_state.get(_RECALIBRATED)
    if isinstance(saved, RecalibratedRun):
        st.success(saved.sentence, icon=":material/check_circle:")
        st.caption("Open it on the Runs page to evaluate, explain or predict with it.")


def render_run_evaluations(actor: Actor, record: RunRecord) -> None:
    """The Runs page's "External evaluations" part for one run."""
    card = record.card or {}
    recal = card.get("recalibration")
    if recal:
        st.info(
            f"Recalibrated version of run {card.get('recalibrated_from') or 'unrecorded'}: "
            f"P' = expit({recal.get('intercept', float('nan')):.2f} + "
            f"{recal.get('slope', float('nan')):.2f} × logit(P)), fitted on "
            f"{recal.get('fitted_on', 'unknown data')}. Discrimination is unchanged; "
            "calibration on the data it was fitted on is optimistic.",
            icon=":material/tune:",
        )
    try:
        records = guarded.list_evaluations(actor, record.id)
    except MedimgError as exc:
        st.warning(f"The run's external evaluations cannot be listed: {exc}")
        return
    with st.expander(f"External evaluations ({len(records)})", expanded=bool(records)):
        if not records:
            st.caption(
                "None recorded yet. Open the run and use “External validation” on the Evaluate "
                "page, or `medimg evaluate MODEL_DIR NEW_SITE.csv --json OUT.json`."
            )
            return
        st.dataframe(
            pd.DataFrame(evaluation_history(records)),
            hide_index=True,
            width="stretch",
            key=f"runs_evaluations_{record.id}",
        )
        st.caption(
            "Newest first. Calibration slope and intercept on the new cases (1 and 0 = the "
            "probabilities hold there); notable shifts: |SMD| > 0.2 against development."
        )
