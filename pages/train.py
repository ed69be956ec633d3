"""Train: choose a model and a validation scheme, train honestly, and read the headline result."""

from __future__ import annotations

import json
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from medimg_core.access import Action
from medimg_core.errors import MedimgError
from medimg_core.modelling.evaluation import METRIC_HELP
from medimg_core.modelling.guards import repeated_patients_warning
from medimg_core.modelling.models import CLASS_WEIGHT_IGNORED, ModelConfig
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.reporting import summaries
from medimg_core.reporting.figures.evaluation import leaderboard_figure
from medimg_core.tables.roles import Roles, feature_columns
from medimg_core.ui import cache, images, jobs, large, state, widgets, workflow
from medimg_core.ui.auth import current_actor
from medimg_core.ui.classes import positive_text
from medimg_core.ui.sites import site_validation_choice

C_OPTIONS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
LR_OPTIONS = (0.01, 0.03, 0.05, 0.1, 0.2, 0.3)
ALPHA_OPTIONS = (0.00001, 0.0001, 0.001, 0.01, 0.1, 1.0)
BOOT_OPTIONS = (200, 500, 1000, 2000)


def _saved_choice(
    label: str,
    options: tuple[float, ...],
    saved: object,
    default: float,
    *,
    key: str,
    help: str | None = None,
) -> float:
    """A select-slider over ``options`` starting at the saved setting (else ``default``)."""
    return st.select_slider(
        label,
        options=options,
        value=summaries.choice_or_default(saved, options, default),
        key=key,
        help=help,
    )


@st.cache_data(show_spinner=False, max_entries=16)
def repeated_patients(table_hash: str, _data: Any, roles_json: str, plan_json: str) -> str | None:
    """The near-identical-rows warning for the cleaned data, keyed like its cleaning (the table's
    content hash, roles and plan) so that no rerun hashes the whole cleaned table again."""
    return repeated_patients_warning(_data, Roles.from_dict(json.loads(roles_json)))


@st.cache_resource(show_spinner=False, max_entries=8)
def model_comparison_figure(model_key: str, _leaderboard: tuple[dict[str, Any], ...]) -> go.Figure:
    """The model comparison of the model whose key is ``model_key``, built once per model
    rather than on every change of a setting above (shared, not copied: nothing mutates it)."""
    return leaderboard_figure(summaries.leaderboard_rows(_leaderboard))


state.require_router()
st.title("Train")
workflow.require("train")

table = state.get(state.TABLE)
roles = state.get(state.ROLES)
report = state.get(state.CLEANING)
positive = state.get(state.POSITIVE)
active = state.get(state.ACTIVE)
data = report.data
predefined_test = images.predefined_test(data)
# A table on the server: the job trains on every kept row; ``data`` is the sample's kept rows.
big = large.context()
model_choices = large.MODEL_CHOICES if big is not None else summaries.MODEL_CHOICES
default_kind = "hgb" if big is not None else "auto"

# Start from the settings of the model in use, so coming back to this page shows how it was made.
previous = active.model.config if active is not None else ModelConfig()
previous_validation = (
    (active.card.get("validation") or {}).get("settings") if active else None
) or {}
n_features = len(feature_columns(data, roles))

st.caption(
    f"{report.n_kept:,} cleaned rows · {n_features} feature columns · label **{roles.label}**"
    + (
        f" · positive class **{positive_text(roles, positive)}** (chosen on the Data page)"
        if positive is not None
        else ""
    )
    + ". Every fitted step (imputation, scaling, PCA, the model) is fitted on training folds only."
)

