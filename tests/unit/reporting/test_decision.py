"""The decision curve table: the chosen threshold first, then the common ones, per partition."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_core.modelling.decision import decision_curve
from medimg_core.reporting.decision import net_benefit_frame

Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.2, 0.1, 0.05])


def test_rows_per_partition_and_threshold() -> None:
    cv = decision_curve(Y, P, partition="cv", chosen_threshold=0.3)
    test = decision_curve(Y[::-1], P, partition="test", chosen_threshold=0.3)
    frame = net_benefit_frame([cv, test])
    assert list(frame["Cases"]) == ["Cross-validated (development)"] * 4 + ["Held-out test"] * 4
    # 0.3 is both the chosen threshold and a common one: listed once, first, marked.
    assert list(frame["Threshold"][:4]) == ["0.30 (chosen)", "0.10", "0.20", "0.50"]
    first = frame.iloc[0]
    # By hand (see tests/unit/modelling/test_decision.py): 0.4 − 0.2 · 3/7 vs 0.4 − 0.6 · 3/7.
    assert first["Model"] == pytest.approx(0.4 - 0.2 * 3 / 7)
    assert first["Treat everyone"] == pytest.approx(0.4 - 0.6 * 3 / 7)
    assert first["Treat no one"] == 0.0
    assert first["Fewer unnecessary interventions per 100"] == pytest.approx(40.0)
    assert first["Best"] == "Model"
    at_half = frame[(frame["Cases"] == "Cross-validated (development)")].iloc[3]
    assert at_half["Model"] == pytest.approx(0.2)
    assert at_half["Treat everyone"] == pytest.approx(-0.2)
    # Labels reversed on the test partition: the model ranks backwards and loses to treat none.
    assert frame.iloc[7]["Best"] == "Treat no one"


def test_curve_without_a_chosen_threshold() -> None:
    frame = net_benefit_frame([decision_curve(Y, P, partition="external")], thresholds=[0.25])
    assert list(frame["Threshold"]) == ["0.25"]
    assert frame.iloc[0]["Model"] == pytest.approx(0.4 - 0.2 / 3)
    assert frame.iloc[0]["Cases"] == "External"
