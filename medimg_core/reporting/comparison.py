"""Comparing saved runs: their cross-validated and test ROC AUC with 95% intervals side by side.

Runs are only comparable on the same data; :func:`comparison_notes` says when they are not,
and that choosing among runs by their shared test set is itself a selection step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from medimg_core.errors import ConfigError
from medimg_core.modelling.evaluation import format_metric
from medimg_core.reporting.summaries import card_metric, model_name
from medimg_core.store.registry import RunRecord

__all__ = [
    "SELECTION_NOTE",
    "comparison_figure",
    "comparison_notes",
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
