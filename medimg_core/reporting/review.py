"""Case review and scoring of new cases: the computations behind the Explain and Predict pages.

Explain needs the cases a model got wrong or nearly wrong, one case's features beside the
typical training value, and a what-if row. Predict needs new cases checked against the model's
schema, the cleaning plan re-applied to them, and a table of probabilities, decisions and top
reasons whose contributions are relative to the development data, as on the Explain page.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from medimg_core._messages import format_value
from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import Evaluation, case_table
from medimg_core.modelling.explain import (
    CaseExplanation,
    ModelExplainer,
    contribution_label,
    standard_error_label,
)
from medimg_core.modelling.models import MedimgModel
from medimg_core.modelling.prediction import (
    FLAG_COLUMNS,
    NO_DISTANCE_CHECK,
    Abstention,
    abstention_summary,
    ood_summary,
    predict,
)
from medimg_core.modelling.schema import SchemaReport, check_schema
from medimg_core.privacy import pseudonymise_ids
from medimg_core.tables.cleaning import CleaningPlan, CleaningReport, clean

__all__ = [
    "PICK_KINDS",
    "ScoredCases",
    "case_counts",
    "case_labels",
    "case_probabilities",
    "expected_columns",
    "feature_table",
    "prediction_plan",
    "pseudonymous_cases",
    "reason_text",
    "review_table",
    "score_new_cases",
    "select_cases",
    "with_changes",
]

PICK_KINDS: dict[str, str] = {
    "FN": "false negatives",
    "FP": "false positives",
    "wrong": "misclassified cases",
    "uncertain": "most uncertain cases",
}
"""Lists a case can be picked from (binary tasks: FN / FP; multi-class: wrong)."""

_PARTITIONS = {"cv": "development", "test": "test", "external": "external"}


def reason_text(feature: str, value: Any, contribution: float, unit: str | None = None) -> str:
    """One reason as shown in prediction tables: ``"worst area = 1,203 (+0.84 log-odds)"``
    (the contribution's unit, the explanation's output space, when given)."""
    return f"{feature} = {format_value(value)} ({contribution:+.2f}{f' {unit}' if unit else ''})"


def case_labels(cases: pd.DataFrame, id_column: str | None) -> pd.Series:
    """How each case is named on screen, aligned with ``cases.index``.

    Parameters
    ----------
    cases : the model's cases (``ActiveModel.cases``).
    id_column : the ID column, or None.

    Returns
    -------
    pandas.Series of str
        The ID when it names one row; "ID · row i" when a patient has several rows; "row i"
        (the row's index) without an ID column.
    """
    if id_column is None or id_column not in cases.columns:
        return pd.Series([f"row {i}" for i in cases.index], index=cases.index, dtype=object)
    ids = cases[id_column].astype(str)
    repeated = ids.duplicated(keep=False).to_numpy()
    labels = [
        f"{v} · row {i}" if rep else v
        for v, i, rep in zip(ids.to_numpy(), cases.index, repeated, strict=True)
    ]
    return pd.Series(labels, index=cases.index, dtype=object)


def review_table(
    evaluation: Evaluation,
    cases: pd.DataFrame,
    *,
    id_column: str | None,
    threshold: float | None = None,
) -> pd.DataFrame:
    """One row per evaluated case, indexed like ``cases``, for picking cases to explain.

    Parameters
    ----------
    evaluation : the cross-validated ("cv") or held-out "test" evaluation.
    cases : the model's cases with a ``partition`` column ("development" / "test"), in the
        order the data had when the model was trained.
    id_column : the ID column, or None.
    threshold : binary only; defaults to the evaluation's threshold.

    Returns
    -------
    pandas.DataFrame
        :func:`medimg_core.modelling.evaluation.case_table` columns plus ``label`` (see
        :func:`case_labels`), indexed by the rows of ``cases``.

    Raises
    ------
    DataError
        When the evaluated cases cannot be found among ``cases``.
    """
    table = case_table(evaluation, threshold)
    partition = _PARTITIONS.get(evaluation.partition, evaluation.partition)
    rows = cases[cases["partition"] == partition] if "partition" in cases.columns else cases
    if len(rows) == len(table):
        # Training keeps each split in data order, so the evaluation's rows follow the cases'.
        table.index = rows.index
    else:
        lookup = rows[id_column] if id_column is not None and id_column in rows.columns else None
        keys = (
            pd.Series(rows.index, index=rows.index)
            if lookup is None
            else pd.Series(lookup.index, index=lookup.astype(str).to_numpy())
        )
        keys = keys[~keys.index.duplicated()]
        wanted = table["case_id"].astype(str) if lookup is not None else table["case_id"]
        found = wanted.isin(keys.index)
        if not found.all():
            raise DataError(
                f"{int((~found).sum())} of the {len(table)} evaluated cases are not among the "
                f"model's {partition} cases; reopen the run so its cases are loaded again."
            )
        table = table[found.to_numpy()]
        table.index = pd.Index(keys.loc[wanted].to_numpy())
    labels = case_labels(cases, id_column)
    table.insert(0, "label", labels.loc[table.index].to_numpy())
    return table


def pseudonymous_cases(
    cases: pd.DataFrame | None,
    evaluations: tuple[Evaluation | None, ...],
    *,
    id_column: str | None,
    key: bytes,
) -> tuple[pd.DataFrame | None, tuple[Evaluation | None, ...]]:
    """A model's cases and evaluations with each patient ID replaced by its keyed pseudonym.

    The pseudonyms are those :func:`medimg_core.store.cases.save_cases` writes to
    ``cases.parquet`` (:func:`medimg_core.privacy.pseudonymise_ids` with the same key), so what
    is shown matches what is stored, and a patient's rows keep one shared name.

    Parameters
    ----------
    cases : the model's cases (None when it has none).
    evaluations : evaluations whose ``row_ids`` are the ID column's values (training passes the
        patient IDs as row IDs when there is an ID column).
    id_column : the ID column; without one nothing identifies a patient and nothing changes.
    key : the pseudonymisation key, :func:`medimg_core.privacy.pseudonym_key`.

    Returns
    -------
    cases, evaluations
        Copies (the inputs are left as they are).
    """
    if id_column is None or cases is None or id_column not in cases.columns:
        return cases, evaluations
    shown = cases.copy()
    shown[id_column] = pseudonymise_ids(cases[id_column], key)
    renamed = tuple(
        None
        if ev is None
        else replace(
            ev,
            row_ids=pseudonymise_ids(pd.Series(ev.row_ids, dtype=object), key).to_numpy(
                dtype=object
            ),
        )
        for ev in evaluations
    )
    return shown, renamed


def select_cases(
    table: pd.DataFrame, kind: Literal["FN", "FP", "wrong", "uncertain"], *, limit: int = 50
) -> pd.DataFrame:
    """The cases of one kind from a :func:`review_table`, the most telling first.

    Parameters
    ----------
    table : a :func:`review_table`.
    kind : "FN" / "FP" (binary), "wrong" (any task) or "uncertain" (closest calls).
    limit : most cases returned.

    Returns
    -------
    pandas.DataFrame
        False negatives by ascending probability (the surest misses first), false positives
        by descending probability, misclassified cases by descending confidence, uncertain
        cases by ascending ``uncertainty``.
    """
    if kind not in PICK_KINDS:
        raise ConfigError(f"Unknown kind of case {kind!r}; choose one of {list(PICK_KINDS)}.")
    score = "p_positive" if "p_positive" in table.columns else "p_predicted"
    if kind == "uncertain":
        return table.sort_values("uncertainty", kind="stable").head(limit)
    if kind == "wrong":
        wrong = table[table["outcome"].isin(["FN", "FP", "wrong"])]
        return wrong.sort_values("uncertainty", ascending=False, kind="stable").head(limit)
    chosen = table[table["outcome"] == kind]
    return chosen.sort_values(score, ascending=kind == "FN", kind="stable").head(limit)


def case_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many cases of each kind a :func:`review_table` holds.

    Returns
    -------
    dict
        ``PICK_KINDS`` key -> count ("uncertain" counts every case: it is a ranking).
    """
    outcome = table["outcome"]
    return {
        "FN": int((outcome == "FN").sum()),
        "FP": int((outcome == "FP").sum()),
        "wrong": int(outcome.isin(["FN", "FP", "wrong"]).sum()),
        "uncertain": len(table),
    }


