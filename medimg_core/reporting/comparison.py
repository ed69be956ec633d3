"""Comparing saved runs: their cross-validated and test ROC AUC with 95% intervals side by side.

Runs are only comparable on the same data; :func:`comparison_notes` says when they are not,
and that choosing among runs by their shared test set is itself a selection step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from medimg_core.errors import ConfigError, DataError
from medimg_core.tables.roles import class_key

# The model code is imported by the functions that compare cases, so that `medimg runs` (which
# only needs selection_note) loads none of it.
if TYPE_CHECKING:
    import pandas as pd

    from medimg_core.modelling.paired import PairedComparison
    from medimg_core.store.registry import RunRecord

__all__ = [
    "SELECTION_NOTE",
    "comparison_figure",
    "comparison_notes",
    "difference_text",
    "paired_rates",
    "paired_rates_frame",
    "paired_runs",
    "paired_sentence",
    "run_label",
    "runs_frame",
    "selection_note",
]

SELECTION_NOTE = (
    "Choosing among runs by their test results uses the test set for selection: the chosen "
    "run's test figures are then optimistic; report the chosen run on new data."
)

_PARTITIONS = (
    ("cv", "Cross-validated (development)", "#0072B2"),
    ("test", "Held-out test", "#D55E00"),
)


def run_label(record: RunRecord) -> str:
    """A short name for a run: "Random forest · wdbc · 2024-05-01 10:32"."""
    from medimg_core.reporting.summaries import model_name

    created = record.created_at.strftime("%Y-%m-%d %H:%M")
    dataset = record.dataset_name or record.dataset_hash[:12]
    return f"{model_name(record.model_kind)} · {dataset} · {created}"


def runs_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Key validation figures of several runs, one row per run.

    Parameters
    ----------
    records : the runs to compare.

    Returns
    -------
    pandas.DataFrame
        Columns ``Model``, ``Dataset``, ``CV ROC AUC (95% CI)``, ``Test ROC AUC (95% CI)``,
        ``Test sensitivity``, ``Test specificity``, ``Threshold``, ``Rows``, ``Run``.
    """
    import pandas as pd

    from medimg_core.modelling.evaluation import format_metric
    from medimg_core.reporting.summaries import card_metric, model_name

    rows = []
    for r in records:
        card = r.card

        def shown(partition: str, metric: str, card: dict = card) -> str:
            return format_metric(card_metric(card, partition, metric))

        rows.append(
            {
                "Run": r.id,
                "Model": model_name(r.model_kind),
                "Dataset": r.dataset_name or r.dataset_hash[:12],
                "Rows": r.n_rows,
                "CV ROC AUC (95% CI)": shown("cv", "roc_auc"),
                "Test ROC AUC (95% CI)": shown("test", "roc_auc"),
                "Test sensitivity": shown("test", "sensitivity"),
                "Test specificity": shown("test", "specificity"),
                "Threshold": "" if r.threshold is None else f"{r.threshold:.3f}",
            }
        )
    columns = [
        "Model",
        "Dataset",
        "CV ROC AUC (95% CI)",
        "Test ROC AUC (95% CI)",
        "Test sensitivity",
        "Test specificity",
        "Threshold",
        "Rows",
        "Run",
    ]
    return pd.DataFrame(rows, columns=columns)


def selection_note(records: Sequence[RunRecord]) -> str | None:
    """:data:`SELECTION_NOTE` when two or more ``records`` were scored on the same test set.

    Runs trained on the same data (same content hash) with test results share their test cases,
    or most of them; picking the best of them by those results is a selection step on the test
    set, so the winner's test figures are no longer an honest, once-only estimate.

    Returns
    -------
    str or None
        The note, or None when no two runs share a test set.
    """
    with_test: dict[str, int] = {}
    for r in records:
        if (r.metrics.get("test") or (r.card.get("metrics") or {}).get("test")) is not None:
            with_test[r.dataset_hash] = with_test.get(r.dataset_hash, 0) + 1
    return SELECTION_NOTE if any(n > 1 for n in with_test.values()) else None


