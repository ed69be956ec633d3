"""The Runs page's "Compare two runs" section: two runs' ROC AUC on the same cases, paired.

The user picks run A, run B and the cases (held-out test or out-of-fold development); both runs
are opened (audited as "open run"), their stored cases matched key by key and compared with
:func:`medimg_core.reporting.comparison.paired_runs` (DeLong's test, or a paired bootstrap over
patients). Runs that were not scored on the same cases are refused with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from medimg_core.errors import MedimgError
from medimg_core.modelling.evaluation import format_metric
from medimg_core.modelling.paired import PairedComparison
from medimg_core.reporting.comparison import (
    SELECTION_NOTE,
    difference_text,
    paired_rates,
    paired_rates_frame,
    paired_runs,
    paired_sentence,
    run_label,
)
from medimg_core.reporting.summaries import card_positive_text
from medimg_core.store import guarded
from medimg_core.store.cases import load_cases
from medimg_core.store.registry import RunRecord
from medimg_core.ui.auth import client_address, current_actor

__all__ = ["PARTITION_LABELS", "RESULT_KEY", "render_paired_comparison"]

PARTITION_LABELS = {
    "test": "Held-out test cases",
    "cv": "Cross-validated (out-of-fold) development cases",
}
RESULT_KEY = "paired_result"
"""Session key of the last comparison: ``((run_a, run_b, partition), ROC AUC comparison,
(sensitivity, specificity) comparisons or None)``."""


def _compare(
    run_a: str, run_b: str, partition: str
) -> tuple[PairedComparison, tuple[PairedComparison, PairedComparison] | None]:
    actor, client = current_actor(), client_address()
    records = [guarded.open_run(actor, run_id, client=client) for run_id in (run_a, run_b)]
    stored = [load_cases(r.model_dir) for r in records]
    both = (records[0], stored[0], records[1], stored[1])
    return paired_runs(*both, partition=partition), paired_rates(*both, partition=partition)


def render_paired_comparison(runs: Sequence[RunRecord]) -> None:
    """Draw the "Compare two runs" section for the listed ``runs`` (newest first)."""
    with st.container(border=True):
        st.markdown("**Compare two runs on the same cases**")
        if len(runs) < 2:
            st.caption(
                "Train a second model on the same data with the same seed and split to compare "
                "two runs' ROC AUC case by case, with a paired 95% interval and p-value."
            )
            return
        by_id = {r.id: r for r in runs}
        ids = list(by_id)

        def name(run_id: str) -> str:
            return f"{run_label(by_id[run_id])} · {run_id}"

        left, right = st.columns(2)
        run_a = left.selectbox("Run A", ids, index=1, format_func=name, key="paired_a")
        run_b = right.selectbox("Run B", ids, index=0, format_func=name, key="paired_b")
        partition = st.radio(
            "Cases",
            list(PARTITION_LABELS),
            format_func=PARTITION_LABELS.__getitem__,
            horizontal=True,
            key="paired_partition",
            help="Both runs must have been scored on the same cases: the same data, the same "
            "split (seed, test share, grouping) and the same patients.",
        )
        chosen = (run_a, run_b, partition)
        if st.button("Compare", key="paired_go", icon=":material/compare_arrows:"):
            st.session_state.pop(RESULT_KEY, None)
            try:
                st.session_state[RESULT_KEY] = (chosen, *_compare(*chosen))
            except MedimgError as exc:
                st.error(str(exc), icon=":material/error:")
                return
        shown = st.session_state.get(RESULT_KEY)
        if shown is None or shown[0] != chosen:
            st.caption(
                "The difference in ROC AUC (B minus A) with a paired 95% interval and p-value: "
                "DeLong's test, or a paired bootstrap over patients when a patient has several "
                "cases."
            )
            return
        result: PairedComparison = shown[1]
        rates: tuple[PairedComparison, PairedComparison] | None = shown[2]
        positive = card_positive_text(by_id[run_a].card)
        a, b, diff = st.columns(3)
        a.metric("ROC AUC, run A", f"{result.value_a.value:.3f}", help=result.value_a.method)
        b.metric("ROC AUC, run B", f"{result.value_b.value:.3f}", help=result.value_b.method)
        diff.metric(
            "Difference (B − A)",
            f"{result.difference.value:+.3f}".replace("-", "−"),
            help=result.difference.method,
        )
        patients = "" if result.n_patients is None else f"; patients: {result.n_patients:,}"
        st.markdown(
            "\n".join(
                [
                    f"- **Run A:** {name(run_a)}: ROC AUC {format_metric(result.value_a)}",
                    f"- **Run B:** {name(run_b)}: ROC AUC {format_metric(result.value_b)}",
                    f"- **Difference B − A:** {difference_text(result)}",
                    f"- **Cases:** {result.n_cases:,} ({result.n_positive:,} {positive}, the "
                    f"positive class){patients}",
                    f"- **Method:** {result.method}",
                ]
            )
        )
        sentence = paired_sentence(result)
        (st.success if result.significant else st.info)(sentence, icon=":material/balance:")
        st.caption(
            "No evidence of a difference is not proof that two runs are equally good: the "
            "interval shows how large a difference the cases can rule out."
        )
        threshold_a, threshold_b = by_id[run_a].threshold, by_id[run_b].threshold
        if rates is not None and threshold_a is not None and threshold_b is not None:
            st.markdown("**At each run's own threshold**")
            st.dataframe(
                paired_rates_frame(
                    rates, positive, threshold_a=threshold_a, threshold_b=threshold_b
                ),
                hide_index=True,
                width="stretch",
                key="paired_rates",
            )
            st.caption(
                f"{rates[0].method}; {rates[1].method}. Intervals: Wilson per run, Newcombe's "
                "hybrid score interval for the paired difference."
            )
        if partition == "test":
            st.caption(SELECTION_NOTE)
