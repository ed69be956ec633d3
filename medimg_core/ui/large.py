"""Large tables on the server: opened lazily, shown through a sample, worked on where heavy
work runs.

A table of a million rows is not uploaded: an administrator names the folders that hold such
tables (``MEDIMG_DATA_ROOTS``), and analysts open a file or folder there. The server process
keeps only a reproducible uniform sample (:data:`SAMPLE_ROWS` rows) and exact summaries
computed partition by partition (:func:`medimg_core.tables.sources.summarise_source`); the
sample becomes the session's working table (its ``format`` is :data:`SERVER_FORMAT`), so the
Data page proposes and confirms roles on it as for an upload, and every table or plot built
from it says so (:func:`sample_note`). Work on the whole table (cleaning, training) never
happens on the sample; pages branch on :func:`context`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from medimg_core.access import Action, Actor, allowed
from medimg_core.errors import ConfigError, MedimgError
from medimg_core.tables.cleaning import CleaningPlan
from medimg_core.tables.loading import LoadedTable
from medimg_core.tables.partitioned import PartitionedTable
from medimg_core.tables.roles import Roles
from medimg_core.tables.sources import (
    DEFAULT_SAMPLE_ROWS,
    ServerCleaningReport,
    SourceSummary,
    TableSource,
    class_counts,
    clean_server_table,
    data_roots,
    list_table_sources,
    resolve_table_source,
    summarise_source,
    with_sample,
)
from medimg_core.ui import state, workflow
from medimg_core.ui.auth import client_address, current_actor

# The job layer and the store load scikit-learn; the Data page imports this module and must open
# fast, so they are imported where used.
if TYPE_CHECKING:
    from medimg_core.jobs import TrainingSummary
    from medimg_core.modelling.models import ModelConfig
    from medimg_core.modelling.validation import ValidationConfig
    from medimg_core.store.large_tables import ServerTraining

__all__ = [
    "DEFAULT_FOLDS",
    "DEFAULT_N_BOOT",
    "LARGE",
    "MODEL_CHOICES",
    "MODEL_NOTE",
    "SAMPLE_ROWS",
    "SAMPLE_SEED",
    "SERVER_FORMAT",
    "LargeTable",
    "candidates",
    "cleaning_panel",
    "context",
    "label_counts",
    "label_series",
    "may_open",
    "open_server_table",
    "picker",
    "profile",
    "roots",
    "sample_note",
    "shap_note",
    "stored_cases_note",
    "submit_training",
    "validation_note",
]

LARGE = "large_table"
"""Session key of the :class:`LargeTable` behind the working table (when it is one)."""

SERVER_FORMAT = "server"
"""``LoadedTable.format`` of a working table that is the sample of a table on the server."""

SAMPLE_ROWS = DEFAULT_SAMPLE_ROWS
"""Rows of a server table the server process keeps (preview, plots, role proposal)."""

SAMPLE_SEED = 0
"""Seed of that sample: the same table always shows the same rows."""

_CLEAN_JOBS = "large_clean_jobs"
"""Session key: cleaning job IDs by what they clean (table, roles, plan)."""
_CLEANED = "large_cleaned"
"""Session key: what the session's cleaning report was computed for (table, roles, plan)."""


@dataclass(frozen=True)
class LargeTable:
    """A table on the server behind the session's working table.

    Attributes
    ----------
    summary : its size, exact column summary and the sample (the working table's frame).
    """

    summary: SourceSummary

    @property
    def source(self) -> TableSource:
        return self.summary.source

    @property
    def table_hash(self) -> str:
        """The working table's ``content_hash``: the hash of every partition's content."""
        return self.summary.table.content_hash

    @property
    def n_rows(self) -> int:
        return self.summary.n_rows


def roots() -> tuple[Path, ...]:
    """The server folders tables may be read from (``MEDIMG_DATA_ROOTS``); empty when reading
    server tables is not allowed, and then the Data page does not offer it."""
    return data_roots()


