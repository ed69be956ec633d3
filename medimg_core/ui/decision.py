"""The Evaluate page's decision curve section: net benefit on CV and test, read at the threshold."""

from __future__ import annotations

import streamlit as st

from medimg_core.errors import MedimgError
from medimg_core.modelling.decision import DecisionCurve, evaluation_curve, net_benefit_at
from medimg_core.reporting.decision import net_benefit_frame
from medimg_core.reporting.figures.decision import decision_figure
from medimg_core.reporting.figures.evaluation import partition_label
from medimg_core.ui.session import ActiveModel

__all__ = ["decision_curves", "render_decision_curves"]


def decision_curves(active: ActiveModel) -> list[DecisionCurve]:
    """The model's decision curves, development first, with the saved threshold marked."""
    threshold = float(active.model.threshold) if active.model.is_binary else None
    curves = [evaluation_curve(ev, chosen_threshold=threshold) for ev in (active.cv, active.test)]
    return [c for c in curves if c is not None]


def render_decision_curves(active: ActiveModel) -> None:
    """Draw the "Decision curve" section: the figure and one sentence per partition."""
    st.subheader(
        "Decision curve",
        help="Net benefit counts the diseased cases a strategy finds, minus its unnecessary "
        "interventions weighted by the threshold probability t/(1 − t): the harm a clinician "
        "accepts to find one case. A model is worth using at thresholds where its curve lies "
        "above both “treat all” and “treat none” (0).",
    )
    if not active.model.is_binary:
        st.caption(
            "Decision curves apply to two-class models: they need a positive class and a "
            "threshold, which this multi-class model does not have."
        )
        return
    try:
        curves = decision_curves(active)
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    if not curves:
        st.caption("This run has no stored predictions to draw a decision curve from.")
        return
    positive = str(active.model.display_name(active.model.positive_class))
    st.plotly_chart(
        decision_figure(curves, positive_class=positive), width="stretch", key="eval_decision"
    )
    for curve in curves:
        reading = net_benefit_at(curve)
        st.markdown(
            f"**{partition_label(curve.partition)}** ({curve.n:,} cases, "
            f"{curve.prevalence:.0%} {positive}): {reading.sentence(positive)}"
        )
    with st.expander("Net benefit at common thresholds"):
        st.dataframe(
            net_benefit_frame(curves),
            hide_index=True,
            width="stretch",
            key="eval_decision_table",
            column_config={
                name: st.column_config.NumberColumn(format="%.3f")
                for name in ("Model", "Treat everyone", "Treat no one")
            }
            | {
                "Fewer unnecessary interventions per 100": st.column_config.NumberColumn(
                    format="%.1f"
                )
            },
        )
    low = min(c.thresholds[0] for c in curves)
    high = max(c.thresholds[-1] for c in curves)
    st.caption(
        f"Threshold probabilities {low:.2f}–{high:.2f}; the marked threshold is the saved one, chosen on "
        f"the cross-validated development predictions. A net benefit of 0.30 means 30 cases of "
        f"{positive} found per 100 patients, net of unnecessary interventions. The held-out "
        "test curve is drawn from cases scored once; the threshold was not chosen on it."
    )
