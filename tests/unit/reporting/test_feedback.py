"""Readers' feedback summary: the arithmetic, the text, and the Predict page's case reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from medimg_core.reporting.feedback import (
    NO_PREDICTION,
    FeedbackSummary,
    feedback_summary,
    feedback_text,
    latest_feedback,
    scored_case_ref,
)
from medimg_core.store.registry import FeedbackRecord

T0 = datetime(2026, 3, 3, 14, 5, tzinfo=UTC)


def mark(
    i: int,
    verdict: str,
    *,
    user: str = "ana",
    case: str | None = None,
    predicted: str | None = "malignant",
    source: str = "explain",
) -> FeedbackRecord:
    return FeedbackRecord(
        id=f"fb{i:03d}",
        run_id="run1",
        created_at=T0 + timedelta(minutes=i),
        username=user,
        case_ref=case or f"case-{i}",
        source=source,
        verdict=verdict,
        note="",
        predicted=predicted,
        probability=0.7,
    )


def test_counts_rate_and_disagreements_by_predicted_class() -> None:
    records = [
        mark(1, "agree"),
        mark(2, "agree", user="ben"),
        mark(3, "disagree"),
        mark(4, "unsure", user="ben"),
        mark(5, "disagree", predicted="benign"),
        mark(6, "agree", predicted="benign"),
        mark(7, "agree", predicted="benign", user="cy"),
    ]
    summary = feedback_summary(records)
    assert (summary.n, summary.agree, summary.disagree, summary.unsure) == (7, 4, 2, 1)
    # Unsure is neither agreement nor disagreement: 4 / (4 + 2).
    assert summary.agreement_rate == pytest.approx(4 / 6)
    assert summary.readers == 3
    assert summary.by_predicted == {
        "benign": {"agree": 2, "disagree": 1, "unsure": 0},
        "malignant": {"agree": 2, "disagree": 1, "unsure": 1},
    }
    text = feedback_text(summary)
    assert "7 cases judged by 3 readers: 4 agree, 2 disagree, 1 unsure." in text
    assert "67% of the cases they could decide (4 of 6)" in text
    assert "predicted benign: 1 of 3; predicted malignant: 1 of 3" in text
    assert summary.to_dict()["agreement_rate"] == pytest.approx(4 / 6)


def test_a_reader_marking_a_case_again_counts_once_with_the_latest_verdict() -> None:
    records = [
        mark(1, "agree", case="case-a"),
        mark(2, "disagree", case="case-a"),
        mark(3, "agree", case="case-a", user="ben"),
        # The same reference on Predict is another case (a content hash, not a stored row).
        mark(4, "unsure", case="case-a", source="predict"),
    ]
    kept = latest_feedback(records)
    assert [r.id for r in kept] == ["fb002", "fb003", "fb004"]
    summary = feedback_summary(records)
    assert (summary.n, summary.agree, summary.disagree, summary.unsure) == (3, 1, 1, 1)
    assert summary.agreement_rate == 0.5
    assert summary.readers == 2


def test_no_feedback_and_all_unsure_have_no_rate() -> None:
    empty = feedback_summary([])
    assert empty == FeedbackSummary(0, 0, 0, 0, None, {}, 0)
    assert "No reader has judged" in feedback_text(empty)
    unsure = feedback_summary([mark(1, "unsure", predicted=None)])
    assert unsure.agreement_rate is None
    assert unsure.by_predicted == {NO_PREDICTION: {"agree": 0, "disagree": 0, "unsure": 1}}
    assert "no agreement rate" in feedback_text(unsure)
    assert unsure.to_dict()["agreement_rate"] is None


def test_one_case_reads_singular_and_warns_that_it_is_few() -> None:
    text = feedback_text(feedback_summary([mark(1, "disagree")]))
    assert text.startswith("1 case judged by 1 reader: 0 agree, 1 disagree, 0 unsure.")
    assert "0% of the cases they could decide (0 of 1)" in text
    assert "first impression" in text


def test_scored_case_ref_is_keyed_and_depends_on_values_only() -> None:
    key = b"k" * 32
    values = {"radius": 14.2, "texture": np.float64(20.0), "shape": "oval", "gap": np.nan}
    ref = scored_case_ref(values, key)
    assert ref.startswith("scored-") and len(ref) == len("scored-") + 16
    # Column order, number types and missing-value spelling do not change the reference.
    same = {"gap": None, "shape": "oval", "texture": 20, "radius": np.float32(14.2).item()}
    assert scored_case_ref({**same, "radius": 14.2}, key) == ref
    assert scored_case_ref({**values, "radius": 14.3}, key) != ref
    assert scored_case_ref(values, b"x" * 32) != ref
    assert "14.2" not in ref and "oval" not in ref