def feature_table(case: CaseExplanation, reference: pd.DataFrame, *, k: int = 10) -> pd.DataFrame:
    """The features that moved this case most, beside their typical training value.

    Parameters
    ----------
    case : one case's explanation.
    reference : development rows (for the median of numeric features, the most frequent value
        of categorical ones).
    k : features listed.

    Returns
    -------
    pandas.DataFrame
        Columns ``Feature``, ``Value``, ``Typical value`` (text, formatted for reading) and the
        contribution named with its unit, e.g. ``Contribution (log-odds)`` (float, see
        :func:`~medimg_core.modelling.explain.contribution_label`), then, for permutation
        estimates, ``Standard error (probability)``; largest |contribution| first.
    """
    contribution = contribution_label(case.output_space)
    error = standard_error_label(case.output_space)
    order = case.values.abs().sort_values(ascending=False, kind="stable").index[:k]
    rows = []
    for feature in order:
        typical: Any = None
        if feature in reference.columns:
            column = reference[feature]
            numbers = pd.to_numeric(column, errors="coerce")
            if numbers.notna().sum() and numbers.notna().sum() == column.notna().sum():
                typical = float(numbers.median())
            elif column.notna().any():
                typical = column.mode(dropna=True).iloc[0]
        rows.append(
            {
                "Feature": str(feature),
                "Value": format_value(case.data.get(feature)),
                "Typical value": format_value(typical),
                contribution: float(case.values[feature]),
            }
        )
        if case.standard_errors is not None:
            rows[-1][error] = float(case.standard_errors[feature])
    columns = ["Feature", "Value", "Typical value", contribution]
    return pd.DataFrame(
        rows, columns=[*columns, *([error] if case.standard_errors is not None else [])]
    )


