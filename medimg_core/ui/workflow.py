"""The walk-through shared by every page: load a table, confirm roles, clean, train, activate.

Pages call :func:`require` first (the guard: what is missing, where to get it, and the built-in
sample one click away), do their work through the helpers here, and end with :func:`next_step`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import streamlit as st

from medimg_core.access import Action
from medimg_core.errors import ConfigError, MedimgError, ModelFileError
from medimg_core.tables import cleaning
from medimg_core.tables.cleaning import CleaningReport
from medimg_core.tables.loading import LoadedTable, frame_hash
from medimg_core.tables.roles import RoleProposal, Roles
from medimg_core.ui import cache, state
from medimg_core.ui.auth import client_address, current_actor
from medimg_core.ui.session import ActiveModel, ImageContext
from medimg_core.workspace import workspace_home

# Training, the registry and saved runs pull in scikit-learn and skops; they are imported in the
# functions that use them so that the Data page, which needs none of them, opens quickly.
if TYPE_CHECKING:
    from medimg_core.modelling.evaluation import Evaluation
    from medimg_core.modelling.training import TrainingResult
    from medimg_core.modelling.validation import ValidationConfig

__all__ = [
    "SAMPLE_BUTTON",
    "SAMPLE_NAME",
    "LastRun",
    "activate_training",
    "build_roles",
    "confirm_roles",
    "current_images",
    "handle_upload",
    "is_numeric",
    "joined_table",
    "label_classes",
    "last_run",
    "next_step",
    "open_run",
    "quality_values",
    "require",
    "run_cleaning",
    "set_table",
    "suggested_plan",
    "use_sample",
]

SAMPLE_NAME = "wdbc"
"""The built-in sample offered everywhere (breast-mass fine-needle aspirates)."""

SAMPLE_BUTTON = "Load the built-in sample (breast-mass data)"
"""Label of the one-click sample button in every guard."""

_SAMPLE_ROLES = {"label": "diagnosis", "id": "case_id"}

_PAGES = {step.key: step for step in state.STEPS}

# What each page needs, what to tell the user when it is missing, and how far the sample button
# has to carry the workflow to provide it.
_NEEDS: dict[str, tuple[str, Literal["data", "clean", "train"]]] = {
    "clean": (state.ROLES, "data"),
    "train": (state.CLEANING, "clean"),
    "evaluate": (state.ACTIVE, "train"),
    "explain": (state.ACTIVE, "train"),
    "predict": (state.ACTIVE, "train"),
}

_NEXT: dict[str, tuple[str, str]] = {
    "data": ("clean", "decide how to handle missing values, duplicates and implausible values."),
    "clean": ("train", "choose a model and a validation scheme, then train."),
    "train": ("evaluate", "read the metrics with their 95% intervals and pick a threshold."),
    "evaluate": ("explain", "see which features drive the predictions, overall and per case."),
    "explain": ("predict", "upload new cases and get predictions with their top reasons."),
    "predict": ("runs", "compare and reopen your saved runs."),
}

# Widget keys of the Data page that describe the current table; they are forgotten when a new
# table arrives so that its roles start from the new proposal.
_TABLE_WIDGETS = (
    "role_label",
    "role_id",
    "role_quality",
    "role_site",
    "role_exclude",
    "role_subgroups",
    "role_positive",
    "join_left_key",
    "join_right_key",
)
JOIN_RESULT = "data_join_result"
"""Session key of the last join summary shown on the Data page."""


def set_table(table: LoadedTable) -> RoleProposal:
    """Make ``table`` the working table and propose its roles (everything downstream is reset).

    Parameters
    ----------
    table : the loaded (or joined) table.

    Returns
    -------
    RoleProposal
        The proposal, also stored in the session.
    """
    state.put(state.TABLE, table)
    proposal = cache.proposal(table.content_hash, table.frame)
    state.put(state.PROPOSAL, proposal)
    for key in _TABLE_WIDGETS:
        st.session_state.pop(key, None)
    return proposal


def handle_upload(data: bytes, name: str) -> LoadedTable:
    """Read an uploaded file and make it the working table.

    Parameters
    ----------
    data : the file's bytes.
    name : the file's name (its extension tells the format).

    Returns
    -------
    LoadedTable

    Raises
    ------
    PermissionDenied
        When the session's user may not upload data (audited as refused; nothing is read).
    DataError
        The file is not a usable table (the message says why and what to do).
    """
    # Deferred for start-up speed (see the note at the top of this module).
    from medimg_core.store import guarded

    with guarded.audited(current_actor(), Action.UPLOAD, client=client_address()) as entry:
        table = cache.uploaded_table(data, name)
        entry.object = table.content_hash
    set_table(table)
    st.session_state.pop(JOIN_RESULT, None)
    return table


def joined_table(base: LoadedTable, frame: pd.DataFrame, other_name: str) -> LoadedTable:
    """A :class:`LoadedTable` for the result of joining ``base`` with another table."""
    return LoadedTable(
        frame=frame,
        name=f"{base.name} + {other_name}",
        content_hash=frame_hash(frame),
        encoding=base.encoding,
        delimiter=base.delimiter,
        format=base.format,
        notes=base.notes,
        coercion_failures=base.coercion_failures,
    )


def build_roles(
    *,
    label: str | None,
    id: str | None,
    quality: str | None,
    site: str | None,
    exclude: Sequence[str],
    reader: Sequence[str] = (),
    subgroups: Sequence[str] = (),
) -> Roles:
    """Roles from the Data page's choices, refused when one column has two jobs.

    Parameters
    ----------
    label, id, quality, site : the chosen columns (None for none).
    exclude : identifying or excluded columns; the ID, quality and site columns are dropped from
        it (they are never features anyway).
    reader : features that are a reader's assessment (e.g. BI-RADS); they stay features and
        training also reports performance without them.
    subgroups : columns whose groups get their own metrics (sex, age ...); they stay features
        unless also excluded. The label, the patient ID and the site are never subgroups here
        (the site is analysed by site anyway).

    Returns
    -------
    Roles

    Raises
    ------
    ConfigError
        No label, or the label is also the patient ID, quality flag, site or an excluded column,
        or two of patient ID, quality flag and site are the same column.
    """
    if label is None:
        raise ConfigError(
            "No label column is chosen. Choose the column holding the diagnosis as the label."
        )
    named = {"patient ID": id, "quality flag": quality, "site": site}
    for role, column in named.items():
        if column == label:
            raise ConfigError(
                f"Column {label!r} is chosen as both the label and the {role}. "
                f"Choose another {role} column, or (none)."
            )
    if label in exclude:
        raise ConfigError(
            f"The label {label!r} is also among the excluded columns. Remove it from them."
        )
    chosen = [(role, column) for role, column in named.items() if column is not None]
    for i, (role, column) in enumerate(chosen):
        for other_role, other_column in chosen[i + 1 :]:
            if column == other_column:
                raise ConfigError(
                    f"Column {column!r} is chosen as both the {role} and the {other_role}. "
                    f"Choose a different column for one of them, or (none)."
                )
    not_features = {label, id, quality, site, *exclude}
    for column in reader:
        if column in not_features:
            raise ConfigError(
                f"Column {column!r} is marked as a reader's assessment but is not a feature "
                "(it is the label, the patient ID, the quality flag, the site or excluded). "
                "Unmark it, or give it no other role."
            )
    return Roles(
        label=label,
        id=id,
        quality=quality,
        site=site,
        exclude=tuple(c for c in dict.fromkeys(exclude) if c not in (id, quality, site)),
        reader=tuple(dict.fromkeys(reader)),
        subgroups=tuple(c for c in dict.fromkeys(subgroups) if c not in (label, id, site)),
    )


def confirm_roles(roles: Roles, positive: Any = None) -> None:
    """Store the roles (and the positive class) the user confirmed.

    Parameters
    ----------
    roles : the confirmed roles.
    positive : the class the model will call positive; None for multi-class labels.
    """
    state.put(state.ROLES, roles)
    state.put(state.POSITIVE, positive)


def label_classes(frame: pd.DataFrame, label: str | None) -> list[Any]:
    """Distinct non-missing values of the label column, as plain Python values."""
    if label is None or label not in frame.columns:
        return []
    values = frame[label].dropna()
    classes = values[values.astype(str).str.strip() != ""].unique().tolist()
    try:
        return sorted(classes)
    except TypeError:
        return sorted(classes, key=str)


def quality_values(series: pd.Series, limit: int = 50) -> list[str]:
    """Distinct values of a quality-flag column, written as the cleaning compares them.

    Whole numbers lose their ``.0`` and booleans read "true" / "false", so that choosing a value
    here matches it in :func:`medimg_core.tables.cleaning.clean`.

    Parameters
    ----------
    series : the quality-flag column.
    limit : most values returned (the most frequent ones).

    Returns
    -------
    list of str
        Most frequent first.
    """
    counts = series.dropna().value_counts()
    values: list[str] = []
    for value in counts.index.tolist()[: limit * 2]:
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value).strip()
        if text not in values:
            values.append(text)
    return values[:limit]


def is_numeric(series: pd.Series) -> bool:
    """Whether a column holds numbers (booleans do not count), as the cleaning judges it."""
    dtype = series.dtype
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def suggested_plan() -> cleaning.CleaningPlan:
    """The cleaning plan medimg suggests for the working table and its confirmed roles."""
    table: LoadedTable = state.get(state.TABLE)
    roles: Roles = state.get(state.ROLES)
    return cleaning.suggest_plan(table.frame, roles)


def run_cleaning(plan: cleaning.CleaningPlan | None = None) -> CleaningReport:
    """Clean the working table with ``plan`` (default: the suggested plan) and store the report.

    The report is stored only when it differs from the one in the session, so rerunning a page
    with unchanged settings keeps the trained model that depends on it.

    The session's user must be allowed to clean data; each new cleaning (not each rerun of the
    page) is recorded in the audit trail.

    Returns
    -------
    CleaningReport

    Raises
    ------
    PermissionDenied
        When the session's user may not clean data (audited as refused).
    """
    # Deferred for start-up speed (see the note at the top of this module).
    from medimg_core.store import guarded

    table: LoadedTable = state.get(state.TABLE)
    roles: Roles = state.get(state.ROLES)
    actor, client = current_actor(), client_address()
    guarded.check(actor, Action.CLEAN, client=client, object=table.content_hash)
    if plan is None:
        plan = suggested_plan()
    report = cache.cleaned(
        table.content_hash, table.frame, cache.as_json(roles), cache.as_json(plan)
    )
    current: CleaningReport | None = state.get(state.CLEANING)
    if current is None or current.plan != report.plan or current.n_input != report.n_input:
        with guarded.audited(actor, Action.CLEAN, client=client, object=table.content_hash):
            state.put(state.CLEANING, report)
    return report


def use_sample(until: Literal["data", "clean", "train"] = "data") -> None:
    """Load the built-in sample and carry the workflow up to ``until``.

    Parameters
    ----------
    until : "data" loads the table and confirms its roles (label ``diagnosis``, patient ID
        ``case_id``, positive class ``malignant``); "clean" also runs the suggested cleaning;
        "train" also trains a logistic regression with 5-fold cross-validation and activates it.
    """
    table = cache.sample_table(SAMPLE_NAME)
    proposal = set_table(table)
    st.session_state.pop(JOIN_RESULT, None)
    proposed = proposal.to_roles()
    roles = Roles(
        label=_SAMPLE_ROLES["label"],
        id=_SAMPLE_ROLES["id"],
        quality=proposed.quality,
        site=proposed.site,
        exclude=tuple(c for c in proposed.exclude if c not in _SAMPLE_ROLES.values()),
    )
    positive = proposal.positive_class
    classes = label_classes(table.frame, roles.label)
    if positive not in classes:
        positive = "malignant"
    confirm_roles(roles, positive)
    if until == "data":
        return
    report = run_cleaning()
    if until == "clean":
        return
    # Deferred for start-up speed (see the note at the top of this module).
    from medimg_core.modelling.models import ModelConfig
    from medimg_core.modelling.training import train
    from medimg_core.modelling.validation import ValidationConfig

    validation = ValidationConfig(cv=5)
    with st.spinner("Training a logistic regression on the sample…"):
        result = train(
            report.data,
            roles,
            config=ModelConfig(model="logreg"),
            validation=validation,
            positive=positive,
            plan=report.plan,
        )
    activate_training(
        result,
        cleaning=report,
        dataset_name=table.name,
        data=report.data,
        validation=validation,
    )


def current_images() -> ImageContext | None:
    """The session's image context (``state.IMAGES``), when the working table was built from it.

    A table uploaded or sampled later replaces the working table, and the old images no longer
    describe it, so they are ignored.
    """
    images: ImageContext | None = state.get(state.IMAGES)
    table: LoadedTable | None = state.get(state.TABLE)
    if images is None or table is None or images.table_hash != table.content_hash:
        return None
    return images


def activate_training(
    result: TrainingResult,
    *,
    cleaning: CleaningReport | None,
    dataset_name: str,
    data: pd.DataFrame,
    validation: ValidationConfig | None = None,
) -> ActiveModel:
    """Save a trained model with its cases, record the run and make it the active model.

    The model directory (``<workspace>/models/<new id>``) receives ``model.skops``, ``card.json``
    and ``cases.parquet`` (the rows used with their partition and validation probabilities,
    without excluded or identifying columns), so the run can be reopened later exactly as now.
    When the working table came from images (:func:`current_images`), the card records their
    feature settings, so new images are extracted the same way, and the model keeps the images
    for the Explain page.

    Parameters
    ----------
    result : the training outcome.
    cleaning : the cleaning report of the training table.
    dataset_name : a human name for the data (file or sample name).
    data : the cleaned table the model was trained and tested on.
    validation : the validation settings used (recorded in the card: threshold rule, folds).

    Returns
    -------
    ActiveModel
        Also stored in the session (with the training result and the run id).

    Raises
    ------
    PermissionDenied
        When the session's user (:func:`medimg_core.ui.auth.current_actor`) may not train.
    ModelFileError
        When the model directory cannot be written.
    RegistryError
        When the workspace cannot be created.
    """
    # Deferred for start-up speed (see the note at the top of this module).
    from medimg_core.store import guarded

    images = current_images()
    saved = guarded.save_run(
        current_actor(),
        result,
        workspace_home() / "models" / uuid.uuid4().hex,
        data=data,
        cleaning=cleaning,
        dataset_name=dataset_name,
        validation=validation,
        strict_registry=False,
        image_settings=images.settings if images is not None else None,
        client=client_address(),
    )
    card, case_frame, run_id, warnings = saved.card, saved.cases, saved.run_id, saved.warnings
    active = ActiveModel(
        model=result.model,
        card=card,
        run_id=run_id,
        cv=result.cv,
        test=result.test,
        cases=case_frame,
        leaderboard=tuple(row.to_dict() for row in result.leaderboard),
        warnings=warnings,
        images=images,
    )
    state.put(state.TRAINING, result)
    state.put(state.RUN_ID, run_id)
    state.put(state.ACTIVE, active)
    return active


def open_run(run_id: str, *, just_trained: bool = False) -> ActiveModel:
    """Open a saved run as the active model (for Evaluate, Explain and Predict).

    The model is loaded and verified, its stored cases are read and the cross-validated and test
    evaluations rebuilt from their probabilities with the bootstrap of training. A run saved
    without cases (e.g. from the command line) opens with ``cv``, ``test`` and ``cases`` None
    and a warning that says why.

    Parameters
    ----------
    run_id : the registry id of the run.
    just_trained : the run this session's training job has just saved, opened as the job ends
        (as a model trained in the page always was): its "train" audit entry already names
        it, so no "open run" entry is added.

    Returns
    -------
    ActiveModel
        Also stored in the session; this session's training result is forgotten.

    Raises
    ------
    RegistryError
        When no such run is recorded in the session user's projects.
    ModelFileError
        When the model files are missing, damaged or fail verification.
    """
    # Deferred for start-up speed (see the note at the top of this module).
    from medimg_core.store import cases, guarded
    from medimg_core.store.persistence import load_model

    if just_trained:
        from medimg_core.store.registry import Registry

        with Registry() as registry:
            record = registry.get_run(current_actor(), run_id)
    else:
        record = guarded.open_run(current_actor(), run_id, client=client_address())
    loaded = load_model(record.model_dir)
    card = loaded.card
    warnings = [str(w) for w in card.get("warnings") or []]
    cv: Evaluation | None = None
    test: Evaluation | None = None
    case_frame: pd.DataFrame | None = None
    try:
        case_frame = cases.load_cases(loaded.directory)
    except ModelFileError as exc:
        warnings.append(str(exc))
    if case_frame is not None:
        validation = card.get("validation") or {}
        settings = validation.get("settings") or {}
        n_boot = int(settings.get("n_boot") or validation.get("n_boot") or 1000)
        cv, test = cases.case_evaluations(loaded.model, case_frame, n_boot=n_boot)
    active = ActiveModel(
        model=loaded.model,
        card=card,
        run_id=record.id,
        cv=cv,
        test=test,
        cases=case_frame,
        leaderboard=tuple(card.get("leaderboard") or ()),
        warnings=tuple(warnings),
        # cases.parquet stores keyed pseudonyms, never the uploaded IDs.
        ids_pseudonymous=True,
    )
    state.put(state.TRAINING, None)
    state.put(state.RUN_ID, record.id)
    state.put(state.ACTIVE, active)
    # Reopening a run starts new work: evaluating or explaining it is recorded again.
    st.session_state.pop(_AUDITED, None)
    return active


_AUDITED = "_medimg_audited"
"""Session key of what this session has already recorded (see :func:`audit_once`)."""


def audit_once(action: Action, *, object: str | None, key: str) -> None:
    """Check ``action`` for the session's user and record it in the audit trail, once per
    session and ``key`` (a page rerun is not a new action); stop the page with the refusal.

    Parameters
    ----------
    action : what the page is about to show (evaluate, explain, predict).
    object : the run ID acted on (None for a model that was not recorded).
    key : what makes it a new action: the run, and the case for an explanation.
    """
    # Deferred for start-up speed (see the note at the top of this module).
    from medimg_core.store import guarded

    actor = current_actor()
    marker = (actor.username, actor.project, str(action), key)
    done: set[tuple[str, str | None, str, str]] = st.session_state.setdefault(_AUDITED, set())
    if marker in done:
        return
    try:
        with guarded.audited(actor, action, client=client_address(), object=object):
            pass
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    done.add(marker)


def record_export(run_id: str | None) -> None:
    """``on_click`` of a download button: record the export (of the run's model card,
    predictions or a case report) in the audit trail, as the session's user."""
    # Deferred for start-up speed (see the note at the top of this module).
    from medimg_core.store import guarded

    try:
        with guarded.audited(
            current_actor(),
            Action.OPEN_RUN,
            client=client_address(),
            object=run_id,
            audit_action="export",
        ):
            pass
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")


