"""Readers' feedback on a run's predictions: how often clinicians agreed, and where they did not.

A reader marks a case "agree", "disagree" or "unsure" on the Explain or Predict page
(:meth:`medimg_core.store.registry.Registry.record_feedback`). This module summarises those
judgements per run, for the Runs page, ``medimg runs --show`` and the model report, and makes
the non-identifying reference under which a newly scored case's judgement is stored.

The agreement rate is computed over decided judgements only (agree + disagree): "unsure" says
the reader could not judge, not that the model was right or wrong, so it is counted and shown
but is neither agreement nor disagreement. Several judgements of the same case by the same
reader count once (the latest), so clicking twice does not double a vote.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from medimg_core.privacy import pseudonymise
from medimg_core.store.registry import VERDICTS, FeedbackRecord

__all__ = [
    "NO_PREDICTION",
    "FeedbackSummary",
    "feedback_summary",
    "feedback_text",
    "latest_feedback",
    "scored_case_ref",
]

NO_PREDICTION = "not recorded"
"""The predicted-class key of judgements stored without the model's prediction."""


@dataclass(frozen=True)
class FeedbackSummary:
    """Readers' judgements of one run's predictions, counted.

    Attributes
    ----------
    n : cases judged (one judgement per reader and case: the latest).
    agree, disagree, unsure : how many of those judgements said so.
    agreement_rate : agree / (agree + disagree); None when no judgement was decided.
    by_predicted : per predicted class (display name), the count of each verdict, e.g.
        ``{"malignant": {"agree": 3, "disagree": 1, "unsure": 0}}``.
    readers : distinct readers who judged at least one case.
    """

    n: int
    agree: int
    disagree: int
    unsure: int
    agreement_rate: float | None
    by_predicted: dict[str, dict[str, int]] = field(default_factory=dict)
    readers: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the model card or report)."""
        rate = self.agreement_rate
        return {
            "n": self.n,
            "agree": self.agree,
            "disagree": self.disagree,
            "unsure": self.unsure,
            "agreement_rate": None if rate is None or not math.isfinite(rate) else rate,
            "by_predicted": {k: dict(v) for k, v in self.by_predicted.items()},
            "readers": self.readers,
        }


def latest_feedback(records: Sequence[FeedbackRecord]) -> list[FeedbackRecord]:
    """Each reader's latest judgement of each case, oldest first.

    Judgements are the same case when their source and case reference agree (a case judged on
    Explain and again as a newly scored case on Predict has two different references).
    """
    latest: dict[tuple[str, str, str], FeedbackRecord] = {}
    for record in sorted(records, key=lambda r: (r.created_at, r.id)):
        latest[(record.username, record.source, record.case_ref)] = record
    return sorted(latest.values(), key=lambda r: (r.created_at, r.id))


def feedback_summary(records: Sequence[FeedbackRecord]) -> FeedbackSummary:
    """Count the readers' judgements of a run.

    Parameters
    ----------
    records : the run's judgements (``Registry.list_feedback``), in any order.

    Returns
    -------
    FeedbackSummary
        Counts of the latest judgement per reader and case, the agreement rate over decided
        judgements, the verdicts per predicted class and the number of readers.
    """
    kept = latest_feedback(records)
    counts = dict.fromkeys(VERDICTS, 0)
    by_predicted: dict[str, dict[str, int]] = {}
    for record in kept:
        verdict = record.verdict if record.verdict in counts else "unsure"
        counts[verdict] += 1
        predicted = record.predicted if record.predicted else NO_PREDICTION
        by_predicted.setdefault(predicted, dict.fromkeys(VERDICTS, 0))[verdict] += 1
    decided = counts["agree"] + counts["disagree"]
    return FeedbackSummary(
        n=len(kept),
        agree=counts["agree"],
        disagree=counts["disagree"],
        unsure=counts["unsure"],
        agreement_rate=counts["agree"] / decided if decided else None,
        by_predicted=dict(sorted(by_predicted.items())),
        readers=len({r.username for r in kept}),
    )


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def feedback_text(summary: FeedbackSummary) -> str:
    """The summary in plain sentences (no table or figure needed).

    Returns
    -------
    str
        For example "3 cases judged by 2 readers: 2 agree, 1 disagree, 0 unsure. Readers agreed
        with the model on 67% of the cases they could decide (2 of 3). Disagreements by
        predicted class: malignant 1 of 2."
    """
    if summary.n == 0:
        return (
            "No reader has judged this run's predictions yet. On Explain and Predict a reader "
            "can mark a case agree, disagree or unsure."
        )
    lines = [
        f"{_plural(summary.n, 'case')} judged by {_plural(summary.readers, 'reader')}: "
        f"{summary.agree:,} agree, {summary.disagree:,} disagree, {summary.unsure:,} unsure."
    ]
    decided = summary.agree + summary.disagree
    if summary.agreement_rate is None:
        lines.append("No judgement was decided (all unsure), so there is no agreement rate.")
    else:
        lines.append(
            f"Readers agreed with the model on {summary.agreement_rate:.0%} of the cases they "
            f"could decide ({summary.agree:,} of {decided:,}); unsure judgements are not counted."
        )
    parts = []
    for predicted, verdicts in summary.by_predicted.items():
        judged = verdicts["agree"] + verdicts["disagree"]
        if judged:
            label = (
                "no prediction recorded" if predicted == NO_PREDICTION else f"predicted {predicted}"
            )
            parts.append(f"{label}: {verdicts['disagree']:,} of {judged:,}")
    if parts:
        lines.append("Disagreements by predicted class: " + "; ".join(parts) + ".")
    if summary.n < 20:
        lines.append(
            f"Only {_plural(summary.n, 'case')} so far: the rate is a first impression, not an "
            "estimate."
        )
    return " ".join(lines)


def scored_case_ref(values: Mapping[str, Any], key: bytes) -> str:
    """The reference under which a newly scored case's judgement is stored.

    A case uploaded on the Predict page has no stored row in the run, and its ID column may
    identify a patient, so the reference is a keyed hash (:func:`medimg_core.privacy.pseudonymise`)
    of the case's model feature values only: the same values give the same reference on this
    installation (a reader who reopens the case sees their judgement), while the reference
    reveals neither an ID nor the values themselves, and cannot be recomputed without the key.

    Parameters
    ----------
    values : the scored row's model feature values, feature -> value (never the ID column).
    key : the installation's pseudonymisation key (:func:`medimg_core.privacy.pseudonym_key`).

    Returns
    -------
    str
        "scored-" followed by 16 hex characters.
    """
    canonical = json.dumps(
        {str(k): _canonical(v) for k, v in sorted(values.items(), key=lambda kv: str(kv[0]))},
        sort_keys=True,
        separators=(",", ":"),
    )
    return "scored-" + pseudonymise(canonical, key)


def _canonical(value: Any) -> Any:
    """A value in one spelling, so 1, 1.0 and numpy's 1.0 hash alike and missing is missing."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, bool):
        return str(value)
    if not math.isfinite(number):
        return None if math.isnan(number) else str(number)
    return repr(round(number, 10))