def with_changes(row: pd.DataFrame, changes: Mapping[str, Any]) -> pd.DataFrame:
    """A copy of a one-row frame with some feature values replaced (the what-if case).

    Parameters
    ----------
    row : one case (one row).
    changes : feature -> new value.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    DataError
        When ``row`` is not one row or a changed feature is not one of its columns.
    """
    if len(row) != 1:
        raise DataError(f"A what-if needs one case, got {len(row)} rows; pick one case.")
    unknown = [str(c) for c in changes if c not in row.columns]
    if unknown:
        raise DataError(
            f"What-if values for unknown feature(s) {unknown}; change only the case's features."
        )
    edited = row.copy()
    for column, value in changes.items():
        if pd.api.types.is_numeric_dtype(edited[column].dtype) and value is not None:
            edited[column] = float(value)
        else:
            edited[column] = pd.Series([value], index=edited.index, dtype=object)
    return edited


def case_probabilities(model: MedimgModel, rows: pd.DataFrame) -> pd.DataFrame:
    """The model's probabilities for some cases, one column per class (its name, else the
    label as text)."""
    proba = model.predict_proba(rows)
    if model.is_binary:
        negative = next(c for c in model.classes if c != model.positive_class)
        columns = [str(model.display_name(negative)), str(model.display_name(model.positive_class))]
    else:
        columns = [str(model.display_name(c)) for c in model.classes]
    return pd.DataFrame(proba, index=rows.index, columns=columns)