def may_open(actor: Actor) -> bool:
    """Whether ``actor`` may bring a server table into medimg (who may upload: analysts and
    admins)."""
    return allowed(actor, Action.UPLOAD)


@st.cache_data(ttl=30, show_spinner=False, max_entries=8)
def candidates(root_list: tuple[str, ...]) -> list[tuple[str, str]]:
    """Tables found in ``root_list`` for the picker: (path, "path — what it is") pairs; listed
    again at most every 30 seconds."""
    found = list_table_sources(tuple(Path(r) for r in root_list))
    return [(str(s.path), f"{s.path} — {s.describe()}") for s in found]


@st.cache_data(show_spinner="Reading the table on the server…", max_entries=4)
def _summary(fingerprint: str, source_json: str, sample_rows: int, seed: int) -> SourceSummary:
    # Keyed on the fingerprint (paths, sizes, modification times): a replaced file is read again.
    source = TableSource.from_dict(json.loads(source_json))
    return summarise_source(source, sample_size=sample_rows, seed=seed)


@st.cache_data(show_spinner="Counting the classes over every row…", max_entries=16)
def _class_counts(table_hash: str, _table: PartitionedTable, column: str) -> dict[str, int]:
    # Keyed on the table's content hash (over every partition's content).
    return class_counts(_table, column)


def open_server_table(path: str) -> LargeTable:
    """Open a table on the server and make its sample the working table.

    The path must lie inside the data roots; the user must be allowed to bring data in
    (audited like an upload, with the source's fingerprint as the object).

    Raises
    ------
    PermissionDenied
        When the session's user may not bring data in (audited as refused; nothing is read).
    DataError
        When the path is not a table inside the data roots, or cannot be read.
    """
    # Deferred for start-up speed (the store pulls in SQLAlchemy).
    from medimg_core.store import guarded

    actor = current_actor()
    guarded.check(actor, Action.UPLOAD, client=client_address())
    source = resolve_table_source(path, roots())
    with guarded.audited(actor, Action.UPLOAD, client=client_address()) as entry:
        summary = _summary(
            source.fingerprint, json.dumps(source.to_dict()), SAMPLE_ROWS, SAMPLE_SEED
        )
        entry.object = summary.table.content_hash
    large = LargeTable(summary)
    table = LoadedTable(
        frame=summary.sample,
        name=source.name,
        content_hash=summary.table.content_hash,
        encoding=None,
        delimiter=None,
        format=SERVER_FORMAT,
        notes=(
            f"{source.describe()}, read on the server in {summary.n_partitions:,} "
            f"partition{'' if summary.n_partitions == 1 else 's'} by {summary.ran_on}; "
            "nothing was copied.",
        ),
    )
    workflow.set_table(table)
    st.session_state.pop(workflow.JOIN_RESULT, None)
    st.session_state[LARGE] = large
    return large


def picker(allowed_roots: tuple[Path, ...]) -> None:
    """The Data page's "Table on this server" box: pick a file or folder found in the data
    roots (or type a path), open it, and say what it is; errors are shown, never raised."""
    with st.container(border=True):
        st.markdown("**Table on this server** (for tables too large to upload)")
        found = candidates(tuple(str(r) for r in allowed_roots))
        labels = dict(found)
        pick_col, path_col, go_col = st.columns([3, 3, 1], vertical_alignment="bottom")
        picked = pick_col.selectbox(
            "Tables found in the data folders",
            list(labels),
            index=None,
            format_func=lambda p: labels.get(p, p),
            placeholder="Choose a file or folder" if found else "No table found",
            key="server_table_pick",
            help="CSV or Parquet files, and folders of them (a partitioned table), inside the "
            "data folders an administrator configured.",
        )
        typed = path_col.text_input(
            "…or its path on the server",
            key="server_table_path",
            placeholder=str(allowed_roots[0] / "cohort.parquet"),
            help="A full path, or relative to a data folder. Used when filled in.",
        )
        wanted = typed.strip() or picked or ""
        st.caption(
            ":material/dns: Read where medimg runs, not on your computer; nothing is copied or "
            f"changed. The page keeps a random sample of {SAMPLE_ROWS:,} rows; counts and "
            "summaries cover every row. Data folders: " + ", ".join(f"`{r}`" for r in allowed_roots)
        )
        if go_col.button(
            "Open", key="server_table_open", icon=":material/folder_open:", disabled=not wanted
        ):
            try:
                open_server_table(wanted)
            except MedimgError as exc:
                st.error(str(exc), icon=":material/error:")


