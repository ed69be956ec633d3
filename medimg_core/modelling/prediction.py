"""Applying a trained model to new cases: predictions with their reasons, and external evaluation.

Separate from ``training`` so that scoring new data (which explains each case with SHAP) and
fitting (which never explains) import downward only: ``prediction → explain → models``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medimg_core import compute
from medimg_core._messages import format_value
from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import Evaluation, evaluate_scores
from medimg_core.modelling.explain import METHOD_PERMUTATION, Explanation, ModelExplainer
from medimg_core.modelling.models import MedimgModel, class_names_by_code
from medimg_core.modelling.schema import SchemaReport, check_schema

__all__ = [
    "ABSTAINED",
    "BLOCK_ROWS",
    "FLAG_COLUMNS",
    "NO_DISTANCE_CHECK",
    "Abstention",
    "Predictions",
    "abstention_sentence",
    "abstention_summary",
    "case_flags",
    "decision_threshold",
    "evaluate_model",
    "ood_sentence",
    "ood_summary",
    "predict",
    "stamp_export",
]

ABSTAINED = "abstained"
"""The decision of a case the model declines to call (see :class:`Abstention`)."""

REFER = "no decision — refer to a reader"

NO_DISTANCE_CHECK = (
    "The distance check (is the case as a whole unlike the training cases?) is unavailable for "
    "this model: it was saved before medimg kept the statistics it needs, or trained on too few "
    "cases or no numeric features. Only the range check was done; retrain the model to enable it."
)

BLOCK_ROWS = 1024
"""Cases scored together in one call of the model (see ``_score_in_blocks``)."""

_ALIGN_ROWS = 64

FLAG_COLUMNS = ("ood_range", "ood_features", "ood_distance", "ood_flag")
"""Out-of-distribution columns of every prediction table and CSV."""


@dataclass(frozen=True)
class Abstention:
    """When the model gives no decision and the case goes to a reader.

    Parameters
    ----------
    ood : abstain on cases flagged as unlike the training data (``ood_flag``).
    band : (low, high): abstain when P(positive) lies in this band, which must contain the
        threshold (binary models only). For example (0.4, 0.6) around a threshold of 0.5.
    """

    ood: bool = False
    band: tuple[float, float] | None = None

    @property
    def active(self) -> bool:
        return self.ood or self.band is not None

    def check(self, threshold: float | None) -> None:
        """Raise :class:`ConfigError` for a band that is not a sub-interval of [0, 1] around
        ``threshold`` (or any band without a threshold)."""
        if self.band is None:
            return
        low, high = (float(v) for v in self.band)
        if threshold is None:
            raise ConfigError(
                "An uncertainty band needs a threshold, which only two-class models have; "
                "abstain on unusual cases only, or leave the band out."
            )
        if not (0.0 <= low < high <= 1.0):
            raise ConfigError(
                f"The uncertainty band {low:g}–{high:g} must be two probabilities between 0 and 1, "
                "the lower first (for example 0.4,0.6)."
            )
        if not low <= threshold <= high:
            raise ConfigError(
                f"The uncertainty band {low:.2f}–{high:.2f} must contain the threshold "
                f"{threshold:.2f}: it is meant for the cases closest to the decision."
            )


@dataclass(frozen=True)
class Predictions:
    """What :func:`predict` produced.

    Attributes
    ----------
    frame : one row per case: the ID column (or ``row``, 1-based), ``p_<positive>`` (binary)
        or ``p_<class>`` per class, ``decision`` ("abstained" when the model declines),
        ``threshold`` (binary), ``abstain_reason`` (when abstention is on), the
        out-of-distribution flags ``ood_range`` (a value outside the development range or an
        unseen category), ``ood_features`` (which, with the training range), ``ood_distance``
        (Mahalanobis distance from the development cases; missing when unavailable) and
        ``ood_flag`` (either check), and, when asked, ``reason_1`` .. ``reason_k``
        ("worst area = 1,203 (+0.84)"; contributions in the explanation's output space).
        Identifying columns are never included.
    schema : the schema check of the input.
    threshold : the decision threshold on P(positive) (binary).
    positive_class : the positive label (None for multi-class).
    distance_cutoff : distances above it are flagged (None when the check is unavailable).
    abstention : the abstention rule applied (None when the model always decides).
    """

    frame: pd.DataFrame
    schema: SchemaReport
    threshold: float
    positive_class: Any
    distance_cutoff: float | None = None
    abstention: Abstention | None = None

    @property
    def notes(self) -> tuple[str, ...]:
        """What the reader of these predictions should know, in plain words."""
        out = [ood_summary(self.frame)]
        if self.distance_cutoff is None:
            out.append(NO_DISTANCE_CHECK)
        if self.abstention is not None and self.abstention.active:
            out.append(abstention_summary(self.frame))
        return tuple(out)


def evaluate_model(
    model: MedimgModel, data: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0
) -> Evaluation:
    """Validate a trained model on new labelled data, without refitting (partition "external").

    Parameters
    ----------
    model : a trained model.
    data : new data with the model's label column and feature columns.
    n_boot : bootstrap replicates for the 95% intervals (patients are resampled when the data
        hold the model's ID column).
    seed : seed of the bootstrap.

    Returns
    -------
    Evaluation
        At the model's threshold.

    Raises
    ------
    DataError
        No label column, missing labels or labels the model has never seen.
    SchemaError
        Missing feature columns or text in numeric columns.
    """
    label_col = model.roles.label
    if not label_col or label_col not in data.columns:
        raise DataError(
            f"The data have no label column {label_col!r}, which external validation needs; "
            "add it (same name as in training) or use prediction instead."
        )
    y = model.encode_labels(data[label_col])
    proba = model.predict_proba(data)
    id_col = model.roles.id if model.roles.id and model.roles.id in data.columns else None
    groups = data[id_col].to_numpy() if id_col else None
    return evaluate_scores(
        y,
        proba[:, 1] if model.is_binary else proba,
        class_names=class_names_by_code(
            model.classes, model.positive_class, model.roles.class_names
        ),
        positive_class=model.positive_class,
        threshold=model.threshold,
        groups=groups,
        row_ids=groups if groups is not None else data.index.to_numpy(),
        partition="external",
        n_boot=n_boot,
        seed=seed,
    )


def predict(
    model: MedimgModel,
    data: pd.DataFrame,
    *,
    explain_top: int = 0,
    background: pd.DataFrame | None = None,
    threshold: float | None = None,
    abstain: Abstention | None = None,
    first_row: int = 1,
) -> Predictions:
    """Score new cases, flag those unlike the training data, and optionally abstain.

    Parameters
    ----------
    model : a trained model.
    data : the new cases (features; an ID column is carried through when the model has one).
    explain_top : when > 0, add ``reason_1`` .. ``reason_k``: each case's k largest SHAP
        contributions, e.g. "worst area = 1,203 (+0.84)".
    background : reference cases for the explanation, usually the development data. By default
        the model's typical training case (the imputer's medians / most frequent categories),
        so that a single case gets meaningful reasons: contributions are then relative to that
        typical case.
    threshold : the decision threshold on P(positive) (binary); default the model's.
    abstain : when to give no decision ("abstained", with ``abstain_reason``): cases flagged
        as unlike the training data, and/or P(positive) inside an uncertainty band.
    first_row : the number of the first case in the ``row`` column (without an ID column):
        ``data`` is then the part of a larger table starting at that row.

    Returns
    -------
    Predictions
        Each case's numbers depend on that case only: scoring a table whole or in parts gives
        the same values to the last digit.

    Raises
    ------
    SchemaError
        Missing feature columns or text in numeric columns.
    ConfigError
        A threshold outside [0, 1] or an uncertainty band that does not contain the threshold.
    """
    cut = decision_threshold(model, threshold, abstain)
    schema = check_schema(model, data)
    schema.raise_for_errors()
    # Prepared once: the probabilities, the flags and the reasons all read the same features.
    X = model.prepare_features(data)
    explainer = None
    if explain_top > 0 and len(data):
        reference = (
            _typical_case(model)
            if background is None
            else model.prepare_features(background).reset_index(drop=True)
        )
        explainer = ModelExplainer(model, reference, seed=model.config.seed)
    proba, flags, explanations = _score_in_blocks(model, X, explainer)
    id_col = model.roles.id if model.roles.id and model.roles.id in data.columns else None
    columns: dict[str, Any] = {}
    if id_col:
        columns[id_col] = data[id_col].to_numpy()
    else:
        columns["row"] = np.arange(first_row, first_row + len(data))
    if model.is_binary:
        negative = next(c for c in model.classes if c != model.positive_class)
        positive = model.display_name(model.positive_class)
        columns[f"p_{positive}"] = proba[:, 1]
        columns["decision"] = np.where(proba[:, 1] >= cut, positive, model.display_name(negative))
        columns["threshold"] = np.full(len(data), cut)
    else:
        shown = [model.display_name(c) for c in model.classes]
        for j, cls in enumerate(shown):
            columns[f"p_{cls}"] = proba[:, j]
        columns["decision"] = np.asarray(shown, dtype=object)[proba.argmax(axis=1)]
    frame = pd.DataFrame(columns, index=data.index)
    if abstain is not None and abstain.active:
        decision, referred = _abstain(
            frame["decision"].to_numpy(dtype=object),
            proba[:, 1] if model.is_binary else None,
            flags,
            abstain,
        )
        frame["decision"] = decision
        frame["abstain_reason"] = referred
    for column in FLAG_COLUMNS:
        frame[column] = flags[column].to_numpy()
    if explanations:
        k = min(explain_top, len(model.feature_columns))
        reasons: list[list[str]] = [[] for _ in range(k)]
        for explanation, n_cases in explanations:
            for j, texts in enumerate(_top_reasons(explanation, n_cases, k)):
                reasons[j].extend(texts)
        for j in range(k):
            frame[f"reason_{j + 1}"] = reasons[j]
    return Predictions(
        frame=frame.reset_index(drop=True),
        schema=schema,
        threshold=cut,
        positive_class=model.display_name(model.positive_class),
        distance_cutoff=model.ood.cutoff if model.ood is not None else None,
        abstention=abstain,
    )


def decision_threshold(
    model: MedimgModel, threshold: float | None, abstain: Abstention | None
) -> float:
    """The threshold :func:`predict` applies (default the model's), checked with the
    abstention rule.

    Raises
    ------
    ConfigError
        A threshold outside [0, 1] or an uncertainty band that does not contain it.
    """
    cut = float(model.threshold if threshold is None else threshold)
    if model.is_binary and not 0.0 <= cut <= 1.0:
        raise ConfigError(f"The threshold must lie between 0 and 1, got {threshold!r}.")
    if abstain is not None:
        abstain.check(cut if model.is_binary else None)
    return cut


def _score_in_blocks(
    model: MedimgModel, X: pd.DataFrame, explainer: ModelExplainer | None
) -> tuple[np.ndarray, pd.DataFrame, list[tuple[Explanation, int]]]:
    """Probabilities, flags and explanations of prepared features, block by block.

    A case's numbers must not depend on which other cases it is scored with (a table scored
    whole or in parts, on one machine or a cluster, gives the same predictions to the last
    digit). Linear algebra libraries compute the last rows of a matrix whose height is not a
    multiple of their vector width with other instructions, which round differently; so every
    block (``BLOCK_ROWS``) is padded with copies of its last case to a multiple of
    ``_ALIGN_ROWS`` rows, and the copies' results are dropped.
    """
    if not len(X):
        proba = model.recalibrate(np.asarray(model.pipeline.predict_proba(X), dtype=float))
        return proba, _flags(model, X), []
    probas: list[np.ndarray] = []
    flags: list[pd.DataFrame] = []
    explanations: list[tuple[Explanation, int]] = []
    for block in compute.chunks(len(X), BLOCK_ROWS):
        n_rows = len(block)
        positions = np.concatenate(
            [np.arange(block.start, block.stop), np.full(-n_rows % _ALIGN_ROWS, block.stop - 1)]
        )
        # Built afresh column by column: the memory layout the model sees (and with it the
        # order of its sums) must not depend on how the caller's table was made.
        padded = pd.DataFrame(
            {column: X[column].array.take(positions) for column in X.columns}, copy=True
        )
        probas.append(
            model.recalibrate(np.asarray(model.pipeline.predict_proba(padded), dtype=float))[
                :n_rows
            ]
        )
        flags.append(_flags(model, padded).iloc[:n_rows].set_axis(X.index[block], axis=0))
        if explainer is not None:
            # The permutation route costs thousands of model calls per case and already
            # gives each case the same model calls whatever its batch: explain only real cases.
            cases = padded.iloc[:n_rows] if explainer.method == METHOD_PERMUTATION else padded
            explanations.append((explainer.explain(cases), n_rows))
    return np.concatenate(probas), pd.concat(flags), explanations


def case_flags(model: MedimgModel, data: pd.DataFrame) -> pd.DataFrame:
    """Which cases lie outside the training distribution, and why.

    Two checks: the range check (any numeric feature outside the development min–max, or a
    category never seen in training) names the features; the distance check compares the
    case's Mahalanobis distance from the development cases with the 99th percentile of
    development distances (``model.ood``; unavailable for older models, then missing).

    Parameters
    ----------
    model : the trained model.
    data : the cases (the model's feature columns).

    Returns
    -------
    pandas.DataFrame
        Indexed like ``data``: ``ood_range`` (bool), ``ood_features`` (text, "" when none),
        ``ood_distance`` (float, NaN when unavailable) and ``ood_flag`` (bool: either check).
    """
    return _flags(model, model.prepare_features(data))


def _flags(model: MedimgModel, X: pd.DataFrame) -> pd.DataFrame:
    """:func:`case_flags` of features already prepared (``model.prepare_features``)."""
    named: list[list[str]] = [[] for _ in range(len(X))]
    for column, (low, high) in model.feature_ranges.items():
        if column not in X.columns:
            continue
        values = X[column].to_numpy(dtype=float)
        outside = np.flatnonzero(np.isfinite(values) & ((values < low) | (values > high)))
        for row in outside.tolist():
            named[row].append(
                f"{column} = {format_value(values[row])} "
                f"(training range {format_value(low)} to {format_value(high)})"
            )
    for column in model.categorical_columns:
        seen = {str(c) for c in model.categories.get(column, ())}
        for i, value in enumerate(X[column].to_numpy(dtype=object)):
            if not pd.isna(value) and str(value) not in seen:
                named[i].append(f"{column} = {value} (not seen in training)")
    in_range = np.array([not n for n in named], dtype=bool)
    if model.ood is not None and len(X):
        distance = model.ood.distances(X)
        far = distance > model.ood.cutoff
    else:
        distance = np.full(len(X), np.nan)
        far = np.zeros(len(X), dtype=bool)
    return pd.DataFrame(
        {
            "ood_range": ~in_range,
            "ood_features": ["; ".join(n) for n in named],
            "ood_distance": distance,
            "ood_flag": ~in_range | far,
        },
        index=X.index,
    )


def _abstain(
    decision: np.ndarray,
    p_positive: np.ndarray | None,
    flags: pd.DataFrame,
    abstain: Abstention,
) -> tuple[np.ndarray, list[str]]:
    """Decisions with "abstained" where the rule says so, and the reason of each."""
    reasons: list[str] = []
    out = decision.copy()
    ranged = flags["ood_range"].to_numpy(dtype=bool)
    flagged = flags["ood_flag"].to_numpy(dtype=bool)
    for i in range(len(decision)):
        why: list[str] = []
        if abstain.ood and flagged[i]:
            why.append(
                "outside the training range"
                if ranged[i]
                else "far from the training cases (distance check)"
            )
        if abstain.band is not None and p_positive is not None:
            low, high = abstain.band
            if low <= p_positive[i] <= high:
                why.append(
                    f"probability {p_positive[i]:.2f} in the uncertainty band {low:.2f}–{high:.2f}"
                )
        if why:
            out[i] = ABSTAINED
            reasons.append(f"{REFER}: " + "; ".join(why))
        else:
            reasons.append("")
    return out, reasons


def ood_summary(frame: pd.DataFrame) -> str:
    """One sentence: how many cases are unlike the training data, and by which check."""
    n = len(frame)
    if "ood_flag" not in frame.columns or n == 0:
        return "No cases were checked against the training data."
    flagged = int(frame["ood_flag"].astype(bool).sum())
    ranged = int(frame["ood_range"].astype(bool).sum()) if flagged else 0
    return ood_sentence(n, flagged, ranged)


def ood_sentence(n: int, flagged: int, ranged: int) -> str:
    """:func:`ood_summary` from counts: ``n`` cases, ``flagged`` by either check, ``ranged`` by
    the range check (a table written in parts is summed part by part)."""
    if n == 0:
        return "No cases were checked against the training data."
    if not flagged:
        return f"All {n:,} case(s) are within the training data's range and distance."
    far = flagged - ranged
    parts = []
    if ranged:
        parts.append(f"{ranged:,} with a value outside the training range")
    if far:
        parts.append(f"{far:,} only by their distance from the training cases")
    return (
        f"{flagged:,} of {n:,} cases are unlike the training data ({', '.join(parts)}); "
        "treat their predictions with caution."
    )


def abstention_summary(frame: pd.DataFrame) -> str:
    """One sentence: how many cases got no decision."""
    n = len(frame)
    abstained = int((frame["decision"].astype(str) == ABSTAINED).sum()) if n else 0
    return abstention_sentence(n, abstained)


def abstention_sentence(n: int, abstained: int) -> str:
    """:func:`abstention_summary` from counts."""
    return f"{abstained:,} of {n:,} cases got no decision and should be referred to a reader."


def stamp_export(
    frame: pd.DataFrame,
    *,
    run_id: str | None,
    model_sha256: str | None,
    threshold: float | None,
    positive_class: Any,
    threshold_source: str | None = None,
) -> pd.DataFrame:
    """A prediction table as exported: every row says which model, threshold and class.

    Parameters
    ----------
    frame : the predictions.
    run_id : the registry run ID; when there is none, the model's SHA-256 takes its place
        (prefixed ``model-sha256:``), so every file can be traced to one model.
    model_sha256 : the checksum of ``model.skops`` (from the card).
    threshold : the decision threshold used (None for multi-class).
    positive_class : the positive class (None for multi-class).
    threshold_source : where the threshold came from, e.g. "chosen on the Evaluate page".

    Returns
    -------
    pandas.DataFrame
        ``frame`` with ``run_id``, ``model_sha256``, ``threshold``, ``positive_class`` (and
        ``threshold_source`` when given) as its first columns.
    """
    stamp: dict[str, Any] = {
        "run_id": run_id or (f"model-sha256:{model_sha256}" if model_sha256 else "unknown"),
        "model_sha256": model_sha256 or "",
        "threshold": np.nan if threshold is None else float(threshold),
        "positive_class": "" if positive_class is None else str(positive_class),
    }
    if threshold_source:
        stamp["threshold_source"] = threshold_source
    body = frame.drop(columns=[c for c in stamp if c in frame.columns])
    head = pd.DataFrame({k: [v] * len(body) for k, v in stamp.items()}, index=body.index)
    return pd.concat([head, body], axis=1)


def _typical_case(model: MedimgModel) -> pd.DataFrame:
    """One row: the training median of each numeric feature and the most frequent category,
    read from the fitted imputers (so it needs no training data)."""
    prep = model.pipeline.named_steps["prep"]
    row: dict[str, Any] = {}
    for name, columns in (("num", model.numeric_columns), ("cat", model.categorical_columns)):
        if columns:
            statistics = prep.named_transformers_[name].named_steps["impute"].statistics_
            row.update(zip(columns, statistics, strict=True))
    return model.prepare_features(pd.DataFrame([row]))


def _top_reasons(explanation: Explanation, n_cases: int, k: int) -> list[list[str]]:
    """``reason_1`` .. ``reason_k`` of the first ``n_cases`` cases: the k largest |contributions|
    of each, ordered exactly as :meth:`CaseExplanation.top_reasons` orders them (pandas'
    descending sort), without building a Series per case."""
    magnitude = np.abs(np.asarray(explanation.values[:n_cases], dtype=float))
    p = magnitude.shape[1]
    # pandas sorts descending by reversing, sorting ascending (quicksort) and reversing back.
    order = (p - 1 - np.argsort(magnitude[:, ::-1], axis=1, kind="quicksort"))[:, ::-1][:, :k]
    data = explanation.data
    names = list(data.columns)
    where = [names.index(feature) for feature in explanation.feature_names]
    unit = explanation.output_space
    out: list[list[str]] = [[] for _ in range(k)]
    for i in range(n_cases):
        for j, column in enumerate(order[i].tolist()):
            out[j].append(
                _format_reason(
                    explanation.feature_names[column],
                    data.iat[i, where[column]],
                    float(explanation.values[i, column]),
                    unit,
                )
            )
    return out


def _format_reason(feature: str, value: Any, contribution: float, unit: str) -> str:
    """ "worst area = 1,203 (+0.84 log-odds)": the contribution with its unit."""
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        shown = "missing" if not np.isfinite(value) else f"{float(value):,.4g}"
    else:
        shown = "missing" if pd.isna(value) else str(value)
    return f"{feature} = {shown} ({contribution:+.2f} {unit})"
