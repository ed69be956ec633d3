"""Clinical metrics with 95% bootstrap intervals, curves, thresholds and confusion matrices.

Conventions shared with ``training``, the figures (:mod:`medimg_core.reporting.figures`) and the pages:

- Binary: ``y_true`` is 0/1 (1 = positive class) and ``y_score`` is P(positive). A case is called
  positive when ``y_score >= threshold`` (the convention of ``sklearn.metrics.roc_curve``), and the
  confusion matrix is ``[[TN, FP], [FN, TP]]``.
- Multi-class: ``y_true`` indexes ``class_names`` and ``y_score`` has one column per class; the
  prediction is the most probable class and every summary metric is a macro average of the
  one-vs-rest figures (undefined for a class -> undefined macro, shown per class in ``per_class``).
- Intervals are 95% percentile bootstrap intervals. With ``groups`` (patient IDs) whole patients
  are resampled. A replicate that lost a class present in the data is skipped; ``n_boot`` counts
  the replicates actually used. A metric that is undefined (PPV with no positive calls, AUC with
  one class) is NaN, never an exception or a warning.
- No interval collapses to a point: at 0 or 1 (or with a zero-width bootstrap interval) a
  proportion gets the exact Clopper-Pearson interval on the patients (when grouped) or cases in
  its denominator, the ROC AUC Newcombe's rank-based interval (2006, Method 5), and balanced
  accuracy, F1 and macro averages Bonferroni-combined bounds of their parts. Each
  :class:`MetricValue` says which ``method`` gave its interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from sklearn.metrics import precision_recall_curve, roc_curve

from medimg_core import compute
from medimg_core.errors import ConfigError, DataError

__all__ = [
    "CLASS_METRICS",
    "METRIC_HELP",
    "METRIC_KEYS",
    "METRIC_LABELS",
    "PARTITION_LABELS",
    "THRESHOLD_METHODS",
    "Curve",
    "Evaluation",
    "MetricValue",
    "ThresholdSummary",
    "case_table",
    "choose_threshold",
    "confusion_at",
    "evaluate_scores",
    "finite_or_none",
    "format_metric",
    "metric_label",
    "positive_class_caption",
    "summary_frame",
    "tradeoff_table",
]

METRIC_KEYS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "pr_auc",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "brier",
)

METRIC_LABELS: dict[str, str] = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
    "brier": "Brier score",
}

METRIC_HELP: dict[str, str] = {
    "accuracy": "Share of all cases the model classifies correctly.",
    "balanced_accuracy": (
        "Average of sensitivity and specificity (of each class's recall for several classes), "
        "so a rare class counts as much as a common one."
    ),
    "roc_auc": (
        "Chance that a randomly chosen diseased case gets a higher score than a randomly chosen "
        "healthy one (0.5 = coin toss, 1 = perfect ranking)."
    ),
    "pr_auc": (
        "Average precision: how well positive calls stay correct as more diseased cases are "
        "found; compare it with the prevalence, not with 0.5."
    ),
    "sensitivity": "Share of diseased cases the model flags (true-positive rate).",
    "specificity": "Share of healthy cases the model correctly clears (true-negative rate).",
    "ppv": "Positive predictive value: share of flagged cases that are truly diseased.",
    "npv": "Negative predictive value: share of cleared cases that are truly healthy.",
    "f1": "Harmonic mean of sensitivity and PPV; high only when both are high.",
    "brier": (
        "Mean squared gap between predicted probability and what happened "
        "(lower is better; rewards honest probabilities, not just ranking)."
    ),
}

PARTITION_LABELS: dict[str, str] = {
    "cv": "cross-validated (development)",
    "test": "held-out test",
    "external": "external validation",
}

THRESHOLD_METHODS: tuple[str, ...] = ("0.5", "youden", "sensitivity")

_CALIBRATION_BINS = 10
# Bounds the (replicates x rows) weight matrix of one bootstrap chunk to about 16 MB of float64.
_CHUNK_CELLS = 2_000_000
# Replicates per bootstrap task. Each block of replicates draws from its own generator, seeded
# by (seed, block number); the blocks depend on the replicate count only, so the intervals are
# the same to the last digit whether the blocks run here or on any number of Dask workers.
_BOOT_BLOCK = 100


def _boot_blocks(n_boot: int) -> list[tuple[int, int]]:
    """``(block number, replicates)`` of every bootstrap task for ``n_boot`` replicates."""
    return [(b, len(r)) for b, r in enumerate(compute.chunks(max(0, int(n_boot)), _BOOT_BLOCK))]


def _block_rng(seed: int, block: int) -> np.random.Generator:
    """The generator of one block of bootstrap replicates (independent streams per block)."""
    return np.random.default_rng([int(seed), int(block)])


def _sub_chunks(n_rep: int, cells_per_replicate: int) -> list[int]:
    """Replicates per memory-bounded piece of a block (``_CHUNK_CELLS`` weights at most).

    A generator's draws do not depend on how they are split into calls, so neither do the
    replicates: this only bounds memory.
    """
    size = max(1, _CHUNK_CELLS // max(1, cells_per_replicate))
    return [len(r) for r in compute.chunks(n_rep, size)]


def finite_or_none(x: Any) -> float | None:
    """``x`` as a float for JSON, None when it is missing or not finite (NaN, ±inf)."""
    return None if x is None or not np.isfinite(x) else float(x)


@dataclass(frozen=True)
class MetricValue:
    """A point estimate with its 95% interval (NaN bounds when not computable).

    ``method`` says how the interval was obtained, in words a reader can look up (e.g.
    "percentile bootstrap (1000 resamples of patients)", "Clopper-Pearson exact (40
    patients)"); empty when not recorded (older cards, undefined metrics).
    """

    value: float
    ci95: tuple[float, float]
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return None if x is None or not np.isfinite(x) else float(x)

        out: dict[str, Any] = {
            "value": clean(self.value),
            "ci95": [clean(self.ci95[0]), clean(self.ci95[1])],
        }
        if self.method:
            out["method"] = self.method
        return out


@dataclass(frozen=True)
class Curve:
    """Points of one curve; ``x``/``y`` named by ``x_name``/``y_name`` (e.g. "1 - specificity").

    ``counts`` (calibration curves only) holds the number of cases in each bin.
    """

    x: np.ndarray
    y: np.ndarray
    thresholds: np.ndarray | None
    x_name: str
    y_name: str
    counts: np.ndarray | None = None


@dataclass(frozen=True)
class Evaluation:
    """Everything one partition's evaluation produced.

    Attributes
    ----------
    partition : "cv" (out-of-fold, development data), "test" or "external".
    metrics : METRIC_KEYS -> MetricValue (macro averages for multi-class).
    y_true : encoded true labels (0/1 for binary: 1 = positive; class index otherwise).
    y_score : probabilities, shape (n,) of P(positive) for binary, (n, k) for multi-class.
    threshold : decision threshold used for threshold-dependent metrics (binary).
    confusion : confusion matrix at ``threshold``, rows = true, columns = predicted, in the
        order of ``class_names`` (binary: [negative, positive]).
    class_names : display names, binary: (negative label, positive label).
    positive_class : the positive label (None for multi-class).
    roc, pr, calibration : curves (binary; for multi-class, one-vs-rest of ``class_names``
        is available through ``per_class``).
    per_class : multi-class only: class name -> {metric: value} (one-vs-rest).
    row_ids : case identifiers aligned with y_true (the ID column when there is one, else the
        row index), so false negatives etc. can be opened one by one.
    groups_resampled : True when bootstrap intervals resampled patients (groups), not rows.
    n_boot : bootstrap replicates used.
    calibration_stats : binary only: ``slope`` and ``intercept`` (calibration-in-the-large, slope
        fixed at 1) of a logistic recalibration on logit(p) (1 and 0 when perfectly calibrated;
        NaN when the fit does not exist, e.g. perfectly separated classes), ``mean_predicted``
        and ``observed_rate``.
    n_boot_requested : bootstrap replicates drawn (``n_boot`` of them were not degenerate).
    n_groups : number of distinct patients when ``groups`` were given.
    """

    partition: str
    metrics: dict[str, MetricValue]
    y_true: np.ndarray
    y_score: np.ndarray
    threshold: float
    confusion: np.ndarray
    class_names: tuple[str, ...]
    positive_class: Any
    roc: Curve | None
    pr: Curve | None
    calibration: Curve | None
    per_class: dict[str, dict[str, float]] | None
    row_ids: np.ndarray
    groups_resampled: bool
    n_boot: int
    calibration_stats: dict[str, float] | None = None
    n_boot_requested: int | None = None
    n_groups: int | None = None

    @property
    def n(self) -> int:
        return len(self.y_true)

    @property
    def is_binary(self) -> bool:
        """True for a two-class evaluation (``y_score`` is the 1-D P(positive))."""
        return bool(np.ndim(self.y_score) == 1)

    def to_dict(self) -> dict[str, Any]:
        """``{metric: {"value": v, "ci95": [lo, hi]}}`` as written in the model card."""
        return {k: m.to_dict() for k, m in self.metrics.items()}


@dataclass(frozen=True)
class ThresholdSummary:
    """Binary figures at one threshold (what the threshold slider shows).

    Attributes
    ----------
    threshold : cases with P(positive) >= threshold are called positive.
    confusion : ``[[TN, FP], [FN, TP]]``.
    sensitivity, specificity, ppv, npv, accuracy : NaN when undefined (e.g. PPV with no positive
        calls).
    n_positive_calls : cases called positive.
    """

    threshold: float
    confusion: np.ndarray
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    accuracy: float
    n_positive_calls: int

    def to_dict(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return {
            "threshold": float(self.threshold),
            "confusion": self.confusion.tolist(),
            "sensitivity": clean(self.sensitivity),
            "specificity": clean(self.specificity),
            "ppv": clean(self.ppv),
            "npv": clean(self.npv),
            "accuracy": clean(self.accuracy),
            "n_positive_calls": int(self.n_positive_calls),
        }


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with NaN where ``den == 0`` and no warning."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _check_scores(
    y_true: Any, y_score: Any, class_names: Sequence[Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``y_true``/``y_score``; binary when ``y_score`` is 1-D."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=float)
    if y.ndim != 1:
        raise ConfigError(
            f"y_true must be one label per case (1-D); got shape {y.shape}. "
            "Pass the encoded labels as a flat array."
        )
    if s.ndim not in (1, 2):
        raise ConfigError(
            f"y_score must be P(positive) (1-D) or one probability column per class (2-D); "
            f"got shape {s.shape}."
        )
    if len(y) != len(s):
        raise ConfigError(
            f"y_true has {len(y)} values but y_score has {len(s)} rows; pass exactly one score "
            "per case, aligned with y_true."
        )
    if len(y) == 0:
        raise DataError("There are no cases to evaluate (y_true is empty); evaluate at least one.")
    bad = ~np.isfinite(s)
    if bad.any():
        raise ConfigError(
            f"y_score contains {int(bad.sum())} missing or infinite value(s); pass the model's "
            "predicted probabilities for every case."
        )
    lo, hi = float(s.min()), float(s.max())
    if lo < 0.0 or hi > 1.0:
        raise ConfigError(
            f"y_score must be probabilities in [0, 1]; got values from {lo:.4g} to {hi:.4g}. "
            "Pass predict_proba output, not decision_function scores."
        )
    k = 2 if s.ndim == 1 else s.shape[1]
    if class_names is not None and len(class_names) != k:
        shape = "P(positive) (binary)" if s.ndim == 1 else f"{k} probability columns"
        raise ConfigError(
            f"class_names has {len(class_names)} names ({list(class_names)!r}) but y_score holds "
            f"{shape}; give one name per class"
            + (" (negative label, positive label)." if s.ndim == 1 else ".")
        )
    if s.ndim == 2 and k < 3:
        raise ConfigError(
            f"y_score has {k} column(s); for a binary task pass the 1-D P(positive) "
            "(predict_proba(X)[:, 1]), for several classes one column per class."
        )
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        as_float = np.asarray(pd.to_numeric(pd.Series(y), errors="coerce"), dtype=float)
        if np.isnan(as_float).any() or (as_float != np.round(as_float)).any():
            shown = list(pd.unique(pd.Series(y)))[:5]
            raise ConfigError(
                f"y_true must hold encoded class indices (0/1 for binary, 1 = positive); got "
                f"values such as {shown!r}. Encode it as (label == positive_class).astype(int) "
                "or as the index into class_names."
            )
        y = as_float
    y = y.astype(np.int64)
    outside = (y < 0) | (y >= k)
    if outside.any():
        shown = sorted({int(v) for v in y[outside]})[:5]
        expected = "0/1 (1 = positive class)" if k == 2 else f"class indices 0..{k - 1}"
        raise ConfigError(
            f"y_true must be {expected}; got {shown!r}. Encode labels as indices into class_names."
        )
    return y, s


def _aligned(name: str, values: Any, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise ConfigError(
            f"{name} must hold one value per case ({n}); got shape {arr.shape}. Pass it aligned "
            "with y_true."
        )
    return arr


def _group_codes(groups: Any, n: int) -> tuple[np.ndarray, int]:
    """Integer patient codes; a missing ID counts as a patient of its own."""
    arr = _aligned("groups", groups, n)
    codes, uniques = pd.factorize(pd.Series(arr, dtype=object), use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    missing = codes < 0
    n_known = len(uniques)
    codes[missing] = n_known + np.arange(int(missing.sum()))
    return codes, n_known + int(missing.sum())


def _unit_draws(rng: np.random.Generator, n_rep: int, units: int) -> np.ndarray:
    """(n_rep, units) how often each unit (case or patient) is drawn in ``n_rep`` bootstrap
    samples of ``units`` draws with replacement.

    The one bootstrap draw of medimg: evaluations, the leaderboard and the selection-free
    estimate all resample through it, ``_sub_chunks`` replicates at a time.
    """
    draws = rng.integers(0, units, size=(n_rep, units))
    draws += (np.arange(n_rep, dtype=np.int64) * units)[:, None]
    return np.bincount(draws.ravel(), minlength=n_rep * units).reshape(n_rep, units)


def _boot_weights(
    rng: np.random.Generator, n_rep: int, n: int, groups: np.ndarray | None, n_groups: int
) -> np.ndarray:
    """(n_rep, n) multiplicities of each case in ``n_rep`` bootstrap samples."""
    counts = _unit_draws(rng, n_rep, n if groups is None else n_groups).astype(float)
    return counts if groups is None else counts[:, groups]


@dataclass(frozen=True)
class _Ranking:
    """One binary problem prepared for weighted rank statistics.

    ``neg``/``pos`` select the negative/positive cases sorted by score (a slice when they are
    already contiguous and sorted, which saves a gather per replicate). For each sorted positive,
    ``neg_lo``/``neg_hi`` count the negatives scored below / at or below it, and ``pos_lo`` the
    positives scored below it; all index the cumulative sums of the weights.
    """

    neg: np.ndarray | slice
    pos: np.ndarray | slice
    neg_lo: np.ndarray
    neg_hi: np.ndarray
    pos_lo: np.ndarray


def _ranking(y01: np.ndarray, score: np.ndarray) -> _Ranking:
    def select(idx: np.ndarray) -> np.ndarray | slice:
        if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
            return slice(int(idx[0]), int(idx[0]) + idx.size)
        return idx

    neg = np.flatnonzero(y01 == 0)
    pos = np.flatnonzero(y01 == 1)
    neg = neg[np.argsort(score[neg], kind="mergesort")]
    pos = pos[np.argsort(score[pos], kind="mergesort")]
    s_neg, s_pos = score[neg], score[pos]
    return _Ranking(
        neg=select(neg),
        pos=select(pos),
        neg_lo=np.searchsorted(s_neg, s_pos, side="left"),
        neg_hi=np.searchsorted(s_neg, s_pos, side="right"),
        pos_lo=np.searchsorted(s_pos, s_pos, side="left"),
    )


def _cumsum0(w: np.ndarray) -> np.ndarray:
    out = np.zeros((w.shape[0], w.shape[1] + 1))
    np.cumsum(w, axis=1, out=out[:, 1:])
    return out


def _roc_auc(weights: np.ndarray, rk: _Ranking) -> np.ndarray:
    """ROC AUC (Mann-Whitney, ties count half) for each weight row: :func:`_auc_ap`'s AUC alone,
    the kernel the leaderboard and the selection-free estimate use too."""
    w_pos = weights[:, rk.pos]
    cum_neg = _cumsum0(weights[:, rk.neg])
    pairs = cum_neg[:, rk.neg_hi]
    pairs += cum_neg[:, rk.neg_lo]
    return _div(0.5 * np.einsum("ij,ij->i", w_pos, pairs), w_pos.sum(axis=1) * cum_neg[:, -1])


def _auc_ap(weights: np.ndarray, rk: _Ranking) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC (Mann-Whitney, ties count half) and average precision for each weight row.

    Average precision is sklearn's step-wise sum over distinct thresholds,
    ``sum_t (R_t - R_{t-1}) P_t``, written per positive case: each positive adds its weight
    times the precision at its own score (tied cases included).
    """
    w_pos = weights[:, rk.pos]
    cum_neg = _cumsum0(weights[:, rk.neg])
    cum_pos = _cumsum0(w_pos)
    n_neg = cum_neg[:, -1]
    n_pos = cum_pos[:, -1]
    below = cum_neg[:, rk.neg_lo]
    pairs = cum_neg[:, rk.neg_hi]
    pairs += below
    auc = _div(0.5 * np.einsum("ij,ij->i", w_pos, pairs), n_pos * n_neg)
    precision = cum_pos[:, rk.pos_lo]
    np.subtract(n_pos[:, None], precision, out=precision)
    called = np.subtract(n_neg[:, None], below, out=below)
    called += precision
    # Weights are whole numbers, so a case-free level (0 called) has 0 true positives: 0 / 1.
    np.maximum(called, 1.0, out=called)
    precision /= called
    ap = _div(np.einsum("ij,ij->i", w_pos, precision), n_pos)
    ap[n_neg == 0] = np.nan
    return auc, ap