with st.container(border=True):
    model_col, prep_col = st.columns([3, 2], gap="large")
    with model_col:
        kind = st.selectbox(
            "Model",
            model_choices,
            index=model_choices.index(
                previous.model if previous.model in model_choices else default_kind
            ),
            format_func=summaries.model_name,
            key="train_model",
            help="Auto cross-validates every model on the same folds and keeps the best by ROC "
            "AUC (the simplest one when several are within one standard error).",
        )
        if big is not None:
            st.caption(large.MODEL_NOTE)
        params: dict[str, object] = {}
        with st.expander("Hyper-parameters", expanded=False):
            same = previous.model == kind
            old = dict(previous.params) if same else {}
            if kind in ("auto", "seed"):
                st.caption(
                    "Auto compares every model with its default settings."
                    if kind == "auto"
                    else "The textbook preset uses fixed settings: standardise, 10 principal "
                    "components, 100 trees."
                )
            elif kind in ("logreg", "svm", "svm_linear"):
                params["C"] = _saved_choice(
                    "Regularisation strength C",
                    C_OPTIONS,
                    old.get("C"),
                    1.0,
                    key="train_C",
                    help="Smaller C = simpler model (stronger regularisation).",
                )
            elif kind == "rf":
                params["n_estimators"] = st.slider(
                    "Trees", 50, 1000, int(old.get("n_estimators", 300)), step=50, key="train_trees"
                )
                depth = st.slider(
                    "Maximum depth (0 = unlimited)",
                    0,
                    30,
                    int(old.get("max_depth") or 0),
                    key="train_depth",
                    help="Shallower trees overfit less.",
                )
                params["max_depth"] = depth or None
            elif kind == "hgb":
                params["learning_rate"] = _saved_choice(
                    "Learning rate",
                    LR_OPTIONS,
                    old.get("learning_rate"),
                    0.1,
                    key="train_lr",
                )
                params["max_iter"] = st.slider(
                    "Boosting iterations",
                    50,
                    1000,
                    int(old.get("max_iter", 100)),
                    step=50,
                    key="train_iter",
                )
            elif kind == "knn":
                params["n_neighbors"] = st.slider(
                    "Neighbours (k)", 1, 50, int(old.get("n_neighbors", 15)), key="train_k"
                )
            elif kind == "mlp":
                hidden = old.get("hidden_layer_sizes", (100,))
                first = next(iter(hidden)) if isinstance(hidden, list | tuple) else hidden
                size = st.slider(
                    "Hidden layer size",
                    10,
                    300,
                    int(first),
                    step=10,
                    key="train_hidden",
                    help="Neurons in the single hidden layer.",
                )
                params["hidden_layer_sizes"] = (size,)
                params["alpha"] = _saved_choice(
                    "L2 penalty (alpha)",
                    ALPHA_OPTIONS,
                    old.get("alpha"),
                    0.0001,
                    key="train_alpha",
                    help="Larger alpha = smoother, less overfitted network.",
                )
        class_weight = st.checkbox(
            "Balance class weights",
            value=previous.class_weight == "balanced",
            key="train_class_weight",
            help="Weights each class inversely to its frequency, so the rarer diagnosis is not "
            "ignored. Not available for k-nearest neighbours and the neural network.",
        )
        if class_weight and kind in CLASS_WEIGHT_IGNORED:
            st.caption(f"{summaries.model_name(kind)} has no class weights; this is ignored.")
    with prep_col:
        fixed = kind == "seed"
        scaling = st.selectbox(
            "Scaling",
            list(summaries.SCALING_NAMES),
            index=list(summaries.SCALING_NAMES).index(previous.scaling),
            format_func=summaries.SCALING_NAMES.get,
            key="train_scaling",
            disabled=fixed,
            help="Fitted on the training folds only.",
        )
        use_pca = st.checkbox(
            "Reduce with PCA",
            value=previous.pca is not None,
            key="train_use_pca",
            disabled=fixed,
            help="Principal components replace the features; explanations are still given in "
            "the original features.",
        )
        pca = None
        if use_pca and not fixed:
            pca = int(
                st.number_input(
                    "Components",
                    min_value=1,
                    max_value=max(1, n_features),
                    value=min(previous.pca or 10, max(1, n_features)),
                    key="train_pca",
                )
            )
        seed = int(
            st.number_input(
                "Random seed",
                min_value=0,
                max_value=2**31 - 1,
                value=int(previous.seed),
                key="train_seed",
                help="Used for the split, the folds and every random step; recorded in the card.",
            )
        )

