"""Comparing two models' ROC AUC on the same cases: a paired difference, its interval and p-value.

Two models scored on the same cases make correlated errors, so their AUCs cannot be compared by
looking whether two separate intervals overlap. :func:`compare_paired` accounts for the pairing:

- **DeLong's test** (DeLong, DeLong and Clarke-Pearson, Biometrics 1988) when every case is a
  different patient, computed with the fast midrank algorithm of Sun and Xu (IEEE Signal
  Processing Letters 2014): the two AUCs' covariance comes from each case's placement values,
  giving a normal interval for the difference and a two-sided z-test.
- **A paired bootstrap over patients** when patients contribute several cases: the same
  resampled patients score both models, the 95% interval is the 2.5 and 97.5 percentiles of the
  resampled differences, and the two-sided p-value is twice the smaller share of resampled
  differences on either side of zero (with the usual +1 correction, so it is never 0).

The difference is always model B minus model A.

:func:`compare_rates_paired` adds sensitivity and specificity at each model's own threshold:
McNemar's exact test on the cases the two models call differently, with Newcombe's hybrid score
interval for a difference of paired proportions (Newcombe, Statistics in Medicine 1998,
method 10).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr
from scipy.stats import rankdata

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import (
    MetricValue,
    _newcombe_auc_interval,
    _wilson,
    finite_or_none,
)

__all__ = [
    "BOOTSTRAP",
    "DELONG",
    "PairedComparison",
    "compare_paired",
    "compare_rates_paired",
    "delong_components",
]

DELONG = "DeLong"
"""``PairedComparison.method`` prefix when DeLong's test was used."""

BOOTSTRAP = "paired bootstrap"
"""``PairedComparison.method`` prefix when patients were resampled."""

_Z95 = 1.959963984540054


@dataclass(frozen=True)
class PairedComparison:
    """Two models' ROC AUC on the same cases and their paired difference (B minus A).

    Attributes
    ----------
    metric : the metric compared ("roc_auc").
    value_a, value_b : each model's AUC with its 95% interval (DeLong's or the bootstrap's).
    difference : AUC of B minus AUC of A, with its paired 95% interval.
    p_value : two-sided p-value for "no difference" (NaN when it cannot be computed).
    method : how interval and p-value were obtained, in words a reader can look up.
    n_cases : cases both models scored.
    n_patients : distinct patients among them (None when the cases carry no patient ID).
    partition : "cv" (out-of-fold, development) or "test".
    n_positive : cases of the positive class among ``n_cases``.
    """

    metric: str
    value_a: MetricValue
    value_b: MetricValue
    difference: MetricValue
    p_value: float
    method: str
    n_cases: int
    n_patients: int | None
    partition: str
    n_positive: int = 0

    @property
    def significant(self) -> bool:
        """True when the 95% interval of the difference excludes zero (p below 0.05)."""
        lo, hi = self.difference.ci95
        return bool(np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as None)."""
        return {
            "metric": self.metric,
            "value_a": self.value_a.to_dict(),
            "value_b": self.value_b.to_dict(),
            "difference": self.difference.to_dict(),
            "p_value": finite_or_none(self.p_value),
            "method": self.method,
            "n_cases": self.n_cases,
            "n_patients": self.n_patients,
            "n_positive": self.n_positive,
            "partition": self.partition,
        }


def delong_components(
    y_true01: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and placement values of several score columns (Sun and Xu's midrank algorithm).

    Parameters
    ----------
    y_true01 : 0/1 labels, 1 for the positive class (both classes present).
    scores : shape (k, n), one row of scores per model.

    Returns
    -------
    (auc, v10, v01)
        ``auc`` shape (k,); ``v10`` shape (k, m): for each positive, the share of negatives it
        outranks (ties count one half); ``v01`` shape (k, n_neg): for each negative, the share of
        positives that outrank it.
    """
    y = np.asarray(y_true01).astype(bool)
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    # Midranks within the positives (tx), within the negatives (ty) and in both (tz); a
    # positive's rank among all minus its rank among positives counts the negatives below it.
    tx = rankdata(pos, axis=1)
    ty = rankdata(neg, axis=1)
    tz = rankdata(np.hstack([pos, neg]), axis=1)
    auc = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return auc, v10, v01