def comparison_notes(records: Sequence[RunRecord]) -> tuple[str, ...]:
    """Caveats for comparing ``records``: choosing by the test set, different data or classes."""
    notes: list[str] = []
    selection = selection_note(records)
    if selection is not None:
        notes.append(selection)
    if len({r.dataset_hash for r in records}) > 1:
        notes.append(
            "These runs were trained on different data (or different cleaning), so their "
            "scores are not directly comparable; compare runs on the same data."
        )
    if len({str(r.positive_class) for r in records}) > 1:
        notes.append(
            "These runs call different classes positive; sensitivity and specificity swap "
            "meaning between them."
        )
    return tuple(notes)


def comparison_figure(records: Sequence[RunRecord]) -> go.Figure:
    """ROC AUC with its 95% interval per run, cross-validated and on the test set.

    Parameters
    ----------
    records : the runs to compare (at least one).

    Returns
    -------
    go.Figure
        Two traces (cross-validated, held-out test), one row per run, newest at the top. When
        two or more runs share a test set the test trace's name says that choosing a run by
        it is a selection step.

    Raises
    ------
    ConfigError
        When no run is given.
    """
    from medimg_core.modelling.evaluation import format_metric
    from medimg_core.reporting.summaries import card_metric, model_name

    if not records:
        raise ConfigError("Choose at least one saved run to compare.")
    labels = [f"{model_name(r.model_kind)} · {r.id[:15]}" for r in records]
    fig = go.Figure()
    shown: list[float] = []
    selecting = selection_note(records) is not None
    for partition, name, colour in _PARTITIONS:
        if partition == "test" and selecting:
            # The label travels with the chart when it is exported on its own.
            name += " (choosing a run by it is a selection step)"
        metrics = [card_metric(r.card, partition, "roc_auc") for r in records]
        value = np.array([m.value for m in metrics], dtype=float)
        if not np.isfinite(value).any():
            continue
        lo = np.array([m.ci95[0] for m in metrics], dtype=float)
        hi = np.array([m.ci95[1] for m in metrics], dtype=float)
        shown.extend(float(v) for v in np.concatenate([value, lo, hi]) if np.isfinite(v))
        fig.add_trace(
            go.Scatter(
                x=value,
                y=labels,
                mode="markers",
                name=name,
                marker={"color": colour, "size": 11},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": np.nan_to_num(hi - value),
                    "arrayminus": np.nan_to_num(value - lo),
                    "color": colour,
                    "thickness": 2,
                    "width": 5,
                },
                customdata=[format_metric(m) for m in metrics],
                hovertemplate="%{y}<br>ROC AUC %{customdata}<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        template="plotly_white",
        height=max(260, min(520, 120 + 44 * len(records))),
        title={"text": "ROC AUC of the saved runs (95% CI)", "x": 0.01, "font": {"size": 15}},
        margin={"l": 10, "r": 10, "t": 44, "b": 30},
        font={"size": 13},
        legend={"orientation": "h", "x": 0, "y": 0, "yref": "container", "yanchor": "bottom"},
        scattermode="group",
    )
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=labels[::-1])
    # Padding on both sides so a marker at AUC 1.00 is not cut by the plot edge.
    low, high = min(shown, default=0.5), max(shown, default=1.0)
    pad = max(0.005, (high - low) * 0.08)
    fig.update_xaxes(tickformat=".3f", title={"text": "ROC AUC"}, range=[low - pad, high + pad])
    return fig


_PARTITION_WORDS = {"test": "test", "cv": "cross-validated (out-of-fold) development"}