with st.container(border=True):
    st.markdown("**Validation**")
    if big is not None:
        st.caption(large.validation_note(big))
    split_col, threshold_col = st.columns(2, gap="large")
    with split_col:
        if predefined_test is not None:
            test_size = float(previous_validation.get("test_size", 0.2))
            st.markdown(
                f":material/call_split: Test set: **the file's own test split "
                f"({sum(predefined_test):,} images)**, scored once at the end; its train and val "
                "images are the development set."
            )
        else:
            test_size = st.slider(
                "Held-out test share",
                0.0,
                0.5,
                float(previous_validation.get("test_size", 0.2)),
                step=0.05,
                format="%.2f",
                key="train_test_size",
                help="Set aside before anything is fitted and scored once at the end. 0 = no "
                "test set (cross-validation only).",
            )
        folds = int(
            st.number_input(
                "Cross-validation folds",
                min_value=2,
                max_value=20,
                value=int(
                    previous_validation.get("cv", large.DEFAULT_FOLDS if big is not None else 5)
                ),
                key="train_folds",
                help="Stratified folds on the development part; out-of-fold predictions give the "
                "cross-validated metrics and the threshold.",
            )
        )
        if roles.id:
            st.markdown(
                f":material/groups: Grouped by patient: **{roles.id}** — no patient is in two "
                "splits or two folds."
            )
        else:
            st.caption(
                ":material/warning: No patient ID column was chosen, so splits are by row. If a "
                "patient has several rows, choose the ID on the Data page to avoid leakage."
            )
            repeats = repeated_patients(
                table.content_hash, data, cache.as_json(roles), cache.as_json(report.plan)
            )
            if repeats:
                st.warning(repeats, icon=":material/content_copy:")
        by_site = site_validation_choice(data, roles, available=big is None)
    with threshold_col:
        rules = list(summaries.THRESHOLD_RULES)
        rule = st.radio(
            "Decision threshold",
            rules,
            index=rules.index(
                summaries.choice_or_default(previous_validation.get("threshold"), rules, "0.5")
            ),
            format_func=summaries.THRESHOLD_RULES.get,
            key="train_threshold_rule",
            help="Chosen on out-of-fold development predictions, never on the test set. You can "
            "explore other thresholds on the Evaluate page.",
        )
        target = float(previous_validation.get("target_sensitivity", 0.9))
        if rule == "sensitivity":
            target = st.slider(
                "Target sensitivity",
                0.5,
                0.99,
                target,
                step=0.01,
                key="train_target",
                help=METRIC_HELP["sensitivity"],
            )
        n_boot = int(
            _saved_choice(
                "Bootstrap replicates for the 95% intervals",
                BOOT_OPTIONS,
                previous_validation.get("n_boot"),
                large.DEFAULT_N_BOOT if big is not None else 1000,
                key="train_n_boot",
                help="Patients are resampled when grouped. More replicates = steadier intervals.",
            )
        )

actor = current_actor()
train_refusal = widgets.refusal_note(actor, Action.TRAIN)
may_train = train_refusal is None
if train_refusal is not None:
    st.caption(f"{train_refusal} Saved runs can be opened on the Runs page.")
busy = jobs.training_active()
if st.button(
    "Train",
    type="primary",
    key="train_go",
    icon=":material/play_arrow:",
    disabled=not may_train or busy,
    help="Your previous training job is still queued or running; cancel it below or wait."
    if busy
    else None,
):
    config = ModelConfig(
        model=kind,  # type: ignore[arg-type]
        scaling=scaling,  # type: ignore[arg-type]
        pca=pca,
        class_weight="balanced" if class_weight else None,
        params=params,
        seed=seed,
    )
    validation = ValidationConfig(
        test_size=test_size,
        cv=folds,
        threshold=rule,  # type: ignore[arg-type]
        target_sensitivity=target,
        n_boot=n_boot,
        predefined_test=predefined_test,
    )
    try:
        # Refused before anything is queued; the finished run is audited when it is saved.
        if big is not None:
            large.submit_training(
                config=config, validation=validation, positive=positive, cleaning=report
            )
        else:
            jobs.submit_training(
                data,
                roles=roles,
                config=config,
                validation=validation,
                positive=positive,
                cleaning=report,
                dataset_name=table.name,
                table_hash=table.content_hash,
                leave_one_site_out=by_site,
            )
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    st.rerun()  # the Train button is disabled while the job runs

showing_job = jobs.training_panel()
jobs.where_work_runs("train")


