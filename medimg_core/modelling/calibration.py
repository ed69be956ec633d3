"""Calibration that travels: recalibration on development data, departures, target prevalence.

Three questions a clinical reader asks once the model is trained:

- Does the test set behave like development? :func:`departure_warnings` compares the held-out
  test figures with the cross-validated ones (calibration-in-the-large beyond ±0.5, sensitivity
  or specificity outside the cross-validated 95% interval) and says so in plain words.
- Would logistic (Platt) recalibration help? :func:`fit_recalibration` fits an intercept and a
  slope on the logit of the out-of-fold development probabilities only;
  :func:`recalibration_check` scores that fit, once, on the test cases.
- What do PPV and NPV become at the prevalence of the population where the model will be used?
  :func:`predictive_values` applies Bayes' rule to sensitivity and specificity, carrying their
  95% intervals through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
from scipy.special import expit, logit

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import (
    THRESHOLD_METHODS,
    Evaluation,
    MetricValue,
    _logistic_fit,
    _wilson,
    choose_threshold,
    confusion_at,
    evaluate_scores,
)

__all__ = [
    "AVERAGE_GAP",
    "INTERCEPT_LIMIT",
    "PredictiveValues",
    "Recalibration",
    "RecalibrationCheck",
    "calibration_card",
    "calibration_line",
    "departure_warnings",
    "fit_recalibration",
    "predictive_values",
    "predictive_values_at",
    "recalibration_check",
]

INTERCEPT_LIMIT = 0.5
"""Calibration-in-the-large beyond ± this (log-odds) counts as a departure from development."""

_EPS = 1e-6


def _signed(x: float, digits: int = 2) -> str:
    """``-0.62`` written with a true minus sign, as in print ("−0.62")."""
    return f"{x:.{digits}f}".replace("-", "−")


def _finite(x: Any) -> TypeGuard[float]:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


@dataclass(frozen=True)
class Recalibration:
    """Logistic (Platt) recalibration: ``p' = expit(intercept + slope * logit(p))``.

    Attributes
    ----------
    intercept, slope : fitted on the out-of-fold development probabilities (0 and 1 = no change).
    n_development : development cases the fit used.
    fitted_on : where the fit came from, stated in every display and card.
    """

    intercept: float
    slope: float
    n_development: int
    fitted_on: str = "out-of-fold development predictions"

    def apply(self, y_score: Any) -> np.ndarray:
        """Recalibrated P(positive) for probabilities ``y_score`` (same shape)."""
        p = np.clip(np.asarray(y_score, dtype=float), _EPS, 1 - _EPS)
        return np.asarray(expit(self.intercept + self.slope * logit(p)), dtype=float)

    def to_dict(self) -> dict[str, Any]:
        return {
            "intercept": float(self.intercept),
            "slope": float(self.slope),
            "n_development": int(self.n_development),
            "fitted_on": self.fitted_on,
        }


def fit_recalibration(y_true: Any, y_score: Any) -> Recalibration:
    """Fit logistic recalibration on development (out-of-fold) probabilities.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 development labels (1 = positive class).
    y_score : array-like of shape (n,)
        Out-of-fold P(positive) of the same cases (``TrainingResult.oof_proba[:, 1]`` or
        ``TrainingResult.cv.y_score``); never test-set probabilities.

    Returns
    -------
    Recalibration

    Raises
    ------
    ConfigError
        Misaligned inputs or scores that are not binary probabilities.
    DataError
        One class only, or classes separated perfectly (no finite fit exists).
    """
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=float)
    if s.ndim != 1 or y.ndim != 1 or len(y) != len(s):
        raise ConfigError(
            f"Recalibration needs one 0/1 label and one P(positive) per development case; got "
            f"shapes {y.shape} and {s.shape}. Pass the binary out-of-fold predictions."
        )
    if len(s) == 0 or not np.isfinite(s).all() or s.min() < 0 or s.max() > 1:
        raise ConfigError(
            "Recalibration needs probabilities in [0, 1] for every development case; pass the "
            "out-of-fold predict_proba output."
        )
    yf = (y == 1).astype(float)
    if yf.min() == yf.max():
        raise DataError(
            "Recalibration needs development cases of both classes; this model's development "
            "predictions hold one class only."
        )
    lp = logit(np.clip(s, _EPS, 1 - _EPS))
    beta = _logistic_fit(np.column_stack([np.ones_like(lp), lp]), yf, np.zeros_like(lp))
    if not np.all(np.isfinite(beta)):
        raise DataError(
            "The development predictions separate the classes perfectly, so no recalibration "
            "can be fitted (the slope would be infinite); the probabilities are already as "
            "extreme as they can be."
        )
    return Recalibration(intercept=float(beta[0]), slope=float(beta[1]), n_development=len(s))


@dataclass(frozen=True)
class RecalibrationCheck:
    """A recalibration fitted on development data and scored once on the test cases.

    Attributes
    ----------
    recalibration : the fit (development out-of-fold predictions only).
    threshold_before, threshold_after : the model's threshold, and the same rule applied to the
        recalibrated development probabilities (for Youden or a target sensitivity it gives
        the same calls, on the new probability scale; the 0.5 rule calls other cases).
    test_before, test_after : the test evaluation as trained and recalibrated (no bootstrap:
        ``n_boot=0``), or None without a test set.
    cv_after : the development evaluation after recalibration (in-sample for the two recalibration
        parameters, so close to ideal by construction).
    """

    recalibration: Recalibration
    threshold_before: float
    threshold_after: float
    cv_after: Evaluation
    test_before: Evaluation | None
    test_after: Evaluation | None

    @property
    def still_departs(self) -> bool:
        """True when the test calibration-in-the-large stays beyond ±:data:`INTERCEPT_LIMIT`
        after recalibration: the test cases differ from development in a way development data
        cannot correct."""
        stats = (self.test_after.calibration_stats or {}) if self.test_after else {}
        intercept = stats.get("intercept")
        return _finite(intercept) and abs(intercept) > INTERCEPT_LIMIT

    def table(self) -> list[dict[str, Any]]:
        """Rows ``{"figure", "before", "after"}`` on the test cases (empty without a test set)."""
        if self.test_before is None or self.test_after is None:
            return []
        before, after = self.test_before, self.test_after
        b_stats = before.calibration_stats or {}
        a_stats = after.calibration_stats or {}
        rows = [
            ("Calibration intercept", b_stats.get("intercept"), a_stats.get("intercept"), 2),
            ("Calibration slope", b_stats.get("slope"), a_stats.get("slope"), 2),
            ("Mean predicted", b_stats.get("mean_predicted"), a_stats.get("mean_predicted"), 3),
            ("Observed rate", b_stats.get("observed_rate"), a_stats.get("observed_rate"), 3),
            (
                "Brier score",
                before.metrics["brier"].value,
                after.metrics["brier"].value,
                3,
            ),
            ("Threshold", self.threshold_before, self.threshold_after, 3),
            (
                "Sensitivity",
                confusion_at(before, self.threshold_before).sensitivity,
                after.metrics["sensitivity"].value,
                3,
            ),
            (
                "Specificity",
                confusion_at(before, self.threshold_before).specificity,
                after.metrics["specificity"].value,
                3,
            ),
        ]
        return [
            {
                "figure": name,
                "before": _signed(b, digits) if _finite(b) else "n/a",
                "after": _signed(a, digits) if _finite(a) else "n/a",
            }
            for name, b, a, digits in rows
        ]


def _threshold_after(
    recal: Recalibration,
    y_dev: np.ndarray,
    s_dev_after: np.ndarray,
    threshold: float,
    method: str,
    target_sensitivity: float,
) -> float:
    if method in THRESHOLD_METHODS:
        return choose_threshold(
            y_dev, s_dev_after, method=method, target_sensitivity=target_sensitivity
        )
    # An unknown or user-set threshold: keep the same cut-off on the new probability scale.
    return float(recal.apply(np.array([threshold]))[0])


def recalibration_check(
    cv: Evaluation,
    test: Evaluation | None,
    *,
    method: str = "0.5",
    target_sensitivity: float = 0.9,
    threshold: float | None = None,
) -> RecalibrationCheck:
    """Fit recalibration on the development evaluation and score it once on the test one.

    Parameters
    ----------
    cv : Evaluation
        The cross-validated (out-of-fold) development evaluation: the only data the fit sees.
    test : Evaluation, optional
        The held-out test evaluation, scored before and after with the fitted recalibration.
    method : {"0.5", "youden", "sensitivity"} or another text, default "0.5"
        The threshold rule of the model, re-applied to the recalibrated development
        probabilities; any other value keeps the same cut-off on the new scale.
    target_sensitivity : float, default 0.9
        For ``method="sensitivity"``.
    threshold : float, optional
        The threshold before recalibration; defaults to ``cv.threshold``.

    Returns
    -------
    RecalibrationCheck

    Raises
    ------
    ConfigError
        A multi-class evaluation, or ``cv`` that is not the development partition.
    DataError
        When no recalibration can be fitted (see :func:`fit_recalibration`).
    """
    if not cv.is_binary:
        raise ConfigError(
            "Recalibration applies to two-class models; this one has "
            f"{len(cv.class_names)} classes."
        )
    if cv.partition != "cv":
        raise ConfigError(
            f"Recalibration is fitted on the cross-validated development predictions, not on "
            f"the {cv.partition!r} partition; pass result.cv."
        )
    before_t = float(cv.threshold if threshold is None else threshold)
    recal = fit_recalibration(cv.y_true, cv.y_score)
    dev_after = recal.apply(cv.y_score)
    after_t = _threshold_after(
        recal, cv.y_true, dev_after, before_t, method, float(target_sensitivity)
    )

    def rescored(ev: Evaluation, scores: np.ndarray, partition: str) -> Evaluation:
        return evaluate_scores(
            ev.y_true,
            scores,
            class_names=ev.class_names,
            positive_class=ev.positive_class,
            threshold=after_t,
            row_ids=ev.row_ids,
            partition=partition,
            n_boot=0,
        )

    cv_after = rescored(cv, dev_after, "development, recalibrated")
    test_after = (
        None if test is None else rescored(test, recal.apply(test.y_score), "test, recalibrated")
    )
    return RecalibrationCheck(
        recalibration=recal,
        threshold_before=before_t,
        threshold_after=after_t,
        cv_after=cv_after,
        test_before=test,
        test_after=test_after,
    )


def calibration_card(evaluation: Evaluation | None) -> dict[str, Any] | None:
    """One partition's calibration as saved in the model card.

    Returns
    -------
    dict or None
        ``intercept`` (calibration-in-the-large), ``slope``, ``mean_predicted``,
        ``observed_rate`` (None where they do not exist) and ``curve``: the reliability curve
        as ``{"mean_predicted": [...], "observed": [...], "n": [...]}`` over equal-count bins.
        None for a missing or multi-class evaluation.
    """
    if evaluation is None or not evaluation.is_binary or not evaluation.calibration_stats:
        return None
    stats = evaluation.calibration_stats

    def clean(x: Any) -> float | None:
        return float(x) if _finite(x) else None

    out: dict[str, Any] = {
        key: clean(stats.get(key))
        for key in ("intercept", "slope", "mean_predicted", "observed_rate")
    }
    curve = evaluation.calibration
    out["curve"] = (
        None
        if curve is None
        else {
            "mean_predicted": [float(v) for v in curve.x],
            "observed": [float(v) for v in curve.y],
            "n": [int(v) for v in (curve.counts if curve.counts is not None else [])],
        }
    )
    out["n"] = int(evaluation.n)
    return out


def calibration_line(name: str, entry: dict[str, Any] | None) -> str:
    """ "calibration (test): intercept −0.62, slope 0.81" from a card entry (or "n/a")."""
    if not entry:
        return f"calibration ({name}): n/a"
    intercept, slope = entry.get("intercept"), entry.get("slope")
    if _finite(intercept) and _finite(slope):
        return f"calibration ({name}): intercept {_signed(intercept)}, slope {_signed(slope)}"
    return f"calibration ({name}): not estimable (the classes are perfectly separated)"


AVERAGE_GAP = 0.02
"""Below this gap between the mean predicted probability and the observed rate, an intercept
beyond the limit is read as over-confident extremes, not probabilities too high or too low."""


def departure_warnings(
    cv: Evaluation | Mapping[str, MetricValue], test: Evaluation | None
) -> list[str]:
    """Plain-words warnings when the test (or external) cases do not behave like development.

    A warning is raised when their calibration-in-the-large lies beyond
    ±:data:`INTERCEPT_LIMIT` (the probabilities are too high or too low on average), and when
    their sensitivity or specificity lies outside the cross-validated 95% interval (one
    warning for figures below it, one for figures above it, which with a small test set is
    often chance).

    Parameters
    ----------
    cv : Evaluation or mapping
        The cross-validated development evaluation, or its metrics (``"sensitivity"`` and
        ``"specificity"`` as :class:`MetricValue`, e.g. read back from a model card).
    test : Evaluation, optional
        The held-out test (or an external) evaluation of the same binary model.

    Returns
    -------
    list of str
        Empty for a multi-class model, without a test set, or when nothing departs.
    """
    if test is None or not test.is_binary:
        return []
    if isinstance(cv, Evaluation):
        if not cv.is_binary:
            return []
        cv_metrics: Mapping[str, MetricValue] = cv.metrics
    else:
        cv_metrics = cv
    where = {"test": "test", "external": "external"}.get(test.partition, str(test.partition))
    out: list[str] = []
    positive = test.class_names[1]
    stats = test.calibration_stats or {}
    intercept = stats.get("intercept")
    if _finite(intercept) and abs(intercept) > INTERCEPT_LIMIT:
        high = intercept < 0
        advice = (
            " (see the calibration tab on the Evaluate page, where a recalibration fitted on "
            "development data can be checked)"
            if test.partition == "test"
            else "; recalibrate with cases from that population before using the probabilities"
        )
        predicted = float(stats.get("mean_predicted", float("nan")))
        observed = float(stats.get("observed_rate", float("nan")))
        gap = observed - predicted
        if _finite(gap) and abs(gap) >= AVERAGE_GAP and (gap < 0) == high:
            out.append(
                f"On the {where} cases the model's probabilities are too "
                f"{'high' if high else 'low'} on average (calibration-in-the-large "
                f"{_signed(intercept)}): it predicts {predicted:.1%} {positive} on average "
                f"where {observed:.1%} were {positive}. These cases may come from a population "
                "with a different prevalence or case mix; do not read the probabilities at "
                f"face value there{advice}."
            )
        else:
            # The intercept is on the log-odds scale: probabilities of (nearly) 0 or 1 given to
            # cases that turned out otherwise move it a long way while the averages agree.
            slope = stats.get("slope")
            out.append(
                f"On the {where} cases the calibration-in-the-large is {_signed(intercept)} on "
                f"the log-odds scale although the average probability ({predicted:.1%} "
                f"{positive}) is close to the observed rate ({observed:.1%}): the model gives "
                "probabilities near 0 or 1 to some cases that turned out otherwise"
                + (f" (calibration slope {slope:.2f}; 1 is ideal)" if _finite(slope) else "")
                + f". Its most confident probabilities cannot be taken at face value{advice}."
            )
    lower: list[str] = []
    higher: list[str] = []
    for key, what in (
        ("sensitivity", f"sensitivity for {positive}"),
        ("specificity", f"specificity (cases that are not {positive} correctly cleared)"),
    ):
        value = test.metrics[key].value
        reference = cv_metrics.get(key)
        if reference is None:
            continue
        lo, hi = reference.ci95
        if not (_finite(value) and _finite(lo) and _finite(hi)) or lo <= value <= hi:
            continue
        text = f"{what} {value:.3f} (cross-validated 95% interval {lo:.3f}–{hi:.3f})"
        (lower if value < lo else higher).append(text)
    if lower:
        out.append(
            f"On the {where} cases the model does worse than development data said it would: "
            + "; ".join(lower)
            + ". These cases may differ from the development cases (case mix, equipment, "
            "period); report their figures with their own intervals and check how they were "
            "selected before relying on the cross-validated figures."
        )
    if higher:
        out.append(
            f"On the {where} cases the model does better than development data said it would: "
            + "; ".join(higher)
            + f". With {test.n} cases this can be chance, an easier case mix or a shift in "
            "prevalence; the cross-validated figures are the steadier estimate."
        )
    return out


@dataclass(frozen=True)
class PredictiveValues:
    """PPV and NPV at a stated prevalence, from sensitivity and specificity (Bayes' rule).

    Attributes
    ----------
    prevalence : the share of the target population that has the positive class.
    sensitivity, specificity : what went in (with their 95% intervals).
    ppv, npv : what comes out; the interval bounds use the matching bounds of sensitivity and
        specificity (both predictive values rise with each of them).
    positive_class : the class the figures refer to (None when not given).
    threshold : the threshold the sensitivity and specificity were measured at, if known.
    """

    prevalence: float
    sensitivity: MetricValue
    specificity: MetricValue
    ppv: MetricValue
    npv: MetricValue
    positive_class: Any = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "prevalence": float(self.prevalence),
            "sensitivity": self.sensitivity.to_dict(),
            "specificity": self.specificity.to_dict(),
            "ppv": self.ppv.to_dict(),
            "npv": self.npv.to_dict(),
            "threshold": None if self.threshold is None else float(self.threshold),
        }


def _ppv(se: float, sp: float, prev: float) -> float:
    num, den = se * prev, se * prev + (1 - sp) * (1 - prev)
    return num / den if den > 0 else float("nan")


def _npv(se: float, sp: float, prev: float) -> float:
    num, den = sp * (1 - prev), sp * (1 - prev) + (1 - se) * prev
    return num / den if den > 0 else float("nan")


def _as_metric(x: MetricValue | float) -> MetricValue:
    if isinstance(x, MetricValue):
        return x
    return MetricValue(float(x), (float("nan"), float("nan")))


def predictive_values(
    sensitivity: MetricValue | float,
    specificity: MetricValue | float,
    prevalence: float,
    *,
    positive_class: Any = None,
    threshold: float | None = None,
) -> PredictiveValues:
    """PPV and NPV at a target prevalence, with intervals carried from sensitivity/specificity.

    ``PPV = se·p / (se·p + (1 − sp)(1 − p))`` and ``NPV = sp(1 − p) / (sp(1 − p) + (1 − se)p)``.
    Both increase with sensitivity and with specificity, so the lower bound uses the lower
    bounds of both and the upper bound their upper bounds (a conservative, slightly wide
    interval: it treats the two bounds as reached together).

    Parameters
    ----------
    sensitivity, specificity : MetricValue or float
        With their 95% intervals when available (a bare float gives NaN bounds).
    prevalence : float
        Share of the target population with the positive class, strictly between 0 and 1
        (e.g. 0.01 for a screening population with 1% disease).
    positive_class, threshold : optional, stored for display.

    Returns
    -------
    PredictiveValues

    Raises
    ------
    ConfigError
        Prevalence not strictly between 0 and 1, or sensitivity/specificity outside [0, 1].
    """
    p = float(prevalence)
    if not 0.0 < p < 1.0:
        raise ConfigError(
            f"The target prevalence must lie strictly between 0 and 1; got {prevalence!r}. "
            "Use for example 0.01 for a screening population where 1% have the disease."
        )
    se, sp = _as_metric(sensitivity), _as_metric(specificity)
    for name, m in (("sensitivity", se), ("specificity", sp)):
        for v in (m.value, *m.ci95):
            if _finite(v) and not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1]; got {v!r}.")

    def carried(fn: Any) -> MetricValue:
        value = fn(se.value, sp.value, p) if _finite(se.value) and _finite(sp.value) else np.nan
        lo_ok = _finite(se.ci95[0]) and _finite(sp.ci95[0])
        hi_ok = _finite(se.ci95[1]) and _finite(sp.ci95[1])
        lo = fn(se.ci95[0], sp.ci95[0], p) if lo_ok else float("nan")
        hi = fn(se.ci95[1], sp.ci95[1], p) if hi_ok else float("nan")
        return MetricValue(
            float(value),
            (float(lo), float(hi)),
            method="Bayes' rule at the stated prevalence, from the matching bounds of "
            "sensitivity and specificity",
        )

    return PredictiveValues(
        prevalence=p,
        sensitivity=se,
        specificity=sp,
        ppv=carried(_ppv),
        npv=carried(_npv),
        positive_class=positive_class,
        threshold=threshold,
    )


def predictive_values_at(
    evaluation: Evaluation, prevalence: float, threshold: float | None = None
) -> PredictiveValues:
    """PPV and NPV of a binary evaluation at a target prevalence.

    At the evaluation's own threshold the sensitivity and specificity keep their bootstrap
    intervals (patients resampled when grouped); at another threshold they are recounted and
    given Wilson 95% intervals.

    Raises
    ------
    ConfigError
        A multi-class evaluation or an invalid prevalence/threshold.
    """
    if not evaluation.is_binary:
        raise ConfigError(
            "PPV and NPV at a target prevalence need a two-class model; this one has "
            f"{len(evaluation.class_names)} classes."
        )
    t = evaluation.threshold if threshold is None else float(threshold)
    if abs(t - evaluation.threshold) < 1e-12:
        se, sp = evaluation.metrics["sensitivity"], evaluation.metrics["specificity"]
    else:
        at = confusion_at(evaluation, t)
        (tn, fp), (fn, tp) = at.confusion.tolist()
        method = f"Wilson score at threshold {t:.3f}"
        se = MetricValue(at.sensitivity, _wilson(tp, tp + fn), method=method)
        sp = MetricValue(at.specificity, _wilson(tn, tn + fp), method=method)
    return predictive_values(
        se, sp, prevalence, positive_class=evaluation.positive_class, threshold=t
    )