@dataclass(frozen=True)
class LastRun:
    """The run a new session (after a reload, say) is offered to reopen.

    Only what names the run: nothing in it identifies a patient (the data set's name, which
    could, is left out).

    Attributes
    ----------
    run_id : the registry id.
    model : the model's display name ("Logistic regression").
    created : when the run was recorded (UTC).
    """

    run_id: str
    model: str
    created: datetime

    @property
    def label(self) -> str:
        """The reopen button's label."""
        return (
            f"Reopen the last run ({self.run_id}, {self.model}, {self.created:%Y-%m-%d %H:%M} UTC)"
        )


def last_run() -> LastRun | None:
    """The newest run the session's user trained, else the newest run they may open.

    Only runs of the user's current project are considered, as on the Runs page; listing them
    opens nothing, so it is not audited (reopening is, by :func:`open_run`).

    Returns
    -------
    LastRun or None
        None when there is no such run, or the user may not open runs, or the registry cannot
        be read (the guard then offers what it always did).
    """
    # Deferred for start-up speed (see the note at the top of this module).
    from medimg_core.modelling.models import model_name
    from medimg_core.store import guarded

    try:
        actor = current_actor()
        runs = guarded.list_runs(actor)
    except MedimgError:
        return None
    if not runs:
        return None
    own = [r for r in runs if r.owner == actor.username]
    record = (own or runs)[0]  # newest first
    return LastRun(run_id=record.id, model=model_name(record.model_kind), created=record.created_at)