if active is None:
    if not showing_job:
        st.info("Choose the settings above and press **Train**.", icon=":material/info:")
    st.stop()

card = active.card
st.subheader(f"Model in use: {summaries.model_name(active.model.kind)}")
cv_auc = summaries.card_metric(card, "cv", "roc_auc")
test_auc = summaries.card_metric(card, "test", "roc_auc")
threshold = card.get("threshold") or {}
has_test = bool((card.get("metrics") or {}).get("test"))


first, second, third = st.columns(3)
first.metric(
    "Cross-validated ROC AUC",
    "n/a" if cv_auc.value != cv_auc.value else f"{cv_auc.value:.3f}",
    help="Out-of-fold predictions on the development part. "
    + METRIC_HELP["roc_auc"]
    + (f" 95% interval: {cv_auc.method}." if cv_auc.method else ""),
)
first.caption(summaries.interval_text(cv_auc))
selection_free = summaries.selection_free_metric(card)
if selection_free is not None:
    first.metric(
        "Selection-free CV ROC AUC",
        "n/a" if selection_free.value != selection_free.value else f"{selection_free.value:.3f}",
        help=summaries.SELECTION_FREE_NOTE,
    )
    first.caption(
        summaries.interval_text(selection_free)
        + " · honest figure for auto; the chosen model's own CV ROC AUC above is optimistic"
    )
own_split = (card.get("validation") or {}).get("test_split") == "predefined"
second.metric(
    "Test ROC AUC (the file's own split)" if own_split else "Held-out test ROC AUC",
    f"{test_auc.value:.3f}" if has_test and test_auc.value == test_auc.value else "n/a",
    help="Scored once on cases the model never saw: "
    + summaries.describe_test_set(card)
    + ". "
    + METRIC_HELP["roc_auc"]
    + (f" 95% interval: {test_auc.method}." if test_auc.method else ""),
)
second.caption(
    summaries.interval_text(test_auc) + f" · {summaries.describe_test_set(card)}"
    if has_test
    else "no test set"
)
if active.model.is_binary:
    rule = summaries.THRESHOLD_RULES.get(str(threshold.get("method")), "unknown rule")
    third.metric(
        "Decision threshold",
        f"{active.model.threshold:.3f}",
        help=f"Cases with P({active.model.display_name(active.model.positive_class)}) at or "
        "above it are called positive.",
    )
    third.caption(f"{rule}; chosen on development data")
else:
    third.metric("Decision", "most probable class", help="Multi-class models have no threshold.")
st.caption(
    f"Run {active.run_id or 'not recorded'} · "
    + summaries.card_facts(card)["Validation"]
    + f" · trained in {card.get('training_seconds', '?')} s"
)
for warning in active.warnings:
    st.warning(warning, icon=":material/warning:")

if active.leaderboard:
    rows = summaries.leaderboard_rows(active.leaderboard)
    with st.container(border=True):
        st.markdown(
            "**Model comparison** (auto)",
            help="Every candidate was cross-validated on the same folds; the interval is a 95% "
            "bootstrap interval of the cross-validated ROC AUC. The best of several models "
            "looks better than it is; the selection-free figure above corrects for that.",
        )
        chart_col, table_col = st.columns([5, 6], gap="medium")
        chart_col.plotly_chart(
            model_comparison_figure(active.key, active.leaderboard),
            width="stretch",
            key="train_board",
        )
        table_col.dataframe(
            summaries.leaderboard_frame(rows),
            hide_index=True,
            width="stretch",
            height=min(420, 38 + 35 * len(rows)),
            column_config={
                "Model": st.column_config.TextColumn(width="medium"),
                "Fit time (s)": st.column_config.NumberColumn(
                    "Fit (s)",
                    format="%.1f",
                    width="small",
                    help="Seconds for the whole cross-validation.",
                ),
                "Chosen": st.column_config.TextColumn("", width="small", help="The model kept."),
                "Note": st.column_config.TextColumn(width="large"),
            },
            key="train_board_table",
        )
        table_col.caption(
            "Auto keeps the simplest model whose cross-validated ROC AUC is within one standard "
            "error of the best, so a more complex model must be clearly better to be chosen."
        )

workflow.next_step("train")