def expected_columns(model: MedimgModel) -> pd.DataFrame:
    """The feature columns a model needs in new data, with their type and training values.

    Returns
    -------
    pandas.DataFrame
        Columns ``Column``, ``Type`` ("number" / "category") and ``In training`` (the range
        of numbers or the categories seen).
    """
    rows = []
    for column in model.feature_columns:
        if column in model.numeric_columns:
            low, high = model.feature_ranges.get(column, (math.nan, math.nan))
            seen = f"{format_value(low)} to {format_value(high)}"
            kind = "number"
        else:
            categories = [str(c) for c in model.categories.get(column, ())]
            seen = ", ".join(categories[:8]) + (" …" if len(categories) > 8 else "")
            kind = "category"
        rows.append({"Column": str(column), "Type": kind, "In training": seen})
    return pd.DataFrame(rows, columns=["Column", "Type", "In training"])


def prediction_plan(plan: CleaningPlan, columns: Collection[Any]) -> CleaningPlan:
    """The training cleaning plan as it applies to new cases, one row at a time.

    Rules that judge a row on its own (missing values, the quality flag, plausible ranges) are
    kept. Rules that compare a row with the rest of its batch (duplicates, statistical
    outliers) or drop whole columns (empty, constant: every column of a single new case is
    constant) would make a case's fate depend on the other cases scored with it, so they are
    switched off; outliers are still flagged.

    Parameters
    ----------
    plan : the plan stored with the model.
    columns : the columns of the new data; the quality step is skipped when they lack the
        quality column, and ranges are kept for the columns they have.

    Returns
    -------
    CleaningPlan
    """
    present = set(columns)
    return replace(
        plan,
        duplicates="keep",
        outlier_action="flag",
        drop_empty_columns=False,
        drop_constant_columns=False,
        quality_column=plan.quality_column if plan.quality_column in present else None,
        ranges={c: bounds for c, bounds in plan.ranges.items() if c in present},
    )


@dataclass(frozen=True)
class ScoredCases:
    """New cases checked, cleaned and scored.

    Attributes
    ----------
    schema : the schema check of the input; when it has errors nothing was scored.
    cleaning : the cleaning of the input with :func:`prediction_plan` (None when the schema
        check failed).
    table : one row per scored case: the ID column (or ``row``, the 1-based row number in the
        input), ``P(<positive>)`` (binary) or ``P(<class>)`` per class, ``decision`` and
        ``reason_1`` .. ``reason_k``, then ``abstain_reason`` (when abstention is on) and the
        out-of-distribution flags ``ood_range``, ``ood_features``, ``ood_distance``,
        ``ood_flag`` (see :func:`medimg_core.modelling.prediction.case_flags`). Nothing else
        from the input (identifying columns never).
    not_scored : the rows the cleaning removed: ID or ``row``, and ``reason``.
    threshold : the decision threshold on P(positive) (binary; None for multi-class).
    positive_class : the positive label (binary; None for multi-class).
    probability_column : the column of ``table`` with P(positive) (binary) or the predicted
        class's probability (multi-class).
    n_input : rows in the input.
    warnings : what deserves a look before relying on the predictions (ignored columns,
        unseen categories, values outside the training range, imputed gaps), one sentence each.
    """

    schema: SchemaReport
    cleaning: CleaningReport | None
    table: pd.DataFrame
    not_scored: pd.DataFrame
    threshold: float | None
    positive_class: Any
    probability_column: str
    n_input: int
    warnings: tuple[str, ...] = ()
    distance_cutoff: float | None = None
    abstention: Abstention | None = None

    @property
    def n_flagged(self) -> int:
        """Cases unlike the training data (range or distance)."""
        if "ood_flag" not in self.table.columns:
            return 0
        return int(self.table["ood_flag"].astype(bool).sum())

    @property
    def n_abstained(self) -> int:
        """Cases given no decision (referred to a reader)."""
        if "decision" not in self.table.columns:
            return 0
        return int((self.table["decision"].astype(str) == "abstained").sum())

    @property
    def ood_notes(self) -> tuple[str, ...]:
        """The out-of-distribution and abstention summary, in plain sentences."""
        if not len(self.table):
            return ()
        out = [ood_summary(self.table)]
        if self.distance_cutoff is None:
            out.append(NO_DISTANCE_CHECK)
        if self.abstention is not None and self.abstention.active:
            out.append(abstention_summary(self.table))
        return tuple(out)

    @property
    def ok(self) -> bool:
        """True when the input could be scored (no schema errors)."""
        return self.schema.ok

    @property
    def n_scored(self) -> int:
        """Cases scored."""
        return len(self.table)

    @property
    def n_called(self) -> int:
        """Cases called the positive class (binary; 0 for multi-class)."""
        if self.positive_class is None or "decision" not in self.table.columns:
            return 0
        return int((self.table["decision"].astype(str) == str(self.positive_class)).sum())