def _binary_rates(
    tn: np.ndarray, fp: np.ndarray, fn: np.ndarray, tp: np.ndarray
) -> dict[str, np.ndarray]:
    sens = _div(tp, tp + fn)
    spec = _div(tn, tn + fp)
    return {
        "accuracy": _div(tp + tn, tn + fp + fn + tp),
        "balanced_accuracy": (sens + spec) / 2,
        "sensitivity": sens,
        "specificity": spec,
        "ppv": _div(tp, tp + fp),
        "npv": _div(tn, tn + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
    }


_Stats = Callable[[np.ndarray], tuple[dict[str, np.ndarray], np.ndarray]]


def _layout(y: np.ndarray, pred: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Order of the cases by true class, then prediction, then ``key``.

    Bootstrap weights are exchangeable across cases, so the bootstrap may use any order. In this
    one every confusion-matrix cell is a contiguous block (one ``reduceat`` per replicate) and,
    for binary scores with ``key = score``, each class is sorted by score (no gather in
    :func:`_auc_ap`).
    """
    return np.lexsort((key, pred, y))


def _confusion_fn(y: np.ndarray, pred: np.ndarray, k: int) -> Callable[[np.ndarray], np.ndarray]:
    """(replicates, k, k) weighted confusion matrices, for cases already in :func:`_layout`."""
    cell = y * k + pred
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])

    def confusion(weights: np.ndarray) -> np.ndarray:
        out = np.zeros((weights.shape[0], k * k))
        out[:, cell[starts]] = np.add.reduceat(weights, starts, axis=1)
        return out.reshape(-1, k, k)

    return confusion


def _weighted_sum(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``weights @ values`` without BLAS, whose sums may be ordered by its thread count: a
    bootstrap replicate must be the same here and on a one-thread Dask worker."""
    return np.einsum("ij,j->i", weights, values)


def _binary_stats_fn(y: np.ndarray, s: np.ndarray, threshold: float) -> _Stats:
    """Metrics per weight row and the class totals; cases must be in :func:`_layout` order."""
    confusion = _confusion_fn(y, (s >= threshold).astype(np.int64), 2)
    sq_err = (s - y) ** 2
    rk = _ranking(y, s)

    def stats(weights: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        conf = confusion(weights)
        (tn, fp), (fn, tp) = conf[:, 0].T, conf[:, 1].T
        out = _binary_rates(tn, fp, fn, tp)
        out["roc_auc"], out["pr_auc"] = _auc_ap(weights, rk)
        out["brier"] = _div(_weighted_sum(weights, sq_err), conf.sum(axis=(1, 2)))
        return out, conf.sum(axis=2)

    return stats


def _multiclass_stats_fn(
    y: np.ndarray, s: np.ndarray
) -> tuple[_Stats, Callable[[np.ndarray], dict[str, np.ndarray]]]:
    """Macro metrics with class totals, and the (replicates, k) one-vs-rest figures."""
    k = s.shape[1]
    confusion = _confusion_fn(y, s.argmax(axis=1), k)
    sq_err = ((s - np.eye(k)[y]) ** 2).sum(axis=1)
    rankings = [_ranking((y == c).astype(np.int64), s[:, c]) for c in range(k)]

    def per_class(weights: np.ndarray, conf: np.ndarray | None = None) -> dict[str, np.ndarray]:
        conf = confusion(weights) if conf is None else conf
        tp = conf.diagonal(axis1=1, axis2=2)
        fn = conf.sum(axis=2) - tp
        fp = conf.sum(axis=1) - tp
        tn = conf.sum(axis=(1, 2))[:, None] - tp - fn - fp
        per = _binary_rates(tn, fp, fn, tp)
        del per["accuracy"], per["balanced_accuracy"]
        aucs, aps = zip(*(_auc_ap(weights, rk) for rk in rankings), strict=True)
        per["roc_auc"] = np.column_stack(aucs)
        per["pr_auc"] = np.column_stack(aps)
        per["n"] = tp + fn
        return per

    def stats(weights: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        conf = confusion(weights)
        per = per_class(weights, conf)
        totals = per.pop("n")
        # A macro average is undefined when one class's figure is: the NaN propagates.
        macro = {key: vals.mean(axis=1) for key, vals in per.items()}
        n_total = totals.sum(axis=1)
        macro["accuracy"] = _div(conf.diagonal(axis1=1, axis2=2).sum(axis=1), n_total)
        macro["balanced_accuracy"] = macro["sensitivity"]
        macro["brier"] = _div(_weighted_sum(weights, sq_err), n_total)
        return macro, totals

    return stats, per_class


def _percentile_ci(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return (float(lo), float(hi))


def _logistic_fit(x: np.ndarray, y: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Maximum-likelihood logistic regression by Newton's method; NaN when it does not exist.

    Each Newton step is halved until the log-likelihood does not fall (damped Newton): with
    offsets of ±14 (probabilities of 0 or 1 clipped), the plain step from zero overshoots.
    """

    def loglik(beta: np.ndarray) -> float:
        eta = x @ beta + offset
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    beta = np.zeros(x.shape[1])
    current = loglik(beta)
    for _ in range(200):
        mu = expit(x @ beta + offset)
        grad = x.T @ (y - mu)
        hess = (x * (mu * (1 - mu))[:, None]).T @ x
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        t = 1.0
        while t > 1e-6:
            trial = loglik(beta + t * step)
            if trial >= current - 1e-12:
                break
            t /= 2
        beta = beta + t * step
        current = loglik(beta)
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 1e3:
            break
        if np.abs(t * step).max() < 1e-10:
            return beta
    return np.full(x.shape[1], np.nan)


def _calibration(y: np.ndarray, s: np.ndarray) -> tuple[Curve, dict[str, float]]:
    """Reliability curve over equal-count (quantile) bins, and logistic recalibration figures."""
    edges = np.unique(np.quantile(s, np.linspace(0, 1, _CALIBRATION_BINS + 1)))
    bins = np.searchsorted(edges[1:-1], s, side="right")
    counts = np.bincount(bins, minlength=len(edges) - 1)
    keep = counts > 0
    mean_p = np.bincount(bins, weights=s, minlength=len(counts))[keep] / counts[keep]
    observed = np.bincount(bins, weights=y, minlength=len(counts))[keep] / counts[keep]
    curve = Curve(
        x=mean_p,
        y=observed,
        thresholds=None,
        x_name="mean predicted probability",
        y_name="observed frequency",
        counts=counts[keep],
    )
    lp = logit(np.clip(s, 1e-6, 1 - 1e-6))
    yf = y.astype(float)
    both = 0 < yf.sum() < len(yf)
    slope = _logistic_fit(np.column_stack([np.ones_like(lp), lp]), yf, np.zeros_like(lp))[1]
    intercept = _logistic_fit(np.ones((len(lp), 1)), yf, lp)[0]
    stats = {
        "slope": float(slope) if both else float("nan"),
        "intercept": float(intercept) if both else float("nan"),
        "mean_predicted": float(s.mean()),
        "observed_rate": float(yf.mean()),
    }
    return curve, stats


def _binary_curves(y: np.ndarray, s: np.ndarray) -> tuple[Curve | None, Curve | None]:
    if y.min() == y.max():
        return None, None
    fpr, tpr, roc_thr = roc_curve(y, s)
    precision, recall, pr_thr = precision_recall_curve(y, s)
    roc = Curve(x=fpr, y=tpr, thresholds=roc_thr, x_name="1 − specificity", y_name="sensitivity")
    # precision_recall_curve's last point (recall 0, precision 1) has no threshold: it is the
    # "call nobody positive" end, which roc_curve marks with an infinite threshold.
    pr = Curve(
        x=recall,
        y=precision,
        thresholds=np.r_[pr_thr, np.inf],
        x_name="sensitivity",
        y_name="PPV",
    )
    return roc, pr


def _wilson(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score 95% interval for a binomial proportion (NaN bounds without trials)."""
    if trials <= 0:
        return float("nan"), float("nan")
    p = successes / trials
    den = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / den
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / den
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


_ALPHA = 0.05
_Z95 = 1.959963984540054


def _clopper_pearson(successes: int, trials: int, tail: float) -> tuple[float, float]:
    """Exact binomial bounds, each with error ``tail`` on its side (NaN without trials)."""
    from scipy.stats import beta

    if trials <= 0:
        return float("nan"), float("nan")
    lo = 0.0 if successes <= 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    hi = 1.0 if successes >= trials else float(beta.isf(tail, successes + 1, trials - successes))
    return lo, hi


def _hanley_mcneil_variance(theta: float, m: int, n: int) -> float:
    """Variance of the Mann-Whitney AUC at ``theta`` (Hanley & McNeil 1982), with Newcombe's
    N* = (m + n) / 2 in place of both group sizes in the correction terms (his Method 4)."""
    n_star = (m + n) / 2.0
    extra = (n_star - 1.0) * ((1.0 - theta) / (2.0 - theta) + theta / (1.0 + theta))
    return theta * (1.0 - theta) * (1.0 + extra) / (m * n)


def _newcombe_auc_interval(
    theta_hat: float, m: int, n: int, z: float = _Z95
) -> tuple[float, float]:
    """Rank-based interval for an AUC that does not collapse at 0 or 1.

    Newcombe (2006), "Confidence intervals for an effect size measure based on the
    Mann-Whitney statistic. Part 2", Method 5: the bounds solve
    ``|theta_hat - theta| = z * sqrt(V(theta))`` with the Hanley-McNeil variance of
    :func:`_hanley_mcneil_variance` (a score-type interval: the variance is taken at the bound,
    not at the estimate, so a perfect AUC still gets a lower bound below 1).
    """
    from scipy.optimize import brentq

    if m <= 0 or n <= 0:
        return float("nan"), float("nan")

    def gap(theta: float) -> float:
        return (theta_hat - theta) ** 2 - z * z * _hanley_mcneil_variance(theta, m, n)

    # At theta_hat itself the gap is negative (the variance is positive inside (0, 1)); at the
    # ends of [0, 1] it is theta_hat^2 or (1 - theta_hat)^2. A bound at 0 or 1 is the estimate.
    inside = min(max(theta_hat, 1e-12), 1.0 - 1e-12)
    lo = 0.0 if theta_hat <= 0.0 else float(brentq(gap, 0.0, inside))
    hi = 1.0 if theta_hat >= 1.0 else float(brentq(gap, inside, 1.0))
    return lo, hi


class _Units:
    """Counts of the units (patients when grouped, else cases) behind each one-vs-rest rate."""

    def __init__(self, y: np.ndarray, pred: np.ndarray, codes: np.ndarray | None, k: int) -> None:
        self.y, self.pred, self.codes, self.k = y, pred, codes, k
        self.kind = "patients" if codes is not None else "cases"

    def count(self, rows: np.ndarray) -> int:
        if self.codes is None:
            return int(rows.sum())
        return int(np.unique(self.codes[rows]).size)

    def classes(self) -> list[int]:
        """The classes whose one-vs-rest figures make the metric: the positive one for binary."""
        return [1] if self.k == 2 else list(range(self.k))

    def trials(self, rate: str, c: int) -> int:
        rows = {
            "sensitivity": self.y == c,
            "specificity": self.y != c,
            "ppv": self.pred == c,
            "npv": self.pred != c,
            "accuracy": np.ones(len(self.y), dtype=bool),
        }[rate]
        return self.count(rows)


def _collapsed(value: float, ci: tuple[float, float]) -> bool:
    """A figure at 0 or 1, or a bootstrap interval of zero width (or none at all)."""
    lo, hi = ci
    return value in (0.0, 1.0) or (np.isfinite(lo) and np.isfinite(hi) and hi - lo <= 1e-12)


def _exact_interval(
    key: str, value: float, units: _Units
) -> tuple[tuple[float, float], str] | None:
    """A count-based 95% interval for a collapsed figure, and how it was obtained.

    Proportions use the exact (Clopper-Pearson) interval on the number of units (patients when
    grouped) in their denominator. The AUC uses Newcombe's Method 5 on the patients (or cases)
    of each class. A macro average (multi-class) or a combination (balanced accuracy, F1) takes
    the bounds of its parts with a Bonferroni split of the 2.5% error on each side, so the
    combined bound keeps its 95% two-sided coverage: balanced accuracy (and any macro average)
    is the mean of the parts' bounds, F1 the harmonic mean of its PPV and sensitivity bounds.
    PR AUC and the Brier score keep their bootstrap interval (None).
    """
    tail = _ALPHA / 2
    if key == "accuracy":
        trials = units.trials("accuracy", 0)
        if trials <= 0:
            return None
        ci = _clopper_pearson(round(value * trials), trials, tail)
        return ci, f"Clopper-Pearson exact ({trials} {units.kind})"
    classes = units.classes()
    if key in ("sensitivity", "specificity", "ppv", "npv"):
        rate = key
        parts = [(rate, c) for c in classes]
    elif key == "balanced_accuracy":
        parts = (
            [("sensitivity", 1), ("specificity", 1)]
            if units.k == 2
            else [("sensitivity", c) for c in classes]
        )
    elif key == "f1":
        parts = [(rate, c) for c in classes for rate in ("ppv", "sensitivity")]
    elif key == "roc_auc":
        parts = [("auc", c) for c in classes]
    else:
        return None
    if len(parts) > 1 and value not in (0.0, 1.0):
        # Inside (0, 1) the parts differ from the combined figure: no count-based bound.
        return None
    each = tail / len(parts)
    bounds: list[tuple[float, float]] = []
    sizes: list[str] = []
    for rate, c in parts:
        if rate == "auc":
            m, n = units.trials("sensitivity", c), units.trials("specificity", c)
            z = float(_norm_isf(each))
            bounds.append(_newcombe_auc_interval(value, m, n, z))
            sizes.append(f"{m} vs {n}")
            continue
        trials = units.trials(rate, c)
        if trials <= 0:
            # No case to be wrong about (e.g. no positive calls for PPV inside F1): no limit.
            bounds.append((0.0, 1.0))
            continue
        bounds.append(_clopper_pearson(round(value * trials), trials, each))
        sizes.append(str(trials))
    if any(not np.isfinite(b) for pair in bounds for b in pair):
        return None
    lows, highs = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    if key == "f1":
        lows = _pairwise_harmonic(lows)
        highs = _pairwise_harmonic(highs)
    ci = (float(lows.mean()), float(highs.mean()))
    ci = (min(ci[0], value), max(ci[1], value))
    if key == "roc_auc":
        how = "Newcombe rank-based, Method 5"
    elif len(parts) == 1:
        how = "Clopper-Pearson exact"
    else:
        how = "exact bounds of its parts, Bonferroni-combined"
    return ci, f"{how} ({' and '.join(sizes)} {units.kind})"


def _pairwise_harmonic(values: np.ndarray) -> np.ndarray:
    """Harmonic means of consecutive pairs (PPV, sensitivity) of bounds: F1 per class."""
    a, b = values[0::2], values[1::2]
    return _div(2 * a * b, a + b)


def _norm_isf(tail: float) -> float:
    from scipy.stats import norm

    return float(norm.isf(tail))


def _stats_fn(y: np.ndarray, s: np.ndarray, threshold: float) -> _Stats:
    """The metrics-per-replicate function for cases in :func:`_layout` order."""
    return _binary_stats_fn(y, s, threshold) if s.ndim == 1 else _multiclass_stats_fn(y, s)[0]


def _bootstrap_block(
    block: tuple[int, int],
    *,
    y: np.ndarray,
    s: np.ndarray,
    threshold: float,
    present: np.ndarray,
    codes: np.ndarray | None,
    n_groups: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """One bootstrap task: the metrics of the block's replicates that kept every ``present``
    class (a replicate that lost a class the data has is degenerate: skipped for every metric).
    """
    number, n_rep = block
    n = len(y)
    stats = _stats_fn(y, s, threshold)
    rng = _block_rng(seed, number)
    parts: dict[str, list[np.ndarray]] = {key: [] for key in METRIC_KEYS}
    for size in _sub_chunks(n_rep, n):
        values, totals = stats(_boot_weights(rng, size, n, codes, n_groups))
        valid = (totals[:, present] > 0).all(axis=1)
        for key in METRIC_KEYS:
            parts[key].append(values[key][valid])
    return {key: np.concatenate(v) for key, v in parts.items()}


def _bootstrap(
    y: np.ndarray,
    s: np.ndarray,
    threshold: float,
    present: np.ndarray,
    codes: np.ndarray | None,
    n_groups: int,
    n_boot: int,
    seed: int,
) -> tuple[dict[str, np.ndarray], int]:
    """Metric values over the replicates that kept every ``present`` class, and their count.

    The replicates run as tasks of :data:`_BOOT_BLOCK` on the engine in force
    (:func:`medimg_core.compute.current`), gathered in block order.
    """
    blocks = compute.current().map(
        _bootstrap_block,
        _boot_blocks(n_boot),
        shared={
            "y": y,
            "s": s,
            "threshold": float(threshold),
            "present": present,
            "codes": codes,
            "n_groups": n_groups,
            "seed": seed,
        },
        name="medimg-bootstrap",
    )
    values = {
        key: np.concatenate([b[key] for b in blocks]) if blocks else np.empty(0)
        for key in METRIC_KEYS
    }
    return values, len(values[METRIC_KEYS[0]])


def evaluate_scores(
    y_true: Any,
    y_score: Any,
    *,
    class_names: Sequence[Any],
    positive_class: Any,
    threshold: float = 0.5,
    groups: Any = None,
    row_ids: Any = None,
    partition: str = "cv",
    n_boot: int = 1000,
    seed: int = 0,
) -> Evaluation:
    """Evaluate predicted probabilities against true labels, with 95% bootstrap intervals.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Encoded labels: 0/1 for binary (1 = positive class), else the index into
        ``class_names``.
    y_score : array-like of shape (n,) or (n, k)
        Binary: P(positive). Multi-class: one probability column per class of ``class_names``.
    class_names : sequence
        Display names; binary: (negative label, positive label).
    positive_class : any
        The positive label (stored for binary, ignored for multi-class).
    threshold : float, default 0.5
        Binary: cases with ``y_score >= threshold`` are called positive. Multi-class: unused
        (the most probable class is predicted); 0.5 is stored.
    groups : array-like of shape (n,), optional
        Patient IDs; when given, the bootstrap resamples patients with all their rows. A missing
        ID counts as a patient of its own.
    row_ids : array-like of shape (n,), optional
        Case identifiers kept for failure analysis; defaults to ``0..n-1``.
    partition : str, default "cv"
        "cv", "test" or "external".
    n_boot : int, default 1000
        Bootstrap replicates to draw (0 gives NaN intervals).
    seed : int, default 0
        Seed of the bootstrap.

    Returns
    -------
    Evaluation
        Metrics with intervals, confusion at ``threshold``, curves and calibration (binary) or
        one-vs-rest figures per class (multi-class). Multi-class Brier is the mean over cases of
        the summed squared differences across classes (range 0-2, as
        ``sklearn.metrics.brier_score_loss``); binary Brier is the mean squared difference (0-1).

    Raises
    ------
    ConfigError
        Misaligned inputs, probabilities outside [0, 1], labels that are not encoded, a
        threshold outside [0, 1] or a negative ``n_boot``.
    DataError
        No cases.
    """
    names = tuple(str(c) for c in class_names)
    y, s = _check_scores(y_true, y_score, names)
    n = len(y)
    binary = s.ndim == 1
    if not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError(
            f"threshold must lie in [0, 1]; got {threshold!r}. Pick a probability cut-off such "
            "as 0.5."
        )
    if int(n_boot) < 0:
        raise ConfigError(f"n_boot must be 0 or more; got {n_boot!r}. The usual value is 1000.")
    ids = np.arange(n) if row_ids is None else _aligned("row_ids", row_ids, n)
    codes, n_groups = (None, 0) if groups is None else _group_codes(groups, n)

    k = len(names)
    pred = (s >= threshold).astype(np.int64) if binary else s.argmax(axis=1)
    layout = _layout(y, pred, s if binary else pred)
    ly, ls = y[layout], s[layout]
    if binary:
        stats = _binary_stats_fn(ly, ls, float(threshold))
    else:
        stats, per_class_fn = _multiclass_stats_fn(ly, ls)
    point, totals = stats(np.ones((1, n)))
    boot_codes = None if codes is None else codes[layout]
    boot, used = _bootstrap(
        ly, ls, float(threshold), totals[0] > 0, boot_codes, n_groups, int(n_boot), seed
    )
    confusion = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    unit = "patients" if codes is not None else "cases"
    boot_method = f"percentile bootstrap ({used} resamples of {unit})"
    units = _Units(y, pred, codes, k)
    metrics = {}
    for key in METRIC_KEYS:
        value = float(point[key][0])
        if not np.isfinite(value):
            metrics[key] = MetricValue(value, (float("nan"), float("nan")))
            continue
        ci = _percentile_ci(boot[key])
        method = boot_method if np.isfinite(ci[0]) else ""
        if _collapsed(value, ci):
            # Every resample of a perfect (or null) figure is perfect too, so the percentile
            # interval collapses to a point; a count-based interval states the real uncertainty
            # (114/114 correct is compatible with an accuracy as low as 0.968).
            exact = _exact_interval(key, value, units)
            if exact is not None:
                ci, method = exact
        metrics[key] = MetricValue(value=value, ci95=ci, method=method)

    roc = pr = calibration = None
    calibration_stats = per_class = None
    if binary:
        stored_threshold = float(threshold)
        roc, pr = _binary_curves(y, s)
        calibration, calibration_stats = _calibration(y, s)
        stored_positive = positive_class
    else:
        stored_threshold = 0.5
        stored_positive = None
        per = per_class_fn(np.ones((1, n)))
        per_class = {
            name: {key: float(vals[0, c]) for key, vals in per.items()}
            for c, name in enumerate(names)
        }

    return Evaluation(
        partition=partition,
        metrics=metrics,
        y_true=y,
        y_score=s,
        threshold=stored_threshold,
        confusion=confusion,
        class_names=names,
        positive_class=stored_positive,
        roc=roc,
        pr=pr,
        calibration=calibration,
        per_class=per_class,
        row_ids=ids,
        groups_resampled=codes is not None,
        n_boot=used,
        calibration_stats=calibration_stats,
        n_boot_requested=int(n_boot),
        n_groups=n_groups if codes is not None else None,
    )


def choose_threshold(
    y_true: Any, y_score: Any, *, method: str = "0.5", target_sensitivity: float = 0.9
) -> float:
    """Choose a binary decision threshold (on development predictions, never on the test set).

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels (1 = positive class).
    y_score : array-like of shape (n,)
        P(positive).
    method : {"0.5", "youden", "sensitivity"}, default "0.5"
        "0.5": the conventional cut-off. "youden": the observed score that maximises
        sensitivity + specificity - 1 (the highest such score on ties). "sensitivity": the
        highest observed score whose sensitivity is at least ``target_sensitivity``, i.e. the
        most specific threshold that still finds that share of diseased cases.
    target_sensitivity : float, default 0.9
        Used by ``method="sensitivity"``; strictly between 0 and 1.

    Returns
    -------
    float
        The threshold; cases with ``y_score >= threshold`` are called positive.

    Raises
    ------
    ConfigError
        Unknown method, target outside (0, 1), or scores that are not binary probabilities.
    DataError
        "youden" without both classes, or "sensitivity" without positive cases.
    """
    if method not in THRESHOLD_METHODS:
        raise ConfigError(
            f"Unknown threshold method {method!r}; choose one of {', '.join(THRESHOLD_METHODS)}."
        )
    if method == "sensitivity" and not 0.0 < float(target_sensitivity) < 1.0:
        raise ConfigError(
            f"target_sensitivity must lie strictly between 0 and 1; got {target_sensitivity!r}. "
            "Use for example 0.9 for 90%."
        )
    y, s = _check_scores(y_true, y_score)
    if s.ndim != 1:
        raise ConfigError(
            f"choose_threshold needs the 1-D P(positive) of a binary task; got shape {s.shape}. "
            "Multi-class models predict the most probable class and have no threshold."
        )
    if method == "0.5":
        return 0.5
    pos = np.sort(s[y == 1])[::-1]
    if method == "sensitivity":
        if pos.size == 0:
            raise DataError(
                "Cannot reach a target sensitivity without positive cases in y_true; use "
                'method="0.5" or include positive cases.'
            )
        needed = int(np.ceil(float(target_sensitivity) * pos.size - 1e-9))
        return float(pos[max(needed, 1) - 1])
    neg = np.sort(s[y == 0])
    if pos.size == 0 or neg.size == 0:
        raise DataError(
            "Youden's threshold needs both positive and negative cases in y_true; use "
            'method="0.5" or include both classes.'
        )
    candidates = np.unique(s)
    sens = 1.0 - np.searchsorted(np.sort(pos), candidates, side="left") / pos.size
    spec = np.searchsorted(neg, candidates, side="left") / neg.size
    youden = sens + spec
    best = np.flatnonzero(youden >= youden.max() - 1e-12)
    return float(candidates[best[-1]])


def _require_binary(evaluation: Evaluation, what: str) -> None:
    if not evaluation.is_binary:
        raise ConfigError(
            f"{what} needs a binary evaluation; this one has {len(evaluation.class_names)} "
            "classes, whose prediction is the most probable class (no threshold to move)."
        )


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not 0.0 <= t <= 1.0:
        raise ConfigError(
            f"threshold must lie in [0, 1]; got {threshold!r}. Pick a probability cut-off."
        )
    return t


def confusion_at(evaluation: Evaluation, threshold: float) -> ThresholdSummary:
    """Confusion matrix and rates of a binary evaluation at another threshold.

    One pass over the cases (fast enough for a live slider on tens of thousands of rows).

    Parameters
    ----------
    evaluation : Evaluation
        A binary evaluation.
    threshold : float
        Cases with P(positive) >= threshold are called positive.

    Returns
    -------
    ThresholdSummary

    Raises
    ------
    ConfigError
        A multi-class evaluation, or a threshold outside [0, 1].
    """
    _require_binary(evaluation, "confusion_at")
    t = _check_threshold(threshold)
    pred = evaluation.y_score >= t
    tn, fp, fn, tp = np.bincount(2 * evaluation.y_true + pred, minlength=4).astype(np.int64)
    rates = _binary_rates(*(np.array([float(v)]) for v in (tn, fp, fn, tp)))
    return ThresholdSummary(
        threshold=t,
        confusion=np.array([[tn, fp], [fn, tp]], dtype=np.int64),
        sensitivity=float(rates["sensitivity"][0]),
        specificity=float(rates["specificity"][0]),
        ppv=float(rates["ppv"][0]),
        npv=float(rates["npv"][0]),
        accuracy=float(rates["accuracy"][0]),
        n_positive_calls=int(fp + tp),
    )


def tradeoff_table(evaluation: Evaluation, n_points: int = 101) -> pd.DataFrame:
    """Sensitivity, specificity, PPV and NPV over evenly spaced thresholds from 0 to 1.

    Parameters
    ----------
    evaluation : Evaluation
        A binary evaluation.
    n_points : int, default 101
        Number of thresholds (at least 2); 101 gives steps of 0.01.

    Returns
    -------
    pandas.DataFrame
        Columns ``threshold, sensitivity, specificity, ppv, npv`` (NaN where undefined).
        Sensitivity never rises and specificity never falls as the threshold rises.

    Raises
    ------
    ConfigError
        A multi-class evaluation or fewer than 2 points.
    """
    _require_binary(evaluation, "tradeoff_table")
    if int(n_points) < 2:
        raise ConfigError(f"n_points must be at least 2; got {n_points!r}. The default is 101.")
    thresholds = np.linspace(0.0, 1.0, int(n_points))
    y = evaluation.y_true
    pos = np.sort(evaluation.y_score[y == 1])
    neg = np.sort(evaluation.y_score[y == 0])
    fn = np.searchsorted(pos, thresholds, side="left").astype(float)
    tn = np.searchsorted(neg, thresholds, side="left").astype(float)
    tp = pos.size - fn
    fp = neg.size - tn
    rates = _binary_rates(tn, fp, fn, tp)
    return pd.DataFrame(
        {
            "threshold": thresholds,
            "sensitivity": rates["sensitivity"],
            "specificity": rates["specificity"],
            "ppv": rates["ppv"],
            "npv": rates["npv"],
        }
    )


def case_table(evaluation: Evaluation, threshold: float | None = None) -> pd.DataFrame:
    """One row per case for failure analysis, in the original order of the cases.

    Parameters
    ----------
    evaluation : Evaluation
    threshold : float, optional
        Binary only; defaults to ``evaluation.threshold``.

    Returns
    -------
    pandas.DataFrame
        Binary: ``case_id, true, p_positive, predicted, outcome`` ("TP", "FP", "FN", "TN") and
        ``uncertainty`` = |p - threshold|. Multi-class: ``case_id, true, p_predicted, predicted,
        outcome`` ("correct" / "wrong") and ``uncertainty`` = the gap between the two most
        probable classes. In both cases a smaller uncertainty means a closer call.
    """
    names = np.asarray(evaluation.class_names, dtype=object)
    y = evaluation.y_true
    s = evaluation.y_score
    if evaluation.is_binary:
        t = evaluation.threshold if threshold is None else _check_threshold(threshold)
        pred = (s >= t).astype(np.int64)
        outcome = np.array(["TN", "FP", "FN", "TP"], dtype=object)[2 * y + pred]
        return pd.DataFrame(
            {
                "case_id": evaluation.row_ids,
                "true": names[y],
                "p_positive": s,
                "predicted": names[pred],
                "outcome": outcome,
                "uncertainty": np.abs(s - t),
            }
        )
    pred = s.argmax(axis=1)
    top2 = np.sort(s, axis=1)[:, -2:]
    return pd.DataFrame(
        {
            "case_id": evaluation.row_ids,
            "true": names[y],
            "p_predicted": s[np.arange(len(pred)), pred],
            "predicted": names[pred],
            "outcome": np.where(pred == y, "correct", "wrong").astype(object),
            "uncertainty": top2[:, 1] - top2[:, 0],
        }
    )


def format_metric(metric: MetricValue, digits: int = 3) -> str:
    """``"0.978 (0.962–0.990)"``; "n/a" for an undefined value, "(CI n/a)" without interval."""
    if not np.isfinite(metric.value):
        return "n/a"
    value = f"{metric.value:.{digits}f}"
    lo, hi = metric.ci95
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{value} (CI n/a)"
    return f"{value} ({lo:.{digits}f}–{hi:.{digits}f})"


CLASS_METRICS: frozenset[str] = frozenset({"sensitivity", "specificity", "ppv", "npv"})
"""Metrics that mean nothing without the class they are for ("sensitivity for malignant")."""


def metric_label(key: str, positive: str | None = None) -> str:
    """A metric's display name; sensitivity, specificity, PPV and NPV name their class.

    Parameters
    ----------
    key : a key of ``METRIC_LABELS`` ("sensitivity").
    positive : the positive class as shown to users ("malignant"); None for multi-class
        (macro averages, no single class).

    Returns
    -------
    str
        "Sensitivity for malignant", as clinicians say "specificity for malignancy"; other
        metrics keep their plain name ("ROC AUC").
    """
    label = METRIC_LABELS.get(key, key)
    if positive is not None and key in CLASS_METRICS:
        return f"{label} for {positive}"
    return label


def positive_class_caption(evaluation: Evaluation) -> str:
    """What the metrics refer to, e.g. "Positive class: malignant (code 0) — sensitivity and
    PPV are for finding malignant, specificity and NPV for clearing benign"."""
    if evaluation.is_binary:
        negative, positive = evaluation.class_names
        code = str(evaluation.positive_class)
        shown = positive if positive == code else f"{positive} (code {code})"
        return (
            f"Positive class: {shown} — sensitivity and PPV are for finding {positive}, "
            f"specificity and NPV for clearing {negative}"
        )
    return (
        f"{len(evaluation.class_names)} classes ({', '.join(evaluation.class_names)}): "
        "macro averages of one-vs-rest figures"
    )


def summary_frame(*evaluations: Evaluation) -> pd.DataFrame:
    """Display table: one row per metric, one "value (95% CI)" column per evaluation.

    Parameters
    ----------
    *evaluations : Evaluation
        For example ``result.cv, result.test``.

    Returns
    -------
    pandas.DataFrame
        Index = clinical metric names (:func:`metric_label`: "Sensitivity for malignant" for a
        binary task), columns = partition names (``PARTITION_LABELS``), cells like
        "0.978 (0.962–0.990)". ``attrs`` holds ``caption`` (positive class), ``help``
        (label -> ``METRIC_HELP``) and ``n`` (column -> cases).

    Raises
    ------
    ConfigError
        When no evaluation is given.
    """
    if not evaluations:
        raise ConfigError("summary_frame needs at least one Evaluation, e.g. result.cv.")
    columns: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for ev in evaluations:
        base = PARTITION_LABELS.get(ev.partition, ev.partition)
        name, i = base, 2
        while name in columns:
            name, i = f"{base} ({i})", i + 1
        columns[name] = [format_metric(ev.metrics[key]) for key in METRIC_KEYS]
        sizes[name] = ev.n
    first = evaluations[0]
    positive = first.class_names[1] if first.is_binary else None
    labels = [metric_label(k, positive) for k in METRIC_KEYS]
    frame = pd.DataFrame(columns, index=pd.Index(labels))
    frame.index.name = "Metric"
    frame.attrs["caption"] = positive_class_caption(first)
    frame.attrs["help"] = {
        label: METRIC_HELP[k] for label, k in zip(labels, METRIC_KEYS, strict=True)
    }
    frame.attrs["n"] = sizes
    return frame