def _delong(
    y01: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, partition: str, independence: str
) -> PairedComparison:
    auc, v10, v01 = delong_components(y01, np.vstack([p_a, p_b]))
    m, n = v10.shape[1], v01.shape[1]
    cov = np.cov(v10) / m + np.cov(v01) / n
    diff = float(auc[1] - auc[0])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    where = f"{m + n} cases"
    if var <= 1e-15:
        # Identical rankings (or both perfect): no variation to test against.
        p = 1.0 if abs(diff) < 1e-12 else float("nan")
        ci = (diff, diff)
    else:
        half = _Z95 * np.sqrt(var)
        ci = (diff - half, diff + half)
        p = float(2.0 * ndtr(-abs(diff) / np.sqrt(var)))

    def single(k: int) -> MetricValue:
        if cov[k, k] <= 1e-15:
            # DeLong's variance is zero at an AUC of 0 or 1, which would claim certainty.
            return MetricValue(
                float(auc[k]),
                _newcombe_auc_interval(float(auc[k]), m, n),
                f"Newcombe score interval ({where}; DeLong's variance is zero here)",
            )
        sd = np.sqrt(float(cov[k, k]))
        lo, hi = auc[k] - _Z95 * sd, auc[k] + _Z95 * sd
        return MetricValue(
            float(auc[k]), (max(0.0, float(lo)), min(1.0, float(hi))), f"DeLong ({where})"
        )

    return PairedComparison(
        metric="roc_auc",
        value_a=single(0),
        value_b=single(1),
        difference=MetricValue(diff, ci, f"DeLong, paired ({where})"),
        p_value=p,
        method=f"{DELONG} test for two correlated ROC AUCs ({where}; {independence})",
        n_cases=m + n,
        n_patients=None,
        partition=partition,
        n_positive=m,
    )


def _weighted_auc(y: np.ndarray, codes: np.ndarray, n_levels: int, w: np.ndarray) -> float:
    """AUC with case weights; ``codes`` are dense ranks of the scores (ties share a code)."""
    w_pos = np.bincount(codes[y], weights=w[y], minlength=n_levels)
    w_neg = np.bincount(codes[~y], weights=w[~y], minlength=n_levels)
    total_pos, total_neg = w_pos.sum(), w_neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return float("nan")
    below = np.cumsum(w_neg) - w_neg
    return float((w_pos * (below + 0.5 * w_neg)).sum() / (total_pos * total_neg))


