"""Metrics per subgroup (sex, age band, site ...) and leave-one-site-out validation.

A model that does well overall can still fail one group of patients. :func:`subgroup_metrics`
gives the usual metrics with 95% intervals for every value of a column (a site, sex, an age
band), on the out-of-fold development probabilities ("cv") or on the test set ("test"), at the
model's own threshold. :func:`leave_one_site_out` is a validation scheme for data from several
sites: each site in turn is held out, a model is developed on the other sites exactly as
training does (threshold and model choice decided on their out-of-fold predictions) and scored
once on the held-out site. It is extra evidence of how the model transfers to a new hospital;
the deployed model stays the one trained with the normal scheme.

Small groups are reported, not hidden: a group with fewer than :data:`MIN_GROUP` cases or with
one class only gets the metrics that exist (with exact intervals where the bootstrap cannot
give one) and a note saying why the rest are missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medimg_core.errors import ConfigError, DataError, MedimgError
from medimg_core.modelling.evaluation import (
    Evaluation,
    MetricValue,
    evaluate_scores,
    finite_or_none,
)
from medimg_core.modelling.models import MedimgModel, ModelConfig, class_names_by_code
from medimg_core.modelling.task import resolve_task
from medimg_core.modelling.training import train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.tables.cleaning import CleaningPlan
from medimg_core.tables.roles import Roles

__all__ = [
    "AGE_BANDS",
    "MIN_GROUP",
    "MISSING",
    "GroupMetrics",
    "SiteValidation",
    "check_sites",
    "group_labels",
    "leave_one_site_out",
    "subgroup_card",
    "subgroup_metrics",
]

MIN_GROUP = 10
"""Below this many cases a group's intervals are very wide; it is reported with a note."""

MISSING = "missing"
"""The group of cases whose value is missing (kept as a group of its own, never dropped)."""

AGE_BANDS: tuple[tuple[float, float, str], ...] = (
    (-np.inf, 40.0, "<40"),
    (40.0, 50.0, "40–49"),
    (50.0, 60.0, "50–59"),
    (60.0, 70.0, "60–69"),
    (70.0, np.inf, "≥70"),
)
"""Age bands in years: (lower bound included, upper bound excluded, label)."""

# The stored cases' columns (see medimg_core.store.cases; that layer sits above this one).
_PARTITION = "partition"
_PARTITIONS = {"cv": "development", "test": "test"}
_P_POSITIVE = "p_positive"
_AGE_TOKENS = frozenset({"age", "ageyears"})
_MAX_CATEGORIES = 12
_MAX_AGE_CATEGORIES = 5  # an age column with a few values is already coded in groups


@dataclass(frozen=True)
class GroupMetrics:
    """The metrics of one group of cases (one value of one column) in one partition.

    Attributes
    ----------
    column : the column that defines the groups (e.g. "sex", "age", "site").
    group : the group's display label ("F", "50–59", "missing", "Hospital B").
    partition : "cv" (out-of-fold development probabilities), "test", or "held-out site"
        (leave-one-site-out).
    n : cases in the group.
    n_positive : binary: cases of the positive class; multi-class: cases of every class but
        the first (e.g. any abnormality).
    metrics : metric -> value with its 95% interval, as :func:`evaluate_scores` gives them at
        the model's threshold (undefined metrics are NaN, e.g. specificity without negatives).
    note : why some metrics are missing or uncertain ("" when nothing to say).
    threshold : the decision threshold the threshold-dependent metrics used (binary).
    grouping : how the column's groups were formed ("in age bands ...", "in tertiles ...").
    """

    column: str
    group: str
    partition: str
    n: int
    n_positive: int
    metrics: dict[str, MetricValue]
    note: str = ""
    threshold: float | None = None
    grouping: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "group": self.group,
            "partition": self.partition,
            "n": int(self.n),
            "n_positive": int(self.n_positive),
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "note": self.note,
            "threshold": finite_or_none(self.threshold),
            "grouping": self.grouping,
        }


@dataclass(frozen=True)
class SiteValidation:
    """Leave-one-site-out validation: each site held out in turn and scored once.

    Attributes
    ----------
    site_column : the site column.
    per_site : one row per held-out site (partition "held-out site"), in site order.
    pooled : metrics of every held-out prediction together (None when no site was scored).
    notes : sites skipped and why, rows without a site, thresholds, and that the deployed model
        is the normally trained one.
    n_sites : distinct sites in the data (scored or skipped).
    pooled_threshold : the threshold of the pooled threshold-dependent metrics (binary).
    """

    site_column: str
    per_site: tuple[GroupMetrics, ...]
    pooled: dict[str, MetricValue] | None
    notes: tuple[str, ...]
    n_sites: int = 0
    pooled_threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "site_column": self.site_column,
            "per_site": [row.to_dict() for row in self.per_site],
            "pooled": (
                None if self.pooled is None else {k: m.to_dict() for k, m in self.pooled.items()}
            ),
            "notes": list(self.notes),
            "n_sites": int(self.n_sites),
            "pooled_threshold": finite_or_none(self.pooled_threshold),
        }