def context() -> LargeTable | None:
    """The server table behind the working table, or None when the working table is an upload,
    the sample or image features."""
    large: LargeTable | None = st.session_state.get(LARGE)
    table: LoadedTable | None = state.get(state.TABLE)
    if large is None or table is None or table.content_hash != large.table_hash:
        return None
    return large


def label_counts(large: LargeTable, label: str) -> dict[str, int]:
    """Rows per class of ``label`` over the whole table (cached per table and label).

    Raises
    ------
    DataError
        No such column, or too many distinct values to be a diagnosis.
    """
    return _class_counts(large.summary.table.content_hash, large.summary.table, label)


def label_series(counts: dict[str, int]) -> pd.Series:
    """A label column with the counts given, for the class-balance figure (the figure counts
    values; building it from counts keeps the full table out of the server)."""
    names = [k for k in counts if k != "(missing)"]
    codes = [names.index(k) if k in names else -1 for k in counts]
    repeated = pd.Series(codes, dtype="int16").repeat(list(counts.values())).to_numpy()
    return pd.Series(pd.Categorical.from_codes(repeated, categories=pd.Index(names)))


def profile(
    large: LargeTable, sample_profile: pd.DataFrame, hidden: tuple[str, ...]
) -> pd.DataFrame:
    """The Data page's profile of a server table: exact missing counts, min, max and mean over
    every row, beside the sample's type, distinct values, summary and distribution.

    Parameters
    ----------
    large : the server table.
    sample_profile : :func:`medimg_core.tables.profile.profile_columns` of the sample.
    hidden : identifying columns, whose values are not summarised.
    """
    exact = large.summary.exact_profile(hidden)
    shown = sample_profile.drop(columns=["missing %"]).merge(exact, on="column", how="left")
    return shown


def sample_note(large: LargeTable) -> str:
    """ "Shown: a random sample of 50,000 of 1,000,000 rows." for every sampled table or plot."""
    return large.summary.sample_note()


