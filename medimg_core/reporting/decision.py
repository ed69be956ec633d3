"""Decision curves as a table a clinician reads: net benefit at a few thresholds, per partition."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from medimg_core.modelling.decision import CARD_THRESHOLDS, DecisionCurve, net_benefit_at
from medimg_core.reporting.figures.evaluation import partition_label

__all__ = ["STRATEGY_NAMES", "net_benefit_frame"]

STRATEGY_NAMES = {"model": "Model", "treat all": "Treat everyone", "treat none": "Treat no one"}
"""How :attr:`NetBenefitAt.best_strategy` is written in tables."""


def net_benefit_frame(
    curves: Sequence[DecisionCurve], thresholds: Sequence[float] = CARD_THRESHOLDS
) -> pd.DataFrame:
    """Net benefit of the model, of treating everyone and of treating no one, per partition.

    Parameters
    ----------
    curves : decision curves, one per partition.
    thresholds : thresholds to read besides each curve's chosen threshold (which comes first,
        marked "(chosen)").

    Returns
    -------
    pd.DataFrame
        One row per partition and threshold: "Cases", "Threshold" (text), "Model", "Treat
        everyone", "Treat no one" (net benefit), "Fewer unnecessary interventions per 100"
        (compared with treating everyone; negative when the model does worse) and "Best"
        (the strategy with the highest net benefit).
    """
    rows = []
    for curve in curves:
        chosen = curve.chosen_threshold
        points = ([chosen] if chosen is not None else []) + [
            t for t in thresholds if chosen is None or abs(t - chosen) > 1e-9
        ]
        for t in points:
            reading = net_benefit_at(curve, t)
            rows.append(
                {
                    "Cases": partition_label(curve.partition),
                    "Threshold": f"{t:.2f}" + (" (chosen)" if t == chosen else ""),
                    "Model": reading.net_benefit,
                    "Treat everyone": reading.treat_all,
                    "Treat no one": 0.0,
                    "Fewer unnecessary interventions per 100": (
                        reading.interventions_avoided_per_100
                    ),
                    "Best": STRATEGY_NAMES[reading.best_strategy],
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "Cases",
            "Threshold",
            "Model",
            "Treat everyone",
            "Treat no one",
            "Fewer unnecessary interventions per 100",
            "Best",
        ],
    )