# --- grouping ---------------------------------------------------------------------------------


def _age_like(column: str) -> bool:
    tokens = {t for t in "".join(ch if ch.isalnum() else " " for ch in column.lower()).split()}
    return bool(tokens & _AGE_TOKENS)


def _number_text(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e6 else f"{x:.3g}"


def group_labels(
    values: pd.Series, *, column: str, reference: pd.Series | None = None
) -> tuple[pd.Series, tuple[str, ...], str]:
    """The group of every value of a column, the groups in display order, and how they were made.

    Numbers with more than 12 distinct values (age-like columns, named age, age_years ...:
    more than 5) are put in bands: age-like columns in the usual bands (<40, 40–49, 50–59, 60–69, ≥70) when
    at least two of them hold cases, otherwise (and for any other number) in tertiles. Tertile
    cut points come from ``reference`` (the development rows), never from the rows evaluated,
    so the test set decides nothing. Other values are groups of their own. Missing values form
    the group :data:`MISSING`.

    Parameters
    ----------
    values : the column, for the rows to group.
    column : its name (age-like names get age bands).
    reference : the values the tertile cut points are taken from; default ``values``.

    Returns
    -------
    (pandas.Series of str, tuple of str, str)
        Group per row (same index), groups in display order (bands ascending, then other
        values sorted, "missing" last), and a sentence saying how the groups were formed.
    """
    ref = values if reference is None else reference
    numeric = pd.to_numeric(values, errors="coerce")
    ref_numeric = pd.to_numeric(ref, errors="coerce")
    is_number = values.notna().sum() > 0 and bool(
        (numeric.notna() | values.isna()).all() and not pd.api.types.is_bool_dtype(values)
    )
    labels: pd.Series
    many = _MAX_AGE_CATEGORIES if _age_like(column) else _MAX_CATEGORIES
    if is_number and ref_numeric.dropna().nunique() > many:
        present = ref_numeric.dropna()
        bands = [
            (lo, hi, name) for lo, hi, name in AGE_BANDS if ((present >= lo) & (present < hi)).any()
        ]
        if _age_like(column) and present.min() >= 0 and present.max() <= 120 and len(bands) >= 2:
            order = [name for _, _, name in AGE_BANDS]
            labels = pd.Series(MISSING, index=values.index, dtype=object)
            for lo, hi, name in AGE_BANDS:
                labels[(numeric >= lo) & (numeric < hi)] = name
            how = "in age bands (<40, 40–49, 50–59, 60–69, ≥70 years)"
        else:
            cuts = np.unique(np.quantile(present.to_numpy(dtype=float), [1 / 3, 2 / 3]))
            edges = [-np.inf, *cuts.tolist(), np.inf]
            order = []
            for i in range(len(edges) - 1):
                lo, hi = edges[i], edges[i + 1]
                if np.isinf(lo):
                    order.append(f"<{_number_text(hi)}")
                elif np.isinf(hi):
                    order.append(f"≥{_number_text(lo)}")
                else:
                    order.append(f"{_number_text(lo)} to <{_number_text(hi)}")
            labels = pd.Series(MISSING, index=values.index, dtype=object)
            for i, name in enumerate(order):
                labels[(numeric >= edges[i]) & (numeric < edges[i + 1])] = name
            reason = (
                "its range does not fit the usual age bands"
                if _age_like(column)
                else "it is a continuous number"
            )
            how = (
                f"in tertiles of the development cases ({reason}; cut points "
                f"{', '.join(_number_text(c) for c in cuts)})"
            )
    else:
        if is_number:
            text = numeric.map(lambda v: None if pd.isna(v) else _number_text(float(v)))
        else:
            text = values.map(lambda v: None if pd.isna(v) else str(v).strip() or None)
        labels = text.fillna(MISSING).astype(object)
        present_groups = [g for g in pd.unique(labels) if g != MISSING]
        if is_number:
            order = sorted(present_groups, key=lambda g: float(g))
        else:
            order = sorted(present_groups, key=str)
        how = "one group per value"
    ordered = [g for g in order if (labels == g).any()]
    if (labels == MISSING).any():
        ordered.append(MISSING)
    return labels, tuple(ordered), how


# --- metrics per group ------------------------------------------------------------------------


def _names(model: MedimgModel) -> tuple[str, ...]:
    # As medimg_core.store.cases.case_evaluations, so a group's figures match the overall ones
    # and a coded class is shown by its name ("benign", not "0").
    return class_names_by_code(model.classes, model.positive_class, model.roles.class_names)


def _score_columns(model: MedimgModel) -> list[str]:
    if model.is_binary:
        return [_P_POSITIVE]
    return [f"p_{c}" for c in model.classes]


def _group_note(n: int, y01: np.ndarray, binary: bool, names: tuple[str, ...]) -> str:
    notes = []
    if n < MIN_GROUP:
        notes.append(f"only {n} case{'s' if n != 1 else ''}: the intervals are very wide")
    present = sorted({int(v) for v in y01})
    if len(present) == 1:
        only = names[present[0]]
        if binary:
            missing = "specificity" if present[0] == 1 else "sensitivity"
            notes.append(
                f"every case is {only}, so ROC AUC, {missing} and balanced accuracy do not exist "
                "here"
            )
        else:
            notes.append(f"every case is {only}, so the one-vs-rest AUCs do not exist here")
    return "; ".join(notes)


def _evaluate_group(
    model: MedimgModel,
    part: pd.DataFrame,
    *,
    column: str,
    group: str,
    partition: str,
    n_boot: int,
    seed: int,
) -> GroupMetrics:
    label = model.roles.label
    assert label is not None
    names = _names(model)
    y = model.encode_labels(part[label])
    scores = part[_score_columns(model)].to_numpy(dtype=float)
    id_col = model.roles.id if model.roles.id and model.roles.id in part.columns else None
    groups = part[id_col].to_numpy() if id_col else None
    threshold = float(model.threshold) if model.is_binary else 0.5
    evaluation = evaluate_scores(
        y,
        scores[:, 0] if model.is_binary else scores,
        class_names=names,
        positive_class=model.positive_class,
        threshold=threshold,
        groups=groups,
        row_ids=groups if groups is not None else part.index.to_numpy(),
        partition=partition,
        n_boot=n_boot,
        seed=seed,
    )
    n_positive = int((y == 1).sum()) if model.is_binary else int((y != 0).sum())
    return GroupMetrics(
        column=column,
        group=group,
        partition=partition,
        n=len(part),
        n_positive=n_positive,
        metrics=dict(evaluation.metrics),
        note=_group_note(len(part), y, model.is_binary, names),
        threshold=threshold if model.is_binary else None,
    )


def subgroup_metrics(
    model: MedimgModel,
    cases: pd.DataFrame,
    columns: Sequence[str],
    *,
    partition: str = "cv",
    n_boot: int = 1000,
    seed: int | None = None,
) -> tuple[GroupMetrics, ...]:
    """Metrics with 95% intervals per group of each column, on one partition of the cases.

    Parameters
    ----------
    model : the trained model (labels encoded, threshold and ID column taken from it).
    cases : the stored cases (``medimg_core.store.cases.load_cases``): label, ``partition``,
        probability columns and the grouping columns.
    columns : the columns to group by (e.g. ``model.roles.analysis_columns()``); the label and
        the ID are never grouped by.
    partition : "cv" (development rows with their out-of-fold probabilities) or "test".
    n_boot : bootstrap replicates per group (patients are resampled when an ID exists; small or
        perfect groups get the exact intervals :func:`evaluate_scores` gives them).
    seed : bootstrap seed; default the model's seed.

    Returns
    -------
    tuple of GroupMetrics
        Per column (in the given order), per group (bands ascending, values sorted, "missing"
        last). Empty when the partition has no rows.

    Raises
    ------
    ConfigError
        An unknown partition, or a column that is not among the cases.
    DataError
        The cases lack the label or probability columns.
    """
    if partition not in _PARTITIONS:
        raise ConfigError(
            f"partition must be 'cv' or 'test'; got {partition!r}. Subgroups are evaluated on "
            "the out-of-fold development predictions ('cv') or on the test set ('test')."
        )
    label = model.roles.label
    needed = [label, _PARTITION, *_score_columns(model)]
    lacking = [c for c in needed if c is None or c not in cases.columns]
    if lacking:
        raise DataError(
            f"The stored cases lack the column(s) {lacking}; they do not belong to this model. "
            "Retrain the model to rewrite them."
        )
    unknown = [c for c in columns if c not in cases.columns]
    if unknown:
        raise ConfigError(
            f"Column(s) {unknown} are not among the model's stored cases, so they cannot be "
            "analysed by group; mark them as subgroup columns (or the site) before training."
        )
    seed = model.config.seed if seed is None else int(seed)
    development = cases[cases[_PARTITION] == _PARTITIONS["cv"]]
    part = cases[cases[_PARTITION] == _PARTITIONS[partition]]
    rows: list[GroupMetrics] = []
    if part.empty:
        return ()
    for column in dict.fromkeys(columns):
        if column in {label, model.roles.id}:
            continue
        labels, order, how = group_labels(
            part[column], column=str(column), reference=development[column]
        )
        for group in order:
            row = _evaluate_group(
                model,
                part[labels == group],
                column=str(column),
                group=group,
                partition=partition,
                n_boot=n_boot,
                seed=seed,
            )
            rows.append(dataclasses.replace(row, grouping=how))
    return tuple(rows)


def subgroup_card(
    model: MedimgModel,
    cases: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    n_boot: int = 1000,
    seed: int | None = None,
) -> dict[str, Any] | None:
    """The model card's ``"subgroups"`` entry: per column, how its groups were formed and the
    group metrics on "cv" and "test" (None when there is nothing to analyse).

    Parameters
    ----------
    model, cases, n_boot, seed : as :func:`subgroup_metrics`.
    columns : default ``model.roles.analysis_columns()`` present in the cases.

    Returns
    -------
    dict or None
        ``{column: {"grouping": str, "cv": [GroupMetrics dicts], "test": [...]}}``.
    """
    wanted = model.roles.analysis_columns() if columns is None else tuple(columns)
    present = [c for c in wanted if c in cases.columns]
    if not present:
        return None
    development = cases[cases[_PARTITION] == _PARTITIONS["cv"]]
    out: dict[str, Any] = {}
    for column in present:
        _, _, how = group_labels(development[column], column=str(column))
        out[str(column)] = {
            "grouping": how,
            "is_site": column == model.roles.site,
            **{
                partition: [
                    row.to_dict()
                    for row in subgroup_metrics(
                        model, cases, [column], partition=partition, n_boot=n_boot, seed=seed
                    )
                ]
                for partition in ("cv", "test")
            },
        }
    return out


# --- leave one site out -----------------------------------------------------------------------


def _site_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_sites(data: pd.DataFrame, roles: Roles) -> str:
    """The site column, after checking that leave-one-site-out validation can run on ``data``
    (called before training, so the user learns it at once, not after minutes of training).

    Raises
    ------
    ConfigError
        No site column is set, or it is not in the data.
    DataError
        Fewer than two sites.
    """
    site = roles.site
    if not site:
        raise ConfigError(
            "Leave-one-site-out validation needs a site column; mark the column that names the "
            "hospital or scanner as the site (Data page, or --site on the command line)."
        )
    if site not in data.columns:
        raise ConfigError(
            f"The site column {site!r} is not in the table; choose one of its columns as the site."
        )
    sites = pd.unique(data[site].dropna())
    if len(sites) < 2:
        found = "no site" if not len(sites) else f"one site ({_site_text(sites[0])})"
        raise DataError(
            f"Leave-one-site-out validation needs at least 2 sites in {site!r}; the table has "
            f"{found}. Use the normal validation, or add data from another site."
        )
    return str(site)


def _site_row(column: str, text: str, test: Evaluation) -> GroupMetrics:
    """One held-out site's metrics: the test evaluation of the round that held it out."""
    y = np.asarray(test.y_true)
    n_positive = int((y == 1).sum()) if test.is_binary else int((y != 0).sum())
    return GroupMetrics(
        column=column,
        group=text,
        partition="held-out site",
        n=test.n,
        n_positive=n_positive,
        metrics=dict(test.metrics),
        note=_group_note(test.n, y, test.is_binary, test.class_names),
        threshold=float(test.threshold) if test.is_binary else None,
    )


def leave_one_site_out(
    data: pd.DataFrame,
    roles: Roles,
    config: ModelConfig,
    validation: ValidationConfig,
    *,
    positive: Any = None,
    plan: CleaningPlan | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> SiteValidation:
    """Hold out each site in turn, develop a model on the other sites, score the held-out site.

    Each round calls :func:`medimg_core.modelling.training.train` with the held-out site as its
    predefined test set, so model choice and threshold are decided on the other sites'
    out-of-fold predictions and the held-out site is scored once. Rows without a site are
    never held out (they are used for development in every round).

    Parameters
    ----------
    data : the cleaned table (with the site column ``roles.site``).
    roles : the confirmed roles; ``roles.site`` names the site column.
    config : the pipeline, as for training.
    validation : folds, threshold rule and bootstrap replicates (``test_size`` and
        ``predefined_test`` are replaced by the held-out site).
    positive : the positive class, as for training (settled once on the whole table).
    plan : the cleaning plan, as for training.
    progress : ``progress(fraction, message)`` after each site.

    Returns
    -------
    SiteValidation
        Per held-out site metrics with 95% intervals, and the pooled metrics of every held-out
        prediction.

    Raises
    ------
    ConfigError
        No site column is set, or it is not in the data.
    DataError
        Fewer than two sites, or no site could be scored (each skipped site is named with the
        reason).
    """
    site = check_sites(data, roles)
    sites = [s for s in pd.unique(data[site].dropna())]
    sites.sort(key=lambda v: _site_text(v))
    task = resolve_task(data, roles, positive)
    positive_class = task.positive_class
    label = task.label_column
    notes: list[str] = []
    no_site = int(data[site].isna().sum())
    if no_site:
        notes.append(
            f"{no_site} row(s) have no site; they were used for development in every round and "
            "never held out."
        )
    rows: list[GroupMetrics] = []
    pooled_y: list[np.ndarray] = []
    pooled_s: list[np.ndarray] = []
    pooled_g: list[np.ndarray] = []
    thresholds: list[float] = []
    failures: list[MedimgError] = []
    names: tuple[str, ...] = ()
    id_col = roles.id if roles.id and roles.id in data.columns else None
    plan_kw: dict[str, Any] = {} if plan is None else {"plan": plan}
    for i, value in enumerate(sites):
        text = _site_text(value)
        held = data[site].eq(value).to_numpy()
        if data.loc[held, label].dropna().nunique() < 2:
            only = data.loc[held, label].dropna()
            shown = roles.class_name(only.iloc[0]) if len(only) else "no label"
            notes.append(
                f"Site {text} was not held out: all its {int(held.sum())} cases are {shown}, so "
                "its discrimination cannot be measured (its cases stay in the other rounds' "
                "development data)."
            )
            continue
        round_validation = dataclasses.replace(
            validation, predefined_test=tuple(bool(b) for b in held)
        )
        try:
            result = train(
                data,
                roles,
                config=config,
                validation=round_validation,
                positive=positive_class,
                **plan_kw,
            )
        except MedimgError as exc:
            failures.append(exc)
            notes.append(f"Site {text} was not held out: training on the other sites failed: {exc}")
            continue
        test = result.test
        if test is None:  # pragma: no cover (a predefined non-empty test set is always scored)
            continue
        names = test.class_names
        rows.append(_site_row(site, text, test))
        pooled_y.append(np.asarray(test.y_true))
        pooled_s.append(np.asarray(test.y_score, dtype=float))
        if id_col:
            # In the order of the round's test evaluation (its rows, as training kept them).
            pooled_g.append(data.loc[list(result.test_index), id_col].to_numpy())
        thresholds.append(float(test.threshold))
        if progress is not None:
            progress((i + 1) / len(sites), f"site {text} held out and scored")
    if not rows and failures and len({str(e) for e in failures}) == 1:
        raise failures[0]  # the same problem in every round: the data, not one site
    if not rows:
        raise DataError(
            "No site could be held out: " + " ".join(notes) + " Use the normal validation."
        )
    pooled_threshold = float(np.mean(thresholds))
    binary = pooled_s[0].ndim == 1
    if binary and len(set(thresholds)) > 1:
        notes.append(
            "Each round chose its own threshold on its development sites ("
            + ", ".join(f"{t:.3f}" for t in thresholds)
            + f"); the pooled sensitivity and specificity use their mean, {pooled_threshold:.3f}."
        )
    pooled = evaluate_scores(
        np.concatenate(pooled_y),
        np.concatenate(pooled_s) if binary else np.vstack(pooled_s),
        class_names=names,
        positive_class=positive_class,
        threshold=pooled_threshold if binary else 0.5,
        groups=np.concatenate(pooled_g) if id_col else None,
        partition="held-out site",
        n_boot=validation.n_boot,
        seed=config.seed,
    )
    notes.append(
        "Each site was held out in turn: a model was developed on the other sites exactly as in "
        "training and scored once on the held-out site. This is extra evidence of how the model "
        "transfers to a new site; the deployed model is still the one trained with the normal "
        "validation."
    )
    return SiteValidation(
        site_column=site,
        per_site=tuple(rows),
        pooled=dict(pooled.metrics),
        notes=tuple(notes),
        n_sites=len(sites),
        pooled_threshold=pooled_threshold if binary else None,
    )