_REOPEN_PROBLEM = "_medimg_reopen_problem"
"""Session key of why the guard's reopen button could not open the run."""


def _reopen(run_id: str) -> None:
    """``on_click`` of the guard's reopen button: open exactly the run the button named."""
    try:
        open_run(run_id)
    except MedimgError as exc:
        st.session_state[_REOPEN_PROBLEM] = str(exc)


def require(step_key: str) -> None:
    """The guard at the top of a page: stop with directions when an earlier step is missing.

    Shows what is missing, a link to the page that provides it, and one button that loads the
    built-in sample far enough for this page; then stops the script. Does nothing when the
    prerequisite is there (or the page needs none).

    Pages that need a model (Evaluate, Explain, Predict) first offer to reopen the user's last
    run (:func:`last_run`) with one click: a reload starts a new session, and the model the
    user was working on is then one click away instead of a walk through the Runs page.

    Parameters
    ----------
    step_key : the page's step key ("clean", "train", "evaluate", "explain", "predict").
    """
    need = _NEEDS.get(step_key)
    if need is None or state.has(need[0]):
        return
    _, until = need
    last = last_run() if need[0] == state.ACTIVE else None
    if not state.has(state.ROLES):
        provider = "data"
        message = (
            "There is no data yet. Upload a table and confirm its roles on the Data page, "
            "or load the built-in sample."
        )
        if last is not None:
            message = (
                "This session has no model open (a reload starts a new session). Reopen your "
                "last run, open another on the Runs page, or start from data on the Data page."
            )
    elif not state.has(state.CLEANING):
        provider = "clean"
        message = "The data are not cleaned yet. Review the cleaning plan on the Clean page."
    else:
        provider = "train"
        message = "There is no trained model yet. Train one on the Train page, or open a saved run."
    with st.container(border=True):
        st.info(message, icon=":material/info:")
        problem = st.session_state.pop(_REOPEN_PROBLEM, None)
        if problem:
            st.error(problem, icon=":material/error:")
        if last is not None:
            st.button(
                last.label,
                key=f"guard_reopen_{step_key}",
                type="primary",
                icon=":material/history:",
                on_click=_reopen,
                args=(last.run_id,),
            )
        page = _PAGES[provider]
        st.page_link(page.path, label=f"Go to {page.title}", icon=page.icon)
        if (provider == "train" or last is not None) and "runs" in _PAGES:
            runs = _PAGES["runs"]
            st.page_link(runs.path, label="Open a saved run", icon=runs.icon)
        if st.button(
            SAMPLE_BUTTON,
            key=f"guard_sample_{step_key}",
            type="secondary" if last is not None else "primary",
        ):
            try:
                use_sample(until)
            except MedimgError as exc:
                # A viewer may open saved runs but not clean or train, even on the sample.
                st.error(str(exc), icon=":material/error:")
                st.stop()
            st.rerun()
    st.stop()


def next_step(step_key: str) -> None:
    """A compact "Next: …" line with a link to the following page.

    Parameters
    ----------
    step_key : the current page's step key.
    """
    following = _NEXT.get(step_key)
    if following is None:
        return
    key, what = following
    page = _PAGES[key]
    st.divider()
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.markdown(f"**Next: {page.title}** — {what}")
    right.page_link(page.path, label=f"Go to {page.title}", icon=":material/arrow_forward:")