def _bootstrap(
    y01: np.ndarray,
    p_a: np.ndarray,
    p_b: np.ndarray,
    groups: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    partition: str,
) -> PairedComparison:
    y = y01.astype(bool)
    # factorize, unlike np.unique, accepts IDs of mixed types (a missing ID is its own value).
    patient, _ = pd.factorize(pd.Series(groups, dtype=object), use_na_sentinel=False)
    n_patients = int(patient.max()) + 1
    codes = []
    for scores in (p_a, p_b):
        _, code = np.unique(scores, return_inverse=True)
        codes.append((code, int(code.max()) + 1))
    ones = np.ones(len(y))
    auc = [_weighted_auc(y, c, k, ones) for c, k in codes]
    rng = np.random.default_rng(seed)
    reps = np.full((n_boot, 2), np.nan)
    for b in range(n_boot):
        drawn = np.bincount(rng.integers(0, n_patients, n_patients), minlength=n_patients)
        w = drawn[patient].astype(float)
        for j, (code, k) in enumerate(codes):
            reps[b, j] = _weighted_auc(y, code, k, w)
    ok = np.isfinite(reps).all(axis=1)
    used = int(ok.sum())
    if used < max(10, n_boot // 2):
        raise DataError(
            f"Only {used} of {n_boot} resamples of the {n_patients} patients held both classes, "
            "so the paired bootstrap cannot give an interval; compare on more cases (the "
            "cross-validated cases are more numerous than the test cases)."
        )
    reps = reps[ok]
    d = reps[:, 1] - reps[:, 0]
    below = (1 + int((d <= 0).sum())) / (used + 1)
    above = (1 + int((d >= 0).sum())) / (used + 1)
    p = min(1.0, 2.0 * min(below, above))
    where = f"{used} resamples of {n_patients} patients, {len(y)} cases"

    def interval(values: np.ndarray) -> tuple[float, float]:
        lo, hi = np.percentile(values, [2.5, 97.5])
        return float(lo), float(hi)

    single = f"percentile bootstrap ({where})"
    return PairedComparison(
        metric="roc_auc",
        value_a=MetricValue(auc[0], interval(reps[:, 0]), single),
        value_b=MetricValue(auc[1], interval(reps[:, 1]), single),
        difference=MetricValue(auc[1] - auc[0], interval(d), f"paired {single}"),
        p_value=p,
        method=(
            f"{BOOTSTRAP} over patients ({where}; both models scored on the same resampled "
            "patients; percentile 95% CI; two-sided p = twice the smaller share of resampled "
            "differences at or beyond zero on either side)"
        ),
        n_cases=len(y),
        n_patients=n_patients,
        partition=partition,
        n_positive=int(y.sum()),
    )


def _scores(name: str, values: Any, n: int) -> np.ndarray:
    out = np.asarray(values, dtype=float).reshape(-1)
    if len(out) != n:
        raise DataError(
            f"{name} has {len(out)} scores for {n} cases; give one probability per case, in "
            "the order of the labels."
        )
    if not np.isfinite(out).all():
        raise DataError(
            f"{name} has {int((~np.isfinite(out)).sum())} missing or infinite score(s); every "
            "case needs a probability from both models to compare them."
        )
    return out


def compare_paired(
    y_true01: Any,
    p_a: Any,
    p_b: Any,
    *,
    groups: Any = None,
    n_boot: int = 1000,
    seed: int = 0,
    partition: str,
) -> PairedComparison:
    """The difference in ROC AUC between two models scored on the same cases (B minus A).

    Parameters
    ----------
    y_true01 : 0/1 labels, 1 for the positive class.
    p_a, p_b : each model's probability of the positive class, one per case, aligned with
        ``y_true01``.
    groups : patient of each case (e.g. the pseudonymised ID). When a patient has several
        cases, a paired bootstrap over patients replaces DeLong's test, which assumes
        independent cases.
    n_boot : bootstrap resamples (bootstrap only).
    seed : bootstrap seed (bootstrap only); the same seed gives the same result.
    partition : which cases these are: "cv" (out-of-fold) or "test".

    Returns
    -------
    PairedComparison

    Raises
    ------
    DataError
        When the inputs differ in length, a score is missing, the labels are not 0/1 or one
        class is absent.
    ConfigError
        When ``n_boot`` is below 100.
    """
    y = np.asarray(y_true01).reshape(-1)
    n = len(y)
    if n == 0 or not np.isin(y, (0, 1, True, False)).all():
        raise DataError(
            "The labels must be 0/1 (1 for the positive class), one per case; encode the "
            "classes before comparing the models."
        )
    y = y.astype(int)
    a = _scores("Model A", p_a, n)
    b = _scores("Model B", p_b, n)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == n:
        raise DataError(
            f"All {n} cases are of one class, so ROC AUC is undefined and the models cannot be "
            "compared on them; compare on cases that include both classes."
        )
    if groups is not None:
        g = np.asarray(groups, dtype=object).reshape(-1)
        if len(g) != n:
            raise DataError(
                f"The patient IDs ({len(g)}) do not match the cases ({n}); give one ID per case."
            )
        if len(set(g.tolist())) < n:
            if n_boot < 100:
                raise ConfigError(
                    f"n_boot={n_boot} is too few resamples for a bootstrap p-value; use at "
                    "least 100 (1000 is usual)."
                )
            return _bootstrap(y, a, b, g, n_boot=n_boot, seed=seed, partition=partition)
        result = _delong(y, a, b, partition, "each a different patient")
        return replace(result, n_patients=n)
    return _delong(y, a, b, partition, "cases taken as independent: no patient ID")


def _paired_proportions(
    correct_a: np.ndarray, correct_b: np.ndarray, metric: str, partition: str, where: str
) -> PairedComparison:
    """Rate of B minus rate of A over the same cases, McNemar's exact p, Newcombe's interval."""
    from scipy.stats import binomtest

    n = len(correct_a)
    both = int((correct_a & correct_b).sum())
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((~correct_a & correct_b).sum())
    neither = n - both - only_a - only_b
    if n == 0:
        nan = MetricValue(float("nan"), (float("nan"), float("nan")))
        return PairedComparison(metric, nan, nan, nan, float("nan"), "no cases", 0, None, partition)
    rate_a, rate_b = (both + only_a) / n, (both + only_b) / n
    lo_a, hi_a = _wilson(both + only_a, n)
    lo_b, hi_b = _wilson(both + only_b, n)
    den = (both + only_a) * (neither + only_b) * (both + only_b) * (neither + only_a)
    # Newcombe's phi, with his continuity correction of the cross-product difference.
    raw = float(both * neither - only_a * only_b)
    cross = raw - n / 2 if raw > n / 2 else min(raw, 0.0)
    phi = cross / np.sqrt(den) if den > 0 else 0.0
    diff = rate_b - rate_a
    # Newcombe's method 10 for B - A: each bound combines the two Wilson intervals' distances.
    lower = diff - np.sqrt(
        max(
            (rate_b - lo_b) ** 2
            - 2 * phi * (rate_b - lo_b) * (hi_a - rate_a)
            + (hi_a - rate_a) ** 2,
            0.0,
        )
    )
    upper = diff + np.sqrt(
        max(
            (hi_b - rate_b) ** 2
            - 2 * phi * (hi_b - rate_b) * (rate_a - lo_a)
            + (rate_a - lo_a) ** 2,
            0.0,
        )
    )
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(binomtest(only_b, discordant, 0.5).pvalue)
    wilson = f"Wilson score ({n} cases)"
    return PairedComparison(
        metric=metric,
        value_a=MetricValue(rate_a, (lo_a, hi_a), wilson),
        value_b=MetricValue(rate_b, (lo_b, hi_b), wilson),
        difference=MetricValue(
            diff,
            (max(-1.0, float(lower)), min(1.0, float(upper))),
            f"Newcombe hybrid score interval for paired proportions ({n} cases)",
        ),
        p_value=min(1.0, p),
        method=(
            f"McNemar exact test ({where}; {only_a} case(s) only model A got right, {only_b} "
            "only model B)"
        ),
        n_cases=n,
        n_patients=None,
        partition=partition,
        n_positive=0,
    )


def compare_rates_paired(
    y_true01: Any,
    p_a: Any,
    p_b: Any,
    *,
    threshold_a: float,
    threshold_b: float,
    partition: str,
) -> tuple[PairedComparison, PairedComparison]:
    """Sensitivity and specificity of two models on the same cases, each at its own threshold.

    A case is called positive when its probability is at least the model's threshold (as in
    the model's own evaluation). Cases are taken as independent: use this only when every case
    is a different patient.

    Parameters
    ----------
    y_true01 : 0/1 labels, 1 for the positive class.
    p_a, p_b : each model's probability of the positive class, aligned with ``y_true01``.
    threshold_a, threshold_b : each model's operating threshold (chosen on development data).
    partition : "cv" or "test".

    Returns
    -------
    (PairedComparison, PairedComparison)
        Sensitivity (over the positive cases; ``n_positive`` = ``n_cases``) and specificity
        (over the negative cases; ``n_positive`` = 0), each B minus A with McNemar's exact
        p-value and Newcombe's paired interval.

    Raises
    ------
    DataError
        As :func:`compare_paired`, or when a threshold is not a probability.
    """
    y = np.asarray(y_true01).reshape(-1)
    if len(y) == 0 or not np.isin(y, (0, 1, True, False)).all():
        raise DataError(
            "The labels must be 0/1 (1 for the positive class), one per case; encode the "
            "classes before comparing the models."
        )
    y = y.astype(bool)
    a = _scores("Model A", p_a, len(y))
    b = _scores("Model B", p_b, len(y))
    for name, t in (("A", threshold_a), ("B", threshold_b)):
        if not (np.isfinite(t) and 0.0 <= t <= 1.0):
            raise DataError(
                f"Model {name}'s threshold {t!r} is not a probability between 0 and 1; use the "
                "threshold recorded with the run."
            )
    call_a, call_b = a >= threshold_a, b >= threshold_b
    where = (
        f"thresholds {threshold_a:.3f} (A) and {threshold_b:.3f} (B); cases taken as independent"
    )
    sensitivity = _paired_proportions(call_a[y], call_b[y], "sensitivity", partition, where)
    specificity = _paired_proportions(~call_a[~y], ~call_b[~y], "specificity", partition, where)
    return replace(sensitivity, n_positive=sensitivity.n_cases), specificity