def score_new_cases(
    model: MedimgModel,
    data: pd.DataFrame,
    *,
    explainers: Mapping[int, ModelExplainer] | None = None,
    threshold: float | None = None,
    explain_top: int = 3,
    abstain: Abstention | None = None,
    id_key: bytes | None = None,
) -> ScoredCases:
    """Check, clean and score new cases, with each case's top reasons.

    Parameters
    ----------
    model : the trained model.
    data : the new cases as uploaded (a label column, if present, is ignored).
    explainers : explainers of ``model`` built on the development data, by encoded class
        (binary: 1, the positive class; multi-class: every class index, each case explained
        for its predicted class). The reasons are then contributions relative to the
        development cases, as on the Explain page. Without them the reasons are those of
        :func:`medimg_core.modelling.prediction.predict` (relative to its default reference case).
    threshold : decision threshold on P(positive); defaults to the model's (binary only).
    explain_top : reasons per case (0 for none).
    abstain : when to give no decision (cases unlike the training data, an uncertainty band
        around the threshold); see :class:`medimg_core.modelling.prediction.Abstention`.
    id_key : when given, the ID column of ``table`` and ``not_scored`` holds the keyed
        pseudonym of each uploaded ID (:func:`medimg_core.privacy.pseudonymise_ids` with this
        key) instead of the ID itself.

    Returns
    -------
    ScoredCases
        With ``schema.errors`` set and an empty table when the data cannot be scored.
    """
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"The threshold must lie between 0 and 1, got {threshold!r}.")
    id_column = model.roles.id if model.roles.id and model.roles.id in data.columns else None
    key_column = id_column or "row"
    schema = check_schema(model, data)
    positive_name = model.display_name(model.positive_class) if model.is_binary else None
    prob_column = f"P({positive_name})" if model.is_binary else "P(predicted class)"
    cut = (
        (float(threshold) if threshold is not None else model.threshold)
        if model.is_binary
        else None
    )
    if not schema.ok:
        return ScoredCases(
            schema=schema,
            cleaning=None,
            warnings=schema.warnings,
            table=pd.DataFrame(columns=[key_column, prob_column, "decision"]),
            not_scored=pd.DataFrame(columns=[key_column, "reason"]),
            threshold=cut,
            positive_class=positive_name,
            probability_column=prob_column,
            n_input=len(data),
        )
    framed = data.reset_index(drop=True)
    framed.index = pd.RangeIndex(1, len(framed) + 1)
    roles = model.roles
    keep = [
        c
        for c in framed.columns
        if c in set(model.feature_columns) or c in (roles.id, roles.quality, roles.site)
    ]
    # Only the model's own columns are cleaned, so gaps in columns it ignores remove nothing.
    plan = prediction_plan(model.plan, keep)
    report = clean(framed[keep], roles, plan, require_label=False)
    kept = report.data
    keys = kept[id_column] if id_column else pd.Series(kept.index, index=kept.index)
    removed_keys = (
        report.removed[id_column] if id_column else pd.Series(report.removed.index.to_numpy())
    )
    if id_column and id_key is not None:
        keys = pseudonymise_ids(keys, id_key)
        removed_keys = pseudonymise_ids(removed_keys, id_key)
    not_scored = pd.DataFrame(
        {
            key_column: removed_keys.to_numpy(),
            "reason": report.removed[report.reason_column].astype(str).to_numpy(),
        }
    )
    if len(kept) == 0:
        table = pd.DataFrame(columns=[key_column, prob_column, "decision"])
        return ScoredCases(
            schema=schema,
            cleaning=report,
            warnings=_warnings(schema, report),
            table=table,
            not_scored=not_scored,
            threshold=cut,
            positive_class=positive_name,
            probability_column=prob_column,
            n_input=len(data),
        )
    k = min(explain_top, len(model.feature_columns))
    predictions = predict(
        model, kept, explain_top=k if explainers is None else 0, threshold=cut, abstain=abstain
    )
    columns: dict[str, Any] = {key_column: keys.to_numpy()}
    frame = predictions.frame
    if model.is_binary:
        p = frame[f"p_{positive_name}"].to_numpy(dtype=float)
        columns[prob_column] = p
        columns["decision"] = frame["decision"].to_numpy()
    else:
        shown = [model.display_name(c) for c in model.classes]
        proba = frame[[f"p_{c}" for c in shown]].to_numpy(dtype=float)
        columns[prob_column] = proba.max(axis=1)
        for j, cls in enumerate(shown):
            columns[f"P({cls})"] = proba[:, j]
        columns["decision"] = frame["decision"].to_numpy()
    if k > 0:
        if explainers is None:
            for j in range(k):
                columns[f"reason_{j + 1}"] = frame[f"reason_{j + 1}"].to_numpy()
        else:
            for j, texts in enumerate(_reasons(model, kept, explainers, frame, k)):
                columns[f"reason_{j + 1}"] = texts
    for column in ("abstain_reason", *FLAG_COLUMNS):
        if column in frame.columns:
            columns[column] = frame[column].to_numpy()
    return ScoredCases(
        schema=schema,
        cleaning=report,
        warnings=_warnings(schema, report),
        table=pd.DataFrame(columns).reset_index(drop=True),
        not_scored=not_scored,
        threshold=cut,
        positive_class=positive_name,
        probability_column=prob_column,
        n_input=len(data),
        distance_cutoff=predictions.distance_cutoff,
        abstention=abstain,
    )