def _job_key(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _clean_key(large: LargeTable, roles: Roles, plan: CleaningPlan) -> str:
    return _job_key(large.table_hash, roles.to_dict(), plan.to_dict())


def cleaning_panel(plan: CleaningPlan) -> ServerCleaningReport | None:
    """The Clean page for a server table: the whole table is cleaned as a job (progress,
    Cancel), never in the page's run.

    Returns
    -------
    ServerCleaningReport or None
        The report once the whole table was cleaned with the session's roles and ``plan``
        (also stored as the session's cleaning, audited); None while there is none yet (the
        Clean button, or the job's progress, is shown).
    """
    # Deferred for start-up speed (the store pulls in SQLAlchemy and scikit-learn).
    from medimg_core.jobs import JobKind, JobState
    from medimg_core.store import guarded
    from medimg_core.ui import jobs

    large = context()
    assert large is not None
    roles: Roles = state.get(state.ROLES)
    key = _clean_key(large, roles, plan)
    current = state.get(state.CLEANING)
    if isinstance(current, ServerCleaningReport) and st.session_state.get(_CLEANED) == key:
        return current
    actor, client = current_actor(), client_address()
    started: dict[str, str] = st.session_state.setdefault(_CLEAN_JOBS, {})
    job = None
    if key in started:
        try:
            job = jobs.manager().get(started[key], actor)
        except MedimgError:
            started.pop(key, None)
    if job is not None and job.active:
        _live_job(job.id, "large_clean_cancel")
        return None
    if job is not None and job.state is JobState.DONE:
        report = with_sample(job.result, large.summary.sample)
        with guarded.audited(actor, Action.CLEAN, client=client, object=large.table_hash):
            state.put(state.CLEANING, report)
        st.session_state[_CLEANED] = key
        started.pop(key, None)
        return report
    if job is not None:
        started.pop(key, None)
        if job.state is JobState.FAILED:
            st.error(job.error or "Cleaning failed.", icon=":material/error:")
        else:
            st.info("Cleaning was cancelled; nothing was kept.", icon=":material/cancel:")
    st.info(
        f"This table has {large.n_rows:,} rows: it is cleaned as a job on "
        f"{jobs.manager().describe()}, partition by partition, with the plan above. Every row "
        "is accounted for (kept + removed = rows in). Nothing cleaned is stored: the kept rows "
        "are written to a temporary folder outside the workspace and deleted at once; training "
        "re-derives them from the table and this plan.",
        icon=":material/cleaning_services:",
    )
    if st.button(
        "Clean the whole table",
        key="large_clean_go",
        type="primary",
        icon=":material/play_arrow:",
    ):
        try:
            guarded.check(actor, Action.CLEAN, client=client, object=large.table_hash)
            started[key] = jobs.manager().submit(
                JobKind.CLEAN,
                actor,
                f"Clean {large.source.name} ({large.n_rows:,} rows)",
                clean_server_table,
                large.summary.table,
                roles,
                plan,
                client=client,
            )
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
            return None
        st.rerun()
    return None


@st.fragment(run_every=1.0)
def _live_job(job_id: str, cancel_key: str) -> None:
    """A job's queue position or progress and a Cancel button, refreshed every second on its
    own; the whole page reruns once the job ends."""
    from medimg_core.jobs import JobState
    from medimg_core.ui import jobs

    actor = current_actor()
    try:
        job = jobs.manager().get(job_id, actor)
    except MedimgError:
        st.rerun(scope="app")
    if not job.active:
        st.rerun(scope="app")
    with st.container(border=True):
        if job.state is JobState.QUEUED:
            st.markdown(
                f":material/hourglass_top: **Queued (position {job.queue_position})** · {job.title}"
            )
        else:
            st.progress(
                min(max(job.fraction, 0.0), 1.0), text=f"{job.title}: {job.message or 'running'}"
            )
        st.caption(
            f"Runs as a job on {jobs.manager().describe()}. You may leave this page; the job "
            "goes on and is listed under Jobs."
        )
        if st.button(
            "Cancel" if not job.cancel_requested else "Cancelling…",
            key=cancel_key,
            icon=":material/stop_circle:",
            disabled=job.cancel_requested,
        ):
            try:
                jobs.manager().cancel(job_id, actor)
            except MedimgError as exc:
                st.error(str(exc), icon=":material/error:")
                return
            st.rerun(scope="app")


MODEL_CHOICES: tuple[str, ...] = ("hgb",)
"""Models offered for a server table: histogram gradient boosting only."""

MODEL_NOTE = (
    "For a table on the server only gradient boosting (histogram) is offered: it bins each "
    "feature once and fits in time that grows in step with the rows, so a million rows train "
    "in minutes on one worker. Auto would also fit SVMs (time grows with the square of the "
    "rows), k-nearest neighbours (keeps and searches every row), random forests and neural "
    "networks, which take hours or run out of memory at this size on one machine."
)
"""Why the Train page offers one model for a server table."""

DEFAULT_FOLDS = 3
"""Cross-validation folds suggested for a server table (each fold fits on two thirds of it)."""

DEFAULT_N_BOOT = 200
"""Bootstrap replicates suggested for a server table (intervals over up to a million cases)."""


def validation_note(large: LargeTable) -> str:
    """The Train page's note on the validation of a server table: its defaults and cost."""
    return (
        f"For {large.n_rows:,} rows the suggested settings are {DEFAULT_FOLDS} folds and "
        f"{DEFAULT_N_BOOT} bootstrap replicates: each fold already fits on hundreds of thousands "
        "of rows, and intervals over so many cases are narrow. The split stays by patient and "
        "the test set is scored once. Training runs as a job; on a two-core server a "
        "million rows take about ten minutes."
    )


def submit_training(
    *,
    config: ModelConfig,
    validation: ValidationConfig,
    positive: Any,
    cleaning: ServerCleaningReport,
) -> str:
    """Submit training on the whole server table as a job of the session's user.

    The job's worker reads the table itself, re-derives the cleaned rows from the plan, trains
    and sends back the result with a bounded sample of its cases; the server saves the run
    (:func:`medimg_core.store.large_tables.save_server_run`). The Train page follows it like
    any training job (:func:`medimg_core.ui.jobs.training_panel`).

    Raises
    ------
    PermissionDenied
        When the session's user may not train (audited as refused; nothing is queued).
    ConfigError
        When a model other than gradient boosting is asked for.
    """
    # Deferred for start-up speed (the store and the job layer pull in scikit-learn).
    from medimg_core.jobs import JobKind
    from medimg_core.store import guarded
    from medimg_core.store.large_tables import train_server_table
    from medimg_core.ui import jobs

    large = context()
    assert large is not None
    if config.model not in MODEL_CHOICES:
        raise ConfigError(
            f"Model {config.model!r} is not offered for a table of {large.n_rows:,} rows on the "
            "server; choose gradient boosting (histogram)."
        )
    roles: Roles = state.get(state.ROLES)
    actor, client = current_actor(), client_address()
    guarded.check(actor, Action.TRAIN, client=client)
    finish = functools.partial(
        _save_training,
        actor=actor,
        client=client,
        dataset_name=large.source.name,
        source={"path": str(large.source.path), "format": large.source.format},
        validation=validation,
    )
    job_id = jobs.manager().submit(
        JobKind.TRAIN,
        actor,
        f"Train gradient boosting on {large.source.name} ({cleaning.n_kept:,} rows)",
        train_server_table,
        large.summary.table,
        roles,
        cleaning.plan,
        config,
        validation,
        positive,
        finish=finish,
        client=client,
    )
    st.session_state[jobs.TRAIN_JOB] = job_id
    return job_id


def _save_training(
    outcome: ServerTraining,
    *,
    actor: Actor,
    client: str,
    dataset_name: str,
    source: dict[str, str],
    validation: ValidationConfig,
) -> TrainingSummary:
    """A server-table training job's finishing step, in the server (no Streamlit calls: it
    runs in the job manager's thread): save the run, keep a summary."""
    from medimg_core.jobs import TrainingSummary
    from medimg_core.store.large_tables import save_server_run
    from medimg_core.workspace import workspace_home

    result = outcome.result
    saved = save_server_run(
        actor,
        outcome,
        workspace_home() / "models" / uuid.uuid4().hex,
        client=client,
        dataset_name=dataset_name,
        source=source,
        validation=validation,
    )
    return TrainingSummary.of(result, saved)


def stored_cases_note(card: dict[str, Any]) -> str | None:
    """For Evaluate and Explain: what the run's stored cases are, when they are a sample of a
    server table's cases (None otherwise)."""
    from medimg_core.store.large_tables import cases_note

    return cases_note(card)


def shap_note(card: dict[str, Any], n_explained: int) -> str | None:
    """ "SHAP computed on 5,000 sampled cases (of 800,000 development cases) …" for a run on a
    server table (None for other runs)."""
    from medimg_core.store.large_tables import CASES_STORED

    development = (card.get(CASES_STORED) or {}).get("development") or {}
    total = int(development.get("of") or 0)
    if not total:
        return None
    return (
        f"SHAP computed on {n_explained:,} sampled cases (of {total:,} development cases, "
        "uniformly at random). Any case listed below can be explained on its own."
    )