def _binary_cases(record: RunRecord, cases: pd.DataFrame, which: str) -> None:
    from medimg_core.store.cases import P_POSITIVE, PARTITION

    if record.card.get("positive_class") is None or P_POSITIVE not in cases.columns:
        raise DataError(
            f"Run {which} ({record.id}) is a multi-class model; the paired ROC AUC comparison "
            "is for two-class models. Compare multi-class runs by their cards' metrics."
        )
    label = (record.card.get("roles") or {}).get("label") or record.label
    if label is None or label not in cases.columns or PARTITION not in cases.columns:
        raise DataError(
            f"The stored cases of run {which} ({record.id}) lack the label or partition column; "
            "they do not belong to this run. Retrain the run to rewrite them."
        )
    if not cases.index.is_unique:
        raise DataError(
            f"The stored cases of run {which} ({record.id}) repeat a row key, so they cannot be "
            "matched case by case; retrain the run to rewrite them."
        )


def _matched_cases(
    record_a: RunRecord,
    cases_a: pd.DataFrame,
    record_b: RunRecord,
    cases_b: pd.DataFrame,
    partition: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Labels (0/1), both runs' probabilities and patients of the partition's cases, matched
    by row key; refuses runs that were not scored on the same cases."""
    from medimg_core.reporting.summaries import card_positive_text
    from medimg_core.store.cases import DEVELOPMENT, P_POSITIVE, PARTITION, TEST

    paired_partitions = {TEST: TEST, "cv": DEVELOPMENT}
    if partition not in paired_partitions:
        raise ConfigError(
            f"Unknown partition {partition!r}; compare runs on 'test' (held-out cases) or 'cv' "
            "(out-of-fold development cases)."
        )
    if record_a.id == record_b.id:
        raise ConfigError("Run A and run B are the same run; choose two different runs.")
    _binary_cases(record_a, cases_a, "A")
    _binary_cases(record_b, cases_b, "B")
    if record_a.dataset_hash != record_b.dataset_hash:
        raise DataError(
            f"Runs {record_a.id} and {record_b.id} were trained on different data (or the same "
            "file cleaned differently), so they were not scored on the same cases and cannot "
            "be compared case by case; compare runs trained on the same data."
        )
    label_a = (record_a.card.get("roles") or {}).get("label") or record_a.label
    label_b = (record_b.card.get("roles") or {}).get("label") or record_b.label
    if label_a != label_b:
        raise DataError(
            f"Run A predicts {label_a!r} but run B predicts {label_b!r}; compare runs of the "
            "same label."
        )
    pos_a = class_key(record_a.card["positive_class"])
    pos_b = class_key(record_b.card["positive_class"])
    if pos_a != pos_b:
        raise DataError(
            f"Run A calls {card_positive_text(record_a.card)} positive but run B calls "
            f"{card_positive_text(record_b.card)} positive; retrain one of them with the same "
            "positive class to compare them."
        )
    stored = paired_partitions[partition]
    part_a = cases_a[cases_a[PARTITION] == stored]
    part_b = cases_b[cases_b[PARTITION] == stored]
    words = _PARTITION_WORDS[partition]
    if part_a.empty or part_b.empty:
        raise DataError(
            f"Run {'A' if part_a.empty else 'B'} has no {words} cases; compare on "
            f"{'cv' if partition == TEST else 'test'} instead."
        )
    keys_a, keys_b = set(part_a.index), set(part_b.index)
    if keys_a != keys_b:
        shared = len(keys_a & keys_b)
        fix = (
            "different test split; retrain with the same seed and split (test share and "
            "grouping) to compare them on the test set, or compare on 'cv'"
            if partition == TEST
            else "different development cases; retrain with the same seed and split"
        )
        raise DataError(
            f"Runs {record_a.id} and {record_b.id} were scored on different {words} cases "
            f"({len(keys_a)} and {len(keys_b)}, {shared} in common): {fix}."
        )
    part_b = part_b.loc[part_a.index]
    y_a = part_a[label_a].map(class_key)
    y_b = part_b[label_a].map(class_key)
    if not (y_a.to_numpy() == y_b.to_numpy()).all():
        raise DataError(
            f"{int((y_a.to_numpy() != y_b.to_numpy()).sum())} of the matched cases carry a "
            "different label in the two runs (different cleaning or label coding), so they are "
            "not the same cases; retrain both runs from the same cleaned table."
        )
    id_col = (record_a.card.get("roles") or {}).get("id")
    groups = None
    if id_col and id_col in part_a.columns:
        if (
            id_col not in part_b.columns
            or not (
                part_a[id_col].astype(str).to_numpy() == part_b[id_col].astype(str).to_numpy()
            ).all()
        ):
            raise DataError(
                "The matched cases belong to different patients in the two runs (a different "
                "patient ID column or pseudonym key), so they are not the same cases; retrain "
                "both runs with the same patient ID column in this workspace."
            )
        groups = part_a[id_col].astype(str).to_numpy()
    return (
        (y_a == pos_a).to_numpy(dtype=int),
        part_a[P_POSITIVE].to_numpy(dtype=float),
        part_b[P_POSITIVE].to_numpy(dtype=float),
        groups,
    )


def paired_runs(
    record_a: RunRecord,
    cases_a: pd.DataFrame,
    record_b: RunRecord,
    cases_b: pd.DataFrame,
    *,
    partition: str = "test",
    n_boot: int = 1000,
    seed: int | None = None,
) -> PairedComparison:
    """Compare two saved runs' ROC AUC on the cases both were scored on (B minus A).

    Two runs are comparable on a partition only when its stored cases are the same cases: the
    same training data (content hash), the same rows (matched by their row key, never by
    position), the same patients (pseudonymised IDs) and the same labels, with the same class
    called positive. On "test" each run's final model scored the held-out cases; on "cv" each
    development case carries its out-of-fold probability.

    Parameters
    ----------
    record_a, record_b : the two runs' registry records.
    cases_a, cases_b : their stored cases (:func:`medimg_core.store.cases.load_cases`).
    partition : "test" (default) or "cv".
    n_boot : bootstrap resamples when patients have several cases.
    seed : bootstrap seed; default run A's training seed.

    Returns
    -------
    PairedComparison
        From :func:`medimg_core.modelling.paired.compare_paired` (DeLong's test, or a paired
        bootstrap over patients when a patient has several cases).

    Raises
    ------
    ConfigError
        When the partition is unknown or both runs are the same run.
    DataError
        When the runs are not comparable case by case (different data, split, patients, labels
        or positive class), either is multi-class, or the partition has no case.
    """
    from medimg_core.modelling.paired import compare_paired

    y01, p_a, p_b, groups = _matched_cases(record_a, cases_a, record_b, cases_b, partition)
    return compare_paired(
        y01,
        p_a,
        p_b,
        groups=groups,
        n_boot=n_boot,
        seed=record_a.seed if seed is None else seed,
        partition=partition,
    )


def paired_rates(
    record_a: RunRecord,
    cases_a: pd.DataFrame,
    record_b: RunRecord,
    cases_b: pd.DataFrame,
    *,
    partition: str = "test",
) -> tuple[PairedComparison, PairedComparison] | None:
    """Sensitivity and specificity of two runs on the same cases, each at its own threshold.

    McNemar's exact test with Newcombe's paired interval
    (:func:`medimg_core.modelling.paired.compare_rates_paired`); the cases must be comparable
    as for :func:`paired_runs`.

    Returns
    -------
    (sensitivity, specificity) or None
        None when a patient has several cases (McNemar's test takes cases as independent) or
        a run has no recorded threshold.

    Raises
    ------
    ConfigError, DataError
        As :func:`paired_runs`.
    """
    from medimg_core.modelling.paired import compare_rates_paired

    y01, p_a, p_b, groups = _matched_cases(record_a, cases_a, record_b, cases_b, partition)
    if groups is not None and len(set(groups.tolist())) < len(groups):
        return None
    if record_a.threshold is None or record_b.threshold is None:
        return None
    return compare_rates_paired(
        y01,
        p_a,
        p_b,
        threshold_a=record_a.threshold,
        threshold_b=record_b.threshold,
        partition=partition,
    )


def _signed(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}".replace("-", "\u2212")


def difference_text(comparison: PairedComparison) -> str:
    """The difference with its interval and p-value: "−0.002 (95% CI −0.005 to 0.001), p = 0.28"."""
    diff = comparison.difference
    lo, hi = diff.ci95
    interval = (
        f"95% CI {_signed(lo)} to {_signed(hi)}"
        if np.isfinite(lo) and np.isfinite(hi)
        else "95% CI not computable"
    )
    return f"{_signed(diff.value)} ({interval}), {_p_text(comparison.p_value)}"


def paired_rates_frame(
    rates: tuple[PairedComparison, PairedComparison],
    positive: str | None,
    *,
    threshold_a: float,
    threshold_b: float,
) -> pd.DataFrame:
    """Sensitivity and specificity of two runs side by side, with the paired difference.

    Parameters
    ----------
    rates : (sensitivity, specificity) from :func:`paired_rates`.
    positive : the positive class as shown to users ("malignant"), named in every row.
    threshold_a, threshold_b : each run's own threshold.

    Returns
    -------
    pandas.DataFrame
        Columns ``Metric``, ``Run A (threshold …)``, ``Run B (threshold …)``,
        ``Difference B − A (95% CI)``, ``p (McNemar)``, ``Cases``; values as text.
    """
    import pandas as pd

    from medimg_core.modelling.evaluation import format_metric, metric_label

    col_a = f"Run A (threshold {threshold_a:.3f})"
    col_b = f"Run B (threshold {threshold_b:.3f})"
    rows = []
    for rate in rates:
        lo, hi = rate.difference.ci95
        rows.append(
            {
                "Metric": metric_label(rate.metric, positive),
                col_a: format_metric(rate.value_a),
                col_b: format_metric(rate.value_b),
                "Difference B \u2212 A (95% CI)": (
                    f"{_signed(rate.difference.value)} ({_signed(lo)} to {_signed(hi)})"
                    if np.isfinite(lo) and np.isfinite(hi)
                    else "n/a"
                ),
                "p (McNemar)": _p_text(rate.p_value).removeprefix("p = ").removeprefix("p "),
                "Cases": f"{rate.n_cases:,}",
            }
        )
    return pd.DataFrame(rows)


def _p_text(p: float) -> str:
    if not np.isfinite(p):
        return "p not computable"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def paired_sentence(
    comparison: PairedComparison, name_a: str = "Run A", name_b: str = "Run B"
) -> str:
    """The comparison in one plain sentence.

    For example "Run B's ROC AUC is 0.012 higher than Run A's (95% CI −0.004 to 0.028,
    p = 0.14, DeLong): no evidence of a difference on these 114 test cases."
    """
    diff = comparison.difference
    lo, hi = diff.ci95
    if abs(diff.value) < 0.0005:
        change = f"{name_b}'s ROC AUC equals {name_a}'s ({_signed(diff.value)} difference"
    else:
        direction = "higher" if diff.value > 0 else "lower"
        change = f"{name_b}'s ROC AUC is {abs(diff.value):.3f} {direction} than {name_a}'s ("
    method = "DeLong" if comparison.method.startswith("DeLong") else "paired bootstrap"
    interval = (
        f"95% CI {_signed(lo)} to {_signed(hi)}"
        if np.isfinite(lo) and np.isfinite(hi)
        else "95% CI not computable"
    )
    opening = change if change.endswith("(") else change + ", "
    where = f"these {comparison.n_cases:,} {_PARTITION_WORDS[comparison.partition]} cases"
    if comparison.n_patients is not None and comparison.n_patients < comparison.n_cases:
        where += f" of {comparison.n_patients:,} patients"
    if comparison.significant:
        better = name_b if diff.value > 0 else name_a
        verdict = f"evidence that {better} ranks cases better on {where}"
    else:
        verdict = f"no evidence of a difference on {where}"
    return f"{opening}{interval}, {_p_text(comparison.p_value)}, {method}): {verdict}."