def _warnings(schema: SchemaReport, report: CleaningReport) -> tuple[str, ...]:
    """The schema's warnings, minus the imputation note when the plan removes incomplete rows
    instead (they are listed among the rows not scored), plus the cleaning's notes."""
    if report.plan.missing == "drop":
        schema = replace(schema, rows_with_missing=0)
    return (*schema.warnings, *report.notes)


def _reasons(
    model: MedimgModel,
    kept: pd.DataFrame,
    explainers: Mapping[int, ModelExplainer],
    predictions: pd.DataFrame,
    k: int,
) -> list[list[str]]:
    """Each case's k largest contributions, as text, for the class it is scored on."""
    features = model.prepare_features(kept).reset_index(drop=True)
    if model.is_binary:
        targets = np.ones(len(features), dtype=int)
    else:
        # The most probable class (the decision may be "abstained").
        # Predictions name their probability columns by the classes' display names.
        proba = predictions[[f"p_{model.display_name(c)}" for c in model.classes]].to_numpy(
            dtype=float
        )
        targets = proba.argmax(axis=1).astype(int)
    reasons: list[list[str]] = [[""] * len(features) for _ in range(k)]
    for target in np.unique(targets):
        if int(target) not in explainers:
            raise ConfigError(
                f"No explainer for class index {int(target)}; pass one per class to explain."
            )
        rows = np.flatnonzero(targets == target)
        explanation = explainers[int(target)].explain(features.iloc[rows])
        for i, row in enumerate(rows):
            top = explanation.case(i).top_reasons(k)
            for j in range(min(k, len(top))):
                reasons[j][row] = reason_text(*top[j], explanation.output_space)
    return reasons
